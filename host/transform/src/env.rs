//! The evaluation environment shared by paths, conditions and functions
//! while one entity is transformed.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::BTreeMap;

use serde_json::Value;

use crate::context::Context;
use crate::functions::date;

/// Default of `ips.date.variable.format`.
pub(crate) const DEFAULT_DATE_FORMAT: &str = "yyyy-MM-dd HH:mm:ss.SSS";

/// Read-only view of the context plus the variables set so far.
pub(crate) struct Env<'a> {
    pub(crate) ctx: &'a Context<'a>,
    pub(crate) vars: &'a BTreeMap<String, Value>,
    /// `currentDate`, formatted on first use only (most entities never need it).
    pub(crate) date: &'a OnceCell<String>,
    /// The input entity: `$` of conditions and JSONPath function parameters.
    pub(crate) input: &'a Value,
}

impl<'a> Env<'a> {
    /// A system property.
    pub(crate) fn property(&self, key: &str) -> Option<&'a str> {
        self.ctx.properties.get(key).map(String::as_str)
    }

    /// A variable; `currentDate` is computed from the clock unless set.
    pub(crate) fn variable(&self, name: &str) -> Option<Cow<'a, Value>> {
        if let Some(v) = self.vars.get(name) {
            return Some(Cow::Borrowed(v));
        }
        (name == "currentDate").then(|| Cow::Owned(Value::String(self.current_date().to_string())))
    }

    /// The `currentDate` variable in the `ips.date.variable.format` format.
    pub(crate) fn current_date(&self) -> &str {
        self.date.get_or_init(|| {
            let now = self.ctx.now.unwrap_or_else(chrono::Utc::now).naive_utc();
            let format = self.date_format();
            date::format_java(&now, format).unwrap_or_else(|_| {
                // An unusable configured format falls back to the documented default.
                date::format_java(&now, DEFAULT_DATE_FORMAT).unwrap_or_default()
            })
        })
    }

    /// The configured `currentDate` format.
    pub(crate) fn date_format(&self) -> &str {
        self.property("ips.date.variable.format").unwrap_or(DEFAULT_DATE_FORMAT)
    }
}
