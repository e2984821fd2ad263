//! One filter module → one OCI image layout on disk: validate, optimize (or not), build the
//! image, write `<out>/<name>/`. The step `meshward package` runs per filter. It knows nothing
//! of registries or of where modules come from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::OciError;
use super::image::{build_image, check_component, ImageSpec, Variant, ANNOTATION_OPTIMIZER};
use super::layout::write_layout;
use super::optimize::{unoptimized, WasmOpt};

/// How to package.
#[derive(Clone, Debug)]
pub struct PackageOptions {
    /// Which image layout.
    pub variant: Variant,
    /// `Some`: run this wasm-opt; `None`: put the module in as it is (`--no-opt`).
    pub optimizer: Option<WasmOpt>,
    /// The tag written into the layout's index.
    pub tag: String,
    /// Root ids for the artifact variant's runtime config (empty: the filter's name).
    pub root_ids: Vec<String>,
}

/// What was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packaged {
    /// The filter's name.
    pub name: String,
    /// The layout directory (`<out>/<name>`).
    pub dir: PathBuf,
    /// Manifest digest `sha256:<hex>`.
    pub digest: String,
    /// The module's size as given.
    pub raw_size: usize,
    /// The size of `plugin.wasm` in the image.
    pub size: usize,
    /// How it was optimized.
    pub optimizer: String,
    /// The layout's tag.
    pub tag: String,
}

/// Packages `module` as filter `name` into `out/<name>`.
pub fn package(
    name: &str,
    module: &[u8],
    out: &Path,
    options: &PackageOptions,
) -> Result<Packaged, OciError> {
    check_component("image name", name)?;
    let optimized = match &options.optimizer {
        Some(opt) => opt.optimize(name, module)?,
        None => unoptimized(name, module)?,
    };
    let image = build_image(&ImageSpec {
        name,
        module: &optimized.bytes,
        variant: options.variant,
        annotations: BTreeMap::from([(
            ANNOTATION_OPTIMIZER.to_string(),
            optimized.optimizer.clone(),
        )]),
        root_ids: options.root_ids.clone(),
    })?;
    let dir = out.join(name);
    write_layout(&dir, &image.manifest, &image.blobs(), &options.tag)?;
    Ok(Packaged {
        name: name.to_string(),
        dir,
        digest: image.digest,
        raw_size: optimized.raw_size,
        size: optimized.size(),
        optimizer: optimized.optimizer,
        tag: options.tag.clone(),
    })
}
