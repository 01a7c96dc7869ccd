//! Test support: a fresh, empty PostgreSQL database per test on the real server.
//!
//! Tests find the server through `PAYTOOL_TEST_DATABASE_URL`, an admin URL that `scripts/test.sh`
//! exports from the test platform's `paytool status --json`. There is deliberately no fallback
//! to an in-process fake: without a real server the test fails and says how to get one.

use crate::db::DatabaseSettings;
use secrecy::SecretString;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::str::FromStr;

pub const ADMIN_URL_ENV: &str = "PAYTOOL_TEST_DATABASE_URL";

/// Creates `test_<uuid>` and returns settings pointing at it.
pub async fn fresh_database() -> DatabaseSettings {
    let admin_url = std::env::var(ADMIN_URL_ENV).unwrap_or_else(|_| {
        panic!(
            "{ADMIN_URL_ENV} is not set: run the tests through scripts/test.sh, which starts a real \
             PostgreSQL, or export it from `paytool status --json`"
        )
    });
    let admin = PgConnectOptions::from_str(&admin_url).expect("the admin URL parses");
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut connection = admin.connect().await.expect("the test PostgreSQL answers");
    sqlx::query(&format!(r#"CREATE DATABASE "{name}""#))
        .execute(&mut connection)
        .await
        .expect("a fresh database is created");
    connection.close().await.ok();
    let url = format!(
        "{}/{name}",
        admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(base, _)| base)
    );
    DatabaseSettings {
        url: SecretString::from(url),
        max_connections: 5,
        acquire_timeout_ms: 5_000,
        statement_timeout_ms: 5_000,
    }
}
