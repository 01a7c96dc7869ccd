//! `paytool status [--json]`: every component with its state, pid, ports, URLs and live health.
//! The JSON document is a stable interface, documented in docs/status-json.md.

use crate::runtime::components::{self, services::Service, ComponentName};
use crate::runtime::home::Home;
use crate::runtime::state::{is_alive, running_supervisor, ComponentPhase, Phase, RuntimeState};
use crate::runtime::tls::TlsFiles;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Version of the JSON document below; bumped on any incompatible change.
pub const STATUS_FORMAT: u32 = 1;

#[derive(Debug, Serialize)]
pub struct Status {
    pub format: u32,
    pub home: PathBuf,
    pub installation_id: String,
    pub running: bool,
    pub phase: Option<Phase>,
    pub supervisor_pid: Option<u32>,
    pub gateway: Gateway,
    pub components: Vec<ComponentStatus>,
    pub connections: Connections,
}

#[derive(Debug, Serialize)]
pub struct Gateway {
    pub http_port: u16,
    pub https_port: u16,
    pub ca_certificate: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct ComponentStatus {
    pub name: ComponentName,
    /// Which instance (0 unless the service runs replicas); `id` names it: `consumer-api.1`.
    pub instance: u8,
    pub id: String,
    pub state: ComponentPhase,
    pub pid: Option<u32>,
    pub ports: BTreeMap<String, u16>,
    pub urls: Vec<String>,
    /// `healthy` when its probe answered just now, `unhealthy` when it did not, `unknown`
    /// when the platform is not running.
    pub health: Health,
    pub health_detail: Option<String>,
    pub restarts: u32,
    pub ready_ms: Option<u64>,
    pub message: Option<String>,
    pub log: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Healthy,
    Unhealthy,
    Unknown,
}

/// Where to reach the engines. Passwords are `***` unless `--show-secrets`.
#[derive(Debug, Serialize)]
pub struct Connections {
    pub postgres_admin_url: String,
    pub databases: BTreeMap<String, String>,
    pub kafka_bootstrap: String,
    pub keycloak_url: String,
    pub keycloak_public_url: String,
    pub keycloak_realm: String,
    pub keycloak_admin_user: String,
    pub keycloak_admin_password: String,
    pub client_secrets: BTreeMap<String, String>,
    /// The image registry, with local delivery (`paytool up --delivery`) only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryAccess>,
    /// The git server, with local delivery only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git: Option<ServerAccess>,
    /// The CI server's web UI, with local delivery only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci: Option<ServerAccess>,
    /// The operators' web UIs (logs, dashboards, traces) and the account that signs in to them.
    pub operations: OperationsAccess,
}

/// Where the operators' web UIs are, and who signs in to them (Keycloak, realm role
/// `operator`).
#[derive(Debug, Serialize)]
pub struct OperationsAccess {
    pub urls: BTreeMap<String, String>,
    pub user: String,
    pub password: String,
}

/// Where the image registry is and who may use it.
#[derive(Debug, Serialize)]
pub struct RegistryAccess {
    /// Through the gateway, over TLS: what clients and image references use.
    pub url: String,
    /// Its API on loopback.
    pub local_url: String,
    pub user: String,
    pub password: String,
}

/// Where a delivery server (git, CI) is and who may use it: its Basic credentials, or a token
/// of the realm's `client` (client credentials; its secret is under `client_secrets`).
#[derive(Debug, Serialize)]
pub struct ServerAccess {
    /// Through the gateway, over TLS (the git server's repositories are `URL/NAME.git`).
    pub url: String,
    pub user: String,
    pub password: String,
    pub client: String,
}

pub async fn collect(home: &Home, show_secrets: bool) -> anyhow::Result<Status> {
    let secrets = home.secrets()?;
    let supervisor = running_supervisor(home);
    if let (Some(_), Some(why)) = (supervisor, RuntimeState::unreadable(home)) {
        return Err(crate::support::exit::fail(
            crate::support::exit::Code::Failed,
            format!("{why}: stop it with `paytool down` and start it again with `paytool up`"),
        ));
    }
    let runtime = RuntimeState::load(home).filter(|_| supervisor.is_some());
    // Every instance the installation runs: one of each component, a service's replicas.
    let names: Vec<(ComponentName, u8)> = components::instances(home).collect();
    let mut components_out = Vec::new();
    let probes = names.iter().map(|(name, instance)| {
        let probe = name.component().instance_probe(home, &secrets, *instance);
        async move { probe.check().await }
    });
    let health: Vec<Result<(), String>> = if runtime.is_some() {
        let handles: Vec<_> = probes.map(tokio::spawn).collect();
        let mut out = Vec::new();
        for handle in handles {
            out.push(handle.await.unwrap_or_else(|e| Err(e.to_string())));
        }
        out
    } else {
        names
            .iter()
            .map(|_| Err("not running".to_string()))
            .collect()
    };
    for ((name, instance), probe_result) in names.iter().zip(health) {
        let recorded = runtime.as_ref().and_then(|r| {
            r.components
                .iter()
                .find(|c| c.name == *name && c.instance == *instance)
        });
        let id = components::instance_id(*name, *instance);
        let (health, health_detail) = match (&runtime, probe_result) {
            (None, _) => (Health::Unknown, None),
            (Some(_), Ok(())) => (Health::Healthy, None),
            (Some(_), Err(detail)) => (Health::Unhealthy, Some(detail)),
        };
        components_out.push(ComponentStatus {
            name: *name,
            instance: *instance,
            state: recorded.map_or(ComponentPhase::Stopped, |c| c.state),
            pid: recorded.and_then(|c| c.pid).filter(|pid| is_alive(*pid)),
            ports: recorded.map(|c| c.ports.clone()).unwrap_or_default(),
            urls: recorded.map(|c| c.urls.clone()).unwrap_or_default(),
            health,
            health_detail,
            restarts: recorded.map_or(0, |c| c.restarts),
            ready_ms: recorded.and_then(|c| c.ready_ms),
            message: recorded.and_then(|c| c.message.clone()),
            log: home.log_path(&id),
            id,
        });
    }
    let hide = |secret: &str| {
        if show_secrets {
            secret.to_string()
        } else {
            "***".to_string()
        }
    };
    let ports = home.ports();
    // The platform's services' databases, then the scaffolded services'.
    let owners = Service::ALL
        .iter()
        .map(|service| {
            (
                service.database(),
                service.database_password(&secrets).to_string(),
            )
        })
        .chain(
            crate::runtime::components::apps::of(home)
                .into_iter()
                .map(|app| (app.database(), app.database_password(&secrets))),
        );
    let databases = owners
        .map(|(db, password)| {
            (
                db.clone(),
                format!(
                    "postgres://{db}:{}@127.0.0.1:{}/{db}",
                    hide(&password),
                    ports.postgres
                ),
            )
        })
        .collect();
    let client_secrets = [
        ("consumer-api", &secrets.client_consumer_api),
        ("merchant-api", &secrets.client_merchant_api),
        ("orchestrator", &secrets.client_orchestrator),
        ("merchant-dashboard", &secrets.client_merchant_dashboard),
        ("wallet-web", &secrets.client_wallet_web),
        ("paytool-operator", &secrets.client_operator),
    ]
    .into_iter()
    .map(|(client, secret)| (client.to_string(), hide(secret)))
    .chain(
        components::keycloak::made_clients(home, &secrets)
            .into_iter()
            .map(|(client, secret)| (client, hide(&secret))),
    )
    .collect();
    Ok(Status {
        format: STATUS_FORMAT,
        home: home.dir.clone(),
        installation_id: home.marker.installation_id.clone(),
        running: supervisor.is_some(),
        phase: runtime.as_ref().map(|r| r.phase),
        supervisor_pid: supervisor,
        gateway: Gateway {
            http_port: ports.gateway_http,
            https_port: ports.gateway_https,
            ca_certificate: TlsFiles::of(home).ca_cert,
        },
        components: components_out,
        connections: Connections {
            postgres_admin_url: format!(
                "postgres://postgres:{}@127.0.0.1:{}/postgres",
                hide(&secrets.postgres_superuser),
                ports.postgres
            ),
            databases,
            kafka_bootstrap: components::kafka::bootstrap(home),
            keycloak_url: format!("http://127.0.0.1:{}", ports.keycloak),
            keycloak_public_url: ports.public_url("sso"),
            keycloak_realm: components::keycloak::REALM.to_string(),
            keycloak_admin_user: components::keycloak::ADMIN_USER.to_string(),
            keycloak_admin_password: hide(&secrets.keycloak_admin),
            client_secrets,
            registry: home.marker.delivery.then(|| RegistryAccess {
                url: ports.public_url("registry"),
                local_url: components::registry::url(home),
                user: components::registry::USER.to_string(),
                password: hide(&components::registry::password(&secrets)),
            }),
            git: home.marker.delivery.then(|| ServerAccess {
                url: ports.public_url("git"),
                user: components::git::USER.to_string(),
                password: hide(&components::git::password(&secrets)),
                client: components::git::CLIENT.to_string(),
            }),
            ci: home.marker.delivery.then(|| ServerAccess {
                url: ports.public_url("ci"),
                user: components::ci::USER.to_string(),
                password: hide(&components::ci::password(&secrets)),
                client: components::ci::CLIENT.to_string(),
            }),
            operations: OperationsAccess {
                urls: components::sign_in::HOSTS
                    .iter()
                    .map(|host| (host.to_string(), ports.public_url(host)))
                    .collect(),
                user: components::sign_in::USER.to_string(),
                password: hide(&components::sign_in::password(&secrets)),
            },
        },
    })
}

impl Status {
    pub fn all_healthy(&self) -> bool {
        // A component still being built (the collector and Jaeger on a first `up`) is
        // expected to be missing for a while, and says so in its state and message. Anything
        // else must be ready as the supervisor sees it, not only answer its probe: a component
        // the supervisor gave up on may have left a process behind that still answers.
        self.running
            && self.components.iter().all(|c| {
                c.state == ComponentPhase::Building
                    || (c.health == Health::Healthy && c.state == ComponentPhase::Ready)
            })
    }

    pub fn print_table(&self) {
        let headline = match (self.running, self.phase) {
            (false, _) => "not running".to_string(),
            (true, Some(phase)) => format!("{phase:?}").to_lowercase(),
            (true, None) => "running".to_string(),
        };
        println!("paytool at {} — {headline}", self.home.display());
        println!("COMPONENT         STATE            PID HEALTH     RESTARTS  URLS");
        for c in &self.components {
            println!(
                "{:<17} {:<11} {:>8} {:<10} {:>8}  {}",
                c.id,
                format!("{:?}", c.state).to_lowercase(),
                c.pid.map_or("-".to_string(), |p| p.to_string()),
                format!("{:?}", c.health).to_lowercase(),
                c.restarts,
                c.urls.join(" "),
            );
        }
        for c in &self.components {
            if matches!(
                c.state,
                ComponentPhase::Building
                    | ComponentPhase::Failed
                    | ComponentPhase::Restarting
                    | ComponentPhase::Unready
                    | ComponentPhase::RollingOut
            ) {
                if let Some(message) = &c.message {
                    println!("{}: {message}", c.id);
                }
            }
        }
    }
}
