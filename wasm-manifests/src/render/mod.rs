//! Policy -> manifests. [`render`] builds every object in memory from a validated policy and
//! returns the YAML files (one per resource group, documents in a fixed order, maps sorted),
//! so the same policy always gives byte-identical output. [`write_atomic`] writes them into a
//! fresh temporary directory next to `--out` and renames it into place: a failure leaves the
//! old output (or no output) behind, never a half-written one.
//!
//! Each submodule renders one group and knows only its own kinds.

mod alerting;
mod backup;
mod dashboards;
mod filters;
mod global_rls;
mod metrics;
mod rules;
mod security;
mod tracing;
mod traffic;
mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use meshward_core::policy::deployment::{is_digest, Deployment};
use meshward_core::policy::Policy;
use serde::Serialize;

use crate::RenderError;

pub use metrics::{filter_metrics, FilterMetric, MetricKind};

/// Inputs besides the policy.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Name the policy file is reported under in errors.
    pub file_name: String,
    /// Filter name -> manifest digest (`sha256:...`), overriding `deployment.image.digests`
    /// (what `meshward push` wrote).
    pub digests: BTreeMap<String, String>,
}

/// The rendered output: file name -> YAML text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Files in name order.
    pub files: BTreeMap<String, String>,
}

/// One YAML document with an optional comment block above it.
struct Doc {
    comment: Option<String>,
    yaml: String,
}

/// Documents grouped into files.
#[derive(Default)]
struct Out {
    files: BTreeMap<String, Vec<Doc>>,
}

impl Out {
    fn push<T: Serialize>(
        &mut self,
        file: &str,
        comment: Option<String>,
        obj: &T,
    ) -> Result<(), RenderError> {
        let yaml = to_yaml(obj, file)?;
        self.files
            .entry(file.to_string())
            .or_default()
            .push(Doc { comment, yaml });
        Ok(())
    }

    fn finish(self) -> Rendered {
        let mut files = BTreeMap::new();
        for (name, docs) in self.files {
            let mut text = String::from("# Rendered by `meshward render`; do not edit: change the policy and render again.\n");
            for doc in docs {
                text.push_str("---\n");
                if let Some(c) = doc.comment {
                    for line in c.lines() {
                        if line.is_empty() {
                            text.push_str("#\n");
                        } else {
                            text.push_str("# ");
                            text.push_str(line);
                            text.push('\n');
                        }
                    }
                }
                text.push_str(&doc.yaml);
            }
            files.insert(name, text);
        }
        Rendered { files }
    }
}

fn to_yaml<T: Serialize>(obj: &T, what: &str) -> Result<String, RenderError> {
    let value = serde_json::to_value(obj).map_err(|e| RenderError::Serialize {
        what: what.to_string(),
        message: e.to_string(),
    })?;
    Ok(yaml::to_string(&value))
}

/// What every group needs: the policy, its deployment section and naming helpers.
pub(crate) struct Ctx<'a> {
    pub policy: &'a Policy,
    pub dep: &'a Deployment,
    pub file: &'a str,
    pub digests: BTreeMap<String, String>,
}

impl Ctx<'_> {
    pub fn service(&self) -> &str {
        &self.policy.service
    }

    pub fn ns(&self) -> &str {
        &self.dep.namespace
    }

    /// Cluster-local host of the service.
    pub fn host(&self) -> String {
        self.dep
            .hosts
            .first()
            .cloned()
            .unwrap_or_else(|| format!("{}.{}.svc.cluster.local", self.service(), self.ns()))
    }

    /// Labels on every object meshward renders.
    pub fn labels(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "app.kubernetes.io/part-of".to_string(),
                "meshward".to_string(),
            ),
            (
                "app.kubernetes.io/managed-by".to_string(),
                "meshward".to_string(),
            ),
            (
                "app.kubernetes.io/component".to_string(),
                component.to_string(),
            ),
            (
                "meshward.io/service".to_string(),
                self.service().to_string(),
            ),
        ])
    }

    /// Namespaced metadata with the standard labels.
    pub fn meta(&self, name: &str, component: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(self.ns().to_string()),
            labels: Some(self.labels(component)),
            ..ObjectMeta::default()
        }
    }

    pub fn unrenderable(&self, path: &str, message: impl Into<String>) -> RenderError {
        RenderError::Unrenderable {
            file: self.file.to_string(),
            path: path.to_string(),
            message: message.into(),
        }
    }
}

/// Renders a validated policy. Fails when the policy has no `deployment` section, a used
/// filter has no digest, or the policy asks for something the renderer refuses to make
/// (e.g. tiers from a JWT claim without requiring a token).
pub fn render(policy: &Policy, opts: &Options) -> Result<Rendered, RenderError> {
    let file = if opts.file_name.is_empty() {
        "policy"
    } else {
        opts.file_name.as_str()
    };
    let dep = policy
        .deployment
        .as_ref()
        .ok_or_else(|| RenderError::Unrenderable {
            file: file.to_string(),
            path: "deployment".into(),
            message: "missing: the renderer needs the namespace, selector, image and ports".into(),
        })?;
    let mut digests = dep.image.digests.clone();
    for (k, v) in &opts.digests {
        digests.insert(k.clone(), v.clone());
    }
    let ctx = Ctx {
        policy,
        dep,
        file,
        digests,
    };
    let mut out = Out::default();
    filters::render(&ctx, &mut out)?;
    traffic::render(&ctx, &mut out)?;
    global_rls::render(&ctx, &mut out)?;
    security::render(&ctx, &mut out)?;
    tracing::render(&ctx, &mut out)?;
    backup::render(&ctx, &mut out)?;
    rules::render(&ctx, &mut out)?;
    alerting::render(&ctx, &mut out)?;
    dashboards::render(&ctx, &mut out)?;
    let mut rendered = out.finish();
    let resources: Vec<&String> = rendered.files.keys().collect();
    let kustomization = serde_json::json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
    });
    let text = format!(
        "# Rendered by `meshward render`; do not edit: change the policy and render again.\n{}",
        to_yaml(&kustomization, "kustomization.yaml")?
    );
    rendered
        .files
        .insert("kustomization.yaml".to_string(), text);
    Ok(rendered)
}

/// Reads a `--digests` file: JSON `{ "<filter>": "sha256:<64 hex>" }`.
pub fn read_digests(path: &Path) -> Result<BTreeMap<String, String>, RenderError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| RenderError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let map: BTreeMap<String, String> =
        serde_json::from_str(&text).map_err(|e| RenderError::Digests {
            file: file.clone(),
            message: format!("expected {{\"<filter>\": \"sha256:...\"}}: {e}"),
        })?;
    for (k, v) in &map {
        if !is_digest(v) {
            return Err(RenderError::Digests {
                file,
                message: format!("`{k}`: `{v}` is not sha256: followed by 64 lowercase hex digits"),
            });
        }
    }
    Ok(map)
}

/// Writes `rendered` into `out`, replacing it whole: the files go into a temporary directory
/// beside `out`, which is then renamed into place (the old directory is moved aside first and
/// removed after). On error nothing at `out` has changed.
pub fn write_atomic(rendered: &Rendered, out: &Path) -> Result<(), RenderError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RenderError::Io { path, source }
    };
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let tmp = tempfile::Builder::new()
        .prefix(".meshward-render-")
        .tempdir_in(&parent)
        .map_err(io(&parent))?;
    for (name, text) in &rendered.files {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).map_err(io(&p))?;
    }
    let staged = tmp.keep();
    let old = parent.join(format!(
        ".meshward-render-old-{}",
        out.file_name().and_then(|n| n.to_str()).unwrap_or("out")
    ));
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    let had_old = out.exists();
    if had_old {
        std::fs::rename(out, &old).map_err(io(out))?;
    }
    if let Err(e) = std::fs::rename(&staged, out) {
        if had_old {
            let _ = std::fs::rename(&old, out);
        }
        let _ = std::fs::remove_dir_all(&staged);
        return Err(RenderError::Io {
            path: out.to_path_buf(),
            source: e,
        });
    }
    if had_old {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
}

/// Parses `text` (named `file_name` in errors), renders it, and returns the files.
pub fn render_str(text: &str, opts: &Options) -> Result<Rendered, RenderError> {
    let policy = meshward_core::policy::parse_yaml(text, &opts.file_name)?;
    render(&policy, opts)
}
