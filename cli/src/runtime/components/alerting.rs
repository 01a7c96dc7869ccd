//! Metrics and alerts of the local runtime: Prometheus and Alertmanager (Debian's packages) and
//! paytool's agent (`paytool __agent`: Alertmanager's webhook receiver, and the bridge that
//! turns the gateway's access log into spans). All on loopback.

use super::{http_probe, render, Component, ComponentName, Ctx, Spec};
use crate::observe::slo_rules as slo;
use crate::runtime::home::Home;
use crate::runtime::probe::Probe;
use anyhow::Context;
use nix::sys::signal::Signal;
use serde::Serialize;
use std::path::PathBuf;

const PROMETHEUS_TEMPLATE: &str = "stacks/local/prometheus/prometheus.yml.tera";
pub const RECORDING_RULES: &str = "stacks/local/prometheus/recording-rules.yaml";
const ALERTMANAGER_TEMPLATE: &str = "stacks/local/alertmanager/alertmanager.yml.tera";
pub const SLOS: &str = "stacks/observability/slos.yaml";

/// The installation's SLOs: the platform's (`SLOS`) and its scaffolded services'.
pub fn load_slos(home: &Home, project: &std::path::Path) -> anyhow::Result<slo::SloFile> {
    let apps: Vec<&str> = super::apps::of(home)
        .into_iter()
        .map(super::apps::App::as_str)
        .collect();
    slo::load_with_apps(project, &project.join(SLOS), &apps)
}
/// Tests shorten the SLO windows with this (60 turns 1h into 1m): see `slo::scaled_rules`.
pub const TIME_SCALE_ENV: &str = "PAYTOOL_SLO_TIME_SCALE";
const TIME_SCALE_MAX: u32 = 3600;

pub fn prometheus_url(home: &Home) -> String {
    format!("http://127.0.0.1:{}", home.ports().prometheus)
}

pub fn alertmanager_url(home: &Home) -> String {
    format!("http://127.0.0.1:{}", home.ports().alertmanager)
}

pub fn agent_url(home: &Home) -> String {
    format!("http://127.0.0.1:{}", home.ports().alert_receiver)
}

/// Where the agent keeps Alertmanager's notifications (read by `paytool alerts`).
pub fn alerts_dir(home: &Home) -> PathBuf {
    home.component_dir(ComponentName::Agent.as_str())
        .join("alerts")
}

/// The time scale of this `up` (1 unless a test set `PAYTOOL_SLO_TIME_SCALE`).
pub fn time_scale() -> anyhow::Result<u32> {
    match std::env::var(TIME_SCALE_ENV) {
        Err(_) => Ok(1),
        Ok(text) => text
            .parse()
            .ok()
            .filter(|scale| (1..=TIME_SCALE_MAX).contains(scale))
            .with_context(|| {
                format!("{TIME_SCALE_ENV}={text} is not a whole number from 1 to {TIME_SCALE_MAX}")
            }),
    }
}

super::engine_component!(
    family
    /// Prometheus, Alertmanager and paytool's agent: one implementation, since they share their
    /// layout (a directory with a rendered config, a data dir, one HTTP port).
    Alerting {
        Prometheus,
        Alertmanager,
        Agent,
    }
);

fn probe(home: &Home, which: Alerting) -> Probe {
    http_probe(match which {
        Alerting::Prometheus => format!("{}/-/ready", prometheus_url(home)),
        Alerting::Alertmanager => format!("{}/-/ready", alertmanager_url(home)),
        Alerting::Agent => format!("{}/health", agent_url(home)),
    })
}

fn spec(ctx: &Ctx, which: Alerting) -> anyhow::Result<Spec> {
    let home = &ctx.home;
    let ports = home.ports();
    let name = which.name();
    let dir = home.component_dir(name.as_str());
    let (program, args, ports_used, urls) = match which {
        Alerting::Prometheus => (
            ctx.tools.prometheus.clone(),
            vec![
                format!("--config.file={}", dir.join("prometheus.yml").display()),
                format!("--storage.tsdb.path={}", dir.join("data").display()),
                // Bounded: a local runtime keeps a week or 1 GiB, whichever comes first.
                "--storage.tsdb.retention.time=7d".into(),
                "--storage.tsdb.retention.size=1GB".into(),
                format!("--web.listen-address=127.0.0.1:{}", ports.prometheus),
                // The platform's dashboards, as console templates made from the Perses
                // dashboards at each start (observe::consoles).
                format!("--web.console.templates={}", dir.join("consoles").display()),
                format!(
                    "--web.console.libraries={}",
                    dir.join("console_libraries").display()
                ),
                "--log.format=json".into(),
            ],
            vec![("http", ports.prometheus)],
            vec![prometheus_url(home)],
        ),
        Alerting::Alertmanager => (
            ctx.tools.alertmanager.clone(),
            vec![
                format!("--config.file={}", dir.join("alertmanager.yml").display()),
                format!("--storage.path={}", dir.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{}", ports.alertmanager),
                // One instance: no gossip port, no cluster to wait for.
                "--cluster.listen-address=".into(),
                "--log.format=json".into(),
            ],
            vec![("http", ports.alertmanager)],
            vec![alertmanager_url(home)],
        ),
        Alerting::Agent => (
            std::env::current_exe().context("cannot find paytool's own executable")?,
            vec![
                "__agent".into(),
                format!("--listen=127.0.0.1:{}", ports.alert_receiver),
                format!("--spans-udp=127.0.0.1:{}", ports.gateway_spans),
                format!(
                    "--otlp-endpoint={}",
                    super::observability::otlp_endpoint(home)
                ),
                format!("--store={}", alerts_dir(home).display()),
                format!("--traces-listen=127.0.0.1:{}", ports.traces),
                format!(
                    "--jaeger-url={}",
                    super::observability::jaeger_query_url(home)
                ),
            ],
            vec![
                ("http", ports.alert_receiver),
                ("spans (udp)", ports.gateway_spans),
                ("traces", ports.traces),
            ],
            vec![agent_url(home)],
        ),
    };
    Ok(Spec {
        name,
        instance: 0,
        program,
        args,
        env: Vec::new(),
        cwd: dir,
        run_as: None,
        ports: ports_used,
        urls,
        probe: probe(home, which),
        ready_timeout_ms: 30_000,
        stop_signal: Signal::SIGTERM,
        stop_timeout_ms: 10_000,
    })
}

#[derive(Serialize)]
struct Target {
    job: &'static str,
    /// Every instance's port (services may run several; each is its own `instance` label).
    ports: Vec<u16>,
    path: &'static str,
}

/// A Prometheus duration of `seconds / scale`, at least one second.
fn scaled_seconds(seconds: u32, scale: u32) -> String {
    format!("{}s", (seconds / scale).max(1))
}

async fn prepare(ctx: &Ctx, which: Alerting) -> anyhow::Result<()> {
    let ports = ctx.home.ports();
    let dir = ctx.home.component_dir(which.name().as_str());
    std::fs::create_dir_all(dir.join("data"))?;
    let scale = time_scale()?;
    let mut context = tera::Context::new();
    match which {
        Alerting::Prometheus => {
            crate::observe::consoles::write(&ctx.project, &dir)?;
            context.insert("scrape_interval", &scaled_seconds(15, scale));
            context.insert("scrape_timeout", &scaled_seconds(10, scale));
            context.insert("evaluation_interval", &scaled_seconds(15, scale));
            context.insert("alertmanager_port", &ports.alertmanager);
            let services = super::services::Service::ALL.map(|service| {
                let ports = (0..service.replicas(&ctx.home))
                    .map(|instance| service.instance_port(&ctx.home, instance))
                    .collect();
                Target {
                    job: service.as_str(),
                    ports,
                    path: "/metrics",
                }
            });
            let engines = [
                ("otel-collector", ports.otel_telemetry, "/metrics"),
                ("otel-collector-otlp", ports.otel_prometheus, "/metrics"),
                ("jaeger", ports.jaeger_telemetry, "/metrics"),
                ("alertmanager", ports.alertmanager, "/metrics"),
                ("prometheus", ports.prometheus, "/metrics"),
                ("postgres-exporter", ports.postgres_exporter, "/metrics"),
            ]
            .map(|(job, port, path)| Target {
                job,
                ports: vec![port],
                path,
            });
            // Every broker's agent, as one job (an `instance` label each).
            let kafka = Target {
                job: ComponentName::Kafka.as_str(),
                ports: (0..ComponentName::Kafka.instances(&ctx.home))
                    .map(|instance| super::kafka_metrics::port(&ctx.home, instance))
                    .collect(),
                path: "/metrics",
            };
            // Scaffolded services: a job each, named after the service.
            let apps = super::apps::of(&ctx.home)
                .into_iter()
                .map(|app| {
                    Ok(Target {
                        job: app.as_str(),
                        ports: vec![app.port(&ctx.home)?],
                        path: "/metrics",
                    })
                })
                .collect::<anyhow::Result<Vec<Target>>>()?;
            let targets: Vec<Target> = services
                .into_iter()
                .chain(apps)
                .chain(engines)
                .chain([kafka])
                .collect();
            context.insert("targets", &targets);
            std::fs::write(
                dir.join("prometheus.yml"),
                render(ctx, PROMETHEUS_TEMPLATE, &context)?,
            )?;
            std::fs::copy(
                ctx.project.join(RECORDING_RULES),
                dir.join("recording-rules.yaml"),
            )
            .with_context(|| format!("cannot copy {RECORDING_RULES}"))?;
            let slos = load_slos(&ctx.home, &ctx.project)?;
            let rules = if scale == 1 {
                slo::rules(&slos)
            } else {
                slo::scaled_rules(&slos, scale)?
            };
            std::fs::write(dir.join("slo-rules.yaml"), rules.to_yaml()?)?;
        }
        Alerting::Alertmanager => {
            context.insert("group_wait", &scaled_seconds(10, scale));
            context.insert("group_interval", &scaled_seconds(60, scale));
            context.insert("receiver_port", &ports.alert_receiver);
            std::fs::write(
                dir.join("alertmanager.yml"),
                render(ctx, ALERTMANAGER_TEMPLATE, &context)?,
            )?;
        }
        Alerting::Agent => std::fs::create_dir_all(alerts_dir(&ctx.home))?,
    }
    Ok(())
}
