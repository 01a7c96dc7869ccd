//! The platform's components: how each is prepared, started, probed, stopped, and what runs
//! once it is ready. The supervisor drives them; nothing here loops or waits on its own.

use crate::runtime::home::{Home, Secrets};
use crate::runtime::probe::Probe;
use crate::runtime::setup::Tools;
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

/// Every component of the local runtime. A name that is not here does not compile: nothing
/// falls back to another component's port or secret. Serialized (state file, `status --json`)
/// and parsed (`paytool logs NAME`) in kebab-case, as the components have always been named.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ComponentName {
    /// `paytool up --ha` only: the consensus store of Patroni, and its two PostgreSQL nodes.
    Etcd,
    Patroni,
    /// `paytool up --chaos` only: the proxies the services call through, where network faults
    /// are made.
    Toxiproxy,
    Postgres,
    PostgresExporter,
    Kafka,
    Jaeger,
    OtelCollector,
    /// Every component's log, sent by the collector; searched at `logs.local.test` and by
    /// `paytool logs --query`. One word, as the program names itself.
    #[serde(rename = "victorialogs")]
    VictoriaLogs,
    /// The sign-in (OAuth2 Proxy with Keycloak) the gateway asks before the operators' web UIs.
    SignIn,
    Agent,
    Alertmanager,
    Prometheus,
    /// `paytool up --delivery` only: the image registry, the git server, the CI server's
    /// master and its worker.
    Registry,
    Git,
    Ci,
    CiWorker,
    Keycloak,
    Orchestrator,
    ConsumerApi,
    MerchantApi,
    Gateway,
    /// A service scaffolded into the project (`paytool scaffold service`), named after itself
    /// (untagged: serialized and parsed as its bare name). Not a target of chaos experiments.
    #[serde(untagged)]
    #[schemars(skip)]
    App(apps::App),
}

impl ComponentName {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Etcd => "etcd",
            Self::Patroni => "patroni",
            Self::Toxiproxy => "toxiproxy",
            Self::Registry => "registry",
            Self::Git => "git",
            Self::Ci => "ci",
            Self::CiWorker => "ci-worker",
            Self::Postgres => "postgres",
            Self::PostgresExporter => "postgres-exporter",
            Self::Kafka => "kafka",
            Self::Jaeger => "jaeger",
            Self::OtelCollector => "otel-collector",
            Self::VictoriaLogs => "victorialogs",
            Self::SignIn => "sign-in",
            Self::Agent => "agent",
            Self::Alertmanager => "alertmanager",
            Self::Prometheus => "prometheus",
            Self::Keycloak => "keycloak",
            Self::Orchestrator => "orchestrator",
            Self::ConsumerApi => "consumer-api",
            Self::MerchantApi => "merchant-api",
            Self::Gateway => "gateway",
            Self::App(app) => app.as_str(),
        }
    }

    /// How this component is prepared, started and probed.
    pub fn component(self) -> &'static dyn Component {
        match self {
            Self::Etcd => &patroni::Etcd,
            Self::Patroni => &patroni::Patroni,
            Self::Toxiproxy => &toxiproxy::Toxiproxy,
            Self::Registry => &registry::Registry,
            Self::Git => &git::Git,
            Self::Ci => &ci::Ci::Ci,
            Self::CiWorker => &ci::Ci::CiWorker,
            Self::Postgres => &postgres::Postgres,
            Self::PostgresExporter => &postgres_exporter::PostgresExporter,
            Self::Kafka => &kafka::Kafka,
            Self::Keycloak => &keycloak::Keycloak,
            Self::Gateway => &gateway::Gateway,
            Self::Jaeger => &observability::Tracing::Jaeger,
            Self::OtelCollector => &observability::Tracing::OtelCollector,
            Self::VictoriaLogs => &observability::Tracing::VictoriaLogs,
            Self::SignIn => &sign_in::SignIn,
            Self::Prometheus => &alerting::Alerting::Prometheus,
            Self::Alertmanager => &alerting::Alerting::Alertmanager,
            Self::Agent => &alerting::Alerting::Agent,
            Self::Orchestrator => &services::Service::Orchestrator,
            Self::ConsumerApi => &services::Service::ConsumerApi,
            Self::MerchantApi => &services::Service::MerchantApi,
            Self::App(app) => app.as_component(),
        }
    }
}

impl ComponentName {
    /// How many instances of it the installation runs: a service's replicas, PostgreSQL's
    /// high-availability parts only with `--ha` (two Patroni nodes), Kafka's brokers
    /// (`--kafka-brokers`), Toxiproxy only with `--chaos`, the registry only with
    /// `--delivery` (and the git server), one of anything else.
    pub fn instances(self, home: &Home) -> u8 {
        match self {
            Self::Etcd => u8::from(home.marker.ha),
            Self::Patroni => 2 * u8::from(home.marker.ha),
            Self::Kafka => home.marker.kafka_brokers,
            Self::Toxiproxy => u8::from(home.marker.chaos),
            Self::Registry | Self::Git | Self::Ci | Self::CiWorker => {
                u8::from(home.marker.delivery)
            }
            Self::Orchestrator | Self::ConsumerApi | Self::MerchantApi => {
                services::Service::of(self).map_or(1, |service| service.replicas(home))
            }
            _ => 1,
        }
    }
}

impl std::fmt::Display for ComponentName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for ComponentName {
    type Err = anyhow::Error;

    /// One of the platform's components, or else a scaffolded service's name (whether the
    /// installation runs it is for the caller to say).
    fn from_str(text: &str) -> anyhow::Result<Self> {
        if let Some(name) = names().find(|name| name.as_str() == text) {
            return Ok(name);
        }
        apps::App::named(text).map(Self::App).map_err(|_| {
            let known: Vec<&str> = names().map(ComponentName::as_str).collect();
            anyhow::anyhow!(
                "unknown component {text:?}: one of {}, or a scaffolded service's name",
                known.join(", ")
            )
        })
    }
}

/// Start order: every component of a wave starts at once; a wave starts when the previous
/// one is ready. Stopping runs the other way round. PostgreSQL's exporter waits for the second
/// wave because it sets up its monitoring role before it starts.
pub const WAVES: &[&[ComponentName]] = &[
    // Empty unless `--ha`: PostgreSQL's nodes and their store come before its address
    // (HAProxy, then the `postgres` component). Toxiproxy (`--chaos`) needs nothing up to make
    // its proxies, and must answer before the services call through it.
    &[
        ComponentName::Etcd,
        ComponentName::Patroni,
        ComponentName::Toxiproxy,
    ],
    &[
        ComponentName::Postgres,
        ComponentName::Kafka,
        ComponentName::Jaeger,
        ComponentName::OtelCollector,
        ComponentName::VictoriaLogs,
        ComponentName::Agent,
        ComponentName::Alertmanager,
        ComponentName::Prometheus,
        ComponentName::Registry,
        ComponentName::Git,
        ComponentName::Ci,
    ],
    &[
        ComponentName::PostgresExporter,
        ComponentName::Keycloak,
        ComponentName::Orchestrator,
        ComponentName::ConsumerApi,
        ComponentName::MerchantApi,
        ComponentName::CiWorker,
    ],
    // The sign-in asks Keycloak for its OpenID configuration when it starts.
    &[ComponentName::Gateway, ComponentName::SignIn],
];

/// Every component of the platform itself, in start order.
pub fn names() -> impl Iterator<Item = ComponentName> {
    WAVES.iter().flat_map(|wave| wave.iter().copied())
}

/// The start waves of an installation: [`WAVES`], with its scaffolded services starting beside
/// the platform's own (they need PostgreSQL and the collector, which the waves before start).
pub fn waves(home: &Home) -> Vec<Vec<ComponentName>> {
    let mut waves: Vec<Vec<ComponentName>> = WAVES.iter().map(|wave| wave.to_vec()).collect();
    let services = waves
        .iter()
        .position(|wave| wave.contains(&ComponentName::Orchestrator))
        .expect("a wave starts the services");
    waves[services].extend(apps::of(home).into_iter().map(ComponentName::App));
    waves
}

/// Every component of an installation, in start order: the platform's and its scaffolded
/// services.
pub fn names_of(home: &Home) -> impl Iterator<Item = ComponentName> {
    waves(home).into_iter().flatten()
}

/// Every instance the installation runs, in start order: one of each component, a service's
/// replicas, PostgreSQL's high-availability parts only with `--ha`, its scaffolded services.
pub fn instances(home: &Home) -> impl Iterator<Item = (ComponentName, u8)> + '_ {
    names_of(home)
        .flat_map(move |name| (0..name.instances(home)).map(move |instance| (name, instance)))
}

/// A preparation step's future (boxed so that `Component` can be a trait object).
pub type Step<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>;

/// One engine of the local runtime, one implementation per file of this module. The
/// supervisor drives them; nothing here loops or waits on its own.
pub trait Component: Sync {
    fn name(&self) -> ComponentName;

    /// How to run it: program, arguments, environment, ports, probe and stop signal.
    fn spec(&self, ctx: &Ctx) -> anyhow::Result<Spec>;

    /// How to run each of its instances: one, unless it is a service with replicas; none for
    /// a component the installation does not run (the registry without `--delivery`).
    fn specs(&self, ctx: &Ctx) -> anyhow::Result<Vec<Spec>> {
        if self.name().instances(&ctx.home) == 0 {
            return Ok(Vec::new());
        }
        Ok(vec![self.spec(ctx)?])
    }

    /// The probe that says whether it is healthy, from the installation alone (no tools
    /// needed), so that `status` can ask it too.
    fn probe(&self, home: &Home, secrets: &Secrets) -> Probe;

    /// The probe of one of its instances (services, Patroni and Kafka have more than
    /// instance 0).
    fn instance_probe(&self, home: &Home, secrets: &Secrets, _instance: u8) -> Probe {
        self.probe(home, secrets)
    }

    /// One-time and every-start preparation before it is spawned.
    fn prepare<'a>(&'a self, _ctx: &'a Ctx) -> Step<'a> {
        Box::pin(async { Ok(()) })
    }

    /// The preparation of one of its instances before it is spawned: `prepare`, unless each
    /// instance has its own (a Kafka broker formats only its own storage: its siblings start
    /// at the same moment).
    fn prepare_instance<'a>(&'a self, ctx: &'a Ctx, _instance: u8) -> Step<'a> {
        self.prepare(ctx)
    }

    /// Whether `paytool up` may start the platform before this component's binaries exist,
    /// building them in the background (the collector and Jaeger, built from source for about
    /// ten minutes on a fresh machine); the supervisor then starts it once they are built.
    fn built_in_background(&self) -> bool {
        false
    }

    /// Work that needs it up: databases, topics, the realm. Idempotent, because it runs
    /// again after every restart.
    fn after_ready<'a>(&'a self, _ctx: &'a Ctx) -> Step<'a> {
        Box::pin(async { Ok(()) })
    }
}

/// The `Component` of an engine whose module has the free functions `spec(ctx)` and
/// `probe(home, secrets)`, and hooks (`prepare`, `after_ready`) named after their functions:
/// one unit struct per engine without writing the same delegation each time.
///
/// `family` makes one enum for engines that share a module (Jaeger and the collector;
/// Prometheus, Alertmanager and the agent): its variants are named as in `ComponentName`, and
/// the module's functions take the variant (`spec(ctx, which)`, `probe(home, which)`,
/// `prepare(ctx, which)`).
macro_rules! engine_component {
    ($(#[$doc:meta])* $ty:ident, $name:ident $(, $hook:ident = $function:path)* $(,)?) => {
        $(#[$doc])*
        pub struct $ty;

        impl $crate::runtime::components::Component for $ty {
            fn name(&self) -> $crate::runtime::components::ComponentName {
                $crate::runtime::components::ComponentName::$name
            }

            fn spec(
                &self,
                ctx: &$crate::runtime::components::Ctx,
            ) -> anyhow::Result<$crate::runtime::components::Spec> {
                spec(ctx)
            }

            fn probe(
                &self,
                home: &$crate::runtime::home::Home,
                secrets: &$crate::runtime::home::Secrets,
            ) -> $crate::runtime::probe::Probe {
                probe(home, secrets)
            }

            $(fn $hook<'a>(
                &'a self,
                ctx: &'a $crate::runtime::components::Ctx,
            ) -> $crate::runtime::components::Step<'a> {
                Box::pin($function(ctx))
            })*
        }
    };
    (family $(#[$doc:meta])* $ty:ident { $($variant:ident),+ $(,)? } $(, built_in_background = $background:expr)? $(,)?) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub enum $ty {
            $($variant),+
        }

        impl $crate::runtime::components::Component for $ty {
            fn name(&self) -> $crate::runtime::components::ComponentName {
                match self {
                    $(Self::$variant => $crate::runtime::components::ComponentName::$variant),+
                }
            }

            fn spec(
                &self,
                ctx: &$crate::runtime::components::Ctx,
            ) -> anyhow::Result<$crate::runtime::components::Spec> {
                spec(ctx, *self)
            }

            fn probe(
                &self,
                home: &$crate::runtime::home::Home,
                _secrets: &$crate::runtime::home::Secrets,
            ) -> $crate::runtime::probe::Probe {
                probe(home, *self)
            }

            fn prepare<'a>(
                &'a self,
                ctx: &'a $crate::runtime::components::Ctx,
            ) -> $crate::runtime::components::Step<'a> {
                Box::pin(prepare(ctx, *self))
            }

            $(fn built_in_background(&self) -> bool {
                $background
            })?
        }
    };
}
pub(crate) use engine_component;

pub mod alerting;
pub mod apps;
pub mod ci;
pub mod gateway;
pub mod git;
pub mod kafka;
pub mod kafka_metrics;
pub mod keycloak;
pub mod observability;
pub mod patroni;
pub mod postgres;
pub mod postgres_exporter;
pub mod registry;
pub mod services;
pub mod sign_in;
pub mod toxiproxy;

/// Everything a component needs to know about its installation.
pub struct Ctx {
    pub home: Home,
    pub project: PathBuf,
    pub secrets: Secrets,
    pub tools: Tools,
    pub bin_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub name: ComponentName,
    /// Which of its instances (0 unless a service runs replicas).
    pub instance: u8,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// Run as this system user (the supervisor runs as root): PostgreSQL refuses root.
    pub run_as: Option<String>,
    pub ports: Vec<(&'static str, u16)>,
    pub urls: Vec<String>,
    pub probe: Probe,
    pub ready_timeout_ms: u64,
    pub stop_signal: Signal,
    /// After this, SIGKILL.
    pub stop_timeout_ms: u64,
}

impl Spec {
    /// The instance's name in logs, state and `status`: the component's name for instance 0,
    /// `consumer-api.1` for the next.
    pub fn id(&self) -> String {
        instance_id(self.name, self.instance)
    }

    /// The instance as the state file keys it.
    pub fn key(&self) -> (ComponentName, u8) {
        (self.name, self.instance)
    }
}

/// `name` for instance 0, `name.N` for instance N: how an instance is named in its log file,
/// `paytool logs` and `status`.
pub fn instance_id(name: ComponentName, instance: u8) -> String {
    match instance {
        0 => name.as_str().to_string(),
        n => format!("{name}.{n}"),
    }
}

/// A probe for a component that answers `GET url` with 2xx when ready, on loopback.
pub fn http_probe(url: String) -> Probe {
    Probe::Http {
        url,
        resolve: None,
        ca: None,
    }
}

/// Renders a Tera template from `stacks/` with the given context.
pub fn render(ctx: &Ctx, template: &str, context: &tera::Context) -> anyhow::Result<String> {
    let path = ctx.project.join(template);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("cannot read the template {}: {e}", path.display()))?;
    tera::Tera::one_off(&text, context, false)
        .map_err(|e| anyhow::anyhow!("cannot render {}: {e:?}", path.display()))
}

/// A preparation command (formatting Kafka's storage, copying Keycloak, `nginx -t`) that takes
/// longer than this is stuck: it is killed and the component's start fails with its log.
pub const RUN_TO_LOG_TIMEOUT_MS: u64 = 300_000;

/// Runs a preparation command to completion (within `RUN_TO_LOG_TIMEOUT_MS`), with its output
/// in the log of the component's instance.
pub async fn run_to_log(
    ctx: &Ctx,
    component: ComponentName,
    instance: u8,
    command: &mut tokio::process::Command,
) -> anyhow::Result<()> {
    let log_path = ctx.home.log_path(&instance_id(component, instance));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let program = command.as_std().get_program().to_owned();
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run {program:?}: {e}"))?;
    let timeout = std::time::Duration::from_millis(RUN_TO_LOG_TIMEOUT_MS);
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => status?,
        Err(_) => {
            child.kill().await.ok();
            anyhow::bail!(
                "{program:?} did not finish within {} s; see {}",
                RUN_TO_LOG_TIMEOUT_MS / 1000,
                log_path.display()
            );
        }
    };
    if !status.success() {
        let tail = crate::support::files::tail_lines(&log_path, 5)
            .unwrap_or_default()
            .join(" | ");
        anyhow::bail!(
            "{program:?} failed ({status}); see {}: {tail}",
            log_path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_component_is_named_the_same_in_json_in_logs_and_on_the_command_line() {
        for name in names() {
            let json = serde_json::to_value(name).expect("serialises");
            assert_eq!(json, name.as_str(), "{name:?}");
            assert_eq!(name.as_str().parse::<ComponentName>().ok(), Some(name));
        }
    }
}
