//! SCIM filters as each simulated system accepts them: the shared crate's grammar and evaluator
//! (`provisio_scim::filter`, RFC 7644 §3.4.2.2), narrowed to a system's [`Dialect`].
//!
//! [`parse`] rejects what a system's implementation does not support with a message the simulator wraps
//! into the system's own error body; [`Eval`] holds the few evaluation settings a system has.

use serde_json::Value;

pub(crate) use provisio_scim::filter::{AttrPath, CompareOp as Op, Filter, Rules, get_ci};
use provisio_scim::{Definition, Schemaless};

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
    #[cfg(test)]
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

fn op_name(op: Op) -> &'static str {
    match op {
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

/// Parses `input` under `dialect`. The error is a human-readable reason.
pub(crate) fn parse(input: &str, dialect: &Dialect) -> Result<Filter, String> {
    let f = Filter::parse(input).map_err(|e| e.0)?;
    let mut refused: Option<String> = None;
    f.walk(&mut |node| {
        let why = match node {
            Filter::And(..) if !dialect.and => Some("the 'and' operator is not supported".to_string()),
            Filter::Or(..) if !dialect.or => Some("the 'or' operator is not supported".to_string()),
            Filter::Not(_) if !dialect.not => Some("the 'not' operator is not supported".to_string()),
            Filter::Present(_) if !dialect.present => Some("the 'pr' operator is not supported".to_string()),
            Filter::ValuePath(..) if !dialect.value_paths => {
                Some("value path filters ([...]) are not supported".to_string())
            }
            Filter::Compare(p, op, _) => {
                if p.index.is_some() && !dialect.value_paths {
                    Some("value path filters ([...]) are not supported".to_string())
                } else if !dialect.ops.contains(op) {
                    Some(format!("the '{}' operator is not supported", op_name(*op)))
                } else {
                    None
                }
            }
            Filter::Present(p) if p.index.is_some() && !dialect.value_paths => {
                Some("value path filters ([...]) are not supported".to_string())
            }
            _ => None,
        };
        if refused.is_none() {
            refused = why;
        }
    });
    if refused.is_none() && !dialect.parens && groups(input) {
        refused = Some("parentheses are not supported".into());
    }
    match refused {
        Some(why) => Err(why),
        None => Ok(f),
    }
}

/// Whether the filter text groups with parentheses (outside string literals; `not (` is not a group).
fn groups(text: &str) -> bool {
    let mut in_string = false;
    let mut escaped = false;
    let mut word = String::new();
    let mut last_word = String::new();
    for c in text.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' => {
                if !word.is_empty() {
                    last_word = std::mem::take(&mut word);
                }
                if !last_word.eq_ignore_ascii_case("not") {
                    return true;
                }
            }
            c if c.is_whitespace() || c == ')' || c == '[' || c == ']' => {
                if !word.is_empty() {
                    last_word = std::mem::take(&mut word);
                }
            }
            c => word.push(c),
        }
    }
    false
}

/// The values `path` designates in `resource`, multi-valued attributes flattened (for sort keys and
/// projections).
pub(crate) fn resolve<'a>(resource: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let rules = Schemaless::default();
    let Some(top) = rules.attribute(resource, path) else {
        return Vec::new();
    };
    let items: Vec<&Value> = match top {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut flat = Vec::new();
    for item in items {
        let v = match &path.sub {
            Some(sub) => get_ci(item, sub),
            None => Some(item),
        };
        match v {
            Some(Value::Array(a)) => flat.extend(a.iter()),
            Some(other) => flat.push(other),
            None => {}
        }
    }
    flat
}

/// Evaluation settings: which attributes compare case-sensitively. Booleans and numbers also match their
/// text (`active eq "true"`), as the simulated systems accept.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Eval<'a> {
    /// Lower-cased dotted attribute names that are `caseExact`.
    pub case_exact: &'a [&'a str],
}

impl Eval<'_> {
    fn rules(&self) -> Schemaless<'_> {
        Schemaless {
            case_exact: self.case_exact,
            lenient_types: true,
            ..Schemaless::default()
        }
    }
}

impl Rules for Eval<'_> {
    fn attribute<'v>(&self, resource: &'v Value, path: &AttrPath) -> Option<&'v Value> {
        self.rules().attribute(resource, path)
    }
    fn case_exact(&self, path: &AttrPath) -> bool {
        self.rules().case_exact(path)
    }
    fn is_datetime(&self, path: &AttrPath) -> bool {
        self.rules().is_datetime(path)
    }
    fn lenient_types(&self) -> bool {
        true
    }
    fn schema_urn(&self, resource: &Value, urn: &str) -> Option<String> {
        self.rules().schema_urn(resource, urn)
    }
    fn is_core(&self, urn: &str) -> bool {
        self.rules().is_core(urn)
    }
    fn definition(&self, path: &AttrPath) -> Option<Definition> {
        self.rules().definition(path)
    }
    fn open(&self) -> bool {
        true
    }
    fn same_by_value(&self, path: &AttrPath) -> bool {
        self.rules().same_by_value(path)
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
        let flat = Dialect {
            parens: false,
            ..eq_only
        };
        assert!(parse(r#"(userName eq "a" or userName eq "b") and active eq true"#, &flat).is_err());
        assert!(parse(r#"userName eq "(a)" and active eq true"#, &flat).is_ok());
        assert!(parse(r#"emails[0].value eq "a""#, &flat).is_err());
    }

    #[test]
    fn case_exact() {
        let f = parse(r#"id eq "ABC""#, &Dialect::FULL).unwrap();
        assert!(f.matches(&user(), &Eval::default()));
        assert!(!f.matches(&user(), &Eval { case_exact: &["id"] }));
    }

    #[test]
    fn resolves_paths() {
        let p = AttrPath::parse("emails.value").unwrap();
        assert_eq!(resolve(&user(), &p), vec!["jane@example.com", "jd@home.org"]);
        assert_eq!(
            resolve(&user(), &AttrPath::parse("meta.version").unwrap()),
            vec![&json!(3)]
        );
    }
}
