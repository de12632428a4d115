//! The source side of a run: its reader, and the read transformation that turns a native entity into the
//! intermediate form every target starts from.

use super::*;
use crate::text_answers::TextAnswers;

/// The source side of a run.
pub struct SourceReader {
    /// The source system.
    pub system: System,
    /// Its connector.
    pub plugin: Arc<LoadedPlugin>,
    /// Where its calls go.
    pub call: CallTarget,
    /// Its read transformation.
    pub transformation: Transformation,
    /// Its job settings.
    pub settings: SourceSettings,
    /// The runtime.
    pub runtime: Arc<Runtime>,
    /// The stop request and run budget its retries answer to (a job run's; else never stopped).
    pub retry_scope: RetryScope,
    /// What the read transformation's output depends on besides the entity, for the memo (`None`: not
    /// memoised; see [`crate::provisioning::memo`]).
    pub memo_fingerprint: Option<crate::provisioning::memo::Digest>,
}

impl SourceReader {
    /// Reads one page. Where every target memoises the kind (`memos`), the entities come as the texts the
    /// connector returned and each is looked up by its digest: one every memo finds unchanged is left
    /// unparsed (nothing needs it), the others are parsed here, on the read's own task.
    pub(super) async fn read(&self, request: &PageRequest, memos: &Memos) -> Result<SourcePage, CallError> {
        let label = self.plugin.label();
        if memos.is_empty() {
            let page = with_retries(self.settings.retry, &self.retry_scope, &label, |_| {
                self.runtime.read(&self.plugin, &self.call, request)
            })
            .await
            .0?;
            return Ok(SourcePage {
                entities: page.entities.into_iter().map(SourceEntity::parsed).collect(),
                next_cursor: page.next_cursor,
                total: page.total,
            });
        }
        let (page, answers) = with_retries(self.settings.retry, &self.retry_scope, &label, |_| async move {
            let recall = Recall::new(memos);
            let page = self
                .runtime
                .read_texts(&self.plugin, &self.call, request, &|text| recall.known(text))
                .await?;
            let answers = recall.answers(&page.entities);
            Ok((page, answers))
        })
        .await
        .0?;
        let answers = answers.unwrap_or_else(|| page.entities.iter().map(|t| recall(memos, t)).collect());
        let entities = page
            .entities
            .into_iter()
            .zip(answers)
            .map(|(text, (digest, remembered))| match remembered {
                Some(id) => Ok(SourceEntity {
                    body: Body::Text(text),
                    digest: Some(digest),
                    remembered: Some(id),
                }),
                // Checked to be JSON by the runtime; a parse that still fails is the connector's invalid result.
                None => serde_json::from_str(&text)
                    .map(|native| SourceEntity {
                        body: Body::Parsed(native),
                        digest: Some(digest),
                        remembered: None,
                    })
                    .map_err(|e| CallError::InvalidResult {
                        plugin: label.clone(),
                        message: format!("an entity is not valid JSON: {e}"),
                    }),
            })
            .collect::<Result<_, _>>()?;
        Ok(SourcePage {
            entities,
            next_cursor: page.next_cursor,
            total: page.total,
        })
    }

    /// Whether the source delivers a kind.
    pub fn handles(&self, kind: EntityKind) -> bool {
        self.plugin.descriptor.entity_kinds.contains(&kind)
            && self
                .transformation
                .entity(kind.as_str())
                .is_some_and(|e| !e.is_ignored())
    }

    /// Applies the read transformation: `Ok((source id, intermediate))`, `Err(None)` when skipped (the entity
    /// is out of scope), `Err(Some(reason))` when it failed.
    pub fn transform(&self, kind: EntityKind, native: &Value) -> Result<(String, Value), (String, Option<String>)> {
        let ctx = Context::new(&self.system.spec.properties);
        match self.transformation.apply(kind.as_str(), native, &ctx) {
            Outcome::Transformed { output, variables, .. } => {
                let id = variables
                    .get("entityIdSourceSystem")
                    .and_then(scalar)
                    .or_else(|| output.get("id").and_then(scalar));
                match id {
                    Some(id) => Ok((id, output)),
                    None => Err((
                        "the read transformation yields no entityIdSourceSystem (and the entity has no id)".into(),
                        None,
                    )),
                }
            }
            Outcome::Skipped { reason, .. } => Err((reason, Some("skipped".into()))),
            Outcome::Failed { reason, .. } => Err((reason, None)),
        }
    }
}

pub(super) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The memos a read consults: every target's for the kind, when each of them memoises it; else none.
pub(super) type Memos = Arc<[Arc<Memo>]>;

/// A page as a run reads it.
pub(super) struct SourcePage {
    pub(super) entities: Vec<SourceEntity>,
    pub(super) next_cursor: Option<String>,
    pub(super) total: Option<u64>,
}

/// A source entity as a run reads it: parsed, or left as its text while every target's memo finds it
/// unchanged.
pub(super) struct SourceEntity {
    body: Body,
    /// Its [`memo::native_digest`], when the kind is memoised.
    pub(super) digest: Option<memo::Digest>,
    /// The source entity every target's memo finds it unchanged as.
    pub(super) remembered: Option<Arc<str>>,
}

/// A source entity's body.
enum Body {
    Parsed(Value),
    /// Its text as the connector returned it, while nothing needs it parsed.
    Text(String),
}

impl SourceEntity {
    fn parsed(native: Value) -> SourceEntity {
        SourceEntity {
            body: Body::Parsed(native),
            digest: None,
            remembered: None,
        }
    }

    /// The entity, parsed from its text when it was left as one (a remembered entity the run must
    /// transform after all: its id came twice). Its text was parsed by an earlier run, so this does not fail
    /// but where the memo's digest met a different text; then it is the entity's failure.
    pub(super) fn native(&self) -> Result<std::borrow::Cow<'_, Value>, String> {
        match &self.body {
            Body::Parsed(native) => Ok(std::borrow::Cow::Borrowed(native)),
            Body::Text(text) => serde_json::from_str(text)
                .map(std::borrow::Cow::Owned)
                .map_err(|e| format!("the entity is not valid JSON: {e}")),
        }
    }
}

/// The memos' answer for an entity's text: its digest, and the source entity every target's memo finds it
/// unchanged as (all must agree).
type Answer = (memo::Digest, Option<Arc<str>>);

/// The memos' [`Answer`] for an entity's text.
pub(super) fn recall(memos: &[Arc<Memo>], text: &str) -> Answer {
    let digest = memo::native_digest(text);
    let mut found: Option<&Arc<str>> = None;
    for m in memos {
        match m.unchanged(&m.digest(&digest)) {
            Some(id) if found.is_none_or(|f| f == id) => found = Some(id),
            _ => return (digest, None),
        }
    }
    (digest, found.cloned())
}

/// The memos' answers for the texts of one read, given while the runtime checks them: a text every memo
/// knows is JSON an earlier run parsed (the runtime need not check it), and the read need not digest it
/// again.
struct Recall<'a> {
    memos: &'a [Arc<Memo>],
    found: TextAnswers<Answer>,
}

impl<'a> Recall<'a> {
    fn new(memos: &'a [Arc<Memo>]) -> Recall<'a> {
        Recall {
            memos,
            found: TextAnswers::new(),
        }
    }

    /// The runtime's question for each text: whether the memos know it.
    fn known(&self, text: &str) -> bool {
        let answer = recall(self.memos, text);
        let known = answer.1.is_some();
        self.found.keep(text, answer);
        known
    }

    /// The answers for `texts`, in order; `None` unless the runtime asked about exactly these texts.
    fn answers(self, texts: &[String]) -> Option<Vec<Answer>> {
        self.found.for_texts(texts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::links::Link;

    /// A memo of the pair `key` that finds each `(id, text)` unchanged.
    fn memo_knowing(key: memo::Digest, entries: &[(&str, &str)]) -> Arc<Memo> {
        let probe = Memo::new(key, &Links::new());
        let links: Links = entries
            .iter()
            .map(|(id, text)| {
                let link = Link {
                    target_entity: Some("t".into()),
                    digest: Some(LinkDigest::from([1; 32])),
                    source_digest: Some(probe.digest(&memo::native_digest(text))),
                    ..Link::default()
                };
                (Arc::from(*id), link)
            })
            .collect();
        Arc::new(Memo::new(key, &links))
    }

    #[test]
    fn an_entity_is_remembered_by_its_text_when_every_memo_agrees() {
        let a = r#"{"id":"a","userName":"ann"}"#;
        let both = [memo_knowing([1; 32], &[("a", a)]), memo_knowing([2; 32], &[("a", a)])];
        assert_eq!(recall(&both, a).1.as_deref(), Some("a"));
        assert_eq!(recall(&both, a).0, memo::native_digest(a));
        // The same entity written differently is another text: not remembered, so parsed and transformed.
        assert_eq!(recall(&both, r#"{"id": "a", "userName": "ann"}"#).1, None);
        let one = [memo_knowing([1; 32], &[("a", a)]), memo_knowing([2; 32], &[])];
        assert_eq!(recall(&one, a).1, None, "a target that does not know it");
        let disagree = [memo_knowing([1; 32], &[("a", a)]), memo_knowing([2; 32], &[("b", a)])];
        assert_eq!(recall(&disagree, a).1, None, "targets that name different entities");
    }

    #[test]
    fn the_read_keeps_the_memos_answers_for_its_texts() {
        let memos = [memo_knowing([1; 32], &[("a", "{}")])];
        let texts = vec!["{}".to_string(), "[1]".to_string()];
        let asked = Recall::new(&memos);
        assert!(asked.known(&texts[0]));
        assert!(!asked.known(&texts[1]));
        let answers = asked.answers(&texts).expect("the same texts");
        assert_eq!(answers[0], (memo::native_digest("{}"), Some("a".into())));
        assert_eq!(answers[1], (memo::native_digest("[1]"), None));
    }

    #[test]
    fn a_remembered_entity_is_parsed_from_its_text_when_the_run_needs_it() {
        let entity = |text: &str| SourceEntity {
            body: Body::Text(text.into()),
            digest: Some(memo::native_digest(text)),
            remembered: Some("a".into()),
        };
        assert_eq!(entity(r#"{"id":"a"}"#).native().expect("parsed")["id"], "a");
        assert!(entity("{").native().is_err(), "a failure of the entity, not a panic");
        let parsed = SourceEntity::parsed(serde_json::json!({"id": "b"}));
        assert!(matches!(parsed.native(), Ok(std::borrow::Cow::Borrowed(v)) if v["id"] == "b"));
    }
}
