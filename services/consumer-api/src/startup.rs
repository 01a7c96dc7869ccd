//! Builds the application once for `main` and for the tests alike.

use crate::configuration::Settings;
use crate::http::AppState;
use axum::Router;
use paykit::idempotency::Store;
use paykit::internal::{Orchestrator, ServiceClient};
use paykit::keycloak::ServiceAccount;
use paykit::web::Sessions;
use std::sync::Arc;
use tokio::net::TcpListener;

/// How often expired idempotency keys are deleted.
const IDEMPOTENCY_PURGE_INTERVAL_MS: u64 = 60 * 60 * 1000;

pub struct Application {
    port: u16,
    listener: TcpListener,
    router: Router,
    idempotency: Store,
    relay: Option<paykit::events::Relay>,
    sessions: Option<Sessions>,
    readiness: paykit::health::Readiness,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((settings.http.host.as_str(), settings.http.port)).await?;
        Self::build_on(settings, listener).await
    }

    /// Builds on a listener bound already: services that call each other (consumer-api and
    /// merchant-api) can then each be told the other's port before either is built.
    pub async fn build_on(settings: Settings, listener: TcpListener) -> anyhow::Result<Self> {
        let pool = settings.database.pool()?;
        paykit::db::migrate(&pool, &sqlx::migrate!("./migrations")).await?;
        let idempotency = Store::new(pool.clone());
        let relay = paykit::events::Relay::optional(pool.clone(), settings.kafka.clone())?;
        let keycloak = Arc::new(ServiceAccount::new(settings.keycloak.clone())?);
        let verifier = paykit::auth::Verifier::new(settings.auth.clone())?;
        let sessions = match settings.web.clone() {
            Some(web) => {
                // The sessions' access tokens are checked by the API's own verifier: a browser
                // gets exactly what a bearer token of the same person would.
                Some(Sessions::new(web, pool.clone(), verifier.clone())?)
            }
            None => None,
        };
        let orchestrator = Orchestrator::new(settings.orchestrator.clone(), keycloak.clone());
        let merchant_api = ServiceClient::new(
            "merchant-api",
            settings.merchant_api.clone(),
            keycloak.clone(),
        );
        let readiness = paykit::health::Readiness::new(crate::SERVICE, pool.clone())
            .with_revision(option_env!("PAYTOOL_REVISION"))
            .with_dependency(orchestrator.guard())
            .with_dependency(merchant_api.guard());
        let state = AppState {
            readiness: readiness.clone(),
            pool,
            verifier,
            sessions: sessions.clone(),
            idempotency: idempotency.clone(),
            orchestrator,
            merchant_api,
            keycloak,
            default_currency: settings.default_currency.clone(),
            payment_code_key: settings.payment_code_key.clone(),
            consumers: Default::default(),
        };
        let port = listener.local_addr()?.port();
        Ok(Self {
            port,
            listener,
            router: crate::http::router(state),
            idempotency,
            relay,
            sessions,
            readiness,
        })
    }

    /// The bound port; with port 0 in the settings, the one the OS chose.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let purge = self.idempotency.spawn_purge(IDEMPOTENCY_PURGE_INTERVAL_MS);
        let relay = self.relay.map(paykit::events::Relay::spawn);
        let sessions_purge = self
            .sessions
            .as_ref()
            .map(|sessions| sessions.spawn_purge(paykit::web::PURGE_INTERVAL_MS));
        let served =
            paykit::server::serve_draining(self.listener, self.router, self.readiness).await;
        purge.abort();
        for worker in [relay, sessions_purge].into_iter().flatten() {
            worker.abort();
        }
        served
    }
}
