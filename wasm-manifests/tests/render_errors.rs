//! Bad input to `meshward render`: every problem is reported with file:line:column (policy
//! problems) or the field path (render refusals), and nothing is written to the output
//! directory — an existing output stays exactly as it was.

use std::path::Path;

use meshward_manifests::render::{self, Options};
use meshward_manifests::RenderError;

const GOOD: &str = r#"apiVersion: meshward.io/v1alpha1
kind: Policy
service: catalog
routes:
  - name: default
    ratelimit:
      rules:
        - name: per-client
          rate: 50/s
deployment:
  namespace: catalog
  selector: { app: catalog }
  image:
    registry: registry.internal/meshward
    digests: { ratelimit: "sha256:1111111111111111111111111111111111111111111111111111111111111111" }
  ports: { http: 9090 }
"#;

/// Renders `text` into `out` the way the CLI does; returns the error text.
fn render_into(text: &str, out: &Path) -> Result<(), String> {
    let opts = Options {
        file_name: "policy.yaml".into(),
        ..Options::default()
    };
    let rendered = render::render_str(text, &opts).map_err(|e| e.to_string())?;
    render::write_atomic(&rendered, out).map_err(|e| e.to_string())
}

/// An output directory holding a previous render plus a marker file.
fn previous_output() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    render_into(GOOD, &out).unwrap();
    std::fs::write(out.join("marker"), "old").unwrap();
    (tmp, out)
}

fn assert_untouched(out: &Path) {
    assert_eq!(std::fs::read_to_string(out.join("marker")).unwrap(), "old");
    let names: Vec<String> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, vec!["out".to_string()], "no temp dirs left behind");
}

#[test]
fn unknown_field_is_reported_with_its_location_and_nothing_is_written() {
    let (_tmp, out) = previous_output();
    let bad = GOOD.replace(
        "  ports: { http: 9090 }",
        "  ports: { http: 9090 }\n  replicas: 3",
    );
    let err = render_into(&bad, &out).unwrap_err();
    assert!(err.contains("policy.yaml:17:3"), "{err}");
    assert!(err.contains("replicas"), "{err}");
    assert_untouched(&out);
}

#[test]
fn impossible_value_is_reported_with_its_location() {
    let (_tmp, out) = previous_output();
    let bad = GOOD.replace(
        "  ports: { http: 9090 }",
        "  ports: { http: 9090 }\n  slo: { availability: 140% }",
    );
    let err = render_into(&bad, &out).unwrap_err();
    assert!(err.starts_with("policy.yaml:17:"), "{err}");
    assert!(err.contains("availability"), "{err}");
    assert_untouched(&out);
}

#[test]
fn route_without_match_is_rejected() {
    let (_tmp, out) = previous_output();
    let bad = GOOD.replace("  - name: default", "  - name: checkout");
    let err = render_into(&bad, &out).unwrap_err();
    assert!(err.contains("policy.yaml:5:"), "{err}");
    assert!(err.contains("match"), "{err}");
    assert_untouched(&out);
}

#[test]
fn missing_digest_is_a_render_error_naming_the_field() {
    let (_tmp, out) = previous_output();
    let bad = GOOD.replace(
        "    digests: { ratelimit: \"sha256:1111111111111111111111111111111111111111111111111111111111111111\" }\n",
        "",
    );
    let err = render_into(&bad, &out).unwrap_err();
    assert!(err.contains("deployment.image.digests.ratelimit"), "{err}");
    assert!(err.contains("meshward push"), "{err}");
    assert_untouched(&out);
}

#[test]
fn tiers_from_claims_need_a_required_token() {
    let claims = GOOD.replace(
        "deployment:",
        "ratelimit:\n  tiers: { from: \"claim:plan\", default: free, names: [free, pro] }\n  claim_headers: { plan: x-plan }\ndeployment:",
    );
    let out = tempfile::tempdir().unwrap();
    let err = render_into(&claims, &out.path().join("o")).unwrap_err();
    assert!(err.contains("deployment.jwt"), "{err}");
    let optional = claims.replace(
        "  ports: { http: 9090 }",
        "  ports: { http: 9090 }\n  jwt: { issuer: https://id.example/, jwks_uri: https://id.example/jwks }",
    );
    let err = render_into(&optional, &out.path().join("o")).unwrap_err();
    assert!(err.contains("deployment.jwt.required"), "{err}");
    assert!(!out.path().join("o").exists());
    let required = optional.replace("jwks }", "jwks, required: true }");
    render_into(&required, &out.path().join("o")).unwrap();
    let sec = std::fs::read_to_string(out.path().join("o/security.yaml")).unwrap();
    assert!(sec.contains("header: x-plan"), "{sec}");
    assert!(sec.contains("requestPrincipals"), "{sec}");
}

#[test]
fn a_policy_without_deployment_section_cannot_be_rendered() {
    let text = GOOD.split("deployment:").next().unwrap().to_string();
    let opts = Options {
        file_name: "p.yaml".into(),
        ..Options::default()
    };
    match render::render_str(&text, &opts) {
        Err(RenderError::Unrenderable { path, .. }) => assert_eq!(path, "deployment"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_digests_file_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("d.json");
    std::fs::write(&f, r#"{"ratelimit": "sha256:XYZ"}"#).unwrap();
    let err = render::read_digests(&f).unwrap_err().to_string();
    assert!(
        err.contains("ratelimit") && err.contains("sha256:XYZ"),
        "{err}"
    );
    std::fs::write(&f, "[1]").unwrap();
    assert!(render::read_digests(&f).is_err());
}

#[test]
fn rerender_replaces_the_whole_directory() {
    let (_tmp, out) = previous_output();
    render_into(GOOD, &out).unwrap();
    assert!(!out.join("marker").exists(), "stale files are removed");
    assert!(out.join("filters.yaml").exists());
}
