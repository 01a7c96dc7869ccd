//! `/health/live` (the process answers) and `/health/ready` (its dependencies answer).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sqlx::PgPool;
use std::time::Duration;

/// How long readiness waits for the database before it says "not ready".
const READY_DB_TIMEOUT_MS: u64 = 1_000;

pub fn router(service: &'static str, pool: PgPool) -> Router {
    Router::new()
        .route("/health/live", get(move || live(service)))
        .route("/health/ready", get(ready))
        .with_state(ReadyState { service, pool })
}

#[derive(Clone)]
struct ReadyState {
    service: &'static str,
    pool: PgPool,
}

async fn live(service: &'static str) -> Json<serde_json::Value> {
    Json(json!({ "service": service, "status": "live" }))
}

async fn ready(State(state): State<ReadyState>) -> (StatusCode, Json<serde_json::Value>) {
    let check = tokio::time::timeout(
        Duration::from_millis(READY_DB_TIMEOUT_MS),
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.pool),
    )
    .await;
    let database = match check {
        Ok(Ok(1)) => Ok(()),
        Ok(Ok(other)) => Err(format!("unexpected answer {other}")),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {READY_DB_TIMEOUT_MS} ms")),
    };
    match database {
        Ok(()) => (
            StatusCode::OK,
            Json(
                json!({ "service": state.service, "status": "ready", "checks": { "database": "ok" } }),
            ),
        ),
        Err(reason) => {
            tracing::warn!(%reason, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(
                    json!({ "service": state.service, "status": "not_ready", "checks": { "database": "unavailable" } }),
                ),
            )
        }
    }
}
