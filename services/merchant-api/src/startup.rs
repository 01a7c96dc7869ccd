//! Builds the application once for `main` and for the tests alike.

use crate::configuration::Settings;
use axum::Router;
use tokio::net::TcpListener;

pub struct Application {
    port: u16,
    listener: TcpListener,
    router: Router,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = settings.database.pool()?;
        let listener = TcpListener::bind((settings.http.host.as_str(), settings.http.port)).await?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            port,
            listener,
            router: crate::http::router(pool),
        })
    }

    /// The bound port; with port 0 in the settings, the one the OS chose.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        paykit::server::serve(self.listener, self.router).await
    }
}
