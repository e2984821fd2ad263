//! Backups: Velero (BackupStorageLocation + Schedule for the namespace) and the data-store
//! jobs that run the scripts in `wasm-manifests/scripts/` (shipped in a ConfigMap, run as
//! `/bin/sh /scripts/<name>`, configured only by environment variables): PostgreSQL dump,
//! Redis snapshot, a verification every 6 hours that restores the latest dump into a scratch
//! database, and suspended restore CronJobs used as job templates
//! (`kubectl create job --from=cronjob/<name> <run-name>`). Knows the scripts' env contract;
//! not what the scripts do.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvFromSource, EnvVar,
    EnvVarSource, PodSecurityContext, PodSpec, PodTemplateSpec, SecretEnvSource, SecretKeySelector,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use meshward_core::policy::deployment::Backup;

use super::global_rls::{resources, restricted};
use super::{Ctx, Out};
use crate::crd::velero::{
    BackupSpec, BackupStorageLocationSpec, ObjectStorage, ScheduleSpec, SecretKeyRef,
};
use crate::crd::Object;
use crate::RenderError;

/// The scripts, exactly as in `wasm-manifests/scripts/` (`backup-lib.sh` is sourced by the others).
const SCRIPTS: &[(&str, &str)] = &[
    ("backup-lib.sh", include_str!("../../scripts/backup-lib.sh")),
    ("pg-backup.sh", include_str!("../../scripts/pg-backup.sh")),
    ("pg-restore.sh", include_str!("../../scripts/pg-restore.sh")),
    ("pg-verify.sh", include_str!("../../scripts/pg-verify.sh")),
    (
        "redis-backup.sh",
        include_str!("../../scripts/redis-backup.sh"),
    ),
    (
        "redis-restore.sh",
        include_str!("../../scripts/redis-restore.sh"),
    ),
];

/// Verification of the latest PostgreSQL dump: every 6 hours.
pub(crate) const VERIFY_SCHEDULE: &str = "0 */6 * * *";

/// Velero runs in its own namespace; its objects must be there.
const VELERO_NAMESPACE: &str = "velero";

/// A schedule that never fires (February 31st): restore CronJobs are templates only.
const NEVER: &str = "0 0 31 2 *";

pub(super) fn render(ctx: &Ctx, out: &mut Out) -> Result<(), RenderError> {
    let Some(b) = &ctx.dep.backup else {
        return Ok(());
    };
    let (bucket, prefix) = split_bucket(&b.bucket);
    let bsl_name = format!("{}-{}", ctx.service(), ctx.ns());
    let mut velero_meta = ctx.meta(&bsl_name, "backup");
    velero_meta.namespace = Some(VELERO_NAMESPACE.to_string());
    let mut config = BTreeMap::from([("region".to_string(), b.region.clone())]);
    if let Some(url) = &b.s3_url {
        config.insert("s3Url".into(), url.clone());
        config.insert("s3ForcePathStyle".into(), "true".into());
    }
    out.push(
        "backup.yaml",
        Some(format!("Velero objects live in the `{VELERO_NAMESPACE}` namespace. Secret `{}` there needs key `cloud`\n(an AWS credentials file).", b.s3_secret)),
        &Object::new(
            velero_meta.clone(),
            BackupStorageLocationSpec {
                provider: "aws".into(),
                object_storage: ObjectStorage {
                    bucket: bucket.clone(),
                    prefix: Some(join(&prefix, "velero")),
                },
                config,
                credential: SecretKeyRef {
                    name: b.s3_secret.clone(),
                    key: "cloud".into(),
                },
                default: false,
            },
        ),
    )?;
    out.push(
        "backup.yaml",
        None,
        &Object::new(
            velero_meta,
            ScheduleSpec {
                schedule: b.velero_schedule.clone(),
                template: BackupSpec {
                    included_namespaces: vec![ctx.ns().to_string()],
                    ttl: format!("{}h0m0s", u64::from(b.retention_days) * 24),
                    storage_location: bsl_name.clone(),
                    default_volumes_to_fs_backup: true,
                    snapshot_volumes: false,
                },
                skip_immediately: false,
            },
        ),
    )?;

    let scripts_cm = format!("{}-backup-scripts", ctx.service());
    out.push(
        "backup-scripts.yaml",
        Some(
            "The backup scripts (wasm-manifests/scripts/), mounted at /scripts in every backup job."
                .into(),
        ),
        &ConfigMap {
            metadata: ctx.meta(&scripts_cm, "backup"),
            data: Some(
                SCRIPTS
                    .iter()
                    .map(|(n, t)| (n.to_string(), t.to_string()))
                    .collect(),
            ),
            ..ConfigMap::default()
        },
    )?;

    if let Some(pg) = &b.postgres {
        let mut env = vec![
            plain("PGHOST", &pg.host),
            plain("PGPORT", &pg.port.to_string()),
            plain("PGUSER", &pg.user),
            secret("PGPASSWORD", &pg.password_secret, "password", false),
            plain("PGDATABASE", &pg.database),
        ];
        env.extend(store_env(b, &prefix, &bucket, "postgres"));
        let backup_job = Job {
            name: format!("{}-pg-backup", ctx.service()),
            schedule: pg.schedule.clone(),
            script: "pg-backup.sh",
            image: pg.image.clone(),
            env: env.clone(),
            suspend: false,
            comment: "pg_dump -Fc of the database, uploaded with its checksum and manifest; dumps older than\nBACKUP_RETENTION_DAYS are pruned.",
        };
        let mut verify_env = env.clone();
        verify_env.push(plain("VERIFY_DATABASE", &pg.verify_database));
        let verify_job = Job {
            name: format!("{}-pg-verify", ctx.service()),
            schedule: VERIFY_SCHEDULE.into(),
            script: "pg-verify.sh",
            image: pg.image.clone(),
            env: verify_env,
            suspend: false,
            comment: "Every 6 hours: restore the latest dump into the scratch database VERIFY_DATABASE and check it\nagainst the dump's manifest. Fails the Job (alert MeshwardBackupVerifyFailed) when it does not match.",
        };
        let mut restore_env = env;
        restore_env.push(plain("RESTORE_FROM", "latest"));
        let restore_job = Job {
            name: format!("{}-pg-restore", ctx.service()),
            schedule: NEVER.into(),
            script: "pg-restore.sh",
            image: pg.image.clone(),
            env: restore_env,
            suspend: true,
            comment: "Restore template (suspended, never scheduled). Run it with\n  kubectl -n <ns> create job --from=cronjob/<this name> pg-restore-$(date +%s)\nafter setting RESTORE_FROM (default: the latest dump); see docs/runbooks/restore-postgres.md.",
        };
        for j in [backup_job, verify_job, restore_job] {
            push_job(ctx, out, &scripts_cm, j)?;
        }
    }
    if let Some(r) = &b.redis {
        let mut env = vec![
            plain("REDIS_HOST", &r.host),
            plain("REDIS_PORT", &r.port.to_string()),
        ];
        if let Some(s) = &r.password_secret {
            env.push(secret("REDIS_PASSWORD", s, "password", true));
        }
        env.extend(store_env(b, &prefix, &bucket, "redis"));
        let backup_job = Job {
            name: format!("{}-redis-backup", ctx.service()),
            schedule: r.schedule.clone(),
            script: "redis-backup.sh",
            image: r.image.clone(),
            env: env.clone(),
            suspend: false,
            comment: "RDB snapshot of Redis, uploaded; snapshots older than BACKUP_RETENTION_DAYS are pruned.",
        };
        let mut restore_env = env;
        restore_env.push(plain("RESTORE_FROM", "latest"));
        let restore_job = Job {
            name: format!("{}-redis-restore", ctx.service()),
            schedule: NEVER.into(),
            script: "redis-restore.sh",
            image: r.image.clone(),
            env: restore_env,
            suspend: true,
            comment:
                "Restore template (suspended, never scheduled); see docs/runbooks/restore-redis.md.",
        };
        for j in [backup_job, restore_job] {
            push_job(ctx, out, &scripts_cm, j)?;
        }
    }
    Ok(())
}

struct Job {
    name: String,
    schedule: String,
    script: &'static str,
    image: String,
    env: Vec<EnvVar>,
    suspend: bool,
    comment: &'static str,
}

fn push_job(ctx: &Ctx, out: &mut Out, scripts_cm: &str, j: Job) -> Result<(), RenderError> {
    let b = ctx.dep.backup.as_ref();
    let env_from = b.map(|b| {
        vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: b.s3_secret.clone(),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]
    });
    let mut labels = ctx.labels("backup");
    labels.insert("meshward.io/job".into(), j.name.clone());
    let container = Container {
        name: "run".into(),
        image: Some(j.image),
        command: Some(vec!["/bin/sh".into(), format!("/scripts/{}", j.script)]),
        env: Some(j.env),
        env_from,
        volume_mounts: Some(vec![
            VolumeMount {
                name: "scripts".into(),
                mount_path: "/scripts".into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "work".into(),
                mount_path: "/tmp".into(),
                ..VolumeMount::default()
            },
        ]),
        resources: Some(resources("100m", "256Mi", "1Gi")),
        security_context: Some(restricted()),
        ..Container::default()
    };
    let pod = PodSpec {
        restart_policy: Some("Never".into()),
        containers: vec![container],
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            fs_group: Some(65532),
            ..PodSecurityContext::default()
        }),
        volumes: Some(vec![
            Volume {
                name: "scripts".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: scripts_cm.to_string(),
                    default_mode: Some(0o555),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            Volume {
                name: "work".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
        ]),
        ..PodSpec::default()
    };
    let cron = CronJob {
        metadata: ctx.meta(&j.name, "backup"),
        spec: CronJobSpec {
            schedule: j.schedule,
            suspend: Some(j.suspend),
            concurrency_policy: Some("Forbid".into()),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(JobSpec {
                    backoff_limit: Some(2),
                    active_deadline_seconds: Some(3 * 3600),
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta {
                            labels: Some(labels),
                            // Jobs end; an injected sidecar would keep the pod running.
                            annotations: Some(BTreeMap::from([(
                                "sidecar.istio.io/inject".to_string(),
                                "false".to_string(),
                            )])),
                            ..ObjectMeta::default()
                        }),
                        spec: Some(pod),
                    },
                    ..JobSpec::default()
                }),
            },
            ..CronJobSpec::default()
        },
        ..CronJob::default()
    };
    out.push("backup.yaml", Some(j.comment.to_string()), &cron)
}

fn plain(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn secret(name: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(optional),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn store_env(b: &Backup, prefix: &str, bucket: &str, what: &str) -> Vec<EnvVar> {
    let mut v = vec![
        plain(
            "BACKUP_DEST",
            &format!("s3://{bucket}/{}", join(prefix, what)),
        ),
        plain("BACKUP_RETENTION_DAYS", &b.retention_days.to_string()),
        plain("AWS_DEFAULT_REGION", &b.region),
    ];
    if let Some(url) = &b.s3_url {
        v.push(plain("AWS_ENDPOINT_URL", url));
    }
    v
}

/// `s3://bucket/a/b` -> (`bucket`, `a/b`).
fn split_bucket(url: &str) -> (String, String) {
    let rest = url.trim_start_matches("s3://").trim_end_matches('/');
    match rest.split_once('/') {
        Some((b, p)) => (b.to_string(), p.to_string()),
        None => (rest.to_string(), String::new()),
    }
}

fn join(prefix: &str, leaf: &str) -> String {
    if prefix.is_empty() {
        leaf.to_string()
    } else {
        format!("{prefix}/{leaf}")
    }
}
