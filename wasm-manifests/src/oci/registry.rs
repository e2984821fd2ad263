//! Pushes an image read from a layout to an OCI registry and looks up what a tag points to,
//! through the `oci-client` crate (auth challenges, chunked uploads with monolithic fallback,
//! existing-blob checks). The API is blocking: a current-thread tokio runtime lives inside
//! [`Registry`]. Errors are sorted into the cases a user can act on (unreachable, auth refused,
//! not found). It knows nothing of how images are built.

use std::path::PathBuf;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use super::credentials::{self, Credentials, Found};
use super::error::OciError;
use super::image::{MEDIA_INDEX, MEDIA_MANIFEST};
use super::layout::LayoutImage;

/// How to talk to the registry.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// Speak plain HTTP (a registry on localhost without TLS).
    pub plain_http: bool,
    /// Accept any TLS certificate (self-signed test registries).
    pub insecure_tls: bool,
    /// The docker config to read credentials from; `None`: the default location.
    pub docker_config: Option<PathBuf>,
    /// Connect timeout; `None`: 10 s.
    pub connect_timeout: Option<Duration>,
}

/// The result of a push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    /// `host/repo:tag` as pushed.
    pub reference: String,
    /// `sha256:<hex>` of the manifest, as the registry reports it.
    pub digest: String,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs the registry already had.
    pub skipped: usize,
}

impl Pushed {
    /// `host/repo@sha256:<hex>`: the immutable reference.
    pub fn pinned(&self) -> String {
        let repo = self
            .reference
            .rsplit_once(':')
            .filter(|(_, tag)| !tag.contains('/'))
            .map_or(self.reference.as_str(), |(repo, _)| repo);
        format!("{repo}@{}", self.digest)
    }
}

/// A blocking OCI registry client.
pub struct Registry {
    runtime: tokio::runtime::Runtime,
    client: Client,
    options: RegistryOptions,
}

const MANIFEST_TYPES: &[&str] = &[
    MEDIA_MANIFEST,
    "application/vnd.docker.distribution.manifest.v2+json",
    MEDIA_INDEX,
];

impl Registry {
    /// A client with `options`.
    pub fn new(options: RegistryOptions) -> Result<Self, OciError> {
        // reqwest is built without a bundled crypto provider; use ring's. Installing twice is a no-op error.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(OciError::Runtime)?;
        let config = ClientConfig {
            protocol: if options.plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: options.insecure_tls,
            connect_timeout: Some(options.connect_timeout.unwrap_or(Duration::from_secs(10))),
            read_timeout: Some(Duration::from_secs(120)),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|e| OciError::Registry {
            operation: "create client",
            reference: String::new(),
            detail: chain(&e),
        })?;
        Ok(Registry {
            runtime,
            client,
            options,
        })
    }

    fn credentials(&self, reference: &Reference) -> Result<Found, OciError> {
        let path = self
            .options
            .docker_config
            .clone()
            .or_else(credentials::default_config_path);
        credentials::lookup(path.as_deref(), reference.registry())
    }

    /// Pushes `image` as `reference` (`host[:port]/repo:tag`): blobs the registry lacks, then the
    /// manifest's exact bytes, then checks the registry reports the same digest.
    pub fn push(&self, image: &LayoutImage, reference: &str) -> Result<Pushed, OciError> {
        let r = parse_reference(reference)?;
        let found = self.credentials(&r)?;
        let auth = to_auth(&found.credentials);
        let ctx = Ctx {
            reference,
            registry: r.registry(),
            credentials: &found.source,
            plain_http: self.options.plain_http,
        };
        self.runtime.block_on(async {
            self.client
                .auth(&r, &auth, RegistryOperation::Push)
                .await
                .map_err(|e| ctx.classify("authenticate", e))?;
            let (mut uploaded, mut skipped) = (0, 0);
            for blob in &image.blobs {
                let exists = self
                    .client
                    .blob_exists(&r, &blob.digest)
                    .await
                    .map_err(|e| ctx.classify("check blob", e))?;
                if exists {
                    skipped += 1;
                    continue;
                }
                self.client
                    .push_blob(&r, blob.data.clone(), &blob.digest)
                    .await
                    .map_err(|e| ctx.classify("push blob", e))?;
                uploaded += 1;
            }
            let content_type =
                http::HeaderValue::from_str(&image.media_type).map_err(|e| OciError::Registry {
                    operation: "push manifest",
                    reference: reference.to_string(),
                    detail: format!(
                        "media type {:?} is not a valid header value: {e}",
                        image.media_type
                    ),
                })?;
            self.client
                .push_manifest_raw(&r, image.manifest.clone(), content_type)
                .await
                .map_err(|e| ctx.classify("push manifest", e))?;
            let actual = self
                .client
                .fetch_manifest_digest(&r, &auth)
                .await
                .map_err(|e| ctx.classify("read back manifest digest", e))?;
            if actual != image.digest {
                return Err(OciError::DigestMismatch {
                    reference: reference.to_string(),
                    expected: image.digest.clone(),
                    actual,
                });
            }
            Ok(Pushed {
                reference: reference.to_string(),
                digest: actual,
                uploaded,
                skipped,
            })
        })
    }

    /// The manifest `reference` points to: its exact bytes and `sha256:<hex>` digest.
    pub fn manifest(&self, reference: &str) -> Result<(Vec<u8>, String), OciError> {
        let r = parse_reference(reference)?;
        let found = self.credentials(&r)?;
        let auth = to_auth(&found.credentials);
        let ctx = Ctx {
            reference,
            registry: r.registry(),
            credentials: &found.source,
            plain_http: self.options.plain_http,
        };
        self.runtime.block_on(async {
            let (bytes, digest) = self
                .client
                .pull_manifest_raw(&r, &auth, MANIFEST_TYPES)
                .await
                .map_err(|e| ctx.classify("pull manifest", e))?;
            Ok((bytes.to_vec(), digest))
        })
    }

    /// The digest `reference` points to now.
    pub fn resolve(&self, reference: &str) -> Result<String, OciError> {
        self.manifest(reference).map(|(_, digest)| digest)
    }
}

fn parse_reference(reference: &str) -> Result<Reference, OciError> {
    reference
        .parse::<Reference>()
        .map_err(|e| OciError::BadReference {
            reference: reference.to_string(),
            detail: e.to_string(),
        })
}

fn to_auth(credentials: &Credentials) -> RegistryAuth {
    match credentials {
        Credentials::Anonymous => RegistryAuth::Anonymous,
        Credentials::Basic { username, password } => {
            RegistryAuth::Basic(username.clone(), password.clone())
        }
    }
}

/// What an error is about, to sort it.
struct Ctx<'a> {
    reference: &'a str,
    registry: &'a str,
    credentials: &'a str,
    plain_http: bool,
}

impl Ctx<'_> {
    fn auth_refused(&self, detail: String) -> OciError {
        OciError::AuthRefused {
            registry: self.registry.to_string(),
            detail,
            credentials: self.credentials.to_string(),
        }
    }

    fn not_found(&self, detail: String) -> OciError {
        OciError::NotFound {
            reference: self.reference.to_string(),
            detail,
        }
    }

    fn classify(&self, operation: &'static str, e: OciDistributionError) -> OciError {
        let detail = chain(&e);
        match &e {
            OciDistributionError::RequestError(re) => {
                if let Some(status) = re.status() {
                    return match status.as_u16() {
                        401 | 403 => self.auth_refused(format!("HTTP {status}")),
                        404 => self.not_found(format!("HTTP {status}")),
                        _ => self.other(operation, detail),
                    };
                }
                if re.is_connect() || re.is_timeout() || re.is_request() {
                    let hint = if !self.plain_http && looks_like_tls_to_plain_http(&detail) {
                        "; it answers plain HTTP: for a local registry without TLS pass --plain-http".to_string()
                    } else if self.plain_http {
                        "; is it running and listening there?".to_string()
                    } else {
                        "; is it running and listening there? (for a local registry without TLS pass --plain-http)"
                            .to_string()
                    };
                    return OciError::Unreachable {
                        registry: self.registry.to_string(),
                        detail,
                        hint,
                    };
                }
                self.other(operation, detail)
            }
            OciDistributionError::UnauthorizedError { url } => {
                self.auth_refused(format!("401 Unauthorized at {url}"))
            }
            OciDistributionError::AuthenticationFailure(reason) => {
                self.auth_refused(format!("token request failed: {}", reason.trim()))
            }
            OciDistributionError::ImageManifestNotFoundError(m) => self.not_found(m.clone()),
            OciDistributionError::ServerError { code, url, message } => match code {
                401 | 403 => self.auth_refused(format!("HTTP {code} at {url}")),
                404 => self.not_found(format!("HTTP 404 at {url} {}", message.trim())),
                _ => self.other(operation, detail),
            },
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                let text = envelope
                    .errors
                    .iter()
                    .map(|e| format!("{:?}: {}", e.code, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    self.auth_refused(text)
                } else if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                    )
                }) {
                    self.not_found(text)
                } else {
                    self.other(operation, text)
                }
            }
            _ => self.other(operation, detail),
        }
    }

    fn other(&self, operation: &'static str, detail: String) -> OciError {
        OciError::Registry {
            operation,
            reference: self.reference.to_string(),
            detail,
        }
    }
}

fn looks_like_tls_to_plain_http(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    d.contains("invalidcontenttype") || d.contains("corrupt message") || d.contains("http response")
}

/// An error with its causes, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_reference_replaces_the_tag_with_the_digest() {
        let p = Pushed {
            reference: "127.0.0.1:5000/meshward/ratelimit:0.1.0".into(),
            digest: "sha256:ab".into(),
            uploaded: 0,
            skipped: 0,
        };
        assert_eq!(p.pinned(), "127.0.0.1:5000/meshward/ratelimit@sha256:ab");
        let untagged = Pushed {
            reference: "127.0.0.1:5000/ratelimit".into(),
            ..p
        };
        assert_eq!(untagged.pinned(), "127.0.0.1:5000/ratelimit@sha256:ab");
    }

    #[test]
    fn a_malformed_reference_is_rejected_before_any_network_use() {
        let reg = Registry::new(RegistryOptions::default()).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let image = LayoutImage {
            path: tmp.path().into(),
            tag: "t".into(),
            media_type: MEDIA_MANIFEST.into(),
            manifest: b"{}".to_vec(),
            digest: "sha256:00".into(),
            blobs: vec![],
        };
        let err = reg.push(&image, "UPPER/Case:tag").unwrap_err().to_string();
        assert!(err.contains("invalid image reference"), "{err}");
    }
}
