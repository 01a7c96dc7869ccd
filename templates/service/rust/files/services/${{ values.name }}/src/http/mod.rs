//! HTTP resources, one module per resource, each with its own `router()`.

pub mod items;

use axum::Router;
use sqlx::PgPool;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub readiness: paykit::health::Readiness,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(items::router())
        .with_state(state.clone())
        .merge(paykit::metrics::router(paykit::metrics::Sampled {
            pool: state.pool.clone(),
            outbox: false,
        }))
        .merge(paykit::health::router(state.readiness))
}
