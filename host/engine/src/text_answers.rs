//! Answers a caller gives while the runtime checks a call's texts (its `KnownText` question), kept so that the
//! caller need not work them out again once the call returns: the proxy's and the jobs' memos both ask about
//! each entity's text there.

use std::sync::Mutex;

/// Answers, each kept with the address and length of the text it was given for, so that it is only ever used
/// for that same text.
pub(crate) struct TextAnswers<T>(Mutex<Vec<(TextAt, T)>>);

/// Where a text is: its buffer's address and its length.
type TextAt = (usize, usize);

impl<T> TextAnswers<T> {
    pub(crate) fn new() -> TextAnswers<T> {
        TextAnswers(Mutex::new(Vec::new()))
    }

    /// Keeps the answer given for `text`.
    pub(crate) fn keep(&self, text: &str, answer: T) {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.push(((text.as_ptr() as usize, text.len()), answer));
    }

    /// The answers for `texts`, in order; `None` unless they were given for exactly these texts (the same
    /// buffers, in the same order).
    pub(crate) fn for_texts(self, texts: &[String]) -> Option<Vec<T>> {
        let kept = self.0.into_inner().unwrap_or_else(|p| p.into_inner());
        let same = kept.len() == texts.len()
            && kept
                .iter()
                .zip(texts)
                .all(|((at, _), t)| *at == (t.as_ptr() as usize, t.len()));
        same.then(|| kept.into_iter().map(|(_, answer)| answer).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_serve_only_the_texts_they_were_given_for() {
        let texts = vec!["{}".to_string(), "[1]".to_string()];
        let answers = TextAnswers::new();
        texts.iter().enumerate().for_each(|(i, t)| answers.keep(t, i));
        assert_eq!(answers.for_texts(&texts), Some(vec![0, 1]));
        let answers = TextAnswers::new();
        texts.iter().enumerate().for_each(|(i, t)| answers.keep(t, i));
        assert_eq!(answers.for_texts(&texts.clone()), None, "equal texts in other buffers");
        let answers = TextAnswers::new();
        answers.keep(&texts[0], 0);
        assert_eq!(answers.for_texts(&texts), None, "not every text");
    }
}
