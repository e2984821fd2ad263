//! Registry credentials from the usual docker config (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`): `auths.<registry>.auth` (base64 `user:password`) or
//! `username`/`password`. Credential helpers (`credHelpers`, `credsStore`) are not run; a
//! registry that relies on one gets an error saying so. It knows nothing of HTTP.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::error::OciError;

/// How to authenticate to one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials.
    Anonymous,
    /// HTTP basic (also used to obtain a bearer token when the registry asks for one).
    Basic {
        /// User name.
        username: String,
        /// Password or token.
        password: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
        }
    }
}

/// Credentials and where they came from (for error messages; never the secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The credentials.
    pub credentials: Credentials,
    /// "none", or "user alice from /root/.docker/config.json".
    pub source: String,
}

#[derive(Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, rename = "identitytoken")]
    identity_token: Option<String>,
}

/// The docker config file to read: `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
pub fn default_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

/// Credentials for `registry` (`host[:port]`) from the config file at `path`. A missing file
/// means anonymous access.
pub fn lookup(path: Option<&Path>, registry: &str) -> Result<Found, OciError> {
    let anonymous = Found {
        credentials: Credentials::Anonymous,
        source: "none".into(),
    };
    let Some(path) = path else {
        return Ok(anonymous);
    };
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(anonymous),
        Err(e) => return Err(OciError::io("cannot read", path, e)),
    };
    let bad = |detail: String| OciError::DockerConfig {
        path: path.to_path_buf(),
        detail,
    };
    let config: DockerConfig =
        serde_json::from_slice(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let entry = config
        .auths
        .iter()
        .find(|(key, _)| registry_key(key) == registry_key(registry))
        .map(|(_, v)| v);
    if let Some(entry) = entry {
        let (username, password) = if let Some(auth) =
            entry.auth.as_deref().filter(|a| !a.is_empty())
        {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| bad(format!("auths.{registry}.auth is not base64: {e}")))?;
            let decoded = String::from_utf8(decoded)
                .map_err(|_| bad(format!("auths.{registry}.auth is not UTF-8")))?;
            let (u, p) = decoded.split_once(':').ok_or_else(|| {
                bad(format!(
                    "auths.{registry}.auth does not decode to user:password"
                ))
            })?;
            (u.to_string(), p.to_string())
        } else if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
            (u.clone(), p.clone())
        } else if entry.identity_token.is_some() {
            return Err(bad(format!(
                "auths.{registry} holds an identity token (OAuth refresh token), which meshward does not support; \
                 use a user:password or access-token entry"
            )));
        } else {
            return match helper_for(&config, registry) {
                Some(h) => Err(unsupported_helper(path, registry, &h)),
                None => Ok(anonymous),
            };
        };
        return Ok(Found {
            source: format!("user {username} from {}", path.display()),
            credentials: Credentials::Basic { username, password },
        });
    }
    match helper_for(&config, registry) {
        Some(h) => Err(unsupported_helper(path, registry, &h)),
        None => Ok(anonymous),
    }
}

fn helper_for(config: &DockerConfig, registry: &str) -> Option<String> {
    config
        .cred_helpers
        .iter()
        .find(|(k, _)| registry_key(k) == registry_key(registry))
        .map(|(_, v)| v.clone())
        .or_else(|| config.creds_store.clone())
}

fn unsupported_helper(path: &Path, registry: &str, helper: &str) -> OciError {
    OciError::DockerConfig {
        path: path.to_path_buf(),
        detail: format!(
            "credentials for {registry} are kept by the credential helper docker-credential-{helper}, which meshward \
             does not run; add an `auths` entry with a base64 user:password (or use a config without the helper via DOCKER_CONFIG)"
        ),
    }
}

/// `https://index.docker.io/v1/` → `index.docker.io`; `127.0.0.1:5000` stays.
fn registry_key(key: &str) -> String {
    let no_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = no_scheme
        .split('/')
        .next()
        .unwrap_or(no_scheme)
        .to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "registry-1.docker.io" => "index.docker.io".into(),
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn auth_entries_are_decoded_and_matched_by_host() {
        // "alice:s3cr:et" base64
        let b64 = base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et");
        let (_d, path) = config(&format!(
            r#"{{"auths":{{"https://127.0.0.1:5000/v2/":{{"auth":"{b64}"}}}}}}"#
        ));
        let found = lookup(Some(&path), "127.0.0.1:5000").unwrap();
        assert_eq!(
            found.credentials,
            Credentials::Basic {
                username: "alice".into(),
                password: "s3cr:et".into()
            }
        );
        assert!(found.source.starts_with("user alice from "));
        assert!(
            !format!("{found:?}").contains("s3cr"),
            "the password is never printed"
        );
        assert_eq!(
            lookup(Some(&path), "other:5000").unwrap().credentials,
            Credentials::Anonymous
        );
    }

    #[test]
    fn missing_file_is_anonymous_and_helpers_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        assert_eq!(lookup(Some(&missing), "r:1").unwrap().source, "none");
        let (_d, path) = config(r#"{"auths":{"r:1":{}},"credHelpers":{"r:1":"ecr-login"}}"#);
        let err = lookup(Some(&path), "r:1").unwrap_err().to_string();
        assert!(err.contains("docker-credential-ecr-login"), "{err}");
        let (_d, path) = config(r#"{"credsStore":"desktop"}"#);
        let err = lookup(Some(&path), "r:1").unwrap_err().to_string();
        assert!(err.contains("docker-credential-desktop"), "{err}");
        let (_d, path) = config(r#"{"auths":{"r:1":{"auth":"!!"}}}"#);
        let err = lookup(Some(&path), "r:1").unwrap_err().to_string();
        assert!(err.contains("not base64"), "{err}");
        let (_d, path) = config("{not json");
        assert!(lookup(Some(&path), "r:1")
            .unwrap_err()
            .to_string()
            .contains("not valid JSON"));
    }
}
