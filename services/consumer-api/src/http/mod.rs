//! HTTP resources, one module per resource, each with its own `router()`.

pub mod consumers;
pub mod internal;
pub mod payment_codes;
pub mod payments;
pub mod transactions;
pub mod transfers;
pub mod wallet;
pub mod wallet_page;

use axum::middleware::from_fn_with_state;
use axum::Router;
use paykit::auth::{Principal, Verifier};
use paykit::idempotency::Store;
use paykit::internal::{Orchestrator, ServiceClient};
use paykit::keycloak::ServiceAccount;
use paykit::web::Sessions;
use sqlx::PgPool;
use std::sync::Arc;

pub const ROLE_CONSUMER: &str = "consumer";

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub readiness: paykit::health::Readiness,
    pub verifier: Verifier,
    pub idempotency: Store,
    pub keycloak: Arc<ServiceAccount>,
    pub orchestrator: Orchestrator,
    pub merchant_api: ServiceClient,
    pub default_currency: String,
    /// The server secret payment codes are derived with.
    pub payment_code_key: secrecy::SecretString,
    /// The wallet's browser sessions, when the service is configured for them.
    pub sessions: Option<Sessions>,
    /// Registered consumers, read once each.
    pub consumers: wallet::Consumers,
}

paykit::state_parts!(AppState);

pub fn router(state: AppState) -> Router {
    let public = Router::new()
        .merge(consumers::router())
        .merge(wallet::router(state.clone()))
        .merge(transfers::router(state.clone()))
        .merge(transactions::router())
        .merge(payment_codes::router())
        .merge(payments::router(state.clone()))
        .merge(wallet_page::router())
        .with_state(state.clone());
    // A signed-in browser's cookie authenticates the consumer's own routes like a bearer token;
    // the calls between services (/internal/) stay bearer-only.
    let public = match &state.sessions {
        Some(sessions) => public
            .layer(from_fn_with_state(
                sessions.clone(),
                paykit::web::authenticate,
            ))
            .merge(paykit::web::router(sessions.clone())),
        None => public,
    };
    public
        .merge(internal::router().with_state(state.clone()))
        .merge(paykit::metrics::router(paykit::metrics::Sampled {
            pool: state.pool.clone(),
            outbox: true,
        }))
        .merge(paykit::health::router(state.readiness.clone()))
        .merge(paykit::failpoints::router(
            crate::SERVICE,
            state.verifier.clone(),
        ))
}

pub fn require_consumer(principal: &Principal) -> Result<(), crate::error::Error> {
    if principal.has_realm_role(ROLE_CONSUMER) {
        Ok(())
    } else {
        Err(crate::error::Error::Forbidden(ROLE_CONSUMER))
    }
}
