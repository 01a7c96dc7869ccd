//! The merchant's event log, which its live stream (SSE and WebSocket) reads.
//!
//! Events are appended in the same database transaction as the change they describe, with a
//! per-merchant id taken from `merchants.last_event_id` under that row's lock: a merchant's
//! events commit in id order, so "everything after id N" is a complete answer at any moment and
//! a reconnecting client that sends `Last-Event-ID: N` misses nothing and sees nothing twice.
//!
//! A trigger NOTIFYs on each insert; one listener per process fans the merchant ids out to the
//! open streams, which then read what is new. Streams also re-read on a timer, so a notification
//! lost while the listener reconnects delays an event by at most that period.

use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Postgres, Transaction};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

/// The channel the trigger notifies on.
const CHANNEL: &str = "merchant_events";
/// Notifications buffered for slow streams; a stream that falls behind re-reads instead.
const FANOUT_CAPACITY: usize = 1024;
/// A stream reads at most this many events per query.
pub const READ_BATCH_MAX: i64 = 100;
/// Streams re-read this often even without a notification.
pub const REREAD_INTERVAL_MS: u64 = 5_000;
/// Backoff before the listener reconnects after losing its connection.
const LISTEN_RETRY_MS: u64 = 1_000;
/// Open streams per process; one more is refused (503) rather than slowing every stream.
pub const STREAMS_MAX: usize = 1_024;
/// Events queued for one stream's client before the pump waits for it.
const STREAM_BUFFER: usize = 64;

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: Value,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
}

/// Appends an event for `merchant` inside `tx`; returns its id.
pub async fn append(
    tx: &mut Transaction<'_, Postgres>,
    merchant: Uuid,
    kind: &str,
    data: &Value,
) -> Result<i64, sqlx::Error> {
    let id: i64 = sqlx::query_scalar!(
        "UPDATE merchants SET last_event_id = last_event_id + 1 WHERE id = $1 RETURNING last_event_id",
        merchant
    )
    .fetch_one(&mut **tx)
    .await?;
    // `data` (jsonb) is `as _`: the compile-time mapping of jsonb needs sqlx's json feature,
    // which the workspace does not enable; it is bound as serde_json::Value, as it always was.
    sqlx::query!(
        "INSERT INTO merchant_events (merchant_id, id, type, data) VALUES ($1, $2, $3, $4)",
        merchant,
        id,
        kind,
        data as _
    )
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// The merchant's events after `after`, oldest first, at most [`READ_BATCH_MAX`].
pub async fn read_after(
    pool: &PgPool,
    merchant: Uuid,
    after: i64,
) -> Result<Vec<Event>, sqlx::Error> {
    sqlx::query_as!(
        Event,
        r#"SELECT id, type AS kind, data AS "data: Value", occurred_at FROM merchant_events
         WHERE merchant_id = $1 AND id > $2 ORDER BY id LIMIT $3"#,
        merchant,
        after,
        READ_BATCH_MAX
    )
    .fetch_all(pool)
    .await
}

/// The merchant's newest event id (0 when there is none): where a new stream starts.
pub async fn latest(pool: &PgPool, merchant: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT last_event_id FROM merchants WHERE id = $1",
        merchant
    )
    .fetch_one(pool)
    .await
}

/// Fans NOTIFYs out to the open streams of this process.
#[derive(Clone)]
pub struct Hub {
    sender: broadcast::Sender<Uuid>,
    streams: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Hub {
    /// Starts the listener task; it reconnects by itself until the process ends.
    pub fn start(pool: PgPool) -> Self {
        let (sender, _) = broadcast::channel(FANOUT_CAPACITY);
        let hub = Self {
            sender,
            streams: std::sync::Arc::new(tokio::sync::Semaphore::new(STREAMS_MAX)),
        };
        let fanout = hub.sender.clone();
        tokio::spawn(async move {
            loop {
                if let Err(error) = listen(&pool, &fanout).await {
                    tracing::warn!(%error, "event listener lost its connection; reconnecting");
                }
                tokio::time::sleep(Duration::from_millis(LISTEN_RETRY_MS)).await;
            }
        });
        hub
    }

    /// A merchant's events after `after`, in order, as they commit: a task reads what is new
    /// whenever the merchant's notification arrives (or the re-read timer fires) and ends when
    /// the receiver is dropped. `None` when [`STREAMS_MAX`] streams are open already.
    pub fn pump(&self, pool: PgPool, merchant: Uuid, after: i64) -> Option<mpsc::Receiver<Event>> {
        let permit = self.streams.clone().try_acquire_owned().ok()?;
        let mut notifications = self.sender.subscribe();
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(async move {
            let _permit = permit;
            let mut after = after;
            loop {
                let batch = match read_after(&pool, merchant, after).await {
                    Ok(batch) => batch,
                    Err(error) => {
                        tracing::warn!(%error, "reading events failed; trying again");
                        Vec::new()
                    }
                };
                let full = batch.len() as i64 == READ_BATCH_MAX;
                for event in batch {
                    after = event.id;
                    if sender.send(event).await.is_err() {
                        return;
                    }
                }
                if full {
                    continue;
                }
                tokio::select! {
                    () = wait_for(&mut notifications, merchant) => {}
                    () = tokio::time::sleep(Duration::from_millis(REREAD_INTERVAL_MS)) => {}
                    () = sender.closed() => return,
                }
            }
        });
        Some(receiver)
    }
}

/// Returns when `merchant` has news (or notifications were lost and a re-read is due).
async fn wait_for(notifications: &mut broadcast::Receiver<Uuid>, merchant: Uuid) {
    loop {
        match notifications.recv().await {
            Ok(id) if id == merchant => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

async fn listen(pool: &PgPool, fanout: &broadcast::Sender<Uuid>) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    loop {
        let notification = listener.recv().await?;
        if let Ok(merchant) = notification.payload().parse::<Uuid>() {
            // No receiver is fine: nobody is watching this process right now.
            let _ = fanout.send(merchant);
        }
    }
}
