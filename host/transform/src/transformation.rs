//! The transformation document: parsing and save-time validation into a
//! compiled form that is evaluated many times.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::condition::{self, Expr};
use crate::context::Operation;
use crate::error::{Loc, ValidationError};
use crate::functions::Function;
use crate::path::Path;
use crate::path::write::Target;
use crate::syntax::SyntaxError;
use crate::template::{Dynamic, Template, multi_valued_property};

/// A parsed, validated transformation: one [`EntityTransformation`] per
/// entity type (`user`, `group`, `role`, …).
#[derive(Debug)]
pub struct Transformation {
    pub(crate) entities: BTreeMap<String, EntityTransformation>,
}

/// The transformation of one entity type.
#[derive(Debug)]
pub struct EntityTransformation {
    pub(crate) name: String,
    pub(crate) condition: Option<Cond>,
    pub(crate) ignore: bool,
    pub(crate) skip_operations: Vec<Operation>,
    pub(crate) scim_entity_endpoint: Option<String>,
    pub(crate) mappings: Vec<Mapping>,
}

/// A condition with its source text (for the skip reason).
#[derive(Debug)]
pub(crate) struct Cond {
    pub(crate) text: String,
    pub(crate) expr: Dynamic<Expr>,
}

/// `scope` of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Create,
    Patch,
    Delete,
}

/// Where a mapping's value comes from.
#[derive(Debug)]
pub(crate) enum Source {
    /// Nothing (a generating function such as randomPassword, or none at all).
    None,
    Path(Dynamic<Path>),
    Variable {
        name: String,
        path: Option<Dynamic<Path>>,
    },
    /// A constant; `templated` when some string in it has placeholders
    /// (`template` holds the split form when the constant is one string).
    Constant {
        value: Value,
        templated: bool,
        template: Option<Template>,
    },
    /// `%prop%[]`: a `;`-separated property as an array.
    PropertyArray(String),
}

/// What a mapping does.
#[derive(Debug)]
pub(crate) enum Action {
    Set,
    Remove,
    Rename(String),
    ValueMapping {
        paths: Vec<Dynamic<Path>>,
        table: Vec<(Vec<Value>, Value)>,
    },
}

/// One compiled mapping.
#[derive(Debug)]
pub(crate) struct Mapping {
    pub(crate) source: Source,
    pub(crate) source_text: Option<String>,
    pub(crate) target: Option<Dynamic<Target>>,
    pub(crate) target_text: Option<String>,
    pub(crate) target_variable: Option<String>,
    pub(crate) optional: bool,
    pub(crate) default: Option<Value>,
    /// Some string in `defaultValue` has placeholders.
    pub(crate) default_templated: bool,
    pub(crate) preserve_array: bool,
    pub(crate) condition: Option<Cond>,
    pub(crate) ignore: bool,
    pub(crate) scope: Option<Scope>,
    pub(crate) correlation: bool,
    pub(crate) action: Action,
    pub(crate) functions: Vec<Function>,
    /// The value is a secret (randomPassword): masked in traces.
    pub(crate) secret: bool,
}

const ENTITY_KEYS: &[&str] = &[
    "mappings",
    "condition",
    "ignore",
    "skipOperations",
    "scimEntityEndpoint",
];
const MAPPING_KEYS: &[&str] = &[
    "sourcePath",
    "targetPath",
    "sourceVariable",
    "targetVariable",
    "variablePath",
    "constant",
    "optional",
    "defaultValue",
    "preserveArrayWithSingleElement",
    "condition",
    "ignore",
    "scope",
    "correlationAttribute",
    "type",
    "sourcePaths",
    "valueMappings",
    "functions",
    // Undocumented, seen in SAP Cloud Identity Access Governance defaults.
    "hashing",
];

fn syntax(loc: &Loc, what: &str) -> impl Fn(SyntaxError) -> ValidationError {
    let loc = loc.clone();
    let what = what.to_string();
    move |e| loc.err(format!("invalid {what}: {e}"))
}

pub(crate) fn compile_target(s: &str) -> Result<Target, SyntaxError> {
    Target::new(Path::parse(s)?)
}

fn path(v: &Value, loc: &Loc) -> Result<(String, Dynamic<Path>), ValidationError> {
    let s = v.as_str().ok_or_else(|| loc.err("must be a string"))?;
    let p = Dynamic::new(s, Path::parse, true).map_err(syntax(loc, "JSONPath"))?;
    Ok((s.to_string(), p))
}

fn cond(v: &Value, loc: &Loc) -> Result<Cond, ValidationError> {
    let text = v.as_str().ok_or_else(|| loc.err("must be a string"))?;
    let expr = Dynamic::new(text, condition::parse, true).map_err(syntax(loc, "condition"))?;
    Ok(Cond {
        text: text.to_string(),
        expr,
    })
}

fn boolean(obj: &Map<String, Value>, key: &str, loc: &Loc) -> Result<bool, ValidationError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        // SAP's editor sometimes stores flags as strings.
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(loc.key(key).err("must be true or false")),
    }
}

fn string(obj: &Map<String, Value>, key: &str, loc: &Loc) -> Result<Option<String>, ValidationError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(loc.key(key).err("must be a string")),
    }
}

fn has_placeholder(v: &Value) -> bool {
    match v {
        Value::String(s) => !Template::parse(s).is_static(),
        Value::Array(a) => a.iter().any(has_placeholder),
        Value::Object(o) => o.values().any(has_placeholder),
        _ => false,
    }
}

impl Transformation {
    /// Parses and validates a transformation document. Every path,
    /// condition and regex without placeholders is compiled here, once.
    pub fn parse(doc: &Value) -> Result<Transformation, ValidationError> {
        let obj = doc
            .as_object()
            .ok_or_else(|| ValidationError::new("$", "a transformation must be a JSON object"))?;
        let mut entities = BTreeMap::new();
        for (name, body) in obj {
            entities.insert(name.clone(), EntityTransformation::parse(name, body)?);
        }
        Ok(Transformation { entities })
    }

    /// Parses a transformation from JSON text.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(text: &str) -> Result<Transformation, ValidationError> {
        let doc: Value =
            serde_json::from_str(text).map_err(|e| ValidationError::new("$", format!("not valid JSON: {e}")))?;
        Transformation::parse(&doc)
    }

    /// The entity types defined, in name order.
    pub fn entity_types(&self) -> impl Iterator<Item = &str> {
        self.entities.keys().map(String::as_str)
    }

    /// The transformation of one entity type.
    pub fn entity(&self, name: &str) -> Option<&EntityTransformation> {
        self.entities.get(name)
    }
}

impl std::str::FromStr for Transformation {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Transformation::from_str(s)
    }
}

impl EntityTransformation {
    fn parse(name: &str, body: &Value) -> Result<EntityTransformation, ValidationError> {
        let loc = Loc(name.to_string());
        let obj = body
            .as_object()
            .ok_or_else(|| loc.err("an entity transformation must be a JSON object"))?;
        if let Some(k) = obj.keys().find(|k| !ENTITY_KEYS.contains(&k.as_str())) {
            return Err(loc.err(format!("unknown key \"{k}\"")));
        }
        let condition = obj
            .get("condition")
            .filter(|v| !v.is_null())
            .map(|v| cond(v, &loc.key("condition")))
            .transpose()?;
        let skip_operations = match obj.get("skipOperations") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str()
                        .and_then(|s| match s.to_ascii_lowercase().as_str() {
                            "create" => Some(Operation::Create),
                            "update" => Some(Operation::Update),
                            "delete" => Some(Operation::Delete),
                            _ => None,
                        })
                        .ok_or_else(|| {
                            loc.index("skipOperations", i)
                                .err("must be \"create\", \"update\" or \"delete\"")
                        })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(loc.key("skipOperations").err("must be an array")),
        };
        let mappings = match obj.get("mappings") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, m)| Mapping::parse(m, &loc.index("mappings", i)))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(loc.key("mappings").err("must be an array")),
        };
        Ok(EntityTransformation {
            name: name.to_string(),
            condition,
            ignore: boolean(obj, "ignore", &loc)?,
            skip_operations,
            scim_entity_endpoint: string(obj, "scimEntityEndpoint", &loc)?,
            mappings,
        })
    }

    /// The entity type's name (`user`, `group`, …).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `scimEntityEndpoint` (proxy systems: `Users`, `Groups`).
    pub fn scim_entity_endpoint(&self) -> Option<&str> {
        self.scim_entity_endpoint.as_deref()
    }

    /// `ignore: true`: the entity type is not processed (and not counted).
    pub fn is_ignored(&self) -> bool {
        self.ignore
    }

    /// The entity-level condition text, if any.
    pub fn condition(&self) -> Option<&str> {
        self.condition.as_ref().map(|c| c.text.as_str())
    }

    /// Whether `skipOperations` suppresses `op` (`Patch` counts as `update`).
    /// The job engine decides what skipping means.
    pub fn skips(&self, op: Operation) -> bool {
        let op = if op == Operation::Patch { Operation::Update } else { op };
        self.skip_operations.contains(&op)
    }

    /// Source paths of mappings marked `correlationAttribute` (reporting).
    pub fn correlation_attributes(&self) -> Vec<&str> {
        self.mappings
            .iter()
            .filter(|m| m.correlation)
            .filter_map(|m| m.source_text.as_deref())
            .collect()
    }

    /// Number of mappings.
    pub fn mapping_count(&self) -> usize {
        self.mappings.len()
    }
}

impl Mapping {
    fn parse(v: &Value, loc: &Loc) -> Result<Mapping, ValidationError> {
        let obj = v
            .as_object()
            .ok_or_else(|| loc.err("a mapping must be a JSON object"))?;
        if let Some(k) = obj.keys().find(|k| !MAPPING_KEYS.contains(&k.as_str())) {
            return Err(loc.err(format!("unknown key \"{k}\"")));
        }
        let given = |k: &str| obj.get(k).is_some_and(|v| !v.is_null());
        let sources = ["sourcePath", "sourceVariable", "constant"]
            .into_iter()
            .filter(|k| given(k))
            .collect::<Vec<_>>();
        if sources.len() > 1 {
            return Err(loc.err(format!("give only one of {}", sources.join(", "))));
        }
        let mut source_text = None;
        let source = if let Some(sp) = obj.get("sourcePath").filter(|v| !v.is_null()) {
            let (text, p) = path(sp, &loc.key("sourcePath"))?;
            source_text = Some(text);
            Source::Path(p)
        } else if let Some(name) = string(obj, "sourceVariable", loc)? {
            let path = obj
                .get("variablePath")
                .filter(|v| !v.is_null())
                .map(|v| path(v, &loc.key("variablePath")).map(|(_, p)| p))
                .transpose()?;
            source_text = Some(format!("${{{name}}}"));
            Source::Variable { name, path }
        } else if let Some(c) = obj.get("constant") {
            match c.as_str().and_then(multi_valued_property) {
                Some(prop) => Source::PropertyArray(prop.to_string()),
                None => Source::Constant {
                    value: c.clone(),
                    templated: has_placeholder(c),
                    template: c.as_str().map(Template::parse).filter(|t| !t.is_static()),
                },
            }
        } else {
            Source::None
        };
        if given("variablePath") && !matches!(source, Source::Variable { .. }) {
            return Err(loc.key("variablePath").err("only allowed with sourceVariable"));
        }
        let target_text = string(obj, "targetPath", loc)?;
        let target = target_text
            .as_deref()
            .map(|t| Dynamic::new(t, compile_target, true).map_err(syntax(&loc.key("targetPath"), "JSONPath")))
            .transpose()?;
        let target_variable = string(obj, "targetVariable", loc)?;
        let scope = match string(obj, "scope", loc)?.as_deref() {
            None => None,
            Some("createEntity") => Some(Scope::Create),
            Some("patchEntity") => Some(Scope::Patch),
            Some("deleteEntity") => Some(Scope::Delete),
            Some(_) => {
                return Err(loc
                    .key("scope")
                    .err("must be \"createEntity\", \"patchEntity\" or \"deleteEntity\""));
            }
        };
        let functions = match obj.get("functions") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, f)| Function::parse(f, loc.index("functions", i)))
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(loc.key("functions").err("must be an array")),
        };
        let kind = string(obj, "type", loc)?;
        let action = match kind.as_deref().unwrap_or("set") {
            "set" => Action::Set,
            "remove" => Action::Remove,
            "rename" => match obj.get("constant") {
                Some(Value::String(s)) if !s.is_empty() => Action::Rename(s.clone()),
                _ => {
                    return Err(loc
                        .key("constant")
                        .err("rename needs the new name as a string constant"));
                }
            },
            "valueMapping" => parse_value_mapping(obj, loc)?,
            other => {
                return Err(loc.key("type").err(format!(
                    "unknown mapping type \"{other}\" (set, remove, rename, valueMapping)"
                )));
            }
        };
        for key in ["sourcePaths", "valueMappings"] {
            if given(key) && !matches!(action, Action::ValueMapping { .. }) {
                return Err(loc.key(key).err("only allowed with \"type\": \"valueMapping\""));
            }
        }
        match &action {
            Action::Remove | Action::Rename(_) => {
                if target.is_none() {
                    return Err(loc.err("\"remove\" and \"rename\" need a targetPath"));
                }
                if !matches!(source, Source::None | Source::Constant { .. }) {
                    return Err(loc.err("\"remove\" and \"rename\" take no sourcePath or sourceVariable"));
                }
                if let (Action::Rename(_), Some(Dynamic::Static(t))) = (&action, &target)
                    && !matches!(t.path.segs.last(), Some(crate::path::Seg::Key(_)))
                {
                    return Err(loc
                        .key("targetPath")
                        .err("rename needs a path ending in a property name"));
                }
            }
            Action::ValueMapping { .. } => {
                if !matches!(source, Source::None) {
                    return Err(loc.err("valueMapping reads sourcePaths, not sourcePath/sourceVariable/constant"));
                }
            }
            Action::Set => {
                let generates = functions.iter().any(Function::generates);
                if matches!(source, Source::None) && !generates {
                    return Err(loc.err("needs a sourcePath, sourceVariable, constant or a randomPassword function"));
                }
            }
        }
        let correlation = boolean(obj, "correlationAttribute", loc)?;
        if matches!(action, Action::Set | Action::ValueMapping { .. })
            && target.is_none()
            && target_variable.is_none()
            && !correlation
        {
            return Err(loc.err("needs a targetPath or a targetVariable"));
        }
        let condition = obj
            .get("condition")
            .filter(|v| !v.is_null())
            .map(|v| cond(v, &loc.key("condition")))
            .transpose()?;
        // `hashing: true` has no documented meaning; refuse it rather than guess.
        if boolean(obj, "hashing", loc)? {
            return Err(loc.key("hashing").err("hashing: true is not supported"));
        }
        let secret = functions.iter().any(Function::generates);
        Ok(Mapping {
            source,
            source_text,
            target,
            target_text,
            target_variable,
            optional: boolean(obj, "optional", loc)?,
            default: obj.get("defaultValue").cloned(),
            default_templated: obj.get("defaultValue").is_some_and(has_placeholder),
            preserve_array: boolean(obj, "preserveArrayWithSingleElement", loc)?,
            condition,
            ignore: boolean(obj, "ignore", loc)?,
            scope,
            correlation,
            action,
            functions,
            secret,
        })
    }
}

fn parse_value_mapping(obj: &Map<String, Value>, loc: &Loc) -> Result<Action, ValidationError> {
    let paths = match obj.get("sourcePaths") {
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .enumerate()
            .map(|(i, p)| path(p, &loc.index("sourcePaths", i)).map(|(_, p)| p))
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(loc
                .key("sourcePaths")
                .err("valueMapping needs a non-empty array of paths"));
        }
    };
    let table = match obj.get("valueMappings") {
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let l = loc.index("valueMappings", i);
                let key = match e.get("key") {
                    Some(Value::Array(k)) => k.clone(),
                    Some(v) if !v.is_null() && paths.len() == 1 => vec![v.clone()],
                    _ => return Err(l.key("key").err("must be an array")),
                };
                if key.len() != paths.len() {
                    return Err(l.key("key").err(format!(
                        "has {} values but there are {} sourcePaths",
                        key.len(),
                        paths.len()
                    )));
                }
                let mapped = e
                    .get("mappedValue")
                    .cloned()
                    .ok_or_else(|| l.err("missing \"mappedValue\""))?;
                if let Some(k) = e
                    .as_object()
                    .and_then(|o| o.keys().find(|k| *k != "key" && *k != "mappedValue"))
                {
                    return Err(l.err(format!("unknown key \"{k}\"")));
                }
                Ok((key, mapped))
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(loc
                .key("valueMappings")
                .err("valueMapping needs an array of {key, mappedValue}"));
        }
    };
    Ok(Action::ValueMapping { paths, table })
}
