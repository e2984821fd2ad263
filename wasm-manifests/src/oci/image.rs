//! Builds a filter's OCI image in memory: config blob, layers and manifest, all deterministic
//! (canonical JSON with sorted keys, no timestamps), in one of the two layouts Istio's agent
//! accepts (see `../shared/reference/istio-images-and-checks.md` §4 and proxy-wasm-abi.md §5.3).
//! It knows nothing of files or registries.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::error::OciError;
use super::layer::plugin_layer;
use super::optimize::proxy_abi_versions;

/// OCI image manifest media type.
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type (the layout's `index.json`).
pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config media type (compat variant's config).
pub const MEDIA_IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The compat variant's layer: the only layer type Istio's compat path accepts.
pub const MEDIA_LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The artifact variant's runtime config (used as manifest config and as a layer).
pub const MEDIA_WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
/// The artifact variant's content layer: the raw module.
pub const MEDIA_WASM_CONTENT: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// The manifest annotation the compat spec asks for.
pub const ANNOTATION_VARIANT: &str = "module.wasm.image/variant";
/// The image title (the filter's name).
pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";
/// sha256 of `plugin.wasm` (so a module can be traced to its image and back).
pub const ANNOTATION_MODULE_SHA256: &str = "dev.meshward.module.sha256";
/// How the module was optimized (binaryen version and flags, or `none`).
pub const ANNOTATION_OPTIMIZER: &str = "dev.meshward.module.optimizer";

/// Which of the layouts Istio's agent accepts to write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Variant {
    /// One `tar+gzip` layer holding `plugin.wasm`, annotation `module.wasm.image/variant=compat`.
    /// Istio tries it first; skopeo, umoci and docker tooling understand it.
    #[default]
    Compat,
    /// Two layers: the runtime config JSON and the raw module
    /// (`application/vnd.module.wasm.content.layer.v1+wasm`), the solo-io "oci" spec.
    Artifact,
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Variant::Compat => "compat",
            Variant::Artifact => "artifact",
        })
    }
}

impl FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "compat" => Ok(Variant::Compat),
            "artifact" => Ok(Variant::Artifact),
            other => Err(format!(
                "unknown image variant {other:?} (expected compat or artifact)"
            )),
        }
    }
}

/// A content-addressed blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// Its media type in the manifest.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// The bytes.
    pub data: Vec<u8>,
}

impl Blob {
    /// A blob of `data` with `media_type`.
    pub fn new(media_type: &str, data: Vec<u8>) -> Self {
        Blob {
            media_type: media_type.to_string(),
            digest: sha256_digest(&data),
            data,
        }
    }

    fn descriptor(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.data.len() })
    }
}

/// A built image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The manifest's exact bytes (canonical JSON).
    pub manifest: Vec<u8>,
    /// `sha256:<hex>` of `manifest`: what `WasmPlugin.spec.sha256` / `@sha256:` pin.
    pub digest: String,
    /// The manifest's config blob.
    pub config: Blob,
    /// The layers, in manifest order.
    pub layers: Vec<Blob>,
}

impl Image {
    /// Every distinct blob the manifest refers to (config first), each once.
    pub fn blobs(&self) -> Vec<&Blob> {
        let mut out: Vec<&Blob> = vec![&self.config];
        for layer in &self.layers {
            if out.iter().all(|b| b.digest != layer.digest) {
                out.push(layer);
            }
        }
        out
    }
}

/// What to build an image from.
#[derive(Clone, Debug)]
pub struct ImageSpec<'a> {
    /// The filter's name (the image title and, by default, its repository name).
    pub name: &'a str,
    /// The module that becomes `plugin.wasm`.
    pub module: &'a [u8],
    /// Which layout.
    pub variant: Variant,
    /// Extra manifest annotations (e.g. [`ANNOTATION_OPTIMIZER`]).
    pub annotations: BTreeMap<String, String>,
    /// The root ids the module serves (artifact variant's runtime config). Empty: `[name]`.
    pub root_ids: Vec<String>,
}

/// Builds the image for `spec`. Same spec, same bytes.
pub fn build_image(spec: &ImageSpec<'_>) -> Result<Image, OciError> {
    check_component("image name", spec.name)?;
    let mut annotations = spec.annotations.clone();
    annotations.insert(ANNOTATION_TITLE.into(), spec.name.into());
    annotations.insert(ANNOTATION_MODULE_SHA256.into(), sha256_hex(spec.module));
    let (config, layers) = match spec.variant {
        Variant::Compat => {
            annotations.insert(ANNOTATION_VARIANT.into(), "compat".into());
            let layer = plugin_layer(spec.module)?;
            // A minimal image config: skopeo and docker tooling parse it; Istio ignores it.
            // No `created` field, so nothing depends on the clock.
            let config = canonical_json(&json!({
                "architecture": "wasm",
                "os": "wasip1",
                "config": {},
                "rootfs": { "type": "layers", "diff_ids": [sha256_digest(&layer.tar)] },
            }))?;
            (
                Blob::new(MEDIA_IMAGE_CONFIG, config),
                vec![Blob::new(MEDIA_LAYER_TAR_GZIP, layer.gz)],
            )
        }
        Variant::Artifact => {
            let root_ids = if spec.root_ids.is_empty() {
                vec![spec.name.to_string()]
            } else {
                spec.root_ids.clone()
            };
            // solo-io's runtime config; Istio counts it as one of the two layers it requires,
            // and wasme also uses it as the manifest config.
            let runtime = canonical_json(&json!({
                "type": "envoy_proxy",
                "abiVersions": proxy_abi_versions(spec.module),
                "config": { "rootIds": root_ids },
            }))?;
            let config = Blob::new(MEDIA_WASM_CONFIG, runtime);
            let content = Blob::new(MEDIA_WASM_CONTENT, spec.module.to_vec());
            (config.clone(), vec![config, content])
        }
    };
    let manifest = canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config.descriptor(),
        "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        "annotations": annotations,
    }))?;
    Ok(Image {
        digest: sha256_digest(&manifest),
        manifest,
        config,
        layers,
    })
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// Lower-case hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Serializes `value` as canonical JSON (OLPC: sorted keys, no insignificant whitespace), so the
/// bytes do not depend on map order or serde_json features.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>, OciError> {
    let mut out = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut out, olpc_cjson::CanonicalFormatter::new());
    value
        .serialize(&mut ser)
        .map_err(|e| OciError::io("cannot encode", "JSON", std::io::Error::other(e)))?;
    Ok(out)
}

/// Checks a repository path component (`[a-z0-9]+([._-][a-z0-9]+)*`, the distribution spec's rule).
pub fn check_component(what: &'static str, value: &str) -> Result<(), OciError> {
    let bad = |rule| {
        Err(OciError::InvalidName {
            what,
            value: value.to_string(),
            rule,
        })
    };
    if value.is_empty() || value.len() > 128 {
        return bad("must be 1 to 128 characters");
    }
    let seps = |c: char| matches!(c, '.' | '_' | '-');
    if !value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || seps(c))
    {
        return bad("only lower-case letters, digits, '.', '_' and '-' are allowed");
    }
    let first_last_ok = |c: Option<char>| c.is_some_and(|c| !seps(c));
    if !first_last_ok(value.chars().next()) || !first_last_ok(value.chars().last()) {
        return bad("must start and end with a letter or digit");
    }
    Ok(())
}

/// Checks a tag (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`).
pub fn check_tag(tag: &str) -> Result<(), OciError> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(OciError::InvalidName {
            what: "tag",
            value: tag.to_string(),
            rule: "1 to 128 of letters, digits, '.', '_', '-', not starting with '.' or '-'",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::layer::extract_plugin;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    fn spec(module: &[u8], variant: Variant) -> ImageSpec<'_> {
        ImageSpec {
            name: "ratelimit",
            module,
            variant,
            annotations: BTreeMap::new(),
            root_ids: vec![],
        }
    }

    fn manifest_json(image: &Image) -> Value {
        serde_json::from_slice(&image.manifest).unwrap()
    }

    #[test]
    fn the_same_module_gives_the_same_digest_and_a_different_one_a_different_digest() {
        for variant in [Variant::Compat, Variant::Artifact] {
            let a = build_image(&spec(MODULE, variant)).unwrap();
            let b = build_image(&spec(MODULE, variant)).unwrap();
            assert_eq!(a, b, "{variant}");
            assert_eq!(a.digest, sha256_digest(&a.manifest));
            let other = build_image(&spec(b"\0asm\x01\0\0\0\0", variant)).unwrap();
            assert_ne!(a.digest, other.digest, "{variant}");
        }
        let compat = build_image(&spec(MODULE, Variant::Compat)).unwrap();
        let artifact = build_image(&spec(MODULE, Variant::Artifact)).unwrap();
        assert_ne!(compat.digest, artifact.digest);
    }

    #[test]
    fn compat_has_one_tar_gzip_layer_with_plugin_wasm_and_the_variant_annotation() {
        let image = build_image(&spec(MODULE, Variant::Compat)).unwrap();
        let m = manifest_json(&image);
        assert_eq!(m["schemaVersion"], 2);
        assert_eq!(m["mediaType"], MEDIA_MANIFEST);
        assert_eq!(m["config"]["mediaType"], MEDIA_IMAGE_CONFIG);
        assert_eq!(m["layers"].as_array().unwrap().len(), 1);
        assert_eq!(m["layers"][0]["mediaType"], MEDIA_LAYER_TAR_GZIP);
        assert_eq!(m["layers"][0]["digest"], image.layers[0].digest.as_str());
        assert_eq!(m["layers"][0]["size"], image.layers[0].data.len());
        assert_eq!(m["annotations"][ANNOTATION_VARIANT], "compat");
        assert_eq!(m["annotations"][ANNOTATION_TITLE], "ratelimit");
        assert_eq!(
            m["annotations"][ANNOTATION_MODULE_SHA256],
            sha256_hex(MODULE)
        );
        assert_eq!(
            extract_plugin(&image.layers[0].data).unwrap().unwrap(),
            MODULE
        );
        let config: Value = serde_json::from_slice(&image.config.data).unwrap();
        assert!(
            config.get("created").is_none(),
            "no timestamp in the config"
        );
        assert_eq!(image.blobs().len(), 2);
    }

    #[test]
    fn artifact_has_two_layers_config_and_raw_module() {
        let image = build_image(&spec(MODULE, Variant::Artifact)).unwrap();
        let m = manifest_json(&image);
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(
            layers.len(),
            2,
            "Istio's artifact path wants exactly two layers"
        );
        assert_eq!(layers[0]["mediaType"], MEDIA_WASM_CONFIG);
        assert_eq!(layers[1]["mediaType"], MEDIA_WASM_CONTENT);
        assert_eq!(m["config"]["mediaType"], MEDIA_WASM_CONFIG);
        assert_eq!(image.layers[1].data, MODULE);
        assert!(m["annotations"].get(ANNOTATION_VARIANT).is_none());
        let runtime: Value = serde_json::from_slice(&image.config.data).unwrap();
        assert_eq!(runtime["type"], "envoy_proxy");
        assert_eq!(runtime["config"]["rootIds"], json!(["ratelimit"]));
        // config and first layer are the same blob: stored and pushed once.
        assert_eq!(image.blobs().len(), 2);
    }

    #[test]
    fn manifest_keys_are_sorted_and_compact() {
        let image = build_image(&spec(MODULE, Variant::Compat)).unwrap();
        let text = String::from_utf8(image.manifest.clone()).unwrap();
        assert!(
            text.starts_with("{\"annotations\":{\"dev.meshward.module.sha256\""),
            "{text}"
        );
        assert!(!text.contains(' ') && !text.contains('\n'));
        let a = text.find("\"config\"").unwrap();
        let l = text.find("\"layers\"").unwrap();
        let mt = text
            .find("\"mediaType\":\"application/vnd.oci.image.manifest")
            .unwrap();
        assert!(a < l && l < mt);
    }

    #[test]
    fn bad_names_and_tags_are_rejected_with_the_rule() {
        for name in ["", "Rate", "-x", "x-", "a/b", "a b"] {
            let err = build_image(&ImageSpec {
                name,
                ..spec(MODULE, Variant::Compat)
            })
            .unwrap_err();
            assert!(err.to_string().contains("invalid image name"), "{err}");
        }
        assert!(check_tag("0.1.0").is_ok() && check_tag("v1_x-2").is_ok());
        for tag in ["", ".x", "-x", "a:b", "a/b"] {
            assert!(check_tag(tag).is_err(), "{tag}");
        }
    }
}
