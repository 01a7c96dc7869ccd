//! Structured JSON logs on stdout (the supervisor writes them to `.paytool/logs/`).
//! `RUST_LOG` picks the levels; the default is `info`.

use tracing_subscriber::{fmt, EnvFilter};

pub fn init(service: &'static str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    // `try_init` so that tests that build several apps in one process do not panic.
    let _ = fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .flatten_event(true)
        .try_init();
    tracing::info!(service, "telemetry initialised");
}
