//! The write side: create, replace, PATCH (a read-modify-write under the ETag) and delete through the
//! write transformation, with the served schemas' rules, uniqueness and extension checks.

use super::*;

impl Proxy {
    pub(super) fn write_context(&self, op: TransformOp, id: Option<&str>) -> Context<'_> {
        let mut ctx = Context::new(&self.system.spec.properties)
            .operation(op)
            .resolver(&SameIds);
        if let Some(id) = id {
            ctx = ctx
                .variable("entityIdTargetSystem", json!(id))
                .variable("entityIdSourceSystem", json!(id));
        }
        ctx
    }

    pub(super) fn transform_write(
        &self,
        kind: EntityKind,
        op: TransformOp,
        id: Option<&str>,
        resource: &Value,
    ) -> Result<Value, ScimError> {
        match self.write.apply(kind.as_str(), resource, &self.write_context(op, id)) {
            Outcome::Transformed { output, .. } => Ok(output),
            Outcome::Skipped { reason, .. } => Err(ScimError::bad(
                "invalidValue",
                format!(
                    "the proxy's write transformation does not take this {}: {reason}",
                    kind.as_str()
                ),
            )),
            Outcome::Failed { reason, .. } => Err(ScimError::bad(
                "invalidValue",
                format!("the proxy's write transformation failed: {reason}"),
            )),
        }
    }

    /// The resource a write returned, or (for an empty answer or one without an id) a fresh read.
    pub(super) async fn answer(
        &self,
        kind: EntityKind,
        native: Option<Value>,
        id: Option<&str>,
    ) -> Result<Value, ScimError> {
        if let Some(n) = native.filter(|n| n.get("id").and_then(id_text).is_some())
            && let Ok(Some(r)) = self.to_scim(kind, &n)
        {
            return Ok(r);
        }
        match id {
            Some(id) => Ok(self.get(kind, id).await?.value.clone()),
            None => Err(ScimError::backend("the backend did not return the written entity")),
        }
    }

    /// POST: a new resource.
    pub async fn create(&self, kind: EntityKind, mut body: Value) -> Result<Value, ScimError> {
        clean_input(&mut body, kind)?;
        self.check_extensions(kind, &mut body)?;
        self.check_required(kind, &body)?;
        self.check_unique(kind, &body, None).await?;
        let native = self.transform_write(kind, TransformOp::Create, None, &body)?;
        let created = self
            .runtime
            .create(&self.plugin, &self.call, kind, &native)
            .await
            .map_err(ScimError::from_call)?;
        let id = created.get("id").and_then(id_text);
        self.answer(kind, Some(created), id.as_deref()).await
    }

    /// PUT: a full replacement; `if_match` is the client's `If-Match`.
    pub async fn replace(
        &self,
        kind: EntityKind,
        id: &str,
        mut body: Value,
        if_match: Option<&str>,
    ) -> Result<Value, ScimError> {
        clean_input(&mut body, kind)?;
        self.check_extensions(kind, &mut body)?;
        self.check_required(kind, &body)?;
        let current = self.read(kind, id).await?;
        check_if_match(if_match, &current.resource)?;
        self.check_unique(kind, &body, Some(id)).await?;
        // The version the client matched is the backend's precondition too: a change in between is a 412,
        // not a silent overwrite. Without If-Match a PUT replaces whatever is there.
        let precondition = names_a_version(if_match).then_some(current.version).flatten();
        match self.write_replace(kind, id, body, precondition).await? {
            Written::Done(r) => Ok(r),
            Written::Stale(_) => Err(ScimError::precondition(format!(
                "the {} changed while it was being replaced; read it again",
                kind.as_str()
            ))),
        }
    }

    /// Writes `body` over the resource; with `precondition` (the backend version the body was built from)
    /// the connector fails instead of overwriting a newer version, which is [`Written::Stale`].
    pub(super) async fn write_replace(
        &self,
        kind: EntityKind,
        id: &str,
        mut body: Value,
        precondition: Option<Value>,
    ) -> Result<Written, ScimError> {
        if let Some(o) = body.as_object_mut() {
            o.insert("id".into(), json!(id));
        }
        let mut native = self.transform_write(kind, TransformOp::Update, Some(id), &body)?;
        if let (Some(version), Some(meta)) = (&precondition, native.as_object_mut().and_then(meta_of)) {
            meta.insert("version".into(), version.clone());
        }
        let written = match self.runtime.replace(&self.plugin, &self.call, kind, id, &native).await {
            Ok(w) => w,
            // A conflict is a uniqueness clash or a stale version: the backend's version now tells which.
            Err(
                e
                @ CallError::Connector(ConnectorError::Conflict { .. } | ConnectorError::Rejected { status: 412, .. }),
            ) if precondition.is_some() => {
                let now = self.read(kind, id).await?;
                if now.version != precondition {
                    return Ok(Written::Stale(now));
                }
                return Err(ScimError::from_call(e));
            }
            Err(e) => return Err(ScimError::from_call(e)),
        };
        self.answer(kind, Some(written), Some(id)).await.map(Written::Done)
    }

    /// PATCH: the connector's own patch when the write transformation has `patchEntity` mappings for it
    /// (SAP's model) and the connector supports it; otherwise the host applies the operations to the
    /// current resource and replaces it. Either way the answer is 200 with the full resource.
    pub async fn patch(
        &self,
        kind: EntityKind,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Value, ScimError> {
        let mut ops = PatchOp::parse_request(body)?;
        self.check_patch_extensions(kind, &mut ops)?;
        let mut current = self.read(kind, id).await?;
        for _ in 0..PATCH_ATTEMPTS {
            check_if_match(if_match, &current.resource)?;
            // Applied in the host first in any case: it validates paths, mutability and values.
            let mut patched = current.resource.clone();
            ops.apply_with(&mut patched, &self.rules(kind))?;
            if self.supports(Operation::Patch) {
                let doc = match self
                    .write
                    .apply(kind.as_str(), body, &self.write_context(TransformOp::Patch, Some(id)))
                {
                    Outcome::Transformed { output, .. } => Some(output),
                    _ => None,
                };
                if let Some(doc) = doc.filter(|d| get_ci(d, "Operations").is_some()) {
                    let result = self
                        .runtime
                        .patch(&self.plugin, &self.call, kind, id, &doc)
                        .await
                        .map_err(ScimError::from_call)?;
                    return self.answer(kind, result, Some(id)).await;
                }
            }
            if patched == current.resource {
                return Ok(current.resource);
            }
            clean_input(&mut patched, kind)?;
            self.check_required(kind, &patched)?;
            self.check_unique(kind, &patched, Some(id)).await?;
            // Written over the version it was built from: a change made meanwhile is never lost.
            match self.write_replace(kind, id, patched, current.version).await? {
                Written::Done(r) => return Ok(r),
                Written::Stale(_) if names_a_version(if_match) => {
                    return Err(ScimError::precondition(format!(
                        "the {} changed while it was being patched; read it again",
                        kind.as_str()
                    )));
                }
                // The operations apply to whatever is current: apply them again to the version now there.
                Written::Stale(now) => current = now,
            }
        }
        Err(ScimError::new(
            http::StatusCode::CONFLICT,
            None,
            format!(
                "the {} kept changing while the patch was applied ({PATCH_ATTEMPTS} attempts); try again",
                kind.as_str()
            ),
        ))
    }

    /// DELETE. A user's group memberships go with it (some backends keep dangling members).
    pub async fn delete(&self, kind: EntityKind, id: &str, if_match: Option<&str>) -> Result<(), ScimError> {
        let current = self.get(kind, id).await?;
        check_if_match(if_match, &current.value)?;
        self.runtime
            .delete(&self.plugin, &self.call, kind, id)
            .await
            .map_err(ScimError::from_call)?;
        if kind == EntityKind::User && self.serves(EntityKind::Group) {
            self.drop_memberships(id).await;
        }
        Ok(())
    }

    pub(super) async fn drop_memberships(&self, user_id: &str) {
        let groups = match self.read_all(EntityKind::Group, None).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(system = %self.system.id, error = %e, "cannot check the deleted user's memberships");
                return;
            }
        };
        for g in groups {
            let member = g.get("members").and_then(Value::as_array).is_some_and(|m| {
                m.iter()
                    .any(|m| m.get("value").and_then(Value::as_str) == Some(user_id))
            });
            let Some(gid) = g.get("id").and_then(id_text).filter(|_| member) else {
                continue;
            };
            let body = json!({"schemas": [provisio_scim::PATCH_OP], "Operations": [
                {"op": "remove", "path": format!("members[value eq {}]", json!(user_id))}
            ]});
            if let Err(e) = self.patch(EntityKind::Group, &gid, &body, None).await {
                tracing::warn!(system = %self.system.id, group = %gid, error = %e, "cannot remove a deleted user from a group");
            }
        }
    }

    /// Schema URIs this proxy does not serve, in a written resource: dropped from `schemas` (Entra's Create
    /// Group names one of Microsoft's, `http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/Group`,
    /// with no attributes under it), and so are empty objects under such a URN. An object with attributes
    /// under one is refused (400 `invalidValue`): the backend does not keep that extension, and a success
    /// would lose the values.
    pub(super) fn check_extensions(&self, kind: EntityKind, body: &mut Value) -> Result<(), ScimError> {
        let Some(obj) = body.as_object_mut() else {
            return Ok(());
        };
        let unserved: Vec<String> = obj
            .keys()
            .filter(|k| is_urn(k) && self.served.known_urn(kind, k).is_none())
            .cloned()
            .collect();
        for urn in unserved {
            if obj.get(&urn).is_some_and(has_content) {
                return Err(not_served(&urn));
            }
            obj.shift_remove(&urn);
        }
        if let Some(schemas) = obj.get_mut("schemas").and_then(Value::as_array_mut) {
            schemas.retain(|u| u.as_str().is_none_or(|u| self.served.known_urn(kind, u).is_some()));
            if schemas.is_empty() {
                schemas.push(json!(schema::core_urn(kind)));
            }
        }
        Ok(())
    }

    /// [`Proxy::check_extensions`] for PATCH operations: a path into an extension not served is refused,
    /// and so is a path-less value carrying one; empty ones are dropped from the value.
    pub(super) fn check_patch_extensions(&self, kind: EntityKind, ops: &mut PatchOp) -> Result<(), ScimError> {
        for op in &mut ops.operations {
            match (&op.path, &mut op.value) {
                (Some(path), _) => {
                    let path = path.trim();
                    let served = std::iter::once(schema::core_urn(kind))
                        .chain(self.served.extensions(kind))
                        .any(|u| {
                            path.eq_ignore_ascii_case(u)
                                || (path.get(..u.len()).is_some_and(|h| h.eq_ignore_ascii_case(u))
                                    && path.get(u.len()..).is_some_and(|t| t.starts_with(':')))
                        });
                    if is_urn(path) && !served {
                        return Err(not_served(path));
                    }
                }
                (None, Some(value @ Value::Object(_))) => self.check_extensions(kind, value)?,
                _ => {}
            }
        }
        Ok(())
    }

    pub(super) fn check_required(&self, kind: EntityKind, body: &Value) -> Result<(), ScimError> {
        let name = unique_attribute(kind);
        match get_ci(body, name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(()),
            _ => Err(ScimError::bad("invalidValue", format!("{name} is required"))),
        }
    }

    /// 409 when another resource has the same `userName` (users) or `displayName` (groups), ignoring case.
    pub(super) async fn check_unique(
        &self,
        kind: EntityKind,
        body: &Value,
        own_id: Option<&str>,
    ) -> Result<(), ScimError> {
        let name = unique_attribute(kind);
        let Some(wanted) = get_ci(body, name).and_then(Value::as_str) else {
            return Ok(());
        };
        let path = filter::AttrPath {
            urn: None,
            name: name.to_string(),
            sub: None,
            index: None,
        };
        let all = match self.native_eq(kind, &path, wanted) {
            Some(native) => self.read_filtered(kind, native).await?,
            None => self.read_all(kind, None).await?,
        };
        let taken = all.iter().any(|r| {
            get_ci(r, name)
                .and_then(Value::as_str)
                .is_some_and(|v| v.to_lowercase() == wanted.to_lowercase())
                && r.get("id").and_then(id_text).as_deref() != own_id
        });
        if taken {
            return Err(ScimError::uniqueness(format!(
                "a {} with {name} {wanted:?} exists",
                kind.as_str()
            )));
        }
        Ok(())
    }
}
