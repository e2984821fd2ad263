//! The rendered output checked by the real tools, from `cargo test`: the official schemas
//! (`../shared/tools/k8s-validate --cel`), `promtool check rules` on every PrometheusRule spec
//! and `amtool check-config` + `amtool config routes test` on the Alertmanager config.
//! A missing tool prints a skip message and passes on a developer machine, and fails when
//! `MESHWARD_REQUIRE_TOOLS=1` (CI). `.ci/check-manifests.sh` runs the same checks plus the
//! promtool unit tests and the freshness of `deploy/*/rendered`.

use std::path::{Path, PathBuf};
use std::process::Command;

use meshward_manifests::render::{self, Options};

fn require() -> bool {
    std::env::var("MESHWARD_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// `Some(path)` when `tool --version` runs; otherwise skip (or fail under CI).
fn tool(name: &str) -> Option<String> {
    match Command::new(name).arg("--version").output() {
        Ok(o) if o.status.success() => Some(name.to_string()),
        _ => {
            assert!(
                !require(),
                "{name} is required (MESHWARD_REQUIRE_TOOLS=1) but missing"
            );
            eprintln!("SKIP: {name} not installed");
            None
        }
    }
}

fn render_to(policy: &Path, out: &Path) {
    let text = std::fs::read_to_string(policy).unwrap();
    let rendered = render::render_str(
        &text,
        &Options {
            file_name: policy.display().to_string(),
            ..Options::default()
        },
    )
    .unwrap();
    render::write_atomic(&rendered, out).unwrap();
}

fn policies() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut v = vec![root.join("../deploy/orders-api/policy.yaml")];
    for e in std::fs::read_dir(root.join("tests/policies")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            v.push(p);
        }
    }
    v.sort();
    v
}

/// Documents of `kind` in a rendered file.
fn docs_of(file: &Path, kind: &str) -> Vec<serde_json::Value> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new();
    };
    text.split("\n---\n")
        .filter_map(|d| serde_yaml::from_str::<serde_json::Value>(d).ok())
        .filter(|d| d["kind"] == kind)
        .collect()
}

fn run(cmd: &mut Command) -> (bool, String) {
    let o = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

#[test]
fn rendered_documents_pass_the_official_schemas() {
    let validator = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/tools/k8s-validate/k8s_validate.py");
    if !validator.exists() {
        assert!(!require(), "{} is missing", validator.display());
        eprintln!("SKIP: {} not found", validator.display());
        return;
    }
    let Some(py) = tool("python3") else { return };
    let (deps, _) = run(Command::new(&py).args(["-c", "import jsonschema, yaml, celpy"]));
    if !deps {
        // Not a Debian package (cel-python): CI installs these with pip in
        // .ci/check-manifests.sh, after `cargo test`, and that script is the schema gate.
        eprintln!("SKIP: python3 lacks jsonschema/pyyaml/cel-python (.ci/check-manifests.sh installs them)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, p) in policies().iter().enumerate() {
        let out = tmp.path().join(format!("p{i}"));
        render_to(p, &out);
        for e in std::fs::read_dir(&out).unwrap() {
            let f = e.unwrap().path();
            if f.file_name().is_some_and(|n| n != "kustomization.yaml") {
                files.push(f);
            }
        }
    }
    files.sort();
    let (ok, text) = run(Command::new(&py).arg(&validator).arg("--cel").args(&files));
    assert!(ok, "schema validation failed:\n{text}");
    assert!(text.contains("0 document(s) with errors"), "{text}");
}

#[test]
fn prometheus_rules_and_alertmanager_config_pass_promtool_and_amtool() {
    let promtool = tool("promtool");
    let amtool = tool("amtool");
    let tmp = tempfile::tempdir().unwrap();
    for (i, p) in policies().iter().enumerate() {
        let out = tmp.path().join(format!("p{i}"));
        render_to(p, &out);
        if let Some(promtool) = &promtool {
            for rule in docs_of(&out.join("monitoring.yaml"), "PrometheusRule") {
                let f = tmp.path().join(format!("p{i}.rules.yml"));
                std::fs::write(&f, serde_yaml::to_string(&rule["spec"]).unwrap()).unwrap();
                let (ok, text) = run(Command::new(promtool).args(["check", "rules"]).arg(&f));
                assert!(ok, "{}: promtool check rules:\n{text}", p.display());
            }
        }
        let Some(amtool) = &amtool else { continue };
        for secret in docs_of(&out.join("alerting.yaml"), "Secret") {
            let f = tmp.path().join(format!("p{i}.alertmanager.yml"));
            std::fs::write(
                &f,
                secret["stringData"]["alertmanager.yaml"].as_str().unwrap(),
            )
            .unwrap();
            let (ok, text) = run(Command::new(amtool).arg("check-config").arg(&f));
            assert!(ok, "{}: amtool check-config:\n{text}", p.display());
            // Every severity reaches a receiver the config defines, and critical never
            // lands in email when PagerDuty is configured.
            let cfg: serde_json::Value =
                serde_yaml::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
            let has_pd = cfg["receivers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "pagerduty");
            if has_pd {
                let (ok, text) = run(Command::new(amtool).args([
                    "config",
                    "routes",
                    "test",
                    &format!("--config.file={}", f.display()),
                    "--verify.receivers=pagerduty",
                    "severity=critical",
                ]));
                assert!(ok, "{}: critical must page:\n{text}", p.display());
            }
        }
    }
}
