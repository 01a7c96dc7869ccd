//! Events between services: one JSON envelope, a transactional outbox with a relay to Kafka,
//! and consumers that apply each event once.
//!
//! - A service appends the events of a change to its `outbox` table **in the same database
//!   transaction** as the change ([`append`]): the event exists if and only if the change does.
//! - The [`Relay`] publishes pending rows to Kafka (idempotent producer, `acks=all`), with the
//!   event id, type and a W3C `traceparent` in headers, and marks rows published only after the
//!   broker acknowledged them. The writer wakes its process's relays after its commit
//!   ([`wake_relays`]; no NOTIFY, whose cluster-wide commit lock queued every notifying commit),
//!   and they poll every second for rows written elsewhere. Delivery is at least once: a crash
//!   between the acknowledgement and the mark publishes the row again.
//! - A [`Consumer`] records each event id in its `inbox` table in the same transaction as the
//!   event's effect, so a redelivered event has no second effect. An event that cannot be
//!   applied (not an envelope, or the handler calls it poison) goes to the dead-letter topic
//!   with the reason after [`POISON_ATTEMPTS_MAX`] attempts; a transient failure (the database
//!   is down) is retried without limit and without committing the offset.

use crate::backoff::Backoff;
use futures_util::future::join_all;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tracing::Instrument;
use uuid::Uuid;

/// Rows the relay publishes per batch.
pub const RELAY_BATCH_MAX: i64 = 200;
/// The relay looks for rows this often even without a notification.
const RELAY_POLL_INTERVAL_MS: u64 = 1_000;
/// After a failed batch the relay waits at least this long, doubling up to the maximum, with
/// jitter ([`crate::backoff`]): every service's relay lost the same database or broker.
const RELAY_BACKOFF_MIN_MS: u64 = 100;
const RELAY_BACKOFF_MAX_MS: u64 = 5_000;
/// A message the broker has not acknowledged within this is a failed publish.
const PRODUCE_TIMEOUT_MS: u64 = 5_000;
/// A relay whose batches all failed for this long makes its producer anew (and again after as
/// long): seen here, a producer whose process was frozen for a quarter of an hour (every
/// process of the machine stopped and continued) timed out every send to one topic for good,
/// while the other services' producers went on and a new instance published at once.
const RELAY_RENEW_AFTER_MS: u64 = 60_000;
/// Published rows are deleted after this.
const OUTBOX_RETENTION_HOURS: i64 = 24;
/// Attempts before a failing event is dead-lettered.
pub const POISON_ATTEMPTS_MAX: u32 = 5;
/// Backoff between attempts at one event, doubling up to the maximum, with jitter
/// ([`crate::backoff`]): a consumer group's members retry what failed for all of them.
const CONSUMER_BACKOFF_MIN_MS: u64 = 100;
const CONSUMER_BACKOFF_MAX_MS: u64 = 5_000;
/// How long the consumer waits for a message before it looks at its own membership.
const CONSUMER_WATCH_MS: u64 = 5_000;
/// A consumer applies the events already waiting together, up to this many, in one
/// transaction with one offset commit; a batch that fails is applied again one event at a time.
pub const CONSUMER_BATCH_MAX: usize = 64;
/// The longest one attempt at applying an event (or a batch of them) may take, from `BEGIN`
/// to `COMMIT`. An apply takes milliseconds; one waiting on a connection whose server went
/// silent (no RST, no answer) would otherwise hold its partition until TCP gave up, hours
/// later. Past it the attempt is abandoned (nothing committed) and tried again like any
/// transient failure.
pub const CONSUMER_APPLY_TIMEOUT_MS: u64 = 2_000;
/// A subscribed consumer without a partition for this long is made again (see `run`): well
/// past a group join (a few seconds) and the session timeout (10 s).
const CONSUMER_UNASSIGNED_REBUILD_MS: u64 = 30_000;
/// Where poison events go, with the reason in a header.
pub const DEAD_LETTER_TOPIC: &str = "dead-letter.v1";

/// Where Kafka is, and the prefix of this deployment's topic names (empty in production; tests
/// give each spawned platform topics of its own).
#[derive(Debug, Clone, Deserialize)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    #[serde(default)]
    pub topic_prefix: String,
    /// Test hook: `after-publish` makes the relay stop after the broker acknowledged a batch
    /// and before it marks the rows published, as a crash there would;
    /// `after-publish:<event type>` only once a batch holds an event of that type.
    #[serde(default)]
    pub relay_failpoint: Option<String>,
}

impl KafkaSettings {
    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.topic_prefix)
    }
}

/// The one envelope of every event on every topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope {
    /// Unique per event: consumers deduplicate on it.
    pub id: Uuid,
    /// What happened, `<entity>.<past tense>`: `payment.completed`.
    #[serde(rename = "type")]
    pub kind: String,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    /// What it happened to, as `<kind>/<id>`: `payment/0190…`.
    pub subject: String,
    pub data: Value,
}

impl Envelope {
    pub fn new(kind: &str, subject: String, data: Value) -> Self {
        Self {
            id: Uuid::now_v7(),
            kind: kind.to_string(),
            occurred_at: chrono::Utc::now(),
            subject,
            data,
        }
    }
}

/// A W3C trace context for an event that starts its own trace.
pub fn new_traceparent() -> String {
    let trace = Uuid::new_v4().simple().to_string();
    let span = &Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace}-{span}-01")
}

/// Wake-ups of this process's relays, counted: a writer bumps it after a commit that appended
/// to the outbox, each relay waits for it to change. A `watch` keeps a wake-up that came while
/// a relay was busy, and wakes every relay of the process (tests run several services in one).
static RELAY_WAKE_UPS: std::sync::LazyLock<tokio::sync::watch::Sender<u64>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::channel(0).0);

/// Tells this process's relays that rows were committed to the outbox: call it after the
/// commit of a transaction that [`append`]ed. A row no relay was told of waits for the next
/// poll ([`RELAY_POLL_INTERVAL_MS`]) at most.
pub fn wake_relays() {
    RELAY_WAKE_UPS.send_modify(|count| *count = count.wrapping_add(1));
}

/// Appends `event` to the outbox inside `tx`, for `topic` (unprefixed) with partition `key`.
pub async fn append(
    tx: &mut Transaction<'_, Postgres>,
    topic: &str,
    key: &str,
    event: &Envelope,
) -> Result<(), sqlx::Error> {
    // The change's own trace, so that the consumers' work joins it; a new one outside any.
    let traceparent = crate::telemetry::current_traceparent().unwrap_or_else(new_traceparent);
    append_traced(tx, topic, key, event, &traceparent).await
}

/// [`append`] for a change made on behalf of a request whose trace is not the current one
/// (the orchestrator's group writer commits several requests' payments together): the event
/// continues `traceparent`.
pub async fn append_traced(
    tx: &mut Transaction<'_, Postgres>,
    topic: &str,
    key: &str,
    event: &Envelope,
    traceparent: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox (id, topic, key, envelope, traceparent) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(event.id)
    .bind(topic)
    .bind(key)
    .bind(sqlx::types::Json(event))
    .bind(traceparent)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn producer(settings: &KafkaSettings) -> anyhow::Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", &settings.bootstrap_servers)
        // Not Kafka's idempotent producer: it dedups by producer id and sequence number, and a
        // broker that had lost its producer-id state (Kafka's log directory full, then
        // restarted: chaos test order) handed a new producer an id it still held sequences
        // for, so the broker answered a payment's event "duplicate" (a success) and wrote
        // nothing: the event was marked published and never reached its merchant. Duplicates
        // are the consumers' business anyway (their inbox applies an event once); one request
        // in flight keeps each partition in order across retries.
        .set("enable.idempotence", "false")
        .set("max.in.flight.requests.per.connection", "1")
        .set("acks", "all")
        .set("message.timeout.ms", PRODUCE_TIMEOUT_MS.to_string())
        .set("linger.ms", "1")
        .create()?)
}

/// An idempotent producer that is made anew after a fatal error, or after its sends failed for
/// [`RELAY_RENEW_AFTER_MS`]. librdkafka's idempotent producer refuses every later send once it
/// raised a fatal error (say the broker lost the producer's sequence state when its log
/// directory failed on a full disk): only a new instance, with a new producer id, publishes
/// again. Sends that failed are retried by their callers, so nothing is lost in the swap.
struct ProducerSlot {
    settings: KafkaSettings,
    current: std::sync::Mutex<FutureProducer>,
    /// Since when every send has failed (none: the last one went through).
    failing_since: std::sync::Mutex<Option<std::time::Instant>>,
}

impl ProducerSlot {
    fn new(settings: &KafkaSettings) -> anyhow::Result<Self> {
        Ok(Self {
            current: std::sync::Mutex::new(producer(settings)?),
            settings: settings.clone(),
            failing_since: std::sync::Mutex::new(None),
        })
    }

    /// A send went through.
    fn succeeded(&self) {
        *self
            .failing_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// A send failed: the instance is made anew when it failed fatally, or when every send has
    /// failed for [`RELAY_RENEW_AFTER_MS`] (and again after as long).
    fn failed(&self) {
        let stuck = {
            let mut since = self
                .failing_since
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = std::time::Instant::now();
            let stuck = now.duration_since(*since.get_or_insert(now))
                >= Duration::from_millis(RELAY_RENEW_AFTER_MS);
            if stuck {
                *since = Some(now);
            }
            stuck
        };
        self.renew_if_broken(stuck);
    }

    /// The instance to send with (a cheap handle on the shared client).
    fn get(&self) -> FutureProducer {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Makes a new instance when the current one failed fatally, or when `stuck`.
    fn renew_if_broken(&self, stuck: bool) {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let why = match current.client().fatal_error() {
            Some((code, reason)) => format!("failed fatally ({code:?}: {reason})"),
            None if stuck => format!("has failed every send for {RELAY_RENEW_AFTER_MS} ms"),
            None => return,
        };
        match producer(&self.settings) {
            Ok(fresh) => {
                tracing::warn!(%why, "the kafka producer made anew");
                *current = fresh;
            }
            Err(error) => {
                tracing::warn!(%why, %error, "the kafka producer could not be made anew yet")
            }
        }
    }

    /// Raises a fatal error in the current instance, as librdkafka would (its own test hook).
    #[cfg(feature = "testing")]
    #[allow(unsafe_code)]
    fn inject_fatal_error(&self, reason: &str) {
        let current = self.get();
        let reason = std::ffi::CString::new(reason).expect("a reason without NUL");
        // SAFETY: the client pointer is live while `current` is held; librdkafka copies the reason.
        let code = unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                current.client().native_ptr(),
                rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                reason.as_ptr(),
            )
        };
        assert_eq!(
            code,
            rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR,
            "librdkafka raised the fatal error"
        );
    }
}

/// Publishes the outbox to Kafka.
pub struct Relay {
    pool: PgPool,
    settings: KafkaSettings,
    producer: ProducerSlot,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("Kafka did not take the batch: {0}")]
    Kafka(String),
    #[error("failpoint after-publish reached")]
    Failpoint,
}

impl Relay {
    pub fn new(pool: PgPool, settings: KafkaSettings) -> anyhow::Result<Self> {
        Ok(Self {
            producer: ProducerSlot::new(&settings)?,
            pool,
            settings,
        })
    }

    /// Makes the relay's producer fail fatally, for tests of the renewal.
    #[cfg(feature = "testing")]
    pub fn inject_fatal_error(&self, reason: &str) {
        self.producer.inject_fatal_error(reason);
    }

    /// The relay for `kafka`, or none (logged) when the service has no Kafka settings: its
    /// events then wait in the outbox until a relay runs.
    pub fn optional(pool: PgPool, kafka: Option<KafkaSettings>) -> anyhow::Result<Option<Self>> {
        match kafka {
            Some(kafka) => Ok(Some(Self::new(pool, kafka)?)),
            None => {
                tracing::warn!("no kafka settings: events stay in the outbox until a relay runs");
                Ok(None)
            }
        }
    }

    /// Publishes up to [`RELAY_BATCH_MAX`] pending rows; returns how many. Rows are locked
    /// (`SKIP LOCKED`) for the batch, so several relays share the work without publishing one
    /// row twice in the normal case.
    pub async fn publish_batch(&self) -> Result<usize, RelayError> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<(Uuid, String, String, Value, String)> = sqlx::query_as(
            "SELECT id, topic, key, envelope, traceparent FROM outbox WHERE published_at IS NULL
             ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(RELAY_BATCH_MAX)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        if crate::failpoints::fails("paykit.outbox.before-publish") {
            tx.rollback().await?;
            return Err(RelayError::Kafka(
                "failpoint paykit.outbox.before-publish".into(),
            ));
        }
        let producer = &self.producer.get();
        let sends = rows.iter().map(|(id, topic, key, envelope, traceparent)| {
            let topic = self.settings.topic(topic);
            let payload = envelope.to_string();
            let id = id.to_string();
            let kind = envelope["type"].as_str().unwrap_or_default().to_string();
            let traceparent = traceparent.clone();
            let key = key.clone();
            async move {
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "event-id",
                        value: Some(&id),
                    })
                    .insert(Header {
                        key: "event-type",
                        value: Some(&kind),
                    })
                    .insert(Header {
                        key: "traceparent",
                        value: Some(&traceparent),
                    })
                    .insert(Header {
                        key: "content-type",
                        value: Some("application/json"),
                    });
                let record = FutureRecord::to(&topic)
                    .key(&key)
                    .payload(&payload)
                    .headers(headers);
                producer
                    .send(record, Duration::from_millis(PRODUCE_TIMEOUT_MS))
                    .await
                    .map(|_| ())
                    .map_err(|(error, _)| format!("{topic}: {error}"))
            }
        });
        let failures: Vec<String> = join_all(sends)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        let dropped = !failures.is_empty()
            && crate::failpoints::weak("paykit.weakness.relay-drops-failed-batch");
        if dropped {
            tracing::warn!(
                failed = failures.len(),
                "seeded weakness: a failed batch marked published"
            );
        }
        if let (Some(first), false) = (failures.first(), dropped) {
            // Nothing is marked: the batch is published again (consumers drop the duplicates).
            tx.rollback().await?;
            return Err(RelayError::Kafka(format!(
                "{} of {} failed, first: {first}",
                failures.len(),
                rows.len()
            )));
        }
        if let Some(failpoint) = self.settings.relay_failpoint.as_deref() {
            let reached = match failpoint.strip_prefix("after-publish:") {
                Some(kind) => rows.iter().any(|row| row.3["type"] == kind),
                None => failpoint == "after-publish",
            };
            if reached {
                tx.rollback().await?;
                return Err(RelayError::Failpoint);
            }
        }
        let ids: Vec<Uuid> = rows.iter().map(|row| row.0).collect();
        sqlx::query("UPDATE outbox SET published_at = now() WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows.len())
    }

    /// Runs until the task is aborted (or, under the test failpoint, until it is reached).
    /// Wakes on [`wake_relays`] from this process's writers, and polls.
    pub async fn run(self) {
        let mut wake_ups = RELAY_WAKE_UPS.subscribe();
        // Under the seeded weakness, set by a failed round: this relay hears nothing more.
        let mut deaf = false;
        let mut backoff = Backoff::new(RELAY_BACKOFF_MIN_MS, RELAY_BACKOFF_MAX_MS);
        let mut last_cleanup = std::time::Instant::now();
        loop {
            // Seeded weakness (chaos bench): a relay woken only by wake-ups, never by its
            // poll, that stops listening after its first failed round (its database away); while
            // it is on, such a relay publishes nothing more.
            let listens_only = crate::failpoints::weak("paykit.weakness.relay-listens-only");
            if deaf {
                if listens_only {
                    tokio::time::sleep(Duration::from_millis(RELAY_POLL_INTERVAL_MS)).await;
                    continue;
                }
                deaf = false;
            }
            match self.publish_batch().await {
                Ok(count) => {
                    backoff.reset();
                    self.producer.succeeded();
                    if count as i64 == RELAY_BATCH_MAX {
                        continue;
                    }
                }
                Err(RelayError::Failpoint) => {
                    tracing::error!("relay failpoint after-publish reached: the relay stops");
                    return;
                }
                Err(error) => {
                    deaf = listens_only;
                    // A new instance is tried after the same backoff: one that fails
                    // fatally again must not spin.
                    self.producer.failed();
                    let wait = backoff.next_delay();
                    let backoff_ms = wait.as_millis();
                    tracing::warn!(%error, backoff_ms, "outbox relay: batch failed; retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
            if last_cleanup.elapsed() > Duration::from_secs(3_600) {
                last_cleanup = std::time::Instant::now();
                let cleanup = sqlx::query(
                    "DELETE FROM outbox WHERE published_at < now() - $1 * interval '1 hour'",
                )
                .bind(OUTBOX_RETENTION_HOURS)
                .execute(&self.pool)
                .await;
                if let Err(error) = cleanup {
                    tracing::warn!(%error, "outbox cleanup failed");
                }
            }
            let poll = tokio::time::sleep(Duration::from_millis(RELAY_POLL_INTERVAL_MS));
            if listens_only {
                // The weak relay's only way to wake. The sender lives as long as the process.
                let _ = wake_ups.changed().await;
            } else {
                tokio::select! {
                    _ = wake_ups.changed() => {}
                    () = poll => {}
                }
            }
        }
    }

    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run())
    }
}

/// Why a handler did not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event can never be applied (it contradicts what this service knows): after the
    /// attempts it goes to the dead-letter topic with this reason.
    #[error("poison: {0}")]
    Poison(String),
    /// Something that may pass (the database): retried without limit.
    #[error(transparent)]
    Transient(#[from] sqlx::Error),
}

pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'a>>;

/// What a consumer does with one event, inside the transaction that also records it.
pub trait Handler: Send + Sync + 'static {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Postgres>,
        event: &'a Envelope,
    ) -> HandlerFuture<'a>;
}

/// Applies a topic's events once each.
pub struct Consumer<H: Handler> {
    name: String,
    pool: PgPool,
    settings: KafkaSettings,
    topics: Vec<String>,
    handler: H,
    dead_letters: ProducerSlot,
}

enum Outcome {
    Applied,
    Duplicate,
    Failed(HandlerError),
}

impl<H: Handler> Consumer<H> {
    /// `name` is the consumer group (and the inbox's scope); `topics` are unprefixed names.
    pub fn new(
        name: &str,
        pool: PgPool,
        settings: KafkaSettings,
        topics: &[&str],
        handler: H,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            name: name.to_string(),
            dead_letters: ProducerSlot::new(&settings)?,
            pool,
            topics: topics.iter().map(|t| settings.topic(t)).collect(),
            settings,
            handler,
        })
    }

    /// One attempt within [`CONSUMER_APPLY_TIMEOUT_MS`]; one that runs out is a transient
    /// failure (its transaction is dropped, so rolled back).
    async fn attempt(&self, event: &Envelope) -> Result<Outcome, sqlx::Error> {
        tokio::time::timeout(
            Duration::from_millis(CONSUMER_APPLY_TIMEOUT_MS),
            self.attempt_unbounded(event),
        )
        .await
        .unwrap_or_else(|_| {
            Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("applying took longer than {CONSUMER_APPLY_TIMEOUT_MS} ms"),
            )))
        })
    }

    async fn attempt_unbounded(&self, event: &Envelope) -> Result<Outcome, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let fresh = sqlx::query(
            "INSERT INTO inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(&self.name)
        .bind(event.id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !fresh {
            tx.rollback().await?;
            return Ok(Outcome::Duplicate);
        }
        match self.handler.handle(&mut tx, event).await {
            Ok(()) => {
                tx.commit().await?;
                Ok(Outcome::Applied)
            }
            Err(error) => {
                tx.rollback().await?;
                Ok(Outcome::Failed(error))
            }
        }
    }

    /// Applies one event: retries transient failures without limit, poison ones up to
    /// [`POISON_ATTEMPTS_MAX`] times; returns the reason when it must be dead-lettered.
    async fn apply(&self, event: &Envelope) -> Option<String> {
        let mut poison_attempts = 0;
        let mut backoff = Backoff::new(CONSUMER_BACKOFF_MIN_MS, CONSUMER_BACKOFF_MAX_MS);
        loop {
            let reason = match self.attempt(event).await {
                Ok(Outcome::Applied | Outcome::Duplicate) => return None,
                Ok(Outcome::Failed(HandlerError::Poison(reason))) => {
                    poison_attempts += 1;
                    if poison_attempts >= POISON_ATTEMPTS_MAX {
                        return Some(reason);
                    }
                    reason
                }
                Ok(Outcome::Failed(HandlerError::Transient(error))) | Err(error) => {
                    if crate::failpoints::weak("paykit.weakness.consumer-skips-failed-event") {
                        tracing::warn!(consumer = %self.name, event = %event.id, %error, "seeded weakness: an event not applied is skipped");
                        return None;
                    }
                    error.to_string()
                }
            };
            let wait = backoff.next_delay();
            let backoff_ms = wait.as_millis();
            tracing::warn!(consumer = %self.name, event = %event.id, %reason, backoff_ms, "event not applied; retrying");
            tokio::time::sleep(wait).await;
        }
    }

    async fn dead_letter(
        &self,
        message: &rdkafka::message::BorrowedMessage<'_>,
        event_id: Option<Uuid>,
        reason: &str,
    ) {
        let payload = message.payload().unwrap_or_default();
        let source = format!(
            "{}/{}/{}",
            message.topic(),
            message.partition(),
            message.offset()
        );
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "dead-letter-reason",
                value: Some(reason),
            })
            .insert(Header {
                key: "dead-letter-source",
                value: Some(&source),
            })
            .insert(Header {
                key: "dead-letter-consumer",
                value: Some(&self.name),
            });
        let topic = self.settings.topic(DEAD_LETTER_TOPIC);
        let key = message.key().unwrap_or_default();
        loop {
            let record = FutureRecord::to(&topic)
                .key(key)
                .payload(payload)
                .headers(headers.clone());
            match self
                .dead_letters
                .get()
                .send(record, Duration::from_millis(PRODUCE_TIMEOUT_MS))
                .await
            {
                Ok(_) => {
                    self.dead_letters.succeeded();
                    break;
                }
                Err((error, _)) => {
                    self.dead_letters.failed();
                    tracing::warn!(%error, "cannot dead-letter yet; retrying");
                    tokio::time::sleep(Duration::from_millis(CONSUMER_BACKOFF_MAX_MS)).await;
                }
            }
        }
        tracing::error!(consumer = %self.name, %source, %reason, "event dead-lettered");
        if let Some(id) = event_id {
            let recorded = sqlx::query(
                "INSERT INTO inbox (consumer, event_id, outcome) VALUES ($1, $2, 'dead-lettered') ON CONFLICT DO NOTHING",
            )
            .bind(&self.name)
            .bind(id)
            .execute(&self.pool)
            .await;
            if let Err(error) = recorded {
                tracing::warn!(%error, "could not record the dead-lettered event");
            }
        }
    }

    fn subscribe(&self) -> anyhow::Result<StreamConsumer> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.settings.bootstrap_servers)
            .set("group.id", &self.name)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .create()?;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(consumer)
    }

    /// Consumes until the task is aborted. Offsets are committed only after an event was
    /// applied (or dead-lettered), so nothing is skipped across restarts.
    ///
    /// A consumer that has had no partition for `CONSUMER_UNASSIGNED_REBUILD_MS` is dropped and
    /// made again: with the broker frozen past the session timeout (chaos experiment
    /// pause-kafka, after a broker restart), librdkafka left the group and never joined it
    /// again; the group stayed empty and merchants saw no payment any more, with no error
    /// logged. A new consumer joins and resumes from the committed offsets.
    pub async fn run(self) -> anyhow::Result<()> {
        let mut consumer = self.subscribe()?;
        let mut unassigned_since: Option<std::time::Instant> = None;
        loop {
            let received =
                tokio::time::timeout(Duration::from_millis(CONSUMER_WATCH_MS), consumer.recv())
                    .await;
            let assigned = consumer
                .assignment()
                .map(|partitions| partitions.count() > 0)
                .unwrap_or(false);
            if assigned {
                unassigned_since = None;
            } else {
                let since = *unassigned_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() >= Duration::from_millis(CONSUMER_UNASSIGNED_REBUILD_MS) {
                    tracing::warn!(
                        consumer = %self.name,
                        unassigned_ms = since.elapsed().as_millis() as u64,
                        "the consumer has no partition; making it again"
                    );
                    crate::metrics::consumer_rebuilt(&self.name);
                    drop(consumer);
                    consumer = self.subscribe()?;
                    unassigned_since = None;
                    continue;
                }
            }
            let Ok(received) = received else {
                continue;
            };
            let first = match received {
                Ok(message) => message,
                Err(error) => {
                    self.consuming_failed(error).await;
                    continue;
                }
            };
            // What else is waiting already joins it, without waiting for more: at a low rate a
            // batch is one event, under load it grows and the commits per event shrink.
            let mut messages = vec![first];
            let mut deferred = None;
            while messages.len() < CONSUMER_BATCH_MAX {
                match futures_util::FutureExt::now_or_never(consumer.recv()) {
                    Some(Ok(message)) => messages.push(message),
                    Some(Err(error)) => {
                        deferred = Some(error);
                        break;
                    }
                    None => break,
                }
            }
            self.apply_messages(&messages).await;
            let mut offsets = rdkafka::TopicPartitionList::new();
            let mut next: std::collections::BTreeMap<(&str, i32), i64> = Default::default();
            for message in &messages {
                let at = next
                    .entry((message.topic(), message.partition()))
                    .or_default();
                *at = (*at).max(message.offset() + 1);
            }
            for ((topic, partition), offset) in next {
                let _ =
                    offsets.add_partition_offset(topic, partition, rdkafka::Offset::Offset(offset));
            }
            if let Err(error) = consumer.commit(&offsets, CommitMode::Async) {
                tracing::warn!(%error, "offset commit failed; the events may be seen again");
            }
            drop(messages);
            if let Some(error) = deferred {
                self.consuming_failed(error).await;
            }
        }
    }

    /// After a consuming error (the broker away): wait, then go on.
    async fn consuming_failed(&self, error: rdkafka::error::KafkaError) {
        // Seeded weakness (chaos bench): a consuming loop that ends at its first error; it
        // stays stopped for as long as the weakness is on.
        if crate::failpoints::weak("paykit.weakness.consumer-stops-on-error") {
            tracing::warn!(%error, consumer = %self.name, "seeded weakness: the consumer stops at a consuming error");
            while crate::failpoints::weak("paykit.weakness.consumer-stops-on-error") {
                tokio::time::sleep(Duration::from_millis(CONSUMER_WATCH_MS)).await;
            }
            return;
        }
        tracing::warn!(%error, consumer = %self.name, "consuming failed; retrying");
        tokio::time::sleep(Duration::from_millis(CONSUMER_BACKOFF_MAX_MS)).await;
    }

    /// Applies a batch of messages: together in one transaction when they all apply, else
    /// one at a time (with the retries and the dead letters of [`Consumer::apply`]), so that one
    /// event that cannot be applied holds up no other.
    async fn apply_messages(&self, messages: &[rdkafka::message::BorrowedMessage<'_>]) {
        let mut events: Vec<(&rdkafka::message::BorrowedMessage<'_>, Envelope)> = Vec::new();
        for message in messages {
            match message
                .payload()
                .map(serde_json::from_slice::<Envelope>)
                .transpose()
            {
                Ok(Some(event)) => events.push((message, event)),
                Ok(None) => self.dead_letter(message, None, "an empty message").await,
                Err(error) => {
                    let reason = format!("not an event envelope: {error}");
                    self.dead_letter(message, None, &reason).await;
                }
            }
        }
        if events.len() > 1 {
            if let Some(spans) = self.apply_together(&events).await {
                // Each event's line in its own span, so that it carries its producer's trace
                // (a person finds a payment's lines by its trace id, batched or not).
                for ((message, event), span) in events.iter().zip(spans) {
                    match span {
                        Some(span) => span.in_scope(|| self.handled(message, event, None)),
                        None => self.handled(message, event, None),
                    }
                }
                return;
            }
        }
        for (message, event) in &events {
            let span = crate::telemetry::consumer_span(
                &self.name,
                message.topic(),
                header_text(*message, "traceparent"),
            );
            let outcome = self.apply(event).instrument(span.clone()).await;
            span.in_scope(|| self.handled(message, event, outcome.as_deref()));
            if let Some(reason) = outcome {
                self.dead_letter(message, Some(event.id), &reason).await;
            }
        }
    }

    /// One transaction for the whole batch: the inbox rows in one statement, each new event's
    /// effect, one commit, within [`CONSUMER_APPLY_TIMEOUT_MS`]. `None` (nothing kept) when any
    /// part fails or time runs out; else each event's span (`None` for a duplicate, which was
    /// not applied again).
    async fn apply_together(
        &self,
        events: &[(&rdkafka::message::BorrowedMessage<'_>, Envelope)],
    ) -> Option<Vec<Option<tracing::Span>>> {
        tokio::time::timeout(
            Duration::from_millis(CONSUMER_APPLY_TIMEOUT_MS),
            self.apply_together_unbounded(events),
        )
        .await
        .ok()
        .flatten()
    }

    async fn apply_together_unbounded(
        &self,
        events: &[(&rdkafka::message::BorrowedMessage<'_>, Envelope)],
    ) -> Option<Vec<Option<tracing::Span>>> {
        assert!(events.len() <= CONSUMER_BATCH_MAX);
        let Ok(mut tx) = self.pool.begin().await else {
            return None;
        };
        let ids: Vec<Uuid> = events.iter().map(|(_, event)| event.id).collect();
        let fresh: Result<Vec<Uuid>, sqlx::Error> = sqlx::query_scalar(
            "INSERT INTO inbox (consumer, event_id) SELECT $1, unnest($2::uuid[])
             ON CONFLICT DO NOTHING RETURNING event_id",
        )
        .bind(&self.name)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await;
        let Ok(fresh) = fresh else {
            return None;
        };
        let mut fresh: std::collections::HashSet<Uuid> = fresh.into_iter().collect();
        let mut spans = Vec::with_capacity(events.len());
        for (message, event) in events {
            // A redelivered event, or the same event twice in the batch: applied once.
            if !fresh.remove(&event.id) {
                spans.push(None);
                continue;
            }
            let span = crate::telemetry::consumer_span(
                &self.name,
                message.topic(),
                header_text(*message, "traceparent"),
            );
            if self
                .handler
                .handle(&mut tx, event)
                .instrument(span.clone())
                .await
                .is_err()
            {
                let _ = tx.rollback().await;
                return None;
            }
            spans.push(Some(span));
        }
        tx.commit().await.ok().map(|()| spans)
    }

    /// The log line and the metrics of an event this consumer is done with.
    fn handled(
        &self,
        message: &rdkafka::message::BorrowedMessage<'_>,
        event: &Envelope,
        dead_letter_reason: Option<&str>,
    ) {
        tracing::info!(
            consumer = %self.name,
            event = %event.id,
            event_type = %event.kind,
            dead_lettered = dead_letter_reason.is_some(),
            "event handled"
        );
        let lag_s = (chrono::Utc::now() - event.occurred_at)
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1e6;
        let outcome = if dead_letter_reason.is_some() {
            "dead_lettered"
        } else {
            "applied"
        };
        crate::metrics::consumed(&self.name, message.topic(), outcome, lag_s);
    }

    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let name = self.name.clone();
            if let Err(error) = self.run().await {
                tracing::error!(%error, consumer = %name, "consumer stopped");
            }
        })
    }
}

/// Creates topics (prefixed) that do not exist yet: for tests, whose platforms each get topics
/// of their own. `paytool up` creates the production ones from stacks/local/kafka/topics.json.
pub async fn create_topics(
    settings: &KafkaSettings,
    names: &[&str],
    partitions: i32,
) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &settings.bootstrap_servers)
        .create()?;
    let prefixed: Vec<String> = names.iter().map(|n| settings.topic(n)).collect();
    let topics: Vec<NewTopic<'_>> = prefixed
        .iter()
        .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(
            &topics,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await?;
    for result in results {
        match result {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("creating {topic}: {code}"),
        }
    }
    Ok(())
}

/// The headers of a consumed message, as text (for tests and the CLI's watcher).
pub fn header_text<'a>(message: &'a impl Message, name: &str) -> Option<&'a str> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}
