//! The digests file that connects `meshward push` to `meshward render`: a JSON object mapping a
//! filter's name to the manifest digest it was pushed as, `{"ratelimit": "sha256:<hex>"}`.
//! It knows nothing of registries or manifests.

use std::collections::BTreeMap;
use std::path::Path;

use super::error::OciError;

/// Filter name → `sha256:<64 hex>`.
pub type Digests = BTreeMap<String, String>;

/// Reads and validates a digests file.
pub fn read_digests(path: &Path) -> Result<Digests, OciError> {
    let text = std::fs::read(path).map_err(|e| OciError::io("cannot read", path, e))?;
    let digests: Digests = serde_json::from_slice(&text).map_err(|e| OciError::BadDigests {
        path: path.to_path_buf(),
        detail: format!("not a digests file (a JSON object of name -> \"sha256:<hex>\"): {e}"),
    })?;
    for (name, digest) in &digests {
        if !is_sha256_digest(digest) {
            return Err(OciError::InvalidName {
                what: "digest",
                value: format!("{name}: {digest}"),
                rule: "must be sha256: followed by 64 lower-case hex digits",
            });
        }
    }
    Ok(digests)
}

/// Writes `digests` to `path`, merged over what the file already holds (pushing one filter keeps
/// the others' entries). Sorted keys, one entry per line.
pub fn write_digests(path: &Path, digests: &Digests) -> Result<Digests, OciError> {
    let mut merged = if path.exists() {
        read_digests(path)?
    } else {
        Digests::new()
    };
    merged.extend(digests.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut text = serde_json::to_string_pretty(&merged)
        .map_err(|e| OciError::io("cannot encode", path, std::io::Error::other(e)))?;
    text.push('\n');
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| OciError::io("cannot create", parent, e))?;
    }
    std::fs::write(path, text).map_err(|e| OciError::io("cannot write", path, e))?;
    Ok(merged)
}

/// `sha256:` followed by 64 lower-case hex digits: the policy core's rule, so a digest that
/// `meshward push` writes is one that `meshward render` accepts.
pub use meshward_core::policy::deployment::is_digest as is_sha256_digest;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_merge_and_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("d/digests.json");
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        write_digests(&path, &Digests::from([("ratelimit".into(), a.clone())])).unwrap();
        write_digests(&path, &Digests::from([("degrade".into(), b.clone())])).unwrap();
        let back = read_digests(&path).unwrap();
        assert_eq!(
            back,
            Digests::from([("ratelimit".into(), a), ("degrade".into(), b)])
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.find("degrade").unwrap() < text.find("ratelimit").unwrap());
    }

    #[test]
    fn a_bad_digest_is_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("digests.json");
        std::fs::write(&path, r#"{"ratelimit":"sha256:XYZ"}"#).unwrap();
        let err = read_digests(&path).unwrap_err().to_string();
        assert!(err.contains("ratelimit: sha256:XYZ"), "{err}");
        assert!(is_sha256_digest(&format!("sha256:{}", "0".repeat(64))));
    }
}
