//! `meshward demo` and `meshward run` as a user runs them: the built binary, real guests.

mod common;

use common::meshward;

#[test]
fn demo_runs_with_no_files_or_flags() {
    let out = meshward(&["demo"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("meshward demo:"), "{stdout}");
    for phase in ["morning", "sale", "evening", "total"] {
        assert!(stdout.contains(phase), "phase {phase} missing:\n{stdout}");
    }
    // The built-in policy limits free users during the sale, never gold ones.
    assert!(
        stdout.contains("(429:"),
        "no rate-limited requests:\n{stdout}"
    );
    let gold_limited = stdout.lines().any(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        cols.get(1) == Some(&"gold") && cols.get(4).is_some_and(|n| *n != "0")
    });
    assert!(!gold_limited, "gold users were limited:\n{stdout}");
}

#[test]
fn run_json_reports_exact_counts_for_a_scenario_file() {
    let dir = std::env::temp_dir().join(format!("meshward-cli-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("s.yaml");
    std::fs::write(
        &scenario,
        "seed: 3\nupstream: {status: {200: 100%}, latency: {fixed: 5ms}}\nrequest_templates: {a: {path: /x}}\nphases:\n  - {name: one, duration: 2s, rate: 15/s}\n",
    )
    .unwrap();
    let out = meshward(&[
        "run",
        "--plugin",
        "headers",
        "--scenario",
        scenario.to_str().unwrap(),
        "--workers",
        "3",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["schema"], "meshward.run/v1");
    assert_eq!(v["workers"], 3);
    assert_eq!(v["phases"][0]["requests"], 30);
    assert_eq!(v["phases"][0]["outcomes"]["forwarded_by_status"]["200"], 30);
    assert_eq!(v["logs"]["total"], 30);
    assert_eq!(v["plugins"][0]["source"], "builtin:headers");

    // A missing plugin file and a bad scenario are clear errors.
    let out = meshward(&[
        "run",
        "--plugin",
        "nope.wasm",
        "--scenario",
        scenario.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read plugin `nope.wasm`"));
    std::fs::write(
        &scenario,
        "request_templates: {a: {}}\nphases:\n  - {name: p, duration: 1s, rate: lots}\n",
    )
    .unwrap();
    let out = meshward(&[
        "run",
        "--plugin",
        "headers",
        "--scenario",
        scenario.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("s.yaml:3:35: phases[0].rate: invalid rate `lots`"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
