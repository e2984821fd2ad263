//! `meshward check` as a user runs it: the built binary on policy files, what it prints and
//! its exit code (0 when every file is valid, 1 when any has a problem).

use std::path::PathBuf;
mod common;

use common::meshward;

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshward-cli-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write policy");
    path
}

const GOOD: &str = "apiVersion: meshward.io/v1alpha1
kind: Policy
service: orders
routes:
  - name: api
    match: {path: {prefix: /api}}
    ratelimit:
      rules:
        - name: per-client
          algorithm: token-bucket
          rate: 10/s
          burst: 5
          key: [client-ip]
";

#[test]
fn check_accepts_the_shipped_policy_and_a_valid_file() {
    let good = write("good.yaml", GOOD);
    let good = good.to_str().expect("utf-8 path");
    let out = meshward(&["check", "deploy/orders-api/policy.yaml", good]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("deploy/orders-api/policy.yaml: ok (service orders-api"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{good}: ok (service orders, 1 routes, filters: ratelimit)"
        )),
        "{stdout}"
    );
}

#[test]
fn check_names_file_line_column_and_field_path_and_exits_1() {
    // A misspelt field (line 12, column 11) ...
    let typo = write("typo.yaml", &GOOD.replace("burst: 5", "burstt: 5"));
    // ... and, in another file, a value that is wrong in itself.
    let values = write(
        "values.yaml",
        &GOOD.replace("rate: 10/s", "rate: 10/parsec"),
    );
    let good = write("also-good.yaml", GOOD);
    let args = [
        "check",
        typo.to_str().expect("utf-8"),
        values.to_str().expect("utf-8"),
        good.to_str().expect("utf-8"),
    ];
    let out = meshward(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:12:11: routes[0].ratelimit.rules[0].burstt: unknown field `burstt`",
            args[1]
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}:11:11: routes[0].ratelimit.rules[0].rate: invalid rate `10/parsec`",
            args[2]
        )),
        "{stderr}"
    );
    // Every file is checked: the valid one after the broken ones is still reported ok.
    assert!(stdout.contains(&format!("{}: ok", args[3])), "{stdout}");
}

#[test]
fn check_of_a_missing_file_says_which() {
    let out = meshward(&["check", "no/such/policy.yaml"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no/such/policy.yaml"), "{stderr}");
}
