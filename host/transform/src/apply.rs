//! Applying a transformation to one entity.

use std::cell::OnceCell;
use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::condition;
use crate::context::{Context, Operation};
use crate::env::Env;
use crate::outcome::{Outcome, TraceAction, TraceStep};
use crate::path::Path;
use crate::template::{Dynamic, Template};
use crate::transformation::{
    Action, Cond, EntityTransformation, Mapping, Scope, Source, Transformation, compile_target,
};

/// Why an entity failed.
struct Failure {
    reason: String,
    mapping: Option<usize>,
    path: Option<String>,
}

/// Collects trace steps only when asked to.
struct Tracer {
    on: bool,
    steps: Vec<TraceStep>,
}

impl Tracer {
    fn step(
        &mut self,
        m: Option<(usize, &Mapping)>,
        action: TraceAction,
        value: Option<&Value>,
        detail: Option<String>,
    ) {
        if !self.on {
            return;
        }
        let secret = m.is_some_and(|(_, m)| m.secret);
        self.steps.push(TraceStep {
            mapping: m.map(|(i, _)| i),
            action,
            target_path: m.and_then(|(_, m)| m.target_text.clone()),
            target_variable: m.and_then(|(_, m)| m.target_variable.clone()),
            value: value.map(|v| {
                if secret {
                    Value::String("********".into())
                } else {
                    v.clone()
                }
            }),
            detail,
        });
    }
}

impl Transformation {
    /// Transforms `input` as entity type `entity_type` (`user`, `group`, …).
    /// An entity type the transformation does not define is skipped.
    pub fn apply(&self, entity_type: &str, input: &Value, ctx: &Context) -> Outcome {
        match self.entities.get(entity_type) {
            Some(e) => e.apply(input, ctx),
            None => Outcome::Skipped {
                reason: format!("The entity type {entity_type} is not defined in the transformation."),
                trace: vec![],
            },
        }
    }
}

/// Which mappings run for an operation.
fn scope_applies(scope: Option<Scope>, op: Operation) -> bool {
    match op {
        Operation::Delete => scope == Some(Scope::Delete),
        Operation::Patch => scope == Some(Scope::Patch),
        Operation::Create => matches!(scope, None | Some(Scope::Create)),
        Operation::Update => scope.is_none(),
    }
}

fn eval_cond(c: &Cond, env: &Env) -> Result<bool, String> {
    let expr = c.expr.get(env, condition::parse).map_err(|e| {
        format!(
            "The condition: ({}) is invalid after placeholder substitution: {e}",
            c.text
        )
    })?;
    Ok(expr.eval(env.input, None, env))
}

impl EntityTransformation {
    /// Transforms one entity of this type.
    pub fn apply(&self, input: &Value, ctx: &Context) -> Outcome {
        let mut tracer = Tracer {
            on: ctx.trace,
            steps: Vec::new(),
        };
        if self.ignore {
            let reason = format!("The entity type {} is ignored.", self.name);
            tracer.step(None, TraceAction::EntitySkipped, None, Some(reason.clone()));
            return Outcome::Skipped {
                reason,
                trace: tracer.steps,
            };
        }
        let date = OnceCell::new();
        let mut vars = ctx.variables.clone();
        // deleteEntity processing ignores the entity-level condition (SAP docs).
        if let (Some(c), false) = (&self.condition, ctx.operation == Operation::Delete) {
            let env = Env {
                ctx,
                vars: &vars,
                date: &date,
                input,
            };
            match eval_cond(c, &env) {
                Ok(true) => tracer.step(None, TraceAction::EntityAccepted, None, Some(c.text.clone())),
                Ok(false) => {
                    let reason = format!("The condition: ({}) is not fulfilled.", c.text);
                    tracer.step(None, TraceAction::EntitySkipped, None, Some(reason.clone()));
                    return Outcome::Skipped {
                        reason,
                        trace: tracer.steps,
                    };
                }
                Err(reason) => {
                    return Outcome::Failed {
                        reason,
                        mapping_index: None,
                        path: None,
                        trace: tracer.steps,
                    };
                }
            }
        }
        let mut output = Value::Object(Map::new());
        for (i, m) in self.mappings.iter().enumerate() {
            if let Err(f) = run_mapping(i, m, input, &mut output, &mut vars, ctx, &date, &mut tracer) {
                tracer.step(Some((i, m)), TraceAction::Failed, None, Some(f.reason.clone()));
                return Outcome::Failed {
                    reason: f.reason,
                    mapping_index: f.mapping,
                    path: f.path,
                    trace: tracer.steps,
                };
            }
        }
        Outcome::Transformed {
            output,
            variables: vars,
            trace: tracer.steps,
        }
    }
}

/// Renders placeholders in every string of a constant.
fn render_constant(v: &Value, env: &Env) -> Value {
    match v {
        Value::String(s) => Value::String(Template::parse(s).render(env)),
        Value::Array(a) => Value::Array(a.iter().map(|x| render_constant(x, env)).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), render_constant(x, env))).collect()),
        other => other.clone(),
    }
}

fn read_path(p: &Dynamic<Path>, doc: &Value, env: &Env) -> Result<Option<Value>, String> {
    let p = p
        .get(env, Path::parse)
        .map_err(|e| format!("invalid JSONPath after placeholder substitution: {e}"))?;
    Ok(p.eval(doc, None, env).into_value())
}

/// Loose key comparison for valueMapping: `1` matches `"1"`.
fn key_matches(key: &Value, v: &Value) -> bool {
    key == v
        || match (key, v) {
            (Value::String(k), Value::Number(n)) | (Value::Number(n), Value::String(k)) => *k == n.to_string(),
            (Value::String(k), Value::Bool(b)) | (Value::Bool(b), Value::String(k)) => *k == b.to_string(),
            _ => false,
        }
}

/// The value a `valueMapping` selects (`None` on a miss).
fn value_mapping(
    paths: &[Dynamic<Path>],
    table: &[(Vec<Value>, Value)],
    input: &Value,
    env: &Env,
) -> Result<Option<Value>, String> {
    let mut keys = Vec::with_capacity(paths.len());
    for p in paths {
        keys.push(match read_path(p, input, env)? {
            Some(Value::Array(a)) if a.len() == 1 => a.into_iter().next(),
            v => v,
        });
    }
    let found = table.iter().find(|(key, _)| {
        key.iter()
            .zip(&keys)
            .all(|(k, v)| v.as_ref().is_some_and(|v| key_matches(k, v)))
    });
    Ok(found.map(|(_, mapped)| mapped.clone()))
}

/// The value of a `set` mapping's source, and whether a one-element array
/// from it may be unwrapped (`preserveArrayWithSingleElement`).
fn source_value(source: &Source, input: &Value, env: &Env) -> Result<(Option<Value>, bool), String> {
    Ok(match source {
        Source::None => (None, false),
        Source::Path(p) => (read_path(p, input, env)?, true),
        Source::Variable { name, path } => {
            let v = match (env.variable(name), path) {
                (Some(v), Some(p)) => read_path(p, &v, env)?,
                (Some(v), None) => Some(v.into_owned()).filter(|v| !v.is_null()),
                (None, _) => None,
            };
            (v, true)
        }
        Source::Constant {
            value,
            templated,
            template,
        } => {
            let v = match template {
                Some(t) => Value::String(t.render(env)),
                None if *templated => render_constant(value, env),
                None => value.clone(),
            };
            (Some(v), false)
        }
        Source::PropertyArray(prop) => {
            let items = env.property(prop).map(|s| {
                s.split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.into()))
                    .collect()
            });
            (items.map(Value::Array), false)
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn run_mapping(
    i: usize,
    m: &Mapping,
    input: &Value,
    output: &mut Value,
    vars: &mut BTreeMap<String, Value>,
    ctx: &Context,
    date: &OnceCell<String>,
    tracer: &mut Tracer,
) -> Result<(), Failure> {
    let here = Some((i, m));
    if m.ignore {
        tracer.step(here, TraceAction::Ignored, None, None);
        return Ok(());
    }
    if !scope_applies(m.scope, ctx.operation) {
        let detail = match m.scope {
            Some(Scope::Create) => "scope createEntity",
            Some(Scope::Patch) => "scope patchEntity",
            Some(Scope::Delete) => "scope deleteEntity",
            None => "no scope: not run for this operation",
        };
        tracer.step(here, TraceAction::SkippedByScope, None, Some(detail.into()));
        return Ok(());
    }
    let fail = |reason: String, path: Option<&str>| Failure {
        reason,
        mapping: Some(i),
        path: path
            .map(str::to_string)
            .or_else(|| m.source_text.clone())
            .or_else(|| m.target_text.clone()),
    };
    let env = Env { ctx, vars, date, input };
    if let Some(c) = &m.condition
        && !eval_cond(c, &env).map_err(|r| fail(r, None))?
    {
        tracer.step(here, TraceAction::SkippedByCondition, None, Some(c.text.clone()));
        return Ok(());
    }
    let target = match &m.target {
        Some(t) => Some(t.get(&env, compile_target).map_err(|e| {
            fail(
                format!("invalid target path after placeholder substitution: {e}"),
                m.target_text.as_deref(),
            )
        })?),
        None => None,
    };
    // Source value; `unwrap` tells whether a one-element array may become its element.
    let (value, unwrap) = match &m.action {
        Action::Remove => {
            let removed = target.as_ref().is_some_and(|t| t.remove(output, &env));
            let detail = (!removed).then(|| "nothing to remove".to_string());
            tracer.step(here, TraceAction::Removed, None, detail);
            return Ok(());
        }
        Action::Rename(new_name) => {
            let renamed = target.as_ref().is_some_and(|t| t.rename(output, new_name, &env));
            if !renamed && !m.optional {
                return Err(fail(
                    format!(
                        "The attribute to rename at {} does not exist.",
                        m.target_text.as_deref().unwrap_or("$")
                    ),
                    m.target_text.as_deref(),
                ));
            }
            let action = if renamed {
                TraceAction::Renamed
            } else {
                TraceAction::NoValue
            };
            tracer.step(here, action, None, Some(format!("to {new_name}")));
            return Ok(());
        }
        Action::ValueMapping { paths, table } => (
            value_mapping(paths, table, input, &env).map_err(|r| fail(r, None))?,
            false,
        ),
        Action::Set => source_value(&m.source, input, &env).map_err(|r| fail(r, None))?,
    };
    // preserveArrayWithSingleElement applies to what the source yields, before functions.
    let mut value = match value {
        Some(Value::Array(mut a)) if unwrap && !m.preserve_array && a.len() == 1 => a.pop(),
        v => v,
    };
    for f in &m.functions {
        value = f
            .apply(value, &env)
            .map_err(|e| fail(format!("Function {} failed: {}", f.name, e.0), None))?;
    }
    // defaultValue applies whenever no value results, `optional` or not (SAP docs are silent).
    let (value, action) = match (value, &m.default) {
        (Some(v), _) => (v, TraceAction::Applied),
        (None, Some(d)) if m.default_templated => (render_constant(d, &env), TraceAction::Defaulted),
        (None, Some(d)) => (d.clone(), TraceAction::Defaulted),
        (None, None) => {
            // An unset variable (entityIdTargetSystem on create) and a mapping
            // that writes nothing (correlationAttribute only) are not errors.
            let lenient = m.optional
                || matches!(m.source, Source::Variable { .. })
                || (m.target.is_none() && m.target_variable.is_none());
            if lenient {
                tracer.step(here, TraceAction::NoValue, None, None);
                return Ok(());
            }
            let at = m.source_text.as_deref().or(m.target_text.as_deref()).unwrap_or("$");
            return Err(fail(format!("The mandatory attribute {at} has no value."), None));
        }
    };
    tracer.step(here, action, Some(&value), None);
    match (&target, &m.target_variable) {
        (Some(t), Some(var)) => {
            t.set(output, value.clone(), &env);
            vars.insert(var.clone(), value);
        }
        (Some(t), None) => t.set(output, value, &env),
        (None, Some(var)) => {
            vars.insert(var.clone(), value);
        }
        (None, None) => {}
    }
    Ok(())
}
