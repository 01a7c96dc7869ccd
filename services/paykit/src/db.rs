//! The PostgreSQL pool, with every wait bounded.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// `postgres://user:password@host:port/database`; a secret because it holds the password.
    pub url: SecretString,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    #[serde(default = "default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
}

fn default_max_connections() -> u32 {
    // Two cores on the reference machine; more connections than that mostly queue in Postgres.
    10
}
fn default_acquire_timeout_ms() -> u64 {
    2_000
}
fn default_statement_timeout_ms() -> u64 {
    5_000
}

impl DatabaseSettings {
    pub fn connect_options(&self) -> anyhow::Result<PgConnectOptions> {
        let options = PgConnectOptions::from_str(self.url.expose_secret())?
            // A runaway query must not hold a connection (and its locks) forever.
            .options([("statement_timeout", self.statement_timeout_ms.to_string())]);
        Ok(options)
    }

    /// A lazy pool: the service starts even while the database is still coming up, and
    /// `/health/ready` says so until it is reachable.
    pub fn pool(&self) -> anyhow::Result<PgPool> {
        Ok(PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(Duration::from_millis(self.acquire_timeout_ms))
            .connect_lazy_with(self.connect_options()?))
    }
}
