//! Test support: a fresh, empty PostgreSQL database per test on the real server.
//!
//! Tests find the server through `PAYTOOL_TEST_DATABASE_URL`, an admin URL that `scripts/test.sh`
//! exports from the test platform's `paytool status --json`. There is deliberately no fallback
//! to an in-process fake: without a real server the test fails and says how to get one.

use crate::db::DatabaseSettings;
use secrecy::SecretString;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::str::FromStr;

pub const ADMIN_URL_ENV: &str = "PAYTOOL_TEST_DATABASE_URL";

/// Creates `test_<uuid>` and returns settings pointing at it.
pub async fn fresh_database() -> DatabaseSettings {
    let admin_url = std::env::var(ADMIN_URL_ENV).unwrap_or_else(|_| {
        panic!(
            "{ADMIN_URL_ENV} is not set: run the tests through scripts/test.sh, which starts a real \
             PostgreSQL, or export it from `paytool status --json`"
        )
    });
    let admin = PgConnectOptions::from_str(&admin_url).expect("the admin URL parses");
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut connection = admin.connect().await.expect("the test PostgreSQL answers");
    sqlx::query(&format!(r#"CREATE DATABASE "{name}""#))
        .execute(&mut connection)
        .await
        .expect("a fresh database is created");
    connection.close().await.ok();
    let url = format!(
        "{}/{name}",
        admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(base, _)| base)
    );
    DatabaseSettings {
        url: SecretString::from(url),
        max_connections: 5,
        acquire_timeout_ms: 5_000,
        statement_timeout_ms: 5_000,
    }
}

/// A pool on a fresh database with paykit's own tables (outbox, inbox, idempotency keys,
/// sessions) migrated.
pub async fn paykit_pool() -> sqlx::PgPool {
    let pool = fresh_database().await.pool().expect("pool");
    crate::db::PAYKIT_MIGRATIONS
        .run(&pool)
        .await
        .expect("paykit's tables");
    pool
}

/// The test platform's `paytool status --json --show-secrets`, which `scripts/test.sh` writes
/// to the file named by `PAYTOOL_TEST_STATUS`.
pub const STATUS_ENV: &str = "PAYTOOL_TEST_STATUS";

pub fn platform_status() -> serde_json::Value {
    let path = std::env::var(STATUS_ENV).unwrap_or_else(|_| {
        panic!("{STATUS_ENV} is not set: run the tests through scripts/test.sh, which starts a real Keycloak")
    });
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// Auth settings that verify tokens of the test platform's realm for `audience`.
pub fn auth_settings(audience: &str) -> crate::auth::AuthSettings {
    let status = platform_status();
    let connections = &status["connections"];
    let realm = connections["keycloak_realm"].as_str().expect("realm");
    crate::auth::AuthSettings {
        issuer: format!(
            "{}/realms/{realm}",
            connections["keycloak_public_url"]
                .as_str()
                .expect("public url")
        ),
        jwks_url: format!(
            "{}/realms/{realm}/protocol/openid-connect/certs",
            connections["keycloak_url"].as_str().expect("keycloak url")
        ),
        audience: audience.to_string(),
    }
}

/// An access token for a confidential client of the realm (client-credentials grant).
pub async fn client_token(client_id: &str) -> String {
    let status = platform_status();
    let connections = &status["connections"];
    let secret = connections["client_secrets"][client_id]
        .as_str()
        .unwrap_or_else(|| panic!("no secret for client {client_id}"));
    let url = format!(
        "{}/realms/{}/protocol/openid-connect/token",
        connections["keycloak_url"].as_str().expect("keycloak url"),
        connections["keycloak_realm"].as_str().expect("realm")
    );
    let response: serde_json::Value = reqwest::Client::new()
        .post(url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .expect("Keycloak answers")
        .error_for_status()
        .expect("the client credentials are accepted")
        .json()
        .await
        .expect("a token response");
    response["access_token"]
        .as_str()
        .expect("an access token")
        .to_string()
}

/// An OpenAPI 3.1 contract from `services/contracts/`, to check a running service's answers
/// against: the operation and status must be documented, and the body must match its schema.
pub struct Contract {
    name: String,
    document: serde_json::Value,
}

impl Contract {
    pub fn load(name: &str) -> Self {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../contracts")
            .join(format!("{name}.yaml"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let document: serde_json::Value = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
        assert_eq!(
            document["openapi"].as_str().map(|v| v.starts_with("3.1")),
            Some(true),
            "{name}: an OpenAPI 3.1 document"
        );
        Self {
            name: name.to_string(),
            document,
        }
    }

    /// Panics unless `status` with this content type and body is what the contract documents
    /// for `method path_template` (e.g. `"post"`, `"/v1/payments"`).
    pub fn check(
        &self,
        method: &str,
        path_template: &str,
        status: u16,
        content_type: &str,
        body: &serde_json::Value,
    ) {
        let name = &self.name;
        let operation = &self.document["paths"][path_template][method.to_ascii_lowercase()];
        assert!(
            operation.is_object(),
            "{name}: {method} {path_template} is not in the contract"
        );
        let mut response = &operation["responses"][status.to_string()];
        assert!(
            response.is_object(),
            "{name}: {method} {path_template} does not document status {status}"
        );
        if let Some(reference) = response["$ref"].as_str() {
            response = self.pointer(reference);
        }
        let media = content_type.split(';').next().unwrap_or("").trim();
        let schema = &response["content"][media]["schema"];
        assert!(
            schema.is_object(),
            "{name}: {method} {path_template} {status} documents no {media} body"
        );
        // The schema is checked with the document's components beside it, so that its
        // `#/components/...` references resolve.
        let mut root = schema.clone();
        root["components"] = self.document["components"].clone();
        root["$schema"] = serde_json::Value::from("https://json-schema.org/draft/2020-12/schema");
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| {
                panic!("{name}: the schema of {method} {path_template} {status} is invalid: {e}")
            });
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}: {method} {path_template} {status} breaks the contract: {errors:?}\nbody: {body}");
    }

    /// Every documented operation, as `(method, path template)`.
    pub fn operations(&self) -> Vec<(String, String)> {
        let mut operations = Vec::new();
        if let Some(paths) = self.document["paths"].as_object() {
            for (path, item) in paths {
                for method in ["get", "post", "put", "patch", "delete"] {
                    if item[method].is_object() {
                        operations.push((method.to_string(), path.clone()));
                    }
                }
            }
        }
        operations
    }

    fn pointer(&self, reference: &str) -> &serde_json::Value {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local references: {reference}"));
        self.document
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{}: dangling reference {reference}", self.name))
    }
}

impl Contract {
    /// Reads a response and checks it against the contract; returns its status and body.
    pub async fn check_response(
        &self,
        method: &str,
        path_template: &str,
        response: reqwest::Response,
    ) -> (u16, serde_json::Value) {
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body: serde_json::Value = response.json().await.expect("a JSON body");
        self.check(method, path_template, status, &content_type, &body);
        (status, body)
    }
}

/// Validates `instance` against `schema`, with `document`'s components beside it so that its
/// `#/components/...` references resolve; the errors, one line each.
fn schema_errors(
    document: &serde_json::Value,
    schema: &serde_json::Value,
    instance: &serde_json::Value,
) -> Result<Vec<String>, String> {
    let mut root = match schema {
        serde_json::Value::Object(_) => schema.clone(),
        // `true`, `false` or nothing: wrapped, so that components can sit beside it.
        other => serde_json::json!({ "allOf": [other] }),
    };
    root["components"] = document["components"].clone();
    root["$schema"] = serde_json::Value::from("https://json-schema.org/draft/2020-12/schema");
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&root)
        .map_err(|e| e.to_string())?;
    Ok(validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect())
}

/// The AsyncAPI 3 contract of the platform's events (`services/contracts/events.yaml`), to check
/// what the services publish: a topic's message is the one whose payload's `type` (a `const` or
/// an `enum`) names the envelope's type, and the envelope must match that message's payload
/// schema; headers and key are checked against the message's `headers` and Kafka `key` schemas.
pub struct EventContract {
    name: String,
    document: serde_json::Value,
}

impl EventContract {
    pub fn load(name: &str) -> Self {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../contracts")
            .join(format!("{name}.yaml"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let document: serde_json::Value = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
        assert_eq!(
            document["asyncapi"].as_str().map(|v| v.starts_with("3.")),
            Some(true),
            "{name}: an AsyncAPI 3 document"
        );
        Self {
            name: name.to_string(),
            document,
        }
    }

    /// The topics (channel addresses) the contract documents.
    pub fn topics(&self) -> Vec<String> {
        self.document["channels"]
            .as_object()
            .map(|channels| {
                channels
                    .values()
                    .filter_map(|c| c["address"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The event types documented on `topic` (unprefixed), as the messages' payloads declare them.
    pub fn types(&self, topic: &str) -> Vec<String> {
        self.messages(topic)
            .into_iter()
            .flat_map(|(_, message)| self.declared_types(&message["payload"]))
            .collect()
    }

    /// Panics unless `event` (a whole envelope) matches the payload schema of the message of
    /// `topic` (unprefixed: `payments.v1`) for its `type`.
    pub fn check(&self, topic: &str, event: &serde_json::Value) {
        let (message_name, message) = self.message_for(topic, event);
        self.assert_matches(
            &message["payload"],
            event,
            &format!("{topic} {message_name} payload"),
        );
    }

    /// Panics unless `headers` match the `headers` schema of the message `event` is on `topic`.
    pub fn check_headers(
        &self,
        topic: &str,
        event: &serde_json::Value,
        headers: &std::collections::BTreeMap<String, String>,
    ) {
        let (message_name, message) = self.message_for(topic, event);
        let schema = &message["headers"];
        assert!(
            schema.is_object(),
            "{}: {topic} {message_name} documents no headers",
            self.name
        );
        let headers = serde_json::to_value(headers).expect("headers as JSON");
        self.assert_matches(schema, &headers, &format!("{topic} {message_name} headers"));
    }

    /// Panics unless `key` matches the Kafka `key` binding of the message `event` is on `topic`.
    pub fn check_key(&self, topic: &str, event: &serde_json::Value, key: &str) {
        let (message_name, message) = self.message_for(topic, event);
        let schema = &message["bindings"]["kafka"]["key"];
        assert!(
            schema.is_object(),
            "{}: {topic} {message_name} documents no Kafka key",
            self.name
        );
        self.assert_matches(
            schema,
            &serde_json::Value::from(key),
            &format!("{topic} {message_name} key"),
        );
    }

    /// Payload, headers and key of a message read from `topic` (unprefixed).
    pub fn check_message(&self, topic: &str, message: &TopicMessage) {
        let event = message.json();
        self.check(topic, &event);
        self.check_headers(topic, &event, &message.headers);
        self.check_key(topic, &event, message.key.as_deref().unwrap_or_default());
    }

    /// Every example of every message, as `(topic, message name, headers, payload)`.
    pub fn examples(&self) -> Vec<(String, String, serde_json::Value, serde_json::Value)> {
        let mut examples = Vec::new();
        for topic in self.topics() {
            for (name, message) in self.messages(&topic) {
                for example in message["examples"].as_array().into_iter().flatten() {
                    examples.push((
                        topic.clone(),
                        name.clone(),
                        example["headers"].clone(),
                        example["payload"].clone(),
                    ));
                }
            }
        }
        examples
    }

    fn assert_matches(&self, schema: &serde_json::Value, instance: &serde_json::Value, what: &str) {
        let name = &self.name;
        let errors = schema_errors(&self.document, schema, instance)
            .unwrap_or_else(|e| panic!("{name}: the schema of {what} is invalid: {e}"));
        assert!(
            errors.is_empty(),
            "{name}: {what} breaks the contract: {errors:?}\ninstance: {instance}"
        );
    }

    /// The messages of the channel whose address is `topic`, references resolved.
    fn messages(&self, topic: &str) -> Vec<(String, &serde_json::Value)> {
        let name = &self.name;
        let channel = self.document["channels"]
            .as_object()
            .and_then(|channels| channels.values().find(|c| c["address"] == topic))
            .unwrap_or_else(|| panic!("{name}: no channel has the address {topic}"));
        channel["messages"]
            .as_object()
            .unwrap_or_else(|| panic!("{name}: the channel {topic} has no messages"))
            .iter()
            .map(|(key, message)| (key.clone(), self.resolve(message)))
            .collect()
    }

    /// The one message of `topic` whose payload declares `event`'s type; on a channel of one
    /// message that declares no type (the dead-letter topic), that message.
    fn message_for(&self, topic: &str, event: &serde_json::Value) -> (String, &serde_json::Value) {
        let name = &self.name;
        let kind = event["type"].as_str().unwrap_or_default();
        let messages = self.messages(topic);
        let untyped =
            messages.len() == 1 && self.declared_types(&messages[0].1["payload"]).is_empty();
        let mut matching: Vec<(String, &serde_json::Value)> = messages
            .into_iter()
            .filter(|(_, message)| {
                untyped
                    || self
                        .declared_types(&message["payload"])
                        .iter()
                        .any(|t| t == kind)
            })
            .collect();
        assert!(
            matching.len() <= 1,
            "{name}: {topic} documents the type {kind:?} in more than one message"
        );
        matching
            .pop()
            .unwrap_or_else(|| panic!("{name}: {topic} documents no message of type {kind:?}"))
    }

    /// The `const` or `enum` of `properties.type` in `schema`, looking through references and
    /// `allOf`/`oneOf`/`anyOf`.
    fn declared_types(&self, schema: &serde_json::Value) -> Vec<String> {
        let schema = self.resolve(schema);
        let mut types = Vec::new();
        let kind = self.resolve(&schema["properties"]["type"]);
        if let Some(value) = kind["const"].as_str() {
            types.push(value.to_string());
        }
        for value in kind["enum"].as_array().into_iter().flatten() {
            types.extend(value.as_str().map(str::to_string));
        }
        for combinator in ["allOf", "oneOf", "anyOf"] {
            for part in schema[combinator].as_array().into_iter().flatten() {
                types.extend(self.declared_types(part));
            }
        }
        types
    }

    /// `value`, or what its local `$ref` points at (followed until it is no reference).
    fn resolve<'a>(&'a self, mut value: &'a serde_json::Value) -> &'a serde_json::Value {
        let mut hops = 0;
        while let Some(reference) = value["$ref"].as_str() {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("only local references: {reference}"));
            value = self
                .document
                .pointer(pointer)
                .unwrap_or_else(|| panic!("{}: dangling reference {reference}", self.name));
            hops += 1;
            assert!(hops < 32, "{}: a reference cycle at {reference}", self.name);
        }
        value
    }
}

/// One message as read from Kafka.
#[derive(Debug, Clone)]
pub struct TopicMessage {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    /// Header values as text (lossy for bytes that are not UTF-8); the last of a repeated name.
    pub headers: std::collections::BTreeMap<String, String>,
}

impl TopicMessage {
    /// The payload as JSON; panics when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| {
            panic!(
                "the message at partition {} offset {} is not JSON ({e}): {}",
                self.partition,
                self.offset,
                String::from_utf8_lossy(&self.payload)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Reads `topic` (unprefixed; `settings`' prefix is put before it) from the beginning of every
/// partition, without a consumer group of its own to join, until `count` messages arrived or
/// `wait` passed; returns what arrived, in each partition's order. Nothing is committed, so
/// reading disturbs no one.
pub async fn read_topic(
    settings: &crate::events::KafkaSettings,
    topic: &str,
    count: usize,
    wait: std::time::Duration,
) -> Vec<TopicMessage> {
    use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let deadline = tokio::time::Instant::now() + wait;
    let name = settings.topic(topic);
    let config = {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &settings.bootstrap_servers)
            .set(
                "group.id",
                format!("paykit-testing-{}", uuid::Uuid::new_v4()),
            )
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest");
        config
    };
    let partitions = {
        let (config, name) = (config.clone(), name.clone());
        tokio::task::spawn_blocking(move || {
            let metadata: BaseConsumer = config.create().expect("a Kafka client");
            let metadata = metadata
                .fetch_metadata(Some(&name), wait)
                .unwrap_or_else(|e| panic!("no metadata for the topic {name}: {e}"));
            metadata
                .topics()
                .iter()
                .filter(|t| t.name() == name && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
                .collect::<Vec<i32>>()
        })
        .await
        .expect("the metadata request ran")
    };
    assert!(
        !partitions.is_empty(),
        "the topic {name} does not exist (or has no partitions)"
    );
    let consumer: StreamConsumer = config.create().expect("a Kafka consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        assignment
            .add_partition_offset(&name, partition, Offset::Beginning)
            .expect("an assignable partition");
    }
    consumer
        .assign(&assignment)
        .expect("the partitions are assigned");
    let mut messages = Vec::new();
    while messages.len() < count {
        let message = match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Err(_elapsed) => break,
            Ok(Err(error)) => panic!("reading {name} failed: {error}"),
            Ok(Ok(message)) => message,
        };
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        messages.push(TopicMessage {
            partition: message.partition(),
            offset: message.offset(),
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    messages
}

/// Kafka settings for one spawned platform: the test platform's broker, and topics of its own
/// (a fresh prefix; each topic of stacks/local/kafka/topics.json created with one partition),
/// so that parallel tests neither see nor consume each other's events.
pub async fn kafka_settings() -> crate::events::KafkaSettings {
    let status = platform_status();
    let bootstrap = status["connections"]["kafka_bootstrap"]
        .as_str()
        .expect("the platform status names Kafka")
        .to_string();
    let settings = crate::events::KafkaSettings {
        bootstrap_servers: bootstrap,
        topic_prefix: format!("t{}.", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        relay_failpoint: None,
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../stacks/local/kafka/topics.json");
    let topics: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(&path).expect("stacks/local/kafka/topics.json"),
    )
    .expect("topics.json is JSON");
    let names: Vec<&str> = topics.iter().filter_map(|t| t["name"].as_str()).collect();
    crate::events::create_topics(&settings, &names, 1)
        .await
        .expect("the test topics are created");
    settings
}

/// The slug of a problem response's `type` (`insufficient-funds` for `.../problems/insufficient-funds`).
pub async fn problem_type(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.expect("a JSON body");
    body["type"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches(crate::problem::TYPE_BASE)
        .to_string()
}

/// Asserts what every service's `/health/ready` answers when its database is up: 200, the
/// service's name, and the database check `ok`.
pub async fn assert_ready_with_database(client: &reqwest::Client, address: &str, service: &str) {
    // Polled, as a supervisor or a kubelet polls it: a service just started opens its probe's
    // connection on the first ask, and on a loaded machine (CI running a pipeline beside
    // other tests) that first connection took longer than the probe's 1 s bound. Bounded: a
    // service that is not ready within it fails here.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(READY_WAIT_MS);
    let (status, body) = loop {
        let response = client
            .get(format!("{address}/health/ready"))
            .send()
            .await
            .expect("sent");
        let status = response.status();
        let body: serde_json::Value = response.json().await.expect("json");
        if status == 200 || std::time::Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(status, 200, "ready within {READY_WAIT_MS} ms: {body}");
    assert_eq!(body["service"], service);
    assert_eq!(body["checks"]["database"], "ok");
}

/// How long [`assert_ready_with_database`] waits for a service to become ready.
const READY_WAIT_MS: u64 = 15_000;

#[cfg(test)]
mod tests {
    use super::EventContract;
    use serde_json::json;

    #[test]
    fn every_example_in_the_event_contract_matches_its_own_message() {
        let contract = EventContract::load("events");
        let examples = contract.examples();
        assert!(
            examples.len() >= 6,
            "the contract shows its events: {examples:?}"
        );
        for (topic, name, headers, payload) in examples {
            if payload.is_object() {
                contract.check(&topic, &payload);
                let headers = serde_json::from_value(headers)
                    .unwrap_or_else(|e| panic!("{name}: headers as text: {e}"));
                contract.check_headers(&topic, &payload, &headers);
            } else {
                // A dead letter's payload is the original bytes, maybe not JSON at all.
                assert_eq!(
                    topic, "dead-letter.v1",
                    "{name}: only dead letters carry non-JSON"
                );
                let headers = serde_json::from_value(headers).expect("headers as text");
                contract.check_headers(&topic, &json!({}), &headers);
            }
        }
    }

    #[test]
    fn the_event_contract_documents_each_type_once_on_the_versioned_topics() {
        let contract = EventContract::load("events");
        let mut topics = contract.topics();
        topics.sort();
        assert_eq!(
            topics,
            [
                "consumers.v1",
                "dead-letter.v1",
                "ledger.v1",
                "merchants.v1",
                "payments.v1"
            ]
        );
        let payments = contract.types("payments.v1");
        for kind in [
            "payment.completed",
            "payment.declined",
            "payment.voided",
            "refund.completed",
        ] {
            assert_eq!(payments.iter().filter(|t| *t == kind).count(), 1, "{kind}");
        }
        assert!(contract.types("dead-letter.v1").is_empty());
    }

    fn top_up() -> serde_json::Value {
        json!({
            "id": "0196a1f1-aaaa-7bbb-8ccc-dddddddddddd", "type": "top_up.completed",
            "occurred_at": "2026-11-26T09:29:00Z", "subject": "top_up/2b3c4d5e-6f70-4182-93a4-b5c6d7e8f901",
            "data": {
                "id": "2b3c4d5e-6f70-4182-93a4-b5c6d7e8f901", "kind": "top_up", "state": "completed",
                "amount": { "value": 5000, "currency": "JPY" }, "fee": { "value": 0, "currency": "JPY" },
                "debit_account_id": "1a2b3c4d-0000-4000-8000-0000000000f0",
                "credit_account_id": "1a2b3c4d-0000-4000-8000-000000000001",
                "payment_id": null, "captured_amount": 0, "refunded_amount": 0, "reference": null,
                "metadata": null, "failure": null,
                "created_at": "2026-11-26T09:28:59Z", "updated_at": "2026-11-26T09:29:00Z",
            },
        })
    }

    #[test]
    fn a_well_formed_top_up_event_passes() {
        EventContract::load("events").check("ledger.v1", &top_up());
    }

    #[test]
    #[should_panic(expected = "breaks the contract")]
    fn an_amount_in_major_units_breaks_the_event_contract() {
        let mut event = top_up();
        event["data"]["amount"]["value"] = json!(50.5);
        EventContract::load("events").check("ledger.v1", &event);
    }

    #[test]
    #[should_panic(expected = "breaks the contract")]
    fn a_field_the_producer_does_not_send_breaks_the_event_contract() {
        let mut event = top_up();
        event["data"]["replayed"] = json!(false);
        EventContract::load("events").check("ledger.v1", &event);
    }

    #[test]
    #[should_panic(expected = "documents no message of type")]
    fn an_event_type_on_the_wrong_topic_breaks_the_event_contract() {
        EventContract::load("events").check("payments.v1", &top_up());
    }
}
