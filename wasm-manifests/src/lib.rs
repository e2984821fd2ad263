//! Renders the Kubernetes manifests around the meshward filters; builds and pushes their OCI images.
pub mod oci;
