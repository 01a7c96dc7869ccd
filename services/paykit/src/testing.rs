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

/// An OpenAPI 3.1 contract from `services/contracts/`, to check a running service's answers
/// against: the operation and status must be documented, and the body must match its schema.
pub struct Contract {
    name: String,
    document: serde_json::Value,
}

impl Contract {
    pub fn load(name: &str) -> Self {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../contracts")
            .join(format!("{name}.yaml"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let document: serde_json::Value = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
        assert_eq!(
            document["openapi"].as_str().map(|v| v.starts_with("3.1")),
            Some(true),
            "{name}: an OpenAPI 3.1 document"
        );
        Self {
            name: name.to_string(),
            document,
        }
    }

    /// Panics unless `status` with this content type and body is what the contract documents
    /// for `method path_template` (e.g. `"post"`, `"/v1/payments"`).
    pub fn check(
        &self,
        method: &str,
        path_template: &str,
        status: u16,
        content_type: &str,
        body: &serde_json::Value,
    ) {
        let name = &self.name;
        let operation = &self.document["paths"][path_template][method.to_ascii_lowercase()];
        assert!(
            operation.is_object(),
            "{name}: {method} {path_template} is not in the contract"
        );
        let mut response = &operation["responses"][status.to_string()];
        assert!(
            response.is_object(),
            "{name}: {method} {path_template} does not document status {status}"
        );
        if let Some(reference) = response["$ref"].as_str() {
            response = self.pointer(reference);
        }
        let media = content_type.split(';').next().unwrap_or("").trim();
        let schema = &response["content"][media]["schema"];
        assert!(
            schema.is_object(),
            "{name}: {method} {path_template} {status} documents no {media} body"
        );
        // The schema is checked with the document's components beside it, so that its
        // `#/components/...` references resolve.
        let mut root = schema.clone();
        root["components"] = self.document["components"].clone();
        root["$schema"] = serde_json::Value::from("https://json-schema.org/draft/2020-12/schema");
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| {
                panic!("{name}: the schema of {method} {path_template} {status} is invalid: {e}")
            });
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}: {method} {path_template} {status} breaks the contract: {errors:?}\nbody: {body}");
    }

    /// Every documented operation, as `(method, path template)`.
    pub fn operations(&self) -> Vec<(String, String)> {
        let mut operations = Vec::new();
        if let Some(paths) = self.document["paths"].as_object() {
            for (path, item) in paths {
                for method in ["get", "post", "put", "patch", "delete"] {
                    if item[method].is_object() {
                        operations.push((method.to_string(), path.clone()));
                    }
                }
            }
        }
        operations
    }

    fn pointer(&self, reference: &str) -> &serde_json::Value {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local references: {reference}"));
        self.document
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{}: dangling reference {reference}", self.name))
    }
}

impl Contract {
    /// Reads a response and checks it against the contract; returns its status and body.
    pub async fn check_response(
        &self,
        method: &str,
        path_template: &str,
        response: reqwest::Response,
    ) -> (u16, serde_json::Value) {
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body: serde_json::Value = response.json().await.expect("a JSON body");
        self.check(method, path_template, status, &content_type, &body);
        (status, body)
    }
}

/// Kafka settings for one spawned platform: the test platform's broker, and topics of its own
/// (a fresh prefix; each topic of stacks/local/kafka/topics.json created with one partition),
/// so that parallel tests neither see nor consume each other's events.
pub async fn kafka_settings() -> crate::events::KafkaSettings {
    let status = platform_status();
    let bootstrap = status["connections"]["kafka_bootstrap"]
        .as_str()
        .expect("the platform status names Kafka")
        .to_string();
    let settings = crate::events::KafkaSettings {
        bootstrap_servers: bootstrap,
        topic_prefix: format!("t{}.", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        relay_failpoint: None,
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../stacks/local/kafka/topics.json");
    let topics: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(&path).expect("stacks/local/kafka/topics.json"),
    )
    .expect("topics.json is JSON");
    let names: Vec<&str> = topics.iter().filter_map(|t| t["name"].as_str()).collect();
    crate::events::create_topics(&settings, &names, 1)
        .await
        .expect("the test topics are created");
    settings
}

/// The slug of a problem response's `type` (`insufficient-funds` for `.../problems/insufficient-funds`).
pub async fn problem_type(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.expect("a JSON body");
    body["type"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches(crate::problem::TYPE_BASE)
        .to_string()
}
