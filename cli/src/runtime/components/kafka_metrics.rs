//! Kafka's metrics: the Prometheus JMX exporter's Java agent (fetched by `paytool setup`)
//! inside each broker's JVM, serving the MBeans that `stacks/local/kafka/jmx-exporter.yaml`
//! names on loopback, scraped by Prometheus as job `kafka` (one target per broker: a broker's
//! MBeans tell of its own partitions and requests only, so one broker's agent would not show
//! another's under-replicated partitions or its death). Only the brokers carry it: the storage
//! tool that formats a log directory runs without it.

use super::Ctx;
use crate::runtime::home::Home;

pub const RULES: &str = "stacks/local/kafka/jmx-exporter.yaml";

/// Broker `instance`'s metrics.
pub fn url(home: &Home, instance: u8) -> String {
    format!("http://127.0.0.1:{}/metrics", port(home, instance))
}

/// Where broker `instance`'s agent listens.
pub fn port(home: &Home, instance: u8) -> u16 {
    home.ports().kafka_broker(instance).metrics
}

/// `-javaagent:<jar>=127.0.0.1:<port>:<rules>`: the agent's HTTP server binds loopback only
/// (without a host it would take every interface).
pub fn agent_arg(ctx: &Ctx, instance: u8) -> String {
    format!(
        "-javaagent:{}=127.0.0.1:{}:{}",
        ctx.tools.jmx_exporter_agent.display(),
        port(&ctx.home, instance),
        ctx.project.join(RULES).display()
    )
}
