//! Text to [`Policy`]: JSON (filters' pluginConfig) and, with the `yaml` feature, YAML
//! (policy files). Type errors come from serde through serde_path_to_error (field path);
//! semantic problems from `validate`. YAML positions come from our own walk of the
//! document (`yaml.rs`), so every problem, not just the first, has file:line:column.

use super::error::{PolicyError, PolicyErrors};
use super::Policy;

/// Parses a JSON policy (a filter's pluginConfig) and validates it. Semantic problems have
/// no line (JSON configs are generated), only the field path.
pub fn parse_json(bytes: &[u8]) -> Result<Policy, PolicyErrors> {
    const FILE: &str = "pluginConfig";
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let policy: Policy = match serde_path_to_error::deserialize(&mut de) {
        Ok(p) => p,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let (line, column) = (inner.line(), inner.column());
            return Err(PolicyErrors(vec![PolicyError {
                file: FILE.to_string(),
                line,
                column,
                path,
                message: strip_location(&inner.to_string()),
            }]));
        }
    };
    if let Err(e) = de.end() {
        return Err(PolicyErrors(vec![PolicyError {
            file: FILE.to_string(),
            line: e.line(),
            column: e.column(),
            path: ".".to_string(),
            message: strip_location(&e.to_string()),
        }]));
    }
    policy.validate().map_err(|errs| {
        PolicyErrors(
            errs.0
                .into_iter()
                .map(|mut e| {
                    e.file = FILE.to_string();
                    e
                })
                .collect(),
        )
    })?;
    Ok(policy)
}

/// serde_json appends " at line L column C"; we print the location ourselves.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg.get(..i).unwrap_or(msg).to_string(),
        None => msg.to_string(),
    }
}

/// Parses a YAML policy file and validates it; `file` names it in every problem.
#[cfg(feature = "yaml")]
pub fn parse_yaml(text: &str, file: &str) -> Result<Policy, PolicyErrors> {
    let doc = super::yaml::load(text, file)?;
    let at = |path: &str, message: String| {
        let (line, column) = doc.locate(path);
        PolicyError {
            file: file.to_string(),
            line,
            column,
            path: path.to_string(),
            message,
        }
    };
    let policy: Policy = match serde_path_to_error::deserialize(&doc.value) {
        Ok(p) => p,
        Err(e) => {
            // serde_path_to_error's path already ends at the offending field (an unknown
            // field included), so its location is the field's key.
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            return Err(PolicyErrors(vec![at(&path, message)]));
        }
    };
    match policy.validate() {
        Ok(()) => Ok(policy),
        Err(errs) => {
            let mut out: Vec<PolicyError> =
                errs.0.into_iter().map(|e| at(&e.path, e.message)).collect();
            out.sort_by_key(|e| (e.line, e.column));
            Err(PolicyErrors(out))
        }
    }
}
