//! Prometheus metrics every service exposes at `GET /metrics` (text format 0.0.4), recorded
//! with the `metrics` facade so that any module can count without passing handles around.
//!
//! - RED per route: `http_server_requests_total{method,route,status}` and
//!   `http_server_request_duration_seconds{method,route}` (a histogram);
//! - the database pool: `db_pool_connections{state="idle|in_use"}`, `db_pool_max_connections`;
//! - the outbox: `outbox_unpublished_events`, `outbox_oldest_unpublished_age_seconds`;
//! - consumers: `events_consumed_total{consumer,topic,outcome}` and
//!   `event_consumer_lag_seconds{consumer,topic}` (from the event's time to its handling);
//! - what each service adds of its own (the orchestrator's sagas and payments);
//! - the process: CPU, memory, file descriptors, threads, start time ([`process`]).
//!
//! Label values are bounded: routes are templates (`/v1/payments/{id}`), never raw paths.

use axum::extract::{MatchedPath, State};
use axum::http::{header, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;
use std::sync::OnceLock;
use std::time::Instant;

pub mod process;

/// Latency buckets in seconds: fine below the 300 ms objective, coarse above.
const LATENCY_BUCKETS_S: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder; the first call installs it.
fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), LATENCY_BUCKETS_S)
            .expect("the buckets are not empty");
        // Another recorder (a test harness's) may be installed already: then render that one's
        // view is impossible, and this handle serves an empty page rather than failing.
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Installs the recorder; services call it at build time so counters are kept from the start.
pub fn install() {
    handle();
}

/// What `/metrics` samples at scrape time.
#[derive(Clone)]
pub struct Sampled {
    pub pool: PgPool,
    /// Whether this service has an outbox table to report on.
    pub outbox: bool,
}

/// `GET /metrics`, sampling the pool and the outbox as it answers.
pub fn router(sampled: Sampled) -> Router {
    install();
    Router::new()
        .route("/metrics", get(render))
        .with_state(sampled)
}

async fn render(State(sampled): State<Sampled>) -> Response {
    process::sample();
    metrics::gauge!("log_lines_dropped").set(crate::telemetry::log_lines_dropped() as f64);
    let idle = sampled.pool.num_idle() as f64;
    let size = f64::from(sampled.pool.size());
    metrics::gauge!("db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("db_pool_connections", "state" => "in_use").set((size - idle).max(0.0));
    metrics::gauge!("db_pool_max_connections")
        .set(f64::from(sampled.pool.options().get_max_connections()));
    if sampled.outbox {
        match sqlx::query_as::<_, (i64, Option<f64>)>(
            "SELECT count(*), extract(epoch FROM now() - min(created_at))::float8
             FROM outbox WHERE published_at IS NULL",
        )
        .fetch_one(&sampled.pool)
        .await
        {
            Ok((count, age_s)) => {
                metrics::gauge!("outbox_unpublished_events").set(count as f64);
                metrics::gauge!("outbox_oldest_unpublished_age_seconds").set(age_s.unwrap_or(0.0));
            }
            Err(error) => tracing::warn!(%error, "could not sample the outbox"),
        }
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle().render(),
    )
        .into_response()
}

/// Middleware counting every request by route template and status, and timing it.
pub async fn red(request: Request<axum::body::Body>, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(
        "http_server_requests_total",
        "method" => method.clone(),
        "route" => route.clone(),
        "status" => status,
    )
    .increment(1);
    metrics::histogram!(
        "http_server_request_duration_seconds",
        "method" => method,
        "route" => route,
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// A consumer made again because it had no partition for too long (`events::Consumer::run`).
pub fn consumer_rebuilt(consumer: &str) {
    metrics::counter!(
        "event_consumer_rebuilds_total",
        "consumer" => consumer.to_string(),
    )
    .increment(1);
}

/// A consumed event's outcome (`applied` or `dead_lettered`; a duplicate is applied once) and how long after it
/// happened it was handled.
pub fn consumed(consumer: &str, topic: &str, outcome: &'static str, lag_s: f64) {
    metrics::counter!(
        "events_consumed_total",
        "consumer" => consumer.to_string(),
        "topic" => topic.to_string(),
        "outcome" => outcome,
    )
    .increment(1);
    metrics::histogram!(
        "event_consumer_lag_seconds",
        "consumer" => consumer.to_string(),
        "topic" => topic.to_string(),
    )
    .record(lag_s.max(0.0));
}
