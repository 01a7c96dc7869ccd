//! The money checks that end every experiment, whatever its hypothesis said: nothing lost,
//! created or moved twice, and every payment at an end, told to its merchant exactly once.
//!
//! They read the services' own databases as the services' own roles (read-only queries) and
//! compare what the services hold with each other: the merchant's records are built from the
//! events, the ledger from the sagas, so agreeing totals are an independent replay of one by
//! the other. The platform is eventually consistent (an outbox drains, a consumer catches up),
//! so the checks are retried until they hold or the experiment's `settle_s` runs out; what still
//! fails then is a violation, shown with its evidence.

use crate::runtime::components::services::Service;
use crate::runtime::home::Home;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const POLL_MS: u64 = 1_000;
/// Offending rows shown per check: enough to act on, not a dump.
const EVIDENCE_MAX: usize = 20;
const CONNECT_TIMEOUT_MS: u64 = 5_000;

/// Saga states from which nothing moves any more (the orchestrator's recovery index).
const TERMINAL: &str = "('completed', 'declined', 'voided', 'failed')";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub description: String,
    pub ok: bool,
    pub evidence: Vec<String>,
    /// For a failing check, the component its evidence points at ([`locate`]): where the
    /// money went wrong, which need not be where the fault was put.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
}

impl Check {
    /// The check's name and its first piece of evidence, for a one-line summary.
    pub fn summary(&self) -> String {
        format!(
            "{}: {}",
            self.name,
            self.evidence.first().cloned().unwrap_or_default()
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub ok: bool,
    pub checks: Vec<Check>,
    /// How long the platform took to satisfy them (or the bound, when it did not).
    pub converged_ms: u64,
}

struct Pools {
    orchestrator: PgPool,
    consumer: PgPool,
    merchant: PgPool,
}

async fn pool(url: &str) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .connect(url)
        .await?)
}

/// Checks every invariant, waiting up to `settle_ms` for the platform to converge.
pub async fn check(home: &Home, settle_ms: u64) -> anyhow::Result<Report> {
    check_beside(home, settle_ms, &BTreeSet::new()).await
}

/// [`check`], except that the checks named in `known` (damage from before, that waiting cannot
/// mend) do not hold the wait up; the report still shows them as they are, and `ok` leaves
/// them out.
pub async fn check_beside(
    home: &Home,
    settle_ms: u64,
    known: &BTreeSet<String>,
) -> anyhow::Result<Report> {
    let secrets = home.secrets()?;
    let pools = Pools {
        orchestrator: pool(&Service::Orchestrator.database_url_in(home, &secrets)).await?,
        consumer: pool(&Service::ConsumerApi.database_url_in(home, &secrets)).await?,
        merchant: pool(&Service::MerchantApi.database_url_in(home, &secrets)).await?,
    };
    let started = Instant::now();
    let deadline = started + Duration::from_millis(settle_ms);
    loop {
        let mut checks = vec![ledger(home).await];
        checks.extend(database_checks(&pools).await.unwrap_or_else(|error| {
            vec![finding(
                "databases_readable",
                "the services' databases answer the checks",
                vec![format!("{error:#}")],
            )]
        }));
        let ok = checks.iter().all(|c| c.ok || known.contains(&c.name));
        if ok || Instant::now() >= deadline {
            locate(home, &pools, &mut checks).await;
            return Ok(Report {
                ok,
                checks,
                converged_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            });
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
}

/// Puts each failing check on the component its evidence points at. Most checks say it
/// outright (the ledger and the sagas are the orchestrator's; an outbox names its service; a
/// duplicate saga, the caller that sent its key twice). The merchant's records are built from
/// the orchestrator's events, so a payment missing from them was lost either before Kafka (the
/// orchestrator's relay marked its event published but the topic does not have it) or after
/// (the topic has it and merchant-api's consumer did not apply it): the topic is read to tell.
async fn locate(home: &Home, pools: &Pools, checks: &mut [Check]) {
    let mut merchant_side: Option<String> = None;
    for check in checks.iter_mut().filter(|c| !c.ok) {
        check.component = match check.name.as_str() {
            "ledger_verifies" | "sagas_terminal" => {
                Some(Service::Orchestrator.component_name().as_str().into())
            }
            "charged_once" => Some(charged_by(&check.evidence)),
            "outboxes_published" => check
                .evidence
                .first()
                .and_then(|line| line.split_once(':'))
                .map(|(service, _)| service.to_string()),
            "merchant_lists_exact" | "merchant_feed_once" | "merchant_balances_replayed" => {
                if merchant_side.is_none() {
                    merchant_side = Some(lost_where(home, pools, &check.evidence).await);
                }
                merchant_side.clone()
            }
            _ => None,
        };
    }
}

/// A payment charged twice: two sagas for one key are the caller's retry without its key;
/// anything else (two captures of one saga) is the orchestrator's.
fn charged_by(evidence: &[String]) -> String {
    evidence
        .iter()
        .find_map(|line| {
            let rest = line.strip_prefix("key ")?;
            let (_, after) = rest.split_once(" of ")?;
            after.split_whitespace().next().map(str::to_string)
        })
        .unwrap_or_else(|| Service::Orchestrator.component_name().as_str().into())
}

/// Bounds on reading the payments topic to find lost events: a diagnosis, not a replay.
const TOPIC_READ_MS: u64 = 15_000;
const TOPIC_MESSAGES_MAX: usize = 500_000;
/// How long before its row says it was published an event may have reached the topic.
const PUBLISHED_SLACK_MS: i64 = 5_000;

/// Where the payments in `evidence` fell out: "orchestrator" when one of their events never
/// reached the topic, "merchant-api" when the topic has them all (or the evidence names no
/// payment: the merchant's own records disagree).
async fn lost_where(home: &Home, pools: &Pools, evidence: &[String]) -> String {
    let merchant = Service::MerchantApi.component_name().as_str().to_string();
    let orchestrator = Service::Orchestrator.component_name().as_str().to_string();
    let ids: BTreeSet<String> = evidence
        .iter()
        .filter_map(|line| line.strip_prefix("payment "))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|id| uuid::Uuid::parse_str(id).is_ok())
        .map(str::to_string)
        .collect();
    if ids.is_empty() {
        return merchant;
    }
    let subjects: Vec<String> = ids.iter().map(|id| format!("payment/{id}")).collect();
    let events: Vec<(String, String, Option<chrono::DateTime<chrono::Utc>>)> = match sqlx::query_as(
        "SELECT id::text, topic, published_at FROM outbox
         WHERE envelope->>'subject' = ANY($1) AND envelope->>'type' LIKE 'payment.%'",
    )
    .bind(&subjects)
    .fetch_all(&pools.orchestrator)
    .await
    {
        Ok(rows) => rows,
        Err(error) => {
            eprintln!("paytool: the orchestrator's outbox could not be read to locate lost payments: {error}");
            return merchant;
        }
    };
    // No event at all: pruned after the outbox's retention (a day), or never written; the
    // topic cannot tell which, and the records that disagree are the merchant's. Events not
    // published yet: the orchestrator's relay is behind (the outbox check says so too).
    let published: Vec<&(String, String, Option<chrono::DateTime<chrono::Utc>>)> =
        events.iter().filter(|e| e.2.is_some()).collect();
    if events.is_empty() {
        return merchant;
    }
    if published.is_empty() {
        return orchestrator;
    }
    let since_ms = published
        .iter()
        .filter_map(|e| e.2)
        .map(|at| at.timestamp_millis() - PUBLISHED_SLACK_MS)
        .min()
        .unwrap_or(0);
    let topics: BTreeSet<String> = published.iter().map(|e| e.1.clone()).collect();
    let wanted: BTreeSet<String> = published.iter().map(|e| e.0.clone()).collect();
    let bootstrap = crate::runtime::components::kafka::bootstrap(home);
    let found = tokio::task::spawn_blocking(move || {
        let mut found = BTreeSet::new();
        for topic in &topics {
            found.extend(events_in_topic(&bootstrap, topic, &wanted, since_ms)?);
        }
        anyhow::Ok((found, wanted))
    })
    .await;
    match found {
        Ok(Ok((found, wanted))) if found.len() < wanted.len() => orchestrator,
        Ok(Ok(_)) => merchant,
        Ok(Err(error)) => {
            eprintln!(
                "paytool: the payments topic could not be read to locate lost payments: {error:#}"
            );
            merchant
        }
        Err(error) => {
            eprintln!("paytool: reading the payments topic stopped: {error}");
            merchant
        }
    }
}

/// Which of `wanted` (event ids, the `event-id` header every envelope carries) are on
/// `topic`, reading each partition from its first message at or after `since_ms` to its end,
/// within [`TOPIC_READ_MS`] and [`TOPIC_MESSAGES_MAX`].
fn events_in_topic(
    bootstrap: &str,
    topic: &str,
    wanted: &BTreeSet<String>,
    since_ms: i64,
) -> anyhow::Result<BTreeSet<String>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let timeout = Duration::from_millis(TOPIC_READ_MS);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // Assigned, never subscribed: no offsets are committed under this group.
        .set("group.id", "paytool-chaos-locate")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()?;
    let mut by_time = TopicPartitionList::new();
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        by_time.add_partition_offset(topic, partition.id(), Offset::Offset(since_ms))?;
    }
    let by_time = consumer.offsets_for_times(by_time, timeout)?;
    // A partition with nothing after the time answers "end": nothing to read there.
    let mut open: BTreeSet<i32> = BTreeSet::new();
    let mut start = TopicPartitionList::new();
    for element in by_time.elements() {
        let offset = element.offset();
        if matches!(offset, Offset::Offset(_)) {
            open.insert(element.partition());
            start.add_partition_offset(topic, element.partition(), offset)?;
        }
    }
    consumer.assign(&start)?;
    let deadline = Instant::now() + timeout;
    let mut found = BTreeSet::new();
    let mut read = 0usize;
    while !open.is_empty() && found.len() < wanted.len() {
        anyhow::ensure!(
            Instant::now() < deadline && read < TOPIC_MESSAGES_MAX,
            "read {read} messages in {TOPIC_READ_MS} ms without reaching the topics' ends"
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                open.remove(&partition);
            }
            Some(Err(error)) => return Err(error.into()),
            Some(Ok(message)) => {
                read += 1;
                if let Some(id) = paykit::events::header_text(&message, "event-id")
                    .filter(|id| wanted.contains(*id))
                {
                    found.insert(id.to_string());
                }
            }
        }
    }
    Ok(found)
}

async fn ledger(home: &Home) -> Check {
    let (ok, evidence) = match crate::pay::ledger::report(home).await {
        Ok(report) => (
            report["ok"].as_bool() == Some(true),
            crate::pay::ledger::failed_checks(&report),
        ),
        Err(error) => (false, vec![format!("{error:#}")]),
    };
    let mut check = finding(
        "ledger_verifies",
        "the ledger balances: debits equal credits, balances equal their transfers, no wallet below zero, refunds within captures",
        evidence,
    );
    check.ok = ok;
    check
}

fn finding(name: &str, description: &str, mut evidence: Vec<String>) -> Check {
    evidence.truncate(EVIDENCE_MAX);
    Check {
        name: name.to_string(),
        description: description.to_string(),
        ok: evidence.is_empty(),
        evidence,
        component: None,
    }
}

async fn rows(pool: &PgPool, query: &str) -> anyhow::Result<Vec<String>> {
    // Fixed texts of this module, wrapped to one text column each; run, not compiled, checks.
    Ok(sqlx::query_scalar(&format!(
        "SELECT v FROM ({query}) AS evidence(v) LIMIT {EVIDENCE_MAX}"
    ))
    .fetch_all(pool)
    .await?)
}

async fn database_checks(pools: &Pools) -> anyhow::Result<Vec<Check>> {
    let mut checks = Vec::new();
    checks.push(finding(
        "sagas_terminal",
        "every saga has reached an end (completed, declined, voided or failed)",
        rows(
            &pools.orchestrator,
            &format!("SELECT kind || ' ' || id || ' is still ' || state FROM sagas WHERE state NOT IN {TERMINAL}"),
        )
        .await?,
    ));
    let mut charged = rows(
        &pools.orchestrator,
        "SELECT 'key ' || idempotency_key || ' of ' || caller || ' made ' || count(*) || ' ' || kind || ' sagas'
         FROM sagas GROUP BY caller, kind, idempotency_key HAVING count(*) > 1",
    )
    .await?;
    charged.extend(
        rows(
            &pools.orchestrator,
            "SELECT 'payment ' || s.id || ' captured ' || s.captured_amount || ' but its payer was charged '
                    || coalesce(sum(t.amount), 0) || ' in ' || count(t.id) || ' transfers'
             FROM sagas s LEFT JOIN transfers t ON t.saga_id = s.id AND t.code = 'payment'
                  AND t.kind IN ('posted', 'post_pending')
             WHERE s.kind = 'payment'
             GROUP BY s.id, s.captured_amount
             HAVING count(t.id) > 1 OR coalesce(sum(t.amount), 0) <> s.captured_amount",
        )
        .await?,
    );
    charged.extend(
        rows(
            &pools.orchestrator,
            "SELECT 'payment ' || id || ' completed with ' || captured_amount || ' captured of ' || amount
             FROM sagas WHERE kind = 'payment' AND state = 'completed' AND captured_amount <> amount",
        )
        .await?,
    );
    checks.push(finding(
        "charged_once",
        "no payment charged twice: one saga per idempotency key, one capture per payment, of its amount",
        charged,
    ));
    let mut unpublished = Vec::new();
    for (service, pool) in [
        ("orchestrator", &pools.orchestrator),
        ("consumer-api", &pools.consumer),
        ("merchant-api", &pools.merchant),
    ] {
        unpublished.extend(
            rows(
                pool,
                &format!(
                    "SELECT '{service}: ' || count(*) || ' events not published, the oldest from ' || min(created_at)
                     FROM outbox WHERE published_at IS NULL HAVING count(*) > 0"
                ),
            )
            .await?,
        );
    }
    checks.push(finding(
        "outboxes_published",
        "every event in every service's outbox has been published",
        unpublished,
    ));
    checks.extend(merchant_checks(pools).await?);
    Ok(checks)
}

/// The merchant's side, compared with the ledger's.
async fn merchant_checks(pools: &Pools) -> anyhow::Result<Vec<Check>> {
    let captured: BTreeSet<String> = sqlx::query_scalar(
        "SELECT id::text FROM sagas WHERE kind = 'payment' AND state = 'completed'",
    )
    .fetch_all(&pools.orchestrator)
    .await?
    .into_iter()
    .collect();
    let listed: BTreeSet<String> =
        sqlx::query_scalar("SELECT id::text FROM transactions WHERE kind = 'payment'")
            .fetch_all(&pools.merchant)
            .await?
            .into_iter()
            .collect();
    let fed: Vec<(String, i64)> = sqlx::query_as(
        "SELECT data->>'id', count(*) FROM merchant_events WHERE type = 'payment.completed' GROUP BY 1",
    )
    .fetch_all(&pools.merchant)
    .await?;
    let mut list = Vec::new();
    list.extend(
        captured
            .difference(&listed)
            .map(|id| format!("payment {id} completed but is not on its merchant's list")),
    );
    list.extend(
        listed
            .difference(&captured)
            .map(|id| format!("payment {id} is on a merchant's list but did not complete")),
    );
    let fed_ids: BTreeSet<&String> = fed.iter().map(|(id, _)| id).collect();
    let mut feed: Vec<String> = fed
        .iter()
        .filter(|(_, count)| *count != 1)
        .map(|(id, count)| format!("payment {id} was sent to the feed {count} times"))
        .collect();
    feed.extend(
        listed
            .iter()
            .filter(|id| !fed_ids.contains(id))
            .map(|id| format!("payment {id} is listed but never went to the feed")),
    );

    // The replay: each merchant's records (payments less their fees, less refunds), against
    // the posted balance of the merchant's ledger account.
    let records: Vec<(String, i64)> = sqlx::query_as(
        "SELECT m.ledger_account_id::text,
                coalesce(sum(CASE WHEN t.kind = 'payment' THEN t.amount_value - t.fee_value ELSE -t.amount_value END), 0)::bigint
         FROM merchants m LEFT JOIN transactions t ON t.merchant_id = m.id
         GROUP BY m.ledger_account_id",
    )
    .fetch_all(&pools.merchant)
    .await?;
    let balances: BTreeMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT account_id::text, (sum(credits_posted) - sum(debits_posted))::bigint
         FROM account_balances GROUP BY account_id",
    )
    .fetch_all(&pools.orchestrator)
    .await?
    .into_iter()
    .collect();
    let replay: Vec<String> = records
        .iter()
        .filter_map(|(account, expected)| {
            let held = balances.get(account).copied().unwrap_or(0);
            (held != *expected).then(|| {
                format!("merchant account {account}: its records make {expected}, the ledger holds {held}")
            })
        })
        .collect();
    Ok(vec![
        finding(
            "merchant_lists_exact",
            "every completed payment is on its merchant's list, and nothing else is",
            list,
        ),
        finding(
            "merchant_feed_once",
            "every listed payment went to the merchant's live feed exactly once",
            feed,
        ),
        finding(
            "merchant_balances_replayed",
            "each merchant's balance in the ledger equals its records replayed (payments less fees, less refunds)",
            replay,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saga_made_twice_for_one_key_is_put_on_the_caller_and_a_double_capture_on_the_orchestrator()
    {
        let twice = vec!["key 7f3a of consumer-api made 2 payment sagas".to_string()];
        assert_eq!(charged_by(&twice), "consumer-api");
        let captured = vec![
            "payment 0190 captured 1200 but its payer was charged 2400 in 2 transfers".to_string(),
        ];
        assert_eq!(charged_by(&captured), "orchestrator");
        assert_eq!(charged_by(&[]), "orchestrator");
    }
}
