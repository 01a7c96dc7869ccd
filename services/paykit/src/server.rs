//! The HTTP serving loop every service uses: common layers and graceful shutdown.

use axum::Router;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// No request may take longer than this end to end; callers see 408 after it.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// JSON bodies on these APIs are small; anything bigger is refused before it is read.
pub const REQUEST_BODY_LIMIT_BYTES: usize = 64 * 1024;

/// Plain-text rejections longer than this are cut in the problem's detail.
const REJECTION_DETAIL_MAX_BYTES: usize = 1_024;

/// Adds the layers every service wants around its routes.
pub fn with_common_layers(router: Router) -> Router {
    // Innermost: a request delayed by the failpoint still meets every bound outside it.
    let router = if crate::failpoints::compiled_in() {
        router.layer(axum::middleware::from_fn(crate::failpoints::request_delay))
    } else {
        router
    };
    router
        .layer(axum::middleware::map_response(problems_for_rejections))
        .layer(axum::middleware::from_fn(crate::metrics::red))
        .layer(axum::middleware::from_fn(crate::resilience::deadline_layer))
        .layer(RequestBodyLimitLayer::new(REQUEST_BODY_LIMIT_BYTES))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(REQUEST_TIMEOUT_MS),
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(crate::telemetry::http_server_span)
                .on_response(
                    |response: &axum::http::Response<_>,
                     latency: Duration,
                     span: &tracing::Span| {
                        let status = response.status().as_u16();
                        crate::telemetry::record_http_status(span, status);
                        // One line a request, inside its span: route, trace and span ids.
                        tracing::info!(
                            status,
                            latency_ms = latency.as_secs_f64() * 1e3,
                            "answered"
                        );
                    },
                ),
        )
}

/// After SIGTERM, in-flight requests get this long to finish. Live streams (SSE, WebSocket)
/// never finish by themselves: without a bound they would hold a stopping service forever;
/// their clients reconnect and resume from their last event id.
pub const SHUTDOWN_DRAIN_MS: u64 = 5_000;

/// Serves until SIGTERM or Ctrl-C, then lets in-flight requests finish, for at most
/// [`SHUTDOWN_DRAIN_MS`].
pub async fn serve(listener: TcpListener, router: Router) -> std::io::Result<()> {
    serve_until(listener, router, shutdown_signal(), SHUTDOWN_DRAIN_MS).await
}

/// [`serve`], with readiness failing first: on SIGTERM `/health/ready` answers 503 `draining`
/// while in-flight requests finish (bounded by [`SHUTDOWN_DRAIN_MS`]).
pub async fn serve_draining(
    listener: TcpListener,
    router: Router,
    readiness: crate::health::Readiness,
) -> std::io::Result<()> {
    let shutdown = async move {
        shutdown_signal().await;
        readiness.drain();
    };
    serve_until(listener, router, shutdown, SHUTDOWN_DRAIN_MS).await
}

/// Serves until `shutdown` completes, then lets in-flight requests finish for at most
/// `drain_ms`.
pub async fn serve_until(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    drain_ms: u64,
) -> std::io::Result<()> {
    let (signalled, mut on_signal) = tokio::sync::watch::channel(false);
    let server =
        axum::serve(listener, with_common_layers(router)).with_graceful_shutdown(async move {
            shutdown.await;
            let _ = signalled.send(true);
        });
    let drain_bound = async move {
        if on_signal.wait_for(|signalled| *signalled).await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(Duration::from_millis(drain_ms)).await;
    };
    tokio::select! {
        served = std::future::IntoFuture::into_future(server) => served,
        () = drain_bound => {
            tracing::warn!(drain_ms, "requests still open (live streams) after the drain; stopping");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; draining in-flight requests");
}

/// axum's own rejections (a path segment that is not a UUID, a query value that does not
/// parse, a method not allowed, an unknown route) are plain text; clients of these APIs get
/// every error as an RFC 9457 problem, so they are turned into one here, their text as the
/// detail. Responses that already have a body type of their own pass through.
async fn problems_for_rejections(response: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    let status = response.status();
    let plain = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| ct.starts_with("text/plain"));
    if !status.is_client_error() || !plain {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), REJECTION_DETAIL_MAX_BYTES)
        .await
        .unwrap_or_default();
    let detail = String::from_utf8_lossy(&body).trim().to_string();
    let (slug, title) = match status.as_u16() {
        404 => ("not-found", "Not found"),
        405 => ("method-not-allowed", "Method not allowed"),
        408 => ("timeout", "Request timeout"),
        413 => ("too-large", "Request too large"),
        415 => ("unsupported-media-type", "Unsupported media type"),
        _ => ("malformed-request", "Malformed request"),
    };
    let mut problem = crate::problem::Problem::new(status, slug, title);
    if !detail.is_empty() {
        problem = problem.with_detail(detail);
    }
    problem.into_response()
}
