//! Mapping functions (`functions: [...]` of a mapping): parsing with
//! parameter validation, and the common modifiers `condition`,
//! `applyOnElements`, `applyOnAttribute` and `assignToAttribute`.
//!
//! Functions that work on a single value (strings, maps, codes) are applied
//! to each element when the value is an array, so `$.members[*].value` can be
//! decoded without `applyOnElements`; `elementAt` and `randomPassword` take
//! the whole value unless `applyOnElements` is set.

pub(crate) mod date;
mod iso;
mod maps;
mod password;
mod strings;

use fancy_regex::Regex;
use serde_json::{Map, Value};

use crate::condition::{self, Expr};
use crate::env::Env;
use crate::error::{Loc, ValidationError};
use crate::path::Path;
use crate::template::{Dynamic, Template};

/// A function failed on a value: the entity fails with this message.
#[derive(Debug, Clone)]
pub(crate) struct FnError(pub(crate) String);

pub(crate) type FnResult = Result<Option<Value>, FnError>;

/// A compiled function of a chain.
#[derive(Debug)]
pub(crate) struct Function {
    pub(crate) name: &'static str,
    kind: Kind,
    condition: Option<Dynamic<Expr>>,
    on_elements: bool,
    on_attribute: Option<String>,
    assign_to: Option<String>,
}

/// A string parameter: literal, placeholder template or JSONPath into the entity.
#[derive(Debug)]
pub(crate) enum StrParam {
    Lit(String),
    Tpl(Template),
    Path(Dynamic<Path>),
}

impl StrParam {
    fn parse(v: &Value, loc: &Loc) -> Result<StrParam, ValidationError> {
        let s = scalar_string(v).ok_or_else(|| loc.err("must be a string, number or boolean"))?;
        if s.starts_with("$.") || s.starts_with("$[") || s == "$" {
            let p = Dynamic::new(&s, Path::parse, true).map_err(|e| loc.err(format!("invalid JSONPath: {e}")))?;
            return Ok(StrParam::Path(p));
        }
        let t = Template::parse(&s);
        Ok(if t.is_static() {
            StrParam::Lit(s)
        } else {
            StrParam::Tpl(t)
        })
    }

    /// The text; a path yields its first value, or "" when it has none.
    pub(crate) fn render(&self, env: &Env) -> Result<String, FnError> {
        match self {
            StrParam::Lit(s) => Ok(s.clone()),
            StrParam::Tpl(t) => Ok(t.render(env)),
            StrParam::Path(p) => {
                let p = p
                    .get(env, Path::parse)
                    .map_err(|e| FnError(format!("invalid JSONPath: {e}")))?;
                let v = p.eval(env.input, None, env).into_value();
                let first = match v {
                    Some(Value::Array(a)) => a.into_iter().next(),
                    v => v,
                };
                Ok(first.as_ref().and_then(scalar_string).unwrap_or_default())
            }
        }
    }
}

/// A regex parameter, compiled at save time unless it has placeholders.
pub(crate) type RegexParam = Dynamic<Regex>;

fn regex_param(v: &Value, loc: &Loc, anchored: bool) -> Result<RegexParam, ValidationError> {
    let s = scalar_string(v).ok_or_else(|| loc.err("must be a string"))?;
    let compile = move |re: &str| {
        if anchored {
            condition::compile_regex(&format!("^(?:{re})$"))
        } else {
            condition::compile_regex(re)
        }
    };
    // Placeholders can hold any regex text, so a templated regex is checked when used.
    Dynamic::new(&s, compile, false).map_err(|e| loc.err(e))
}

pub(crate) fn get_regex(p: &RegexParam, env: &Env, anchored: bool) -> Result<std::sync::Arc<Regex>, FnError> {
    p.get(env, |re| {
        if anchored {
            condition::compile_regex(&format!("^(?:{re})$"))
        } else {
            condition::compile_regex(re)
        }
    })
    .map_err(FnError)
}

/// Strings, numbers and booleans as text (SAP accepts `"suffix": 123`).
pub(crate) fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[derive(Debug)]
enum Kind {
    Strings(strings::StringFn),
    Maps(maps::MapFn),
    Date(date::DateFn),
    Password(password::Password),
    Iso(iso::IsoFn),
    ElementAt(i64),
    Resolve {
        entity_type: String,
        source_system: Option<String>,
        target_system: Option<String>,
    },
}

/// Reads a function's parameters and reports unknown or missing ones.
pub(crate) struct Params<'a> {
    obj: &'a Map<String, Value>,
    loc: Loc,
    allowed: Vec<&'static str>,
}

impl<'a> Params<'a> {
    pub(crate) fn loc(&self, key: &str) -> Loc {
        self.loc.key(key)
    }

    pub(crate) fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.allowed.push(key);
        self.obj.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn required(&mut self, key: &'static str) -> Result<&'a Value, ValidationError> {
        self.get(key)
            .ok_or_else(|| self.loc.err(format!("missing parameter \"{key}\"")))
    }

    pub(crate) fn string(&mut self, key: &'static str) -> Result<Option<String>, ValidationError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => scalar_string(v)
                .map(Some)
                .ok_or_else(|| self.loc(key).err("must be a string")),
        }
    }

    pub(crate) fn required_string(&mut self, key: &'static str) -> Result<String, ValidationError> {
        self.required(key)?;
        Ok(self.string(key)?.unwrap_or_default())
    }

    /// An integer given as a number or as text such as `"+2"` or `"-3"`.
    pub(crate) fn int(&mut self, key: &'static str) -> Result<Option<i64>, ValidationError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.loc(key).err("must be an integer")),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s
                .trim()
                .trim_start_matches('+')
                .parse()
                .map(Some)
                .map_err(|_| self.loc(key).err("must be an integer")),
            Some(_) => Err(self.loc(key).err("must be an integer")),
        }
    }

    pub(crate) fn required_int(&mut self, key: &'static str) -> Result<i64, ValidationError> {
        self.int(key)?
            .ok_or_else(|| self.loc.err(format!("missing parameter \"{key}\"")))
    }

    pub(crate) fn bool(&mut self, key: &'static str) -> Result<bool, ValidationError> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
            Some(_) => Err(self.loc(key).err("must be true or false")),
        }
    }

    pub(crate) fn str_param(&mut self, key: &'static str) -> Result<Option<StrParam>, ValidationError> {
        let loc = self.loc(key);
        self.get(key).map(|v| StrParam::parse(v, &loc)).transpose()
    }

    pub(crate) fn regex(&mut self, key: &'static str, anchored: bool) -> Result<RegexParam, ValidationError> {
        let loc = self.loc(key);
        let v = self.required(key)?;
        regex_param(v, &loc, anchored)
    }

    fn finish(self) -> Result<(), ValidationError> {
        match self.obj.keys().find(|k| !self.allowed.contains(&k.as_str())) {
            Some(k) => Err(self.loc.err(format!("unknown parameter \"{k}\""))),
            None => Ok(()),
        }
    }
}

/// Every function name SAP documents.
pub(crate) const NAMES: &[&str] = &[
    "concatString",
    "replaceString",
    "replaceFirstString",
    "replaceLastString",
    "replaceAllString",
    "substring",
    "toUpperCaseString",
    "toLowerCaseString",
    "toString",
    "encode",
    "decode",
    "elementAt",
    "splitStringToArray",
    "getMatchedRegexGroup",
    "matchRegex",
    "compositeId",
    "copyMapEntry",
    "renameMapEntry",
    "putIfAbsent",
    "putIfPresent",
    "randomPassword",
    "manipulateDate",
    "resolveEntityIds",
    "convertCountryCode",
    "convertCountryRegion",
    "convertLocaleCode",
    "convertTimezoneCode",
];

impl Function {
    /// Parses one element of `functions`.
    pub(crate) fn parse(v: &Value, loc: Loc) -> Result<Function, ValidationError> {
        let obj = v.as_object().ok_or_else(|| loc.err("a function must be an object"))?;
        let name_value = obj
            .get("function")
            .or_else(|| obj.get("type"))
            .ok_or_else(|| loc.err("missing \"function\" (or \"type\") naming the function"))?;
        let given = name_value
            .as_str()
            .ok_or_else(|| loc.err("the function name must be a string"))?;
        let name = NAMES
            .iter()
            .copied()
            .find(|n| *n == given)
            .ok_or_else(|| loc.err(format!("unknown function \"{given}\"")))?;
        if obj.contains_key("function") && obj.contains_key("type") {
            return Err(loc.err("give the function name in \"function\" or \"type\", not both"));
        }
        let mut p = Params {
            obj,
            loc: loc.clone(),
            allowed: vec!["function", "type"],
        };
        let condition = match p.get("condition") {
            None => None,
            Some(c) => {
                let text = c.as_str().ok_or_else(|| loc.key("condition").err("must be a string"))?;
                Some(
                    Dynamic::new(text, condition::parse, true)
                        .map_err(|e| loc.key("condition").err(format!("invalid condition: {e}")))?,
                )
            }
        };
        let on_elements = p.bool("applyOnElements")?;
        let on_attribute = match p.string("applyOnAttribute")? {
            Some(a) => Some(a),
            None => p.string("applyOnJsonAttribute")?,
        };
        let assign_to = p.string("assignToAttribute")?;
        let kind = match name {
            "elementAt" => Kind::ElementAt(p.required_int("index")?),
            "resolveEntityIds" => {
                let entity_type = p.string("entityType")?.unwrap_or_else(|| "user".into());
                if entity_type != "user" && entity_type != "group" {
                    return Err(p.loc("entityType").err("must be \"user\" or \"group\""));
                }
                Kind::Resolve {
                    entity_type,
                    source_system: p.string("sourceSystemName")?,
                    target_system: p.string("targetSystemName")?,
                }
            }
            "randomPassword" => Kind::Password(password::Password::parse(&mut p)?),
            "manipulateDate" => Kind::Date(date::DateFn::parse(&mut p)?),
            "copyMapEntry" | "renameMapEntry" | "putIfAbsent" | "putIfPresent" => {
                Kind::Maps(maps::MapFn::parse(name, &mut p)?)
            }
            "convertCountryCode" | "convertCountryRegion" | "convertLocaleCode" | "convertTimezoneCode" => {
                Kind::Iso(iso::IsoFn::parse(name, &mut p)?)
            }
            _ => Kind::Strings(strings::StringFn::parse(name, &mut p)?),
        };
        p.finish()?;
        Ok(Function {
            name,
            kind,
            condition,
            on_elements,
            on_attribute,
            assign_to,
        })
    }

    /// True for `randomPassword`, which needs no source value.
    pub(crate) fn generates(&self) -> bool {
        matches!(self.kind, Kind::Password(_))
    }

    /// Applies the function to the mapping's current value.
    pub(crate) fn apply(&self, value: Option<Value>, env: &Env) -> FnResult {
        if let Kind::Password(p) = &self.kind {
            if !self.condition_holds(value.as_ref(), env)? {
                return Ok(value);
            }
            return p.generate().map(|s| Some(Value::String(s)));
        }
        let Some(value) = value else {
            return Ok(match &self.kind {
                Kind::Iso(f) => f.on_missing(),
                _ => None,
            });
        };
        let whole = matches!(self.kind, Kind::ElementAt(_));
        match value {
            Value::Array(items) if self.on_elements || !whole => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match self.apply_unit(item, env)? {
                        // splitStringToArray per element flattens into one array.
                        Some(Value::Array(parts)) if self.splits() => out.extend(parts),
                        Some(v) => out.push(v),
                        // Unresolvable members are dropped (resolveEntityIds).
                        None => {}
                    }
                }
                Ok(Some(Value::Array(out)))
            }
            v => self.apply_unit(v, env),
        }
    }

    fn splits(&self) -> bool {
        matches!(&self.kind, Kind::Strings(s) if s.splits())
    }

    fn condition_holds(&self, current: Option<&Value>, env: &Env) -> Result<bool, FnError> {
        match &self.condition {
            None => Ok(true),
            Some(c) => {
                let c = c
                    .get(env, condition::parse)
                    .map_err(|e| FnError(format!("invalid condition: {e}")))?;
                Ok(c.eval(env.input, current, env))
            }
        }
    }

    /// One unit: the condition sees it as `@`; `applyOnAttribute` and
    /// `assignToAttribute` pick the map entry read and written.
    fn apply_unit(&self, unit: Value, env: &Env) -> FnResult {
        if !self.condition_holds(Some(&unit), env)? {
            return Ok(Some(unit));
        }
        match (&self.on_attribute, &self.assign_to, unit) {
            (None, None, unit) => self.call(unit, env),
            (read, write, Value::Object(mut obj)) => {
                let input = match read {
                    Some(k) => obj.get(k).cloned(),
                    None => Some(Value::Object(obj.clone())),
                };
                let result = match input {
                    Some(v) if !v.is_null() => self.call(v, env)?,
                    _ => return Ok(Some(Value::Object(obj))),
                };
                if let Some(key) = write.as_ref().or(read.as_ref()) {
                    match result {
                        Some(r) => {
                            obj.insert(key.clone(), r);
                        }
                        None => {
                            obj.shift_remove(key.as_str());
                        }
                    }
                }
                Ok(Some(Value::Object(obj)))
            }
            // Not a map: nothing to apply the attribute to.
            (_, _, other) => Ok(Some(other)),
        }
    }

    fn call(&self, v: Value, env: &Env) -> FnResult {
        match &self.kind {
            Kind::Strings(f) => f.apply(self.name, v, env),
            Kind::Maps(f) => Ok(Some(f.apply(v))),
            Kind::Date(f) => f.apply(v, env).map(Some),
            Kind::Iso(f) => Ok(Some(f.apply(v))),
            Kind::ElementAt(i) => Ok(match v {
                Value::Array(mut a) => crate::path::read::resolve_index(*i, a.len()).map(|i| a.swap_remove(i)),
                // A single value is its own element 0.
                v if *i == 0 || *i == -1 => Some(v),
                _ => None,
            }),
            Kind::Resolve {
                entity_type,
                source_system,
                target_system,
            } => {
                let resolve = |id: &str| {
                    env.ctx
                        .resolver
                        .and_then(|r| r.resolve(entity_type, id, source_system.as_deref(), target_system.as_deref()))
                };
                Ok(match v {
                    // A member object resolves its `value` (AD default transformation).
                    Value::Object(mut o) => {
                        let id = o.get("value").and_then(scalar_string);
                        match id.as_deref().and_then(resolve) {
                            Some(t) => {
                                o.insert("value".into(), Value::String(t));
                                Some(Value::Object(o))
                            }
                            None => None,
                        }
                    }
                    v => scalar_string(&v).as_deref().and_then(resolve).map(Value::String),
                })
            }
            Kind::Password(p) => p.generate().map(|s| Some(Value::String(s))),
        }
    }
}
