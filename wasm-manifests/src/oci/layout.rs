//! Writes a built image as an OCI image layout directory (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`) and reads one back, checking every blob against its digest. skopeo
//! reads the same directory as `oci:DIR:TAG`. It knows nothing of registries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::error::OciError;
use super::image::{canonical_json, check_tag, sha256_digest, Blob, MEDIA_INDEX, MEDIA_MANIFEST};

/// The index annotation that names a manifest's tag.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An image read back from a layout.
#[derive(Clone, Debug)]
pub struct LayoutImage {
    /// The layout directory.
    pub path: PathBuf,
    /// Its tag (`org.opencontainers.image.ref.name`).
    pub tag: String,
    /// The manifest's media type.
    pub media_type: String,
    /// The manifest's exact bytes.
    pub manifest: Vec<u8>,
    /// `sha256:<hex>` of `manifest`.
    pub digest: String,
    /// Every distinct blob the manifest refers to (config first).
    pub blobs: Vec<Blob>,
}

impl LayoutImage {
    /// The `plugin.wasm` this image carries (compat: extracted from the tar+gzip layer;
    /// artifact: the content layer), if any.
    pub fn plugin_wasm(&self) -> Result<Option<Vec<u8>>, OciError> {
        for blob in self.blobs.iter().rev() {
            match blob.media_type.as_str() {
                super::image::MEDIA_LAYER_TAR_GZIP => {
                    if let Some(wasm) = super::layer::extract_plugin(&blob.data)? {
                        return Ok(Some(wasm));
                    }
                }
                super::image::MEDIA_WASM_CONTENT => return Ok(Some(blob.data.clone())),
                _ => {}
            }
        }
        Ok(None)
    }
}

/// Writes `manifest` and `blobs` as a layout in `dir`, tagged `tag`. An existing layout in
/// `dir` is replaced; an existing non-empty directory that is not a layout is refused.
pub fn write_layout(
    dir: &Path,
    manifest: &[u8],
    blobs: &[&Blob],
    tag: &str,
) -> Result<(), OciError> {
    check_tag(tag)?;
    if dir.exists() {
        let is_layout = dir.join("oci-layout").is_file();
        let empty = std::fs::read_dir(dir)
            .map_err(|e| OciError::io("cannot read", dir, e))?
            .next()
            .is_none();
        if is_layout {
            std::fs::remove_dir_all(dir).map_err(|e| OciError::io("cannot replace", dir, e))?;
        } else if !empty {
            return Err(OciError::BadLayout {
                path: dir.to_path_buf(),
                detail: "the directory exists, is not empty and is not an OCI layout; refusing to overwrite it".into(),
            });
        }
    }
    let blob_dir = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blob_dir).map_err(|e| OciError::io("cannot create", &blob_dir, e))?;
    let write = |path: PathBuf, data: &[u8]| {
        std::fs::write(&path, data).map_err(|e| OciError::io("cannot write", path, e))
    };
    let digest = sha256_digest(manifest);
    write(blob_path(dir, &digest)?, manifest)?;
    for blob in blobs {
        write(blob_path(dir, &blob.digest)?, &blob.data)?;
    }
    let mut annotations = BTreeMap::new();
    annotations.insert(ANNOTATION_REF_NAME, tag);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{
            "mediaType": MEDIA_MANIFEST,
            "digest": digest,
            "size": manifest.len(),
            "annotations": annotations,
        }],
    });
    write(dir.join("index.json"), &canonical_json(&index)?)?;
    write(
        dir.join("oci-layout"),
        &canonical_json(&json!({ "imageLayoutVersion": "1.0.0" }))?,
    )?;
    Ok(())
}

/// Reads the image tagged `tag` (or the only image, when `tag` is `None`) from the layout in
/// `dir`, verifying the manifest and every blob against their digests.
pub fn read_layout(dir: &Path, tag: Option<&str>) -> Result<LayoutImage, OciError> {
    let bad = |detail: String| OciError::BadLayout {
        path: dir.to_path_buf(),
        detail,
    };
    if !dir.join("oci-layout").is_file() {
        return Err(bad(
            "no oci-layout file (build it with `meshward package`)".into()
        ));
    }
    let index_path = dir.join("index.json");
    let index: Value = serde_json::from_slice(
        &std::fs::read(&index_path).map_err(|e| OciError::io("cannot read", &index_path, e))?,
    )
    .map_err(|e| bad(format!("index.json is not JSON: {e}")))?;
    let entries = index["manifests"]
        .as_array()
        .ok_or_else(|| bad("index.json has no manifests list".into()))?;
    let tag_of = |e: &Value| {
        e["annotations"][ANNOTATION_REF_NAME]
            .as_str()
            .map(str::to_string)
    };
    let tags: Vec<String> = entries.iter().filter_map(tag_of).collect();
    let entry = match tag {
        Some(t) => entries.iter().find(|e| tag_of(e).as_deref() == Some(t)),
        None if entries.len() == 1 => entries.first(),
        None => {
            return Err(bad(format!(
                "it holds {} images ({}); say which tag",
                entries.len(),
                tags.join(", ")
            )))
        }
    };
    let entry = entry.ok_or_else(|| OciError::TagNotInLayout {
        path: dir.to_path_buf(),
        tag: tag.unwrap_or_default().to_string(),
        available: if tags.is_empty() {
            "none".into()
        } else {
            tags.join(", ")
        },
    })?;
    let found_tag = tag_of(entry).unwrap_or_default();
    let media_type = entry["mediaType"]
        .as_str()
        .unwrap_or(MEDIA_MANIFEST)
        .to_string();
    let digest = entry["digest"]
        .as_str()
        .ok_or_else(|| bad("index entry without a digest".into()))?
        .to_string();
    let manifest = read_blob(dir, &digest)?;
    let parsed: Value = serde_json::from_slice(&manifest)
        .map_err(|e| bad(format!("manifest {digest} is not JSON: {e}")))?;
    let mut blobs: Vec<Blob> = Vec::new();
    let descriptors =
        std::iter::once(&parsed["config"]).chain(parsed["layers"].as_array().into_iter().flatten());
    for d in descriptors {
        let (Some(media_type), Some(digest)) = (d["mediaType"].as_str(), d["digest"].as_str())
        else {
            return Err(bad(format!(
                "manifest descriptor without mediaType/digest: {d}"
            )));
        };
        if blobs.iter().any(|b| b.digest == digest) {
            continue;
        }
        let data = read_blob(dir, digest)?;
        if d["size"].as_u64() != Some(data.len() as u64) {
            return Err(bad(format!(
                "blob {digest} has {} bytes, the manifest says {}",
                data.len(),
                d["size"]
            )));
        }
        blobs.push(Blob {
            media_type: media_type.to_string(),
            digest: digest.to_string(),
            data,
        });
    }
    Ok(LayoutImage {
        path: dir.to_path_buf(),
        tag: found_tag,
        media_type,
        manifest,
        digest,
        blobs,
    })
}

fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf, OciError> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(dir.join("blobs").join("sha256").join(hex))
        }
        _ => Err(OciError::BadLayout {
            path: dir.to_path_buf(),
            detail: format!("unsupported digest {digest:?} (only sha256 is used)"),
        }),
    }
}

fn read_blob(dir: &Path, digest: &str) -> Result<Vec<u8>, OciError> {
    let path = blob_path(dir, digest)?;
    let data = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => OciError::BadLayout {
            path: dir.to_path_buf(),
            detail: format!("blob {digest} is missing (re-run `meshward package`)"),
        },
        _ => OciError::io("cannot read", &path, e),
    })?;
    if sha256_digest(&data) != digest {
        return Err(OciError::BadLayout {
            path: dir.to_path_buf(),
            detail: format!(
                "blob {digest} is corrupt: its content hashes to {}",
                sha256_digest(&data)
            ),
        });
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::image::{build_image, ImageSpec, Variant};

    fn image(variant: Variant) -> crate::oci::image::Image {
        build_image(&ImageSpec {
            name: "noop",
            module: b"\0asm\x01\0\0\0",
            variant,
            annotations: Default::default(),
            root_ids: vec![],
        })
        .unwrap()
    }

    #[test]
    fn a_written_layout_reads_back_identically() {
        for variant in [Variant::Compat, Variant::Artifact] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("noop");
            let img = image(variant);
            write_layout(&dir, &img.manifest, &img.blobs(), "0.1.0").unwrap();
            let oci_layout = std::fs::read_to_string(dir.join("oci-layout")).unwrap();
            assert_eq!(oci_layout, r#"{"imageLayoutVersion":"1.0.0"}"#);
            let back = read_layout(&dir, Some("0.1.0")).unwrap();
            assert_eq!(back.manifest, img.manifest);
            assert_eq!(back.digest, img.digest);
            assert_eq!(back.tag, "0.1.0");
            assert_eq!(back.blobs.len(), img.blobs().len());
            assert_eq!(back.plugin_wasm().unwrap().unwrap(), b"\0asm\x01\0\0\0");
            // blobs/sha256 holds exactly manifest + distinct blobs
            let n = std::fs::read_dir(dir.join("blobs/sha256")).unwrap().count();
            assert_eq!(n, 1 + img.blobs().len());
            // rewriting gives byte-identical index.json
            let index = std::fs::read(dir.join("index.json")).unwrap();
            write_layout(&dir, &img.manifest, &img.blobs(), "0.1.0").unwrap();
            assert_eq!(std::fs::read(dir.join("index.json")).unwrap(), index);
        }
    }

    #[test]
    fn missing_tag_missing_blob_and_corrupt_blob_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("noop");
        let img = image(Variant::Compat);
        write_layout(&dir, &img.manifest, &img.blobs(), "0.1.0").unwrap();
        let err = read_layout(&dir, Some("9.9.9")).unwrap_err().to_string();
        assert!(
            err.contains("no image tagged \"9.9.9\"") && err.contains("0.1.0"),
            "{err}"
        );

        let layer = dir
            .join("blobs/sha256")
            .join(img.layers[0].digest.trim_start_matches("sha256:"));
        std::fs::write(&layer, b"tampered").unwrap();
        let err = read_layout(&dir, None).unwrap_err().to_string();
        assert!(err.contains("is corrupt"), "{err}");
        std::fs::remove_file(&layer).unwrap();
        let err = read_layout(&dir, None).unwrap_err().to_string();
        assert!(err.contains("is missing"), "{err}");

        let err = read_layout(tmp.path(), None).unwrap_err().to_string();
        assert!(err.contains("no oci-layout file"), "{err}");
    }

    #[test]
    fn a_non_layout_directory_is_not_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("precious.txt"), b"keep").unwrap();
        let img = image(Variant::Compat);
        let err = write_layout(tmp.path(), &img.manifest, &img.blobs(), "0.1.0").unwrap_err();
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
        assert!(tmp.path().join("precious.txt").exists());
    }
}
