//! The platform's three services in the test process, each on port 0 with a fresh database of
//! the real test PostgreSQL, verifying tokens of the real test Keycloak and calling each other
//! over loopback HTTP exactly as under `paytool up`.

pub mod gateway;

use paykit::db::DatabaseSettings;
use paykit::internal::ServiceSettings;
use paykit::keycloak::KeycloakSettings;
use serde_json::Value;
use tokio::net::TcpListener;

/// The live stream's heartbeat in tests.
pub const TEST_HEARTBEAT_INTERVAL_MS: u64 = 500;

/// Where each service of one spawned platform listens (`http://127.0.0.1:<port>`).
pub struct Platform {
    pub orchestrator: String,
    pub consumer_api: String,
    pub merchant_api: String,
    /// The services' own databases, for tests that must age a row (an expiry) the API cannot.
    pub orchestrator_db: DatabaseSettings,
    pub consumer_db: DatabaseSettings,
    pub merchant_db: DatabaseSettings,
    /// The broker and this platform's own topic prefix.
    pub kafka: paykit::events::KafkaSettings,
}

/// The service account `client_id` of the test platform's realm.
pub fn keycloak_settings(client_id: &str) -> KeycloakSettings {
    let status = paykit::testing::platform_status();
    let connections = &status["connections"];
    KeycloakSettings {
        base_url: text(&connections["keycloak_url"]),
        realm: text(&connections["keycloak_realm"]),
        client_id: client_id.to_string(),
        client_secret: text(&connections["client_secrets"][client_id]).into(),
    }
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("the platform status lacks a field: {value}"))
        .to_string()
}

async fn loopback() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let address = format!(
        "http://127.0.0.1:{}",
        listener.local_addr().expect("bound").port()
    );
    (listener, address)
}

async fn spawn_orchestrator(
    database: DatabaseSettings,
    kafka: paykit::events::KafkaSettings,
) -> String {
    let settings = orchestrator::configuration::Settings {
        http: paykit::config::HttpSettings::default(),
        database,
        auth: paykit::testing::auth_settings("orchestrator"),
        saga: orchestrator::saga::SagaSettings::default(),
        kafka: Some(kafka),
    };
    let application = orchestrator::startup::Application::build(settings)
        .await
        .expect("the orchestrator builds");
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    address
}

/// Starts the orchestrator, consumer-api and merchant-api, each against a fresh database.
pub async fn spawn() -> Platform {
    spawn_with(Options::default()).await
}

/// What a test changes about a spawned platform.
#[derive(Debug, Default)]
pub struct Options {
    /// The orchestrator's outbox relay stops after Kafka acknowledged its first batch and
    /// before it marks the rows published, as a crash there would (see paykit::events).
    pub orchestrator_relay_failpoint: Option<String>,
}

pub async fn spawn_with(options: Options) -> Platform {
    let kafka = paykit::testing::kafka_settings().await;
    let orchestrator_db = paykit::testing::fresh_database().await;
    let orchestrator = spawn_orchestrator(
        orchestrator_db.clone(),
        paykit::events::KafkaSettings {
            relay_failpoint: options.orchestrator_relay_failpoint,
            ..kafka.clone()
        },
    )
    .await;
    let (consumer_listener, consumer_address) = loopback().await;
    let (merchant_listener, merchant_address) = loopback().await;
    let service = |base_url: &str| ServiceSettings {
        base_url: base_url.to_string(),
    };
    let consumer_db = paykit::testing::fresh_database().await;
    let merchant_db = paykit::testing::fresh_database().await;
    let consumer = consumer_api::configuration::Settings {
        http: paykit::config::HttpSettings::default(),
        database: consumer_db.clone(),
        auth: paykit::testing::auth_settings("consumer-api"),
        keycloak: keycloak_settings("consumer-api"),
        orchestrator: service(&orchestrator),
        merchant_api: service(&merchant_address),
        kafka: Some(kafka.clone()),
        default_currency: "JPY".to_string(),
        payment_code_key: uuid::Uuid::new_v4().to_string().into(),
        // The wallet's sign-in needs Keycloak's pages through the gateway (tests/wallet.rs).
        web: None,
    };
    let merchant = merchant_api::configuration::Settings {
        http: paykit::config::HttpSettings::default(),
        database: merchant_db.clone(),
        auth: paykit::testing::auth_settings("merchant-api"),
        keycloak: keycloak_settings("merchant-api"),
        orchestrator: service(&orchestrator),
        consumer_api: service(&consumer_address),
        payments: merchant_api::configuration::PaymentSettings::default(),
        kafka: Some(kafka.clone()),
        // Short, so that a test sees heartbeats without waiting the production 15 s.
        stream: merchant_api::configuration::StreamSettings {
            heartbeat_interval_ms: TEST_HEARTBEAT_INTERVAL_MS,
        },
        // The dashboard's sign-in needs Keycloak's pages through the gateway: its tests run
        // against the running platform (tests/dashboard.rs), not in process.
        web: None,
    };
    let consumer = consumer_api::startup::Application::build_on(consumer, consumer_listener)
        .await
        .expect("consumer-api builds");
    let merchant = merchant_api::startup::Application::build_on(merchant, merchant_listener)
        .await
        .expect("merchant-api builds");
    tokio::spawn(consumer.run_until_stopped());
    tokio::spawn(merchant.run_until_stopped());
    Platform {
        orchestrator,
        consumer_api: consumer_address,
        merchant_api: merchant_address,
        orchestrator_db,
        consumer_db,
        merchant_db,
        kafka,
    }
}

/// Logs in as a person would from the CLI: the password grant of the public `paytool-cli`.
pub async fn login(email: &str, password: &str) -> String {
    let status = paykit::testing::platform_status();
    let connections = &status["connections"];
    let url = format!(
        "{}/realms/{}/protocol/openid-connect/token",
        text(&connections["keycloak_url"]),
        text(&connections["keycloak_realm"])
    );
    let token: Value = reqwest::Client::new()
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
    text(&token["access_token"])
}

/// An email no other test uses.
pub fn unique_email(who: &str) -> String {
    format!("{who}-{}@example.test", uuid::Uuid::new_v4().simple())
}
