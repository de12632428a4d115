//! Reading a path from a JSON document (Jayway semantics: a definite path
//! yields one value or nothing, an indefinite one yields a list).

use serde_json::Value;

use super::{Path, PathFn, Root, Seg};
use crate::env::Env;

/// The result of evaluating a path or an operand, borrowing when possible.
#[derive(Debug, Clone)]
pub(crate) enum V<'a> {
    /// Nothing there.
    Missing,
    /// One node of the document.
    Ref(&'a Value),
    /// The nodes matched by an indefinite path.
    List(Vec<&'a Value>),
    /// A computed value (literal, `length()`, function result).
    Owned(Value),
}

impl<'a> V<'a> {
    /// The value as owned JSON: a list becomes an array; `Missing` and JSON
    /// `null` become `None` (SAP treats both as "no value").
    pub(crate) fn into_value(self) -> Option<Value> {
        match self {
            V::Missing => None,
            V::Ref(Value::Null) | V::Owned(Value::Null) => None,
            V::Ref(v) => Some(v.clone()),
            V::Owned(v) => Some(v),
            V::List(l) if l.is_empty() => None,
            V::List(l) => Some(Value::Array(l.into_iter().cloned().collect())),
        }
    }
}

impl Path {
    /// Evaluates the path against `doc` (`$`) with `current` as `@`.
    pub(crate) fn eval<'a>(&self, doc: &'a Value, current: Option<&'a Value>, env: &Env) -> V<'a> {
        let start = match self.root {
            Root::Doc => doc,
            Root::Current => match current {
                Some(c) => c,
                None => return V::Missing,
            },
        };
        if self.func.is_none()
            && self.is_definite()
            && let Some(fast) = self.definite(start)
        {
            return fast;
        }
        // Jayway: several properties as the last step build one map per node.
        if let Some((Seg::Keys(keys), prefix)) = self.segs.split_last() {
            let mut maps = Vec::new();
            for node in select_segs(prefix, start, doc, env, self.lenient) {
                if let Value::Object(o) = node {
                    let m: serde_json::Map<String, Value> = keys
                        .iter()
                        .filter_map(|k| o.get(k).map(|v| (k.clone(), v.clone())))
                        .collect();
                    maps.push(Value::Object(m));
                }
            }
            let definite = prefix.iter().all(|s| matches!(s, Seg::Key(_) | Seg::Index(_)));
            let v = match (definite, maps.pop()) {
                (true, Some(m)) => V::Owned(m),
                (true, None) => V::Missing,
                (false, last) => {
                    maps.extend(last);
                    V::Owned(Value::Array(maps))
                }
            };
            return self.apply_fn(v);
        }
        let nodes = self.select(start, doc, env);
        let v = if self.is_definite() {
            nodes.first().map_or(V::Missing, |n| V::Ref(n))
        } else {
            V::List(nodes)
        };
        self.apply_fn(v)
    }

    fn apply_fn<'a>(&self, v: V<'a>) -> V<'a> {
        match self.func {
            None => v,
            Some(PathFn::Length) => {
                let len = match &v {
                    V::Ref(Value::Array(a)) => a.len(),
                    V::Ref(Value::Object(o)) => o.len(),
                    V::Ref(Value::String(s)) => s.chars().count(),
                    V::List(l) => l.len(),
                    V::Owned(Value::Array(a)) => a.len(),
                    V::Owned(Value::Object(o)) => o.len(),
                    _ => return V::Missing,
                };
                V::Owned(Value::from(len))
            }
        }
    }

    /// Walks a definite path without allocating (the common case);
    /// `None` when the path is not definite.
    fn definite<'a>(&self, start: &'a Value) -> Option<V<'a>> {
        let mut cur = start;
        for seg in &self.segs {
            let next = match (seg, cur) {
                (Seg::Key(k), Value::Object(o)) => o.get(k.as_str()),
                (Seg::Key(_), _) => None,
                (Seg::Index(i), Value::Array(a)) => resolve_index(*i, a.len()).map(|i| &a[i]),
                (Seg::Index(_), _) => None,
                _ => return None,
            };
            match next {
                Some(n) => cur = n,
                None => return Some(V::Missing),
            }
        }
        Some(V::Ref(cur))
    }

    /// All nodes the path selects from `start`.
    pub(crate) fn select<'a>(&self, start: &'a Value, doc: &'a Value, env: &Env) -> Vec<&'a Value> {
        select_segs(&self.segs, start, doc, env, self.lenient)
    }
}

fn select_segs<'a>(segs: &[Seg], start: &'a Value, doc: &'a Value, env: &Env, lenient: bool) -> Vec<&'a Value> {
    let mut cur = vec![start];
    for seg in segs {
        let mut next = Vec::new();
        for node in cur {
            match (seg, node) {
                (Seg::Key(k), Value::Array(a)) if lenient => next.extend(a.iter().filter_map(|e| e.get(k.as_str()))),
                _ => step(seg, node, doc, env, &mut next),
            }
        }
        cur = next;
        if cur.is_empty() {
            break;
        }
    }
    cur
}

/// Resolves a possibly negative index against a length.
pub(crate) fn resolve_index(i: i64, len: usize) -> Option<usize> {
    let idx = if i < 0 { len as i64 + i } else { i };
    (0..len as i64).contains(&idx).then_some(idx as usize)
}

/// The index range of a slice on an array of `len` elements.
pub(crate) fn slice_range(start: Option<i64>, end: Option<i64>, len: usize) -> std::ops::Range<usize> {
    let norm = |i: i64| -> usize {
        if i < 0 {
            (len as i64 + i).max(0) as usize
        } else {
            (i as usize).min(len)
        }
    };
    let s = start.map_or(0, norm);
    let e = end.map_or(len, norm);
    s..e.max(s)
}

fn step<'a>(seg: &Seg, node: &'a Value, doc: &'a Value, env: &Env, out: &mut Vec<&'a Value>) {
    match seg {
        Seg::Key(k) => {
            if let Some(v) = node.get(k.as_str()) {
                out.push(v);
            }
        }
        Seg::Keys(ks) => {
            if let Value::Object(o) = node {
                out.extend(ks.iter().filter_map(|k| o.get(k)));
            }
        }
        Seg::Index(i) => {
            if let Value::Array(a) = node
                && let Some(i) = resolve_index(*i, a.len())
            {
                out.push(&a[i]);
            }
        }
        Seg::Indexes(is) => {
            if let Value::Array(a) = node {
                out.extend(is.iter().filter_map(|i| resolve_index(*i, a.len()).map(|i| &a[i])));
            }
        }
        Seg::Slice(s, e) => {
            if let Value::Array(a) = node {
                out.extend(&a[slice_range(*s, *e, a.len())]);
            }
        }
        Seg::Wildcard => match node {
            Value::Array(a) => out.extend(a),
            Value::Object(o) => out.extend(o.values()),
            _ => {}
        },
        Seg::Filter(expr) => match node {
            Value::Array(a) => out.extend(a.iter().filter(|e| expr.eval(doc, Some(e), env))),
            // Jayway applies a filter on an object to the object itself.
            Value::Object(_) if expr.eval(doc, Some(node), env) => out.push(node),
            _ => {}
        },
        Seg::Deep(inner) => deep(inner, node, doc, env, out),
    }
}

fn deep<'a>(inner: &Seg, node: &'a Value, doc: &'a Value, env: &Env, out: &mut Vec<&'a Value>) {
    step(inner, node, doc, env, out);
    match node {
        Value::Array(a) => a.iter().for_each(|c| deep(inner, c, doc, env, out)),
        Value::Object(o) => o.values().for_each(|c| deep(inner, c, doc, env, out)),
        _ => {}
    }
}
