//! The whole path as a person's device takes it: HTTPS through the nginx gateway of the test
//! platform (`paytool up`), to the service processes it supervises, which call each other and
//! the orchestrator as configured there. The in-process flows test the logic; this tests that
//! the running platform is wired the same way.

use base64::Engine;
use serde_json::{json, Value};

use e2e::gateway::{Gateway, PASSWORD};

/// The log file the supervisor keeps for a component of the test platform.
fn component_log(component: &str) -> std::path::PathBuf {
    let home = paykit::testing::platform_status()["home"]
        .as_str()
        .expect("home")
        .to_string();
    std::path::Path::new(&home).join(format!("logs/{component}.log"))
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
    let paid = gateway
        .pay_a_dynamic_qr(&consumer, &merchant, 2000, 750)
        .await;
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

/// Sends `count` requests at once (so that how fast the machine answers cannot spread them
/// out below the limit) and returns the first 429 and every status.
async fn burst(
    gateway: &Gateway,
    count: usize,
    request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
) -> (Vec<u16>, Option<reqwest::Response>) {
    let responses =
        futures_util::future::join_all((0..count).map(|_| request(&gateway.client).send())).await;
    let mut statuses = Vec::new();
    let mut limited = None;
    for response in responses {
        let response = response.expect("sent");
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
    let merchant = gateway.register_merchant().await;
    let url = gateway.url("merchant", "/v1/charges");
    // Codes nobody issued: each charge that passes the gateway is a 404 and moves nothing.
    let (statuses, limited) = burst(&gateway, 60, |client| {
        client
            .post(&url)
            .bearer_auth(&merchant)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&json!({ "payment_code": "280000000000000000", "amount": { "value": 1, "currency": "JPY" } }))
    })
    .await;
    assert!(
        statuses.iter().all(|s| *s == 404 || *s == 429),
        "{statuses:?}"
    );
    assert_rate_limited(limited, &statuses).await;
}

#[tokio::test]
async fn one_user_past_their_rate_is_limited_while_another_at_the_same_address_is_not() {
    let gateway = Gateway::from(std::net::Ipv4Addr::new(127, 0, 0, 6));
    let busy = gateway.register_consumer().await;
    let calm = gateway.register_consumer().await;
    let url = gateway.url("api", "/v1/wallet");
    let (statuses, limited) =
        burst(&gateway, 80, |client| client.get(&url).bearer_auth(&busy)).await;
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert_rate_limited(limited, &statuses).await;
    // The per-user limit is the busy user's alone: from the same address, another user is served.
    let other = gateway
        .client
        .get(&url)
        .bearer_auth(&calm)
        .send()
        .await
        .expect("sent");
    assert_eq!(other.status(), 200);
}

#[tokio::test]
async fn the_access_log_carries_the_request_s_trace_and_who_made_it() {
    let gateway = Gateway::from(std::net::Ipv4Addr::new(127, 0, 0, 7));
    let token = gateway.register_consumer().await;
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let parent_span_id = &uuid::Uuid::new_v4().simple().to_string()[..16];
    let response = gateway
        .client
        .get(gateway.url("api", "/v1/wallet"))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{trace_id}-{parent_span_id}-01"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let log_path = component_log("gateway");
    // The supervisor copies the gateway's stdout to its log: a moment later, not at once.
    let mut line = None;
    for _ in 0..LIST_POLLS_MAX {
        let log = std::fs::read_to_string(&log_path).expect("the gateway's log");
        line = log
            .lines()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|entry| entry["trace_id"] == trace_id.as_str());
        if line.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(LIST_POLL_MS)).await;
    }
    let entry = line.expect("the request is in the access log");
    assert_eq!(entry["parent_span_id"], parent_span_id);
    assert_eq!(entry["span_id"].as_str().map(str::len), Some(16));
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["uri"], "/v1/wallet");
    let claims = token.split('.').nth(1).expect("a JWT");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .expect("base64url"),
    )
    .expect("json");
    assert_eq!(
        entry["user"],
        format!("sub:{}", claims["sub"].as_str().expect("sub"))
    );
}

/// A new merchant and a new consumer whose wallet is topped up with `yen`: their tokens.
async fn funded(gateway: &Gateway, yen: i64) -> (String, String) {
    let merchant = gateway.register_merchant().await;
    let consumer = gateway.register_consumer().await;
    let topped = gateway
        .post(
            "api",
            "/v1/wallet/top-ups",
            Some(&consumer),
            json!({ "amount": { "value": yen, "currency": "JPY" } }),
        )
        .await;
    assert_eq!(topped.status(), 201);
    (merchant, consumer)
}

/// A dynamic QR code of the merchant's for `yen`: its EMVCo payload.
async fn qr_payload(gateway: &Gateway, merchant: &str, yen: i64) -> Value {
    let request: Value = gateway
        .post(
            "merchant",
            "/v1/payment-requests",
            Some(merchant),
            json!({ "amount": { "value": yen, "currency": "JPY" } }),
        )
        .await
        .json()
        .await
        .expect("json");
    request["payload"].clone()
}

/// Pays `payload` as `consumer`, in the trace `trace_id` (a W3C traceparent of the client's).
async fn pay_in_trace(
    gateway: &Gateway,
    consumer: &str,
    payload: &Value,
    trace_id: &str,
) -> reqwest::Response {
    gateway
        .client
        .post(gateway.url("api", "/v1/payments"))
        .bearer_auth(consumer)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .header(
            "traceparent",
            format!(
                "00-{trace_id}-{}-01",
                &uuid::Uuid::new_v4().simple().to_string()[..16]
            ),
        )
        .json(&json!({ "qr": payload }))
        .send()
        .await
        .expect("sent")
}

#[tokio::test]
async fn a_payment_s_trace_id_reaches_every_service_s_log_lines() {
    let gateway = Gateway::from(std::net::Ipv4Addr::new(127, 0, 0, 8));
    let (merchant, consumer) = funded(&gateway, 1_000).await;
    let payload = qr_payload(&gateway, &merchant, 400).await;
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let paid = pay_in_trace(&gateway, &consumer, &payload, &trace_id).await;
    assert_eq!(paid.status(), 201);
    // consumer-api answered the payment; merchant-api ran it for the request it owns; the
    // orchestrator moved the money; merchant-api's consumer applied the ledger's event. Each
    // wrote log lines inside spans of the one trace the client started.
    for service in ["consumer-api", "merchant-api", "orchestrator"] {
        let path = component_log(service);
        let mut seen = false;
        for _ in 0..LIST_POLLS_MAX {
            let log = std::fs::read_to_string(&path).expect("the service's log");
            seen = log
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .any(|line| line["trace_id"] == trace_id.as_str());
            if seen {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(LIST_POLL_MS)).await;
        }
        assert!(seen, "{service} logged nothing of trace {trace_id}");
    }
    // The event crossed Kafka with the trace: merchant-api's consumer span is in it too.
    let path = component_log("merchant-api");
    let mut consumed = false;
    for _ in 0..LIST_POLLS_MAX {
        let log = std::fs::read_to_string(&path).expect("merchant-api's log");
        consumed = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|line| line["trace_id"] == trace_id.as_str() && line["span"] == "event.process");
        if consumed {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(LIST_POLL_MS)).await;
    }
    assert!(
        consumed,
        "merchant-api's consumer logged nothing of trace {trace_id}"
    );
}

#[tokio::test]
async fn payments_made_together_each_leave_a_consumer_line_in_their_own_trace() {
    // Events that arrive together are applied in one transaction (paykit's batched consumer):
    // each still has its line in its own trace, so a person finds every payment's lines by its
    // trace id, batched or not. Eight at once: merchant-api's consumer takes them in batches.
    const PAYMENTS: usize = 8;
    let gateway = Gateway::from(std::net::Ipv4Addr::new(127, 0, 0, 9));
    let (merchant, consumer) = funded(&gateway, 10_000).await;
    let mut payloads = Vec::new();
    for _ in 0..PAYMENTS {
        payloads.push(qr_payload(&gateway, &merchant, 100).await);
    }
    let trace_ids: Vec<String> = (0..PAYMENTS)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect();
    let paid = futures_util::future::join_all(
        payloads
            .iter()
            .zip(&trace_ids)
            .map(|(payload, trace_id)| pay_in_trace(&gateway, &consumer, payload, trace_id)),
    )
    .await;
    for answer in paid {
        assert_eq!(answer.status(), 201);
    }
    let path = component_log("merchant-api");
    let mut missing: Vec<&String> = trace_ids.iter().collect();
    for _ in 0..LIST_POLLS_MAX {
        let log = std::fs::read_to_string(&path).expect("merchant-api's log");
        let consumed: std::collections::HashSet<String> = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|line| line["span"] == "event.process" && line["message"] == "event handled")
            .filter_map(|line| line["trace_id"].as_str().map(str::to_string))
            .collect();
        missing.retain(|id| !consumed.contains(*id));
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(LIST_POLL_MS)).await;
    }
    assert!(
        missing.is_empty(),
        "merchant-api's consumer handled these payments' events outside their traces: {missing:?}"
    );
    assert_platform_ledger_verifies().await;
}

/// Panics unless the running platform's ledger checks all pass (what `paytool ledger verify`
/// asks the orchestrator).
async fn assert_platform_ledger_verifies() {
    let status = paykit::testing::platform_status();
    let orchestrator = status["components"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == "orchestrator"))
        .and_then(|c| c["urls"][0].as_str())
        .expect("the orchestrator's URL in the status")
        .to_string();
    let token = paykit::testing::client_token("consumer-api").await;
    let report: Value = reqwest::Client::new()
        .get(format!("{orchestrator}/internal/ledger/verify"))
        .bearer_auth(token)
        .send()
        .await
        .expect("the orchestrator answers")
        .json()
        .await
        .expect("json");
    assert_eq!(report["ok"], true, "the ledger verifies: {report}");
}
