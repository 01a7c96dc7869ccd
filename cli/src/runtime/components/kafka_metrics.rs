//! Kafka's metrics: the Prometheus JMX exporter's Java agent (fetched by `paytool setup`)
//! inside the broker's JVM, serving the MBeans that `stacks/local/kafka/jmx-exporter.yaml`
//! names on loopback, scraped by Prometheus as job `kafka`. Only the broker carries it: the
//! storage tool that formats the log directory runs without it.

use super::Ctx;
use crate::runtime::home::Home;

pub const RULES: &str = "stacks/local/kafka/jmx-exporter.yaml";

pub fn url(home: &Home) -> String {
    format!("http://127.0.0.1:{}/metrics", home.ports().kafka_metrics)
}

/// `-javaagent:<jar>=127.0.0.1:<port>:<rules>`: the agent's HTTP server binds loopback only
/// (without a host it would take every interface).
pub fn agent_arg(ctx: &Ctx) -> String {
    format!(
        "-javaagent:{}=127.0.0.1:{}:{}",
        ctx.tools.jmx_exporter_agent.display(),
        ctx.home.ports().kafka_metrics,
        ctx.project.join(RULES).display()
    )
}
