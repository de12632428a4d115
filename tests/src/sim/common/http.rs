//! Small HTTP helpers shared by the simulators: query and form parsing, credentials, responses.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use serde_json::Value;

/// Decoded query or form parameters (names looked up case-insensitively).
#[derive(Clone, Debug, Default)]
pub(crate) struct Params(pub Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(raw: Option<&str>) -> Params {
        Params(
            raw.map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default(),
        )
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .or_else(|| self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v.as_str())
    }

    /// An integer parameter: `Ok(None)` when absent or empty, `Err` when not an integer.
    pub(crate) fn int(&self, name: &str) -> Result<Option<i64>, String> {
        match self.get(name).map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| format!("Invalid value for parameter '{name}': '{v}' is not an integer")),
        }
    }
}

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `Authorization: Basic …` → (user, password).
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = header_str(headers, "authorization")?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    // OAuth clients URL-encode id and secret in the Basic header (RFC 6749 §2.3.1).
    let dec = |s: &str| {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| s.to_string())
    };
    Some((dec(user), dec(password)))
}

/// `Authorization: Bearer …` → token.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = header_str(headers, "authorization")?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") || rest.trim().is_empty() {
        return None;
    }
    Some(rest.trim().to_string())
}

/// A JSON response with the given content type and extra headers.
pub(crate) fn json(status: StatusCode, content_type: &'static str, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Adds a header (ignoring values that are not valid header text).
pub(crate) fn with_header(mut resp: Response, name: &'static str, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
    resp
}

/// An empty response.
pub(crate) fn empty(status: StatusCode) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    resp
}

/// Parses a JSON request body; the error is the parser's message.
pub(crate) fn parse_json(body: &[u8]) -> Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("Required request body is missing".into());
    }
    serde_json::from_slice(body).map_err(|e| format!("JSON parse error: {e}"))
}

/// HTML-escapes like Spring's `HtmlUtils.htmlEscape` (UAA escapes echoed filter strings).
pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// The SCIM 2.0 error message schema.
#[cfg(test)]
pub(crate) use provisio_scim::ERROR as SCIM_ERROR_SCHEMA;

/// A SCIM 2.0 error body (`status` is a string, RFC 7644 §3.12).
pub(crate) fn scim_error(
    status: StatusCode,
    scim_type: Option<&str>,
    detail: &str,
    content_type: &'static str,
) -> Response {
    let body = provisio_scim::error::body(status.as_u16(), scim_type, detail);
    let mut resp = json(status, content_type, &body);
    resp.extensions_mut().insert(ErrorDetail(format!(
        "{} {}{detail}",
        status.as_u16(),
        scim_type.map(|t| format!("{t}: ")).unwrap_or_default()
    )));
    resp
}

/// The text of an error answer, kept as a response extension so that direct accessors can
/// report why the simulator refused something.
#[derive(Clone, Debug)]
pub(crate) struct ErrorDetail(pub String);

/// The [`ErrorDetail`] of an error response, or its status.
pub(crate) fn error_text(resp: &Response) -> String {
    resp.extensions()
        .get::<ErrorDetail>()
        .map(|d| d.0.clone())
        .unwrap_or_else(|| resp.status().to_string())
}

/// Keeps only the requested attributes (`attributes=`) or drops the excluded ones
/// (`excludedAttributes=`); `id` and `schemas` always stay. Names may be dotted one level deep
/// (`name.givenName`) or schema-qualified (`urn:…:User:employeeNumber`).
pub(crate) fn project_scim(resource: Value, attributes: Option<&str>, excluded: Option<&str>) -> Value {
    let Value::Object(mut map) = resource else {
        return resource;
    };
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    };
    // Split a requested name into (top-level key, optional sub-attribute).
    let locate = |map: &serde_json::Map<String, Value>, name: &str| -> Option<(String, Option<String>)> {
        if name.len() > 4 && name[..4].eq_ignore_ascii_case("urn:") {
            if let Some(k) = map.keys().find(|k| k.eq_ignore_ascii_case(name)) {
                return Some((k.clone(), None));
            }
            let idx = name.rfind(':')?;
            let (urn, attr) = (&name[..idx], &name[idx + 1..]);
            let k = map.keys().find(|k| k.eq_ignore_ascii_case(urn))?;
            return Some((k.clone(), Some(attr.to_string())));
        }
        let (top, sub) = match name.split_once('.') {
            Some((t, s)) => (t, Some(s.to_string())),
            None => (name, None),
        };
        let k = map.keys().find(|k| k.eq_ignore_ascii_case(top))?;
        Some((k.clone(), sub))
    };
    if let Some(attrs) = attributes.filter(|a| !a.trim().is_empty()) {
        let mut out = serde_json::Map::new();
        for keep in ["id", "schemas", "meta"] {
            if let Some(v) = map.get(keep)
                && keep != "meta"
            {
                out.insert(keep.to_string(), v.clone());
            }
        }
        for name in split(attrs) {
            let Some((key, sub)) = locate(&map, &name) else {
                continue;
            };
            let Some(v) = map.get(&key) else { continue };
            match sub {
                None => {
                    out.insert(key, v.clone());
                }
                Some(sub) => {
                    let picked = match v {
                        Value::Object(o) => o
                            .iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(&sub))
                            .map(|(k, x)| serde_json::json!({ k.clone(): x.clone() })),
                        Value::Array(items) => Some(Value::Array(
                            items
                                .iter()
                                .filter_map(|i| {
                                    i.as_object()?
                                        .iter()
                                        .find(|(k, _)| k.eq_ignore_ascii_case(&sub))
                                        .map(|(k, x)| serde_json::json!({ k.clone(): x.clone() }))
                                })
                                .collect(),
                        )),
                        _ => None,
                    };
                    if let Some(p) = picked {
                        match (out.get_mut(&key), p) {
                            (Some(Value::Object(existing)), Value::Object(add)) => existing.extend(add),
                            (_, p) => {
                                out.insert(key, p);
                            }
                        }
                    }
                }
            }
        }
        return Value::Object(out);
    }
    if let Some(ex) = excluded {
        for name in split(ex) {
            if name.eq_ignore_ascii_case("id") || name.eq_ignore_ascii_case("schemas") {
                continue;
            }
            match locate(&map, &name) {
                Some((key, None)) => {
                    map.remove(&key);
                }
                Some((key, Some(sub))) => {
                    if let Some(Value::Object(o)) = map.get_mut(&key)
                        && let Some(k) = o.keys().find(|k| k.eq_ignore_ascii_case(&sub)).cloned()
                    {
                        o.remove(&k);
                    }
                }
                None => {}
            }
        }
    }
    Value::Object(map)
}
