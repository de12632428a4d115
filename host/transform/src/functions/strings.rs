//! String functions: concatString, replace*, substring, case, toString,
//! encode/decode, splitStringToArray, regex groups and matches, compositeId.

use fancy_regex::{Captures, Regex};
use serde_json::Value;

use super::{FnError, FnResult, Params, RegexParam, StrParam, get_regex, scalar_string};
use crate::env::Env;
use crate::error::ValidationError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    First,
    Last,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alg {
    Base32,
    Base64,
}

#[derive(Debug)]
pub(crate) enum StringFn {
    Concat {
        prefix: Option<StrParam>,
        suffix: Option<StrParam>,
    },
    Replace {
        target: String,
        replacement: String,
    },
    ReplaceRegex {
        which: Which,
        regex: RegexParam,
        replacement: String,
    },
    Substring {
        begin: i64,
        end: Option<i64>,
    },
    Case {
        upper: bool,
        turkic: bool,
    },
    ToString,
    Encode {
        alg: Alg,
        skip_padding: bool,
    },
    Decode {
        alg: Alg,
    },
    Split(String),
    MatchedGroup {
        regex: RegexParam,
        group: usize,
    },
    MatchRegex(RegexParam),
    CompositeId {
        separator: String,
        sub_id: StrParam,
    },
}

fn alg(p: &mut Params) -> Result<Alg, ValidationError> {
    let a = p.required_string("algorithm")?;
    match a.to_ascii_lowercase().as_str() {
        "base32" => Ok(Alg::Base32),
        "base64" => Ok(Alg::Base64),
        _ => Err(p.loc("algorithm").err("must be \"base32\" or \"base64\"")),
    }
}

impl StringFn {
    pub(crate) fn parse(name: &str, p: &mut Params) -> Result<StringFn, ValidationError> {
        Ok(match name {
            "concatString" => StringFn::Concat {
                prefix: p.str_param("prefix")?,
                suffix: p.str_param("suffix")?,
            },
            "replaceString" => StringFn::Replace {
                target: p.required_string("target")?,
                replacement: p.required_string("replacement")?,
            },
            "replaceFirstString" | "replaceLastString" | "replaceAllString" => StringFn::ReplaceRegex {
                which: match name {
                    "replaceFirstString" => Which::First,
                    "replaceLastString" => Which::Last,
                    _ => Which::All,
                },
                regex: p.regex("regex", false)?,
                replacement: p.required_string("replacement")?,
            },
            "substring" => {
                let begin = p.required_int("beginIndex")?;
                let end = p.int("endIndex")?;
                if begin < 0 || end.is_some_and(|e| e < begin) {
                    return Err(p.loc("beginIndex").err("need 0 <= beginIndex <= endIndex"));
                }
                StringFn::Substring { begin, end }
            }
            "toUpperCaseString" | "toLowerCaseString" => {
                let locale = p.string("locale")?.unwrap_or_else(|| "en_EN".into());
                let lang = locale.split(['_', '-']).next().unwrap_or("").to_ascii_lowercase();
                StringFn::Case {
                    upper: name == "toUpperCaseString",
                    turkic: lang == "tr" || lang == "az",
                }
            }
            "toString" => StringFn::ToString,
            "encode" => StringFn::Encode {
                alg: alg(p)?,
                skip_padding: p.bool("skipPadding")?,
            },
            "decode" => {
                let alg = alg(p)?;
                // Decoding accepts padded and unpadded input alike.
                p.bool("skipPadding")?;
                StringFn::Decode { alg }
            }
            "splitStringToArray" => {
                let sep = p.required_string("separator")?;
                if sep.is_empty() {
                    return Err(p.loc("separator").err("must not be empty"));
                }
                StringFn::Split(sep)
            }
            "getMatchedRegexGroup" => {
                let regex = p.regex("regex", false)?;
                let group = p.required_int("groupIndex")?;
                let group = usize::try_from(group).map_err(|_| p.loc("groupIndex").err("must be 0 or more"))?;
                StringFn::MatchedGroup { regex, group }
            }
            "matchRegex" => StringFn::MatchRegex(p.regex("regex", true)?),
            "compositeId" => StringFn::CompositeId {
                // The docs mark it required but describe ":" as the default.
                separator: p.string("separator")?.unwrap_or_else(|| ":".into()),
                sub_id: p
                    .str_param("subId")?
                    .ok_or_else(|| p.loc("subId").err("missing parameter \"subId\""))?,
            },
            other => {
                return Err(p.loc("function").err(format!("unknown function \"{other}\"")));
            }
        })
    }

    pub(crate) fn splits(&self) -> bool {
        matches!(self, StringFn::Split(_))
    }

    pub(crate) fn apply(&self, name: &str, v: Value, env: &Env) -> FnResult {
        if let StringFn::ToString = self {
            return Ok(Some(Value::String(match v {
                Value::String(s) => s,
                other => scalar_string(&other).unwrap_or_else(|| other.to_string()),
            })));
        }
        let s = scalar_string(&v).ok_or_else(|| FnError(format!("{name}: expected a text value, got {}", kind(&v))))?;
        let text = |s: String| Ok(Some(Value::String(s)));
        match self {
            StringFn::Concat { prefix, suffix } => {
                let mut out = match prefix {
                    Some(p) => p.render(env)?,
                    None => String::new(),
                };
                out.push_str(&s);
                if let Some(sfx) = suffix {
                    out.push_str(&sfx.render(env)?);
                }
                text(out)
            }
            StringFn::Replace { target, replacement } => {
                if target.is_empty() {
                    return text(s);
                }
                text(s.replace(target.as_str(), replacement))
            }
            StringFn::ReplaceRegex {
                which,
                regex,
                replacement,
            } => {
                let re = get_regex(regex, env, false)?;
                text(replace(&re, &s, replacement, *which)?)
            }
            StringFn::Substring { begin, end } => {
                let chars: Vec<char> = s.chars().collect();
                let b = *begin as usize;
                let e = end.map_or(chars.len(), |e| e as usize);
                // Java's substring throws here, which fails the entity in SAP too.
                if b > chars.len() || e > chars.len() {
                    return Err(FnError(format!(
                        "substring: index out of range for \"{s}\" (length {})",
                        chars.len()
                    )));
                }
                text(chars[b..e].iter().collect())
            }
            StringFn::Case { upper, turkic } => text(match (upper, turkic) {
                (true, false) => s.to_uppercase(),
                (false, false) => s.to_lowercase(),
                (true, true) => s.replace('i', "İ").to_uppercase(),
                (false, true) => s.replace('I', "ı").replace('İ', "i").to_lowercase(),
            }),
            StringFn::Encode { alg, skip_padding } => {
                let enc = match (alg, skip_padding) {
                    (Alg::Base32, false) => &data_encoding::BASE32,
                    (Alg::Base32, true) => &data_encoding::BASE32_NOPAD,
                    (Alg::Base64, false) => &data_encoding::BASE64,
                    (Alg::Base64, true) => &data_encoding::BASE64_NOPAD,
                };
                text(enc.encode(s.as_bytes()))
            }
            StringFn::Decode { alg } => {
                let dec = match alg {
                    Alg::Base32 => &data_encoding::BASE32_NOPAD,
                    Alg::Base64 => &data_encoding::BASE64_NOPAD,
                };
                let bytes = dec
                    .decode(s.trim_end_matches('=').as_bytes())
                    .map_err(|e| FnError(format!("decode: \"{s}\" is not valid {alg:?}: {e}")))?;
                // SAP yields a byte array for toString; bytes here are always UTF-8 text.
                String::from_utf8(bytes)
                    .map(|s| Some(Value::String(s)))
                    .map_err(|_| FnError(format!("decode: \"{s}\" does not decode to UTF-8 text")))
            }
            StringFn::Split(sep) => {
                // The separator is literal text (users write ",", not a regex).
                if !s.contains(sep.as_str()) {
                    return Ok(Some(Value::Array(vec![Value::String(s)])));
                }
                let mut parts: Vec<&str> = s.split(sep.as_str()).collect();
                // Java's String.split drops trailing empty strings.
                while parts.last() == Some(&"") {
                    parts.pop();
                }
                Ok(Some(Value::Array(
                    parts.into_iter().map(|p| Value::String(p.into())).collect(),
                )))
            }
            StringFn::MatchedGroup { regex, group } => {
                let re = get_regex(regex, env, false)?;
                let caps = re
                    .captures(&s)
                    .map_err(|e| FnError(format!("getMatchedRegexGroup: {e}")))?;
                let Some(caps) = caps else { return Ok(None) };
                if *group >= caps.len() {
                    return Err(FnError(format!(
                        "getMatchedRegexGroup: no group {group} in regex \"{}\"",
                        re.as_str()
                    )));
                }
                Ok(caps.get(*group).map(|m| Value::String(m.as_str().into())))
            }
            StringFn::MatchRegex(regex) => {
                let re = get_regex(regex, env, true)?;
                Ok(Some(Value::Bool(
                    re.is_match(&s).map_err(|e| FnError(format!("matchRegex: {e}")))?,
                )))
            }
            StringFn::CompositeId { separator, sub_id } => text(format!("{s}{separator}{}", sub_id.render(env)?)),
            StringFn::ToString => text(s),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Java `Matcher.replaceFirst/replaceAll` (and SAP's "last") with Java
/// replacement syntax: `$1`, `${name}`, `\$` for a literal dollar.
fn replace(re: &Regex, s: &str, replacement: &str, which: Which) -> Result<String, FnError> {
    let mut caps: Vec<Captures<str>> = Vec::new();
    for c in re.captures_iter(s) {
        caps.push(c.map_err(|e| FnError(format!("regex: {e}")))?);
        if which == Which::First {
            break;
        }
    }
    let chosen: Vec<&Captures<str>> = match which {
        Which::Last => caps.last().into_iter().collect(),
        _ => caps.iter().collect(),
    };
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for c in chosen {
        let Some(m) = c.get(0) else { continue };
        out.push_str(&s[last..m.start()]);
        expand(c, replacement, &mut out)?;
        last = m.end();
    }
    out.push_str(&s[last..]);
    Ok(out)
}

fn expand(c: &Captures<str>, rep: &str, out: &mut String) -> Result<(), FnError> {
    let mut chars = rep.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => match chars.next() {
                Some(n) => out.push(n),
                None => return Err(FnError("replacement ends with '\\'".into())),
            },
            '$' if chars.peek() == Some(&'{') => {
                chars.next();
                let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                let m = c
                    .name(&name)
                    .ok_or_else(|| FnError(format!("no group named \"{name}\"")))?;
                out.push_str(m.as_str());
            }
            '$' => {
                let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) else {
                    return Err(FnError("illegal group reference in replacement".into()));
                };
                chars.next();
                let mut group = d as usize;
                // Java takes more digits while they still name an existing group.
                while let Some(n) = chars.peek().and_then(|d| d.to_digit(10)) {
                    let g = group * 10 + n as usize;
                    if g >= c.len() {
                        break;
                    }
                    group = g;
                    chars.next();
                }
                if group >= c.len() {
                    return Err(FnError(format!("no group {group} in the regex")));
                }
                if let Some(m) = c.get(group) {
                    out.push_str(m.as_str());
                }
            }
            other => out.push(other),
        }
    }
    Ok(())
}
