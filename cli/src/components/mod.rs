//! The platform's components: how each is prepared, started, probed, stopped, and what runs
//! once it is ready. The supervisor drives them; nothing here loops or waits on its own.

pub mod alerting;
pub mod gateway;
pub mod kafka;
pub mod keycloak;
pub mod observability;
pub mod postgres;
pub mod services;

use crate::home::{Home, Secrets};
use crate::probe::Probe;
use crate::setup::Tools;
use nix::sys::signal::Signal;
use std::path::PathBuf;

/// Start order: every component of a wave starts at once; a wave starts when the previous
/// one is ready. Stopping runs the other way round.
pub const WAVES: &[&[&str]] = &[
    &[
        "postgres",
        "kafka",
        "jaeger",
        "otel-collector",
        "agent",
        "alertmanager",
        "prometheus",
    ],
    &["keycloak", "orchestrator", "consumer-api", "merchant-api"],
    &["gateway"],
];

pub fn names() -> impl Iterator<Item = &'static str> {
    WAVES.iter().flat_map(|wave| wave.iter().copied())
}

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
    pub name: &'static str,
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

pub fn spec(ctx: &Ctx, name: &str) -> anyhow::Result<Spec> {
    match name {
        "postgres" => postgres::spec(ctx),
        "kafka" => kafka::spec(ctx),
        "keycloak" => keycloak::spec(ctx),
        "gateway" => gateway::spec(ctx),
        "jaeger" => observability::spec(ctx, "jaeger"),
        "otel-collector" => observability::spec(ctx, "otel-collector"),
        "prometheus" => alerting::spec(ctx, "prometheus"),
        "alertmanager" => alerting::spec(ctx, "alertmanager"),
        "agent" => alerting::spec(ctx, "agent"),
        other => services::spec(ctx, other),
    }
}

/// The probe that says whether a component is healthy, from the installation alone (no tools
/// needed), so that `status` can ask it too.
pub fn probe(home: &Home, secrets: &Secrets, name: &str) -> Probe {
    let ports = home.ports();
    match name {
        "postgres" => Probe::Postgres {
            url: postgres::admin_url(home, secrets),
        },
        "kafka" => Probe::Kafka {
            bootstrap: kafka::bootstrap(home),
        },
        "keycloak" => Probe::Http {
            url: format!(
                "http://127.0.0.1:{}/health/ready",
                ports.keycloak_management
            ),
            resolve: None,
            ca: None,
        },
        "gateway" => gateway::probe(home),
        "jaeger" | "otel-collector" => observability::probe(home, name),
        "prometheus" | "alertmanager" | "agent" => alerting::probe(home, name),
        service => Probe::Http {
            url: format!(
                "http://127.0.0.1:{}/health/ready",
                services::port(home, service)
            ),
            resolve: None,
            ca: None,
        },
    }
}

/// One-time and every-start preparation before a component is spawned.
pub async fn prepare(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    match name {
        "postgres" => postgres::prepare(ctx).await,
        "kafka" => kafka::prepare(ctx).await,
        "keycloak" => keycloak::prepare(ctx).await,
        "gateway" => gateway::prepare(ctx).await,
        "jaeger" | "otel-collector" => observability::prepare(ctx, name).await,
        "prometheus" | "alertmanager" | "agent" => alerting::prepare(ctx, name).await,
        _ => Ok(()),
    }
}

/// Work that needs the component up: databases, topics, the realm. Idempotent, because it
/// runs again after every restart.
pub async fn after_ready(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    match name {
        "postgres" => postgres::after_ready(ctx).await,
        "kafka" => kafka::after_ready(ctx).await,
        "keycloak" => keycloak::after_ready(ctx).await,
        _ => Ok(()),
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

/// Runs a preparation command to completion, with its output in the component's log.
pub async fn run_to_log(
    ctx: &Ctx,
    component: &str,
    command: &mut tokio::process::Command,
) -> anyhow::Result<()> {
    let log_path = ctx.home.log_path(component);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let status = command
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .await
        .map_err(|e| anyhow::anyhow!("cannot run {:?}: {e}", command.as_std().get_program()))?;
    if !status.success() {
        let tail = crate::logs::tail_lines(&log_path, 5)
            .unwrap_or_default()
            .join(" | ");
        anyhow::bail!(
            "{:?} failed ({status}); see {}: {tail}",
            command.as_std().get_program(),
            log_path.display()
        );
    }
    Ok(())
}
