use serde_json::{json, Value};

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
}

/// Starts the service on port 0 against a fresh database, with a real orchestrator and
/// merchant-api beside it and the test platform's Keycloak.
pub async fn spawn_app() -> TestApp {
    TestApp {
        address: e2e::spawn().await.consumer_api,
        client: reqwest::Client::new(),
    }
}

impl TestApp {
    /// A money-moving POST as a signed-in consumer, with its Idempotency-Key.
    pub async fn post_with_key(
        &self,
        token: &str,
        path: &str,
        key: &str,
        body: Value,
    ) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.address))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .expect("sent")
    }

    /// The signed-in consumer's wallet.
    pub async fn wallet(&self, token: &str) -> Value {
        self.client
            .get(format!("{}/v1/wallet", self.address))
            .bearer_auth(token)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json")
    }

    pub async fn register(&self, email: &str, password: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/consumers", self.address))
            .json(&json!({ "email": email, "password": password, "name": "Test Consumer" }))
            .send()
            .await
            .expect("sent")
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        e2e::login(email, password).await
    }
}

pub fn unique_email() -> String {
    e2e::unique_email("consumer")
}
