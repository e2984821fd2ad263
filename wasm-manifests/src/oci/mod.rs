//! OCI images of the filters, the way Istio's agent fetches them (`WasmPlugin.spec.url:
//! oci://…`): build a deterministic image from a module ([`package`]), keep it as an OCI image
//! layout on disk ([`layout`]), push it to any registry ([`registry`]) and record the manifest
//! digests the renderer pins WasmPlugins to ([`digests`]). This module knows nothing of policies
//! or manifests; the renderer only reads the digests file.
//!
//! Two layouts (`../shared/reference/istio-images-and-checks.md` §4):
//! - [`Variant::Compat`] (default): one `application/vnd.oci.image.layer.v1.tar+gzip` layer with
//!   `plugin.wasm`, annotation `module.wasm.image/variant=compat`; Istio tries it first.
//! - [`Variant::Artifact`]: the runtime config layer plus the raw
//!   `application/vnd.module.wasm.content.layer.v1+wasm` layer (exactly two layers).

pub mod credentials;
pub mod digests;
pub mod error;
pub mod image;
pub mod layer;
pub mod layout;
pub mod optimize;
pub mod package;
pub mod registry;

pub use digests::{read_digests, write_digests, Digests};
pub use error::OciError;
pub use image::{build_image, Image, ImageSpec, Variant};
pub use layout::{read_layout, write_layout, LayoutImage};
pub use optimize::WasmOpt;
pub use package::{package, PackageOptions, Packaged};
pub use registry::{Pushed, Registry, RegistryOptions};
