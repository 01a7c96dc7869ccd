//! Builds the application once, for `main` and for the tests alike.

use crate::configuration::Settings;
use crate::http::AppState;
use axum::Router;
use sqlx::PgPool;
use tokio::net::TcpListener;

pub struct Application {
    port: u16,
    listener: TcpListener,
    router: Router,
    readiness: paykit::health::Readiness,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = settings.database.pool()?;
        migrate(&pool).await?;
        let listener = TcpListener::bind((settings.http.host.as_str(), settings.http.port)).await?;
        let port = listener.local_addr()?.port();
        let readiness = paykit::health::Readiness::new(crate::SERVICE, pool.clone());
        let state = AppState {
            pool,
            readiness: readiness.clone(),
        };
        Ok(Self {
            port,
            listener,
            router: crate::http::router(state),
            readiness,
        })
    }

    /// The bound port; with port 0 in the settings, the one the OS chose.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM: readiness fails first, in-flight requests finish (bounded), then
    /// it returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        paykit::server::serve_draining(self.listener, self.router, self.readiness).await
    }
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    // With paykit's tables (outbox, idempotency keys) beside the service's own.
    paykit::db::migrate(pool, &sqlx::migrate!("./migrations")).await?;
    Ok(())
}
