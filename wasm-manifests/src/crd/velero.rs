//! Velero custom resources (velero.io/v1 Schedule, BackupStorageLocation), from
//! `../shared/schemas/velero` (d30d389). Only the fields meshward sets. Knows nothing of policies.

use std::collections::BTreeMap;

use serde::Serialize;

use super::CrdKind;

/// `Schedule` spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    /// Cron.
    pub schedule: String,
    /// Backup template.
    pub template: BackupSpec,
    /// Do not run at creation time.
    pub skip_immediately: bool,
}

impl CrdKind for ScheduleSpec {
    const API_VERSION: &'static str = "velero.io/v1";
    const KIND: &'static str = "Schedule";
}

/// `template` (a Backup spec).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// Namespaces.
    pub included_namespaces: Vec<String>,
    /// Retention (`336h0m0s`).
    pub ttl: String,
    /// BSL name.
    pub storage_location: String,
    /// Back up volumes with the file-system uploader.
    pub default_volumes_to_fs_backup: bool,
    /// Volume snapshots (off: cloud snapshots are not portable).
    pub snapshot_volumes: bool,
}

/// `BackupStorageLocation` spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupStorageLocationSpec {
    /// `aws` (any S3).
    pub provider: String,
    /// Bucket.
    pub object_storage: ObjectStorage,
    /// Provider config (`region`, `s3Url`, `s3ForcePathStyle`).
    pub config: BTreeMap<String, String>,
    /// Credentials Secret key.
    pub credential: SecretKeyRef,
    /// Default location.
    pub default: bool,
}

impl CrdKind for BackupStorageLocationSpec {
    const API_VERSION: &'static str = "velero.io/v1";
    const KIND: &'static str = "BackupStorageLocation";
}

/// `objectStorage`.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectStorage {
    /// Bucket.
    pub bucket: String,
    /// Prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// `credential`.
#[derive(Debug, Clone, Serialize)]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key.
    pub key: String,
}
