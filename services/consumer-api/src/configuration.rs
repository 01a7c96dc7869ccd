use paykit::auth::AuthSettings;
use paykit::config::HttpSettings;
use paykit::db::DatabaseSettings;
use paykit::internal::ServiceSettings;
use paykit::keycloak::KeycloakSettings;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    #[serde(default)]
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    /// Verifying consumers' tokens (audience `consumer-api`).
    pub auth: AuthSettings,
    /// This service's own account: user registration and calls to the orchestrator.
    pub keycloak: KeycloakSettings,
    pub orchestrator: ServiceSettings,
    /// merchant-api, which owns payment requests: paying a scanned QR code goes through it.
    pub merchant_api: ServiceSettings,
    /// The server secret one-time payment codes are derived with (secrets.json's payment_code_key).
    pub payment_code_key: secrecy::SecretString,
    /// Where the outbox relay publishes. Without it events stay in the outbox (logged at start).
    #[serde(default)]
    pub kafka: Option<paykit::events::KafkaSettings>,
    /// The wallet currency when a registration names none.
    #[serde(default = "default_currency")]
    pub default_currency: String,
    /// The wallet's sign-in (APP__WEB__...): without it the API is bearer-only and `/` says
    /// the wallet is not configured.
    #[serde(default)]
    pub web: Option<paykit::web::WebSettings>,
}

fn default_currency() -> String {
    "JPY".to_string()
}
