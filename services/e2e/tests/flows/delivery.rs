//! At-least-once delivery with exactly-once effects: a relay that dies between the broker's
//! acknowledgement and marking its rows publishes again, and the merchant still records the
//! payment once; a payment retried after a client timeout charges once.

use crate::helpers::{json_of, new_key, World};
use futures_util::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use std::time::Duration;

/// A bound on waiting for Kafka, so that a broken pipeline fails the test instead of hanging it.
const WAIT_BOUND_S: u64 = 30;

/// How many messages on `topic` carry `event-id` = `id` (read from the start, until `at_least`
/// of them arrived or the bound passed).
async fn copies_on_topic(world: &World, topic: &str, id: &str, at_least: usize) -> usize {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &world.platform.kafka.bootstrap_servers)
        .set("group.id", format!("test-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    consumer
        .subscribe(&[world.platform.kafka.topic(topic).as_str()])
        .expect("subscribed");
    let mut copies = 0;
    let mut stream = consumer.stream();
    let _ = tokio::time::timeout(Duration::from_secs(WAIT_BOUND_S), async {
        while let Some(Ok(message)) = stream.next().await {
            if paykit::events::header_text(&message, "event-id") == Some(id) {
                copies += 1;
                if copies >= at_least {
                    return;
                }
            }
            let _ = message.offset();
        }
    })
    .await;
    copies
}

#[tokio::test]
async fn a_relay_killed_after_publishing_and_before_marking_publishes_again_and_the_merchant_records_once(
) {
    let world = World::with(e2e::Options {
        orchestrator_relay_failpoint: Some("after-publish:payment.completed".into()),
    })
    .await;
    let merchant = world.merchant().await;
    let consumer = world.consumer(5_000).await;
    let request = world.payment_request(&merchant, Some(1_500)).await;
    let payment = world.pay_request(&consumer, &request).await;
    let payment_id = payment["id"].as_str().expect("id");

    // The relay published the payment's event, then died before marking its row.
    let orchestrator = world.platform.orchestrator_db.pool().expect("pool");
    let event_id = tokio::time::timeout(Duration::from_secs(WAIT_BOUND_S), async {
        loop {
            let row: Option<(uuid::Uuid,)> = sqlx::query_as(
                "SELECT id FROM outbox WHERE envelope->>'type' = 'payment.completed' AND envelope->>'subject' = $1 AND published_at IS NULL",
            )
            .bind(format!("payment/{payment_id}"))
            .fetch_optional(&orchestrator)
            .await
            .expect("the outbox reads");
            if let Some((id,)) = row {
                if copies_on_topic(&world, "payments.v1", &id.to_string(), 1).await == 1 {
                    return id.to_string();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the payment's event was published once and left unmarked");

    // A new relay (the restarted process) publishes it again.
    let relay = paykit::events::Relay::new(orchestrator.clone(), world.platform.kafka.clone())
        .expect("a relay");
    let restarted = relay.spawn();
    assert_eq!(
        copies_on_topic(&world, "payments.v1", &event_id, 2).await,
        2,
        "the event is on the topic twice: delivery is at least once"
    );
    let page = world
        .merchant_transactions_with(&merchant, "", payment_id)
        .await;
    // Once a later payment is listed, the duplicate was processed too.
    let page_after = world.settled_transactions(&merchant, &consumer).await;
    let listed = |page: &serde_json::Value| {
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|item| item["id"] == payment_id)
            .count()
    };
    assert_eq!(listed(&page), 1);
    assert_eq!(
        listed(&page_after),
        1,
        "recorded once despite two deliveries"
    );
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(&orchestrator)
        .await
        .expect("counted");
    assert_eq!(pending, 0, "the restarted relay marked everything");
    restarted.abort();
    world.assert_ledger_balances().await;
}

#[tokio::test]
async fn a_payment_retried_after_a_client_timeout_charges_once() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let consumer = world.consumer(4_000).await;
    let request = world.payment_request(&merchant, Some(900)).await;
    let qr = request["payload"].as_str().expect("payload");
    let key = new_key();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(5))
        .build()
        .expect("a client");
    let first = impatient
        .post(format!("{}/v1/payments", world.platform.consumer_api))
        .bearer_auth(&consumer.token)
        .header("Idempotency-Key", &key)
        .json(&serde_json::json!({ "qr": qr }))
        .send()
        .await;
    assert!(first.is_err(), "the client gave up before the answer");
    // The retry with the same key gets the payment (in flight: 409, then the stored answer).
    // Bounded at 20 s: on a loaded CI machine the first attempt's saga can take seconds.
    let mut answer = None;
    for _ in 0..400 {
        let retry = world.pay(&consumer, qr, None, &key).await;
        if retry.status() == 201 {
            answer = Some(json_of(retry).await);
            break;
        }
        assert_eq!(retry.status(), 409, "only in flight, never a second charge");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let payment = answer.expect("the retry gets the payment");
    assert_eq!(world.balance(&consumer).await, 3_100, "charged once");
    let page = world
        .merchant_transactions_with(&merchant, "", payment["id"].as_str().expect("id"))
        .await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
}

/// Produces `payload` on this platform's `topic`, keyed by `key`.
async fn produce(world: &World, topic: &str, key: &str, payload: &str) {
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &world.platform.kafka.bootstrap_servers)
        .create()
        .expect("a producer");
    let topic = world.platform.kafka.topic(topic);
    producer
        .send(
            rdkafka::producer::FutureRecord::to(&topic)
                .key(key)
                .payload(payload),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");
}

/// The dead-letter reasons on this platform's dead-letter topic, until `count` arrived.
async fn dead_letter_reasons(world: &World, count: usize) -> Vec<String> {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &world.platform.kafka.bootstrap_servers)
        .set("group.id", format!("test-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("a consumer");
    let topic = world
        .platform
        .kafka
        .topic(paykit::events::DEAD_LETTER_TOPIC);
    consumer.subscribe(&[topic.as_str()]).expect("subscribed");
    let mut reasons = Vec::new();
    let mut stream = consumer.stream();
    let _ = tokio::time::timeout(Duration::from_secs(WAIT_BOUND_S), async {
        while let Some(Ok(message)) = stream.next().await {
            reasons.push(
                paykit::events::header_text(&message, "dead-letter-reason")
                    .unwrap_or_default()
                    .to_string(),
            );
            if reasons.len() >= count {
                return;
            }
        }
    })
    .await;
    reasons
}

#[tokio::test]
async fn poison_messages_go_to_the_dead_letter_topic_with_their_reason_and_the_rest_flows_on() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let consumer = world.consumer(2_000).await;
    let me = json_of(world.merchant_get(&merchant, "/v1/merchants/me").await).await;
    let account = me["ledger_account_id"]
        .as_str()
        .expect("account")
        .to_string();
    // Not an envelope at all.
    produce(&world, "payments.v1", &account, "{not json").await;
    // A well-formed refund of a payment this merchant never had: it can never apply.
    let now = chrono::Utc::now().to_rfc3339();
    let refund = serde_json::json!({
        "id": uuid::Uuid::now_v7(),
        "type": "refund.completed",
        "occurred_at": now,
        "subject": "refund/x",
        "data": {
            "id": uuid::Uuid::new_v4(), "kind": "refund", "state": "completed",
            "amount": { "value": 10, "currency": "JPY" }, "fee": { "value": 0, "currency": "JPY" },
            "debit_account_id": account, "credit_account_id": uuid::Uuid::new_v4(),
            "payment_id": uuid::Uuid::new_v4(), "captured_amount": 0, "refunded_amount": 0,
            "reference": null, "metadata": null, "failure": null,
            "created_at": now, "updated_at": now,
        },
    });
    produce(&world, "payments.v1", &account, &refund.to_string()).await;
    let reasons = dead_letter_reasons(&world, 2).await;
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].starts_with("not an event envelope"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("of a payment not recorded here"),
        "{reasons:?}"
    );
    // The consumer moved past them: a real payment after them is recorded.
    let request = world.payment_request(&merchant, Some(700)).await;
    let paid = world.pay_request(&consumer, &request).await;
    let page = world
        .merchant_transactions_with(&merchant, "", paid["id"].as_str().expect("id"))
        .await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
}

/// Events redelivered in a burst (so that the consumer takes them together), with one that can
/// never apply among them: the batch cannot apply whole, so each event is tried on its own —
/// the copies change nothing, the bad one is dead-lettered, and what follows flows on.
#[tokio::test]
async fn a_burst_of_redelivered_events_with_a_poison_one_among_them_changes_nothing_and_flows_on() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let consumer = world.consumer(10_000).await;
    let mut paid = Vec::new();
    for amount in [101, 102, 103, 104, 105, 106] {
        let request = world.payment_request(&merchant, Some(amount)).await;
        paid.push(world.pay_request(&consumer, &request).await);
    }
    let last = paid.last().expect("payments")["id"]
        .as_str()
        .expect("id")
        .to_string();
    world.merchant_transactions_with(&merchant, "", &last).await;
    let me = json_of(world.merchant_get(&merchant, "/v1/merchants/me").await).await;
    let account = me["ledger_account_id"]
        .as_str()
        .expect("account")
        .to_string();

    // The payments' own events, as the orchestrator published them, sent again at once with a
    // refund of a payment this merchant never had in the middle.
    let orchestrator = world.platform.orchestrator_db.pool().expect("pool");
    let copies: Vec<String> = sqlx::query_scalar(
        "SELECT envelope::text FROM outbox WHERE key = $1 AND envelope->>'type' = 'payment.completed' ORDER BY seq",
    )
    .bind(&account)
    .fetch_all(&orchestrator)
    .await
    .expect("the events");
    assert_eq!(copies.len(), paid.len(), "one event a payment");
    let now = chrono::Utc::now().to_rfc3339();
    let poison = serde_json::json!({
        "id": uuid::Uuid::now_v7(), "type": "refund.completed", "occurred_at": now, "subject": "refund/x",
        "data": {
            "id": uuid::Uuid::new_v4(), "kind": "refund", "state": "completed",
            "amount": { "value": 10, "currency": "JPY" }, "fee": { "value": 0, "currency": "JPY" },
            "debit_account_id": account, "credit_account_id": uuid::Uuid::new_v4(),
            "payment_id": uuid::Uuid::new_v4(), "captured_amount": 0, "refunded_amount": 0,
            "reference": null, "metadata": null, "failure": null, "created_at": now, "updated_at": now,
        },
    })
    .to_string();
    let mut burst: Vec<&str> = copies.iter().map(String::as_str).collect();
    burst.insert(burst.len() / 2, &poison);
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &world.platform.kafka.bootstrap_servers)
        .set("linger.ms", "20")
        .create()
        .expect("a producer");
    let topic = world.platform.kafka.topic("payments.v1");
    let sends = burst.iter().map(|payload| {
        producer.send(
            rdkafka::producer::FutureRecord::to(&topic)
                .key(&account)
                .payload(*payload),
            Duration::from_secs(10),
        )
    });
    for sent in futures_util::future::join_all(sends).await {
        sent.expect("produced");
    }

    let reasons = dead_letter_reasons(&world, 1).await;
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("of a payment not recorded here")),
        "{reasons:?}"
    );
    // A payment after the burst is listed: the consumer went past it, and the copies left
    // every payment listed once.
    let page = world.settled_transactions(&merchant, &consumer).await;
    let items = page["items"].as_array().expect("items");
    for payment in &paid {
        let listed = items
            .iter()
            .filter(|item| item["id"] == payment["id"])
            .count();
        assert_eq!(listed, 1, "{} listed once: {page}", payment["id"]);
    }
    assert_eq!(items.len(), paid.len() + 1, "{page}");
}
