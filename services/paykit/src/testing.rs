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

/// The test platform's `paytool status --json --show-secrets`, which `scripts/test.sh` writes
/// to the file named by `PAYTOOL_TEST_STATUS`.
pub const STATUS_ENV: &str = "PAYTOOL_TEST_STATUS";

pub fn platform_status() -> serde_json::Value {
    let path = std::env::var(STATUS_ENV).unwrap_or_else(|_| {
        panic!("{STATUS_ENV} is not set: run the tests through scripts/test.sh, which starts a real Keycloak")
    });
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// Auth settings that verify tokens of the test platform's realm for `audience`.
pub fn auth_settings(audience: &str) -> crate::auth::AuthSettings {
    let status = platform_status();
    let connections = &status["connections"];
    let realm = connections["keycloak_realm"].as_str().expect("realm");
    crate::auth::AuthSettings {
        issuer: format!(
            "{}/realms/{realm}",
            connections["keycloak_public_url"]
                .as_str()
                .expect("public url")
        ),
        jwks_url: format!(
            "{}/realms/{realm}/protocol/openid-connect/certs",
            connections["keycloak_url"].as_str().expect("keycloak url")
        ),
        audience: audience.to_string(),
    }
}

/// An access token for a confidential client of the realm (client-credentials grant).
pub async fn client_token(client_id: &str) -> String {
    let status = platform_status();
    let connections = &status["connections"];
    let secret = connections["client_secrets"][client_id]
        .as_str()
        .unwrap_or_else(|| panic!("no secret for client {client_id}"));
    let url = format!(
        "{}/realms/{}/protocol/openid-connect/token",
        connections["keycloak_url"].as_str().expect("keycloak url"),
        connections["keycloak_realm"].as_str().expect("realm")
    );
    let response: serde_json::Value = reqwest::Client::new()
        .post(url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .expect("Keycloak answers")
        .error_for_status()
        .expect("the client credentials are accepted")
        .json()
        .await
        .expect("a token response");
    response["access_token"]
        .as_str()
        .expect("an access token")
        .to_string()
}
