//! Local delivery against a real installation (`paytool up --delivery`): the registry (CNCF
//! Distribution v3, built by the project's script) behind the gateway over TLS, its
//! authentication, and a service's image built without a daemon, pushed, pulled back by digest
//! and checked: its manifest, its config's revision label and user, its layer's binary.

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
/// Its own port range, apart from the test platform's and the other tests' installations.
const PORT_BASE: u16 = 30200;
const HTTPS_PORT: u16 = PORT_BASE + 1;

struct Installation {
    root: tempfile::TempDir,
}

impl Installation {
    fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("paytool-delivery-")
            .tempdir()
            .expect("a temporary directory");
        // The postgres user runs the database from inside the state directory.
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        Self { root }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(PAYTOOL)
            .args(args)
            .env("PAYTOOL_HOME", self.root.path().join("state"))
            .env("PAYTOOL_PORT_BASE", PORT_BASE.to_string())
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
