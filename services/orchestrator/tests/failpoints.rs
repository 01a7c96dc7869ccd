//! The admin endpoint of the failpoints (paykit::failpoints), black-box: only the realm role
//! `admin` sets them, only what cannot block the runtime is taken, and an error point on a saga
//! step holds a payment until it is turned off, with the ledger balanced throughout.
//!
//! A separate test binary: the `fail` crate's registry is one per process, so a point set here
//! would reach the other binaries' services if they shared this process. The tests here take
//! turns for the same reason.
#![cfg(feature = "failpoints")]

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use helpers::{spawn_app, TestApp};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const STEP: &str = "orchestrator.saga.before-step";

async fn operator() -> String {
    paykit::testing::client_token("paytool-operator").await
}

async fn points(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .get(format!("{}/admin/failpoints", app.address))
        .bearer_auth(token)
        .send()
        .await
        .expect("answered")
}

async fn set(app: &TestApp, token: &str, name: &str, actions: &str) -> reqwest::Response {
    app.client
        .put(format!("{}/admin/failpoints/{name}", app.address))
        .bearer_auth(token)
        .json(&json!({ "actions": actions }))
        .send()
        .await
        .expect("answered")
}

/// Checked against services/contracts/orchestrator.yaml on the way.
async fn checked(method: &str, template: &str, response: reqwest::Response) -> (u16, Value) {
    paykit::testing::Contract::load("orchestrator")
        .check_response(method, template, response)
        .await
}

async fn active(app: &TestApp, token: &str) -> Vec<String> {
    let (_, list) = checked("get", "/admin/failpoints", points(app, token).await).await;
    list.as_array()
        .expect("a list")
        .iter()
        .filter(|p| !p["actions"].is_null())
        .map(|p| p["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn failpoints_answer_only_a_token_with_the_admin_role() {
    let _turn = TURN.lock().await;
    let app = spawn_app().await;
    let anonymous = app
        .client
        .get(format!("{}/admin/failpoints", app.address))
        .send()
        .await
        .expect("answered");
    assert_eq!(anonymous.status(), 401);
    let writer = points(&app, &app.writer).await;
    assert_eq!(writer.headers()["content-type"], "application/problem+json");
    assert_eq!(checked("get", "/admin/failpoints", writer).await.0, 403);
    let refused = set(&app, &app.writer, STEP, "return").await;
    assert_eq!(
        checked("put", "/admin/failpoints/{name}", refused).await.0,
        403
    );
    let operator = operator().await;
    let (status, listed) = checked("get", "/admin/failpoints", points(&app, &operator).await).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = listed
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(names.contains(&STEP), "{names:?}");
    assert!(names.contains(&"paykit.request.delay"), "{names:?}");
    assert!(active(&app, &operator).await.is_empty(), "nothing was set");
}

#[tokio::test]
async fn an_unknown_failpoint_or_an_action_that_would_block_is_refused_and_nothing_is_set() {
    let _turn = TURN.lock().await;
    let app = spawn_app().await;
    let operator = operator().await;
    let unknown = set(&app, &operator, "consumer-api.nothing", "return").await;
    let (status, problem) = checked("put", "/admin/failpoints/{name}", unknown).await;
    assert_eq!(status, 404);
    assert_eq!(
        problem["type"],
        format!("{}failpoint-unknown", paykit::problem::TYPE_BASE)
    );
    for actions in ["sleep(100)", "pause", "panic", "return(", "150%return"] {
        let refused = set(&app, &operator, STEP, actions).await;
        let (status, _) = checked("put", "/admin/failpoints/{name}", refused).await;
        assert_eq!(status, 422, "{actions}");
    }
    let no_delay = set(&app, &operator, "paykit.request.delay", "return").await;
    assert_eq!(
        no_delay.status(),
        422,
        "a delay point needs its milliseconds"
    );
    assert!(active(&app, &operator).await.is_empty());
}

#[tokio::test]
async fn a_saga_step_failpoint_holds_a_payment_until_it_is_off_and_the_ledger_balances_throughout()
{
    let _turn = TURN.lock().await;
    let app = spawn_app().await;
    let operator = operator().await;
    let wallet = app.open("wallet", "JPY").await;
    let merchant = app.open("merchant", "JPY").await;
    assert_eq!(app.top_up(wallet, 10_000, "JPY").await.status(), 201);

    let (status, point) = checked(
        "put",
        "/admin/failpoints/{name}",
        set(&app, &operator, STEP, "return").await,
    )
    .await;
    assert_eq!((status, &point["actions"]), (200, &json!("return")));
    assert_eq!(active(&app, &operator).await, vec![STEP.to_string()]);
    let held = app
        .post(
            "/v1/payments",
            Some("held-1"),
            &json!({ "wallet_account_id": wallet, "merchant_account_id": merchant,
                     "amount": { "value": 3_000, "currency": "JPY" }, "fee_bps": 250 }),
        )
        .await;
    assert_eq!(held.status(), 201);
    let held: Value = held.json().await.expect("json");
    assert_ne!(held["state"], "completed", "{held}");
    assert_eq!(app.available(wallet).await, 10_000, "nothing moved yet");
    app.assert_ledger_verifies().await;

    let off = app
        .client
        .delete(format!("{}/admin/failpoints/{STEP}", app.address))
        .bearer_auth(&operator)
        .send()
        .await
        .expect("answered");
    assert_eq!(off.status(), 204);
    assert!(active(&app, &operator).await.is_empty());
    // The recovery worker takes the saga up again once its backoff has passed.
    let id = held["id"].as_str().expect("id");
    let deadline = Instant::now() + Duration::from_secs(60);
    let state = loop {
        let read: Value = app
            .get(&format!("/v1/payments/{id}"))
            .await
            .json()
            .await
            .expect("json");
        if read["state"] == "completed" || Instant::now() > deadline {
            break read["state"].clone();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(state, "completed");
    assert_eq!(app.available(wallet).await, 7_000);
    app.assert_ledger_verifies().await;
}
