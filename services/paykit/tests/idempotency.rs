//! The idempotency layer against a real PostgreSQL and real Keycloak tokens.

use axum::body::Bytes;
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use axum::routing::post;
use axum::Extension;
use axum::{Json, Router};
use paykit::auth::Verifier;
use paykit::idempotency::{idempotent, Claim, Store};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
struct TestState {
    verifier: Verifier,
    store: Store,
    store_pool: sqlx::PgPool,
    calls: Arc<AtomicU64>,
}

impl FromRef<TestState> for Verifier {
    fn from_ref(state: &TestState) -> Self {
        state.verifier.clone()
    }
}

impl FromRef<TestState> for Store {
    fn from_ref(state: &TestState) -> Self {
        state.store.clone()
    }
}

async fn charge(
    State(state): State<TestState>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let call = state.calls.fetch_add(1, Ordering::SeqCst) + 1;
    if let Some(ms) = body["sleep_ms"].as_u64() {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if body["fail"] == true {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "call": call })),
        );
    }
    (
        StatusCode::CREATED,
        Json(json!({ "call": call, "amount": body["amount"] })),
    )
}

/// A handler that writes in a transaction of its own and stores its answer in it.
async fn record(
    State(state): State<TestState>,
    Extension(claim): Extension<Claim>,
    Json(body): Json<Value>,
) -> Response {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let mut tx = state.store_pool.begin().await.expect("begin");
    let id: i64 = sqlx::query_scalar("INSERT INTO recorded (amount) VALUES ($1) RETURNING id")
        .bind(body["amount"].as_i64())
        .fetch_one(&mut *tx)
        .await
        .expect("recorded");
    let answer = Bytes::from(
        serde_json::to_vec(&json!({ "recorded": id, "amount": body["amount"] })).expect("json"),
    );
    claim
        .commit_with_answer(tx, StatusCode::CREATED, answer)
        .await
        .expect("committed")
}

struct Harness {
    address: String,
    client: reqwest::Client,
    calls: Arc<AtomicU64>,
    pool: sqlx::PgPool,
    token: String,
}

async fn harness() -> Harness {
    let pool = paykit::testing::paykit_pool().await;
    let store = Store::new(pool.clone());
    let calls = Arc::new(AtomicU64::new(0));
    let state = TestState {
        verifier: Verifier::new(paykit::testing::auth_settings("orchestrator")).expect("verifier"),
        store,
        store_pool: pool.clone(),
        calls: calls.clone(),
    };
    sqlx::query("CREATE TABLE IF NOT EXISTS recorded (id bigserial PRIMARY KEY, amount bigint)")
        .execute(&pool)
        .await
        .expect("a table to write in");
    let router = Router::new()
        .route("/v1/charges", post(charge))
        .route("/v1/recorded", post(record))
        .layer(from_fn_with_state(state.clone(), idempotent::<TestState>))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    Harness {
        address,
        client: reqwest::Client::new(),
        calls,
        pool,
        token: paykit::testing::client_token("consumer-api").await,
    }
}

impl Harness {
    async fn post(&self, token: &str, key: Option<&str>, body: Value) -> reqwest::Response {
        self.post_to("/v1/charges", token, key, body).await
    }

    async fn post_to(
        &self,
        path: &str,
        token: &str,
        key: Option<&str>,
        body: Value,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}{path}", self.address))
            .bearer_auth(token)
            .json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("sent")
    }
}

#[tokio::test]
async fn a_replayed_request_gets_the_stored_answer_and_runs_once() {
    let h = harness().await;
    let first = h.post(&h.token, Some("k1"), json!({ "amount": 100 })).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotency-replayed").is_none());
    let first: Value = first.json().await.expect("json");
    let second = h.post(&h.token, Some("k1"), json!({ "amount": 100 })).await;
    assert_eq!(second.status(), 201);
    assert_eq!(second.headers()["idempotency-replayed"], "true");
    assert_eq!(second.headers()["content-type"], "application/json");
    assert_eq!(second.json::<Value>().await.expect("json"), first);
    assert_eq!(h.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_answer_stored_in_the_handlers_own_commit_is_replayed_and_its_write_made_once() {
    let h = harness().await;
    let first = h
        .post_to("/v1/recorded", &h.token, Some("r1"), json!({ "amount": 7 }))
        .await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("json");
    let again = h
        .post_to("/v1/recorded", &h.token, Some("r1"), json!({ "amount": 7 }))
        .await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    assert_eq!(again.headers()["content-type"], "application/json");
    assert_eq!(again.json::<Value>().await.expect("json"), first);
    assert_eq!(h.calls.load(Ordering::SeqCst), 1, "handled once");
    // One commit: the handler's row and the key's answer were written by one transaction.
    let (rows, same_transaction): (i64, bool) = sqlx::query_as(
        "SELECT count(*), bool_and(r.xmin = k.xmin) FROM recorded r, idempotency_keys k
         WHERE k.key = 'r1'",
    )
    .fetch_one(&h.pool)
    .await
    .expect("rows");
    assert_eq!(rows, 1, "written once");
    assert!(
        same_transaction,
        "the answer and the write committed together"
    );
    let other = h
        .post_to("/v1/recorded", &h.token, Some("r1"), json!({ "amount": 8 }))
        .await;
    assert_eq!(other.status(), 422);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused() {
    let h = harness().await;
    assert_eq!(
        h.post(&h.token, Some("k"), json!({ "amount": 100 }))
            .await
            .status(),
        201
    );
    let other = h.post(&h.token, Some("k"), json!({ "amount": 101 })).await;
    assert_eq!(other.status(), 422);
    assert_eq!(
        paykit::testing::problem_type(other).await,
        "idempotency-key-reused"
    );
    assert_eq!(h.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_request_without_a_key_is_refused_before_it_runs() {
    let h = harness().await;
    let response = h.post(&h.token, None, json!({ "amount": 100 })).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        paykit::testing::problem_type(response).await,
        "idempotency-key-missing"
    );
    let anonymous = h
        .client
        .post(format!("{}/v1/charges", h.address))
        .header("Idempotency-Key", "x")
        .json(&json!({}))
        .send()
        .await
        .expect("sent");
    assert_eq!(anonymous.status(), 401);
    assert_eq!(h.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn keys_that_are_not_printable_ascii_or_too_long_are_refused_before_the_request_runs() {
    let h = harness().await;
    let too_long = "k".repeat(256);
    for key in [
        "tab\tinside".as_bytes(),
        b"caf\xe9",
        too_long.as_bytes(),
        b"   ",
    ] {
        let response = h
            .client
            .post(format!("{}/v1/charges", h.address))
            .bearer_auth(&h.token)
            .header(
                "Idempotency-Key",
                reqwest::header::HeaderValue::from_bytes(key).expect("a header value"),
            )
            .json(&json!({ "amount": 100 }))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 400, "{key:?}");
        assert_eq!(
            paykit::testing::problem_type(response).await,
            "idempotency-key-invalid"
        );
    }
    assert_eq!(h.calls.load(Ordering::SeqCst), 0);
    // Spaces inside a key, and 255 characters, are fine.
    let longest = "k".repeat(255);
    for key in ["order 42 / try 1", longest.as_str()] {
        let response = h.post(&h.token, Some(key), json!({ "amount": 100 })).await;
        assert_eq!(response.status(), 201, "{key}");
    }
}

#[tokio::test]
async fn a_second_request_while_the_first_is_in_flight_gets_409() {
    let h = harness().await;
    let slow = h.post(
        &h.token,
        Some("slow"),
        json!({ "amount": 5, "sleep_ms": 800 }),
    );
    let second = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        h.post(
            &h.token,
            Some("slow"),
            json!({ "amount": 5, "sleep_ms": 800 }),
        )
        .await
    };
    let (slow, second) = tokio::join!(slow, second);
    assert_eq!(slow.status(), 201);
    assert_eq!(second.status(), 409);
    assert_eq!(
        paykit::testing::problem_type(second).await,
        "idempotency-key-in-flight"
    );
    assert_eq!(h.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_server_error_is_not_stored_so_the_retry_runs_again() {
    let h = harness().await;
    assert_eq!(
        h.post(&h.token, Some("flaky"), json!({ "fail": true }))
            .await
            .status(),
        500
    );
    assert_eq!(
        h.post(&h.token, Some("flaky"), json!({ "fail": true }))
            .await
            .status(),
        500
    );
    assert_eq!(h.calls.load(Ordering::SeqCst), 2, "each retry ran");
}

#[tokio::test]
async fn keys_belong_to_their_caller() {
    let h = harness().await;
    let other_caller = paykit::testing::client_token("merchant-api").await;
    assert_eq!(
        h.post(&h.token, Some("shared"), json!({ "amount": 1 }))
            .await
            .status(),
        201
    );
    let other = h
        .post(&other_caller, Some("shared"), json!({ "amount": 2 }))
        .await;
    assert_eq!(other.status(), 201, "another caller's key does not collide");
    assert!(other.headers().get("idempotency-replayed").is_none());
    assert_eq!(h.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn keys_are_kept_a_day_and_purged_after() {
    let h = harness().await;
    assert_eq!(
        h.post(&h.token, Some("old"), json!({ "amount": 1 }))
            .await
            .status(),
        201
    );
    assert_eq!(
        h.post(&h.token, Some("new"), json!({ "amount": 1 }))
            .await
            .status(),
        201
    );
    sqlx::query(
        "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'old'",
    )
    .execute(&h.pool)
    .await
    .expect("age");
    let store = Store::new(h.pool.clone());
    assert_eq!(store.purge_expired().await.expect("purge"), 1);
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE key = 'new'")
        .fetch_one(&h.pool)
        .await
        .expect("count");
    assert_eq!(kept, 1);
}
