//! HTTP resources, one module per resource, each with its own `router()`.

use axum::Router;
use sqlx::PgPool;

pub fn router(pool: PgPool) -> Router {
    Router::new().merge(paykit::health::router(crate::SERVICE, pool))
}
