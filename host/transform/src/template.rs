//! Placeholders inside strings: `%property%` (system property) and `${variable}`.
//!
//! SAP substitutes placeholders textually before a path, condition or regex is
//! interpreted, which is why an unset property renders as the word `null`
//! (defaults test `'%xsuaa.group.prefix%' === 'null'`).

use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::env::Env;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Prop(String),
    Var(String),
}

/// A string with `%property%` and `${variable}` placeholders, split once.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

fn is_prop_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

impl Template {
    /// Splits `s` into literal text and placeholders. Never fails: a lone `%`
    /// or an unterminated `${` is literal text.
    pub(crate) fn parse(s: &str) -> Template {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = s;
        while let Some(c) = rest.chars().next() {
            if c == '%' {
                let body = &rest[1..];
                let len = body.find(|c: char| !is_prop_char(c)).unwrap_or(body.len());
                if len > 0 && body[len..].starts_with('%') {
                    flush(&mut parts, &mut lit);
                    parts.push(Part::Prop(body[..len].to_string()));
                    rest = &body[len + 1..];
                    continue;
                }
            } else if let Some(body) = rest.strip_prefix("${")
                && let Some(end) = body.find('}')
                && end > 0
                && body[..end].chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.')
            {
                flush(&mut parts, &mut lit);
                parts.push(Part::Var(body[..end].to_string()));
                rest = &body[end + 1..];
                continue;
            }
            lit.push(c);
            rest = &rest[c.len_utf8()..];
        }
        flush(&mut parts, &mut lit);
        Template { parts }
    }

    /// True when the string has no placeholder at all.
    pub(crate) fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    /// The text with every placeholder rendered as if unset (`null`): used
    /// to validate the shape of a dynamic path or condition at save time.
    pub(crate) fn sample(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Lit(s) => s.as_str(),
                _ => "null",
            })
            .collect()
    }

    /// Renders the template. Unset properties and variables render as `null`.
    pub(crate) fn render(&self, env: &Env) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Prop(k) => out.push_str(env.property(k).unwrap_or("null")),
                Part::Var(k) => match env.variable(k).as_deref() {
                    Some(Value::String(s)) => out.push_str(s),
                    Some(v) if !v.is_null() => out.push_str(&v.to_string()),
                    _ => out.push_str("null"),
                },
            }
        }
        out
    }
}

fn flush(parts: &mut Vec<Part>, lit: &mut String) {
    if !lit.is_empty() {
        parts.push(Part::Lit(std::mem::take(lit)));
    }
}

/// If `s` is exactly `%prop%[]`, the property name (multi-valued property
/// expanded to an array, e.g. `xsuaa.origin=idp1;idp2`).
pub(crate) fn multi_valued_property(s: &str) -> Option<&str> {
    let name = s.strip_prefix('%')?.strip_suffix("%[]")?;
    (!name.is_empty() && name.chars().all(is_prop_char)).then_some(name)
}

/// Something compiled from text that may contain placeholders: compiled once
/// at save time when static, else compiled on first use for the rendered
/// text and cached (properties rarely change between entities).
#[derive(Debug)]
pub(crate) enum Dynamic<T> {
    /// Compiled at parse time.
    Static(Arc<T>),
    /// Compiled when used; the last rendering is cached.
    Templated {
        template: Template,
        cache: Mutex<Option<(String, Arc<T>)>>,
    },
}

impl<T> Dynamic<T> {
    /// Compiles `text` now when it has no placeholders; otherwise checks the
    /// shape with every placeholder rendered as `null` (when `check_sample`).
    pub(crate) fn new<E>(text: &str, compile: impl Fn(&str) -> Result<T, E>, check_sample: bool) -> Result<Self, E> {
        let template = Template::parse(text);
        if template.is_static() {
            return Ok(Dynamic::Static(Arc::new(compile(text)?)));
        }
        if check_sample {
            compile(&template.sample())?;
        }
        Ok(Dynamic::Templated {
            template,
            cache: Mutex::new(None),
        })
    }

    /// The compiled value for this environment.
    pub(crate) fn get<E>(&self, env: &Env, compile: impl Fn(&str) -> Result<T, E>) -> Result<Arc<T>, E> {
        match self {
            Dynamic::Static(t) => Ok(t.clone()),
            Dynamic::Templated { template, cache } => {
                let text = template.render(env);
                let mut guard = cache.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((key, value)) = guard.as_ref()
                    && *key == text
                {
                    return Ok(value.clone());
                }
                let value = Arc::new(compile(&text)?);
                *guard = Some((text, value.clone()));
                Ok(value)
            }
        }
    }
}
