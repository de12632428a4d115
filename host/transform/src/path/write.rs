//! Writing through a path: SAP's target-side semantics, which are not part
//! of JSONPath.
//!
//! * missing objects and arrays are created (`$.name.givenName`, `$.schemas[0]`,
//!   arrays padded with `null` up to the index);
//! * `[*]`, slices and filters address existing elements only (`$.members[*].type`
//!   sets `type` on every member and creates none);
//! * a trailing `[?(@.key)]` is the array builder: each produced value becomes
//!   `{"key": value}` at the same index (existing elements are merged);
//! * `$` alone replaces the whole output.
//!
//! Filters in target paths see the *input* entity as `$`.

use serde_json::{Map, Value};

use super::read::{resolve_index, slice_range};
use super::{Path, Root, Seg};
use crate::env::Env;
use crate::syntax::SyntaxError;

/// A validated target path.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) path: Path,
    /// Key of a trailing array builder `[?(@.key)]`.
    pub(crate) builder: Option<String>,
}

impl Target {
    /// Checks that `path` can be written to.
    pub(crate) fn new(path: Path) -> Result<Target, SyntaxError> {
        let err = |m: &str| SyntaxError {
            message: m.to_string(),
            offset: 0,
        };
        if path.root != Root::Doc {
            return Err(err("a target path must start with '$'"));
        }
        if path.func.is_some() {
            return Err(err("a target path cannot end in a function"));
        }
        if path.segs.iter().any(|s| matches!(s, Seg::Deep(_))) {
            return Err(err("a target path cannot use deep scan '..'"));
        }
        let builder = match path.segs.last() {
            Some(Seg::Filter(expr)) => expr.existence_key().map(str::to_string),
            _ => None,
        };
        Ok(Target { path, builder })
    }

    fn write_segs(&self) -> &[Seg] {
        let n = self.path.segs.len() - usize::from(self.builder.is_some());
        &self.path.segs[..n]
    }

    /// Writes `value` into `doc`.
    pub(crate) fn set(&self, doc: &mut Value, value: Value, env: &Env) {
        let segs = self.write_segs();
        if self.builder.is_none() && segs.iter().all(|s| matches!(s, Seg::Key(_) | Seg::Index(_))) {
            // Fast path: one slot, move the value in.
            if let Some(slot) = slot_mut(doc, segs) {
                *slot = value;
            }
            return;
        }
        set_in(doc, segs, self.builder.as_deref(), &value, env);
    }

    /// Removes what the path addresses; true if something was removed.
    pub(crate) fn remove(&self, doc: &mut Value, env: &Env) -> bool {
        let Some((last, parents)) = self.path.segs.split_last() else {
            let had = !is_empty_doc(doc);
            *doc = Value::Object(Map::new());
            return had;
        };
        let mut removed = false;
        for_each_mut(doc, parents, env, &mut |parent| {
            removed |= remove_child(parent, last, env);
        });
        removed
    }

    /// Renames the last key of the path to `new_name`; true if renamed.
    pub(crate) fn rename(&self, doc: &mut Value, new_name: &str, env: &Env) -> bool {
        let Some((Seg::Key(old), parents)) = self.path.segs.split_last() else {
            return false;
        };
        let mut renamed = false;
        for_each_mut(doc, parents, env, &mut |parent| {
            if let Value::Object(o) = parent
                && let Some(v) = o.shift_remove(old.as_str())
            {
                o.insert(new_name.to_string(), v);
                renamed = true;
            }
        });
        renamed
    }
}

fn is_empty_doc(doc: &Value) -> bool {
    matches!(doc, Value::Object(o) if o.is_empty())
}

fn ensure_object(node: &mut Value) -> &mut Map<String, Value> {
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    match node {
        Value::Object(o) => o,
        _ => unreachable!("just made an object"),
    }
}

fn ensure_array(node: &mut Value) -> &mut Vec<Value> {
    if !node.is_array() {
        *node = Value::Array(Vec::new());
    }
    match node {
        Value::Array(a) => a,
        _ => unreachable!("just made an array"),
    }
}

/// The slot for an index, padding the array with `null` (negative indices
/// address existing elements only).
fn index_slot(arr: &mut Vec<Value>, i: i64) -> Option<&mut Value> {
    if i >= 0 {
        let i = usize::try_from(i).ok()?;
        // Refuse absurd padding from hostile documents.
        if i > 100_000 {
            return None;
        }
        if arr.len() <= i {
            arr.resize(i + 1, Value::Null);
        }
        arr.get_mut(i)
    } else {
        let i = resolve_index(i, arr.len())?;
        arr.get_mut(i)
    }
}

fn slot_mut<'a>(mut node: &'a mut Value, segs: &[Seg]) -> Option<&'a mut Value> {
    for seg in segs {
        node = match seg {
            Seg::Key(k) => ensure_object(node).entry(k.as_str()).or_insert(Value::Null),
            Seg::Index(i) => index_slot(ensure_array(node), *i)?,
            _ => return None,
        };
    }
    Some(node)
}

fn set_in(node: &mut Value, segs: &[Seg], builder: Option<&str>, value: &Value, env: &Env) {
    let Some((seg, rest)) = segs.split_first() else {
        match builder {
            Some(key) => build(node, key, value),
            None => *node = value.clone(),
        }
        return;
    };
    // `[*]`, slices and filters only address existing elements: when one
    // follows, missing containers are not created (`$.members[*].type`).
    let creates = rest
        .iter()
        .all(|s| matches!(s, Seg::Key(_) | Seg::Keys(_) | Seg::Index(_) | Seg::Indexes(_)));
    match seg {
        Seg::Key(_) | Seg::Keys(_) | Seg::Index(_) | Seg::Indexes(_) if !creates => {
            for_each_child_mut(node, seg, env, &mut |child| set_in(child, rest, builder, value, env))
        }
        Seg::Key(k) => {
            let child = ensure_object(node).entry(k.as_str()).or_insert(Value::Null);
            set_in(child, rest, builder, value, env);
        }
        Seg::Keys(ks) => {
            for k in ks {
                let child = ensure_object(node).entry(k.as_str()).or_insert(Value::Null);
                set_in(child, rest, builder, value, env);
            }
        }
        Seg::Index(i) => {
            if let Some(child) = index_slot(ensure_array(node), *i) {
                set_in(child, rest, builder, value, env);
            }
        }
        Seg::Indexes(is) => {
            for i in is {
                if let Some(child) = index_slot(ensure_array(node), *i) {
                    set_in(child, rest, builder, value, env);
                }
            }
        }
        _ => for_each_child_mut(node, seg, env, &mut |child| set_in(child, rest, builder, value, env)),
    }
}

/// The array builder: `["a","b"]` → `[{"key":"a"},{"key":"b"}]`, merged by
/// index into what is already there. A single (unwrapped) value becomes one
/// object, as SAP documents for `preserveArrayWithSingleElement: false`.
fn build(node: &mut Value, key: &str, value: &Value) {
    match value {
        Value::Array(items) => {
            let arr = ensure_array(node);
            for (i, item) in items.iter().enumerate() {
                if arr.len() <= i {
                    arr.push(Value::Null);
                }
                ensure_object(&mut arr[i]).insert(key.to_string(), item.clone());
            }
        }
        single => match node {
            Value::Array(arr) => {
                if arr.is_empty() {
                    arr.push(Value::Null);
                }
                ensure_object(&mut arr[0]).insert(key.to_string(), single.clone());
            }
            other => {
                ensure_object(other).insert(key.to_string(), single.clone());
            }
        },
    }
}

/// Calls `f` on every existing child that a multi-selecting step addresses.
fn for_each_child_mut(node: &mut Value, seg: &Seg, env: &Env, f: &mut dyn FnMut(&mut Value)) {
    match (seg, node) {
        (Seg::Key(k), Value::Object(o)) => {
            if let Some(c) = o.get_mut(k.as_str()) {
                f(c)
            }
        }
        (Seg::Keys(ks), Value::Object(o)) => {
            for k in ks {
                if let Some(c) = o.get_mut(k.as_str()) {
                    f(c)
                }
            }
        }
        (Seg::Index(i), Value::Array(a)) => {
            if let Some(i) = resolve_index(*i, a.len()) {
                f(&mut a[i])
            }
        }
        (Seg::Indexes(is), Value::Array(a)) => {
            for i in is {
                if let Some(i) = resolve_index(*i, a.len()) {
                    f(&mut a[i])
                }
            }
        }
        (Seg::Slice(s, e), Value::Array(a)) => {
            let r = slice_range(*s, *e, a.len());
            a[r].iter_mut().for_each(f)
        }
        (Seg::Wildcard, Value::Array(a)) => a.iter_mut().for_each(f),
        (Seg::Wildcard, Value::Object(o)) => o.values_mut().for_each(f),
        (Seg::Filter(expr), Value::Array(a)) => {
            for c in a.iter_mut() {
                if expr.eval(env.input, Some(c), env) {
                    f(c)
                }
            }
        }
        _ => {}
    }
}

/// Calls `f` on every existing node `segs` addresses (creating nothing).
fn for_each_mut(node: &mut Value, segs: &[Seg], env: &Env, f: &mut dyn FnMut(&mut Value)) {
    match segs.split_first() {
        None => f(node),
        Some((seg, rest)) => for_each_child_mut(node, seg, env, &mut |c| for_each_mut(c, rest, env, f)),
    }
}

fn remove_child(parent: &mut Value, last: &Seg, env: &Env) -> bool {
    match (last, parent) {
        (Seg::Key(k), Value::Object(o)) => o.shift_remove(k.as_str()).is_some(),
        (Seg::Keys(ks), Value::Object(o)) => {
            let before = o.len();
            for k in ks {
                o.shift_remove(k.as_str());
            }
            o.len() != before
        }
        (Seg::Index(i), Value::Array(a)) => match resolve_index(*i, a.len()) {
            Some(i) => {
                a.remove(i);
                true
            }
            None => false,
        },
        (Seg::Indexes(is), Value::Array(a)) => {
            let mut idx: Vec<usize> = is.iter().filter_map(|i| resolve_index(*i, a.len())).collect();
            idx.sort_unstable();
            idx.dedup();
            for i in idx.iter().rev() {
                a.remove(*i);
            }
            !idx.is_empty()
        }
        (Seg::Slice(s, e), Value::Array(a)) => {
            let r = slice_range(*s, *e, a.len());
            let any = !r.is_empty();
            a.drain(r);
            any
        }
        (Seg::Wildcard, Value::Array(a)) => {
            let any = !a.is_empty();
            a.clear();
            any
        }
        (Seg::Wildcard, Value::Object(o)) => {
            let any = !o.is_empty();
            o.clear();
            any
        }
        (Seg::Filter(expr), Value::Array(a)) => {
            let before = a.len();
            a.retain(|c| !expr.eval(env.input, Some(c), env));
            a.len() != before
        }
        _ => false,
    }
}
