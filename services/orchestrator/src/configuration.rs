use crate::saga::SagaSettings;
use paykit::auth::AuthSettings;
use paykit::config::HttpSettings;
use paykit::db::DatabaseSettings;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    #[serde(default)]
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    #[serde(default)]
    pub saga: SagaSettings,
    /// Where the outbox relay publishes. Without it events stay in the outbox (logged at start).
    #[serde(default)]
    pub kafka: Option<paykit::events::KafkaSettings>,
}
