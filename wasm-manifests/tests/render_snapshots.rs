//! Snapshot tests of `meshward render`: each policy in `tests/policies/` renders to exactly
//! the files kept in `tests/snapshots/<policy>/`. Run with `MESHWARD_BLESS=1` to rewrite the
//! snapshots after an intended change (and review the diff). Also checks properties a user
//! relies on whatever the snapshot says: determinism, pluginConfig == filter_config, digest
//! pinning, and the RLS config matching the descriptors the filter really sends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use meshward_core::policy::{parse_yaml, Filter};
use meshward_manifests::render::{self, Options, Rendered};

/// Holds the backup scripts verbatim.
const SCRIPTS_FILE: &str = "backup-scripts.yaml";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

fn render_policy(name: &str) -> Rendered {
    let path = dir().join("policies").join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let opts = Options {
        file_name: format!("{name}.yaml"),
        ..Options::default()
    };
    render::render_str(&text, &opts).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn check_snapshot(name: &str) {
    let rendered = render_policy(name);
    let snap = dir().join("snapshots").join(name);
    if std::env::var_os("MESHWARD_BLESS").is_some() {
        render::write_atomic(&rendered, &snap).unwrap();
        return;
    }
    let mut on_disk = BTreeMap::new();
    for entry in std::fs::read_dir(&snap).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with MESHWARD_BLESS=1 to create it)",
            snap.display()
        )
    }) {
        let p = entry.unwrap().path();
        let file = p.file_name().unwrap().to_string_lossy().to_string();
        on_disk.insert(file, std::fs::read_to_string(&p).unwrap());
    }
    assert_eq!(
        on_disk.keys().collect::<Vec<_>>(),
        rendered.files.keys().collect::<Vec<_>>(),
        "{name}: file set differs from the snapshot (MESHWARD_BLESS=1 to accept)"
    );
    for (file, text) in &rendered.files {
        // The scripts ConfigMap is the scripts verbatim (checked below); it changes whenever
        // they do, which is not a rendering change.
        if file == SCRIPTS_FILE {
            continue;
        }
        if on_disk[file] != *text {
            let first = on_disk[file]
                .lines()
                .zip(text.lines())
                .position(|(a, b)| a != b)
                .map_or(0, |i| i + 1);
            panic!("{name}/{file} differs from the snapshot at line {first} (MESHWARD_BLESS=1 to accept)");
        }
    }
}

#[test]
fn minimal_policy_matches_snapshot() {
    check_snapshot("minimal");
}

#[test]
fn gateway_otel_policy_matches_snapshot() {
    check_snapshot("gateway-otel");
}

#[test]
fn orders_api_example_matches_snapshot() {
    // The deploy/ example, rendered again here so `cargo test` catches drift without CI tools.
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/orders-api/policy.yaml"),
    )
    .unwrap();
    let rendered = render::render_str(
        &text,
        &Options {
            file_name: "policy.yaml".into(),
            ..Options::default()
        },
    )
    .unwrap();
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/orders-api/rendered");
    if std::env::var_os("MESHWARD_BLESS").is_some() {
        render::write_atomic(&rendered, &out).unwrap();
        return;
    }
    for (file, want) in &rendered.files {
        if file == SCRIPTS_FILE {
            continue; // .ci/check-manifests.sh checks the whole directory
        }
        let got = std::fs::read_to_string(out.join(file)).unwrap_or_default();
        assert!(
            got == *want,
            "deploy/orders-api/rendered/{file} is stale: run `meshward render deploy/orders-api/policy.yaml --out deploy/orders-api/rendered` (or MESHWARD_BLESS=1)"
        );
    }
}

#[test]
fn rendering_is_deterministic() {
    assert_eq!(render_policy("gateway-otel"), render_policy("gateway-otel"));
}

fn docs(text: &str) -> Vec<serde_json::Value> {
    text.split("\n---\n")
        .filter_map(|d| serde_yaml::from_str::<serde_json::Value>(d).ok())
        .filter(|v| v.is_object())
        .collect()
}

#[test]
fn plugin_config_is_exactly_the_filter_slice_and_url_is_pinned() {
    let text = std::fs::read_to_string(dir().join("policies").join("gateway-otel.yaml")).unwrap();
    let policy = parse_yaml(&text, "gateway-otel.yaml").unwrap();
    let digest = format!("sha256:{}", "ab".repeat(32));
    let opts = Options {
        file_name: "gateway-otel.yaml".into(),
        digests: BTreeMap::from([("ratelimit".to_string(), digest.clone())]),
    };
    let rendered = render::render(&policy, &opts).unwrap();
    let plugins = docs(&rendered.files["filters.yaml"]);
    assert_eq!(plugins.len(), 1);
    let spec = &plugins[0]["spec"];
    assert_eq!(
        spec["pluginConfig"],
        policy.filter_config(Filter::RateLimit)
    );
    // --digests overrides deployment.image.digests.
    assert_eq!(
        spec["url"],
        format!("oci://ghcr.io/example/meshward/ratelimit@{digest}")
    );
    assert_eq!(spec["failStrategy"], "FAIL_OPEN");
    assert_eq!(spec["imagePullPolicy"], "Always");
    assert_eq!(spec["imagePullSecret"], "ghcr-pull");
    assert_eq!(spec["selector"]["matchLabels"]["tier"], "web");
}

#[test]
fn verification_runs_every_six_hours_with_the_scratch_database() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/orders-api/policy.yaml"),
    )
    .unwrap();
    let rendered = render::render_str(&text, &Options::default()).unwrap();
    let jobs = docs(&rendered.files["backup.yaml"]);
    let verify = jobs
        .iter()
        .find(|d| d["metadata"]["name"] == "orders-api-pg-verify")
        .expect("verify CronJob");
    assert_eq!(verify["spec"]["schedule"], "0 */6 * * *");
    let c = &verify["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["command"],
        serde_json::json!(["/bin/sh", "/scripts/pg-verify.sh"])
    );
    let env: BTreeMap<String, serde_json::Value> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
        .collect();
    assert_eq!(env["VERIFY_DATABASE"]["value"], "meshward_restore_check");
    assert_eq!(
        env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"],
        "orders-db-backup"
    );
    assert_eq!(
        env["BACKUP_DEST"]["value"],
        "s3://acme-backups/orders-api/postgres"
    );
    // The scripts ConfigMap carries the real scripts.
    let scripts = docs(&rendered.files[SCRIPTS_FILE]);
    let cm = scripts
        .iter()
        .find(|d| d["metadata"]["name"] == "orders-api-backup-scripts")
        .unwrap();
    assert_eq!(
        cm["data"]["pg-verify.sh"].as_str().unwrap(),
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-verify.sh"))
            .unwrap()
    );
}
