//! SCIM filters (RFC 7644 §3.4.2.2): parsed once into a tree, evaluated against SCIM-shaped JSON resources.
//!
//! The grammar is small and the maintained Rust crates for it either lack value paths and `not` or pull in
//! a parser framework, so the parser is ours: a tokenizer plus a precedence-climbing parser
//! (`not` binds tighter than `and`, which binds tighter than `or`; parentheses group). Attribute names and
//! operators match case-insensitively; string comparisons ignore case unless the schema says the attribute
//! is `caseExact` (the [`Rules`] passed in say so). SAP's positional form `emails[0].value` is accepted too.
//!
//! ```
//! use provisio_scim::{Filter, Schemaless};
//! use serde_json::json;
//! let f = Filter::parse(r#"emails[type eq "work" and value co "@example.com"]"#).unwrap();
//! let user = json!({"emails": [{"type": "work", "value": "bjensen@example.com"}]});
//! assert!(f.matches(&user, &Schemaless::default()));
//! ```

use std::cmp::Ordering;

use serde_json::Value;

pub use crate::path::AttrPath;
use crate::path::valid_name;
pub use crate::rules::Rules;
use crate::time::parse_time;

/// Deepest nesting of parentheses and `not` accepted; deeper input is refused rather than risking the stack.
const MAX_DEPTH: usize = 64;
/// Longest filter text accepted.
pub const MAX_FILTER_LEN: usize = 8 * 1024;

/// Why a filter or path does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// equal
    Eq,
    /// not equal
    Ne,
    /// contains
    Co,
    /// starts with
    Sw,
    /// ends with
    Ew,
    /// greater than
    Gt,
    /// greater or equal
    Ge,
    /// less than
    Lt,
    /// less or equal
    Le,
}

impl CompareOp {
    fn parse(word: &str) -> Option<CompareOp> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return None,
        })
    }
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `attr op value`.
    Compare(AttrPath, CompareOp, Value),
    /// `attr pr`.
    Present(AttrPath),
    /// `a and b`.
    And(Box<Filter>, Box<Filter>),
    /// `a or b`.
    Or(Box<Filter>, Box<Filter>),
    /// `not (a)`.
    Not(Box<Filter>),
    /// `attr[filter]`: some element of the multi-valued `attr` matches `filter`.
    ValuePath(AttrPath, Box<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Value(Value),
    Open,
    Close,
    OpenBracket,
    CloseBracket,
}

fn tokenize(text: &str) -> Result<Vec<Token>, FilterError> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            '[' => {
                tokens.push(Token::OpenBracket);
                i += 1;
            }
            ']' => {
                tokens.push(Token::CloseBracket);
                i += 1;
            }
            '"' => {
                // A JSON string literal: find its end honouring escapes, then let serde_json decode it.
                let start = i;
                i += 1;
                let mut closed = false;
                while i < chars.len() {
                    match chars[i] {
                        '\\' => i += 2,
                        '"' => {
                            closed = true;
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
                if !closed {
                    return Err(FilterError("a string is not closed".into()));
                }
                let literal: String = chars[start..i.min(chars.len())].iter().collect();
                let value: Value = serde_json::from_str(&literal)
                    .map_err(|_| FilterError(format!("{literal} is not a valid JSON string")))?;
                tokens.push(Token::Value(value));
            }
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !"()[]\"".contains(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

/// A literal word (`true`, `false`, `null`, a number) as a comparison value.
fn literal(word: &str) -> Option<Value> {
    match word {
        "true" => Some(Value::Bool(true)),
        "false" => Some(Value::Bool(false)),
        "null" => Some(Value::Null),
        _ => serde_json::from_str::<serde_json::Number>(word).ok().map(Value::Number),
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(keyword))
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FilterError("the filter is nested too deeply".into()));
        }
        Ok(())
    }

    fn or(&mut self, in_brackets: bool) -> Result<Filter, FilterError> {
        let mut left = self.and(in_brackets)?;
        while self.peek_keyword("or") {
            self.pos += 1;
            let right = self.and(in_brackets)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, in_brackets: bool) -> Result<Filter, FilterError> {
        let mut left = self.unary(in_brackets)?;
        while self.peek_keyword("and") {
            self.pos += 1;
            let right = self.unary(in_brackets)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, in_brackets: bool) -> Result<Filter, FilterError> {
        self.enter()?;
        let result = self.unary_inner(in_brackets);
        self.depth -= 1;
        result
    }

    fn unary_inner(&mut self, in_brackets: bool) -> Result<Filter, FilterError> {
        if self.peek_keyword("not") && matches!(self.tokens.get(self.pos + 1), Some(Token::Open)) {
            self.pos += 2;
            let inner = self.or(in_brackets)?;
            self.expect_close()?;
            return Ok(Filter::Not(Box::new(inner)));
        }
        match self.next() {
            Some(Token::Open) => {
                let inner = self.or(in_brackets)?;
                self.expect_close()?;
                Ok(inner)
            }
            Some(Token::Word(word)) => {
                let path = AttrPath::parse(&word)?;
                if matches!(self.peek(), Some(Token::OpenBracket)) {
                    if in_brackets {
                        return Err(FilterError("value filters cannot be nested".into()));
                    }
                    if path.sub.is_some() {
                        return Err(FilterError(format!(
                            "`{word}[…]`: a value filter follows an attribute, not a sub-attribute"
                        )));
                    }
                    self.pos += 1;
                    if let Some(indexed) = self.indexed(&path)? {
                        return self.comparison(indexed, &word);
                    }
                    let inner = self.or(true)?;
                    match self.next() {
                        Some(Token::CloseBracket) => {}
                        _ => return Err(FilterError(format!("`{word}[`: missing `]`"))),
                    }
                    return Ok(Filter::ValuePath(path, Box::new(inner)));
                }
                self.comparison(path, &word)
            }
            Some(other) => Err(FilterError(format!("unexpected {}", describe(&other)))),
            None => Err(FilterError("the filter ends too early".into())),
        }
    }

    /// SAP's positional form `emails[0].value`: after `attr[`, an index, `]` and a `.sub` word.
    fn indexed(&mut self, path: &AttrPath) -> Result<Option<AttrPath>, FilterError> {
        let (Some(Token::Word(n)), Some(Token::CloseBracket)) = (self.peek(), self.tokens.get(self.pos + 1)) else {
            return Ok(None);
        };
        let Ok(index) = n.parse::<usize>() else { return Ok(None) };
        self.pos += 2;
        let mut indexed = path.clone();
        indexed.index = Some(index);
        if let Some(Token::Word(w)) = self.peek()
            && let Some(sub) = w.strip_prefix('.')
        {
            if !valid_name(sub) {
                return Err(FilterError(format!("`{w}` is not a sub-attribute")));
            }
            indexed.sub = Some(sub.to_string());
            self.pos += 1;
        }
        Ok(Some(indexed))
    }

    /// The operator and value after an attribute path.
    fn comparison(&mut self, path: AttrPath, word: &str) -> Result<Filter, FilterError> {
        let op = match self.next() {
            Some(Token::Word(op)) => op,
            _ => return Err(FilterError(format!("`{word}` must be followed by an operator"))),
        };
        if op.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(path));
        }
        let op = CompareOp::parse(&op).ok_or_else(|| FilterError(format!("`{op}` is not a SCIM operator")))?;
        let value = match self.next() {
            Some(Token::Value(v)) => v,
            Some(Token::Word(w)) => {
                literal(&w).ok_or_else(|| FilterError(format!("`{w}` is not a value; quote strings")))?
            }
            _ => return Err(FilterError(format!("`{word}` needs a value to compare with"))),
        };
        Ok(Filter::Compare(path, op, value))
    }

    fn expect_close(&mut self) -> Result<(), FilterError> {
        match self.next() {
            Some(Token::Close) => Ok(()),
            _ => Err(FilterError("missing `)`".into())),
        }
    }
}

fn describe(t: &Token) -> String {
    match t {
        Token::Word(w) => format!("`{w}`"),
        Token::Value(v) => format!("value {v}"),
        Token::Open => "`(`".into(),
        Token::Close => "`)`".into(),
        Token::OpenBracket => "`[`".into(),
        Token::CloseBracket => "`]`".into(),
    }
}

impl Filter {
    /// Parses a filter expression.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        if text.len() > MAX_FILTER_LEN {
            return Err(FilterError(format!(
                "the filter is longer than {MAX_FILTER_LEN} characters"
            )));
        }
        let mut parser = Parser {
            tokens: tokenize(text)?,
            pos: 0,
            depth: 0,
        };
        if parser.tokens.is_empty() {
            return Err(FilterError("the filter is empty".into()));
        }
        let filter = parser.or(false)?;
        if let Some(t) = parser.peek() {
            return Err(FilterError(format!(
                "unexpected {} after a complete filter",
                describe(t)
            )));
        }
        Ok(filter)
    }

    /// Whether `resource` matches, under the attribute rules of its schema.
    pub fn matches(&self, resource: &Value, rules: &dyn Rules) -> bool {
        self.eval(resource, None, rules)
    }

    /// Whether one element of the multi-valued attribute `parent` matches (a value filter's inside).
    pub fn matches_element(&self, element: &Value, parent: &AttrPath, rules: &dyn Rules) -> bool {
        self.eval(element, Some(parent), rules)
    }

    /// `parent` is the attribute a value filter runs inside (`emails` in `emails[type eq "work"]`).
    fn eval(&self, node: &Value, parent: Option<&AttrPath>, rules: &dyn Rules) -> bool {
        match self {
            Filter::And(a, b) => a.eval(node, parent, rules) && b.eval(node, parent, rules),
            Filter::Or(a, b) => a.eval(node, parent, rules) || b.eval(node, parent, rules),
            Filter::Not(a) => !a.eval(node, parent, rules),
            Filter::Present(path) => values_at(node, path, parent, rules).iter().any(|v| present(v)),
            Filter::Compare(path, op, expected) => {
                let full = full_path(path, parent);
                let exact = rules.case_exact(&full);
                let temporal = rules.is_datetime(&full);
                let found = values_at(node, path, parent, rules);
                if matches!(op, CompareOp::Eq) && expected.is_null() {
                    return !found.iter().any(|v| present(v));
                }
                if matches!(op, CompareOp::Ne) && expected.is_null() {
                    return found.iter().any(|v| present(v));
                }
                if matches!(op, CompareOp::Ne) {
                    // `ne` holds when no value equals (an absent attribute is not equal to anything).
                    let lenient = rules.lenient_types();
                    return !found
                        .iter()
                        .any(|v| compare(v, CompareOp::Eq, expected, exact, temporal, lenient));
                }
                let lenient = rules.lenient_types();
                found
                    .iter()
                    .any(|v| compare(v, *op, expected, exact, temporal, lenient))
            }
            Filter::ValuePath(path, inner) => {
                let full = full_path(path, parent);
                let Some(attr) = rules.attribute(node, path) else {
                    return false;
                };
                match attr {
                    Value::Array(items) => items.iter().any(|item| inner.eval(item, Some(&full), rules)),
                    single @ Value::Object(_) => inner.eval(single, Some(&full), rules),
                    _ => false,
                }
            }
        }
    }
}

impl Filter {
    /// The value `v` when every match must satisfy `attr eq "v"` (the filter is that comparison, or an `and`
    /// holding it); `attr` is dotted (`userName`, `name.givenName`) and matches ignoring case. Lets a server
    /// narrow its candidates, or a proxy translate the lookup, before evaluating the whole filter.
    pub fn required_eq(&self, attr: &str) -> Option<&str> {
        match self {
            Filter::Compare(path, CompareOp::Eq, Value::String(s))
                if path.index.is_none() && path.dotted_lower() == attr.to_ascii_lowercase() =>
            {
                Some(s)
            }
            Filter::And(a, b) => a.required_eq(attr).or_else(|| b.required_eq(attr)),
            _ => None,
        }
    }

    /// Calls `f` on every node of the tree, depth first (a server checks what its dialect supports).
    pub fn walk(&self, f: &mut dyn FnMut(&Filter)) {
        f(self);
        match self {
            Filter::And(a, b) | Filter::Or(a, b) => {
                a.walk(f);
                b.walk(f);
            }
            Filter::Not(a) | Filter::ValuePath(_, a) => a.walk(f),
            Filter::Compare(..) | Filter::Present(_) => {}
        }
    }
}

/// The values `path` designates in `resource` (multi-valued attributes yield each element, or each
/// element's sub-attribute, or its `value` when the path names the attribute only).
pub fn values<'a>(resource: &'a Value, path: &AttrPath, rules: &dyn Rules) -> Vec<&'a Value> {
    values_at(resource, path, None, rules)
}

/// `path` inside a value filter on `parent` names the sub-attribute `parent.path`.
fn full_path(path: &AttrPath, parent: Option<&AttrPath>) -> AttrPath {
    match parent {
        Some(p) => AttrPath {
            urn: p.urn.clone(),
            name: p.name.clone(),
            sub: Some(path.name.clone()),
            index: None,
        },
        None => path.clone(),
    }
}

/// The values a path designates: inside a value filter `node` is one element; at the top the attribute is
/// resolved through the rules (URN prefixes); multi-valued attributes yield each element (or each element's
/// sub-attribute, or its `value` when the filter names the attribute only).
fn values_at<'a>(node: &'a Value, path: &AttrPath, parent: Option<&AttrPath>, rules: &dyn Rules) -> Vec<&'a Value> {
    let top = if parent.is_some() {
        get_ci(node, &path.name)
    } else {
        rules.attribute(node, path)
    };
    let Some(top) = top else { return vec![] };
    let sub = if parent.is_some() { None } else { path.sub.as_deref() };
    let mut out = Vec::new();
    let items: Vec<&Value> = match (top, path.index) {
        (Value::Array(items), Some(i)) => items.get(i).into_iter().collect(),
        (Value::Array(items), None) => items.iter().collect(),
        (other, None | Some(0)) => vec![other],
        (_, Some(_)) => vec![],
    };
    for item in items {
        match (sub, item) {
            (Some(s), Value::Object(_)) => {
                if let Some(v) = get_ci(item, s) {
                    out.push(v);
                }
            }
            (Some(_), _) => {}
            // A complex multi-valued attribute compared as a whole compares its `value`.
            (None, Value::Object(_)) => {
                if let Some(v) = get_ci(item, "value") {
                    out.push(v);
                }
            }
            (None, v) => out.push(v),
        }
    }
    out
}

/// The member of an object whose key equals `name` ignoring case.
pub fn get_ci<'a>(node: &'a Value, name: &str) -> Option<&'a Value> {
    let obj = node.as_object()?;
    obj.get(name)
        .or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

/// RFC 7644 `pr`: has a non-empty value.
fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn compare(actual: &Value, op: CompareOp, expected: &Value, exact: bool, temporal: bool, lenient: bool) -> bool {
    match (actual, expected) {
        (Value::String(a), Value::String(b)) => {
            let ordering = !matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew);
            if temporal
                && ordering
                && let (Some(x), Some(y)) = (parse_time(a), parse_time(b))
            {
                return ordered(x.cmp(&y), op);
            }
            let (a, b) = if exact {
                (a.clone(), b.clone())
            } else {
                (a.to_lowercase(), b.to_lowercase())
            };
            match op {
                CompareOp::Co => a.contains(&b),
                CompareOp::Sw => a.starts_with(&b),
                CompareOp::Ew => a.ends_with(&b),
                _ => ordered(a.cmp(&b), op),
            }
        }
        (Value::Number(a), Value::Number(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(a), Some(b)) => a.partial_cmp(&b).is_some_and(|o| ordered(o, op)),
            _ => false,
        },
        // Booleans only compare for equality (RFC 7644: gt/lt on booleans are not defined).
        (Value::Bool(a), Value::Bool(b)) => matches!(op, CompareOp::Eq) && a == b,
        // Lenient rules: booleans and numbers given as strings, as many servers accept.
        (Value::Bool(a), Value::String(b)) if lenient => {
            matches!(op, CompareOp::Eq) && b.eq_ignore_ascii_case(if *a { "true" } else { "false" })
        }
        (Value::Number(_), Value::String(b)) if lenient => match b.trim().parse::<serde_json::Number>() {
            Ok(n) => compare(actual, op, &Value::Number(n), exact, temporal, false),
            Err(_) => false,
        },
        (Value::String(a), Value::Number(_)) if lenient => match a.trim().parse::<serde_json::Number>() {
            Ok(n) => compare(&Value::Number(n), op, expected, exact, temporal, false),
            Err(_) => false,
        },
        _ => false,
    }
}

fn ordered(o: Ordering, op: CompareOp) -> bool {
    match op {
        CompareOp::Eq => o == Ordering::Equal,
        CompareOp::Ne => o != Ordering::Equal,
        CompareOp::Gt => o == Ordering::Greater,
        CompareOp::Ge => o != Ordering::Less,
        CompareOp::Lt => o == Ordering::Less,
        CompareOp::Le => o != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

/// A SCIM filter string literal: `"…"` with `"` and `\` escaped.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// AND-combines filters, skipping absent and blank ones; each is parenthesised when there are several.
/// `None` when none is left.
pub fn and_filters<'a>(filters: impl IntoIterator<Item = Option<&'a str>>) -> Option<String> {
    let parts: Vec<&str> = filters
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect();
    match parts.as_slice() {
        [] => None,
        [one] => Some(one.to_string()),
        many => Some(many.iter().map(|f| format!("({f})")).collect::<Vec<_>>().join(" and ")),
    }
}

/// The delta-read filter: entities modified after `since` (`meta.lastModified gt "…"`).
pub fn modified_since(since: &str) -> String {
    format!("meta.lastModified gt {}", quote(since.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Plain;
    impl Rules for Plain {
        fn is_datetime(&self, path: &AttrPath) -> bool {
            path.name.eq_ignore_ascii_case("meta")
        }
        fn attribute<'a>(&self, resource: &'a Value, path: &AttrPath) -> Option<&'a Value> {
            match &path.urn {
                Some(urn) if urn.to_ascii_lowercase().contains(":extension:") => {
                    get_ci(get_ci(resource, urn)?, &path.name)
                }
                _ => get_ci(resource, &path.name),
            }
        }
        fn case_exact(&self, path: &AttrPath) -> bool {
            path.name == "id"
        }
        fn schema_urn(&self, _: &Value, _: &str) -> Option<String> {
            None
        }
        fn is_core(&self, _: &str) -> bool {
            false
        }
        fn definition(&self, _: &AttrPath) -> Option<crate::Definition> {
            None
        }
        fn open(&self) -> bool {
            true
        }
        fn same_by_value(&self, _: &AttrPath) -> bool {
            false
        }
    }

    fn user() -> Value {
        json!({
            "id": "Abc", "userName": "Bjensen", "active": true, "userType": "Employee", "title": "Tour Guide",
            "name": {"familyName": "Jensen", "givenName": "Barbara"},
            "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true},
                       {"value": "babs@jensen.org", "type": "home"}],
            "meta": {"lastModified": "2024-02-14T04:42:34Z"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984"},
            "x": 5
        })
    }

    fn m(text: &str) -> bool {
        Filter::parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .matches(&user(), &Plain)
    }

    #[test]
    fn rfc_examples() {
        assert!(m(r#"userName eq "bjensen""#));
        assert!(m(r#"USERNAME EQ "BJENSEN""#));
        assert!(m(r#"name.familyName co "ens""#));
        assert!(m(r#"userName sw "B""#));
        assert!(m(r#"userName ew "sen""#));
        assert!(m("title pr"));
        assert!(!m("nickName pr"));
        assert!(m(r#"meta.lastModified gt "2011-05-13T04:42:34Z""#));
        assert!(!m(r#"meta.lastModified gt "2024-02-14T05:42:34+01:00""#));
        assert!(m(r#"meta.lastModified ge "2024-02-14T05:42:34+01:00""#));
        assert!(m(r#"title pr and userType eq "Employee" or active eq true"#));
        assert!(m(
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#
        ));
        assert!(!m(
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#
        ));
        assert!(m(r#"emails[type eq "work" and value co "@example.com"]"#));
        assert!(!m(r#"emails[type eq "home" and value co "@example.com"]"#));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#
        ));
        assert!(m(r#"emails[0].value eq "BJENSEN@example.com""#));
        assert!(!m(r#"emails[1].value eq "bjensen@example.com""#));
        assert!(m("x gt 4 and x le 5 and not (x lt 5)"));
        assert!(m(r#"id eq "Abc""#));
        assert!(!m(r#"id eq "abc""#));
        assert!(m(r#"userName ne "other""#));
        assert!(!m(r#"nickName ne "other" and nickName pr"#));
        assert!(m(r#"emails.type eq "home""#));
        assert!(m(r#"title eq "tour guide""#));
        assert!(m("nickName eq null"));
    }

    #[test]
    fn precedence_and_errors() {
        // and binds tighter than or
        assert!(m(r#"userName eq "x" and x eq 1 or active eq true"#));
        assert!(!m(r#"userName eq "x" and (x eq 1 or active eq true)"#));
        for bad in [
            "",
            "userName",
            "userName eq",
            r#"userName zz "x""#,
            r#"userName eq "x" and"#,
            r#"(userName eq "x""#,
            r#"userName eq x"#,
            r#"emails[type eq "work""#,
            r#"emails[type eq "a"[value eq "b"]]"#,
            r#"userName eq "unterminated"#,
            r#"a.b.c eq "x""#,
            r#"1abc eq "x""#,
            r#"userName eq "x")"#,
        ] {
            assert!(Filter::parse(bad).is_err(), "{bad} parsed");
        }
        let deep = format!("{}userName pr{}", "(".repeat(200), ")".repeat(200));
        assert!(Filter::parse(&deep).is_err());
    }

    #[test]
    fn helpers() {
        // `quote`, `and_filters` and `modified_since` are tested where connectors meet them (the SDK).
        let since = Filter::parse(&modified_since("2026-01-01T00:00:00Z")).unwrap();
        assert!(since.matches(&json!({"meta": {"lastModified": "2026-01-01T00:00:01Z"}}), &Plain));
        let f = Filter::parse(r#"userName eq "a" and (active eq true or x pr)"#).unwrap();
        assert_eq!(f.required_eq("USERNAME"), Some("a"));
        assert_eq!(f.required_eq("active"), None);
        let mut nodes = 0;
        f.walk(&mut |_| nodes += 1);
        assert_eq!(nodes, 5);
        // A quoted value parses back to itself.
        let q = Filter::parse(&format!("userName eq {}", quote(r#"x"\y"#))).unwrap();
        assert_eq!(q.required_eq("userName"), Some(r#"x"\y"#));
    }

    #[test]
    fn lenient_types() {
        let lenient = crate::Schemaless {
            lenient_types: true,
            ..Default::default()
        };
        let r = json!({"active": true, "n": 5, "s": "7"});
        let m = |f: &str, rules: &dyn Rules| Filter::parse(f).unwrap().matches(&r, rules);
        assert!(m(r#"active eq "TRUE""#, &lenient) && !m(r#"active eq "TRUE""#, &crate::Schemaless::default()));
        assert!(m(r#"n ge "5""#, &lenient) && m("s gt 6", &lenient) && !m("s gt 6", &crate::Schemaless::default()));
    }

    /// Arbitrary input never panics (a cheap fuzz loop over mutations of valid filters).
    #[test]
    fn mutations_never_panic() {
        let seeds = [
            r#"emails[type eq "work" and value co "@x"] or not (userName sw "a\"b")"#,
            r#"urn:ietf:params:scim:schemas:core:2.0:User:name.givenName ge 1.5e3"#,
        ];
        let alphabet: Vec<char> = "()[]\" \\.:aeqnot1-é".chars().collect();
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for seed in seeds {
            for _ in 0..2000 {
                let mut chars: Vec<char> = seed.chars().collect();
                for _ in 0..(rnd() % 4 + 1) {
                    let at = (rnd() as usize) % (chars.len() + 1);
                    match rnd() % 3 {
                        0 if at < chars.len() => {
                            chars.remove(at);
                        }
                        _ => chars.insert(at, alphabet[(rnd() as usize) % alphabet.len()]),
                    }
                }
                let text: String = chars.into_iter().collect();
                if let Ok(f) = Filter::parse(&text) {
                    let _ = f.matches(&user(), &Plain);
                }
                let _ = crate::path::PatchPath::parse(&text);
                // The same text as a PATCH path, with and without a schema.
                for op in ["add", "replace", "remove"] {
                    let doc = json!({"Operations": [{"op": op, "path": text, "value": [{"value": "x"}]}]});
                    if let Ok(patch) = crate::PatchOp::parse(&doc) {
                        let _ = patch.apply(&mut user());
                        let _ = patch.apply_with(&mut user(), &crate::ResourceType::standard_user());
                    }
                }
            }
        }
    }
}
