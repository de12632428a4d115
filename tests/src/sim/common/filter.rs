//! A SCIM filter parser and evaluator (RFC 7644 §3.4.2.2) over `serde_json::Value` resources.
//!
//! Each system accepts a subset of the grammar; [`Dialect`] says which, and [`parse`] rejects
//! the rest with a message the simulator wraps into the system's own error body.

use serde_json::Value;

use super::time::parse_iso;

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn from_word(w: &str) -> Option<Op> {
        Some(match w.to_ascii_lowercase().as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Co => "co",
            Op::Sw => "sw",
            Op::Ew => "ew",
            Op::Gt => "gt",
            Op::Ge => "ge",
            Op::Lt => "lt",
            Op::Le => "le",
        }
    }
}

/// An attribute path: an optional schema URN and dotted attribute names.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AttrPath {
    pub schema: Option<String>,
    pub names: Vec<String>,
}

impl AttrPath {
    /// Parses `name.sub` or `urn:…:Schema:name.sub`.
    pub(crate) fn parse(s: &str) -> Option<AttrPath> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        let (schema, rest) = if s.len() > 4 && s[..4].eq_ignore_ascii_case("urn:") {
            let idx = s.rfind(':')?;
            (Some(s[..idx].to_string()), &s[idx + 1..])
        } else {
            (None, s)
        };
        let names: Vec<String> = rest.split('.').map(str::to_string).collect();
        let valid = |n: &String| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
        };
        if names.is_empty() || !names.iter().all(valid) {
            return None;
        }
        Some(AttrPath { schema, names })
    }

    /// The dotted attribute name without schema, lower-cased (`name.givenname`).
    pub(crate) fn dotted_lower(&self) -> String {
        self.names.join(".").to_ascii_lowercase()
    }
}

/// A parsed filter.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Present(AttrPath),
    Compare(AttrPath, Op, Value),
    /// `emails[type eq "work"]`: some element of the multi-valued attribute matches.
    ValuePath(AttrPath, Box<Filter>),
}

/// What a system's filter implementation accepts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dialect {
    pub ops: &'static [Op],
    pub present: bool,
    pub and: bool,
    pub or: bool,
    pub not: bool,
    pub parens: bool,
    pub value_paths: bool,
}

impl Dialect {
    /// The full RFC 7644 grammar.
    pub(crate) const FULL: Dialect = Dialect {
        ops: &[Op::Eq, Op::Ne, Op::Co, Op::Sw, Op::Ew, Op::Gt, Op::Ge, Op::Lt, Op::Le],
        present: true,
        and: true,
        or: true,
        not: true,
        parens: true,
        value_paths: true,
    };
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Str(String),
    Word(String),
}

fn tokenize(input: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            '[' => {
                out.push(Tok::LBracket);
                i += 1
            }
            ']' => {
                out.push(Tok::RBracket);
                i += 1
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    let Some(&ch) = chars.get(i) else {
                        return Err("unterminated string literal".into());
                    };
                    i += 1;
                    match ch {
                        '"' => break,
                        '\\' => {
                            let Some(&esc) = chars.get(i) else {
                                return Err("unterminated escape".into());
                            };
                            i += 1;
                            match esc {
                                'n' => s.push('\n'),
                                't' => s.push('\t'),
                                'r' => s.push('\r'),
                                'u' => {
                                    let hex: String = chars.get(i..i + 4).unwrap_or(&[]).iter().collect();
                                    let code =
                                        u32::from_str_radix(&hex, 16).map_err(|_| "bad \\u escape".to_string())?;
                                    s.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                                    i += 4;
                                }
                                other => s.push(other),
                            }
                        }
                        other => s.push(other),
                    }
                }
                out.push(Tok::Str(s));
            }
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !"()[]\"".contains(chars[i]) {
                    i += 1;
                }
                out.push(Tok::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    dialect: &'a Dialect,
}

fn is_kw(t: Option<&Tok>, kw: &str) -> bool {
    matches!(t, Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expr(&mut self) -> Result<Filter, String> {
        let mut left = self.term()?;
        while is_kw(self.peek(), "or") {
            if !self.dialect.or {
                return Err("the 'or' operator is not supported".into());
            }
            self.pos += 1;
            let right = self.term()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Filter, String> {
        let mut left = self.factor()?;
        while is_kw(self.peek(), "and") {
            if !self.dialect.and {
                return Err("the 'and' operator is not supported".into());
            }
            self.pos += 1;
            let right = self.factor()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn factor(&mut self) -> Result<Filter, String> {
        match self.next() {
            Some(Tok::LParen) => {
                if !self.dialect.parens {
                    return Err("parentheses are not supported".into());
                }
                let inner = self.expr()?;
                match self.next() {
                    Some(Tok::RParen) => Ok(inner),
                    _ => Err("missing ')'".into()),
                }
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("not") && self.peek() == Some(&Tok::LParen) => {
                if !self.dialect.not {
                    return Err("the 'not' operator is not supported".into());
                }
                self.pos += 1;
                let inner = self.expr()?;
                match self.next() {
                    Some(Tok::RParen) => Ok(Filter::Not(Box::new(inner))),
                    _ => Err("missing ')'".into()),
                }
            }
            Some(Tok::Word(w)) => {
                let path = AttrPath::parse(&w).ok_or_else(|| format!("invalid attribute path '{w}'"))?;
                if self.peek() == Some(&Tok::LBracket) {
                    if !self.dialect.value_paths {
                        return Err("value path filters ([...]) are not supported".into());
                    }
                    self.pos += 1;
                    let inner = self.expr()?;
                    return match self.next() {
                        Some(Tok::RBracket) => Ok(Filter::ValuePath(path, Box::new(inner))),
                        _ => Err("missing ']'".into()),
                    };
                }
                let op_word = match self.next() {
                    Some(Tok::Word(op)) => op,
                    _ => return Err(format!("missing operator after '{w}'")),
                };
                if op_word.eq_ignore_ascii_case("pr") {
                    if !self.dialect.present {
                        return Err("the 'pr' operator is not supported".into());
                    }
                    return Ok(Filter::Present(path));
                }
                let op = Op::from_word(&op_word).ok_or_else(|| format!("unknown operator '{op_word}'"))?;
                if !self.dialect.ops.contains(&op) {
                    return Err(format!("the '{}' operator is not supported", op.name()));
                }
                let value = match self.next() {
                    Some(Tok::Str(s)) => Value::String(s),
                    Some(Tok::Word(v)) => match v.to_ascii_lowercase().as_str() {
                        "true" => Value::Bool(true),
                        "false" => Value::Bool(false),
                        "null" => Value::Null,
                        _ => match serde_json::from_str::<serde_json::Number>(&v) {
                            Ok(n) => Value::Number(n),
                            Err(_) => return Err(format!("invalid comparison value '{v}'")),
                        },
                    },
                    _ => return Err(format!("missing comparison value after '{w} {op_word}'")),
                };
                Ok(Filter::Compare(path, op, value))
            }
            Some(t) => Err(format!("unexpected token {t:?}")),
            None => Err("unexpected end of filter".into()),
        }
    }
}

/// Parses `input` under `dialect`. The error is a human-readable reason.
pub(crate) fn parse(input: &str, dialect: &Dialect) -> Result<Filter, String> {
    let toks = tokenize(input)?;
    if toks.is_empty() {
        return Err("empty filter".into());
    }
    let mut p = Parser { toks, pos: 0, dialect };
    let f = p.expr()?;
    if p.pos < p.toks.len() {
        return Err(format!("unexpected trailing input at token {}", p.pos + 1));
    }
    Ok(f)
}

/// Case-insensitive key lookup in an object.
pub(crate) fn get_ci<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    let map = obj.as_object()?;
    map.get(key)
        .or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

/// Resolves `path` in `resource`, flattening multi-valued attributes.
pub(crate) fn resolve<'a>(resource: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let root = match &path.schema {
        Some(urn) => match get_ci(resource, urn) {
            Some(ext) => ext,
            // The core schema URN prefixes top-level attributes.
            None if urn.to_ascii_lowercase().contains(":core:") => resource,
            None => return Vec::new(),
        },
        None => resource,
    };
    let mut current = vec![root];
    for name in &path.names {
        let mut next = Vec::new();
        for v in current {
            match v {
                Value::Array(items) => {
                    for item in items {
                        if let Some(x) = get_ci(item, name) {
                            next.push(x);
                        }
                    }
                }
                other => {
                    if let Some(x) = get_ci(other, name) {
                        next.push(x);
                    }
                }
            }
        }
        current = next;
    }
    let mut flat = Vec::new();
    for v in current {
        match v {
            Value::Array(items) => flat.extend(items.iter()),
            other => flat.push(other),
        }
    }
    flat
}

/// Evaluation settings: which attributes compare case-sensitively.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Eval<'a> {
    /// Lower-cased dotted attribute names that are `caseExact`.
    pub case_exact: &'a [&'a str],
}

fn compare_values(actual: &Value, op: Op, expected: &Value, case_exact: bool) -> bool {
    // A complex value compares through its `value` sub-attribute (RFC 7644 §3.4.2.2).
    let actual = match actual {
        Value::Object(_) => match get_ci(actual, "value") {
            Some(v) => v,
            None => return false,
        },
        other => other,
    };
    match (actual, expected) {
        (Value::String(a), Value::String(e)) => {
            let (a_l, e_l) = if case_exact {
                (a.clone(), e.clone())
            } else {
                (a.to_lowercase(), e.to_lowercase())
            };
            match op {
                Op::Eq => a_l == e_l,
                Op::Ne => a_l != e_l,
                Op::Co => a_l.contains(&e_l),
                Op::Sw => a_l.starts_with(&e_l),
                Op::Ew => a_l.ends_with(&e_l),
                Op::Gt | Op::Ge | Op::Lt | Op::Le => {
                    let ord = match (parse_iso(a), parse_iso(e)) {
                        (Some(x), Some(y)) => x.cmp(&y),
                        _ => a_l.cmp(&e_l),
                    };
                    ordering_matches(ord, op)
                }
            }
        }
        (Value::Number(a), Value::Number(e)) => {
            let (Some(a), Some(e)) = (a.as_f64(), e.as_f64()) else {
                return false;
            };
            match a.partial_cmp(&e) {
                Some(ord) => match op {
                    Op::Eq | Op::Ne | Op::Gt | Op::Ge | Op::Lt | Op::Le => ordering_matches(ord, op),
                    _ => false,
                },
                None => false,
            }
        }
        (Value::Bool(a), Value::Bool(e)) => match op {
            Op::Eq => a == e,
            Op::Ne => a != e,
            _ => false,
        },
        // Lenient: "true"/"false" and numbers given as strings, as many servers accept.
        (Value::Bool(a), Value::String(e)) => match op {
            Op::Eq => e.eq_ignore_ascii_case(if *a { "true" } else { "false" }),
            Op::Ne => !e.eq_ignore_ascii_case(if *a { "true" } else { "false" }),
            _ => false,
        },
        (Value::Number(a), Value::String(e)) => match e.parse::<serde_json::Number>() {
            Ok(n) => compare_values(&Value::Number(a.clone()), op, &Value::Number(n), case_exact),
            Err(_) => false,
        },
        (Value::String(a), Value::Number(e)) => match a.parse::<serde_json::Number>() {
            Ok(n) => compare_values(&Value::Number(n), op, &Value::Number(e.clone()), case_exact),
            Err(_) => false,
        },
        (Value::Null, Value::Null) => op == Op::Eq,
        _ => op == Op::Ne,
    }
}

fn ordering_matches(ord: std::cmp::Ordering, op: Op) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::Eq => ord == Equal,
        Op::Ne => ord != Equal,
        Op::Gt => ord == Greater,
        Op::Ge => ord != Less,
        Op::Lt => ord == Less,
        Op::Le => ord != Greater,
        _ => false,
    }
}

fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

impl Filter {
    /// The value `v` when every match must satisfy `attr eq "v"` (the filter is that comparison
    /// or an `and` containing it): lets a simulator narrow candidates before rendering them.
    pub(crate) fn required_eq(&self, attr: &str) -> Option<&str> {
        match self {
            Filter::Compare(path, Op::Eq, Value::String(s)) if path.dotted_lower() == attr.to_ascii_lowercase() => {
                Some(s)
            }
            Filter::And(a, b) => a.required_eq(attr).or_else(|| b.required_eq(attr)),
            _ => None,
        }
    }

    /// Whether `resource` matches.
    pub(crate) fn matches(&self, resource: &Value, eval: &Eval<'_>) -> bool {
        match self {
            Filter::And(a, b) => a.matches(resource, eval) && b.matches(resource, eval),
            Filter::Or(a, b) => a.matches(resource, eval) || b.matches(resource, eval),
            Filter::Not(a) => !a.matches(resource, eval),
            Filter::Present(path) => resolve(resource, path).into_iter().any(is_present),
            Filter::Compare(path, op, expected) => {
                let values = resolve(resource, path);
                let exact = eval.case_exact.contains(&path.dotted_lower().as_str());
                if values.is_empty() {
                    return *op == Op::Ne || (*op == Op::Eq && expected.is_null());
                }
                if *op == Op::Ne {
                    return values.iter().all(|v| compare_values(v, Op::Ne, expected, exact));
                }
                values.iter().any(|v| compare_values(v, *op, expected, exact))
            }
            Filter::ValuePath(path, inner) => resolve(resource, path)
                .into_iter()
                .any(|element| inner.matches(element, eval)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Value {
        json!({
            "id": "abc",
            "userName": "Jane.Doe",
            "name": {"givenName": "Jane", "familyName": "Doe"},
            "emails": [{"value": "jane@example.com", "type": "work", "primary": true},
                       {"value": "jd@home.org", "type": "home"}],
            "active": true,
            "meta": {"lastModified": "2026-01-02T03:04:05.678Z", "version": 3},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "42"}
        })
    }

    fn m(f: &str) -> bool {
        parse(f, &Dialect::FULL).expect(f).matches(&user(), &Eval::default())
    }

    #[test]
    fn operators() {
        assert!(m(r#"userName eq "jane.doe""#));
        assert!(m(r#"USERNAME Eq "JANE.DOE""#));
        assert!(!m(r#"userName ne "jane.doe""#));
        assert!(m(r#"userName co "e.d""#));
        assert!(m(r#"userName sw "jan""#));
        assert!(m(r#"userName ew "doe""#));
        assert!(m("name.givenName pr"));
        assert!(!m("externalId pr"));
        assert!(m(r#"emails.value eq "jd@home.org""#));
        assert!(m(r#"emails eq "jd@home.org""#));
        assert!(m(r#"emails[type eq "work" and value co "jane"]"#));
        assert!(!m(r#"emails[type eq "home" and value co "jane"]"#));
        assert!(m(r#"meta.lastModified gt "2026-01-02T03:04:05Z""#));
        assert!(!m(r#"meta.lastModified gt "2026-01-02T03:04:06Z""#));
        assert!(m("meta.version ge 3"));
        assert!(m("active eq true"));
        assert!(m(
            r#"not (active eq false) and (userName eq "x" or name.familyName eq "doe")"#
        ));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "42""#
        ));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "jane.doe""#
        ));
    }

    #[test]
    fn errors_and_dialects() {
        for bad in [
            "",
            "userName",
            "userName eq",
            "userName xx \"a\"",
            "(userName eq \"a\"",
            "userName eq \"a",
            "a eq b c",
        ] {
            assert!(parse(bad, &Dialect::FULL).is_err(), "{bad}");
        }
        let eq_only = Dialect {
            ops: &[Op::Eq],
            not: false,
            value_paths: false,
            ..Dialect::FULL
        };
        assert!(parse(r#"userName co "a""#, &eq_only).is_err());
        assert!(parse(r#"not (userName eq "a")"#, &eq_only).is_err());
        assert!(parse(r#"(userName eq "a" or userName eq "b") and active eq true"#, &eq_only).is_ok());
    }

    #[test]
    fn case_exact() {
        let f = parse(r#"id eq "ABC""#, &Dialect::FULL).unwrap();
        assert!(f.matches(&user(), &Eval::default()));
        assert!(!f.matches(&user(), &Eval { case_exact: &["id"] }));
    }
}
