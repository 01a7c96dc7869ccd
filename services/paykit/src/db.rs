//! The PostgreSQL pool, with every wait bounded, and the migrations every service runs: its
//! own `migrations/` merged with paykit's (the outbox, inbox, idempotency and session tables).

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sqlx::migrate::{MigrateError, Migration, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::borrow::Cow;
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

/// A transaction idle this long is ended by PostgreSQL (and its connection closed). The
/// longest wait of ours inside a transaction is the outbox relay's on Kafka (at most twice
/// its 5 s produce timeout); a transaction left open by a task that went away was ended only
/// when its connection reached its 30-minute lifetime.
const IDLE_IN_TRANSACTION_TIMEOUT_MS: u64 = 30_000;

/// A connection idle at least this long is pinged before it is handed out; a busier one is
/// not. A ping is a round trip on every acquire (three or four a payment, per service), and a
/// connection used a moment ago is as good as a ping says; one that sat idle through a
/// database restart or a failover is the kind a ping finds dead, and the pool then opens
/// another instead of failing the request.
const PING_IF_IDLE_MS: u64 = 1_000;

fn default_max_connections() -> u32 {
    // A connection is busy for a payment's every round trip to PostgreSQL, most of it waiting
    // on the network, not on the two cores: with 20 ms more per round trip (the chaos
    // experiment latency-orchestrator-database-under-load) a payment holds one for about
    // 1.3 s, and ten of them capped the orchestrator below 8 payments a second (Little's law),
    // so answers queued to seconds and then failed. Twenty keep 10 a second flowing there;
    // PostgreSQL allows 300, and six instances (two replicas each) take 120.
    20
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
            // A runaway query must not hold a connection (and its locks) forever, nor a
            // transaction left open by a task that went away between its statements.
            .options([
                ("statement_timeout", self.statement_timeout_ms.to_string()),
                (
                    "idle_in_transaction_session_timeout",
                    IDLE_IN_TRANSACTION_TIMEOUT_MS.to_string(),
                ),
            ]);
        Ok(options)
    }

    /// A lazy pool: the service starts even while the database is still coming up, and
    /// `/health/ready` says so until it is reachable.
    pub fn pool(&self) -> anyhow::Result<PgPool> {
        Ok(PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(Duration::from_millis(self.acquire_timeout_ms))
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for >= Duration::from_millis(PING_IF_IDLE_MS) {
                        // An error closes this connection and the pool tries another.
                        sqlx::Connection::ping(connection).await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(self.connect_options()?))
    }
}

/// paykit's own tables (outbox and inbox, idempotency keys, browser sessions), the same in every
/// service's database. Its versions are below [`PAYKIT_VERSIONS_END`]; a service's are
/// timestamps (`20261125000001`), far above, so the two can never name the same version.
pub static PAYKIT_MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// Every paykit migration's version is below this; every service migration's is at or above.
pub const PAYKIT_VERSIONS_END: i64 = 1_000;

/// The service's own migrations together with paykit's, in version order (paykit's first, so a
/// service's migration may refer to paykit's tables), ready to run like any `Migrator`.
///
/// Panics when a service's migration has a version in paykit's range: that is a mistake in the
/// service's `migrations/` that no database must see.
pub fn migrator(service: &Migrator) -> Migrator {
    assert!(
        PAYKIT_MIGRATIONS
            .iter()
            .all(|m| (0..PAYKIT_VERSIONS_END).contains(&m.version)),
        "paykit's migrations keep below version {PAYKIT_VERSIONS_END}"
    );
    if let Some(clash) = service.iter().find(|m| m.version < PAYKIT_VERSIONS_END) {
        panic!(
            "migration {} ({}) is in paykit's range of versions (below {PAYKIT_VERSIONS_END}); a service's versions are timestamps",
            clash.version, clash.description
        );
    }
    let mut migrations: Vec<Migration> = PAYKIT_MIGRATIONS
        .iter()
        .chain(service.iter())
        .cloned()
        .collect();
    migrations.sort_by_key(|m| m.version);
    Migrator {
        migrations: Cow::Owned(migrations),
        ignore_missing: service.ignore_missing,
        locking: service.locking,
        no_tx: service.no_tx,
    }
}

/// Brings the service's database up to date: paykit's tables and the service's own, through
/// sqlx's migrations table and lock (processes starting together migrate one at a time).
pub async fn migrate(pool: &PgPool, service: &Migrator) -> Result<(), MigrateError> {
    migrator(service).run(pool).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_s_migrations_run_after_paykit_s_in_version_order() {
        let service = Migrator {
            migrations: Cow::Owned(vec![Migration::new(
                20261125000001,
                "ledger".into(),
                sqlx::migrate::MigrationType::Simple,
                "SELECT 1".into(),
                false,
            )]),
            ignore_missing: false,
            locking: true,
            no_tx: false,
        };
        let merged = migrator(&service);
        let versions: Vec<i64> = merged.iter().map(|m| m.version).collect();
        assert_eq!(versions.len(), PAYKIT_MIGRATIONS.iter().count() + 1);
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
        assert_eq!(versions.last(), Some(&20261125000001));
    }

    #[test]
    #[should_panic(expected = "in paykit's range")]
    fn a_service_migration_in_paykit_s_range_is_refused() {
        let service = Migrator {
            migrations: Cow::Owned(vec![Migration::new(
                2,
                "clash".into(),
                sqlx::migrate::MigrationType::Simple,
                "SELECT 1".into(),
                false,
            )]),
            ignore_missing: false,
            locking: true,
            no_tx: false,
        };
        let _ = migrator(&service);
    }
}
