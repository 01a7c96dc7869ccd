//! What the platform publishes to Kafka is what services/contracts/events.yaml (AsyncAPI 3)
//! says: a day of trading through the HTTP APIs, then every message of every topic is read back
//! from the platform's own topics and checked against the contract, with its headers and key.

use paykit::testing::{read_topic, EventContract, TopicMessage};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const PASSWORD: &str = "correct horse battery";
/// A bound on waiting for Kafka: a broken pipeline fails the test instead of hanging it.
const READ_BOUND: Duration = Duration::from_secs(20);
/// How long a topic that should stay empty is watched.
const QUIET_WAIT: Duration = Duration::from_secs(2);

struct World {
    platform: e2e::Platform,
    http: reqwest::Client,
}

/// A registered, signed-in consumer or merchant, with its registration answer.
struct Person {
    email: String,
    token: String,
    registered: Value,
}

impl Person {
    fn id(&self) -> &str {
        self.registered["id"].as_str().expect("an id")
    }
}

fn yen(value: i64) -> Value {
    json!({ "value": value, "currency": "JPY" })
}

fn new_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl World {
    async fn new() -> Self {
        Self {
            platform: e2e::spawn().await,
            http: reqwest::Client::new(),
        }
    }

    /// A POST with an Idempotency-Key, as `who` when given; the status and the JSON body.
    async fn post(&self, url: String, who: Option<&Person>, body: Value) -> (u16, Value) {
        let mut request = self
            .http
            .post(url)
            .header("Idempotency-Key", new_key())
            .json(&body);
        if let Some(who) = who {
            request = request.bearer_auth(&who.token);
        }
        let response = request.send().await.expect("sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    async fn consumer_post(&self, who: &Person, path: &str, body: Value) -> (u16, Value) {
        let url = format!("{}{path}", self.platform.consumer_api);
        self.post(url, Some(who), body).await
    }

    async fn merchant_post(&self, who: &Person, path: &str, body: Value) -> (u16, Value) {
        let url = format!("{}{path}", self.platform.merchant_api);
        self.post(url, Some(who), body).await
    }

    /// Registers a JPY consumer, logs in and tops up `balance` yen (none when 0).
    async fn consumer(&self, name: &str, balance: i64) -> Person {
        let email = e2e::unique_email("consumer");
        let url = format!("{}/v1/consumers", self.platform.consumer_api);
        let body = json!({ "email": email, "password": PASSWORD, "name": name });
        let (status, registered) = self.post(url, None, body).await;
        assert_eq!(status, 201, "the consumer registers: {registered}");
        let person = Person {
            token: e2e::login(&email, PASSWORD).await,
            email,
            registered,
        };
        if balance > 0 {
            let (status, _) = self
                .consumer_post(
                    &person,
                    "/v1/wallet/top-ups",
                    json!({ "amount": yen(balance) }),
                )
                .await;
            assert_eq!(status, 201, "the top-up goes through");
        }
        person
    }

    /// Registers a JPY merchant in Tokyo and logs in.
    async fn merchant(&self) -> Person {
        let email = e2e::unique_email("merchant");
        let url = format!("{}/v1/merchants", self.platform.merchant_api);
        let body = json!({
            "name": "Cafe Paytool", "city": "Tokyo", "country": "JP", "mcc": "5812",
            "currency": "JPY", "email": email, "password": PASSWORD,
        });
        let (status, registered) = self.post(url, None, body).await;
        assert_eq!(status, 201, "the merchant registers: {registered}");
        Person {
            token: e2e::login(&email, PASSWORD).await,
            email,
            registered,
        }
    }

    /// A payment request of `merchant`: dynamic with `amount`, static without.
    async fn payment_request(&self, merchant: &Person, amount: Option<i64>) -> Value {
        let body = match amount {
            Some(value) => json!({ "amount": yen(value), "reference": "ORDER-1" }),
            None => json!({}),
        };
        let (status, request) = self
            .merchant_post(merchant, "/v1/payment-requests", body)
            .await;
        assert_eq!(status, 201, "the payment request is made: {request}");
        request
    }

    /// `consumer` pays the QR of `request` (its own amount).
    async fn pay(&self, consumer: &Person, request: &Value) -> (u16, Value) {
        let qr = request["payload"].as_str().expect("a payload");
        self.consumer_post(consumer, "/v1/payments", json!({ "qr": qr }))
            .await
    }

    /// The merchant's payments once `ready` holds of the page (the list is fed by payments.v1).
    async fn merchant_payments_when(&self, merchant: &Person, ready: impl Fn(&Value) -> bool) {
        let url = format!(
            "{}/v1/transactions?limit=100&kind=payment",
            self.platform.merchant_api
        );
        for _ in 0..300 {
            let page: Value = self
                .http
                .get(&url)
                .bearer_auth(&merchant.token)
                .send()
                .await
                .expect("sent")
                .json()
                .await
                .expect("json");
            if ready(&page) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the merchant's list did not catch up with payments.v1");
    }

    /// Every message of this platform's `topic`, once `count` arrived (or the bound passed).
    async fn read(&self, topic: &str, count: usize) -> Vec<TopicMessage> {
        read_topic(&self.platform.kafka, topic, count, READ_BOUND).await
    }
}

/// A W3C `traceparent` as the trace context spec defines it (version 00): lower-case hex, and
/// neither the trace id nor the parent id all zeros.
fn is_w3c_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |part: &str, len: usize| {
        part.len() == len
            && part
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    };
    parts.len() == 4
        && parts[0] == "00"
        && hex(parts[1], 32)
        && parts[1].chars().any(|c| c != '0')
        && hex(parts[2], 16)
        && parts[2].chars().any(|c| c != '0')
        && hex(parts[3], 2)
}

/// How many messages of each type.
fn type_counts(messages: &[TopicMessage]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for message in messages {
        let kind = message.json()["type"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        *counts.entry(kind).or_insert(0) += 1;
    }
    counts
}

fn counts(expected: &[(&str, usize)]) -> BTreeMap<String, usize> {
    expected.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

/// The one message on `messages` whose envelope satisfies `which`.
fn find(messages: &[TopicMessage], which: impl Fn(&Value) -> bool) -> &TopicMessage {
    let mut found = messages.iter().filter(|m| which(&m.json()));
    let first = found.next().expect("a message of that description");
    assert!(
        found.next().is_none(),
        "only one message of that description"
    );
    first
}

#[tokio::test]
async fn every_published_event_matches_the_asyncapi_contract() {
    let contract = EventContract::load("events");
    let world = World::new().await;

    // A day of trading.
    let merchant = world.merchant().await;
    let merchant_account = merchant.registered["ledger_account_id"]
        .as_str()
        .expect("the merchant's ledger account")
        .to_string();
    let payer = world.consumer("Payer", 10_000).await;
    let friend = world.consumer("Friend", 0).await;
    let poor = world.consumer("Poor", 100).await;

    let dynamic = world.payment_request(&merchant, Some(1_500)).await;
    let (status, qr_payment) = world.pay(&payer, &dynamic).await;
    assert_eq!(status, 201, "the QR payment goes through: {qr_payment}");
    let qr_payment_id = qr_payment["id"].as_str().expect("id").to_string();

    let (status, code) = world
        .consumer_post(&payer, "/v1/payment-codes", json!({}))
        .await;
    assert_eq!(status, 201);
    let (status, charge) = world
        .merchant_post(
            &merchant,
            "/v1/charges",
            json!({ "payment_code": code["code"], "amount": yen(1_200), "reference": "TILL-3" }),
        )
        .await;
    assert_eq!(status, 201, "the code is charged: {charge}");
    let charge_id = charge["id"].as_str().expect("id").to_string();

    let (status, sent) = world
        .consumer_post(
            &payer,
            "/v1/transfers",
            json!({ "to": { "email": friend.email }, "amount": yen(300), "note": "lunch" }),
        )
        .await;
    assert_eq!(status, 201, "the transfer goes through: {sent}");

    let (status, refund) = world
        .merchant_post(
            &merchant,
            "/v1/refunds",
            json!({ "payment_id": qr_payment_id, "amount": yen(500) }),
        )
        .await;
    assert_eq!(status, 201, "the refund goes through: {refund}");

    let too_dear = world.payment_request(&merchant, Some(500)).await;
    let (status, declined) = world.pay(&poor, &too_dear).await;
    assert_eq!(
        status, 402,
        "without the money the payment is declined: {declined}"
    );

    // A static QR (no amount) is announced too.
    world.payment_request(&merchant, None).await;

    // Every topic, read back from the start.
    let consumers = world.read("consumers.v1", 3).await;
    let merchants = world.read("merchants.v1", 4).await;
    let ledger = world.read("ledger.v1", 3).await;
    let payments = world.read("payments.v1", 4).await;

    assert_eq!(
        type_counts(&consumers),
        counts(&[("consumer.registered", 3)])
    );
    assert_eq!(
        type_counts(&merchants),
        counts(&[("merchant.registered", 1), ("payment_request.created", 3)])
    );
    assert_eq!(
        type_counts(&ledger),
        counts(&[("top_up.completed", 2), ("transfer.completed", 1)])
    );
    assert_eq!(
        type_counts(&payments),
        counts(&[
            ("payment.completed", 2),
            ("payment.declined", 1),
            ("refund.completed", 1)
        ])
    );

    let mut seen: BTreeMap<String, Value> = BTreeMap::new();
    for (topic, messages) in [
        ("consumers.v1", &consumers),
        ("merchants.v1", &merchants),
        ("ledger.v1", &ledger),
        ("payments.v1", &payments),
    ] {
        for message in messages.iter() {
            // Payload, headers and key against events.yaml.
            contract.check_message(topic, message);
            let event = message.json();
            let id = event["id"].as_str().expect("an id");
            let kind = event["type"].as_str().expect("a type");
            assert_eq!(message.header("event-id"), Some(id), "{topic}: {event}");
            assert_eq!(message.header("event-type"), Some(kind), "{topic}: {event}");
            assert_eq!(
                message.header("content-type"),
                Some("application/json"),
                "{topic}: {event}"
            );
            let traceparent = message.header("traceparent").unwrap_or_default();
            assert!(
                is_w3c_traceparent(traceparent),
                "{topic}: {traceparent:?} is a W3C traceparent"
            );
            // The subject names what the data is about.
            let entity = kind.split('.').next().unwrap_or_default();
            let data_id = event["data"]["id"].as_str().unwrap_or_default();
            assert_eq!(event["subject"], format!("{entity}/{data_id}"), "{event}");
            // Deduplication on `id` is sound: a redelivery is the very same event.
            if let Some(earlier) = seen.insert(id.to_string(), event.clone()) {
                assert_eq!(earlier, event, "two different events share the id {id}");
            }
        }
    }

    // payments.v1 is keyed by the merchant's ledger account, so a merchant's events keep
    // their order; the events are those of the payments made above.
    for message in &payments {
        assert_eq!(
            message.key.as_deref(),
            Some(merchant_account.as_str()),
            "{}",
            message.json()
        );
    }
    let qr_paid = find(&payments, |e| e["data"]["id"] == qr_payment_id.as_str());
    assert_eq!(qr_paid.json()["type"], "payment.completed");
    assert_eq!(qr_paid.json()["data"]["amount"], yen(1_500));
    assert_eq!(qr_paid.json()["data"]["metadata"]["channel"], "qr");
    let charged = find(&payments, |e| e["data"]["id"] == charge_id.as_str());
    assert_eq!(charged.json()["type"], "payment.completed");
    assert_eq!(charged.json()["data"]["metadata"]["channel"], "code");
    let refunded = find(&payments, |e| e["type"] == "refund.completed");
    assert_eq!(
        refunded.json()["data"]["payment_id"],
        qr_payment_id.as_str()
    );
    assert_eq!(refunded.json()["data"]["amount"], yen(500));
    assert_eq!(
        refunded.json()["data"]["debit_account_id"],
        merchant_account.as_str()
    );
    let declined = find(&payments, |e| e["type"] == "payment.declined");
    assert_eq!(
        declined.json()["data"]["failure"]["type"],
        "insufficient-funds"
    );
    assert_eq!(declined.json()["data"]["amount"], yen(500));

    // ledger.v1: a top-up is keyed by the wallet topped up, a transfer by the wallet that sent.
    let payer_wallet = payer.registered["wallet"]["id"].as_str().expect("wallet");
    let friend_wallet = friend.registered["wallet"]["id"].as_str().expect("wallet");
    let poor_wallet = poor.registered["wallet"]["id"].as_str().expect("wallet");
    for wallet in [payer_wallet, poor_wallet] {
        let topped_up = find(&ledger, |e| {
            e["type"] == "top_up.completed" && e["data"]["credit_account_id"] == wallet
        });
        assert_eq!(topped_up.key.as_deref(), Some(wallet));
    }
    let transfer = find(&ledger, |e| e["type"] == "transfer.completed");
    assert_eq!(transfer.key.as_deref(), Some(payer_wallet));
    assert_eq!(transfer.json()["data"]["debit_account_id"], payer_wallet);
    assert_eq!(transfer.json()["data"]["credit_account_id"], friend_wallet);
    assert_eq!(transfer.json()["data"]["kind"], "p2p");

    // merchants.v1 and consumers.v1 are keyed by the merchant and the consumer.
    for message in &merchants {
        assert_eq!(message.key.as_deref(), Some(merchant.id()));
    }
    let registered = find(&merchants, |e| e["type"] == "merchant.registered");
    assert_eq!(
        registered.json()["data"]["ledger_account_id"],
        merchant_account.as_str()
    );
    assert!(
        registered.json()["data"].get("email").is_none(),
        "a merchant's login stays out of its event"
    );
    for person in [&payer, &friend, &poor] {
        let event = find(&consumers, |e| e["data"]["id"] == person.id());
        assert_eq!(event.key.as_deref(), Some(person.id()));
        assert_eq!(
            event.json()["data"]["wallet_account_id"],
            person.registered["wallet"]["id"]
        );
    }

    // merchant-api's consumer applied the payments without dead-lettering any: once the
    // refund (after both payments on the merchant's partition) is in the list, the dead-letter
    // topic is still empty.
    world
        .merchant_payments_when(&merchant, |page| {
            page["items"].as_array().is_some_and(|items| {
                items.iter().any(|item| {
                    item["id"] == qr_payment_id.as_str() && item["refunded"]["value"] == 500
                })
            })
        })
        .await;
    let dead = read_topic(&world.platform.kafka, "dead-letter.v1", 1, QUIET_WAIT).await;
    assert!(
        dead.is_empty(),
        "nothing the platform published was dead-lettered: {:?}",
        dead.first().map(|m| m.headers.clone())
    );
}

#[tokio::test]
async fn a_dead_lettered_event_keeps_its_key_and_bytes_and_says_why_in_its_headers() {
    let contract = EventContract::load("events");
    let world = World::new().await;
    let merchant = world.merchant().await;
    let account = merchant.registered["ledger_account_id"]
        .as_str()
        .expect("the merchant's ledger account")
        .to_string();
    // A well-formed refund of a payment the merchant never had: it matches the contract, and
    // merchant-api can never apply it.
    let now = chrono::Utc::now().to_rfc3339();
    let refund = uuid::Uuid::new_v4();
    let poison = json!({
        "id": uuid::Uuid::now_v7(),
        "type": "refund.completed",
        "occurred_at": now,
        "subject": format!("refund/{refund}"),
        "data": {
            "id": refund, "kind": "refund", "state": "completed",
            "amount": yen(10), "fee": yen(0),
            "debit_account_id": account, "credit_account_id": uuid::Uuid::new_v4(),
            "payment_id": uuid::Uuid::new_v4(), "captured_amount": 0, "refunded_amount": 0,
            "reference": null, "metadata": null, "failure": null,
            "created_at": now, "updated_at": now,
        },
    });
    contract.check("payments.v1", &poison);
    let payload = poison.to_string();
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &world.platform.kafka.bootstrap_servers)
        .create()
        .expect("a producer");
    let source_topic = world.platform.kafka.topic("payments.v1");
    let delivered = producer
        .send(
            rdkafka::producer::FutureRecord::to(&source_topic)
                .key(&account)
                .payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");

    let dead = world.read("dead-letter.v1", 1).await;
    assert_eq!(dead.len(), 1, "the poison event is dead-lettered");
    let letter = &dead[0];
    contract.check_headers("dead-letter.v1", &poison, &letter.headers);
    contract.check_key(
        "dead-letter.v1",
        &poison,
        letter.key.as_deref().unwrap_or_default(),
    );
    assert_eq!(
        letter.key.as_deref(),
        Some(account.as_str()),
        "the original key"
    );
    assert_eq!(letter.payload, payload.as_bytes(), "the original bytes");
    assert_eq!(
        letter.header("dead-letter-source"),
        Some(
            format!(
                "{source_topic}/{}/{}",
                delivered.partition, delivered.offset
            )
            .as_str()
        )
    );
    assert_eq!(
        letter.header("dead-letter-consumer"),
        Some("merchant-api.payments")
    );
    assert!(
        letter
            .header("dead-letter-reason")
            .is_some_and(|reason| reason.contains("of a payment not recorded here")),
        "{:?}",
        letter.headers
    );
}
