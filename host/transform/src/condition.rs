//! Conditions: Jayway filter syntax plus SAP's extensions (`EMPTY`, `NIN`,
//! `contains`, `===`, `!==`) and condition functions (`isValidEmail`, …).
//!
//! Placeholders are substituted textually before parsing (see
//! [`crate::template`]), exactly like SAP does.

use std::sync::LazyLock;

use fancy_regex::Regex;
use serde_json::Value;

use crate::env::Env;
use crate::path::read::V;
use crate::path::{self, Path, Root, Seg};
use crate::syntax::{Cursor, SyntaxError};

/// A comparison or membership operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    In,
    Nin,
    AnyOf,
    NoneOf,
    SubsetOf,
    Size,
}

/// A condition-only function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CondFn {
    ValidEmail,
    ApplicationSpecificGroup,
    RegularGroup,
    OptionalPrefix,
    MandatoryPrefix,
}

/// A function argument: a path or a bare property key.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Path(Path),
    Key(String),
}

/// Something compared.
#[derive(Debug, Clone)]
pub(crate) enum Operand {
    Path(Path),
    Lit(Value),
}

/// A parsed condition.
#[derive(Debug, Clone)]
pub(crate) enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(Operand, Op, Operand),
    Regex(Operand, Box<Regex>),
    Empty(Operand, bool),
    /// A bare operand: a path exists (Jayway `[?(@.value)]`) or a literal is truthy.
    Exists(Operand),
    Call(CondFn, Vec<Arg>),
}

/// Parses a whole condition.
pub(crate) fn parse(text: &str) -> Result<Expr, SyntaxError> {
    let mut c = Cursor::new(text);
    c.skip_ws();
    let e = parse_expr_at(&mut c)?;
    c.skip_ws();
    if !c.at_end() {
        return Err(c.error("unexpected text after the condition"));
    }
    Ok(e)
}

/// Parses an expression at the cursor (used by filters `[?(…)]` too).
pub(crate) fn parse_expr_at(c: &mut Cursor) -> Result<Expr, SyntaxError> {
    c.enter()?;
    let e = parse_or(c)?;
    c.leave();
    Ok(e)
}

fn parse_or(c: &mut Cursor) -> Result<Expr, SyntaxError> {
    let mut left = parse_and(c)?;
    loop {
        c.skip_ws();
        if !c.eat_str("||") {
            return Ok(left);
        }
        c.skip_ws();
        c.node()?;
        left = Expr::Or(Box::new(left), Box::new(parse_and(c)?));
    }
}

fn parse_and(c: &mut Cursor) -> Result<Expr, SyntaxError> {
    let mut left = parse_unary(c)?;
    loop {
        c.skip_ws();
        if !c.eat_str("&&") {
            return Ok(left);
        }
        c.skip_ws();
        c.node()?;
        left = Expr::And(Box::new(left), Box::new(parse_unary(c)?));
    }
}

fn parse_unary(c: &mut Cursor) -> Result<Expr, SyntaxError> {
    c.skip_ws();
    c.node()?;
    if c.peek() == Some('!') && !c.rest().starts_with("!=") {
        c.bump();
        c.enter()?;
        let e = Expr::Not(Box::new(parse_unary(c)?));
        c.leave();
        return Ok(e);
    }
    if c.eat('(') {
        let e = parse_expr_at(c)?;
        c.skip_ws();
        c.expect(')')?;
        return Ok(e);
    }
    parse_comparison(c)
}

fn parse_comparison(c: &mut Cursor) -> Result<Expr, SyntaxError> {
    if let Some(call) = parse_call(c)? {
        return Ok(call);
    }
    let left = parse_operand(c)?;
    c.skip_ws();
    let op = if c.eat_str("===") || c.eat_str("==") {
        Op::Eq
    } else if c.eat_str("!==") || c.eat_str("!=") {
        Op::Ne
    } else if c.eat_str("<=") {
        Op::Le
    } else if c.eat_str(">=") {
        Op::Ge
    } else if c.eat_str("<") {
        Op::Lt
    } else if c.eat_str(">") {
        Op::Gt
    } else if c.eat_str("=~") {
        c.skip_ws();
        let re = parse_regex_literal(c)?;
        return Ok(Expr::Regex(left, Box::new(re)));
    } else if c.eat_keyword("empty") {
        c.skip_ws();
        let b = if c.eat_keyword("true") {
            true
        } else if c.eat_keyword("false") {
            false
        } else {
            return Err(c.error("expected true or false after EMPTY"));
        };
        return Ok(Expr::Empty(left, b));
    } else if c.eat_keyword("contains") {
        Op::Contains
    } else if c.eat_keyword("nin") {
        Op::Nin
    } else if c.eat_keyword("in") {
        Op::In
    } else if c.eat_keyword("anyof") {
        Op::AnyOf
    } else if c.eat_keyword("noneof") {
        Op::NoneOf
    } else if c.eat_keyword("subsetof") {
        Op::SubsetOf
    } else if c.eat_keyword("size") {
        Op::Size
    } else {
        return Ok(Expr::Exists(left));
    };
    c.skip_ws();
    let right = parse_operand(c)?;
    Ok(Expr::Cmp(left, op, right))
}

fn parse_call(c: &mut Cursor) -> Result<Option<Expr>, SyntaxError> {
    const FNS: [(&str, CondFn, usize); 5] = [
        ("isValidEmail", CondFn::ValidEmail, 1),
        ("isApplicationSpecificGroup", CondFn::ApplicationSpecificGroup, 0),
        ("isRegularGroup", CondFn::RegularGroup, 0),
        ("isAttributeWithOptionalPrefix", CondFn::OptionalPrefix, 2),
        ("isAttributeWithMandatoryPrefix", CondFn::MandatoryPrefix, 2),
    ];
    let Some(&(name, f, arity)) = FNS
        .iter()
        .find(|(n, _, _)| c.rest().starts_with(n) && c.rest()[n.len()..].trim_start().starts_with('('))
    else {
        return Ok(None);
    };
    c.eat_str(name);
    c.skip_ws();
    c.expect('(')?;
    let mut args = Vec::new();
    loop {
        c.skip_ws();
        if c.eat(')') {
            break;
        }
        if !args.is_empty() {
            c.expect(',')?;
            c.skip_ws();
        }
        args.push(match c.peek() {
            Some('$' | '@') => Arg::Path(path::parse_at(c)?),
            Some('\'' | '"') => Arg::Key(c.string_literal()?),
            _ => {
                let key = c.take_while(|ch| !ch.is_whitespace() && ch != ',' && ch != ')');
                if key.is_empty() {
                    return Err(c.error("expected a function argument"));
                }
                if f == CondFn::ValidEmail {
                    // SAP documents `isValidEmail(emails.value)`: a root-relative
                    // path whose steps apply to each array element.
                    let mut p = Path::parse(key)?;
                    p.lenient = true;
                    Arg::Path(p)
                } else {
                    Arg::Key(key.trim_matches('%').to_string())
                }
            }
        });
    }
    if args.len() != arity {
        return Err(c.error(format!("{name} takes {arity} argument(s), got {}", args.len())));
    }
    Ok(Some(Expr::Call(f, args)))
}

fn parse_operand(c: &mut Cursor) -> Result<Operand, SyntaxError> {
    c.node()?;
    match c.peek() {
        Some('$' | '@') => Ok(Operand::Path(path::parse_at(c)?)),
        Some('\'' | '"') => Ok(Operand::Lit(Value::String(c.string_literal()?))),
        Some('[') => Ok(Operand::Lit(parse_list(c)?)),
        Some(ch) if ch == '-' || ch.is_ascii_digit() => c
            .number()
            .map(|n| Operand::Lit(Value::Number(n)))
            .ok_or_else(|| c.error("invalid number")),
        _ => {
            for (word, v) in [
                ("true", Value::Bool(true)),
                ("false", Value::Bool(false)),
                ("null", Value::Null),
            ] {
                if c.eat_keyword(word) {
                    return Ok(Operand::Lit(v));
                }
            }
            Err(c.error("expected a path, a literal or a condition function"))
        }
    }
}

fn parse_list(c: &mut Cursor) -> Result<Value, SyntaxError> {
    c.enter()?;
    c.expect('[')?;
    let mut items = Vec::new();
    loop {
        c.skip_ws();
        if c.eat(']') {
            c.leave();
            return Ok(Value::Array(items));
        }
        if !items.is_empty() {
            c.expect(',')?;
            c.skip_ws();
        }
        match parse_operand(c)? {
            Operand::Lit(v) => items.push(v),
            Operand::Path(_) => return Err(c.error("a list may only hold literals")),
        }
    }
}

/// `/regex/flags` (or a quoted string). Jayway matches the whole value.
fn parse_regex_literal(c: &mut Cursor) -> Result<Regex, SyntaxError> {
    let start = c.error("");
    let (body, flags) = if c.eat('/') {
        let mut body = String::new();
        loop {
            match c.bump() {
                None => return Err(c.error("unterminated regex")),
                Some('\\') if c.peek() == Some('/') => {
                    c.bump();
                    body.push('/');
                }
                Some('\\') => {
                    body.push('\\');
                    if let Some(n) = c.bump() {
                        body.push(n);
                    }
                }
                Some('/') => break,
                Some(ch) => body.push(ch),
            }
        }
        let flags = c.take_while(|ch| matches!(ch, 'i' | 'm' | 's' | 'x' | 'u' | 'g'));
        (body, flags.replace(['g', 'u'], ""))
    } else {
        (c.string_literal()?, String::new())
    };
    let flags = if flags.is_empty() {
        String::new()
    } else {
        format!("(?{flags})")
    };
    compile_regex(&format!("{flags}^(?:{body})$")).map_err(|e| SyntaxError {
        message: e,
        offset: start.offset,
    })
}

/// Java's POSIX classes (US-ASCII only in Java), which Rust reads as
/// Unicode properties or rejects.
const JAVA_CLASSES: &[(&str, &str)] = &[
    ("Lower", "a-z"),
    ("Upper", "A-Z"),
    ("ASCII", "\\x00-\\x7F"),
    ("Alpha", "a-zA-Z"),
    ("Digit", "0-9"),
    ("Alnum", "a-zA-Z0-9"),
    ("Punct", "!-/:-@\\[-`{-~"),
    ("Graph", "!-~"),
    ("Print", " -~"),
    ("Blank", " \\t"),
    ("Cntrl", "\\x00-\\x1F\\x7F"),
    ("XDigit", "0-9a-fA-F"),
    ("Space", " \\t\\n\\x0B\\f\\r"),
];

/// Rewrites `\p{Punct}`-style Java classes into explicit character classes.
fn java_regex(re: &str) -> std::borrow::Cow<'_, str> {
    if !re.contains("\\p{") && !re.contains("\\P{") {
        return std::borrow::Cow::Borrowed(re);
    }
    let mut out = String::with_capacity(re.len() + 16);
    let mut rest = re;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let class = ["\\p{", "\\P{"].iter().find_map(|p| {
            let body = tail.strip_prefix(p)?;
            let end = body.find('}')?;
            let (_, set) = JAVA_CLASSES.iter().find(|(n, _)| *n == &body[..end])?;
            Some((p.ends_with("P{"), *set, p.len() + end + 1))
        });
        match class {
            Some((negated, set, len)) => {
                out.push_str(if negated { "[^" } else { "[" });
                out.push_str(set);
                out.push(']');
                rest = &tail[len..];
            }
            None => {
                // Keep the escape and the escaped character together.
                let esc_len = tail[1..].chars().next().map_or(1, |c| 1 + c.len_utf8());
                out.push_str(&tail[..esc_len]);
                rest = &tail[esc_len..];
            }
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// Compiles a Java-style regex (atomic groups, look-around supported).
pub(crate) fn compile_regex(re: &str) -> Result<Regex, String> {
    fancy_regex::RegexBuilder::new(&java_regex(re))
        .backtrack_limit(100_000)
        .build()
        .map_err(|e| format!("invalid regex: {e}"))
}

impl Expr {
    /// For `[?(@.key)]`: the key (used by the target-side array builder).
    pub(crate) fn existence_key(&self) -> Option<&str> {
        match self {
            Expr::Exists(Operand::Path(p)) if p.root == Root::Current && p.func.is_none() => match p.segs.as_slice() {
                [Seg::Key(k)] => Some(k),
                _ => None,
            },
            _ => None,
        }
    }

    /// Evaluates with `doc` as `$` and `current` as `@`.
    pub(crate) fn eval(&self, doc: &Value, current: Option<&Value>, env: &Env) -> bool {
        match self {
            Expr::Or(a, b) => a.eval(doc, current, env) || b.eval(doc, current, env),
            Expr::And(a, b) => a.eval(doc, current, env) && b.eval(doc, current, env),
            Expr::Not(a) => !a.eval(doc, current, env),
            Expr::Cmp(l, op, r) => {
                let l = l.eval(doc, current, env);
                let r = r.eval(doc, current, env);
                compare(&l, *op, &r)
            }
            Expr::Regex(l, re) => {
                let matches = |v: &Value| match v {
                    Value::String(s) => re.is_match(s).unwrap_or(false),
                    Value::Number(n) => re.is_match(&n.to_string()).unwrap_or(false),
                    Value::Bool(b) => re.is_match(&b.to_string()).unwrap_or(false),
                    _ => false,
                };
                match l.eval(doc, current, env) {
                    V::Ref(Value::Array(a)) => a.iter().any(matches),
                    V::Owned(Value::Array(a)) => a.iter().any(matches),
                    V::Ref(v) => matches(v),
                    V::Owned(v) => matches(&v),
                    V::List(l) => l.into_iter().any(matches),
                    V::Missing => false,
                }
            }
            Expr::Empty(l, want) => is_empty(&l.eval(doc, current, env)) == *want,
            Expr::Exists(o) => match o {
                Operand::Lit(v) => truthy(v),
                Operand::Path(_) => match o.eval(doc, current, env) {
                    V::Missing => false,
                    V::List(l) => !l.is_empty(),
                    _ => true,
                },
            },
            Expr::Call(f, args) => call(*f, args, doc, current, env),
        }
    }
}

impl Operand {
    fn eval<'a>(&'a self, doc: &'a Value, current: Option<&'a Value>, env: &Env) -> V<'a> {
        match self {
            Operand::Path(p) => p.eval(doc, current, env),
            Operand::Lit(v) => V::Ref(v),
        }
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        _ => true,
    }
}

/// SAP's `EMPTY`: missing, null, "", [] and {} are empty.
fn is_empty(v: &V) -> bool {
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    match v {
        V::Missing => true,
        V::Ref(v) => empty(v),
        V::Owned(v) => empty(v),
        V::List(l) => l.iter().all(|v| v.is_null()),
    }
}

/// A comparable view: `None` is missing or null.
enum Cv<'a> {
    One(Option<&'a Value>),
    Many(Vec<&'a Value>),
}

fn view<'a>(v: &'a V<'a>) -> Cv<'a> {
    match v {
        V::Missing => Cv::One(None),
        V::Ref(Value::Null) | V::Owned(Value::Null) => Cv::One(None),
        V::Ref(Value::Array(a)) => Cv::Many(a.iter().collect()),
        V::Owned(Value::Array(a)) => Cv::Many(a.iter().collect()),
        V::Ref(v) => Cv::One(Some(v)),
        V::Owned(v) => Cv::One(Some(v)),
        V::List(l) => Cv::Many(l.clone()),
    }
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn order(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn many_eq(a: &[&Value], b: &[&Value]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| json_eq(x, y))
}

/// A one-element result of an indefinite path compares like its element
/// (users write `$.emails[?(@.primary == true)].value == 'a@b.c'`).
fn single<'a>(c: Cv<'a>) -> Option<Option<&'a Value>> {
    match c {
        Cv::One(v) => Some(v),
        Cv::Many(m) if m.len() == 1 => Some(Some(m[0])),
        Cv::Many(_) => None,
    }
}

fn compare(l: &V, op: Op, r: &V) -> bool {
    use std::cmp::Ordering::*;
    let (lv, rv) = (view(l), view(r));
    let unwrap = single;
    match op {
        Op::Eq | Op::Ne => {
            let eq = match (&lv, &rv) {
                (Cv::Many(a), Cv::Many(b)) => many_eq(a, b),
                _ => match (unwrap(lv), unwrap(rv)) {
                    (Some(None), Some(None)) => true,
                    (Some(Some(a)), Some(Some(b))) => json_eq(a, b),
                    _ => false,
                },
            };
            eq == (op == Op::Eq)
        }
        Op::Lt | Op::Le | Op::Gt | Op::Ge => match (unwrap(lv), unwrap(rv)) {
            (Some(Some(a)), Some(Some(b))) => match order(a, b) {
                Some(o) => match op {
                    Op::Lt => o == Less,
                    Op::Le => o != Greater,
                    Op::Gt => o == Greater,
                    _ => o != Less,
                },
                None => false,
            },
            _ => false,
        },
        Op::Contains => match (l, unwrap(rv)) {
            (V::Ref(Value::String(s)), Some(Some(Value::String(n)))) => s.contains(n.as_str()),
            (V::Owned(Value::String(s)), Some(Some(Value::String(n)))) => s.contains(n.as_str()),
            (_, Some(Some(needle))) => match view(l) {
                Cv::Many(m) => m.iter().any(|v| json_eq(v, needle)),
                Cv::One(_) => false,
            },
            _ => false,
        },
        Op::In | Op::Nin => {
            let list = match rv {
                Cv::Many(m) => m,
                Cv::One(Some(v)) => vec![v],
                Cv::One(None) => vec![],
            };
            let found = match unwrap(lv) {
                Some(Some(v)) => list.iter().any(|x| json_eq(x, v)),
                Some(None) => list.iter().any(|x| x.is_null()),
                None => false,
            };
            found == (op == Op::In)
        }
        Op::AnyOf | Op::NoneOf | Op::SubsetOf => {
            let (Cv::Many(a), Cv::Many(b)) = (lv, rv) else {
                return false;
            };
            let in_b = |x: &&Value| b.iter().any(|y| json_eq(x, y));
            match op {
                Op::AnyOf => a.iter().any(in_b),
                Op::NoneOf => !a.iter().any(in_b),
                _ => a.iter().all(in_b),
            }
        }
        Op::Size => {
            let len = match l {
                V::Ref(Value::Array(a)) => a.len(),
                V::Owned(Value::Array(a)) => a.len(),
                V::Ref(Value::String(s)) => s.chars().count(),
                V::Owned(Value::String(s)) => s.chars().count(),
                V::List(l) => l.len(),
                _ => return false,
            };
            matches!(unwrap(rv), Some(Some(Value::Number(n))) if n.as_u64() == Some(len as u64))
        }
    }
}

/// The e-mail pattern SAP documents for `isValidEmail` (Java syntax; the
/// typographic quote in the published text is a rendering of `'`).
static EMAIL: LazyLock<Option<Regex>> = LazyLock::new(|| {
    compile_regex(
        "^(?:[a-zA-Z0-9!#$%&'\u{2018}*+/=?^_`{|}~-]+(?>\\.[a-zA-Z0-9!#$%&'\u{2018}*+/=?^_`{|}~-]+)*@(?>[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]?\\.)+[a-zA-Z0-9](?>[a-zA-Z0-9-]*[a-zA-Z0-9])?)$",
    )
    .ok()
});

const SAP_GROUP: &str = "urn:ietf:params:scim:schemas:extension:sap:2.0:Group";

/// Strings an argument path yields (arrays flattened).
fn strings<'a>(v: V<'a>) -> Vec<String> {
    let one = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match v {
        V::Missing => vec![],
        V::Ref(Value::Array(a)) => a.iter().filter_map(one).collect(),
        V::Owned(Value::Array(a)) => a.iter().filter_map(one).collect(),
        V::Ref(v) => one(v).into_iter().collect(),
        V::Owned(v) => one(&v).into_iter().collect(),
        V::List(l) => l
            .into_iter()
            .flat_map(|v| match v {
                Value::Array(a) => a.iter().filter_map(one).collect::<Vec<_>>(),
                v => one(v).into_iter().collect(),
            })
            .collect(),
    }
}

fn call(f: CondFn, args: &[Arg], doc: &Value, current: Option<&Value>, env: &Env) -> bool {
    let path_values = |i: usize| match args.get(i) {
        Some(Arg::Path(p)) => strings(p.eval(doc, current, env)),
        _ => vec![],
    };
    let property = |i: usize| match args.get(i) {
        Some(Arg::Key(k)) => env.property(k).filter(|v| !v.is_empty()),
        _ => None,
    };
    let group_attr = |name: &str| doc.get(SAP_GROUP).and_then(|g| g.get(name)).filter(|v| !v.is_null());
    match f {
        // Every value the path yields must be an e-mail; no value is invalid.
        CondFn::ValidEmail => {
            let vals = path_values(0);
            let Some(re) = EMAIL.as_ref() else {
                return false;
            };
            !vals.is_empty() && vals.iter().all(|v| re.is_match(v).unwrap_or(false))
        }
        CondFn::ApplicationSpecificGroup => match (env.property("ips.application.id"), group_attr("applicationId")) {
            (Some(id), Some(Value::String(app))) => !id.is_empty() && id == app,
            _ => false,
        },
        CondFn::RegularGroup => group_attr("supportedOperations").is_none() || group_attr("applicationId").is_none(),
        // Docs: true when the attribute or the property is missing, or the value has the prefix.
        CondFn::OptionalPrefix => {
            let vals = path_values(0);
            match property(1) {
                None => true,
                Some(prefix) => vals.is_empty() || vals.iter().any(|v| v.starts_with(prefix)),
            }
        }
        // For several values (a list), one with the prefix is enough.
        CondFn::MandatoryPrefix => {
            let vals = path_values(0);
            match property(1) {
                None => false,
                Some(prefix) => vals.iter().any(|v| v.starts_with(prefix)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_posix_classes() {
        assert_eq!(java_regex("[\\s\\p{Punct}]"), "[\\s[!-/:-@\\[-`{-~]]");
        assert_eq!(java_regex("\\P{Digit}+"), "[^0-9]+");
        assert_eq!(java_regex("\\\\p{Punct}"), "\\\\p{Punct}");
        assert_eq!(java_regex("\\p{L}"), "\\p{L}");
        let re = compile_regex("[\\s\\p{Punct}]").expect("regex");
        assert_eq!(re.replace_all("a b$c+d", "_"), "a_b_c_d");
    }
}
