//! Telemetry engines of the local runtime: Jaeger v2 (traces kept in memory, read by
//! `paytool trace`), the OpenTelemetry Collector built with its builder (OTLP/HTTP in from
//! the services; traces on to Jaeger, metrics out for Prometheus; every component's log file
//! read and sent on to VictoriaLogs) and VictoriaLogs (the logs, kept for a bounded time and
//! size, searched by `paytool logs --query` and at `logs.local.test`). All on loopback only.

use super::{http_probe, render, Component, Ctx, Spec};
use crate::runtime::home::Home;
use crate::runtime::probe::Probe;
use nix::sys::signal::Signal;
use std::path::PathBuf;

const COLLECTOR_TEMPLATE: &str = "stacks/local/otel/collector.yaml.tera";
const JAEGER_TEMPLATE: &str = "stacks/local/jaeger/jaeger.yaml.tera";
/// How long VictoriaLogs keeps a log line, and the disk it may use: older lines go first when
/// either is reached.
const LOGS_RETENTION: &str = "7d";
const LOGS_DISK_BYTES_MAX: &str = "2GiB";
/// The memory VictoriaLogs may give its caches (its default is 60 % of the machine's).
const LOGS_MEMORY_BYTES_MAX: &str = "256MiB";

super::engine_component!(
    family
    /// Jaeger, the collector and VictoriaLogs: one implementation, since all three are built
    /// by scripts/install-observability.sh in the background and run from one config (a
    /// rendered file for the first two, arguments for the third).
    Tracing {
        Jaeger,
        OtelCollector,
        VictoriaLogs,
    },
    built_in_background = true
);

fn config_path(home: &Home, which: Tracing) -> PathBuf {
    let file = match which {
        Tracing::Jaeger => "jaeger.yaml",
        Tracing::OtelCollector => "collector.yaml",
        Tracing::VictoriaLogs => "data",
    };
    home.component_dir(which.name().as_str()).join(file)
}

/// The collector's OTLP/HTTP endpoint, for the services' `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub fn otlp_endpoint(home: &Home) -> String {
    format!("http://127.0.0.1:{}", home.ports().otel_otlp_http)
}

/// VictoriaLogs' HTTP API (`/select/logsql/query`, `/insert/…`) and its web UI (`/select/vmui/`).
pub fn victorialogs_url(home: &Home) -> String {
    format!("http://127.0.0.1:{}", home.ports().victorialogs)
}

/// Where the collector keeps how far it has read each log file, so that a restart neither
/// sends a line twice nor skips one.
fn collector_storage_dir(home: &Home) -> PathBuf {
    home.component_dir(Tracing::OtelCollector.name().as_str())
        .join("storage")
}

/// Jaeger's query API (`/api/traces/{id}`, `/api/services`).
pub fn jaeger_query_url(home: &Home) -> String {
    format!("http://127.0.0.1:{}", home.ports().jaeger_query)
}

fn probe(home: &Home, which: Tracing) -> Probe {
    http_probe(match which {
        Tracing::Jaeger => format!("{}/api/services", jaeger_query_url(home)),
        Tracing::OtelCollector => format!("http://127.0.0.1:{}/", home.ports().otel_health),
        Tracing::VictoriaLogs => format!("{}/health", victorialogs_url(home)),
    })
}

fn spec(ctx: &Ctx, which: Tracing) -> anyhow::Result<Spec> {
    let ports = ctx.home.ports();
    let name = which.name();
    let (program, ports_used, urls) = match which {
        Tracing::Jaeger => (
            ctx.tools.jaeger.clone(),
            vec![
                ("otlp-grpc", ports.jaeger_otlp_grpc),
                ("query", ports.jaeger_query),
                ("query-grpc", ports.jaeger_query_grpc),
                ("telemetry", ports.jaeger_telemetry),
            ],
            vec![jaeger_query_url(&ctx.home)],
        ),
        Tracing::OtelCollector => (
            ctx.tools.otelcol.clone(),
            vec![
                ("otlp-http", ports.otel_otlp_http),
                ("health", ports.otel_health),
                ("prometheus", ports.otel_prometheus),
                ("telemetry", ports.otel_telemetry),
            ],
            vec![otlp_endpoint(&ctx.home)],
        ),
        Tracing::VictoriaLogs => (
            ctx.tools.victorialogs.clone(),
            vec![("http", ports.victorialogs)],
            vec![victorialogs_url(&ctx.home)],
        ),
    };
    let config = config_path(&ctx.home, which);
    let args = match which {
        Tracing::Jaeger | Tracing::OtelCollector => {
            vec![format!("--config={}", config.display())]
        }
        Tracing::VictoriaLogs => vec![
            format!("-storageDataPath={}", config.display()),
            format!("-httpListenAddr=127.0.0.1:{}", ports.victorialogs),
            format!("-retentionPeriod={LOGS_RETENTION}"),
            format!("-retention.maxDiskSpaceUsageBytes={LOGS_DISK_BYTES_MAX}"),
            format!("-memory.allowedBytes={LOGS_MEMORY_BYTES_MAX}"),
            // Its own lines as JSON, like every other component's.
            "-loggerFormat=json".into(),
        ],
    };
    Ok(Spec {
        name,
        instance: 0,
        program,
        args,
        env: Vec::new(),
        cwd: ctx.home.component_dir(name.as_str()),
        run_as: None,
        ports: ports_used,
        urls,
        probe: probe(&ctx.home, which),
        ready_timeout_ms: 30_000,
        stop_signal: Signal::SIGTERM,
        stop_timeout_ms: 10_000,
    })
}

async fn prepare(ctx: &Ctx, which: Tracing) -> anyhow::Result<()> {
    let ports = ctx.home.ports();
    let mut context = tera::Context::new();
    let template = match which {
        Tracing::Jaeger => {
            context.insert("otlp_grpc_port", &ports.jaeger_otlp_grpc);
            context.insert("query_port", &ports.jaeger_query);
            context.insert("query_grpc_port", &ports.jaeger_query_grpc);
            context.insert("telemetry_port", &ports.jaeger_telemetry);
            JAEGER_TEMPLATE
        }
        Tracing::OtelCollector => {
            context.insert("otlp_http_port", &ports.otel_otlp_http);
            context.insert("health_port", &ports.otel_health);
            context.insert("prometheus_port", &ports.otel_prometheus);
            context.insert("telemetry_port", &ports.otel_telemetry);
            context.insert("jaeger_otlp_grpc_port", &ports.jaeger_otlp_grpc);
            context.insert("victorialogs_port", &ports.victorialogs);
            context.insert("https_suffix", &ports.https_suffix());
            context.insert("logs_dir", &ctx.home.logs_dir().display().to_string());
            let storage = collector_storage_dir(&ctx.home);
            std::fs::create_dir_all(&storage)?;
            context.insert("storage_dir", &storage.display().to_string());
            COLLECTOR_TEMPLATE
        }
        Tracing::VictoriaLogs => {
            std::fs::create_dir_all(config_path(&ctx.home, which))?;
            return Ok(());
        }
    };
    std::fs::create_dir_all(ctx.home.component_dir(which.name().as_str()))?;
    std::fs::write(
        config_path(&ctx.home, which),
        render(ctx, template, &context)?,
    )?;
    Ok(())
}
