//! Builds the application once for `main` and for the tests alike.

use crate::configuration::Settings;
use crate::http::AppState;
use crate::saga::Sagas;
use axum::Router;
use sqlx::PgPool;
use tokio::net::TcpListener;

pub struct Application {
    port: u16,
    listener: TcpListener,
    router: Router,
    sagas: Sagas,
    relay: Option<paykit::events::Relay>,
    readiness: paykit::health::Readiness,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = settings.database.pool()?;
        migrate(&pool).await?;
        let listener = TcpListener::bind((settings.http.host.as_str(), settings.http.port)).await?;
        let port = listener.local_addr()?.port();
        let sagas = Sagas::new(pool.clone(), settings.saga.clone());
        crate::saga::zero_metrics();
        let pool_for_relay = pool.clone();
        let readiness = paykit::health::Readiness::new(crate::SERVICE, pool.clone())
            .with_revision(option_env!("PAYTOOL_REVISION"));
        let state = AppState {
            readiness: readiness.clone(),
            pool,
            sagas: sagas.clone(),
            verifier: paykit::auth::Verifier::new(settings.auth.clone())?,
        };
        let relay = paykit::events::Relay::optional(pool_for_relay, settings.kafka)?;
        Ok(Self {
            port,
            listener,
            router: crate::http::router(state),
            sagas,
            relay,
            readiness,
        })
    }

    /// The bound port; with port 0 in the settings, the one the OS chose.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves, with the recovery worker running beside the server.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let recovery = tokio::spawn(self.sagas.run_recovery());
        let relay = self.relay.map(paykit::events::Relay::spawn);
        let served =
            paykit::server::serve_draining(self.listener, self.router, self.readiness).await;
        recovery.abort();
        if let Some(relay) = relay {
            relay.abort();
        }
        served
    }
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    // With paykit's tables: sagas append their events to the outbox in the same transactions.
    paykit::db::migrate(pool, &sqlx::migrate!("./migrations")).await?;
    Ok(())
}
