//! Builds the application once, for `main` and for the tests alike.

use crate::configuration::Settings;
use crate::http::AppState;
use axum::Router;
use paykit::idempotency::Store;
use sqlx::PgPool;
use tokio::net::TcpListener;

/// How often idempotency keys past their retention are deleted.
const IDEMPOTENCY_PURGE_INTERVAL_MS: u64 = 600_000;

pub struct Application {
    port: u16,
    listener: TcpListener,
    router: Router,
    readiness: paykit::health::Readiness,
    idempotency: Store,
    /// Publishes the outbox (the service's events) to Kafka, when Kafka is configured.
    relay: Option<paykit::events::Relay>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = settings.database.pool()?;
        migrate(&pool).await?;
        let listener = TcpListener::bind((settings.http.host.as_str(), settings.http.port)).await?;
        let port = listener.local_addr()?.port();
        let readiness = paykit::health::Readiness::new(crate::SERVICE, pool.clone());
        let idempotency = Store::new(pool.clone());
        let relay = paykit::events::Relay::optional(pool.clone(), settings.kafka)?;
        let state = AppState {
            pool,
            readiness: readiness.clone(),
            verifier: paykit::auth::Verifier::new(settings.auth)?,
            idempotency: idempotency.clone(),
        };
        Ok(Self {
            port,
            listener,
            router: crate::http::router(state),
            readiness,
            idempotency,
            relay,
        })
    }

    /// The bound port; with port 0 in the settings, the one the OS chose.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM: readiness fails first, in-flight requests finish (bounded), then
    /// it returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let purge = self
            .idempotency
            .spawn_purge(IDEMPOTENCY_PURGE_INTERVAL_MS);
        let relay = self.relay.map(paykit::events::Relay::spawn);
        let served = paykit::server::serve_draining(self.listener, self.router, self.readiness).await;
        purge.abort();
        if let Some(relay) = relay {
            relay.abort();
        }
        served
    }
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    // With paykit's tables (outbox, idempotency keys) beside the service's own.
    paykit::db::migrate(pool, &sqlx::migrate!("./migrations")).await?;
    Ok(())
}
