//! Kafka in KRaft mode (one node that is both broker and controller), from Maven Central jars,
//! with the JMX exporter's agent serving its metrics (see `kafka_metrics`).

use super::{kafka_metrics, render, run_to_log, ComponentName, Ctx, Spec};
use crate::runtime::home::{Home, Secrets};
use crate::runtime::probe::Probe;
use nix::sys::signal::Signal;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

const TEMPLATE: &str = "stacks/local/kafka/server.properties.tera";
const TOPICS: &str = "stacks/local/kafka/topics.json";
/// A small heap: one partition leader per topic on a developer machine.
const HEAP: &[&str] = &["-Xms128m", "-Xmx512m"];
const ADMIN_TIMEOUT_MS: u64 = 10_000;

super::engine_component!(
    /// Kafka in KRaft mode, one broker and controller.
    Kafka, Kafka, prepare = prepare, after_ready = after_ready
);

fn probe(home: &Home, _secrets: &Secrets) -> Probe {
    Probe::Kafka {
        bootstrap: bootstrap(home),
    }
}

pub fn bootstrap(home: &Home) -> String {
    format!("127.0.0.1:{}", home.ports().kafka)
}

fn dir(home: &Home) -> PathBuf {
    home.component_dir(ComponentName::Kafka.as_str())
}

fn java_args(ctx: &Ctx, main_class: &str) -> Vec<String> {
    let mut args: Vec<String> = HEAP.iter().map(|s| (*s).to_string()).collect();
    args.extend([
        "-XX:+UseG1GC".to_string(),
        "-XX:MaxGCPauseMillis=20".to_string(),
        // A JVM out of memory is in an unknown state: better dead (and restarted) than limping.
        "-XX:+ExitOnOutOfMemoryError".to_string(),
        "-Djava.awt.headless=true".to_string(),
        format!(
            "-Dlog4j2.configurationFile={}",
            ctx.project.join("stacks/local/kafka/log4j2.yaml").display()
        ),
        "-cp".to_string(),
        format!("{}/*", ctx.tools.kafka_libs.display()),
        main_class.to_string(),
    ]);
    args
}

fn spec(ctx: &Ctx) -> anyhow::Result<Spec> {
    let ports = ctx.home.ports();
    // JVM options go before the main class: the agent first, then the rest.
    let mut args = vec![kafka_metrics::agent_arg(ctx)];
    args.extend(java_args(ctx, "kafka.Kafka"));
    args.push(
        dir(&ctx.home)
            .join("server.properties")
            .display()
            .to_string(),
    );
    Ok(Spec {
        name: ComponentName::Kafka,
        instance: 0,
        program: ctx.tools.kafka_java.clone(),
        args,
        env: Vec::new(),
        cwd: dir(&ctx.home),
        run_as: None,
        ports: vec![
            ("broker", ports.kafka),
            ("controller", ports.kafka_controller),
            ("metrics", ports.kafka_metrics),
        ],
        urls: vec![
            format!("kafka://{}", bootstrap(&ctx.home)),
            kafka_metrics::url(&ctx.home),
        ],
        probe: probe(&ctx.home, &ctx.secrets),
        ready_timeout_ms: 90_000,
        // Kafka's SIGTERM handler runs a controlled shutdown (flushes logs, leaves the quorum).
        stop_signal: Signal::SIGTERM,
        stop_timeout_ms: 30_000,
    })
}

async fn prepare(ctx: &Ctx) -> anyhow::Result<()> {
    let dir = dir(&ctx.home);
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let ports = ctx.home.ports();
    let mut context = tera::Context::new();
    context.insert("node_id", &1);
    context.insert("data_dir", &data);
    context.insert("broker_port", &ports.kafka);
    context.insert("controller_port", &ports.kafka_controller);
    let properties = dir.join("server.properties");
    std::fs::write(&properties, render(ctx, TEMPLATE, &context)?)?;
    if data.join("meta.properties").is_file() {
        return Ok(());
    }
    // The cluster id is the installation id: stable across restarts, unique per installation.
    let cluster_id = cluster_id(&ctx.home.marker.installation_id)?;
    let mut format = tokio::process::Command::new(&ctx.tools.kafka_java);
    format
        .args(java_args(ctx, "kafka.tools.StorageTool"))
        .args(["format", "--cluster-id", &cluster_id, "--config"])
        .arg(&properties)
        .current_dir(&dir);
    run_to_log(ctx, ComponentName::Kafka, &mut format).await
}

/// Kafka wants a cluster id as 16 bytes in URL-safe base64 without padding (22 characters).
pub fn cluster_id(installation_id: &str) -> anyhow::Result<String> {
    use base64::Engine;
    let bytes = uuid::Uuid::parse_str(installation_id)?.into_bytes();
    let mut out = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    // Kafka's tools parse "-abc" as an option, so (like Kafka's own Uuid) no id starts with '-':
    // replacing the first character keeps it 16 valid bytes.
    if out.starts_with('-') {
        out.replace_range(0..1, "A");
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
struct TopicDef {
    name: String,
    partitions: i32,
    #[serde(default)]
    config: std::collections::BTreeMap<String, String>,
}

/// Creates the platform's topics (`stacks/local/kafka/topics.json`) that do not exist yet.
async fn after_ready(ctx: &Ctx) -> anyhow::Result<()> {
    let path = ctx.project.join(TOPICS);
    let topics: Vec<TopicDef> = serde_json::from_str(&std::fs::read_to_string(&path)?)
        .map_err(|e| anyhow::anyhow!("{} is not a valid topic list: {e}", path.display()))?;
    let admin = crate::runtime::probe::kafka_admin(&bootstrap(&ctx.home))?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            t.config.iter().fold(
                NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(1)),
                |topic, (k, v)| topic.set(k, v),
            )
        })
        .collect();
    let options =
        AdminOptions::new().operation_timeout(Some(Duration::from_millis(ADMIN_TIMEOUT_MS)));
    let results = admin.create_topics(&new_topics, &options).await?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("cannot create the topic {topic}: {code}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_id_is_22_url_safe_characters_and_stable() {
        let id = cluster_id("6f1c9d3e-2b4a-4c5d-8e7f-0a1b2c3d4e5f").expect("valid uuid");
        assert_eq!(id.len(), 22);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(
            id,
            cluster_id("6f1c9d3e-2b4a-4c5d-8e7f-0a1b2c3d4e5f").expect("valid uuid")
        );
        // The nil UUID encodes to all 'A's, as base64 of zero bytes does.
        assert_eq!(
            cluster_id("00000000-0000-0000-0000-000000000000").expect("valid"),
            "A".repeat(22)
        );
    }
}
