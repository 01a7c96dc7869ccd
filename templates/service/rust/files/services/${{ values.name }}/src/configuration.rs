//! Typed settings, layered: `configuration/base.toml`, `configuration/<APP_ENVIRONMENT>.toml`,
//! then `APP__SECTION__KEY` environment variables (paykit::config). `paytool up` sets them all
//! through the environment; secrets (the database URL) stay `SecretString`s.

use paykit::auth::AuthSettings;
use paykit::config::HttpSettings;
use paykit::db::DatabaseSettings;
use paykit::events::KafkaSettings;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    #[serde(default)]
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    /// Whose bearer tokens it accepts: the realm's issuer and keys, its own name as audience.
    pub auth: AuthSettings,
    /// Where its outbox is published; without it events wait in the outbox.
    #[serde(default)]
    pub kafka: Option<KafkaSettings>,
}
