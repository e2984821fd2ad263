//! The compat variant's single layer: a tar holding `plugin.wasm`, gzip-compressed, built so the
//! same module always gives the same bytes (and so the same digest). It knows nothing of
//! manifests or registries.
//!
//! Fixed on purpose: one ustar entry named `plugin.wasm` (Istio's fetcher matches the entry by
//! base name), mtime 0, uid/gid 0, no user/group names, mode 0644; gzip at level 9 with no file
//! name, mtime 0 and the "unknown" OS byte in the header. The compressed bytes depend on the
//! deflate implementation (miniz_oxide via flate2, pinned by Cargo.lock), not on the machine.

use std::io::{Read, Write};

use flate2::{Compression, GzBuilder};

use super::error::OciError;

/// The file name inside the layer.
pub const PLUGIN_FILE: &str = "plugin.wasm";

/// A built layer: the uncompressed tar (its digest is the config's `diff_id`) and the gzip.
#[derive(Clone, Debug)]
pub struct TarGzLayer {
    /// The tar archive.
    pub tar: Vec<u8>,
    /// The gzip-compressed tar (the blob that is pushed).
    pub gz: Vec<u8>,
}

/// Builds the deterministic tar+gzip layer holding `module` as `plugin.wasm`.
pub fn plugin_layer(module: &[u8]) -> Result<TarGzLayer, OciError> {
    let tar = plugin_tar(module)?;
    let mut gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::best());
    gz.write_all(&tar)
        .map_err(|e| OciError::io("cannot compress", "plugin.wasm layer", e))?;
    let gz = gz
        .finish()
        .map_err(|e| OciError::io("cannot compress", "plugin.wasm layer", e))?;
    Ok(TarGzLayer { tar, gz })
}

fn plugin_tar(module: &[u8]) -> Result<Vec<u8>, OciError> {
    let mut header = tar::Header::new_ustar();
    header
        .set_path(PLUGIN_FILE)
        .map_err(|e| OciError::io("cannot build tar entry", PLUGIN_FILE, e))?;
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(module.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append(&header, module)
        .map_err(|e| OciError::io("cannot build tar", PLUGIN_FILE, e))?;
    builder
        .into_inner()
        .map_err(|e| OciError::io("cannot build tar", PLUGIN_FILE, e))
}

/// Reads the first entry whose base name is `plugin.wasm` from a tar+gzip layer, the way Istio's
/// fetcher does. `None` when there is no such entry.
pub fn extract_plugin(targz: &[u8]) -> Result<Option<Vec<u8>>, OciError> {
    let gz = flate2::read::GzDecoder::new(targz);
    let mut archive = tar::Archive::new(gz);
    let bad = |e: std::io::Error| OciError::io("cannot read", "tar+gzip layer", e);
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        if path.file_name().and_then(|n| n.to_str()) == Some(PLUGIN_FILE) {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(bad)?;
            return Ok(Some(bytes));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_module_gives_the_same_layer_bytes() {
        let module = b"\0asm\x01\0\0\0some module bytes";
        let a = plugin_layer(module).unwrap();
        let b = plugin_layer(module).unwrap();
        assert_eq!(a.gz, b.gz);
        assert_eq!(a.tar, b.tar);
        assert_ne!(plugin_layer(b"\0asm\x01\0\0\0other").unwrap().gz, a.gz);
    }

    #[test]
    fn the_layer_holds_plugin_wasm_with_fixed_metadata() {
        let module = b"\0asm\x01\0\0\0payload".to_vec();
        let layer = plugin_layer(&module).unwrap();
        // gzip header: magic, deflate, no flags (no name), mtime 0, xfl 2 (best), OS 255.
        assert_eq!(&layer.gz[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255]);
        let mut archive = tar::Archive::new(&layer.tar[..]);
        let entries: Vec<_> = archive.entries().unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(entries.len(), 1);
        let h = entries[0].header();
        assert_eq!(h.path().unwrap().to_str(), Some("plugin.wasm"));
        assert_eq!(h.mode().unwrap(), 0o644);
        assert_eq!(h.mtime().unwrap(), 0);
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
        assert_eq!(extract_plugin(&layer.gz).unwrap(), Some(module));
    }

    #[test]
    fn extract_finds_nothing_in_a_layer_without_plugin_wasm() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_path("other.wasm").unwrap();
        h.set_size(1);
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let mut gz = GzBuilder::new().write(Vec::new(), Compression::fast());
        gz.write_all(&tar).unwrap();
        assert_eq!(extract_plugin(&gz.finish().unwrap()).unwrap(), None);
    }
}
