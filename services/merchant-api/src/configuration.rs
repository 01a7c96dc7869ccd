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
    /// Verifying merchants' and services' tokens (audience `merchant-api`).
    pub auth: AuthSettings,
    /// This service's own account: merchant registration, calls to other services.
    pub keycloak: KeycloakSettings,
    pub orchestrator: ServiceSettings,
    /// consumer-api, which redeems consumers' one-time payment codes.
    pub consumer_api: ServiceSettings,
    #[serde(default)]
    pub payments: PaymentSettings,
    #[serde(default)]
    pub stream: StreamSettings,
    /// Kafka: the relay of this service's outbox, and the ledger's events that build the
    /// transaction list. Without it the list stays empty (logged at start).
    #[serde(default)]
    pub kafka: Option<paykit::events::KafkaSettings>,
    /// The dashboard's sign-in (APP__WEB__...): without it the API is bearer-only and `/` says
    /// the dashboard is not configured.
    #[serde(default)]
    pub web: Option<paykit::web::WebSettings>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StreamSettings {
    /// A comment (SSE) or ping (WebSocket) this often keeps proxies from closing an idle stream.
    #[serde(default = "default_heartbeat_interval_ms")]
    pub heartbeat_interval_ms: u64,
}

fn default_heartbeat_interval_ms() -> u64 {
    15_000
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: default_heartbeat_interval_ms(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PaymentSettings {
    /// The platform's fee on each payment, in basis points of the amount, paid by the merchant.
    #[serde(default = "default_fee_bps")]
    pub fee_bps: u32,
    /// This platform's globally unique identifier in its QR codes (EMVCo template sub-id 00).
    #[serde(default = "default_gui")]
    pub qr_gui: String,
}

fn default_fee_bps() -> u32 {
    100
}

fn default_gui() -> String {
    emvco::PLATFORM_GUI.to_string()
}

impl Default for PaymentSettings {
    fn default() -> Self {
        Self {
            fee_bps: default_fee_bps(),
            qr_gui: default_gui(),
        }
    }
}
