pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
}

/// Starts the service on port 0 against a fresh database, with a real orchestrator and
/// consumer-api beside it and the test platform's Keycloak. The flows that cross services are
/// tested in services/e2e.
pub async fn spawn_app() -> TestApp {
    TestApp {
        address: e2e::spawn().await.merchant_api,
        client: reqwest::Client::new(),
    }
}
