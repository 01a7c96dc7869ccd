//! What the handlers and the payment flow share: the service's state and the signed-in
//! merchant. Below both `http` and `payments`, so neither has to import the other for it.

use crate::configuration::{PaymentSettings, StreamSettings};
use crate::events::Hub;
use paykit::auth::Verifier;
use paykit::idempotency::Store;
use paykit::internal::{Orchestrator, ServiceClient};
use paykit::keycloak::ServiceAccount;
use paykit::web::Sessions;
use sqlx::PgPool;
use std::sync::Arc;
use uuid::Uuid;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub readiness: paykit::health::Readiness,
    pub verifier: Verifier,
    pub idempotency: Store,
    pub keycloak: Arc<ServiceAccount>,
    pub orchestrator: Orchestrator,
    pub consumer_api: ServiceClient,
    pub payments: PaymentSettings,
    pub stream: StreamSettings,
    pub events: Hub,
    /// The dashboard's browser sessions, when the service is configured for them.
    pub sessions: Option<Sessions>,
}

paykit::state_parts!(AppState);

/// The signed-in merchant, as the rest of the service needs it.
#[derive(Debug, Clone)]
pub struct Merchant {
    pub id: Uuid,
    pub name: String,
    pub city: String,
    pub country: String,
    pub mcc: String,
    pub currency: String,
    pub ledger_account_id: Uuid,
}
