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
}
