//! Text to [`Policy`]: JSON (filters' pluginConfig) and, with the `yaml` feature, YAML
//! (policy files). Both become a JSON tree first (`json.rs`, or `yaml.rs` with
//! every node's position), then the policy types through `de.rs`, which names the field of
//! a type error; semantic problems come from `validate`. The filters and `meshward check`
//! run this same code.

use super::de::json_tree;
use super::error::{PolicyError, PolicyErrors};
use super::read::read;
use super::Policy;

/// Parses a JSON policy (a filter's pluginConfig) and validates it. A syntax error has a
/// line and column; type and semantic problems have the field path only (JSON configs are
/// generated, usually on one line).
#[inline(never)]
pub fn parse_json(bytes: &[u8]) -> Result<Policy, PolicyErrors> {
    let tree = json_tree(bytes)
        .map_err(|e| PolicyErrors(vec![in_config(e.line, e.column, ".".into(), e.message)]))?;
    let policy: Policy = read(&tree).map_err(|e| {
        PolicyErrors(vec![in_config(
            0,
            0,
            e.path().to_string(),
            e.message().to_string(),
        )])
    })?;
    let problems = super::validate::problems(&policy).0;
    if !problems.is_empty() {
        return Err(PolicyErrors(
            problems
                .into_iter()
                .map(|(path, message)| in_config(0, 0, path, message))
                .collect(),
        ));
    }
    Ok(policy)
}

/// A problem of a filter's pluginConfig (one function for the three kinds of problem).
fn in_config(line: usize, column: usize, path: String, message: String) -> PolicyError {
    PolicyError {
        file: "pluginConfig".to_string(),
        line,
        column,
        path,
        message,
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
    let policy: Policy = match read(&super::de::Node::from_value(&doc.value)) {
        Ok(p) => p,
        Err(e) => {
            // The path already ends at the offending field (an unknown field included), so
            // its location is the field's key.
            return Err(PolicyErrors(vec![at(e.path(), e.message().to_string())]));
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

#[cfg(test)]
mod tests {
    use super::parse_json;

    #[test]
    fn syntax_and_semantic_messages_are_whole() {
        let e = parse_json(b"{\n  \"service\": 1,,\n}").unwrap_err();
        let e = e.iter().next().expect("one problem");
        assert_eq!((e.line, e.column), (2, 16));
        assert_eq!(e.message, "key must be a string");
        let e = parse_json(
            br#"{"apiVersion":"meshward.io/v1alpha1","kind":"Policy","service":"s",
                "routes":[{"name":"default","ratelimit":{"rules":[
                    {"name":"r","rate":"1/s","tiers":{"gold":"2/s"}}]}}],
                "ratelimit":{"tiers":{"from":"header:x-tier","default":"free",
                    "names":["free","standard","premium"]}}}"#,
        )
        .unwrap_err();
        let e = e.iter().next().expect("one problem");
        assert_eq!(e.path, "routes[0].ratelimit.rules[0].tiers.gold");
        assert_eq!(
            e.message,
            "unknown tier `gold`; known: free, standard, premium"
        );
    }
}
