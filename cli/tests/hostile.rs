//! The hostile-input suite: what an attacker sends a payments platform on its first day, against
//! the running test platform (`paytool up` by scripts/test.sh) through its TLS gateway. Forged,
//! expired and misdirected tokens; one consumer reaching for another's money; injection
//! strings; oversized and deeply nested JSON; amounts that are not exact minor units; bad and
//! replayed QR payloads and payment codes; parallel double spends. Each gets its 4xx as a
//! problem document, every balance ends exactly where the accepted requests put it, and
//! `paytool ledger verify` passes afterwards.
//!
//! Each test connects from a loopback address of its own (127.0.1.x), so that the gateway's
//! per-address limits count it apart from the other suites sharing the platform.

use e2e::gateway::{Gateway, PASSWORD};
use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

const PROBLEM: &str = "application/problem+json";

fn status() -> Value {
    paykit::testing::platform_status()
}

/// `paytool ledger verify --json` against the test platform: every invariant holds.
fn assert_ledger_verifies() {
    let home = status()["home"]
        .as_str()
        .expect("the status names the installation's home")
        .to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_paytool"))
        .args(["--home", &home, "ledger", "verify", "--json"])
        .output()
        .expect("paytool runs");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "ledger verify printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert_eq!(report["ok"], true, "{report}");
}

/// Asserts a problem document with `status` and returns it.
async fn problem(response: reqwest::Response, status: u16, what: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "{what}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(content_type.starts_with(PROBLEM), "{what}: {content_type}");
    let body: Value = response.json().await.expect("a problem is JSON");
    assert_eq!(body["status"], status, "{what}: {body}");
    body
}

/// A problem with one of the `allowed` statuses (a parse error may be a 400 or a 422,
/// depending on where the parser stops).
async fn refused(response: reqwest::Response, allowed: &[u16], what: &str) -> Value {
    let status = response.status().as_u16();
    assert!(
        allowed.contains(&status),
        "{what} answered {status}, not one of {allowed:?}"
    );
    problem(response, status, what).await
}

/// How often a request refused by the per-user rate limit is sent again: a test that sends
/// more than a person would waits as a well-behaved client does, instead of seeing 429s.
const RATE_LIMITED_RETRIES_MAX: u32 = 20;

/// Sends what `make` builds, again after `Retry-After` when the gateway's rate limit says so.
async fn paced(make: impl Fn() -> reqwest::RequestBuilder) -> reqwest::Response {
    for _ in 0..RATE_LIMITED_RETRIES_MAX {
        let response = make().send().await.expect("sent");
        if response.status() != 429 {
            return response;
        }
        let wait_s = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(1);
        tokio::time::sleep(Duration::from_secs(wait_s)).await;
    }
    panic!("still rate-limited after {RATE_LIMITED_RETRIES_MAX} tries");
}

/// A keyed POST (a fresh Idempotency-Key), paced.
async fn post(
    gateway: &Gateway,
    host: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let key = uuid::Uuid::new_v4().to_string();
    paced(|| {
        let request = gateway
            .client
            .post(gateway.url(host, path))
            .header("Idempotency-Key", key.as_str())
            .json(&body);
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    })
    .await
}

/// A keyed POST that must answer JSON: its body.
async fn post_json(
    gateway: &Gateway,
    host: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Value {
    post(gateway, host, path, token, body)
        .await
        .json()
        .await
        .expect("json")
}

struct Consumer {
    email: String,
    id: String,
    token: String,
}

async fn consumer(gateway: &Gateway, name: &str) -> Consumer {
    let email = e2e::unique_email(name);
    let registered = post(
        gateway,
        "api",
        "/v1/consumers",
        None,
        json!({ "email": email, "password": PASSWORD, "name": name }),
    )
    .await;
    assert_eq!(registered.status(), 201);
    let body: Value = registered.json().await.expect("json");
    let token = gateway.login(&email).await;
    Consumer {
        email,
        id: body["id"].as_str().expect("an id").to_string(),
        token,
    }
}

async fn merchant(gateway: &Gateway) -> String {
    let email = e2e::unique_email("merchant");
    let registered = post(
        gateway,
        "merchant",
        "/v1/merchants",
        None,
        json!({ "name": "Hostile Cafe", "city": "Osaka", "country": "JP", "mcc": "5814",
                    "currency": "JPY", "email": email, "password": PASSWORD }),
    )
    .await;
    assert_eq!(registered.status(), 201);
    gateway.login(&email).await
}

fn jpy(value: i64) -> Value {
    json!({ "value": value, "currency": "JPY" })
}

async fn top_up(gateway: &Gateway, token: &str, value: i64) {
    let response = post(
        gateway,
        "api",
        "/v1/wallet/top-ups",
        Some(token),
        json!({ "amount": jpy(value) }),
    )
    .await;
    assert_eq!(response.status(), 201);
}

async fn get(gateway: &Gateway, host: &str, path: &str, token: &str) -> reqwest::Response {
    paced(|| {
        gateway
            .client
            .get(gateway.url(host, path))
            .bearer_auth(token)
    })
    .await
}

/// The wallet's available and posted balances.
async fn balance(gateway: &Gateway, token: &str) -> (i64, i64) {
    let wallet: Value = get(gateway, "api", "/v1/wallet", token)
        .await
        .json()
        .await
        .expect("json");
    (
        wallet["available"]["value"].as_i64().expect("available"),
        wallet["posted"]["value"].as_i64().expect("posted"),
    )
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .expect("base64url")
}

/// A token's three parts, header and claims decoded.
fn parts(token: &str) -> (Value, Value, String) {
    let mut parts = token.split('.');
    let header = serde_json::from_slice(&unb64(parts.next().expect("header"))).expect("json");
    let claims = serde_json::from_slice(&unb64(parts.next().expect("claims"))).expect("json");
    (header, claims, parts.next().expect("signature").to_string())
}

fn assemble(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

fn hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(signed.as_bytes());
    format!("{signed}.{}", b64(&mac.finalize().into_bytes()))
}

/// An administrator's token of Keycloak's master realm: another issuer, another key.
async fn master_admin_token() -> String {
    let connections = &status()["connections"];
    let reply: Value = reqwest::Client::new()
        .post(format!(
            "{}/realms/master/protocol/openid-connect/token",
            connections["keycloak_url"].as_str().expect("url")
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            (
                "username",
                connections["keycloak_admin_user"].as_str().expect("user"),
            ),
            (
                "password",
                connections["keycloak_admin_password"]
                    .as_str()
                    .expect("password"),
            ),
        ])
        .send()
        .await
        .expect("Keycloak answers")
        .json()
        .await
        .expect("json");
    reply["access_token"].as_str().expect("a token").to_string()
}

/// The service's own port on loopback, behind the gateway.
fn service_url(name: &str, path: &str) -> String {
    let status = status();
    let port = status["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|c| c["name"] == name)
        .and_then(|c| c["ports"]["http"].as_u64())
        .unwrap_or_else(|| panic!("{name} has a port"));
    format!("http://127.0.0.1:{port}{path}")
}

/// Sends `token` to the wallet through the gateway and straight to consumer-api: both refuse.
async fn refused_at_edge_and_service(gateway: &Gateway, token: &str, what: &str) -> Value {
    let at_edge = problem(
        get(gateway, "api", "/v1/wallet", token).await,
        401,
        &format!("{what} (gateway)"),
    )
    .await;
    let at_service = reqwest::Client::new()
        .get(service_url("consumer-api", "/v1/wallet"))
        .bearer_auth(token)
        .send()
        .await
        .expect("sent");
    problem(at_service, 401, &format!("{what} (consumer-api)")).await;
    at_edge
}

#[tokio::test]
async fn forged_tokens_and_tokens_meant_for_others_are_refused_at_the_edge_and_in_the_service() {
    let gateway = Gateway::from(Ipv4Addr::new(127, 0, 1, 1));
    let victim = consumer(&gateway, "victim").await;
    let attacker = consumer(&gateway, "attacker").await;
    top_up(&gateway, &victim.token, 5_000).await;
    let (header, claims, signature) = parts(&attacker.token);
    let (_, _, victim_signature) = parts(&victim.token);

    let mut victims_claims = claims.clone();
    victims_claims["sub"] = json!(victim.id.clone());
    victims_claims["email"] = json!(victim.email.clone());
    let mut unsigned = header.clone();
    unsigned["alg"] = json!("none");
    let mut hmac_header = header.clone();
    hmac_header["alg"] = json!("HS256");
    let mut unknown_key = header.clone();
    unknown_key["kid"] = json!("made-up-key-id");
    // The realm's public key as an HMAC secret: the classic algorithm confusion.
    let jwks: Value = reqwest::Client::new()
        .get(format!(
            "{}/realms/{}/protocol/openid-connect/certs",
            status()["connections"]["keycloak_url"]
                .as_str()
                .expect("url"),
            status()["connections"]["keycloak_realm"]
                .as_str()
                .expect("realm"),
        ))
        .send()
        .await
        .expect("Keycloak answers")
        .json()
        .await
        .expect("json");
    let public_key = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the token's key is in the realm's set")["n"]
        .as_str()
        .expect("a modulus")
        .to_string();

    let forgeries = [
        (
            assemble(&unsigned, &victims_claims, ""),
            "alg none, claiming to be the victim",
        ),
        (
            hs256(&hmac_header, &victims_claims, public_key.as_bytes()),
            "HS256 keyed with the realm's public key",
        ),
        (
            assemble(&header, &victims_claims, &signature),
            "the attacker's signature on the victim's claims",
        ),
        (
            assemble(&header, &claims, &victim_signature),
            "another token's signature",
        ),
        (
            assemble(&unknown_key, &claims, &signature),
            "a key id the realm does not have",
        ),
        (
            attacker.token[..attacker.token.len() - 10].to_string(),
            "a truncated signature",
        ),
        ("not.a.jwt".to_string(), "three parts of nothing"),
        (master_admin_token().await, "a token of another realm"),
        (
            paykit::testing::client_token("consumer-api").await,
            "a service's token, whose audience is not consumer-api",
        ),
    ];
    for (token, what) in &forgeries {
        refused_at_edge_and_service(&gateway, token, what).await;
    }
    // Not a bearer token at all, and none.
    let basic = gateway
        .client
        .get(gateway.url("api", "/v1/wallet"))
        .header("Authorization", "Basic YWRtaW46YWRtaW4=")
        .send()
        .await
        .expect("sent");
    problem(basic, 401, "basic credentials").await;
    let anonymous = gateway
        .client
        .get(gateway.url("api", "/v1/wallet"))
        .send()
        .await
        .expect("sent");
    let body = problem(anonymous, 401, "no token").await;
    assert!(body["detail"]
        .as_str()
        .is_some_and(|d| d.contains("bearer")));

    // Nothing moved: the victim still has exactly what they topped up.
    assert_eq!(balance(&gateway, &victim.token).await, (5_000, 5_000));
    assert_eq!(balance(&gateway, &attacker.token).await, (0, 0));
    assert_ledger_verifies();
}

#[tokio::test]
async fn an_expired_token_is_refused_at_the_edge_and_in_the_service() {
    let gateway = Gateway::from(Ipv4Addr::new(127, 0, 1, 2));
    let person = consumer(&gateway, "expiring").await;
    // A client of its own whose tokens live one second, removed again at once: a real token of
    // the realm, correctly signed, that expires while the test watches.
    let connections = &status()["connections"];
    let keycloak = connections["keycloak_url"]
        .as_str()
        .expect("url")
        .to_string();
    let realm = connections["keycloak_realm"]
        .as_str()
        .expect("realm")
        .to_string();
    let admin = master_admin_token().await;
    let http = reqwest::Client::new();
    let client_id = format!("hostile-{}", uuid::Uuid::new_v4().simple());
    let created = http
        .post(format!("{keycloak}/admin/realms/{realm}/clients"))
        .bearer_auth(&admin)
        .json(&json!({
            "clientId": client_id,
            "publicClient": true,
            "directAccessGrantsEnabled": true,
            "standardFlowEnabled": false,
            "attributes": { "access.token.lifespan": "1" },
            "protocolMappers": [{
                "name": "audience consumer-api",
                "protocol": "openid-connect",
                "protocolMapper": "oidc-audience-mapper",
                "config": { "included.client.audience": "consumer-api", "access.token.claim": "true" }
            }]
        }))
        .send()
        .await
        .expect("sent");
    assert_eq!(created.status(), 201);
    let location = created
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("the new client's address")
        .to_string();
    let issued: Value = http
        .post(format!(
            "{keycloak}/realms/{realm}/protocol/openid-connect/token"
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", client_id.as_str()),
            ("username", person.email.as_str()),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let removed = http
        .delete(&location)
        .bearer_auth(&admin)
        .send()
        .await
        .expect("sent");
    assert_eq!(removed.status(), 204);
    let token = issued["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("a short-lived token: {issued}"))
        .to_string();
    let (_, claims, _) = parts(&token);
    // Past `exp` and the 5 s leeway the edge and the services allow for clock skew.
    let expires_s = claims["exp"].as_i64().expect("exp");
    let now_s = chrono::Utc::now().timestamp();
    let wait_s = u64::try_from(expires_s + 7 - now_s).unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(wait_s)).await;
    let body = refused_at_edge_and_service(&gateway, &token, "an expired token").await;
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("expired")),
        "{body}"
    );
}

#[tokio::test]
async fn a_token_of_another_role_is_forbidden_by_the_service() {
    let gateway = Gateway::from(Ipv4Addr::new(127, 0, 1, 3));
    let shop = merchant(&gateway).await;
    let person = consumer(&gateway, "role").await;
    // A merchant's token carries consumer-api's audience (the CLI's client) but not its role.
    problem(
        get(&gateway, "api", "/v1/wallet", &shop).await,
        403,
        "a merchant at a wallet",
    )
    .await;
    let as_merchant = post(
        &gateway,
        "merchant",
        "/v1/payment-requests",
        Some(&person.token),
        json!({ "amount": jpy(100) }),
    )
    .await;
    problem(as_merchant, 403, "a consumer asking to be paid").await;
    let refund = post(
        &gateway,
        "merchant",
        "/v1/refunds",
        Some(&person.token),
        json!({ "payment_id": uuid::Uuid::new_v4(), "amount": jpy(100) }),
    )
    .await;
    problem(refund, 403, "a consumer refunding themselves").await;
    assert_ledger_verifies();
}

#[tokio::test]
async fn one_consumer_can_neither_read_nor_spend_another_s_money() {
    let gateway = Gateway::from(Ipv4Addr::new(127, 0, 1, 4));
    let shop = merchant(&gateway).await;
    let owner = consumer(&gateway, "owner").await;
    let thief = consumer(&gateway, "thief").await;
    top_up(&gateway, &owner.token, 3_000).await;
    let request: Value = post_json(
        &gateway,
        "merchant",
        "/v1/payment-requests",
        Some(&shop),
        json!({ "amount": jpy(1_000) }),
    )
    .await;
    let paid: Value = post_json(
        &gateway,
        "api",
        "/v1/payments",
        Some(&owner.token),
        json!({ "qr": request["payload"] }),
    )
    .await;
    let payment_id = paid["id"].as_str().expect("a payment id");
    let wallet_id = paid["wallet"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    problem(
        get(
            &gateway,
            "api",
            &format!("/v1/payments/{payment_id}"),
            &thief.token,
        )
        .await,
        404,
        "another consumer's payment",
    )
    .await;
    // Naming the owner's wallet or id as the source is not part of any request: refused whole.
    for body in [
        json!({ "to": { "email": thief.email }, "amount": jpy(500), "from": owner.id }),
        json!({ "to": { "email": thief.email }, "amount": jpy(500), "wallet_id": wallet_id }),
        json!({ "to": { "consumer_id": thief.id, "email": owner.email }, "amount": jpy(500) }),
    ] {
        let response = post(
            &gateway,
            "api",
            "/v1/transfers",
            Some(&thief.token),
            body.clone(),
        )
        .await;
        refused(response, &[400, 422], &format!("a transfer {body}")).await;
    }
    let top_up_for_other = post(
        &gateway,
        "api",
        "/v1/wallet/top-ups",
        Some(&thief.token),
        json!({ "amount": jpy(100), "wallet_id": wallet_id }),
    )
    .await;
    refused(
        top_up_for_other,
        &[400, 422],
        "a top-up naming another wallet",
    )
    .await;
    // The thief's own list has nothing of the owner's.
    let listed: Value = get(&gateway, "api", "/v1/transactions", &thief.token)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed["items"], json!([]), "{listed}");
    assert_eq!(balance(&gateway, &owner.token).await, (2_000, 2_000));
    assert_eq!(balance(&gateway, &thief.token).await, (0, 0));
    assert_ledger_verifies();
}

#[tokio::test]
async fn injection_strings_are_kept_as_data_or_refused_and_never_run() {
    let gateway = Gateway::from(Ipv4Addr::new(127, 0, 1, 5));
    let shop = merchant(&gateway).await;
    let person = consumer(&gateway, "injector").await;
    top_up(&gateway, &person.token, 1_000).await;

    // SQL in a reference is a reference: stored and shown back byte for byte.
    let reference = "x');DROP TABLE merchants;--";
    let reference = &reference[..25];
    let created = post(
        &gateway,
        "merchant",
        "/v1/payment-requests",
        Some(&shop),
        json!({ "amount": jpy(100), "reference": reference }),
    )
    .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.expect("json");
    let read: Value = get(
        &gateway,
        "merchant",
        &format!(
            "/v1/payment-requests/{}",
            created["id"].as_str().expect("id")
        ),
        &shop,
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(read["reference"], reference);

    for recipient in [
        "' OR '1'='1",
        "x@example.test' OR 1=1 --",
        "\"; DROP TABLE wallets; --",
    ] {
        let response = post(
            &gateway,
            "api",
            "/v1/transfers",
            Some(&person.token),
            json!({ "to": { "email": recipient }, "amount": jpy(100) }),
        )
        .await;
        refused(response, &[404, 422], recipient).await;
    }
    for query in [
        "?cursor=' OR 1=1 --",
        "?limit=1;DROP TABLE transactions",
        "?limit=-1",
        "?limit=100000000000000000000",
        "?cursor=%00",
    ] {
        let response = get(
            &gateway,
            "merchant",
            &format!("/v1/transactions{query}"),
            &shop,
        )
        .await;
        refused(response, &[400, 422], query).await;
    }
    // Header values a client should never send: the request is refused, nothing is stored.
    for key in ["k".repeat(300), "key\twith\ttabs".to_string()] {
        let response = gateway
            .client
            .post(gateway.url("api", "/v1/wallet/top-ups"))
            .bearer_auth(&person.token)
            .header("Idempotency-Key", key.as_str())
            .json(&json!({ "amount": jpy(100) }))
            .send()
            .await
            .expect("sent");
        refused(response, &[400, 422], &format!("Idempotency-Key {key:?}")).await;
    }
    let non_ascii = gateway
        .client
        .post(gateway.url("api", "/v1/wallet/top-ups"))
        .bearer_auth(&person.token)
        .header(
            "Idempotency-Key",
            reqwest::header::HeaderValue::from_bytes(b"caf\xe9").expect("obs-text"),
        )
        .json(&json!({ "amount": jpy(100) }))
        .send()
        .await
        .expect("sent");
    refused(non_ascii, &[400, 422], "a Latin-1 Idempotency-Key").await;
    // Another host name in Host: not served from any of the platform's hosts.
    let spoofed = gateway
        .client
        .get(gateway.url("api", "/v1/wallet"))
        .header("Host", "evil.example")
        .bearer_auth(&person.token)
        .send()
        .await
        .expect("sent");
    problem(spoofed, 404, "an unknown Host").await;

    // Everything still works, and only the top-up moved money.
    assert_eq!(balance(&gateway, &person.token).await, (1_000, 1_000));
    let paid = post(
        &gateway,
        "api",
        "/v1/payments",
        Some(&person.token),
        json!({ "qr": created["payload"] }),
    )
    .await;
    assert_eq!(paid.status(), 201);
    assert_eq!(balance(&gateway, &person.token).await, (900, 900));
    assert_ledger_verifies();
}

#[tokio::test]
async fn oversized_and_deeply_nested_bodies_are_refused_with_problems() {
    let gateway = Gateway::from(Ipv4Addr::new(127, 0, 1, 6));
    let person = consumer(&gateway, "bulky").await;
    let send = |body: Vec<u8>| {
        gateway
            .client
            .post(gateway.url("api", "/v1/wallet/top-ups"))
            .bearer_auth(&person.token)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // Two megabytes, and just over 64 KiB: over the limit of the gateway (and the services).
    let huge = format!(
        "{{\"amount\":{{\"value\":1,\"currency\":\"JPY\"}},\"pad\":\"{}\"}}",
        "x".repeat(2 << 20)
    );
    problem(
        send(huge.into_bytes()).await.expect("sent"),
        413,
        "a 2 MiB body",
    )
    .await;
    let just_over = format!(
        "{{\"amount\":{{\"value\":1,\"currency\":\"JPY\"}},\"pad\":\"{}\"}}",
        "x".repeat(64 << 10)
    );
    problem(
        send(just_over.into_bytes()).await.expect("sent"),
        413,
        "a body just over 64 KiB",
    )
    .await;
    // Nesting far past the parser's recursion limit (128), inside the size limit.
    // (Objects take 11 bytes a level here, arrays 2.)
    for (depth, object_depth) in [(200usize, 200usize), (30_000, 5_000)] {
        let nested = format!("{{\"amount\":{}1{}}}", "[".repeat(depth), "]".repeat(depth));
        refused(
            send(nested.into_bytes()).await.expect("sent"),
            &[400, 422],
            &format!("arrays {depth} deep"),
        )
        .await;
        let objects = format!(
            "{}\"x\"{}",
            "{\"amount\":".repeat(object_depth),
            "}".repeat(object_depth)
        );
        refused(
            send(objects.into_bytes()).await.expect("sent"),
            &[400, 422],
            &format!("objects {object_depth} deep"),
        )
        .await;
    }
    for body in [&b"{\"amount\":"[..], b"\xff\xfe not utf-8", b"", b"null"] {
        refused(
            send(body.to_vec()).await.expect("sent"),
            &[400, 422],
            &format!("{:?}", String::from_utf8_lossy(body)),
        )
        .await;
    }
    assert_eq!(balance(&gateway, &person.token).await, (0, 0));
    assert_ledger_verifies();
}

#[tokio::test]
async fn amounts_that_are_not_exact_positive_minor_units_are_refused() {
    let gateway = Gateway::from(Ipv4Addr::new(127, 0, 1, 7));
    let shop = merchant(&gateway).await;
    let payer = consumer(&gateway, "payer").await;
    let payee = consumer(&gateway, "payee").await;
    top_up(&gateway, &payer.token, 1_000).await;
    let bad_amounts = [
        json!({ "value": -1, "currency": "JPY" }),
        json!({ "value": 0, "currency": "JPY" }),
        json!({ "value": 1.5, "currency": "JPY" }),
        json!({ "value": 1e3, "currency": "JPY" }),
        json!({ "value": "100", "currency": "JPY" }),
        json!({ "value": null, "currency": "JPY" }),
        json!({ "value": 9_223_372_036_854_775_807i64, "currency": "JPY" }),
        json!({ "value": 18_446_744_073_709_551_615u64, "currency": "JPY" }),
        json!({ "value": 1e30, "currency": "JPY" }),
        json!({ "value": 100, "currency": "USD" }),
        json!({ "value": 100, "currency": "jpy" }),
        json!({ "value": 100, "currency": "XXX" }),
        json!({ "value": 100 }),
        json!(100),
        json!("¥100"),
    ];
    for amount in &bad_amounts {
        let top_up = post(
            &gateway,
            "api",
            "/v1/wallet/top-ups",
            Some(&payer.token),
            json!({ "amount": amount }),
        )
        .await;
        refused(top_up, &[400, 422], &format!("top-up of {amount}")).await;
        let transfer = post(
            &gateway,
            "api",
            "/v1/transfers",
            Some(&payer.token),
            json!({ "to": { "email": payee.email }, "amount": amount }),
        )
        .await;
        refused(transfer, &[400, 422], &format!("transfer of {amount}")).await;
        let request = post(
            &gateway,
            "merchant",
            "/v1/payment-requests",
            Some(&shop),
            json!({ "amount": amount }),
        )
        .await;
        refused(
            request,
            &[400, 422],
            &format!("payment request of {amount}"),
        )
        .await;
    }
    // A static QR takes the amount from the payer: the same refusals there.
    let static_qr: Value = post_json(
        &gateway,
        "merchant",
        "/v1/payment-requests",
        Some(&shop),
        json!({}),
    )
    .await;
    for amount in &bad_amounts {
        let payment = post(
            &gateway,
            "api",
            "/v1/payments",
            Some(&payer.token),
            json!({ "qr": static_qr["payload"], "amount": amount }),
        )
        .await;
        refused(payment, &[400, 422], &format!("payment of {amount}")).await;
    }
    assert_eq!(balance(&gateway, &payer.token).await, (1_000, 1_000));
    assert_eq!(balance(&gateway, &payee.token).await, (0, 0));
    assert_ledger_verifies();
}

#[tokio::test]
async fn bad_and_replayed_qr_payloads_and_payment_codes_charge_nothing_more() {
    let gateway = Gateway::from(Ipv4Addr::new(127, 0, 1, 8));
    let shop = merchant(&gateway).await;
    let person = consumer(&gateway, "replayer").await;
    top_up(&gateway, &person.token, 2_000).await;
    let request: Value = post_json(
        &gateway,
        "merchant",
        "/v1/payment-requests",
        Some(&shop),
        json!({ "amount": jpy(500) }),
    )
    .await;
    let payload = request["payload"].as_str().expect("a payload").to_string();
    // The checksum is the last four characters: change one.
    let mut tampered = payload.clone();
    let last = tampered.pop().expect("a character");
    tampered.push(if last == '0' { '1' } else { '0' });
    let not_emv = String::from("https://evil.example/pay?amount=1");
    for (qr, status) in [
        (tampered, 400),
        (payload[..payload.len() / 2].to_string(), 400),
        (not_emv, 400),
        (String::new(), 400),
        ("0".repeat(10_000), 400),
    ] {
        let response = post(
            &gateway,
            "api",
            "/v1/payments",
            Some(&person.token),
            json!({ "qr": qr }),
        )
        .await;
        refused(response, &[status], &format!("{qr:.40}")).await;
    }
    // Paid once; replayed with its key (the same answer); paid again with another key (409).
    let key = uuid::Uuid::new_v4().to_string();
    let pay = |key: String| {
        gateway
            .client
            .post(gateway.url("api", "/v1/payments"))
            .bearer_auth(&person.token)
            .header("Idempotency-Key", key)
            .json(&json!({ "qr": payload }))
            .send()
    };
    let first = pay(key.clone()).await.expect("sent");
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("json");
    let replay = pay(key.clone()).await.expect("sent");
    assert_eq!(replay.status(), 201);
    assert_eq!(
        replay
            .headers()
            .get("idempotency-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let replay: Value = replay.json().await.expect("json");
    assert_eq!(replay["id"], first["id"]);
    problem(
        pay(uuid::Uuid::new_v4().to_string()).await.expect("sent"),
        409,
        "a paid QR, again",
    )
    .await;

    // Payment codes: made up (404), used twice (410), charged by two tills at once (one wins).
    let made_up = post(
        &gateway,
        "merchant",
        "/v1/charges",
        Some(&shop),
        json!({ "payment_code": "289999999999999999", "amount": jpy(100) }),
    )
    .await;
    refused(made_up, &[404], "a made-up payment code").await;
    let code: Value = post_json(
        &gateway,
        "api",
        "/v1/payment-codes",
        Some(&person.token),
        json!({}),
    )
    .await;
    let code = code["code"].as_str().expect("a code").to_string();
    let charges = futures_util::future::join_all((0..4).map(|_| {
        post(
            &gateway,
            "merchant",
            "/v1/charges",
            Some(&shop),
            json!({ "payment_code": code, "amount": jpy(300) }),
        )
    }))
    .await;
    let statuses: Vec<u16> = charges.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 410 || *s == 409),
        "{statuses:?}"
    );
    let again = post(
        &gateway,
        "merchant",
        "/v1/charges",
        Some(&shop),
        json!({ "payment_code": code, "amount": jpy(300) }),
    )
    .await;
    problem(again, 410, "a used payment code").await;
    // 2000 - 500 (the QR, once) - 300 (the code, once).
    assert_eq!(balance(&gateway, &person.token).await, (1_200, 1_200));
    assert_ledger_verifies();
}

#[tokio::test]
async fn parallel_spends_of_one_balance_never_overdraw_it() {
    let gateway = Gateway::from(Ipv4Addr::new(127, 0, 1, 9));
    let spender = consumer(&gateway, "spender").await;
    let friend = consumer(&gateway, "friend").await;
    top_up(&gateway, &spender.token, 1_000).await;
    // Ten transfers of 300 at once, each with its own key: three fit.
    let sent = futures_util::future::join_all((0..10).map(|_| {
        post(
            &gateway,
            "api",
            "/v1/transfers",
            Some(&spender.token),
            json!({ "to": { "email": friend.email }, "amount": jpy(300) }),
        )
    }))
    .await;
    let statuses: Vec<u16> = sent.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        3,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 402),
        "{statuses:?}"
    );
    assert_eq!(balance(&gateway, &spender.token).await, (100, 100));
    assert_eq!(balance(&gateway, &friend.token).await, (900, 900));
    assert_ledger_verifies();
}
