//! Twin identifiers.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest twin id accepted, in characters.
pub const MAX_TWIN_ID_CHARS: usize = 128;

/// Why a string is not a valid twin id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwinIdError {
    /// The id is the empty string.
    #[error("twin_id must not be empty")]
    Empty,
    /// The id is longer than [`MAX_TWIN_ID_CHARS`].
    #[error("twin_id is {0} characters long; at most {MAX_TWIN_ID_CHARS} are allowed")]
    TooLong(usize),
    /// The id holds whitespace, a control character or a reserved separator.
    #[error("twin_id must not contain {0}")]
    ForbiddenChar(&'static str),
    /// The id is `.` or `..`, which path-like consumers would resolve.
    #[error("twin_id must not be \".\" or \"..\"")]
    DotSegment,
}

/// Checks that `prefix` can begin a twin id (the empty prefix begins every id): no more
/// characters than an id, and none an id may not hold, so that a search by prefix refuses
/// what no id holds before it reaches a database (PostgreSQL cannot even take a NUL).
pub fn check_twin_prefix(prefix: &str) -> Result<(), TwinIdError> {
    let chars = prefix.chars().count();
    if chars > MAX_TWIN_ID_CHARS {
        return Err(TwinIdError::TooLong(chars));
    }
    for c in prefix.chars() {
        if c.is_whitespace() {
            return Err(TwinIdError::ForbiddenChar("whitespace"));
        }
        if c.is_control() {
            return Err(TwinIdError::ForbiddenChar("control characters"));
        }
        if matches!(c, '/' | '\\' | '+' | '#') {
            return Err(TwinIdError::ForbiddenChar("'/', '\\', '+' or '#'"));
        }
    }
    Ok(())
}

/// The identifier of a digital twin: 1 to 128 characters, no whitespace, no control characters,
/// and none of `/ \ + #` (they would be path or MQTT topic separators).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TwinId(String);

impl TwinId {
    /// Checks `id` and wraps it.
    pub fn new(id: impl Into<String>) -> Result<Self, TwinIdError> {
        let id = id.into();
        if id.is_empty() {
            return Err(TwinIdError::Empty);
        }
        check_twin_prefix(&id)?;
        if id == "." || id == ".." {
            return Err(TwinIdError::DotSegment);
        }
        Ok(Self(id))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TwinId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for TwinId {
    type Error = TwinIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<TwinId> for String {
    fn from(id: TwinId) -> Self {
        id.0
    }
}

impl std::str::FromStr for TwinId {
    type Err = TwinIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_seed_example_and_unicode() {
        assert!(TwinId::new("expert_123").is_ok());
        assert!(TwinId::new("pump-7.a:b@site").is_ok());
        assert!(TwinId::new("Kühlturm-3").is_ok());
        assert!(TwinId::new("x".repeat(128)).is_ok());
    }

    #[test]
    fn rejects_bad_ids() {
        assert_eq!(TwinId::new(""), Err(TwinIdError::Empty));
        assert_eq!(TwinId::new("é".repeat(129)), Err(TwinIdError::TooLong(129)));
        for bad in [
            "a b", "a\tb", "a\nb", "a\u{0}b", "a\u{7f}b", "a\u{a0}b", "a/b", "a\\b", "a+b", "a#b",
        ] {
            assert!(
                matches!(TwinId::new(bad), Err(TwinIdError::ForbiddenChar(_))),
                "{bad:?} accepted"
            );
        }
        assert_eq!(TwinId::new(".."), Err(TwinIdError::DotSegment));
    }
}
