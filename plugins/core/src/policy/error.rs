//! Policy problems: every one carries where it is (file, line, column) and which field
//! (`routes[0].ratelimit.rules[1].rate`) so `meshward check`, the renderer and the filters
//! report the same thing. Knows nothing of how the policy was parsed.

use std::fmt;

/// One problem in a policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// File name as given by the caller (`policy.yaml`, `pluginConfig`).
    pub file: String,
    /// 1-based line; 0 when unknown (e.g. a semantic problem in JSON pluginConfig).
    pub line: usize,
    /// 1-based column; 0 when unknown.
    pub column: usize,
    /// Field path in serde_path_to_error's syntax: `routes[0].ratelimit.rules[1].rate`;
    /// `.` for the document itself.
    pub path: String,
    /// What is wrong, in words a user can act on.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Pieces written one by one: the filters log every problem through this, and a
        // `write!` per shape cost them more.
        f.write_str(&self.file)?;
        if self.line > 0 {
            f.write_str(":")?;
            fmt::Display::fmt(&self.line, f)?;
            f.write_str(":")?;
            fmt::Display::fmt(&self.column, f)?;
        }
        f.write_str(": ")?;
        f.write_str(&self.path)?;
        f.write_str(": ")?;
        f.write_str(&self.message)
    }
}

/// All problems found in one document (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl PolicyErrors {
    /// The problems, in document order where locations are known.
    pub fn iter(&self) -> impl Iterator<Item = &PolicyError> {
        self.0.iter()
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no problem (never the case for a returned error).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Semantic problems collected by path before locations are attached.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub(crate) Vec<(String, String)>);

impl Problems {
    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push((path.into(), message.into()));
    }

    /// A problem at the field `suffix` (`.name`) of the value at `at` (`routes[0]`). One
    /// call per problem instead of a `format!` or a path built at every check keeps the
    /// filters' Wasm smaller.
    pub(crate) fn at(&mut self, at: &str, suffix: &str, message: impl Into<String>) {
        let mut path = String::with_capacity(at.len() + suffix.len());
        path.push_str(at);
        path.push_str(suffix);
        self.0.push((path, message.into()));
    }
}
