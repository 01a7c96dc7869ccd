//! The platform's own Rust services, started from the binaries beside `paytool`.

use super::toxiproxy::{self, Destination};
use super::{http_probe, Component, ComponentName, Ctx, Spec};
use crate::runtime::home::{Home, Secrets};
use crate::runtime::probe::Probe;
use nix::sys::signal::Signal;

/// The platform's own services. Every property below is an exhaustive match: a fourth
/// service is a compile error in each place until it has its port, database and secret.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Service {
    Orchestrator,
    ConsumerApi,
    MerchantApi,
}

impl From<crate::args::ServiceName> for Service {
    fn from(name: crate::args::ServiceName) -> Self {
        use crate::args::ServiceName;
        match name {
            ServiceName::Orchestrator => Self::Orchestrator,
            ServiceName::ConsumerApi => Self::ConsumerApi,
            ServiceName::MerchantApi => Self::MerchantApi,
        }
    }
}

impl Service {
    pub const ALL: [Service; 3] = [Self::Orchestrator, Self::ConsumerApi, Self::MerchantApi];

    pub fn component_name(self) -> ComponentName {
        match self {
            Self::Orchestrator => ComponentName::Orchestrator,
            Self::ConsumerApi => ComponentName::ConsumerApi,
            Self::MerchantApi => ComponentName::MerchantApi,
        }
    }

    /// The binary's name, the Keycloak client id and the token audience: all the same.
    pub fn as_str(self) -> &'static str {
        self.component_name().as_str()
    }

    /// Its place in the installation's port range for extra instances (`Ports::instance_port`).
    fn index(self) -> u16 {
        match self {
            Self::Orchestrator => 0,
            Self::ConsumerApi => 1,
            Self::MerchantApi => 2,
        }
    }

    /// Instance 0's port: the one the service has always had.
    pub fn port(self, home: &Home) -> u16 {
        self.instance_port(home, 0)
    }

    pub fn instance_port(self, home: &Home, instance: u8) -> u16 {
        home.ports().instance_port(self.index(), instance)
    }

    /// How many instances the installation runs (`paytool up --replicas`).
    pub fn replicas(self, home: &Home) -> u8 {
        let replicas = home.marker.replicas;
        match self {
            Self::Orchestrator => replicas.orchestrator,
            Self::ConsumerApi => replicas.consumer_api,
            Self::MerchantApi => replicas.merchant_api,
        }
    }

    pub fn set_replicas(self, replicas: &mut crate::runtime::home::Replicas, count: u8) {
        match self {
            Self::Orchestrator => replicas.orchestrator = count,
            Self::ConsumerApi => replicas.consumer_api = count,
            Self::MerchantApi => replicas.merchant_api = count,
        }
    }

    /// Where the other services call it: the gateway's internal listener, which balances over
    /// the instances that are ready (never one being drained).
    pub fn internal_url(self, home: &Home) -> String {
        format!("http://127.0.0.1:{}", self.internal_port(home))
    }

    pub fn internal_port(self, home: &Home) -> u16 {
        let ports = home.ports();
        match self {
            Self::Orchestrator => ports.internal_orchestrator,
            Self::ConsumerApi => ports.internal_consumer_api,
            Self::MerchantApi => ports.internal_merchant_api,
        }
    }

    /// The nginx upstream that balances over its instances.
    pub fn upstream(self) -> &'static str {
        match self {
            Self::Orchestrator => "orchestrator",
            Self::ConsumerApi => "consumer_api",
            Self::MerchantApi => "merchant_api",
        }
    }

    pub fn of(name: ComponentName) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.component_name() == name)
    }

    /// The database each service owns (one per service) and its role, which has the same name.
    pub fn database(self) -> String {
        self.as_str().replace('-', "_")
    }

    pub fn database_password(self, secrets: &Secrets) -> &str {
        match self {
            Self::Orchestrator => &secrets.db_orchestrator,
            Self::ConsumerApi => &secrets.db_consumer_api,
            Self::MerchantApi => &secrets.db_merchant_api,
        }
    }

    /// The database URL the service itself is given: through its Toxiproxy route with
    /// `--chaos`.
    pub fn database_url(self, ctx: &Ctx) -> String {
        self.database_url_at(
            &ctx.secrets,
            toxiproxy::reach(&ctx.home, self, Destination::Postgres),
        )
    }

    /// Its database, as its own role: what the service itself may read and write (directly,
    /// never through a proxy: the chaos invariants read it while the network is broken).
    pub fn database_url_in(self, home: &Home, secrets: &Secrets) -> String {
        self.database_url_at(secrets, home.ports().postgres)
    }

    fn database_url_at(self, secrets: &Secrets, port: u16) -> String {
        let db = self.database();
        format!(
            "postgres://{db}:{}@127.0.0.1:{port}/{db}",
            self.database_password(secrets),
        )
    }

    fn client_secret(self, secrets: &Secrets) -> &str {
        match self {
            Self::Orchestrator => &secrets.client_orchestrator,
            Self::ConsumerApi => &secrets.client_consumer_api,
            Self::MerchantApi => &secrets.client_merchant_api,
        }
    }
}

impl Component for Service {
    fn name(&self) -> ComponentName {
        self.component_name()
    }

    fn spec(&self, ctx: &Ctx) -> anyhow::Result<Spec> {
        spec(ctx, *self, 0)
    }

    fn specs(&self, ctx: &Ctx) -> anyhow::Result<Vec<Spec>> {
        (0..self.replicas(&ctx.home))
            .map(|instance| spec(ctx, *self, instance))
            .collect()
    }

    fn probe(&self, home: &Home, secrets: &Secrets) -> Probe {
        self.instance_probe(home, secrets, 0)
    }

    fn instance_probe(&self, home: &Home, _secrets: &Secrets, instance: u8) -> Probe {
        http_probe(format!(
            "http://127.0.0.1:{}/health/ready",
            self.instance_port(home, instance)
        ))
    }
}

fn spec(ctx: &Ctx, service: Service, instance: u8) -> anyhow::Result<Spec> {
    let name = service.as_str();
    let port = service.instance_port(&ctx.home, instance);
    // Where it calls Keycloak and the other services: through Toxiproxy with `--chaos`.
    let keycloak = format!(
        "http://127.0.0.1:{}",
        toxiproxy::reach(&ctx.home, service, Destination::Keycloak)
    );
    let calls = |to: Destination| {
        format!(
            "http://127.0.0.1:{}",
            toxiproxy::reach(&ctx.home, service, to)
        )
    };
    let public = match service {
        Service::ConsumerApi => vec![
            ctx.home.ports().public_url("api"),
            ctx.home.ports().public_url("wallet"),
        ],
        Service::MerchantApi => vec![ctx.home.ports().public_url("merchant")],
        Service::Orchestrator => Vec::new(),
    };
    let mut env: Vec<(String, String)> = vec![
        ("APP__HTTP__HOST".into(), "127.0.0.1".into()),
        ("APP__HTTP__PORT".into(), port.to_string()),
        ("APP__DATABASE__URL".into(), service.database_url(ctx)),
        // The service's own account: registering users, calling the orchestrator.
        ("APP__KEYCLOAK__BASE_URL".into(), keycloak.clone()),
        (
            "APP__KEYCLOAK__REALM".into(),
            super::keycloak::REALM.to_string(),
        ),
        ("APP__KEYCLOAK__CLIENT_ID".into(), name.to_string()),
        (
            "APP__KEYCLOAK__CLIENT_SECRET".into(),
            service.client_secret(&ctx.secrets).to_string(),
        ),
        (
            "APP__ORCHESTRATOR__BASE_URL".into(),
            calls(Destination::Orchestrator),
        ),
        // Each service relays its outbox to Kafka; merchant-api also consumes payments.v1.
        // Every broker: a client that starts while one is down still finds the cluster.
        (
            "APP__KAFKA__BOOTSTRAP_SERVERS".into(),
            super::kafka::bootstrap(&ctx.home),
        ),
    ];
    env.extend(auth_env(&ctx.home, name, &keycloak));
    env.extend(telemetry_env(&ctx.home));
    if service == Service::ConsumerApi {
        // The wallet's sign-in (a backend-for-frontend at wallet.local.test).
        env.extend(web_env(
            ctx,
            &keycloak,
            "wallet",
            "wallet-web",
            &ctx.secrets.client_wallet_web,
        ));
        // Only the service that makes payment codes gets the key they are derived with.
        env.push((
            "APP__PAYMENT_CODE_KEY".into(),
            ctx.secrets.payment_code_key.clone(),
        ));
        // Paying a merchant's QR code goes through merchant-api, which owns payment requests.
        env.push((
            "APP__MERCHANT_API__BASE_URL".into(),
            calls(Destination::MerchantApi),
        ));
    }
    if service == Service::MerchantApi {
        // Charging a consumer's code goes through consumer-api, which owns the codes.
        env.push((
            "APP__CONSUMER_API__BASE_URL".into(),
            calls(Destination::ConsumerApi),
        ));
        // The dashboard's sign-in (a backend-for-frontend).
        env.extend(web_env(
            ctx,
            &keycloak,
            "merchant",
            "merchant-dashboard",
            &ctx.secrets.client_merchant_dashboard,
        ));
    }
    Ok(Spec {
        name: service.component_name(),
        instance,
        program: ctx.bin_dir.join(name),
        args: Vec::new(),
        env,
        cwd: ctx.home.dir.clone(),
        run_as: None,
        ports: vec![("http", port)],
        urls: [vec![format!("http://127.0.0.1:{port}")], public].concat(),
        probe: service.instance_probe(&ctx.home, &ctx.secrets, instance),
        ready_timeout_ms: 30_000,
        // SIGTERM drains: readiness fails, in-flight requests and streams finish (paykit's
        // `serve_draining`, bounded below this), then it exits.
        stop_signal: Signal::SIGTERM,
        stop_timeout_ms: 10_000,
    })
}

/// How a service checks bearer tokens (paykit's `AuthSettings`, the Kotlin template's
/// `Settings.Auth`): verified locally against the realm's keys, fetched from `keycloak` (a
/// loopback URL); `iss` is the realm's public URL, `aud` must name the service.
pub fn auth_env(home: &Home, audience: &str, keycloak: &str) -> Vec<(String, String)> {
    let realm = super::keycloak::REALM;
    vec![
        (
            "APP__AUTH__ISSUER".into(),
            format!("{}/realms/{realm}", home.ports().public_url("sso")),
        ),
        (
            "APP__AUTH__JWKS_URL".into(),
            format!("{keycloak}/realms/{realm}/protocol/openid-connect/certs"),
        ),
        ("APP__AUTH__AUDIENCE".into(), audience.to_string()),
    ]
}

/// What every service the platform runs (its own and the scaffolded ones) is told about logs
/// and traces: spans go to the collector (and on to Jaeger), with OpenTelemetry's standard
/// sampler settings: a trace the gateway (or another service) started is sampled as it
/// decided; one a service starts itself (an event relayed, a recovery round) by the
/// installation's share.
pub fn telemetry_env(home: &Home) -> [(String, String); 4] {
    [
        ("RUST_LOG".into(), "info".into()),
        (
            paykit::telemetry::OTLP_ENDPOINT_ENV.into(),
            super::observability::otlp_endpoint(home),
        ),
        (
            "OTEL_TRACES_SAMPLER".into(),
            "parentbased_traceidratio".into(),
        ),
        (
            "OTEL_TRACES_SAMPLER_ARG".into(),
            format!("{}", f64::from(home.marker.trace_sample_percent) / 100.0),
        ),
    ]
}

/// A backend-for-frontend's sign-in settings (APP__WEB__*): browsers are sent to Keycloak's
/// public pages; the code is exchanged for tokens over loopback with the client's secret.
fn web_env(
    ctx: &Ctx,
    keycloak: &str,
    host: &str,
    client_id: &str,
    secret: &str,
) -> [(String, String); 6] {
    let ports = ctx.home.ports();
    [
        ("APP__WEB__PUBLIC_BASE_URL".into(), ports.public_url(host)),
        ("APP__WEB__CLIENT_ID".into(), client_id.into()),
        ("APP__WEB__CLIENT_SECRET".into(), secret.into()),
        (
            "APP__WEB__KEYCLOAK_PUBLIC_URL".into(),
            ports.public_url("sso"),
        ),
        ("APP__WEB__KEYCLOAK_INTERNAL_URL".into(), keycloak.into()),
        ("APP__WEB__REALM".into(), super::keycloak::REALM.into()),
    ]
}

/// The service binaries `up` needs, with the ones that are missing.
pub fn missing_binaries(bin_dir: &std::path::Path) -> Vec<&'static str> {
    Service::ALL
        .iter()
        .map(|s| s.as_str())
        .filter(|s| !bin_dir.join(s).is_file())
        .collect()
}
