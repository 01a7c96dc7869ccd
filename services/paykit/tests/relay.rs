//! The outbox relay against the test platform's Kafka.

use std::time::Duration;

/// How long the relay may take to publish one row, even after making a new producer.
const PUBLISH_BOUND_S: u64 = 60;

#[tokio::test]
async fn a_relay_whose_producer_failed_fatally_makes_a_new_one_and_publishes_what_waited() {
    let pool = paykit::testing::paykit_pool().await;
    let kafka = paykit::testing::kafka_settings().await;
    let relay = paykit::events::Relay::new(pool.clone(), kafka.clone()).expect("a relay");
    // What a broker that lost the producer's state makes librdkafka raise: every later send
    // with this instance fails.
    relay.inject_fatal_error("the broker lost this producer's sequence state");

    let event = paykit::events::Envelope::new(
        "payment.completed",
        "payment/0".into(),
        serde_json::json!({"amount_minor": 1}),
    );
    let mut tx = pool.begin().await.expect("a transaction");
    paykit::events::append(&mut tx, "payments.v1", "merchant-1", &event)
        .await
        .expect("appended");
    tx.commit().await.expect("committed");

    let running = relay.spawn();
    let published = tokio::time::timeout(Duration::from_secs(PUBLISH_BOUND_S), async {
        loop {
            let pending: i64 =
                sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                    .fetch_one(&pool)
                    .await
                    .expect("counted");
            if pending == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    running.abort();
    assert!(
        published.is_ok(),
        "the row waited {PUBLISH_BOUND_S} s behind a producer that failed fatally"
    );
    let messages =
        paykit::testing::read_topic(&kafka, "payments.v1", 1, Duration::from_secs(30)).await;
    let ids: Vec<String> = messages
        .iter()
        .filter_map(|message| message.header("event-id").map(str::to_string))
        .collect();
    assert_eq!(
        ids,
        vec![event.id.to_string()],
        "the event is on its topic once"
    );
}
