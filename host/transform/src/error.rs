//! Save-time validation errors.

/// Why a transformation document was rejected, with the place it happened
/// (e.g. `user.mappings[3].functions[0]: unknown function "fooBar"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct ValidationError {
    /// Entity type, mapping index and key: `user.mappings[3].sourcePath`.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

impl ValidationError {
    pub(crate) fn new(location: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            location: location.into(),
            message: message.into(),
        }
    }
}

/// A location being validated; children extend it (`user` → `user.mappings[2]`).
#[derive(Debug, Clone)]
pub(crate) struct Loc(pub(crate) String);

impl Loc {
    pub(crate) fn key(&self, key: &str) -> Loc {
        Loc(format!("{}.{key}", self.0))
    }

    pub(crate) fn index(&self, key: &str, i: usize) -> Loc {
        Loc(format!("{}.{key}[{i}]", self.0))
    }

    pub(crate) fn err(&self, message: impl Into<String>) -> ValidationError {
        ValidationError::new(self.0.clone(), message)
    }
}
