//! PostgreSQL's metrics: Debian's `prometheus-postgres-exporter` (0.11), on loopback, scraped by
//! Prometheus as job `postgres-exporter`. It reads the statistics views (`pg_stat_database`,
//! database sizes, the background writer) as `paytool_monitor`, a role that can log in and read
//! statistics (`pg_monitor`) but owns nothing, changes nothing (read-only transactions) and
//! holds at most five connections: a scrape never competes with the services for the pool.

use super::{http_probe, postgres, Component, ComponentName, Ctx, Spec, Step};
use crate::runtime::home::{Home, Secrets};
use crate::runtime::probe::Probe;
use anyhow::Context;
use nix::sys::signal::Signal;
use rand::RngCore;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::str::FromStr;

/// The monitoring role: a fixed identifier, so the DDL below cannot be injected into.
pub const MONITOR_ROLE: &str = "paytool_monitor";
/// The exporter (0.11) keeps two connections open (measured: one for its built-in queries,
/// one for its `collector` package); the rest covers a reconnect overlapping a dying one. More
/// than this is a bug, and PostgreSQL refuses it.
const MONITOR_CONNECTION_LIMIT: u32 = 5;
/// The password file in the exporter's directory (mode 0600): generated once, like
/// `secrets.json`, and kept in step with the role at every start.
const PASSWORD_FILE: &str = "monitor.pw";

/// Debian's postgres_exporter.
pub struct PostgresExporter;

impl Component for PostgresExporter {
    fn name(&self) -> ComponentName {
        ComponentName::PostgresExporter
    }

    fn spec(&self, ctx: &Ctx) -> anyhow::Result<Spec> {
        spec(ctx)
    }

    fn probe(&self, home: &Home, _secrets: &Secrets) -> Probe {
        probe(home)
    }

    fn prepare<'a>(&'a self, ctx: &'a Ctx) -> Step<'a> {
        Box::pin(prepare(ctx))
    }
}

pub fn url(home: &Home) -> String {
    format!("http://127.0.0.1:{}", home.ports().postgres_exporter)
}

/// Its landing page: it answers once the exporter listens, without querying PostgreSQL (a
/// scrape of /metrics would, at every `paytool status`).
fn probe(home: &Home) -> Probe {
    http_probe(format!("{}/", url(home)))
}

fn dir(home: &Home) -> PathBuf {
    home.component_dir(ComponentName::PostgresExporter.as_str())
}

fn spec(ctx: &Ctx) -> anyhow::Result<Spec> {
    let ports = ctx.home.ports();
    let dir = dir(&ctx.home);
    Ok(Spec {
        name: ComponentName::PostgresExporter,
        instance: 0,
        program: ctx.tools.postgres_exporter.clone(),
        args: vec![
            format!("--web.listen-address=127.0.0.1:{}", ports.postgres_exporter),
            // pg_settings is some 300 constant series a scrape; nothing reads them.
            "--disable-settings-metrics".into(),
            "--log.format=json".into(),
        ],
        // The password comes from a file, so it is in no process's arguments or environment.
        env: vec![
            (
                "DATA_SOURCE_URI".into(),
                format!(
                    "127.0.0.1:{}/postgres?sslmode=disable&application_name=postgres_exporter",
                    ports.postgres
                ),
            ),
            ("DATA_SOURCE_USER".into(), MONITOR_ROLE.into()),
            (
                "DATA_SOURCE_PASS_FILE".into(),
                dir.join(PASSWORD_FILE).display().to_string(),
            ),
        ],
        cwd: dir,
        run_as: None,
        ports: vec![("http", ports.postgres_exporter)],
        urls: vec![format!("{}/metrics", url(&ctx.home))],
        probe: probe(&ctx.home),
        ready_timeout_ms: 30_000,
        stop_signal: Signal::SIGTERM,
        stop_timeout_ms: 10_000,
    })
}

/// Runs after PostgreSQL is ready (a later wave): the role exists, with the password of the
/// file, before the exporter first connects.
async fn prepare(ctx: &Ctx) -> anyhow::Result<()> {
    let dir = dir(&ctx.home);
    std::fs::create_dir_all(&dir)?;
    let password = password(&dir.join(PASSWORD_FILE))?;
    let options = PgConnectOptions::from_str(&postgres::admin_url(&ctx.home, &ctx.secrets))?;
    let mut connection = options
        .connect()
        .await
        .context("cannot connect to PostgreSQL to set up the monitoring role")?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(MONITOR_ROLE)
            .fetch_one(&mut connection)
            .await?;
    let verb = if exists { "ALTER" } else { "CREATE" };
    // DDL takes no bind parameters: the role is a constant and the password is hex that this
    // file generated (checked in `password`), so neither can close the literal.
    for statement in [
        format!(
            "{verb} ROLE {MONITOR_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE \
             CONNECTION LIMIT {MONITOR_CONNECTION_LIMIT} PASSWORD '{password}'"
        ),
        format!("ALTER ROLE {MONITOR_ROLE} SET default_transaction_read_only = on"),
        format!("GRANT pg_monitor TO {MONITOR_ROLE}"),
    ] {
        connection.execute(statement.as_str()).await?;
    }
    connection.close().await.ok();
    Ok(())
}

/// The monitoring role's password: read from its file, or generated (256 random bits as hex)
/// and written with mode 0600 the first time.
fn password(path: &std::path::Path) -> anyhow::Result<String> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let password = text.trim().to_string();
        anyhow::ensure!(
            password.len() == 64 && password.chars().all(|c| c.is_ascii_hexdigit()),
            "{} is not a 64-digit hexadecimal password: delete it and start again",
            path.display()
        );
        return Ok(password);
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut file, password.as_bytes())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monitoring_password_is_generated_once_as_hex_and_kept_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(PASSWORD_FILE);
        let first = password(&path).expect("generated");
        assert_eq!(first.len(), 64);
        assert!(first.chars().all(|c| c.is_ascii_hexdigit()));
        let mode = std::fs::metadata(&path)
            .expect("written")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(password(&path).expect("read back"), first);
    }

    #[test]
    fn a_hand_edited_monitoring_password_is_an_error_not_sql() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(PASSWORD_FILE);
        std::fs::write(&path, "x'; DROP ROLE postgres; --").expect("write");
        let error = password(&path).expect_err("refused");
        assert!(error.to_string().contains("hexadecimal"), "{error}");
    }
}
