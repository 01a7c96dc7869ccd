//! The Kafka consumer against the test platform's Kafka and PostgreSQL.

use paykit::events::{Consumer, Envelope, Handler, HandlerFuture, CONSUMER_APPLY_TIMEOUT_MS};
use sqlx::{Postgres, Transaction};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long the event may take to be applied, retries included.
const APPLIED_BOUND_S: u64 = 60;

/// Its first attempt waits in the database longer than an apply may take; later ones record
/// the event.
struct SlowFirst {
    attempts: Arc<AtomicU32>,
}

impl Handler for SlowFirst {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Postgres>,
        event: &'a Envelope,
    ) -> HandlerFuture<'a> {
        Box::pin(async move {
            if self.attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                let seconds = (CONSUMER_APPLY_TIMEOUT_MS * 3 / 2) as f64 / 1_000.0;
                sqlx::query("SELECT pg_sleep($1)")
                    .bind(seconds)
                    .execute(&mut **tx)
                    .await?;
            }
            sqlx::query("INSERT INTO applied (event_id) VALUES ($1)")
                .bind(event.id)
                .execute(&mut **tx)
                .await?;
            Ok(())
        })
    }
}

#[tokio::test]
async fn an_apply_that_outlasts_its_bound_is_abandoned_and_done_again_once() {
    let pool = paykit::testing::paykit_pool().await;
    sqlx::query("CREATE TABLE applied (event_id uuid PRIMARY KEY)")
        .execute(&pool)
        .await
        .expect("the handler's table");
    let kafka = paykit::testing::kafka_settings().await;
    let event = Envelope::new(
        "payment.completed",
        "payment/0".into(),
        serde_json::json!({"amount_minor": 1}),
    );
    let mut tx = pool.begin().await.expect("a transaction");
    paykit::events::append(&mut tx, "payments.v1", "merchant-1", &event)
        .await
        .expect("appended");
    tx.commit().await.expect("committed");
    let relay = paykit::events::Relay::new(pool.clone(), kafka.clone())
        .expect("a relay")
        .spawn();

    let attempts = Arc::new(AtomicU32::new(0));
    let consumer = Consumer::new(
        "consumer-test",
        pool.clone(),
        kafka,
        &["payments.v1"],
        SlowFirst {
            attempts: attempts.clone(),
        },
    )
    .expect("a consumer")
    .spawn();
    let applied = tokio::time::timeout(Duration::from_secs(APPLIED_BOUND_S), async {
        loop {
            let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM applied")
                .fetch_one(&pool)
                .await
                .expect("counted");
            if rows > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    consumer.abort();
    relay.abort();
    assert!(applied.is_ok(), "not applied within {APPLIED_BOUND_S} s");
    assert!(
        attempts.load(Ordering::SeqCst) >= 2,
        "the slow attempt was abandoned and another made"
    );
    let (applied, inbox): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM applied), (SELECT count(*) FROM inbox WHERE event_id = $1)",
    )
    .bind(event.id)
    .fetch_one(&pool)
    .await
    .expect("counted");
    assert_eq!((applied, inbox), (1, 1), "applied once, recorded once");
}
