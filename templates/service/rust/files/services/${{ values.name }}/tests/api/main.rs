//! Black-box tests over HTTP: each spawns the service on port 0 with a fresh database (on the
//! real PostgreSQL that scripts/test.sh starts), calls it with real tokens from the platform's
//! Keycloak (the service's own client, which `paytool up` makes) and checks every answer
//! against the contract.

use ${{ values.crate }}::configuration::Settings;
use ${{ values.crate }}::startup::Application;
use paykit::events::KafkaSettings;
use paykit::testing::{
    auth_settings, client_token, fresh_database, kafka_settings, read_topic, Contract,
    EventContract,
};
use ${{ values.crate }}::http::items::ITEMS_TOPIC;

struct TestApp {
    address: String,
    client: reqwest::Client,
    contract: Contract,
    /// A token meant for this service: its own client's, by client credentials.
    token: String,
    /// The test platform's Kafka, with topics of this test's own.
    kafka: KafkaSettings,
}

async fn spawn_app() -> TestApp {
    let kafka = kafka_settings().await;
    paykit::events::create_topics(&kafka, &[ITEMS_TOPIC], 1)
        .await
        .expect("the service's topic is created");
    let settings = Settings {
        http: paykit::config::HttpSettings::default(),
        database: fresh_database().await,
        auth: auth_settings("${{ values.name }}"),
        kafka: Some(kafka.clone()),
    };
    let application = Application::build(settings)
        .await
        .expect("the service builds");
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        contract: Contract::load("${{ values.name }}"),
        token: client_token("${{ values.name }}").await,
        kafka,
    }
}

impl TestApp {
    async fn create(&self, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.create_with_key(&uuid::Uuid::new_v4().to_string(), body)
            .await
    }

    async fn create_with_key(&self, key: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let response = self
            .client
            .post(format!("{}/v1/items", self.address))
            .bearer_auth(&self.token)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .expect("sent");
        self.contract
            .check_response("post", "/v1/items", response)
            .await
    }

    async fn show(&self, id: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .get(format!("{}/v1/items/{id}", self.address))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("sent");
        self.contract
            .check_response("get", "/v1/items/{id}", response)
            .await
    }

    async fn list(&self, query: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .get(format!("{}/v1/items{query}", self.address))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("sent");
        self.contract
            .check_response("get", "/v1/items", response)
            .await
    }
}

#[tokio::test]
async fn the_service_is_ready_when_its_database_answers() {
    let app = spawn_app().await;
    paykit::testing::assert_ready_with_database(&app.client, &app.address, "${{ values.name }}").await;
    let response = app
        .client
        .get(format!("{}/health/ready", app.address))
        .send()
        .await
        .expect("sent");
    app.contract
        .check_response("get", "/health/ready", response)
        .await;
}

#[tokio::test]
async fn an_item_created_can_be_read_back_by_its_id() {
    let app = spawn_app().await;
    let (status, created) = app.create(serde_json::json!({ "name": "  first  " })).await;
    assert_eq!(status, 201);
    assert_eq!(created["name"], "first", "the name is stored trimmed");
    let (status, shown) = app.show(created["id"].as_str().expect("an id")).await;
    assert_eq!(status, 200);
    assert_eq!(shown, created);
}

#[tokio::test]
async fn an_invalid_item_is_refused_with_a_problem_and_nothing_is_stored() {
    let app = spawn_app().await;
    let (status, problem) = app.create(serde_json::json!({ "name": "   " })).await;
    assert_eq!(status, 422);
    assert_eq!(
        problem["type"],
        "https://paytool.local.test/problems/validation"
    );
    let (status, problem) = app.create(serde_json::json!({ "title": "x" })).await;
    assert_eq!(status, 400, "an unknown field is refused: {problem}");
    let (_, page) = app.list("").await;
    assert_eq!(page["items"], serde_json::json!([]), "nothing was stored");
}

#[tokio::test]
async fn the_list_is_paged_newest_first_and_every_item_appears_once() {
    let app = spawn_app().await;
    for n in 0..5 {
        let (status, _) = app
            .create(serde_json::json!({ "name": format!("item {n}") }))
            .await;
        assert_eq!(status, 201);
    }
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_string();
    for _page in 0..10 {
        let (status, page) = app.list(&query).await;
        assert_eq!(status, 200);
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 2, "a page holds at most its limit");
        seen.extend(
            items
                .iter()
                .map(|item| item["name"].as_str().unwrap_or_default().to_string()),
        );
        match page["next"].as_str() {
            Some(next) => query = format!("?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ["item 4", "item 3", "item 2", "item 1", "item 0"]);
}

#[tokio::test]
async fn a_limit_out_of_range_is_refused() {
    let app = spawn_app().await;
    let (status, _) = app.list("?limit=0").await;
    assert_eq!(status, 422);
    let (status, _) = app.list("?limit=101").await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn an_unknown_item_is_not_found() {
    let app = spawn_app().await;
    for id in ["0191e4d0-0000-7000-8000-000000000000", "not-an-id"] {
        let (status, _) = app.show(id).await;
        assert_eq!(status, 404);
    }
}

#[tokio::test]
async fn a_request_without_a_token_or_with_one_meant_for_another_service_is_refused() {
    let app = spawn_app().await;
    let bare = app
        .client
        .get(format!("{}/v1/items", app.address))
        .send()
        .await
        .expect("sent");
    let (status, problem) = app.contract.check_response("get", "/v1/items", bare).await;
    assert_eq!(status, 401);
    assert_eq!(problem["type"], "https://paytool.local.test/problems/unauthenticated");
    // A real token of the realm, but its audience is not this service.
    let elsewhere = client_token("paytool-operator").await;
    let response = app
        .client
        .post(format!("{}/v1/items", app.address))
        .bearer_auth(elsewhere)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&serde_json::json!({ "name": "not mine" }))
        .send()
        .await
        .expect("sent");
    let (status, problem) = app.contract.check_response("post", "/v1/items", response).await;
    assert_eq!(status, 401);
    assert_eq!(problem["type"], "https://paytool.local.test/problems/invalid-token");
    let (_, page) = app.list("").await;
    assert_eq!(page["items"], serde_json::json!([]), "nothing was stored");
}

#[tokio::test]
async fn a_create_without_an_idempotency_key_is_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(format!("{}/v1/items", app.address))
        .bearer_auth(&app.token)
        .json(&serde_json::json!({ "name": "keyless" }))
        .send()
        .await
        .expect("sent");
    let (status, problem) = app.contract.check_response("post", "/v1/items", response).await;
    assert_eq!(status, 400);
    assert_eq!(
        problem["type"],
        "https://paytool.local.test/problems/idempotency-key-missing"
    );
    let (_, page) = app.list("").await;
    assert_eq!(page["items"], serde_json::json!([]), "nothing was stored");
}

#[tokio::test]
async fn a_replayed_create_is_answered_again_and_stored_once() {
    let app = spawn_app().await;
    let key = uuid::Uuid::new_v4().to_string();
    let body = serde_json::json!({ "name": "once" });
    let (status, first) = app.create_with_key(&key, body.clone()).await;
    assert_eq!(status, 201);
    let (status, again) = app.create_with_key(&key, body).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again, first, "the replay is the first answer");
    let (_, page) = app.list("").await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    // The same key with another body is a client's mistake, not a new item.
    let (status, problem) = app
        .create_with_key(&key, serde_json::json!({ "name": "twice" }))
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        problem["type"],
        "https://paytool.local.test/problems/idempotency-key-reused"
    );
}

#[tokio::test]
async fn a_created_item_is_published_once_as_the_contract_says() {
    let app = spawn_app().await;
    let key = uuid::Uuid::new_v4().to_string();
    let body = serde_json::json!({ "name": "told" });
    let (status, item) = app.create_with_key(&key, body.clone()).await;
    assert_eq!(status, 201);
    // A replay is answered again, not done again: still one event.
    let (status, _) = app.create_with_key(&key, body).await;
    assert_eq!(status, 201);
    let messages = read_topic(
        &app.kafka,
        ITEMS_TOPIC,
        2,
        std::time::Duration::from_secs(10),
    )
    .await;
    assert_eq!(messages.len(), 1, "one event for one item");
    let contract = EventContract::load("${{ values.name }}.events");
    contract.check_message(ITEMS_TOPIC, &messages[0]);
    let event = messages[0].json();
    assert_eq!(event["type"], "item.created");
    assert_eq!(event["data"]["id"], item["id"]);
    assert_eq!(event["data"]["name"], "told");
    assert_eq!(messages[0].key.as_deref(), item["id"].as_str());
}
