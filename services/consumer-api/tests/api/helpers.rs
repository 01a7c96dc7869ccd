use consumer_api::configuration::Settings;
use consumer_api::startup::Application;
use paykit::internal::ServiceSettings;
use paykit::keycloak::KeycloakSettings;
use serde_json::{json, Value};

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
}

/// A real orchestrator (its own fresh database) on port 0, for the consumer-api under test.
async fn spawn_orchestrator() -> String {
    let database = paykit::testing::fresh_database().await;
    let settings = orchestrator::configuration::Settings {
        http: paykit::config::HttpSettings::default(),
        database,
        auth: paykit::testing::auth_settings("orchestrator"),
        saga: orchestrator::saga::SagaSettings::default(),
    };
    let application = orchestrator::startup::Application::build(settings)
        .await
        .expect("the orchestrator builds");
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    address
}

fn keycloak_settings() -> KeycloakSettings {
    let status = paykit::testing::platform_status();
    let connections = &status["connections"];
    KeycloakSettings {
        base_url: connections["keycloak_url"]
            .as_str()
            .expect("keycloak url")
            .to_string(),
        realm: connections["keycloak_realm"]
            .as_str()
            .expect("realm")
            .to_string(),
        client_id: "consumer-api".to_string(),
        client_secret: connections["client_secrets"]["consumer-api"]
            .as_str()
            .expect("secret")
            .to_string()
            .into(),
    }
}

/// Starts the service on port 0 against a fresh database, a real orchestrator and the test
/// platform's Keycloak.
pub async fn spawn_app() -> TestApp {
    let settings = Settings {
        http: paykit::config::HttpSettings::default(),
        database: paykit::testing::fresh_database().await,
        auth: paykit::testing::auth_settings("consumer-api"),
        keycloak: keycloak_settings(),
        orchestrator: ServiceSettings {
            base_url: spawn_orchestrator().await,
        },
        default_currency: "JPY".to_string(),
        payment_code_key: uuid::Uuid::new_v4().to_string().into(),
    };
    let application = Application::build(settings)
        .await
        .expect("the application builds");
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    TestApp {
        address,
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

    /// Logs in as a person would from the CLI: the password grant of the public `paytool-cli`.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let status = paykit::testing::platform_status();
        let connections = &status["connections"];
        let url = format!(
            "{}/realms/{}/protocol/openid-connect/token",
            connections["keycloak_url"].as_str().expect("url"),
            connections["keycloak_realm"].as_str().expect("realm")
        );
        let token: Value = self
            .client
            .post(url)
            .form(&[
                ("grant_type", "password"),
                ("client_id", "paytool-cli"),
                ("username", email),
                ("password", password),
            ])
            .send()
            .await
            .expect("Keycloak answers")
            .error_for_status()
            .expect("the login is accepted")
            .json()
            .await
            .expect("json");
        token["access_token"].as_str().expect("token").to_string()
    }
}

pub fn unique_email() -> String {
    format!("consumer-{}@example.test", uuid::Uuid::new_v4().simple())
}
