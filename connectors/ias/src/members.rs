//! Group membership for the Identity Directory (SCIM API version 2): a PatchOp split into several PATCH
//! requests so that none removes more than 50 members (IAS refuses more) or adds more than the configured
//! `ias.patch.group.members.above.threshold`.

use std::collections::HashSet;

use provisio_sdk::scim::{self, PatchOp, PatchOperation};
use serde_json::{Value, json};

/// What one operation does to the `members` attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Any operation that does not touch members; sent as it is.
    Other(Value),
    /// Adds these member objects.
    Add(Vec<Value>),
    /// Removes the members with these ids.
    Remove(Vec<String>),
    /// A `remove` with a value filter path (`members[value eq "…"]`): removes one member, sent as it is.
    RemoveFiltered(Value),
    /// Sets the members to exactly these (a `replace` of `members`, or `remove members` with no value when
    /// given an empty list): needs the current members to become adds and removes.
    Set(Vec<Value>),
}

/// Whether a step needs the group's current members.
pub fn needs_current(steps: &[Step]) -> bool {
    steps.iter().any(|s| matches!(s, Step::Set(_)))
}

/// Classifies the operations of a PatchOp document.
pub fn steps(ops: &PatchOp) -> Vec<Step> {
    let mut out = Vec::new();
    for op in &ops.operations {
        let path = op.path.as_deref().map(str::trim);
        let on_members = path.is_some_and(|p| p.eq_ignore_ascii_case("members"));
        match (op.op.as_str(), path) {
            ("add", _) if on_members => out.push(Step::Add(as_list(op.value.as_ref()))),
            ("replace", _) if on_members => out.push(Step::Set(as_list(op.value.as_ref()))),
            ("remove", _) if on_members => match &op.value {
                // `remove members` without a value removes them all.
                None | Some(Value::Null) => out.push(Step::Set(Vec::new())),
                Some(v) => out.push(Step::Remove(ids(&as_list(Some(v))))),
            },
            ("remove", Some(p)) if is_member_filter(p) => out.push(Step::RemoveFiltered(to_json(op))),
            ("add" | "replace", None) => {
                // A path-less add/replace may carry `members` among other attributes: split them off.
                let Some(Value::Object(map)) = &op.value else {
                    out.push(Step::Other(to_json(op)));
                    continue;
                };
                let mut rest = map.clone();
                let key = rest.keys().find(|k| k.eq_ignore_ascii_case("members")).cloned();
                let members = key.and_then(|k| rest.shift_remove(&k));
                if !rest.is_empty() {
                    out.push(Step::Other(json!({"op": op.op, "value": Value::Object(rest)})));
                }
                if let Some(m) = members {
                    let list = as_list(Some(&m));
                    out.push(if op.op == "add" {
                        Step::Add(list)
                    } else {
                        Step::Set(list)
                    });
                }
            }
            _ => out.push(Step::Other(to_json(op))),
        }
    }
    out
}

/// Replaces `Set` steps by the adds and removes that turn `current` (member ids) into the wanted list;
/// `current` is updated as steps go, so later steps see the effect of earlier ones.
pub fn resolve(steps: Vec<Step>, current: &[String]) -> Vec<Step> {
    let mut now: Vec<String> = current.to_vec();
    let mut out = Vec::new();
    for step in steps {
        match step {
            Step::Set(wanted) => {
                let wanted_ids: HashSet<String> = ids(&wanted).into_iter().collect();
                let have: HashSet<String> = now.iter().cloned().collect();
                let gone: Vec<String> = now.iter().filter(|id| !wanted_ids.contains(*id)).cloned().collect();
                let new: Vec<Value> = wanted
                    .into_iter()
                    .filter(|m| member_id(m).is_some_and(|id| !have.contains(&id)))
                    .collect();
                now.retain(|id| wanted_ids.contains(id));
                now.extend(ids(&new));
                if !gone.is_empty() {
                    out.push(Step::Remove(gone));
                }
                if !new.is_empty() {
                    out.push(Step::Add(new));
                }
            }
            Step::Add(list) => {
                now.extend(ids(&list));
                out.push(Step::Add(list));
            }
            Step::Remove(list) => {
                now.retain(|id| !list.contains(id));
                out.push(Step::Remove(list));
            }
            other => out.push(other),
        }
    }
    out
}

/// Packs steps into PatchOp documents, in order: each removes at most `max_removals` members and adds at
/// most `max_additions`. Removals by id become `members[value eq "…"]` operations (the form IAS
/// documents). Always at least one document when there are steps.
pub fn pack(steps: Vec<Step>, max_additions: usize, max_removals: usize) -> Vec<Value> {
    let (max_additions, max_removals) = (max_additions.max(1), max_removals.max(1));
    let mut docs: Vec<Vec<Value>> = Vec::new();
    let mut ops: Vec<Value> = Vec::new();
    let (mut added, mut removed) = (0usize, 0usize);
    let mut flush = |ops: &mut Vec<Value>, added: &mut usize, removed: &mut usize| {
        if !ops.is_empty() {
            docs.push(std::mem::take(ops));
        }
        *added = 0;
        *removed = 0;
    };
    for step in steps {
        match step {
            Step::Other(op) => ops.push(op),
            Step::RemoveFiltered(op) => {
                if removed >= max_removals {
                    flush(&mut ops, &mut added, &mut removed);
                }
                ops.push(op);
                removed += 1;
            }
            Step::Remove(list) => {
                for id in list {
                    if removed >= max_removals {
                        flush(&mut ops, &mut added, &mut removed);
                    }
                    ops.push(json!({"op": "remove", "path": format!("members[value eq {}]", scim::quote(&id))}));
                    removed += 1;
                }
            }
            Step::Add(list) => {
                let mut rest = list.as_slice();
                while !rest.is_empty() {
                    if added >= max_additions {
                        flush(&mut ops, &mut added, &mut removed);
                    }
                    let (chunk, tail) = rest.split_at((max_additions - added).min(rest.len()));
                    ops.push(json!({"op": "add", "path": "members", "value": chunk}));
                    added += chunk.len();
                    rest = tail;
                }
            }
            // `resolve` has turned these into adds and removes; one left over sets nothing.
            Step::Set(_) => {}
        }
    }
    flush(&mut ops, &mut added, &mut removed);
    docs.into_iter()
        .map(|ops| json!({"schemas": [scim::PATCH_OP], "Operations": ops}))
        .collect()
}

/// The ids (`value`) of member objects; plain strings count as ids too.
pub fn ids(members: &[Value]) -> Vec<String> {
    members.iter().filter_map(member_id).collect()
}

fn member_id(m: &Value) -> Option<String> {
    match m {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("value"))
            .and_then(|(_, v)| v.as_str())
            .map(str::to_string),
        _ => None,
    }
}

/// The member ids of a group resource.
pub fn member_ids(group: &Value) -> Vec<String> {
    let members = group
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("members")))
        .and_then(|(_, v)| v.as_array());
    members.map(|m| ids(m)).unwrap_or_default()
}

fn as_list(v: Option<&Value>) -> Vec<Value> {
    match v {
        Some(Value::Array(a)) => a.clone(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![other.clone()],
    }
}

fn is_member_filter(path: &str) -> bool {
    path.get(..8).is_some_and(|p| p.eq_ignore_ascii_case("members[")) && path.ends_with(']')
}

fn to_json(op: &PatchOperation) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("op".into(), json!(op.op));
    if let Some(p) = &op.path {
        o.insert("path".into(), json!(p));
    }
    if let Some(v) = &op.value {
        o.insert("value".into(), v.clone());
    }
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(ids: std::ops::Range<usize>) -> Vec<Value> {
        ids.map(|i| json!({"value": format!("u{i}")})).collect()
    }

    fn ops_of(doc: &Value) -> &Vec<Value> {
        doc["Operations"].as_array().expect("operations")
    }

    #[test]
    fn removals_are_split_by_fifty() {
        let doc = json!({"Operations": [
            {"op": "replace", "path": "displayName", "value": "x"},
            {"op": "remove", "path": "members", "value": m(0..120)}
        ]});
        let ops = PatchOp::parse(&doc).unwrap();
        let docs = pack(resolve(steps(&ops), &[]), 20_000, 50);
        assert_eq!(docs.len(), 3);
        assert_eq!(ops_of(&docs[0]).len(), 51); // the displayName change and 50 removals
        assert_eq!(ops_of(&docs[0])[1]["path"], "members[value eq \"u0\"]");
        assert_eq!(ops_of(&docs[1]).len(), 50);
        assert_eq!(ops_of(&docs[2]).len(), 20);
    }

    #[test]
    fn additions_are_split_by_threshold() {
        let doc = json!({"Operations": [{"op": "add", "path": "members", "value": m(0..25)}]});
        let docs = pack(resolve(steps(&PatchOp::parse(&doc).unwrap()), &[]), 10, 50);
        let sizes: Vec<usize> = docs
            .iter()
            .map(|d| ops_of(d)[0]["value"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, vec![10, 10, 5]);
    }

    #[test]
    fn replace_and_remove_all_become_differences() {
        let current: Vec<String> = (0..60).map(|i| format!("u{i}")).collect();
        let doc = json!({"Operations": [{"op": "replace", "path": "members", "value": m(55..65)}]});
        let resolved = resolve(steps(&PatchOp::parse(&doc).unwrap()), &current);
        assert_eq!(resolved.len(), 2);
        assert!(matches!(&resolved[0], Step::Remove(r) if r.len() == 55));
        assert!(matches!(&resolved[1], Step::Add(a) if a.len() == 5));
        assert_eq!(pack(resolved, 20_000, 50).len(), 2);

        let doc = json!({"Operations": [{"op": "remove", "path": "members"}]});
        let s = steps(&PatchOp::parse(&doc).unwrap());
        assert!(needs_current(&s));
        assert!(matches!(&resolve(s, &current)[0], Step::Remove(r) if r.len() == 60));
    }

    #[test]
    fn pathless_values_split_members_off() {
        let doc = json!({"Operations": [
            {"op": "replace", "value": {"displayName": "n", "members": m(0..2)}},
            {"op": "remove", "path": "members[value eq \"u9\"]"}
        ]});
        let s = steps(&PatchOp::parse(&doc).unwrap());
        assert_eq!(
            s[0],
            Step::Other(json!({"op": "replace", "value": {"displayName": "n"}}))
        );
        assert!(matches!(s[1], Step::Set(_)));
        assert!(matches!(s[2], Step::RemoveFiltered(_)));
        let docs = pack(resolve(s, &["u9".to_string()]), 100, 50);
        assert_eq!(docs.len(), 1);
        assert_eq!(ops_of(&docs[0]).len(), 4);
    }
}
