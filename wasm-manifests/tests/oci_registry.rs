//! The filter images against a real registry: Debian's `docker-registry` (CNCF distribution)
//! started here on 127.0.0.1, `skopeo` to pull the images back, and the shared Istio acceptance
//! check (`../shared/tools/istio-wasm-image-check`). Checks that digests survive the round trip,
//! `plugin.wasm` comes back byte-identical, pushing twice gives the same digest, and that an
//! unreachable registry, refused credentials and a missing tag give errors naming the problem.
//!
//! Tools missing on a developer machine: the tests print a skip message and pass; with
//! `MESHWARD_REQUIRE_TOOLS=1` (CI) they fail.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use meshward_artifacts::Kind;
use meshward_manifests::oci::image::sha256_hex;
use meshward_manifests::oci::{
    package, read_layout, OciError, PackageOptions, Registry, RegistryOptions, Variant, WasmOpt,
};

const TAG: &str = "0.1.0";

/// True when `tool` can be run; otherwise skips (or fails under MESHWARD_REQUIRE_TOOLS=1).
fn have(tool: &str, probe: &[&str]) -> bool {
    let ok = Command::new(tool)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("MESHWARD_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("{tool} is required (MESHWARD_REQUIRE_TOOLS=1) but cannot be run; see .ci/packages.txt");
        }
        eprintln!("SKIP: {tool} is not installed (Debian package in .ci/packages.txt)");
    }
    ok
}

fn tools_present() -> bool {
    have("docker-registry", &["--version"])
        && have("skopeo", &["--version"])
        && have("python3", &["--version"])
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `docker-registry serve` process on 127.0.0.1 with storage in a temp dir; killed on drop.
struct TestRegistry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TestRegistry {
    /// `htpasswd`: `Some((user, password))` to require basic auth.
    fn start(htpasswd: Option<(&str, &str)>) -> TestRegistry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let storage = dir.path().join("storage");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        if let Some((user, password)) = htpasswd {
            let out = Command::new("python3")
                .args(["-W", "ignore", "-c"])
                .arg("import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))")
                .arg(password)
                .output()
                .expect("python3 for a bcrypt hash");
            assert!(
                out.status.success(),
                "bcrypt hash: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let hash = String::from_utf8(out.stdout).unwrap();
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, format!("{user}:{}\n", hash.trim())).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: meshward-test\n    path: {}\n",
                file.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut registry = TestRegistry {
            child,
            port,
            _dir: dir,
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(self._dir.path().join("registry.log"))
                    .unwrap_or_default();
                panic!("docker-registry exited with {status}: {log}");
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req = "GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
                let mut resp = String::new();
                if s.write_all(req.as_bytes()).is_ok()
                    && s.read_to_string(&mut resp).is_ok()
                    && resp.starts_with("HTTP/1")
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "docker-registry on port {} did not answer within 20 s",
            self.port
        );
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn plain() -> RegistryOptions {
    RegistryOptions {
        plain_http: true,
        // an empty docker config: the developer's own credentials never leak into the tests
        docker_config: Some(PathBuf::from("/nonexistent/meshward-test/config.json")),
        ..RegistryOptions::default()
    }
}

fn optimizer() -> Option<WasmOpt> {
    have("wasm-opt", &["--version"]).then(WasmOpt::from_env)
}

fn options(variant: Variant) -> PackageOptions {
    PackageOptions {
        variant,
        optimizer: optimizer(),
        tag: TAG.into(),
        root_ids: vec![],
    }
}

/// Error-path tests do not need the (slow) optimizer.
fn no_opt() -> PackageOptions {
    PackageOptions {
        optimizer: None,
        ..options(Variant::Compat)
    }
}

fn filters() -> Vec<(&'static str, &'static [u8])> {
    let f: Vec<_> = meshward_artifacts::ALL
        .iter()
        .filter(|m| m.kind == Kind::Filter)
        .map(|m| (m.name, m.bytes))
        .collect();
    assert!(
        f.iter().any(|(n, _)| *n == "ratelimit"),
        "the ratelimit filter is built"
    );
    f
}

fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn istio_check(host: &str, repo: &str, tag: &str, module_sha256: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/tools/istio-wasm-image-check/check_wasm_image.py");
    assert!(
        script.is_file(),
        "the shared Istio image check is at {}",
        script.display()
    );
    let out = Command::new("python3")
        .arg(&script)
        .arg(format!("http://{host}"))
        .args([repo, tag, module_sha256])
        .output()
        .expect("run check_wasm_image.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "Istio's rules reject {repo}:{tag}: {text}"
    );
    text
}

#[test]
fn every_filter_round_trips_through_a_real_registry_and_istio_accepts_it() {
    if !tools_present() {
        return;
    }
    let registry = TestRegistry::start(None);
    let host = registry.host();
    let client = Registry::new(plain()).unwrap();
    let work = tempfile::tempdir().unwrap();
    for (name, module) in filters() {
        // wasm-opt runs twice on the same module: the image digest must not change.
        let compat = package(
            name,
            module,
            &work.path().join("a"),
            &options(Variant::Compat),
        )
        .unwrap();
        let again = package(
            name,
            module,
            &work.path().join("b"),
            &options(Variant::Compat),
        )
        .unwrap();
        assert_eq!(again.digest, compat.digest, "{name}: reproducible");
        assert!(
            compat.size <= compat.raw_size,
            "{name}: optimizing does not grow the module"
        );
        let optimized = read_layout(&compat.dir, Some(TAG))
            .unwrap()
            .plugin_wasm()
            .unwrap()
            .unwrap();
        // the artifact variant of the same (already optimized) module
        let artifact_options = PackageOptions {
            optimizer: None,
            ..options(Variant::Artifact)
        };
        let artifact =
            package(name, &optimized, &work.path().join("c"), &artifact_options).unwrap();

        for (variant, packaged) in [(Variant::Compat, &compat), (Variant::Artifact, &artifact)] {
            let image = read_layout(&packaged.dir, Some(TAG)).unwrap();
            let wasm = image
                .plugin_wasm()
                .unwrap()
                .expect("plugin.wasm in the image");
            assert_eq!(wasm, optimized);

            let repo = format!("meshward-{variant}/{name}");
            let reference = format!("{host}/{repo}:{TAG}");
            let first = client.push(&image, &reference).unwrap();
            assert_eq!(
                first.digest, packaged.digest,
                "the registry stores the manifest we built"
            );
            assert_eq!(first.uploaded, image.blobs.len());
            let second = client.push(&image, &reference).unwrap();
            assert_eq!(
                second.digest, first.digest,
                "pushing twice gives the same digest"
            );
            assert_eq!(
                (second.uploaded, second.skipped),
                (0, image.blobs.len()),
                "existing blobs are skipped"
            );
            assert_eq!(client.resolve(&reference).unwrap(), first.digest);

            // skopeo sees the same manifest bytes...
            let raw = skopeo(&[
                "inspect",
                "--tls-verify=false",
                "--raw",
                &format!("docker://{reference}"),
            ]);
            assert_eq!(
                format!("sha256:{}", sha256_hex(&raw)),
                first.digest,
                "{name} {variant}"
            );
            // ...and a pulled copy carries the identical plugin.wasm
            let pulled = work.path().join(format!("pulled-{variant}-{name}"));
            skopeo(&[
                "copy",
                "--src-tls-verify=false",
                &format!("docker://{reference}"),
                &format!("oci:{}:{TAG}", pulled.display()),
            ]);
            let back = read_layout(&pulled, Some(TAG)).unwrap();
            assert_eq!(
                back.digest, first.digest,
                "{name} {variant}: digest unchanged by the round trip"
            );
            assert_eq!(
                back.plugin_wasm().unwrap().unwrap(),
                wasm,
                "{name} {variant}: plugin.wasm byte-identical"
            );

            let verdict = istio_check(&host, &repo, TAG, &sha256_hex(&wasm));
            let expect = match variant {
                Variant::Compat => "ACCEPT as compat (oci)",
                Variant::Artifact => "ACCEPT as oci artifact",
            };
            assert!(verdict.contains(expect), "{verdict}");
            assert!(verdict.contains(&first.digest), "{verdict}");
            eprintln!(
                "{name} {variant}: {} -> {} bytes, {}",
                packaged.raw_size, packaged.size, first.digest
            );
        }
    }
}

#[test]
fn unreachable_registry_and_missing_tag_are_named() {
    if !tools_present() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (name, module) = filters()[0];
    let packaged = package(name, module, work.path(), &no_opt()).unwrap();
    let image = read_layout(&packaged.dir, None).unwrap();

    // nothing listens on this port
    let dead = free_port();
    let client = Registry::new(plain()).unwrap();
    let err = client
        .push(&image, &format!("127.0.0.1:{dead}/x/{name}:{TAG}"))
        .unwrap_err();
    assert!(matches!(err, OciError::Unreachable { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("cannot reach registry 127.0.0.1:{dead}")),
        "{text}"
    );
    assert!(text.contains("is it running"), "{text}");

    let registry = TestRegistry::start(None);
    // TLS against a plain-HTTP registry: the hint says what to do
    let tls = Registry::new(RegistryOptions {
        plain_http: false,
        ..plain()
    })
    .unwrap();
    let err = tls
        .push(&image, &format!("{}/x/{name}:{TAG}", registry.host()))
        .unwrap_err();
    assert!(err.to_string().contains("--plain-http"), "{err}");

    // a tag that was never pushed
    let missing = format!("{}/x/{name}:9.9.9", registry.host());
    let err = client.resolve(&missing).unwrap_err();
    assert!(matches!(err, OciError::NotFound { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("{missing} not found on the registry")),
        "{err}"
    );
    let err = client
        .resolve(&format!(
            "{}/x/{name}@sha256:{}",
            registry.host(),
            "0".repeat(64)
        ))
        .unwrap_err();
    assert!(matches!(err, OciError::NotFound { .. }), "{err}");
}

#[test]
fn credentials_come_from_the_docker_config_and_a_refusal_says_so() {
    if !tools_present() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (name, module) = filters()[0];
    let packaged = package(name, module, work.path(), &no_opt()).unwrap();
    let image = read_layout(&packaged.dir, None).unwrap();
    let registry = TestRegistry::start(Some(("alice", "correct-horse")));
    let reference = format!("{}/private/{name}:{TAG}", registry.host());

    let docker_config = |user: &str, password: &str| {
        let dir = work
            .path()
            .join(format!("docker-{}", sha256_hex(password.as_bytes())));
        std::fs::create_dir_all(&dir).unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut auths = BTreeMap::new();
        auths.insert(registry.host(), serde_json::json!({ "auth": auth }));
        let path = dir.join("config.json");
        std::fs::write(&path, serde_json::json!({ "auths": auths }).to_string()).unwrap();
        path
    };
    let with = |path: Option<PathBuf>| {
        Registry::new(RegistryOptions {
            docker_config: path,
            ..plain()
        })
        .unwrap()
    };

    let err = with(None).push(&image, &reference).unwrap_err();
    assert!(matches!(err, OciError::AuthRefused { .. }), "{err}");
    assert!(err.to_string().contains("credentials used: none"), "{err}");

    let err = with(Some(docker_config("alice", "wrong")))
        .push(&image, &reference)
        .unwrap_err();
    assert!(matches!(err, OciError::AuthRefused { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("user alice from") && !text.contains("wrong"),
        "{text}"
    );

    let pushed = with(Some(docker_config("alice", "correct-horse")))
        .push(&image, &reference)
        .unwrap();
    assert_eq!(pushed.digest, packaged.digest);
}
