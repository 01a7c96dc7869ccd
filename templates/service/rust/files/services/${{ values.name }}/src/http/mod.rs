//! HTTP resources, one module per resource, each with its own `router()`.

pub mod items;

use axum::Router;
use paykit::auth::Verifier;
use paykit::idempotency::Store;
use sqlx::PgPool;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub readiness: paykit::health::Readiness,
    /// Checks the bearer token of every `/v1/` request (paykit's `Principal` extractor).
    pub verifier: Verifier,
    /// Keeps each POST's `Idempotency-Key` and answer, so that a retry is answered, not redone.
    pub idempotency: Store,
}

paykit::state_parts!(AppState);

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(items::router(state.clone()))
        .with_state(state.clone())
        .merge(paykit::metrics::router(paykit::metrics::Sampled {
            pool: state.pool.clone(),
            outbox: true,
        }))
        .merge(paykit::health::router(state.readiness))
}
