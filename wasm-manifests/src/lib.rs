//! Renders the Kubernetes manifests around the meshward filters; builds and pushes their OCI images.
//!
//! [`render::render`] turns one policy file into a set of YAML files (WasmPlugins, traffic,
//! security, tracing, backup, monitoring, alerting, dashboards, kustomization);
//! [`render::write_atomic`] writes them so that a failure leaves the output untouched.
pub mod crd;
mod error;
pub mod oci;
pub mod render;

pub use error::RenderError;
