//! Readiness and health probes: each asks the component a real question (a query, a metadata
//! request, an HTTP call through TLS), never "is the port open".

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Every probe answers within this bound, so a hung component cannot stall the supervisor.
pub const PROBE_TIMEOUT_MS: u64 = 2_000;

#[derive(Debug, Clone)]
pub enum Probe {
    /// Connect and run `SELECT 1`.
    Postgres { url: String },
    /// Fetch cluster metadata from one broker, which must list that broker itself (its node
    /// id): a broker is listed once it has registered with the controller quorum and is not
    /// fenced, so a broker that restarted is ready when it has rejoined the cluster.
    Kafka { bootstrap: String, node_id: i32 },
    /// A GET that must answer 2xx. `resolve` pins a host name to loopback (the gateway's
    /// `*.local.test` names need no DNS); `ca` is the only root trusted for HTTPS.
    Http {
        url: String,
        resolve: Option<(String, u16)>,
        ca: Option<PathBuf>,
    },
    /// A GET that must answer 2xx with a body that holds `needle` (a state that only the
    /// answer's content tells, such as the CI server's worker being connected).
    HttpBody { url: String, needle: String },
    /// A FastCGI request to a CGI runner (the git server's fcgiwrap) that must come back with
    /// a CGI answer (headers, then a blank line): the runner accepted, forked and ran the
    /// script named in `params` (`SCRIPT_FILENAME`).
    FastCgi {
        socket: PathBuf,
        params: Vec<(String, String)>,
    },
}

impl Probe {
    pub async fn check(&self) -> Result<(), String> {
        let timeout = Duration::from_millis(PROBE_TIMEOUT_MS);
        match tokio::time::timeout(timeout, self.check_inner()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT_MS} ms")),
        }
    }

    async fn check_inner(&self) -> Result<(), String> {
        match self {
            Probe::Postgres { url } => {
                let options = PgConnectOptions::from_str(url).map_err(|e| e.to_string())?;
                let mut connection = options.connect().await.map_err(|e| e.to_string())?;
                let one: i32 = sqlx::query_scalar("SELECT 1")
                    .fetch_one(&mut connection)
                    .await
                    .map_err(|e| e.to_string())?;
                connection.close().await.ok();
                (one == 1)
                    .then_some(())
                    .ok_or_else(|| "SELECT 1 did not answer 1".to_string())
            }
            Probe::Kafka { bootstrap, node_id } => {
                let (bootstrap, node_id) = (bootstrap.clone(), *node_id);
                tokio::task::spawn_blocking(move || kafka_metadata(&bootstrap, node_id))
                    .await
                    .map_err(|e| e.to_string())?
            }
            Probe::Http { url, resolve, ca } => {
                let client =
                    http_client(resolve.as_ref(), ca.as_ref()).map_err(|e| e.to_string())?;
                let response = client.get(url).send().await.map_err(|e| e.to_string())?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("{url} answered {}", response.status()))
                }
            }
            Probe::HttpBody { url, needle } => {
                let client = http_client(None, None).map_err(|e| e.to_string())?;
                let response = client.get(url).send().await.map_err(|e| e.to_string())?;
                let status = response.status();
                let body = response.text().await.map_err(|e| e.to_string())?;
                if !status.is_success() {
                    Err(format!("{url} answered {status}"))
                } else if body.contains(needle.as_str()) {
                    Ok(())
                } else {
                    Err(format!("{url} does not say {needle} yet"))
                }
            }
            Probe::FastCgi { socket, params } => {
                let address = socket.display();
                let stream = tokio::net::UnixStream::connect(socket)
                    .await
                    .map_err(|e| format!("{address}: {e}"))?;
                let request_params = params
                    .iter()
                    .fold(fastcgi_client::Params::default(), |all, (name, value)| {
                        all.custom(name.as_str(), value.as_str())
                    });
                let response = fastcgi_client::Client::new_tokio(stream)
                    .execute_once(fastcgi_client::Request::new(
                        request_params,
                        fastcgi_client::io::empty(),
                    ))
                    .await
                    .map_err(|e| format!("{address}: {e}"))?;
                let stdout = response.stdout.unwrap_or_default();
                let text = String::from_utf8_lossy(&stdout);
                if text.contains("\r\n\r\n") || text.contains("\n\n") {
                    Ok(())
                } else {
                    Err(format!(
                        "{address} ran the script without a CGI answer: {}",
                        String::from_utf8_lossy(&response.stderr.unwrap_or_default()).trim()
                    ))
                }
            }
        }
    }
}

/// An HTTP client for the platform: trusts only the installation's CA when one is given, and
/// resolves a gateway name to loopback.
pub fn http_client(
    resolve: Option<&(String, u16)>,
    ca: Option<&PathBuf>,
) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_millis(PROBE_TIMEOUT_MS))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = ca {
        let pem = std::fs::read(ca)?;
        builder = builder
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    if let Some((host, port)) = resolve {
        builder = builder.resolve(host, std::net::SocketAddr::from(([127, 0, 0, 1], *port)));
    }
    Ok(builder.build()?)
}

pub fn kafka_admin(bootstrap: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("socket.timeout.ms", PROBE_TIMEOUT_MS.to_string())
        .set("log_level", "3")
        .create()?)
}

fn kafka_metadata(bootstrap: &str, node_id: i32) -> Result<(), String> {
    let admin = kafka_admin(bootstrap).map_err(|e| e.to_string())?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_millis(PROBE_TIMEOUT_MS))
        .map_err(|e| e.to_string())?;
    if !metadata
        .brokers()
        .iter()
        .any(|broker| broker.id() == node_id)
    {
        return Err(format!(
            "the cluster does not list broker {node_id} yet (it lists {:?})",
            metadata
                .brokers()
                .iter()
                .map(|broker| broker.id())
                .collect::<Vec<_>>()
        ));
    }
    Ok(())
}
