//! Local delivery against a real installation (`paytool up --delivery`): the registry (CNCF
//! Distribution v3, built by the project's script) behind the gateway over TLS, its
//! authentication, and a service's image built without a daemon, pushed, pulled back by digest
//! and checked: its manifest, its config's revision label and user, its layer's binary. And the
//! git server (git's smart-HTTP server and gitweb behind the gateway): who it lets in, the
//! project pushed to it, a clone that pushes back with nothing more, and a push that would lose
//! the server's commits refused.

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const PAYTOOL: &str = env!("CARGO_BIN_EXE_paytool");
/// Each test's own port range, apart from the test platform's and the other tests'
/// installations (the two here run at once).
const PORT_BASE: u16 = 30200;
const HTTPS_PORT: u16 = PORT_BASE + 1;
const GIT_PORT_BASE: u16 = 30300;
const GIT_HTTPS_PORT: u16 = GIT_PORT_BASE + 1;
const PIPELINE_PORT_BASE: u16 = 30400;
const PIPELINE_HTTPS_PORT: u16 = PIPELINE_PORT_BASE + 1;
/// A commit's whole pipeline: the service's tests and build in the CI server's own cargo cache
/// (cold on a new machine: its dependencies compile once), its image, the push, the rollout.
const PIPELINE_TIMEOUT_S: u64 = 40 * 60;
/// The light load that runs while the commit travels: payments through the gateway, in windows.
const LOAD_RATE_PER_S: &str = "4";
const LOAD_WINDOW_S: &str = "15";

struct Installation {
    root: tempfile::TempDir,
    port_base: u16,
}

impl Installation {
    fn new() -> Self {
        Self::on(PORT_BASE)
    }

    fn on(port_base: u16) -> Self {
        let root = tempfile::Builder::new()
            .prefix("paytool-delivery-")
            .tempdir()
            .expect("a temporary directory");
        // The postgres user runs the database from inside the state directory.
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        Self { root, port_base }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(PAYTOOL)
            .args(args)
            .env("PAYTOOL_HOME", self.root.path().join("state"))
            .env("PAYTOOL_PORT_BASE", self.port_base.to_string())
            .stdin(Stdio::null())
            .output()
            .expect("paytool runs")
    }

    fn json(&self, args: &[&str]) -> Value {
        let output = self.run(args);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{args:?} prints JSON ({e}): {}", text(&output)))
    }
}

impl Drop for Installation {
    fn drop(&mut self) {
        let _ = self.run(&["down", "--purge"]);
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

/// podman with a configuration and storage of its own (nothing machine-wide): runc, cgroupfs,
/// explicit ulimits, as podman runs on this kind of machine (scripts/install-podman.sh).
struct Podman {
    dir: tempfile::TempDir,
    container: Option<String>,
}

impl Podman {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("a directory");
        std::fs::write(
            dir.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1000:1000\"]\n\
             [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
        .expect("write");
        Self {
            dir,
            container: None,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let root = self.dir.path();
        Command::new("podman")
            .arg("--root")
            .arg(root.join("root"))
            .arg("--runroot")
            .arg(root.join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .env("CONTAINERS_CONF", root.join("containers.conf"))
            .stdin(Stdio::null())
            .output()
            .expect("podman runs")
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        if let Some(container) = &self.container {
            let _ = self.run(&["rm", "--force", container]);
        }
        // Its storage goes with the temporary directory; the image is removed first so that
        // podman lets go of it.
        let _ = self.run(&["rmi", "--all", "--force"]);
    }
}

/// Pulls `by_digest` with podman from the installation's registry (trusting the platform's
/// CA), starts it with the orchestrator's configuration (read from the running instance's
/// environment) on a free port, and waits for its `/health/ready`.
fn run_under_podman(status: &Value, by_digest: &str, user: &str, password: &str) {
    let mut podman = Podman::new();
    // `--cert-dir` names the directory holding the CA itself (not certs.d's per-host layout).
    let certs = podman.dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("mkdir");
    std::fs::copy(
        status["gateway"]["ca_certificate"].as_str().expect("ca"),
        certs.join("ca.crt"),
    )
    .expect("the CA");
    let pull = podman.run(&[
        "pull",
        "--quiet",
        "--cert-dir",
        certs.to_str().expect("utf-8"),
        "--creds",
        &format!("{user}:{password}"),
        by_digest,
    ]);
    assert!(
        pull.status.success(),
        "podman pulls the image: {}",
        text(&pull)
    );
    let image = String::from_utf8_lossy(&pull.stdout).trim().to_string();

    // The running orchestrator's configuration, on another port.
    let pid = status["components"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == "orchestrator"))
        .and_then(|c| c["pid"].as_u64())
        .expect("the orchestrator's pid");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("its environment");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("its address")
        .port();
    let mut env: Vec<String> = environ
        .split(|b| *b == 0)
        .map(|entry| String::from_utf8_lossy(entry).to_string())
        .filter(|entry| entry.starts_with("APP__") || entry.starts_with("OTEL_"))
        .filter(|entry| !entry.starts_with("APP__HTTP__PORT="))
        .collect();
    env.push(format!("APP__HTTP__PORT={port}"));
    let env_file = podman.dir.path().join("orchestrator.env");
    std::fs::write(&env_file, env.join("\n") + "\n").expect("write");
    let started = podman.run(&[
        "run",
        "--detach",
        "--network",
        "host",
        "--env-file",
        env_file.to_str().expect("utf-8"),
        &image,
    ]);
    assert!(
        started.status.success(),
        "podman starts it: {}",
        text(&started)
    );
    podman.container = Some(String::from_utf8_lossy(&started.stdout).trim().to_string());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let ready = loop {
        let answer = Command::new("curl")
            .args(["-sS", "--max-time", "2"])
            .arg(format!("http://127.0.0.1:{port}/health/ready"))
            .output()
            .expect("curl");
        let body: Value = serde_json::from_slice(&answer.stdout).unwrap_or(Value::Null);
        if body["status"] == "ready" || std::time::Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let container = podman.container.clone().unwrap_or_default();
    let logs = podman.run(&["logs", &container]);
    assert_eq!(
        ready["status"],
        "ready",
        "the container answers ready: {ready}; its log: {}",
        text(&logs)
    );
    assert_eq!(ready["service"], "orchestrator");
    // As the image's unprivileged user: the host has no name for uid 10001.
    let user_of = podman.run(&["top", &container, "huser"]);
    assert!(
        String::from_utf8_lossy(&user_of.stdout).contains("10001"),
        "it runs as 10001: {}",
        text(&user_of)
    );
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn project() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ is in the project")
        .to_path_buf()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_built_without_a_daemon_is_pushed_to_the_registry_and_pulled_back_by_digest_intact(
) {
    let installation = Installation::new();
    let up = installation.run(&["up", "--delivery"]);
    assert!(up.status.success(), "up --delivery: {}", text(&up));
    let status = installation.json(&["status", "--json", "--show-secrets"]);
    let registry = status["components"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == "registry"))
        .unwrap_or_else(|| panic!("the registry is a component: {status}"));
    assert_eq!(registry["state"], "ready", "{registry}");
    let access = &status["connections"]["registry"];
    let (user, password) = (
        access["user"].as_str().expect("a user"),
        access["password"].as_str().expect("a password"),
    );
    let ca = std::fs::read(status["gateway"]["ca_certificate"].as_str().expect("ca"))
        .expect("the CA is readable");

    // Every request needs the credentials: none, or a wrong password, is refused.
    let http = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("the CA parses"))
        .resolve(
            "registry.local.test",
            std::net::SocketAddr::from(([127, 0, 0, 1], HTTPS_PORT)),
        )
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let api = format!("https://registry.local.test:{HTTPS_PORT}/v2/");
    let anonymous = http.get(&api).send().await.expect("the gateway answers");
    assert_eq!(anonymous.status(), 401, "no credentials");
    let wrong = http
        .get(&api)
        .basic_auth(user, Some("not-the-password"))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(wrong.status(), 401, "a wrong password");
    let right = http
        .get(&api)
        .basic_auth(user, Some(password))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(right.status(), 200, "the installation's credentials");

    // Built twice: the same image. Then pushed.
    let built = installation.json(&["images", "build", "orchestrator", "--json"]);
    let again = installation.json(&["images", "build", "orchestrator", "--json"]);
    assert_eq!(
        built[0]["digest"], again[0]["digest"],
        "a rebuild is the same image"
    );
    let pushed = installation.json(&["images", "push", "orchestrator", "--json"]);
    let pushed = &pushed[0];
    assert_eq!(pushed["digest"], built[0]["digest"], "{pushed}");
    let revision = built[0]["revision"].as_str().expect("a revision");
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(project())
        .output()
        .expect("git runs");
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    assert!(
        revision.starts_with(&head),
        "labelled with the commit ({head}): {revision}"
    );

    // Pulled back by digest, as another machine would: everything matches what was built.
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Https,
        extra_root_certificates: vec![oci_client::client::Certificate {
            encoding: oci_client::client::CertificateEncoding::Pem,
            data: ca.clone(),
        }],
        ..ClientConfig::default()
    });
    let by_digest: Reference = pushed["by_digest"]
        .as_str()
        .expect("by digest")
        .parse()
        .expect("a reference");
    let auth = RegistryAuth::Basic(user.to_string(), password.to_string());
    let image = client
        .pull(&by_digest, &auth, vec![IMAGE_LAYER_GZIP_MEDIA_TYPE])
        .await
        .expect("the image pulls by digest");
    assert_eq!(image.digest.as_deref(), pushed["digest"].as_str());
    assert_eq!(image.layers.len(), 1);
    assert_eq!(
        sha256(&image.layers[0].data),
        built[0]["layer_digest"].as_str().expect("layer digest")
    );
    let config: Value = serde_json::from_slice(&image.config.data).expect("config JSON");
    assert_eq!(config["config"]["User"], "10001:10001", "{config}");
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.revision"],
        revision
    );
    assert_eq!(
        config["config"]["Entrypoint"][0],
        "/usr/local/bin/orchestrator"
    );

    // The layer holds the very binary, and the libraries it links.
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&image.layers[0].data[..])
        .read_to_end(&mut tar)
        .expect("the layer is gzip");
    let diff_id = sha256(&tar);
    assert_eq!(config["rootfs"]["diff_ids"][0], diff_id.as_str());
    let binary = std::fs::read(
        Path::new(PAYTOOL)
            .parent()
            .expect("the target directory")
            .join("orchestrator"),
    )
    .expect("the orchestrator binary");
    let mut found_binary = false;
    let mut found_libc = false;
    for entry in tar::Archive::new(&tar[..]).entries().expect("a tar") {
        let mut entry = entry.expect("an entry");
        let path = entry.path().expect("a path").display().to_string();
        if path == "usr/local/bin/orchestrator" {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).expect("read");
            assert_eq!(sha256(&bytes), sha256(&binary), "the binary as built");
            found_binary = true;
        }
        found_libc |= path.contains("libc.so");
    }
    assert!(
        found_binary && found_libc,
        "binary {found_binary}, libc {found_libc}"
    );

    // Run by a container engine: podman pulls it from the registry by digest and starts it
    // with the running orchestrator's configuration on a port of its own; it answers ready.
    run_under_podman(
        &status,
        pushed["by_digest"].as_str().expect("by digest"),
        user,
        password,
    );

    // Tagged with its revision and `latest`, both naming the same manifest.
    for tag in [revision, "latest"] {
        let reference = Reference::with_tag(
            format!("registry.local.test:{HTTPS_PORT}"),
            "paytool/orchestrator".into(),
            tag.into(),
        );
        let digest = client
            .fetch_manifest_digest(&reference, &auth)
            .await
            .unwrap_or_else(|e| panic!("tag {tag}: {e}"));
        assert_eq!(
            Some(digest.as_str()),
            pushed["digest"].as_str(),
            "tag {tag}"
        );
    }
}

/// git, as a developer runs it, trusting the platform's CA and never prompting.
fn git(ca: &str, args: &[&str], dir: &Path) -> Output {
    Command::new("git")
        .args([
            "-c",
            &format!("http.curloptResolve=git.local.test:{GIT_HTTPS_PORT}:127.0.0.1"),
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_SSL_CAINFO", ca)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .output()
        .expect("git runs")
}

/// `git ls-remote` of a repository's main with an Authorization header (or none): the commit,
/// or the failure.
fn main_of(ca: &str, url: &str, authorization: Option<&str>) -> Result<String, String> {
    let header = authorization.map(|value| format!("http.extraHeader=Authorization: {value}"));
    let mut args = Vec::new();
    if let Some(header) = &header {
        args.extend(["-c", header.as_str()]);
    }
    args.extend(["ls-remote", url, "refs/heads/main"]);
    let output = git(ca, &args, &std::env::temp_dir());
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).to_string())
    }
}

/// A token of one of the realm's clients (client credentials), from Keycloak's loopback port.
async fn client_token(status: &Value, client: &str) -> String {
    let keycloak = status["connections"]["keycloak_url"]
        .as_str()
        .expect("keycloak");
    let secret = status["connections"]["client_secrets"][client]
        .as_str()
        .unwrap_or_else(|| panic!("a secret for {client}"));
    let answer: Value = reqwest::Client::new()
        .post(format!(
            "{keycloak}/realms/paytool/protocol/openid-connect/token"
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("client_secret", secret),
        ])
        .send()
        .await
        .expect("Keycloak answers")
        .json()
        .await
        .expect("JSON");
    answer["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("a token for {client}: {answer}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_git_server_lets_no_one_in_without_credentials_and_a_clone_pushes_back_to_main() {
    use base64::Engine;
    let installation = Installation::on(GIT_PORT_BASE);
    let up = installation.run(&["up", "--delivery"]);
    assert!(up.status.success(), "up --delivery: {}", text(&up));
    let status = installation.json(&["status", "--json", "--show-secrets"]);
    let server = status["components"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == "git"))
        .unwrap_or_else(|| panic!("the git server is a component: {status}"));
    assert_eq!(server["state"], "ready", "{server}");
    let access = &status["connections"]["git"];
    let (user, password) = (
        access["user"].as_str().expect("a user"),
        access["password"].as_str().expect("a password"),
    );
    let ca = status["gateway"]["ca_certificate"].as_str().expect("ca");
    let head = String::from_utf8_lossy(
        &Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(project())
            .output()
            .expect("git runs")
            .stdout,
    )
    .trim()
    .to_string();

    // The project, pushed to a repository made for it; a second time finds it there.
    let pushed = installation.json(&["git", "init", "--json"]);
    assert_eq!(pushed["created"], true, "{pushed}");
    assert_eq!(pushed["revision"], head.as_str(), "{pushed}");
    let url = pushed["clone_url"]
        .as_str()
        .expect("a clone URL")
        .to_string();
    assert_eq!(
        url,
        format!("https://git.local.test:{GIT_HTTPS_PORT}/paytool.git")
    );
    let again = installation.json(&["git", "init", "--json"]);
    assert_eq!(again["created"], false, "{again}");

    // Who gets in: nobody anonymous, not a wrong password, not a token meant for another
    // client; the installation's credentials and a token of the realm's git client do.
    let basic = |user: &str, password: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    };
    // Anonymous: the server asks for credentials, which git (not prompting) has none of.
    let refused = main_of(ca, &url, None).expect_err("anonymous");
    assert!(refused.contains("could not read Username"), "{refused}");
    main_of(ca, &url, Some(&basic(user, "not-the-password"))).expect_err("a wrong password");
    let elsewhere = client_token(&status, "paytool-operator").await;
    main_of(ca, &url, Some(&format!("Bearer {elsewhere}"))).expect_err("another client's token");
    let token = client_token(&status, "git").await;
    assert_eq!(
        main_of(ca, &url, Some(&basic(user, password))),
        Ok(head.clone())
    );
    assert_eq!(
        main_of(ca, &url, Some(&format!("Bearer {token}"))),
        Ok(head.clone())
    );
    assert_eq!(
        main_of(ca, &url, Some(&basic("anyone", &token))),
        Ok(head.clone())
    );

    // Its process killed (the pid `paytool status` reports): the supervisor starts it again
    // and the server answers as before.
    let pid = server["pid"].as_i64().expect("the git server's pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("a pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        // `status` exits 1 while a component is not ready: its JSON is what is read.
        let now: Value = serde_json::from_slice(&installation.run(&["status", "--json"]).stdout)
            .unwrap_or_default();
        let again = now["components"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["name"] == "git"))
            .cloned()
            .unwrap_or_default();
        if again["state"] == "ready" && again["pid"].as_i64().is_some_and(|p| p != pid) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the git server was started again within 60 s: {again}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        main_of(ca, &url, Some(&basic(user, password))),
        Ok(head.clone())
    );

    // A clone made by paytool pulls and pushes with nothing more: its helper asks paytool.
    let work = tempfile::tempdir().expect("a directory");
    let dir = work.path().join("clone");
    let cloned = installation.json(&["git", "clone", dir.to_str().expect("utf-8"), "--json"]);
    assert_eq!(cloned["revision"], head.as_str(), "{cloned}");
    std::fs::write(
        dir.join("DELIVERY-TEST.md"),
        "pushed by the delivery test\n",
    )
    .expect("write");
    let add = Command::new("git")
        .args(["add", "DELIVERY-TEST.md"])
        .current_dir(&dir)
        .output()
        .expect("git add");
    assert!(add.status.success(), "{}", text(&add));
    let commit = Command::new("git")
        .args([
            "-c",
            "user.name=Delivery Test",
            "-c",
            "user.email=delivery@local.test",
        ])
        .args([
            "commit",
            "--quiet",
            "--message",
            "delivery test: a commit pushed back",
        ])
        .current_dir(&dir)
        .output()
        .expect("git commit");
    assert!(commit.status.success(), "{}", text(&commit));
    // No GIT_SSL_CAINFO here: the clone's own settings must be enough.
    let push = Command::new("git")
        .args(["push", "--quiet", "origin", "HEAD:main"])
        .current_dir(&dir)
        .env_remove("GIT_SSL_CAINFO")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .output()
        .expect("git push");
    assert!(push.status.success(), "the clone pushes: {}", text(&push));
    let new_head = String::from_utf8_lossy(
        &Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(&dir)
            .output()
            .expect("git")
            .stdout,
    )
    .trim()
    .to_string();
    assert_ne!(new_head, head);
    assert_eq!(
        main_of(ca, &url, Some(&basic(user, password))),
        Ok(new_head.clone())
    );

    // The project's HEAD lacks that commit: pushing it again would lose it, and is refused.
    let behind = installation.run(&["git", "init"]);
    assert_eq!(behind.status.code(), Some(1), "{}", text(&behind));
    assert!(
        String::from_utf8_lossy(&behind.stderr).contains("rejected"),
        "{}",
        text(&behind)
    );
    assert_eq!(
        main_of(ca, &url, Some(&basic(user, password))),
        Ok(new_head.clone())
    );

    // gitweb shows the repository and the pushed commit, to the same credentials only.
    let http = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(ca).expect("the CA"))
                .expect("the CA parses"),
        )
        .resolve(
            "git.local.test",
            std::net::SocketAddr::from(([127, 0, 0, 1], GIT_HTTPS_PORT)),
        )
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let site = format!("https://git.local.test:{GIT_HTTPS_PORT}/");
    let anonymous = http.get(&site).send().await.expect("the gateway answers");
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .starts_with("Basic "));
    let list = http
        .get(&site)
        .basic_auth(user, Some(password))
        .send()
        .await
        .expect("gitweb answers");
    assert_eq!(list.status(), 200);
    assert!(list.text().await.expect("text").contains("paytool.git"));
    let page = http
        .get(format!("{site}?p=paytool.git;a=commit;h={new_head}"))
        .basic_auth(user, Some(password))
        .send()
        .await
        .expect("gitweb answers");
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .expect("text")
        .contains("delivery test: a commit pushed back"));
}

/// What a GET of the CI server's REST API (on loopback: reading needs no user) answers.
fn ci_api(port: u16, path: &str) -> Value {
    let answer = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:{port}/api/v2/{path}"))
        .output()
        .expect("curl runs");
    serde_json::from_slice(&answer.stdout).unwrap_or(Value::Null)
}

/// Each instance's revision, from its own port (`/health/ready`).
fn revisions(status: &Value, service: &str) -> Vec<String> {
    status["components"]
        .as_array()
        .expect("components")
        .iter()
        .filter(|c| c["name"] == service)
        .map(|c| {
            let url = c["urls"][0].as_str().expect("a URL");
            let answer = std::process::Command::new("curl")
                .args(["-sS", "--max-time", "5"])
                .arg(format!("{url}/health/ready"))
                .output()
                .expect("curl runs");
            let body: Value = serde_json::from_slice(&answer.stdout).unwrap_or(Value::Null);
            body["revision"].as_str().unwrap_or("?").to_string()
        })
        .collect()
}

#[test]
fn a_pushed_commit_is_built_imaged_and_rolled_out_by_the_ci_server_with_no_failed_request() {
    let installation = Installation::on(PIPELINE_PORT_BASE);
    let up = installation.run(&["up", "--delivery", "--replicas", "merchant-api=2"]);
    assert!(up.status.success(), "up --delivery: {}", text(&up));
    let status = installation.json(&["status", "--json", "--show-secrets"]);
    for component in ["ci", "ci-worker", "git", "registry"] {
        let found = status["components"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["name"] == component))
            .unwrap_or_else(|| panic!("{component} is a component: {status}"));
        assert_eq!(found["state"], "ready", "{found}");
    }
    let ci_port: u16 = status["components"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == "ci"))
        .and_then(|ci| ci["urls"].as_array())
        .and_then(|urls| {
            urls.iter()
                .filter_map(Value::as_str)
                .find(|u| u.starts_with("http://127.0.0.1:"))
        })
        .and_then(|url| url.rsplit(':').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("the CI server's loopback URL: {status}"));
    let builders = ci_api(ci_port, "builders");
    let names: Vec<&str> = builders["builders"]
        .as_array()
        .expect("builders")
        .iter()
        .filter_map(|b| b["name"].as_str())
        .collect();
    for service in ["consumer-api", "merchant-api", "orchestrator"] {
        assert!(
            names.contains(&service),
            "a pipeline for {service}: {names:?}"
        );
    }
    let before = revisions(&status, "merchant-api");
    assert_eq!(before.len(), 2, "two instances: {before:?}");

    // The project on the git server (a new branch builds nothing), then a commit that changes
    // merchant-api, pushed from a clone.
    installation.json(&["git", "init", "--json"]);
    let work = tempfile::tempdir().expect("a directory");
    let dir = work.path().join("clone");
    installation.json(&["git", "clone", dir.to_str().expect("utf-8"), "--json"]);
    let lib = dir.join("services/merchant-api/src/lib.rs");
    let mut source = std::fs::read_to_string(&lib).expect("merchant-api's lib.rs");
    source.push_str(
        "// A change pushed by the delivery test: the pipeline builds and rolls it out.\n",
    );
    std::fs::write(&lib, source).expect("write");
    let git_in = |args: &[&str]| {
        let output = Command::new("git")
            .args([
                "-c",
                "user.name=Delivery Test",
                "-c",
                "user.email=delivery@local.test",
            ])
            .args(args)
            .current_dir(&dir)
            .env_remove("GIT_SSL_CAINFO")
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .output()
            .expect("git runs");
        assert!(output.status.success(), "git {args:?}: {}", text(&output));
        output
    };
    git_in(&[
        "commit",
        "--quiet",
        "--all",
        "--message",
        "merchant-api: a commit to deliver",
    ]);
    let commit = String::from_utf8_lossy(&git_in(&["rev-parse", "HEAD"]).stdout)
        .trim()
        .to_string();

    // Light load meanwhile, in back-to-back windows, until the commit runs.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let done = done.clone();
        let home = installation.root.path().join("state");
        std::thread::spawn(move || {
            let mut windows = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) && windows.len() < 400 {
                let started = std::time::SystemTime::now();
                let output = Command::new(PAYTOOL)
                    .args(["load", "--scenario", "mix", "--rate", LOAD_RATE_PER_S])
                    .args(["--duration", LOAD_WINDOW_S, "--json"])
                    .env("PAYTOOL_HOME", &home)
                    .stdin(Stdio::null())
                    .output()
                    .expect("paytool load runs");
                let report: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
                windows.push((started, std::time::SystemTime::now(), report));
            }
            windows
        })
    };
    let pushed_at = std::time::Instant::now();
    let push = git_in(&["push", "origin", "HEAD:main"]);
    let said = String::from_utf8_lossy(&push.stderr).to_string();
    assert!(
        said.contains("paytool CI: told of main"),
        "the hook told the CI server: {said}"
    );

    // The build of that commit, to its end.
    let deadline = pushed_at + Duration::from_secs(PIPELINE_TIMEOUT_S);
    let build = loop {
        let builds = ci_api(
            ci_port,
            "builders/merchant-api/builds?order=-buildid&limit=1&property=got_revision",
        );
        if let Some(build) = builds["builds"].as_array().and_then(|b| b.first()) {
            if build["complete"] == true {
                break build.clone();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pipeline ended within {PIPELINE_TIMEOUT_S} s: {builds}"
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    let commit_to_running_s = pushed_at.elapsed().as_secs_f64();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let windows = load.join().expect("the load thread");
    let steps = ci_api(ci_port, &format!("builds/{}/steps", build["buildid"]));
    let step_lines: Vec<String> = steps["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            let took_s = s["complete_at"]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(s["started_at"].as_u64().unwrap_or(0));
            format!(
                "{} {} in {took_s} s: {}",
                s["name"], s["results"], s["state_string"]
            )
        })
        .collect();
    if build["results"] != 0 {
        // The failed step's log, as Buildbot keeps it: what a developer would open first.
        let failed = steps["steps"]
            .as_array()
            .and_then(|all| all.iter().find(|s| s["results"] != 0))
            .map(|s| s["number"].clone())
            .unwrap_or_default();
        let log = Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .arg(format!(
                "http://127.0.0.1:{ci_port}/api/v2/builds/{}/steps/{failed}/logs/stdio/raw",
                build["buildid"]
            ))
            .output()
            .expect("curl");
        let log = String::from_utf8_lossy(&log.stdout);
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        panic!(
            "the build failed: {step_lines:#?}\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    assert_eq!(
        build["properties"]["got_revision"][0],
        commit.as_str(),
        "it built the pushed commit"
    );
    eprintln!("commit to running: {commit_to_running_s:.1} s; steps: {step_lines:#?}");

    // Every instance runs the commit; the registry has its image under the commit's tag.
    let status = installation.json(&["status", "--json", "--show-secrets"]);
    assert_eq!(
        revisions(&status, "merchant-api"),
        [commit.clone(), commit.clone()],
        "both instances report the pushed commit"
    );
    let access = &status["connections"]["registry"];
    let tags = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(status["gateway"]["ca_certificate"].as_str().expect("ca"))
        .args([
            "--resolve",
            &format!("registry.local.test:{PIPELINE_HTTPS_PORT}:127.0.0.1"),
        ])
        .args([
            "-u",
            &format!(
                "{}:{}",
                access["user"].as_str().expect("user"),
                access["password"].as_str().expect("password")
            ),
        ])
        .arg(format!(
            "https://registry.local.test:{PIPELINE_HTTPS_PORT}/v2/paytool/merchant-api/tags/list"
        ))
        .output()
        .expect("curl");
    let tags: Value = serde_json::from_slice(&tags.stdout).expect("the tag list");
    assert!(
        tags["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .any(|t| t == commit.as_str()),
        "the image is tagged with the commit: {tags}"
    );

    // No request of the load failed, and the load ran while the rollout did.
    let deploy = steps["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["name"] == "deploy")
        .expect("a deploy step");
    let deploy_from = deploy["started_at"].as_u64().expect("started");
    let deploy_to = deploy["complete_at"].as_u64().expect("ended");
    let mut covered = false;
    for (from, to, report) in &windows {
        assert_eq!(
            report["all"]["errors"], 0,
            "a load window failed requests: {report}"
        );
        assert_eq!(
            report["dropped"], 0,
            "a load window dropped arrivals: {report}"
        );
        let secs = |t: &std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .expect("time")
                .as_secs()
        };
        covered |= secs(from) <= deploy_to && secs(to) >= deploy_from;
    }
    assert!(
        covered,
        "a load window overlapped the rollout ({deploy_from}..{deploy_to})"
    );

    // Payments ran through a rollout: the ledger balances.
    let verified = installation.run(&["ledger", "verify", "--json"]);
    assert!(
        verified.status.success(),
        "ledger verify: {}",
        text(&verified)
    );
}
