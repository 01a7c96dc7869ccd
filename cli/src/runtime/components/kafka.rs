//! Kafka in KRaft mode, from Maven Central jars: one node, or three with `paytool up
//! --kafka-brokers 3`, each both a broker and a controller (a voter of the metadata quorum),
//! each its own supervised instance (`kafka`, `kafka.1`, `kafka.2`) with its own ports and
//! storage, and the JMX exporter's agent serving its metrics (see `kafka_metrics`).
//!
//! With three, every topic has a replica on each broker and takes a write with `acks=all` once
//! two have it (`min.insync.replicas`): an acknowledged event survives one broker's loss, and
//! the platform goes on with two.

use super::{kafka_metrics, render, run_to_log, Component, ComponentName, Ctx, Spec, Step};
use crate::runtime::home::{Home, Secrets};
use crate::runtime::probe::Probe;
use nix::sys::signal::Signal;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const TEMPLATE: &str = "stacks/local/kafka/server.properties.tera";
const TOPICS: &str = "stacks/local/kafka/topics.json";
/// A small heap: a few partition leaders per topic on a developer machine.
const HEAP: &[&str] = &["-Xms128m", "-Xmx512m"];
const ADMIN_TIMEOUT_MS: u64 = 10_000;
/// Topics are created once every broker has registered (a topic needs as many brokers as
/// replicas). The brokers start together, so they register within seconds of each other; the
/// first ready one waits at most this for the others.
const BROKERS_REGISTERED_TIMEOUT_MS: u64 = 90_000;
/// How often the wait above asks again.
const BROKERS_REGISTERED_POLL_MS: u64 = 500;

/// Kafka in KRaft mode: its brokers, each also a controller.
pub struct Kafka;

impl Component for Kafka {
    fn name(&self) -> ComponentName {
        ComponentName::Kafka
    }

    fn spec(&self, ctx: &Ctx) -> anyhow::Result<Spec> {
        broker_spec(ctx, 0)
    }

    fn specs(&self, ctx: &Ctx) -> anyhow::Result<Vec<Spec>> {
        (0..ComponentName::Kafka.instances(&ctx.home))
            .map(|instance| broker_spec(ctx, instance))
            .collect()
    }

    fn probe(&self, home: &Home, secrets: &Secrets) -> Probe {
        self.instance_probe(home, secrets, 0)
    }

    /// Metadata from the broker itself, which must list it (registered, not fenced).
    fn instance_probe(&self, home: &Home, _secrets: &Secrets, instance: u8) -> Probe {
        Probe::Kafka {
            bootstrap: broker_address(home, instance),
            node_id: node_id(instance),
        }
    }

    fn prepare_instance<'a>(&'a self, ctx: &'a Ctx, instance: u8) -> Step<'a> {
        Box::pin(prepare(ctx, instance))
    }

    fn after_ready<'a>(&'a self, ctx: &'a Ctx) -> Step<'a> {
        Box::pin(after_ready(ctx))
    }
}

/// Broker `instance`'s node id (Kafka's, 1 for the first: what metadata and the quorum's
/// voters name it by).
pub fn node_id(instance: u8) -> i32 {
    i32::from(instance) + 1
}

/// One broker's client address.
pub fn broker_address(home: &Home, instance: u8) -> String {
    format!("127.0.0.1:{}", home.ports().kafka_broker(instance).broker)
}

/// Every broker's client address, comma-separated: what clients bootstrap from (any one that
/// answers tells them of the rest).
pub fn bootstrap(home: &Home) -> String {
    (0..ComponentName::Kafka.instances(home))
        .map(|instance| broker_address(home, instance))
        .collect::<Vec<_>>()
        .join(",")
}

/// Broker `instance`'s directory: `kafka/` for the first (where a single broker has always
/// kept its data), `kafka.1/`, `kafka.2/` for the others.
fn dir(home: &Home, instance: u8) -> PathBuf {
    home.component_dir(&super::instance_id(ComponentName::Kafka, instance))
}

/// Broker `instance`'s log directory (a volume of its own under `--chaos`).
pub fn data_dir(home: &Home, instance: u8) -> PathBuf {
    dir(home, instance).join("data")
}

/// The least room in its log directory a broker is started with: a segment (64 MiB,
/// `log.segment.bytes`) and its preallocated indexes, so that recovery can roll and rewrite.
const START_FREE_BYTES_MIN: u64 = 80 * 1024 * 1024;

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

fn broker_spec(ctx: &Ctx, instance: u8) -> anyhow::Result<Spec> {
    let ports = ctx.home.ports().kafka_broker(instance);
    // JVM options go before the main class: the agent first, then the rest.
    let mut args = vec![kafka_metrics::agent_arg(ctx, instance)];
    args.extend(java_args(ctx, "kafka.Kafka"));
    args.push(
        dir(&ctx.home, instance)
            .join("server.properties")
            .display()
            .to_string(),
    );
    Ok(Spec {
        name: ComponentName::Kafka,
        instance,
        program: ctx.tools.kafka_java.clone(),
        args,
        env: Vec::new(),
        cwd: dir(&ctx.home, instance),
        run_as: None,
        ports: vec![
            ("broker", ports.broker),
            ("controller", ports.controller),
            ("metrics", ports.metrics),
        ],
        urls: vec![
            format!("kafka://{}", broker_address(&ctx.home, instance)),
            kafka_metrics::url(&ctx.home, instance),
        ],
        probe: Kafka.instance_probe(&ctx.home, &ctx.secrets, instance),
        ready_timeout_ms: 90_000,
        // Kafka's SIGTERM handler runs a controlled shutdown (flushes logs, hands its
        // partitions' leadership over, leaves the quorum).
        stop_signal: Signal::SIGTERM,
        stop_timeout_ms: 30_000,
    })
}

/// The quorum's voters, `1@127.0.0.1:port,2@…`: every broker, each also a controller.
fn voters(home: &Home) -> String {
    (0..ComponentName::Kafka.instances(home))
        .map(|instance| {
            format!(
                "{}@127.0.0.1:{}",
                node_id(instance),
                home.ports().kafka_broker(instance).controller
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A topic's replicas: one on every broker.
fn replication_factor(home: &Home) -> i32 {
    i32::from(ComponentName::Kafka.instances(home))
}

/// How many replicas must have a write before `acks=all` acknowledges it: all but one (at
/// least one), so that one broker may die without losing an acknowledged event, and writes go
/// on without it.
fn min_insync_replicas(home: &Home) -> i32 {
    (replication_factor(home) - 1).max(1)
}

/// Writes broker `instance`'s configuration, and formats its storage the first time.
async fn prepare(ctx: &Ctx, instance: u8) -> anyhow::Result<()> {
    let dir = dir(&ctx.home, instance);
    let data = data_dir(&ctx.home, instance);
    std::fs::create_dir_all(&data)?;
    // Under --chaos the log directory is a volume of its own, for the disk-full fault.
    if ctx.home.marker.chaos
        && !crate::runtime::volume::ensure(
            &dir.join("data.img"),
            &data,
            crate::runtime::volume::KAFKA_VOLUME_MB,
        )?
    {
        crate::support::log::line(
            &super::instance_id(ComponentName::Kafka, instance),
            "its log directory is on the machine's disk (not root, or data from before --chaos): the disk-full fault is off for it",
        );
    }
    // Kafka halts when its log directory fills; started again on a disk that is still full,
    // its recovery cannot rewrite what it checks, and it truncated the metadata log to
    // nothing (seen after a disk-full fault: the controller then failed every request, for
    // good). So it is not started until there is room; the supervisor tries again with backoff.
    let free = crate::runtime::volume::free_bytes(&data)?;
    anyhow::ensure!(
        free >= START_FREE_BYTES_MIN,
        "its log directory {} has {} MiB free, under the {} MiB its recovery needs: not started until there is room",
        data.display(),
        free / (1024 * 1024),
        START_FREE_BYTES_MIN / (1024 * 1024)
    );
    let ports = ctx.home.ports().kafka_broker(instance);
    let mut context = tera::Context::new();
    context.insert("node_id", &node_id(instance));
    context.insert("voters", &voters(&ctx.home));
    context.insert("data_dir", &data);
    context.insert("broker_port", &ports.broker);
    context.insert("controller_port", &ports.controller);
    context.insert("replication_factor", &replication_factor(&ctx.home));
    context.insert("min_insync_replicas", &min_insync_replicas(&ctx.home));
    let properties = dir.join("server.properties");
    std::fs::write(&properties, render(ctx, TEMPLATE, &context)?)?;
    if data.join("meta.properties").is_file() {
        return Ok(());
    }
    // The cluster id is the installation id: stable across restarts, unique per installation,
    // and the same for every broker of it.
    let cluster_id = cluster_id(&ctx.home.marker.installation_id)?;
    let mut format = tokio::process::Command::new(&ctx.tools.kafka_java);
    format
        .args(java_args(ctx, "kafka.tools.StorageTool"))
        .args(["format", "--cluster-id", &cluster_id, "--config"])
        .arg(&properties)
        .current_dir(&dir);
    run_to_log(ctx, ComponentName::Kafka, instance, &mut format).await
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

fn topic_list(path: &std::path::Path) -> anyhow::Result<Vec<TopicDef>> {
    serde_json::from_str(&std::fs::read_to_string(path)?)
        .map_err(|e| anyhow::anyhow!("{} is not a valid topic list: {e}", path.display()))
}

/// Creates the platform's topics (`stacks/local/kafka/topics.json`) and the scaffolded
/// services' (`services/NAME/topics.json`) that do not exist yet, with
/// a replica on every broker. Runs after each broker is ready (again after every restart):
/// a topic that exists is left as it is, and one that needs brokers that have not registered
/// yet is tried again, within `BROKERS_REGISTERED_TIMEOUT_MS`.
async fn after_ready(ctx: &Ctx) -> anyhow::Result<()> {
    let mut topics = topic_list(&ctx.project.join(TOPICS))?;
    // A scaffolded service's own topics, in the same form beside its code.
    for app in super::apps::of(&ctx.home) {
        let own = ctx
            .project
            .join("services")
            .join(app.as_str())
            .join("topics.json");
        if own.is_file() {
            topics.extend(topic_list(&own)?);
        }
    }
    let admin = crate::runtime::probe::kafka_admin(&bootstrap(&ctx.home))?;
    let replication = replication_factor(&ctx.home);
    let min_insync = min_insync_replicas(&ctx.home).to_string();
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            t.config.iter().fold(
                NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(replication))
                    .set("min.insync.replicas", &min_insync),
                |topic, (k, v)| topic.set(k, v),
            )
        })
        .collect();
    let options =
        AdminOptions::new().operation_timeout(Some(Duration::from_millis(ADMIN_TIMEOUT_MS)));
    let deadline = Instant::now() + Duration::from_millis(BROKERS_REGISTERED_TIMEOUT_MS);
    loop {
        let results = admin.create_topics(&new_topics, &options).await?;
        let mut too_few_brokers = None;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, RDKafkaErrorCode::InvalidReplicationFactor)) => {
                    too_few_brokers = Some(topic);
                }
                Err((topic, code)) => anyhow::bail!("cannot create the topic {topic}: {code}"),
            }
        }
        match too_few_brokers {
            None => return Ok(()),
            Some(topic) if Instant::now() >= deadline => anyhow::bail!(
                "cannot create the topic {topic}: fewer than {replication} brokers registered within {} s",
                BROKERS_REGISTERED_TIMEOUT_MS / 1000
            ),
            Some(_) => {
                tokio::time::sleep(Duration::from_millis(BROKERS_REGISTERED_POLL_MS)).await;
            }
        }
    }
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
