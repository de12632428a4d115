//! One call into a guest, whatever its contract version: the request, the bindings that make it, and the
//! answer checked and parsed (pages no larger than asked for, results within their cap).

use super::*;

/// A call to make, independent of the contract version.
pub(super) enum Request {
    Describe,
    TestConnection,
    Read(PageRequest),
    Get(EntityKind, String),
    Create(EntityKind, String),
    Replace(EntityKind, String, String),
    Patch(EntityKind, String, String),
    Delete(EntityKind, String),
}

impl Request {
    pub(super) fn size(&self) -> usize {
        match self {
            Request::Describe | Request::TestConnection => 0,
            Request::Read(r) => r.cursor.as_deref().map_or(0, str::len) + r.filter.as_deref().map_or(0, str::len),
            Request::Get(_, id) | Request::Delete(_, id) | Request::Create(_, id) => id.len(),
            Request::Replace(_, id, body) | Request::Patch(_, id, body) => id.len() + body.len(),
        }
    }
}

/// A call's raw answer, before the JSON in it is parsed.
pub(super) enum RawResponse {
    Describe(Descriptor, DescriptorExtensions),
    Text(Result<String, ConnectorError>),
    Page(Result<PageTexts, ConnectorError>),
    Entity(Result<String, ConnectorError>),
    MaybeEntity(Result<Option<String>, ConnectorError>),
    Unit(Result<(), ConnectorError>),
    /// An answer the contract does not allow (a page listing more than the host kept), and why.
    Invalid(String),
}

/// A call's answer, JSON parsed.
pub(super) enum Response {
    Describe(Descriptor, DescriptorExtensions),
    Text(Result<String, ConnectorError>),
    Page(Result<Page, ConnectorError>),
    /// A page left as texts, for [`Runtime::read_texts`](super::Runtime::read_texts).
    PageTexts(Result<PageTexts, ConnectorError>),
    Entity(Result<serde_json::Value, ConnectorError>),
    /// A `get`'s entity left as its text, for [`Runtime::get_text`](super::Runtime::get_text).
    EntityText(Result<String, ConnectorError>),
    MaybeEntity(Result<Option<serde_json::Value>, ConnectorError>),
    Unit(Result<(), ConnectorError>),
}

impl RawResponse {
    pub(super) fn size(&self) -> usize {
        let err = |e: &ConnectorError| e.to_string().len();
        match self {
            RawResponse::Describe(d, x) => {
                d.default_read_transformation.as_deref().map_or(0, str::len)
                    + d.default_write_transformation.as_deref().map_or(0, str::len)
                    + x.default_proxy_read_transformation.as_deref().map_or(0, str::len)
                    + x.default_proxy_write_transformation.as_deref().map_or(0, str::len)
                    + d.properties
                        .iter()
                        .map(|p| p.name.len() + p.doc.len() + p.default_value.as_deref().map_or(0, str::len))
                        .sum::<usize>()
                    + d.entity_kinds.len()
                    + d.operations.len()
            }
            RawResponse::Text(r) | RawResponse::Entity(r) => r.as_ref().map_or_else(err, String::len),
            RawResponse::Page(r) => r.as_ref().map_or_else(err, |p| {
                p.entities.iter().map(String::len).sum::<usize>() + p.next_cursor.as_deref().map_or(0, str::len)
            }),
            RawResponse::MaybeEntity(r) => r.as_ref().map_or_else(err, |e| e.as_deref().map_or(0, str::len)),
            RawResponse::Unit(r) => r.as_ref().map_or_else(err, |_| 0),
            RawResponse::Invalid(m) => m.len(),
        }
    }

    /// Masks the credentials the host attached in this call wherever the answer holds text; nothing to do
    /// (and no scan) for a call without credentials. A page's first `scrubbed` entities are not scanned
    /// again: they come from an answer already scrubbed with these `secrets` (`CallState::listed_scrubbed`).
    pub(super) fn scrub(&mut self, secrets: &Secrets, scrubbed: usize) {
        if secrets.is_empty() {
            return;
        }
        let error = |e: &mut ConnectorError| secrets.scrub_string(e.message_mut());
        match self {
            RawResponse::Describe(..) | RawResponse::Invalid(_) => {}
            RawResponse::Text(r) | RawResponse::Entity(r) => match r {
                Ok(text) => secrets.scrub_string(text),
                Err(e) => error(e),
            },
            RawResponse::Page(r) => match r {
                Ok(page) => {
                    let fresh = page.entities.iter_mut().skip(scrubbed);
                    for text in fresh.chain(page.next_cursor.as_mut()) {
                        secrets.scrub_string(text);
                    }
                }
                Err(e) => error(e),
            },
            RawResponse::MaybeEntity(r) => match r {
                Ok(entity) => entity.iter_mut().for_each(|text| secrets.scrub_string(text)),
                Err(e) => error(e),
            },
            RawResponse::Unit(r) => {
                if let Err(e) = r {
                    error(e)
                }
            }
        }
    }

    /// The answer with its entities parsed, but those of a page or of a `get` left as texts when `texts`
    /// says so (the caller asked for them that way): each checked to be JSON, unless `texts` knows it.
    pub(super) fn parse(self, plugin: &str, texts: Option<KnownText<'_>>) -> Result<Response, CallError> {
        let invalid = |e: serde_json::Error| CallError::InvalidResult {
            plugin: plugin.to_string(),
            message: format!("an entity is not valid JSON: {e}"),
        };
        let json = |text: &str| serde_json::from_str::<serde_json::Value>(text).map_err(invalid);
        // Checked without building anything (about 1 µs for a 500-byte user), as strictly as the parse the
        // caller may do later, so that the call is counted and its instance dropped as any invalid result's.
        let check = |known: KnownText<'_>, text: &str| {
            if known(text) {
                Ok(())
            } else {
                provisio_scim::json::check_str(text).map_err(invalid)
            }
        };
        if let Some(known) = texts {
            match &self {
                RawResponse::Page(Ok(page)) => page.entities.iter().try_for_each(|e| check(known, e))?,
                RawResponse::Entity(Ok(e)) => check(known, e)?,
                _ => {}
            }
        }
        let texts = texts.is_some();
        Ok(match self {
            RawResponse::Describe(d, x) => Response::Describe(d, x),
            RawResponse::Text(r) => Response::Text(r),
            RawResponse::Page(r) if texts => Response::PageTexts(r),
            RawResponse::Entity(r) if texts => Response::EntityText(r),
            RawResponse::Page(Ok(raw)) => Response::Page(Ok(Page {
                entities: raw.entities.iter().map(|e| json(e)).collect::<Result<_, _>>()?,
                next_cursor: raw.next_cursor,
                total: raw.total,
            })),
            RawResponse::Page(Err(e)) => Response::Page(Err(e)),
            RawResponse::Entity(Ok(e)) => Response::Entity(Ok(json(&e)?)),
            RawResponse::Entity(Err(e)) => Response::Entity(Err(e)),
            RawResponse::MaybeEntity(Ok(Some(e))) => Response::MaybeEntity(Ok(Some(json(&e)?))),
            RawResponse::MaybeEntity(Ok(None)) => Response::MaybeEntity(Ok(None)),
            RawResponse::MaybeEntity(Err(e)) => Response::MaybeEntity(Err(e)),
            RawResponse::Unit(r) => Response::Unit(r),
            RawResponse::Invalid(message) => {
                return Err(CallError::InvalidResult {
                    plugin: plugin.to_string(),
                    message,
                });
            }
        })
    }
}

/// Makes one call through the bindings module `$v` of a contract version, in the kept instance `$instance`
/// or a new one; `$describe` turns that version's descriptor into the host's descriptor and extensions.
/// Answers the response and the instance. Before 0.4.0 (`config:`) every operation takes the system's config
/// first; since 0.4.0 (`system:`) the operations are methods of the `system` resource the instance made once.
macro_rules! call_guest {
    (config: $v:path, $variant:ident, $pre:expr, $instance:expr, $store:expr, $system_id:expr, $properties:expr, $request:expr, $describe:expr) => {{
        use $v as v;
        let store = $store;
        // A kept instance serves the system (and properties) it was made for: its config is this call's.
        let (plugin, config) = match $instance {
            Some(kept) => kept,
            None => (
                $pre.instantiate_async(&mut *store).await?,
                v::config($system_id, $properties),
            ),
        };
        let guest = plugin.provisio_connector_connector();
        let response = call_guest!(@request v, guest, guest, &config, store, $request, $describe);
        Ok((response, Instance::$variant(plugin, config)))
    }};
    (system: $v:path, $variant:ident, $pre:expr, $instance:expr, $store:expr, $system_id:expr, $properties:expr, $request:expr, $describe:expr) => {{
        use $v as v;
        let store = $store;
        // A kept instance's `system` was made for this call's system and properties.
        let (plugin, mut system) = match $instance {
            Some(kept) => kept,
            None => ($pre.instantiate_async(&mut *store).await?, None),
        };
        let guest = plugin.provisio_connector_connector();
        let response = call_guest!(@request v, guest, guest.system(), match system {
            Some(made) => made,
            None => {
                let made = guest
                    .system()
                    .call_constructor(&mut *store, &v::config($system_id, $properties))
                    .await?;
                system = Some(made);
                made
            }
        }, store, $request, $describe);
        Ok((response, Instance::$variant(plugin, system)))
    }};
    // The request through `$guest` (describe) or `$ops`, whose methods take `$this` (evaluated only for an
    // operation, before its call) first.
    (@request $v:ident, $guest:expr, $ops:expr, $this:expr, $store:ident, $request:expr, $describe:expr) => {{
        let err = |e: $v::provisio::connector::types::ConnectorError| ConnectorError::from(e);
        let response = match $request {
            Request::Describe => {
                let (d, x) = $describe($guest.call_describe(&mut *$store).await?);
                RawResponse::Describe(d, x)
            }
            Request::TestConnection => {
                let this = $this;
                RawResponse::Text($ops.call_test_connection(&mut *$store, this).await?.map_err(err))
            }
            Request::Read(r) => {
                let this = $this;
                match $ops.call_read(&mut *$store, this, &$v::page_request(&r)).await? {
                    Ok(page) => match $v::page(page, r.page_size, $store.data_mut()) {
                        Ok(texts) => RawResponse::Page(Ok(texts)),
                        Err(message) => RawResponse::Invalid(message),
                    },
                    Err(e) => RawResponse::Page(Err(err(e))),
                }
            }
            Request::Get(kind, id) => {
                let this = $this;
                RawResponse::Entity($ops.call_get(&mut *$store, this, kind.into(), &id).await?.map_err(err))
            }
            Request::Create(kind, body) => {
                let this = $this;
                RawResponse::Entity($ops.call_create(&mut *$store, this, kind.into(), &body).await?.map_err(err))
            }
            Request::Replace(kind, id, body) => {
                let this = $this;
                RawResponse::Entity(
                    $ops.call_replace(&mut *$store, this, kind.into(), &id, &body)
                        .await?
                        .map_err(err),
                )
            }
            Request::Patch(kind, id, body) => {
                let this = $this;
                RawResponse::MaybeEntity(
                    $ops.call_patch(&mut *$store, this, kind.into(), &id, &body)
                        .await?
                        .map_err(err),
                )
            }
            Request::Delete(kind, id) => {
                let this = $this;
                RawResponse::Unit($ops.call_delete(&mut *$store, this, kind.into(), &id).await?.map_err(err))
            }
        };
        // Elements a `send-list` kept that no page took go with the call.
        $store.data_mut().listed = None;
        response
    }};
}

/// Makes the call in `instance` (kept from an earlier call of the same system) or in a new instance of the
/// plugin, through the bindings of its contract version.
pub(super) async fn run(
    bindings: &Bindings,
    store: &mut Store<CallState>,
    instance: Option<Instance>,
    system_id: &str,
    properties: &[(String, String)],
    request: Request,
) -> wasmtime::Result<(RawResponse, Instance)> {
    match bindings {
        Bindings::V0_1_0(pre) => call_guest!(
            config: bindings::v0_1_0,
            V0_1_0,
            pre,
            match instance {
                Some(Instance::V0_1_0(kept, config)) => Some((kept, config)),
                _ => None,
            },
            store,
            system_id,
            properties,
            request,
            |d: bindings::v0_1_0::provisio::connector::types::Descriptor| (
                Descriptor::from(d),
                DescriptorExtensions::default()
            )
        ),
        Bindings::V0_2_0(pre) => call_guest!(
            config: bindings::v0_2_0,
            V0_2_0,
            pre,
            match instance {
                Some(Instance::V0_2_0(kept, config)) => Some((kept, config)),
                _ => None,
            },
            store,
            system_id,
            properties,
            request,
            bindings::v0_2_0::descriptor
        ),
        Bindings::V0_3_0(pre) => call_guest!(
            config: bindings::v0_3_0,
            V0_3_0,
            pre,
            match instance {
                Some(Instance::V0_3_0(kept, config)) => Some((kept, config)),
                _ => None,
            },
            store,
            system_id,
            properties,
            request,
            bindings::v0_3_0::descriptor
        ),
        Bindings::V0_4_0(pre) => call_guest!(
            system: bindings::v0_4_0,
            V0_4_0,
            pre,
            match instance {
                Some(Instance::V0_4_0(kept, system)) => Some((kept, system)),
                _ => None,
            },
            store,
            system_id,
            properties,
            request,
            bindings::v0_4_0::descriptor
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(entities: &[&str]) -> RawResponse {
        RawResponse::Page(Ok(PageTexts {
            entities: entities.iter().map(|e| e.to_string()).collect(),
            next_cursor: None,
            total: None,
        }))
    }

    fn refused(response: RawResponse, known: KnownText<'_>) -> bool {
        matches!(response.parse("p@1", Some(known)), Err(CallError::InvalidResult { .. }))
    }

    #[test]
    fn texts_are_checked_to_be_json_unless_the_caller_knows_them() {
        let none: KnownText<'_> = &|_| false;
        assert!(!refused(page(&[r#"{"id":"1","name":"\u00e9\n"}"#, "[1,2]"]), none));
        for bad in [
            r#"{"id":"1","#,
            r#"{"id":"1"} trailing"#,
            r#"{"id":"\x"}"#,
            // A lone surrogate and a number out of range: a `Value` parse refuses them.
            r#"{"id":"\ud800"}"#,
            r#"{"n":1e400}"#,
        ] {
            assert!(refused(page(&[r#"{"id":"0"}"#, bad]), none), "{bad}");
            assert!(refused(RawResponse::Entity(Ok(bad.into())), none), "{bad}");
            // Vouched for by the caller (what its memo parsed before): passed on unchecked.
            let vouched: KnownText<'_> = &|t| t == bad;
            assert!(!refused(RawResponse::Entity(Ok(bad.into())), vouched), "{bad}");
        }
        // Left as texts, and only those the caller asked for that way.
        assert!(matches!(
            RawResponse::Entity(Ok(r#"{"a":1}"#.into())).parse("p@1", Some(none)),
            Ok(Response::EntityText(Ok(t))) if t == r#"{"a":1}"#
        ));
        assert!(matches!(
            RawResponse::Entity(Ok(r#"{"a":1}"#.into())).parse("p@1", None),
            Ok(Response::Entity(Ok(_)))
        ));
    }

    #[test]
    fn a_page_scrub_skips_only_the_entities_scrubbed_already() {
        let mut secrets = Secrets::default();
        secrets.add("a-secret-value");
        let holding = r#"{"echo":"a-secret-value"}"#;
        let mut response = page(&[holding, holding, holding]);
        response.scrub(&secrets, 2);
        let RawResponse::Page(Ok(scrubbed)) = response else {
            panic!("a page")
        };
        assert_eq!(scrubbed.entities[..2], [holding, holding], "vouched for: not scanned");
        assert_eq!(scrubbed.entities[2], r#"{"echo":"********"}"#);
        let mut response = page(&[holding]);
        response.scrub(&secrets, 0);
        assert!(matches!(response, RawResponse::Page(Ok(p)) if p.entities[0] == r#"{"echo":"********"}"#));
    }
}
