//! The conformance test of the service templates, Rust and Kotlin, end to end: a service of
//! each, scaffolded into a scratch copy of the project, has manifests that render and validate;
//! one `paytool up` builds and starts both beside the platform (each with its Keycloak client),
//! their probes are green, they pass their own lint and contract tests against that platform,
//! the gateway routes their hosts over TLS and refuses their API without a token, Prometheus
//! scrapes their `/metrics` and Jaeger holds the trace of a request through the gateway to
//! each; a second scaffold of a taken name is refused without writing, and an upgrade of an
//! unchanged service does nothing.

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const PAYTOOL: &str = env!("CARGO_BIN_EXE_paytool");
/// Its own port range, apart from the test platform's (26000) and runtime.rs's installations.
const PORT_BASE: u16 = 29600;
const HTTPS_PORT: u16 = PORT_BASE + 1;
/// Prometheus scrapes every 15 s and Jaeger receives spans in batches: both are waited for.
const OBSERVED_TIMEOUT_MS: u64 = 90_000;
const POLL_MS: u64 = 1_000;
/// Each request through the gateway.
const REQUEST_TIMEOUT_MS: u64 = 30_000;

fn project() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ is in the project")
        .to_path_buf()
}

/// The project's files as Git would commit them (tracked and new, not ignored), copied.
fn copy_project(into: &Path) {
    let listed = Command::new("git")
        .args(["ls-files", "-co", "--exclude-standard", "-z"])
        .current_dir(project())
        .output()
        .expect("git runs");
    assert!(listed.status.success(), "git ls-files: {}", text(&listed));
    for relative in listed.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let relative = std::str::from_utf8(relative).expect("UTF-8 paths");
        let from = project().join(relative);
        if !from.is_file() {
            continue; // deleted in the working tree
        }
        let to = into.join(relative);
        std::fs::create_dir_all(to.parent().expect("a parent")).expect("mkdir");
        std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("copy {relative}: {e}"));
    }
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every file under `dir` with its contents: what "nothing was written" compares.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).expect("readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("readable");
                files.push((path, bytes));
            }
        }
    }
    files.sort();
    files
}

struct Scratch {
    root: tempfile::TempDir,
}

impl Scratch {
    fn project(&self) -> PathBuf {
        self.root.path().join("project")
    }

    fn home(&self) -> PathBuf {
        self.root.path().join("state")
    }

    fn paytool(&self, args: &[&str]) -> Output {
        Command::new(PAYTOOL)
            .args(args)
            .current_dir(self.project())
            .env("PAYTOOL_HOME", self.home())
            .env("PAYTOOL_PORT_BASE", PORT_BASE.to_string())
            .env_remove("PAYTOOL_PROJECT_ROOT")
            .stdin(Stdio::null())
            .output()
            .expect("paytool runs")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.home().exists() {
            let _ = self.paytool(&["down", "--purge"]);
        }
    }
}

fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_millis(OBSERVED_TIMEOUT_MS);
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {OBSERVED_TIMEOUT_MS} ms"
        );
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
}

fn component_url(status: &Value, name: &str) -> String {
    status["components"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == name))
        .and_then(|c| c["urls"][0].as_str())
        .unwrap_or_else(|| panic!("{name} has a URL in the status: {status}"))
        .to_string()
}

/// One scaffolded service of the test: its name, language, port, and how it is linted and
/// tested (in the scratch project, with paytool's target directory).
struct Case {
    name: &'static str,
    language: &'static str,
    port: u16,
    /// Files only its language's template writes.
    own_files: &'static [&'static str],
    checks: &'static [(&'static str, &'static [&'static str])],
}

const CASES: [Case; 2] = [
    Case {
        name: "loyalty",
        language: "rust",
        port: 28401,
        own_files: &[
            "Cargo.toml",
            "src/main.rs",
            "tests/api/main.rs",
            "Containerfile",
        ],
        // As its Jenkinsfile lints it, then its contract tests.
        checks: &[
            ("", &["cargo", "fmt", "-p", "loyalty", "--", "--check"]),
            (
                "",
                &[
                    "cargo",
                    "clippy",
                    "--quiet",
                    "-p",
                    "loyalty",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
            ),
            ("", &["cargo", "test", "--quiet", "-p", "loyalty"]),
        ],
    },
    Case {
        name: "rewards",
        language: "kotlin",
        port: 28402,
        own_files: &[
            "pom.xml",
            "src/main/kotlin/Service.kt",
            "src/test/kotlin/ItemsTest.kt",
        ],
        // Compiled, its contract tests run, and packaged (`mvn verify`).
        checks: &[("services/rewards", &["mvn", "-B", "-q", "verify"])],
    },
];

#[test]
fn scaffolded_rust_and_kotlin_services_pass_their_contracts_run_under_up_and_are_routed_scraped_and_traced(
) {
    let root = tempfile::Builder::new()
        .prefix("paytool-scaffold-")
        .tempdir()
        .expect("a temporary directory");
    // The postgres user runs the database from inside the state directory.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let scratch = Scratch { root };
    copy_project(&scratch.project());
    let started = Instant::now();
    // In the target directory paytool was built in: only the scratch copy's own crates build.
    let target_dir = Path::new(PAYTOOL)
        .parent()
        .and_then(Path::parent)
        .expect("paytool is in <target>/<profile>/");

    for case in &CASES {
        let made = scratch.paytool(&[
            "scaffold",
            "service",
            case.name,
            "--lang",
            case.language,
            "--json",
        ]);
        assert!(
            made.status.success(),
            "scaffold {}: {}",
            case.name,
            text(&made)
        );
        let made: Value = serde_json::from_slice(&made.stdout).expect("--json is JSON");
        assert_eq!(made["name"], case.name);
        assert_eq!(made["port"], case.port, "the first free port");
        let files: Vec<&str> = made["files"]
            .as_array()
            .expect("files")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let common = [
            format!("services/contracts/{}.yaml", case.name),
            format!("services/{}/Jenkinsfile", case.name),
            format!("services/{}/deploy/base/deployment.yaml", case.name),
            format!("services/{}/deploy/base/runtime.yaml", case.name),
            format!("services/{}/catalog-info.yaml", case.name),
        ];
        let own = case
            .own_files
            .iter()
            .map(|f| format!("services/{}/{f}", case.name));
        for expected in common.into_iter().chain(own) {
            assert!(
                files.contains(&expected.as_str()),
                "{expected} in {files:?}"
            );
            assert!(
                scratch.project().join(&expected).is_file(),
                "{expected} written"
            );
        }
    }
    let workspace =
        std::fs::read_to_string(scratch.project().join("Cargo.toml")).expect("Cargo.toml");
    assert!(
        workspace.contains("\"services/loyalty\""),
        "a workspace member: {workspace}"
    );
    assert!(
        !workspace.contains("rewards"),
        "a Kotlin service is not a crate: {workspace}"
    );

    // A taken name again: refused with one line, nothing written.
    let before = snapshot(&scratch.project().join("services"));
    let again = scratch.paytool(&["scaffold", "service", "loyalty", "--lang", "kotlin"]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("exists"), "says why: {stderr}");
    assert_eq!(
        before,
        snapshot(&scratch.project().join("services")),
        "nothing written"
    );

    // An upgrade of an unchanged service is a no-op.
    for case in &CASES {
        let upgrade = scratch.paytool(&["scaffold", "upgrade", case.name, "--json"]);
        assert!(upgrade.status.success(), "upgrade: {}", text(&upgrade));
        let upgrade: Value = serde_json::from_slice(&upgrade.stdout).expect("JSON");
        assert_eq!(upgrade["changes"], serde_json::json!([]), "{upgrade}");
    }
    assert_eq!(
        before,
        snapshot(&scratch.project().join("services")),
        "nothing written"
    );

    // Its manifests render (kustomize) and every object is valid for the Kubernetes API.
    for case in &CASES {
        let deploy = scratch
            .project()
            .join("services")
            .join(case.name)
            .join("deploy");
        let validated = Command::new(project().join("scripts/validate-manifests.sh"))
            .arg(deploy.join("base"))
            .arg(deploy.join("overlays/local"))
            .stdin(Stdio::null())
            .output()
            .expect("the script runs");
        assert!(
            validated.status.success(),
            "{}'s manifests: {}",
            case.name,
            text(&validated)
        );
        // Its TechDocs build as Backstage builds them, strictly.
        let docs = Command::new(project().join("scripts/build-techdocs.sh"))
            .arg(scratch.project().join("services").join(case.name))
            .stdin(Stdio::null())
            .output()
            .expect("the script runs");
        assert!(
            docs.status.success(),
            "{}'s TechDocs: {}",
            case.name,
            text(&docs)
        );
    }

    // Under the local runtime, both at once.
    let up = scratch.paytool(&["up"]);
    assert!(up.status.success(), "up: {}", text(&up));
    eprintln!(
        "scaffold to green (a Rust and a Kotlin service): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let status = scratch.paytool(&["status", "--json", "--show-secrets"]);
    assert!(status.status.success(), "status: {}", text(&status));
    let status_file = scratch.root.path().join("status.json");
    std::fs::write(&status_file, &status.stdout).expect("the status is written");
    let status: Value = serde_json::from_slice(&status.stdout).expect("status --json");

    // Lint and contract tests, as scripts/test.sh runs them in the project: on this platform,
    // whose Keycloak has each service's client (the test platform's, started before they were
    // scaffolded, has not).
    let database_url = status["connections"]["postgres_admin_url"]
        .as_str()
        .expect("the admin URL");
    for case in &CASES {
        for (dir, command) in case.checks {
            let ran = Command::new(command[0])
                .args(&command[1..])
                .env("CARGO_TARGET_DIR", target_dir)
                .env("PAYTOOL_TEST_STATUS", &status_file)
                .env("PAYTOOL_TEST_DATABASE_URL", database_url)
                .current_dir(scratch.project().join(dir))
                .stdin(Stdio::null())
                .output()
                .expect("the tool runs");
            assert!(ran.status.success(), "{command:?}: {}", text(&ran));
        }
    }
    let ca = std::fs::read(status["gateway"]["ca_certificate"].as_str().expect("ca"))
        .expect("the CA is readable");
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    let prometheus = component_url(&status, "prometheus");
    let jaeger = component_url(&status, "jaeger");
    for case in &CASES {
        let component = status["components"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["name"] == case.name))
            .unwrap_or_else(|| panic!("{} is a component: {status}", case.name));
        assert_eq!(component["state"], "ready", "{component}");
        assert_eq!(component["health"], "healthy", "{component}");
        let token = runtime.block_on(client_token(&status, case.name));
        conforms_behind_the_gateway(
            &scratch,
            &runtime,
            &ca,
            case.name,
            &token,
            &prometheus,
            &jaeger,
        );
    }
}

/// An access token of one of the installation's clients (client credentials, on loopback).
async fn client_token(status: &Value, client_id: &str) -> String {
    let connections = &status["connections"];
    let answer: Value = reqwest::Client::new()
        .post(format!(
            "{}/realms/{}/protocol/openid-connect/token",
            connections["keycloak_url"].as_str().expect("keycloak url"),
            connections["keycloak_realm"].as_str().expect("realm")
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            (
                "client_secret",
                connections["client_secrets"][client_id]
                    .as_str()
                    .unwrap_or_else(|| panic!("{client_id} has a client secret: {connections}")),
            ),
        ])
        .send()
        .await
        .expect("Keycloak answers")
        .error_for_status()
        .expect("the service's client credentials are accepted")
        .json()
        .await
        .expect("a token response");
    answer["access_token"]
        .as_str()
        .expect("an access token")
        .to_string()
}

/// Through the gateway over TLS with a trace we start: ready, the API refused without a token
/// (a problem document), a resource created with the service's own token; then scraped by Prometheus as its own job, and the request's trace in Jaeger with the
/// gateway's span.
fn conforms_behind_the_gateway(
    scratch: &Scratch,
    runtime: &tokio::runtime::Runtime,
    ca: &[u8],
    name: &str,
    token: &str,
    prometheus: &str,
    jaeger: &str,
) {
    let host = format!("{name}.local.test");
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca).expect("the CA parses"))
        .resolve(
            &host,
            std::net::SocketAddr::from(([127, 0, 0, 1], HTTPS_PORT)),
        )
        // A JVM's first requests load and compile much of what they run.
        .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
        .build()
        .expect("client");
    // Which request failed, with what the service and the gateway logged meanwhile.
    let failed = |what: &str, error: reqwest::Error| -> ! {
        let log = |component: &str| text(&scratch.paytool(&["logs", component, "-n", "30"]));
        panic!(
            "{what} through the gateway: {error}\n{name}'s log: {}\ngateway's log: {}",
            log(name),
            log("gateway")
        )
    };
    let base = format!("https://{host}:{HTTPS_PORT}");
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let (ready, refused, created) = runtime.block_on(async {
        let ready: Value = client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .expect("the gateway answers")
            .json()
            .await
            .expect("JSON");
        let refused = client
            .post(format!("{base}/v1/items"))
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&serde_json::json!({ "name": "anonymous" }))
            .send()
            .await
            .expect("the gateway answers");
        let refused = (
            refused.status().as_u16(),
            refused
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
        );
        let created = client
            .post(format!("{base}/v1/items"))
            .bearer_auth(token)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
            .json(&serde_json::json!({ "name": "first" }))
            .send()
            .await
            .unwrap_or_else(|e| failed("a POST with a token", e));
        (ready, refused, created.status().as_u16())
    });
    assert_eq!(ready["service"], name, "{ready}");
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(
        refused,
        (401, "application/problem+json".to_string()),
        "{name}'s API without a token"
    );
    assert_eq!(created, 201, "{name}");

    let query = format!("up{{job=\"{name}\"}}");
    wait_for(&format!("Prometheus scrapes {name}"), || {
        let body: Value = runtime
            .block_on(async {
                client
                    .get(format!("{prometheus}/api/v1/query"))
                    .query(&[("query", query.as_str())])
                    .send()
                    .await?
                    .json()
                    .await
            })
            .ok()?;
        (body["data"]["result"][0]["value"][1] == "1").then_some(())
    });

    // The service's spans and the gateway's reach Jaeger by different exporters (the
    // service's OTLP batch, the agent's for nginx): the wait is for both, not for the first.
    wait_for(
        &format!("{name}'s trace, the gateway's span in it, reaches Jaeger"),
        || {
            let body: Value = runtime
                .block_on(async {
                    client
                        .get(format!("{jaeger}/api/traces/{trace_id}"))
                        .send()
                        .await?
                        .json()
                        .await
                })
                .ok()?;
            let processes = body["data"][0]["processes"].as_object()?;
            let services: Vec<String> = processes
                .values()
                .filter_map(|p| p["serviceName"].as_str().map(str::to_string))
                .collect();
            (services.iter().any(|s| s == name) && services.iter().any(|s| s != name)).then_some(())
        },
    );
}
