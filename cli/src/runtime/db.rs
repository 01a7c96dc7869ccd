//! `paytool db failover`: hands the primary role of the Patroni cluster (`paytool up --ha`) to
//! its synchronous replica through Patroni's REST API, and waits until the old primary
//! follows the new one.

use crate::runtime::components::{patroni, ComponentName};
use crate::runtime::home::Home;
use crate::support::exit::{fail, Code};
use serde::Serialize;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The switch, from the request to both nodes in their new roles.
const FAILOVER_TIMEOUT_MS: u64 = 60_000;
const POLL_MS: u64 = 250;
const REST_TIMEOUT_MS: u64 = 5_000;

/// One node as its Patroni sees itself.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub instance: u8,
    pub name: String,
    /// `primary`, `replica`, or what Patroni says (`unknown` when it does not answer).
    pub role: String,
    pub state: String,
}

#[derive(Debug, Serialize)]
pub struct Outcome {
    pub from: String,
    pub to: String,
    pub duration_ms: u64,
    pub nodes: Vec<Node>,
}

/// Each node's role, as its own REST API says.
pub async fn nodes(home: &Home) -> Vec<Node> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(REST_TIMEOUT_MS))
        .build()
        .unwrap_or_default();
    let mut nodes = Vec::new();
    for instance in 0..ComponentName::Patroni.instances(home) {
        let answer: Option<Value> = match http
            .get(format!("{}/patroni", patroni::rest_url(home, instance)))
            .send()
            .await
        {
            Ok(response) => response.json().await.ok(),
            Err(_) => None,
        };
        let field = |name: &str| {
            answer
                .as_ref()
                .and_then(|a| a[name].as_str())
                .unwrap_or("unknown")
                .to_string()
        };
        // Patroni 3.0 still says "master" for the primary.
        let role = match field("role").as_str() {
            "master" | "primary" => "primary".to_string(),
            other => other.to_string(),
        };
        nodes.push(Node {
            instance,
            name: patroni::node_name(instance),
            role,
            state: field("state"),
        });
    }
    nodes
}

pub async fn failover(home: &Home, json: bool) -> anyhow::Result<i32> {
    let outcome = switchover(home).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        println!(
            "{} is the primary now ({} follows it), in {:.1} s",
            outcome.to,
            outcome.from,
            outcome.duration_ms as f64 / 1000.0
        );
    }
    Ok(0)
}

/// Hands the primary to the running replica through Patroni and waits until the roles have
/// swapped (`paytool db failover`, and the chaos fault of the same name).
pub async fn switchover(home: &Home) -> anyhow::Result<Outcome> {
    crate::runtime::state::require_running(home)?;
    if !home.marker.ha {
        return Err(fail(
            Code::Usage,
            "PostgreSQL runs as one server in this installation: a failover needs a new one made with `paytool up --ha`",
        ));
    }
    let before = nodes(home).await;
    let primary = before.iter().find(|n| n.role == "primary").cloned();
    let replica = before
        .iter()
        .find(|n| n.role == "replica" && matches!(n.state.as_str(), "running" | "streaming"))
        .cloned();
    let (Some(primary), Some(replica)) = (primary, replica) else {
        return Err(fail(
            Code::Failed,
            format!(
                "no primary with a running replica to hand over to ({}): see `paytool status` and `paytool logs patroni`",
                describe(&before)
            ),
        ));
    };
    let started = Instant::now();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(FAILOVER_TIMEOUT_MS))
        .build()?;
    // In synchronous mode Patroni hands over only to the synchronous standby; a replica that
    // has just rejoined (after a failover) is streaming before the leader names it so, and the
    // switchover is refused with 412 meanwhile. That refusal is waited out within the bound.
    let deadline = started + Duration::from_millis(FAILOVER_TIMEOUT_MS);
    loop {
        let response = http
            .post(format!(
                "{}/switchover",
                patroni::rest_url(home, primary.instance)
            ))
            .json(&serde_json::json!({ "leader": primary.name, "candidate": replica.name }))
            .send()
            .await
            .map_err(|error| {
                fail(
                    Code::Failed,
                    format!(
                        "{}'s REST API did not take the switchover: {error}",
                        primary.name
                    ),
                )
            })?;
        if response.status().is_success() {
            break;
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let not_yet_sync =
            status == reqwest::StatusCode::PRECONDITION_FAILED && text.contains("sync_standby");
        if !not_yet_sync || Instant::now() >= deadline {
            return Err(fail(
                Code::Failed,
                format!("Patroni refused the switchover ({status}): {}", text.trim()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
    // Done when the replica leads and the old primary follows it again.
    let after = loop {
        let now = nodes(home).await;
        let switched = now
            .iter()
            .any(|n| n.instance == replica.instance && n.role == "primary")
            && now
                .iter()
                .any(|n| n.instance == primary.instance && n.role == "replica");
        if switched {
            break now;
        }
        if Instant::now() >= deadline {
            return Err(fail(
                Code::Failed,
                format!(
                    "the switchover did not finish within {} s ({}); see `paytool logs patroni`",
                    FAILOVER_TIMEOUT_MS / 1000,
                    describe(&now)
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    };
    Ok(Outcome {
        from: primary.name,
        to: replica.name,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        nodes: after,
    })
}

fn describe(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(|n| format!("{} {} {}", n.name, n.role, n.state))
        .collect::<Vec<_>>()
        .join(", ")
}
