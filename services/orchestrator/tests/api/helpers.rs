use orchestrator::configuration::Settings;
use orchestrator::saga::SagaSettings;
use orchestrator::startup::Application;
use paykit::db::DatabaseSettings;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    /// consumer-api's service account: ledger-write and ledger-read.
    pub writer: String,
    /// orchestrator's own service account: ledger-read only.
    pub reader: String,
}

pub fn settings(database: DatabaseSettings) -> Settings {
    Settings {
        http: paykit::config::HttpSettings::default(),
        database,
        auth: paykit::testing::auth_settings("orchestrator"),
        saga: SagaSettings::default(),
        kafka: None,
    }
}

/// Starts the service on port 0 against a fresh, migrated database on the real test PostgreSQL.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let database = paykit::testing::fresh_database().await;
    let mut settings = settings(database.clone());
    adjust(&mut settings);
    let application = Application::build(settings)
        .await
        .expect("the application builds");
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        pool: database.pool().expect("pool"),
        writer: paykit::testing::client_token("consumer-api").await,
        reader: paykit::testing::client_token("orchestrator").await,
    }
}

impl TestApp {
    pub async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}{path}", self.address))
            .bearer_auth(&self.writer)
            .json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("the request is sent")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .bearer_auth(&self.reader)
            .send()
            .await
            .expect("sent")
    }

    pub async fn open(&self, kind: &str, currency: &str) -> Uuid {
        let id = Uuid::new_v4();
        let response = self
            .post(
                "/v1/accounts",
                None,
                &json!({ "id": id, "kind": kind, "currency": currency }),
            )
            .await;
        assert_eq!(
            response.status(),
            201,
            "open {kind}: {}",
            response.text().await.unwrap_or_default()
        );
        id
    }

    pub async fn top_up(&self, wallet: Uuid, value: i64, currency: &str) -> reqwest::Response {
        self.post(
            "/v1/top-ups",
            Some(&Uuid::new_v4().to_string()),
            &json!({ "wallet_account_id": wallet, "amount": { "value": value, "currency": currency } }),
        )
        .await
    }

    pub async fn available(&self, account: Uuid) -> i64 {
        self.balance(account, "available").await
    }

    pub async fn posted(&self, account: Uuid) -> i64 {
        self.balance(account, "posted").await
    }

    async fn balance(&self, account: Uuid, field: &str) -> i64 {
        let body: Value = self
            .get(&format!("/v1/accounts/{account}"))
            .await
            .json()
            .await
            .expect("json");
        body["balance"][field]
            .as_i64()
            .unwrap_or_else(|| panic!("the balance has {field}: {body}"))
    }

    /// The ledger's invariants, asserted.
    pub async fn assert_ledger_verifies(&self) {
        let report = orchestrator::invariants::verify(&self.pool)
            .await
            .expect("verify runs");
        assert!(
            report.ok,
            "ledger invariants violated: {}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }
}
