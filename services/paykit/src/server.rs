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

/// Adds the layers every service wants around its routes.
pub fn with_common_layers(router: Router) -> Router {
    router
        .layer(RequestBodyLimitLayer::new(REQUEST_BODY_LIMIT_BYTES))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(REQUEST_TIMEOUT_MS),
        ))
        .layer(TraceLayer::new_for_http())
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
