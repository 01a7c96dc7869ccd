//! The whole path as a person's device takes it: HTTPS through the nginx gateway of the test
//! platform (`paytool up`), to the service processes it supervises, which call each other and
//! the orchestrator as configured there. The in-process flows test the logic; this tests that
//! the running platform is wired the same way.

use serde_json::{json, Value};
use std::net::SocketAddr;

const PASSWORD: &str = "correct horse battery";

struct Gateway {
    client: reqwest::Client,
    port: u64,
}

impl Gateway {
    fn new() -> Self {
        Self::from(std::net::Ipv4Addr::LOCALHOST)
    }

    /// A client whose connections come from `source` (any 127.x address is loopback), so that
    /// the rate-limit test has a client address of its own and leaves the others' budget alone.
    fn from(source: std::net::Ipv4Addr) -> Self {
        let status = paykit::testing::platform_status();
        let port = status["gateway"]["https_port"]
            .as_u64()
            .expect("the gateway's port");
        let ca = std::fs::read(
            status["gateway"]["ca_certificate"]
                .as_str()
                .expect("the CA"),
        )
        .expect("the CA is readable");
        let mut builder = reqwest::Client::builder()
            .local_address(std::net::IpAddr::V4(source))
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("the CA parses"));
        // The names resolve to loopback whether or not /etc/hosts has them.
        for host in ["api.local.test", "merchant.local.test", "sso.local.test"] {
            let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
            builder = builder.resolve(host, address);
        }
        Self {
            client: builder.build().expect("a client"),
            port,
        }
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}.local.test:{}{path}", self.port)
    }

    async fn login(&self, email: &str) -> String {
        let status = paykit::testing::platform_status();
        let realm = status["connections"]["keycloak_realm"]
            .as_str()
            .expect("realm");
        let token: Value = self
            .client
            .post(self.url(
                "sso",
                &format!("/realms/{realm}/protocol/openid-connect/token"),
            ))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "paytool-cli"),
                ("username", email),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .expect("Keycloak answers through the gateway")
            .json()
            .await
            .expect("json");
        token["access_token"].as_str().expect("a token").to_string()
    }

    async fn post(
        &self,
        host: &str,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url(host, path))
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("sent")
    }
}

#[tokio::test]
async fn a_consumer_pays_a_merchant_through_the_gateway_of_the_running_platform() {
    let gateway = Gateway::new();
    let merchant_email = e2e::unique_email("merchant");
    let registered = gateway
        .post(
            "merchant",
            "/v1/merchants",
            None,
            json!({ "name": "Gateway Cafe", "city": "Kyoto", "country": "JP", "mcc": "5814",
                    "currency": "JPY", "email": merchant_email, "password": PASSWORD }),
        )
        .await;
    assert_eq!(registered.status(), 201);
    let merchant = gateway.login(&merchant_email).await;
    let consumer_email = e2e::unique_email("consumer");
    let registered = gateway
        .post(
            "api",
            "/v1/consumers",
            None,
            json!({ "email": consumer_email, "password": PASSWORD, "name": "Gate Way" }),
        )
        .await;
    assert_eq!(registered.status(), 201);
    let consumer = gateway.login(&consumer_email).await;
    let topped = gateway
        .post(
            "api",
            "/v1/wallet/top-ups",
            Some(&consumer),
            json!({ "amount": { "value": 2000, "currency": "JPY" } }),
        )
        .await;
    assert_eq!(topped.status(), 201);
    let request: Value = gateway
        .post(
            "merchant",
            "/v1/payment-requests",
            Some(&merchant),
            json!({ "amount": { "value": 750, "currency": "JPY" } }),
        )
        .await
        .json()
        .await
        .expect("json");
    let paid = gateway
        .post(
            "api",
            "/v1/payments",
            Some(&consumer),
            json!({ "qr": request["payload"] }),
        )
        .await;
    assert_eq!(paid.status(), 201);
    let paid: Value = paid.json().await.expect("json");
    assert_eq!(paid["wallet"]["available"]["value"], 1250);
    // The list is built from the ledger's events (Kafka): it catches up a moment later.
    let mut listed = Value::Null;
    for _ in 0..LIST_POLLS_MAX {
        listed = gateway
            .client
            .get(gateway.url("merchant", "/v1/transactions"))
            .bearer_auth(&merchant)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        if listed["items"][0]["id"] == paid["id"] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(LIST_POLL_MS)).await;
    }
    assert_eq!(listed["items"][0]["id"], paid["id"], "{listed}");
}

/// A bound on waiting for the event-fed list, not a speed check.
const LIST_POLLS_MAX: u32 = 300;
const LIST_POLL_MS: u64 = 50;

#[tokio::test]
async fn the_gateway_does_not_route_internal_endpoints() {
    let gateway = Gateway::new();
    let service_token = paykit::testing::client_token("merchant-api").await;
    for (host, path) in [
        ("api", "/internal/v1/payment-codes/redemptions"),
        (
            "merchant",
            "/internal/v1/payment-requests/00000000-0000-0000-0000-000000000000/payments",
        ),
    ] {
        let response = gateway
            .post(host, path, Some(&service_token), json!({}))
            .await;
        assert_eq!(response.status(), 404, "{host}{path}");
        assert_eq!(
            response.headers().get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/problem+json"[..])
        );
    }
}

#[tokio::test]
async fn a_burst_of_registrations_from_one_address_is_rate_limited_with_a_problem() {
    let gateway = Gateway::from(std::net::Ipv4Addr::new(127, 0, 0, 2));
    let mut statuses = Vec::new();
    let mut limited = None;
    // Invalid bodies: the service refuses them (422) without creating anything, so the burst
    // leaves no accounts behind; the gateway counts them all the same.
    for _ in 0..25 {
        let response = gateway
            .post(
                "api",
                "/v1/consumers",
                None,
                json!({ "email": "not-an-email", "password": "x", "name": "x" }),
            )
            .await;
        statuses.push(response.status().as_u16());
        if response.status() == 429 && limited.is_none() {
            limited = Some(response);
        }
    }
    assert!(
        statuses.iter().all(|s| *s == 422 || *s == 429),
        "{statuses:?}"
    );
    let limited = limited.expect("the burst is limited");
    assert_eq!(
        limited.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/problem+json"[..])
    );
    assert!(limited.headers().contains_key("retry-after"));
    let problem: Value = limited.json().await.expect("json");
    assert_eq!(problem["status"], 429);
}

/// Sends `count` requests as fast as one client can and returns the first 429 and every status.
async fn burst(
    gateway: &Gateway,
    count: usize,
    request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
) -> (Vec<u16>, Option<reqwest::Response>) {
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..count {
        let response = request(&gateway.client).send().await.expect("sent");
        statuses.push(response.status().as_u16());
        if response.status() == 429 && limited.is_none() {
            limited = Some(response);
        }
    }
    (statuses, limited)
}

async fn assert_rate_limited(limited: Option<reqwest::Response>, statuses: &[u16]) {
    let limited = limited.unwrap_or_else(|| panic!("the burst is limited: {statuses:?}"));
    assert_eq!(
        limited.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/problem+json"[..])
    );
    assert!(limited.headers().contains_key("retry-after"));
    let problem: Value = limited.json().await.expect("json");
    assert_eq!(problem["status"], 429);
}

#[tokio::test]
async fn a_burst_of_sign_in_attempts_at_keycloak_is_rate_limited() {
    // Wrong passwords, from an address of its own: Keycloak refuses them (401), and past the
    // burst the gateway stops them before Keycloak sees them.
    let gateway = Gateway::from(std::net::Ipv4Addr::new(127, 0, 0, 4));
    let realm = paykit::testing::platform_status()["connections"]["keycloak_realm"]
        .as_str()
        .expect("realm")
        .to_string();
    let url = gateway.url(
        "sso",
        &format!("/realms/{realm}/protocol/openid-connect/token"),
    );
    let (statuses, limited) = burst(&gateway, 45, |client| {
        client.post(&url).form(&[
            ("grant_type", "password"),
            ("client_id", "paytool-cli"),
            ("username", "nobody@example.test"),
            ("password", "not the password"),
        ])
    })
    .await;
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    assert_rate_limited(limited, &statuses).await;
}

#[tokio::test]
async fn a_burst_of_charges_from_one_till_is_rate_limited() {
    let gateway = Gateway::from(std::net::Ipv4Addr::new(127, 0, 0, 5));
    let url = gateway.url("merchant", "/v1/charges");
    // Unauthenticated: each that passes the gateway is a 401 and charges nothing.
    let (statuses, limited) = burst(&gateway, 60, |client| {
        client
            .post(&url)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&json!({ "payment_code": "280000000000000000", "amount": { "value": 1, "currency": "JPY" } }))
    })
    .await;
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    assert_rate_limited(limited, &statuses).await;
}
