//! `/health/live` (the process answers) and `/health/ready` (its dependencies answer and it is
//! not draining).

use crate::resilience::Guard;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sqlx::PgPool;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long readiness waits for the database before it says "not ready".
const READY_DB_TIMEOUT_MS: u64 = 1_000;

/// What `/health/ready` reports: the database (which gates readiness), the breakers of the
/// services this one calls (reported, not gating: an open breaker already answers 503 for the
/// calls that need that service, while everything else still works), and whether the process
/// is draining (after SIGTERM readiness fails first, so that nothing sends it new work).
#[derive(Clone)]
pub struct Readiness {
    service: &'static str,
    /// The commit the binary was built from (`PAYTOOL_REVISION` at build time, which
    /// `paytool ci build` sets), or "unknown": how a rollout is seen to have landed.
    revision: &'static str,
    pool: PgPool,
    dependencies: Vec<Arc<Guard>>,
    draining: Arc<AtomicBool>,
}

impl Readiness {
    /// `pool` is the service's; readiness asks the database on a connection of its own (made
    /// with the same options), so that a pool busy with requests is not read as a database
    /// out of reach. It was: with 20 ms more per round trip to PostgreSQL the orchestrator's
    /// ten connections were all in use, `SELECT 1` queued behind the requests past its bound,
    /// the supervisor took the instance out of the gateway, and a slowdown became an outage.
    pub fn new(service: &'static str, pool: PgPool) -> Self {
        let probe = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(Duration::from_millis(READY_DB_TIMEOUT_MS))
            .connect_lazy_with((*pool.connect_options()).clone());
        Self {
            service,
            revision: UNKNOWN_REVISION,
            pool: probe,
            dependencies: Vec::new(),
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The revision the service reports; each service passes its own crate's
    /// `option_env!("PAYTOOL_REVISION")`, so that a new revision rebuilds the service only,
    /// not this crate and every service with it.
    pub fn with_revision(mut self, revision: Option<&'static str>) -> Self {
        self.revision = revision
            .filter(|r| !r.is_empty())
            .unwrap_or(UNKNOWN_REVISION);
        self
    }

    pub fn with_dependency(mut self, guard: Arc<Guard>) -> Self {
        self.dependencies.push(guard);
        self
    }

    /// From now on `/health/ready` answers 503 `draining`.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// What a binary built outside `paytool ci build` reports as its revision.
pub const UNKNOWN_REVISION: &str = "unknown";

pub fn router(readiness: Readiness) -> Router {
    let (service, revision) = (readiness.service, readiness.revision);
    Router::new()
        .route("/health/live", get(move || live(service, revision)))
        .route("/health/ready", get(ready))
        .with_state(readiness)
}

async fn live(service: &'static str, revision: &'static str) -> Json<serde_json::Value> {
    Json(json!({ "service": service, "revision": revision, "status": "live" }))
}

async fn ready(State(state): State<Readiness>) -> (StatusCode, Json<serde_json::Value>) {
    let dependencies: serde_json::Map<String, serde_json::Value> = state
        .dependencies
        .iter()
        .map(|guard| {
            (
                guard.destination.to_string(),
                json!({ "circuit": guard.state().as_str() }),
            )
        })
        .collect();
    if state.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({ "service": state.service, "revision": state.revision, "status": "draining", "dependencies": dependencies }),
            ),
        );
    }
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
                json!({ "service": state.service, "revision": state.revision, "status": "ready", "checks": { "database": "ok" }, "dependencies": dependencies }),
            ),
        ),
        Err(reason) => {
            tracing::warn!(%reason, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(
                    json!({ "service": state.service, "revision": state.revision, "status": "not_ready", "checks": { "database": "unavailable" }, "dependencies": dependencies }),
                ),
            )
        }
    }
}
