//! `paytool kube serve`: a real kube-apiserver and its etcd on loopback, built from the Go
//! module proxy by `scripts/install-kube-apiserver.sh`. No cluster can run pods on this kind
//! of machine (node images cannot be pulled), but the API server can: every stack is applied
//! to it server-side (`paytool kube apply`), so what users will apply to kind has been
//! accepted by the real admission chain and schemas, not only by an offline schema check.
//!
//! Everything lives in one directory: a CA and the server's certificate (rcgen, as the
//! gateway's), the service-account signing key, a static admin token (RBAC, in
//! `system:masters`), etcd's data, both logs and a kubeconfig for clients.

use crate::runtime::home::write_atomic;
use crate::support::exit::{fail, Code};
use anyhow::Context;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The release `scripts/install-kube-apiserver.sh` builds (its cache directory's name).
pub const KUBERNETES_VERSION: &str = "1.37.2";
/// The API server's port unless told; etcd takes the next two (clients, peers).
pub const DEFAULT_PORT: u16 = 26443;
/// A first start on a busy two-core machine: etcd, then about 60 post-start hooks.
const READY_TIMEOUT_MS: u64 = 120_000;
const READY_POLL_MS: u64 = 500;
const PROBE_TIMEOUT_MS: u64 = 2_000;
/// SIGTERM, then SIGKILL after this.
const STOP_TIMEOUT_MS: u64 = 10_000;
/// The server certificate's life: the directory is for tests and short sessions.
const CERT_VALIDITY_DAYS: i64 = 365;
/// Cluster IPs are only allocated, never routed: no pod runs here.
const SERVICE_CLUSTER_IP_RANGE: &str = "10.96.0.0/16";
const ADMIN_USER: &str = "paytool-admin";
/// The log lines shown when a process dies before the server is ready.
const LOG_TAIL_LINES: usize = 20;

/// The directory's files.
pub struct Layout {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub service_account_key: PathBuf,
    pub service_account_public: PathBuf,
    pub tokens: PathBuf,
    pub kubeconfig: PathBuf,
    pub etcd_data: PathBuf,
    pub etcd_log: PathBuf,
    pub apiserver_log: PathBuf,
}

impl Layout {
    pub fn of(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            ca: dir.join("pki/ca.pem"),
            cert: dir.join("pki/apiserver.pem"),
            key: dir.join("pki/apiserver-key.pem"),
            service_account_key: dir.join("pki/service-account-key.pem"),
            service_account_public: dir.join("pki/service-account.pem"),
            tokens: dir.join("pki/tokens.csv"),
            kubeconfig: dir.join("kubeconfig"),
            etcd_data: dir.join("etcd"),
            etcd_log: dir.join("logs/etcd.log"),
            apiserver_log: dir.join("logs/kube-apiserver.log"),
        }
    }
}

/// The two binaries, built and cached by the install script.
pub struct Binaries {
    pub etcd: PathBuf,
    pub apiserver: PathBuf,
}

pub fn binaries() -> anyhow::Result<Binaries> {
    let bin = crate::runtime::project::cache_dir()
        .join(format!("kube-{KUBERNETES_VERSION}"))
        .join("bin");
    let found = Binaries {
        etcd: bin.join("etcd"),
        apiserver: bin.join("kube-apiserver"),
    };
    if !found.etcd.is_file() || !found.apiserver.is_file() {
        return Err(fail(
            Code::Prerequisite,
            format!(
                "kube-apiserver {KUBERNETES_VERSION} and etcd are not built in {}: run scripts/install-kube-apiserver.sh (once; many minutes)",
                bin.display()
            ),
        ));
    }
    Ok(found)
}

/// What `serve` reports once the server answers.
#[derive(Debug, Serialize)]
pub struct Served {
    pub server: String,
    pub kubeconfig: PathBuf,
    pub version: String,
    pub ready_ms: u64,
}

/// Writes the certificates, keys, token and kubeconfig (kept when there: a restart keeps its
/// clients' kubeconfig valid).
pub fn prepare(layout: &Layout, port: u16) -> anyhow::Result<()> {
    if !layout.ca.is_file() || !layout.key.is_file() {
        let names = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
        ]
        .map(String::from)
        .to_vec();
        let issued = crate::runtime::tls::issue(
            "paytool kube-apiserver CA",
            names,
            "kube-apiserver",
            CERT_VALIDITY_DAYS,
        )?;
        write_atomic(&layout.ca, issued.ca_cert.as_bytes(), 0o644)?;
        write_atomic(&layout.cert, issued.chain().as_bytes(), 0o644)?;
        write_atomic(&layout.key, issued.leaf_key.as_bytes(), 0o600)?;
    }
    if !layout.service_account_key.is_file() || !layout.service_account_public.is_file() {
        // ECDSA P-256: the API server signs service-account tokens with the private half and
        // verifies them with the public one.
        let key = rcgen::KeyPair::generate()?;
        write_atomic(
            &layout.service_account_key,
            key.serialize_pem().as_bytes(),
            0o600,
        )?;
        write_atomic(
            &layout.service_account_public,
            key.public_key_pem().as_bytes(),
            0o644,
        )?;
    }
    let token = match layout.tokens.is_file() {
        true => admin_token(layout)?,
        false => {
            let token = hex::encode(rand::random::<[u8; 24]>());
            write_atomic(
                &layout.tokens,
                format!("{token},{ADMIN_USER},{ADMIN_USER},\"system:masters\"\n").as_bytes(),
                0o600,
            )?;
            token
        }
    };
    let ca = std::fs::read(&layout.ca)?;
    write_atomic(
        &layout.kubeconfig,
        kubeconfig(port, &ca, &token).as_bytes(),
        0o600,
    )?;
    Ok(())
}

fn kubeconfig(port: u16, ca_pem: &[u8], token: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n  - name: paytool-apiserver\n    cluster:\n      server: https://127.0.0.1:{port}\n      certificate-authority-data: {ca}\nusers:\n  - name: {ADMIN_USER}\n    user:\n      token: {token}\ncontexts:\n  - name: paytool-apiserver\n    context:\n      cluster: paytool-apiserver\n      user: {ADMIN_USER}\ncurrent-context: paytool-apiserver\n"
    )
}

fn etcd_command(binaries: &Binaries, layout: &Layout, port: u16) -> Command {
    let client = format!("http://127.0.0.1:{}", port + 1);
    let peer = format!("http://127.0.0.1:{}", port + 2);
    let mut command = Command::new(&binaries.etcd);
    command
        .arg("--name=paytool")
        .arg(format!("--data-dir={}", layout.etcd_data.display()))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=paytool={peer}"))
        // Not the default :2381 metrics listener another etcd (Patroni's) may hold.
        .arg("--listen-metrics-urls=")
        .arg("--quota-backend-bytes=1073741824");
    command
}

fn apiserver_command(binaries: &Binaries, layout: &Layout, port: u16) -> Command {
    let mut command = Command::new(&binaries.apiserver);
    command
        .arg(format!("--etcd-servers=http://127.0.0.1:{}", port + 1))
        .arg("--bind-address=127.0.0.1")
        .arg("--advertise-address=127.0.0.1")
        .arg(format!("--secure-port={port}"))
        .arg(format!("--tls-cert-file={}", layout.cert.display()))
        .arg(format!("--tls-private-key-file={}", layout.key.display()))
        .arg(format!("--token-auth-file={}", layout.tokens.display()))
        .arg("--authorization-mode=RBAC")
        .arg("--service-account-issuer=https://kubernetes.default.svc")
        .arg(format!(
            "--service-account-key-file={}",
            layout.service_account_public.display()
        ))
        .arg(format!(
            "--service-account-signing-key-file={}",
            layout.service_account_key.display()
        ))
        .arg(format!(
            "--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}"
        ))
        .arg(format!("--cert-dir={}", layout.dir.join("pki").display()))
        // The `kubernetes` Service's endpoints would name the loopback address, which the
        // reconciler refuses; nothing in-cluster calls the API server here.
        .arg("--endpoint-reconciler-type=none")
        // No controller manager runs: no pod is made, nothing garbage-collects.
        .arg("--enable-priority-and-fairness=false");
    command
}

fn spawn(mut command: Command, log: &Path) -> anyhow::Result<Child> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .kill_on_drop(true);
    command
        .spawn()
        .with_context(|| format!("cannot start {:?}", command.as_std().get_program()))
}

/// The admin token tokens.csv holds (its first field).
fn admin_token(layout: &Layout) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(&layout.tokens)?;
    text.split(',')
        .next()
        .filter(|token| !token.is_empty())
        .map(str::to_string)
        .context("tokens.csv is empty")
}

/// What the readiness poll asks with: made once, before the poll.
struct ReadyProbe {
    client: reqwest::Client,
    token: String,
}

impl ReadyProbe {
    fn new(layout: &Layout) -> anyhow::Result<Self> {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&layout.ca)?)?;
        let client = reqwest::Client::builder()
            .add_root_certificate(ca)
            .timeout(Duration::from_millis(PROBE_TIMEOUT_MS))
            .build()?;
        Ok(Self {
            client,
            token: admin_token(layout)?,
        })
    }

    /// The server's `/version`, once `/readyz` answers ok.
    async fn ready(&self, server: &str) -> anyhow::Result<Option<String>> {
        let readyz = self
            .client
            .get(format!("{server}/readyz"))
            .bearer_auth(&self.token)
            .send()
            .await;
        match readyz {
            Ok(answer) if answer.status().is_success() => {}
            _ => return Ok(None),
        }
        let version: serde_json::Value = self
            .client
            .get(format!("{server}/version"))
            .bearer_auth(&self.token)
            .send()
            .await?
            .json()
            .await?;
        Ok(version["gitVersion"].as_str().map(str::to_string))
    }
}

async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        if tokio::time::timeout(Duration::from_millis(STOP_TIMEOUT_MS), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}

fn died(name: &str, log: &Path) -> anyhow::Error {
    let tail = crate::support::files::tail_lines(log, LOG_TAIL_LINES)
        .unwrap_or_default()
        .join("\n");
    fail(
        Code::Failed,
        format!(
            "{name} exited before the API server was ready; the end of {}:\n{tail}",
            log.display()
        ),
    )
}

/// Starts etcd and the API server, waits for `/readyz` (bounded), reports, then runs until
/// SIGINT or SIGTERM (or either process dies) and stops both.
pub async fn serve(dir: &Path, port: u16, json: bool) -> anyhow::Result<i32> {
    anyhow::ensure!(
        port < u16::MAX - 2,
        "--port leaves no room for etcd's two ports"
    );
    let binaries = binaries()?;
    let layout = Layout::of(dir);
    std::fs::create_dir_all(dir.join("logs"))?;
    prepare(&layout, port)?;
    let server = format!("https://127.0.0.1:{port}");
    let started = Instant::now();
    let mut etcd = spawn(etcd_command(&binaries, &layout, port), &layout.etcd_log)?;
    let mut apiserver = spawn(
        apiserver_command(&binaries, &layout, port),
        &layout.apiserver_log,
    )?;
    let probe = ReadyProbe::new(&layout)?;
    let deadline = started + Duration::from_millis(READY_TIMEOUT_MS);
    let version = loop {
        if etcd.try_wait()?.is_some() {
            stop(&mut apiserver).await;
            return Err(died("etcd", &layout.etcd_log));
        }
        if apiserver.try_wait()?.is_some() {
            stop(&mut etcd).await;
            return Err(died("kube-apiserver", &layout.apiserver_log));
        }
        if let Some(version) = probe.ready(&server).await? {
            break version;
        }
        if Instant::now() > deadline {
            stop(&mut apiserver).await;
            stop(&mut etcd).await;
            return Err(fail(
                Code::NotReady,
                format!(
                    "the API server was not ready within {} s; see {}",
                    READY_TIMEOUT_MS / 1000,
                    layout.apiserver_log.display()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(READY_POLL_MS)).await;
    };
    let served = Served {
        server: server.clone(),
        kubeconfig: layout.kubeconfig.clone(),
        version,
        ready_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    if json {
        println!("{}", serde_json::to_string(&served)?);
    } else {
        println!(
            "kube-apiserver {} ready at {} in {:.1} s\nkubeconfig: {}\n(Ctrl-C stops it and its etcd)",
            served.version,
            served.server,
            served.ready_ms as f64 / 1000.0,
            served.kubeconfig.display()
        );
    }
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let code = tokio::select! {
        _ = terminate.recv() => 0,
        _ = interrupt.recv() => 0,
        _ = etcd.wait() => {
            eprintln!("etcd exited; stopping the API server ({})", layout.etcd_log.display());
            Code::Failed as i32
        }
        _ = apiserver.wait() => {
            eprintln!("kube-apiserver exited ({})", layout.apiserver_log.display());
            Code::Failed as i32
        }
    };
    stop(&mut apiserver).await;
    stop(&mut etcd).await;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubeconfig_names_the_loopback_server_its_ca_and_the_admin_token() {
        let text = kubeconfig(26443, b"PEM", "secret-token");
        let parsed: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
        assert_eq!(
            parsed["clusters"][0]["cluster"]["server"].as_str(),
            Some("https://127.0.0.1:26443")
        );
        assert_eq!(
            parsed["clusters"][0]["cluster"]["certificate-authority-data"].as_str(),
            Some("UEVN")
        );
        assert_eq!(
            parsed["users"][0]["user"]["token"].as_str(),
            Some("secret-token")
        );
        assert_eq!(
            parsed["current-context"].as_str(),
            parsed["contexts"][0]["name"].as_str()
        );
    }

    #[test]
    fn prepare_keeps_the_token_and_ca_of_an_earlier_start() {
        let dir = std::env::temp_dir().join(format!("paytool-kube-{}", std::process::id()));
        let layout = Layout::of(&dir);
        prepare(&layout, 26443).expect("first");
        let ca = std::fs::read(&layout.ca).expect("ca");
        let tokens = std::fs::read(&layout.tokens).expect("tokens");
        prepare(&layout, 26443).expect("second");
        assert_eq!(std::fs::read(&layout.ca).expect("ca"), ca);
        assert_eq!(std::fs::read(&layout.tokens).expect("tokens"), tokens);
        let line = String::from_utf8(tokens).expect("utf8");
        assert!(line.ends_with(",paytool-admin,paytool-admin,\"system:masters\"\n"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
