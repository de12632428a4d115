//! Functions on maps (each element of an array of maps): copyMapEntry,
//! renameMapEntry, putIfAbsent, putIfPresent.

use serde_json::Value;

use super::Params;
use crate::error::ValidationError;

#[derive(Debug)]
pub(crate) enum MapFn {
    Copy { from: String, to: String },
    Rename { from: String, to: String },
    PutIfAbsent { key: String, value: Value },
    PutIfPresent { key: String, value: Value },
}

impl MapFn {
    pub(crate) fn parse(name: &str, p: &mut Params) -> Result<MapFn, ValidationError> {
        Ok(match name {
            "copyMapEntry" | "renameMapEntry" => {
                let from = p.required_string("sourceKey")?;
                let to = p.required_string("targetKey")?;
                if name == "copyMapEntry" {
                    MapFn::Copy { from, to }
                } else {
                    MapFn::Rename { from, to }
                }
            }
            _ => {
                let key = p.required_string("key")?;
                let value = p.required("defaultValue")?.clone();
                if name == "putIfAbsent" {
                    MapFn::PutIfAbsent { key, value }
                } else {
                    MapFn::PutIfPresent { key, value }
                }
            }
        })
    }

    /// Applies to one map; other values pass unchanged.
    pub(crate) fn apply(&self, v: Value) -> Value {
        let Value::Object(mut o) = v else { return v };
        match self {
            MapFn::Copy { from, to } => {
                if let Some(x) = o.get(from).cloned() {
                    o.insert(to.clone(), x);
                }
            }
            MapFn::Rename { from, to } => {
                if let Some(x) = o.shift_remove(from.as_str()) {
                    o.insert(to.clone(), x);
                }
            }
            MapFn::PutIfAbsent { key, value } => {
                if o.get(key).is_none_or(Value::is_null) {
                    o.insert(key.clone(), value.clone());
                }
            }
            MapFn::PutIfPresent { key, value } => {
                if o.get(key).is_some_and(|x| !x.is_null()) {
                    o.insert(key.clone(), value.clone());
                }
            }
        }
        Value::Object(o)
    }
}
