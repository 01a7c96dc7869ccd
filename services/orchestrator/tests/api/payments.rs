//! The orchestrator's HTTP API, black-box, against real PostgreSQL and Keycloak tokens.

use crate::helpers::{spawn_app, TestApp};
use serde_json::{json, Value};
use uuid::Uuid;

fn money(value: i64, currency: &str) -> Value {
    json!({ "value": value, "currency": currency })
}

async fn funded_pair(app: &TestApp, balance: i64) -> (Uuid, Uuid) {
    let wallet = app.open("wallet", "JPY").await;
    let merchant = app.open("merchant", "JPY").await;
    if balance > 0 {
        assert_eq!(app.top_up(wallet, balance, "JPY").await.status(), 201);
    }
    (wallet, merchant)
}

fn payment(wallet: Uuid, merchant: Uuid, value: i64) -> Value {
    json!({ "wallet_account_id": wallet, "merchant_account_id": merchant, "amount": money(value, "JPY"), "fee_bps": 250 })
}

#[tokio::test]
async fn a_payment_moves_the_money_charges_the_fee_to_the_merchant_and_answers_the_wallet() {
    let app = spawn_app().await;
    let (wallet, merchant) = funded_pair(&app, 10_000).await;
    let response = app
        .post(
            "/v1/payments",
            Some("pay-1"),
            &payment(wallet, merchant, 3_000),
        )
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["state"], "completed");
    assert_eq!(body["amount"], money(3_000, "JPY"));
    assert_eq!(body["fee"], money(75, "JPY"));
    assert_eq!(
        body["wallet_balance"]["available"], 7_000,
        "the answer carries the payer's wallet after the payment"
    );
    assert_eq!(app.available(wallet).await, 7_000);
    assert_eq!(app.posted(merchant).await, 2_925);
    let read: Value = app
        .get(&format!(
            "/v1/payments/{}",
            body["id"].as_str().expect("id")
        ))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(read["state"], "completed");
    assert_eq!(read["captured_amount"], 3_000);
    app.assert_ledger_verifies().await;
}

#[tokio::test]
async fn a_replayed_payment_is_not_charged_twice() {
    let app = spawn_app().await;
    let (wallet, merchant) = funded_pair(&app, 5_000).await;
    let first = app
        .post(
            "/v1/payments",
            Some("same-key"),
            &payment(wallet, merchant, 1_000),
        )
        .await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotency-replayed").is_none());
    let first: Value = first.json().await.expect("json");
    let second = app
        .post(
            "/v1/payments",
            Some("same-key"),
            &payment(wallet, merchant, 1_000),
        )
        .await;
    assert_eq!(second.status(), 201);
    assert_eq!(second.headers()["idempotency-replayed"], "true");
    let second: Value = second.json().await.expect("json");
    assert_eq!(first["id"], second["id"]);
    assert_eq!(app.available(wallet).await, 4_000, "charged once");
    app.assert_ledger_verifies().await;
}

#[tokio::test]
async fn a_reused_idempotency_key_with_a_different_body_is_refused() {
    let app = spawn_app().await;
    let (wallet, merchant) = funded_pair(&app, 5_000).await;
    assert_eq!(
        app.post("/v1/payments", Some("k"), &payment(wallet, merchant, 1_000))
            .await
            .status(),
        201
    );
    let response = app
        .post("/v1/payments", Some("k"), &payment(wallet, merchant, 2_000))
        .await;
    assert_eq!(response.status(), 422);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.expect("json");
    assert_eq!(
        problem["type"],
        "https://paytool.local.test/problems/idempotency-key-reused"
    );
    assert_eq!(app.available(wallet).await, 4_000);
}

#[tokio::test]
async fn money_moving_requests_without_an_idempotency_key_are_refused() {
    let app = spawn_app().await;
    let (wallet, merchant) = funded_pair(&app, 5_000).await;
    let response = app
        .post("/v1/payments", None, &payment(wallet, merchant, 1_000))
        .await;
    assert_eq!(response.status(), 400);
    let problem: Value = response.json().await.expect("json");
    assert_eq!(
        problem["type"],
        "https://paytool.local.test/problems/idempotency-key-missing"
    );
    assert_eq!(app.count("sagas").await, 1, "only the top-up");
}

#[tokio::test]
async fn a_payment_above_the_balance_is_declined_with_402_and_moves_nothing() {
    let app = spawn_app().await;
    let (wallet, merchant) = funded_pair(&app, 500).await;
    let response = app
        .post(
            "/v1/payments",
            Some("too-much"),
            &payment(wallet, merchant, 501),
        )
        .await;
    assert_eq!(response.status(), 402);
    let problem: Value = response.json().await.expect("json");
    assert_eq!(
        problem["type"],
        "https://paytool.local.test/problems/insufficient-funds"
    );
    assert_eq!(problem["state"], "declined");
    // The decline is remembered: a retry with the key gets the same answer.
    let again = app
        .post(
            "/v1/payments",
            Some("too-much"),
            &payment(wallet, merchant, 501),
        )
        .await;
    assert_eq!(again.status(), 402);
    assert_eq!(app.available(wallet).await, 500);
    assert_eq!(app.posted(merchant).await, 0);
    app.assert_ledger_verifies().await;
}

#[tokio::test]
async fn refunds_are_partial_or_full_and_never_above_the_capture() {
    let app = spawn_app().await;
    let (wallet, merchant) = funded_pair(&app, 10_000).await;
    let paid: Value = app
        .post("/v1/payments", Some("p"), &payment(wallet, merchant, 4_000))
        .await
        .json()
        .await
        .expect("json");
    let payment_id = paid["id"].as_str().expect("id");
    let refund = |key: &'static str, value: i64| {
        let app = &app;
        async move {
            app.post(
                "/v1/refunds",
                Some(key),
                &json!({ "payment_id": payment_id, "amount": money(value, "JPY") }),
            )
            .await
        }
    };
    assert_eq!(refund("r1", 1_500).await.status(), 201);
    assert_eq!(app.available(wallet).await, 7_500);
    let over = refund("r2", 2_501).await;
    assert_eq!(over.status(), 422);
    let problem: Value = over.json().await.expect("json");
    assert_eq!(
        problem["type"],
        "https://paytool.local.test/problems/refund-exceeds-capture"
    );
    assert_eq!(refund("r3", 2_500).await.status(), 201);
    assert_eq!(app.available(wallet).await, 10_000);
    assert_eq!(
        refund("r4", 1).await.status(),
        422,
        "nothing left to refund"
    );
    let read: Value = app
        .get(&format!("/v1/payments/{payment_id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(read["refunded_amount"], 4_000);
    app.assert_ledger_verifies().await;
}

#[tokio::test]
async fn a_person_to_person_transfer_moves_money_between_wallets() {
    let app = spawn_app().await;
    let alice = app.open("wallet", "JPY").await;
    let bob = app.open("wallet", "JPY").await;
    assert_eq!(app.top_up(alice, 2_000, "JPY").await.status(), 201);
    let send =
        json!({ "from_account_id": alice, "to_account_id": bob, "amount": money(1_200, "JPY") });
    assert_eq!(
        app.post("/v1/transfers", Some("s1"), &send).await.status(),
        201
    );
    assert_eq!(app.available(alice).await, 800);
    assert_eq!(app.available(bob).await, 1_200);
    let overdraw =
        json!({ "from_account_id": alice, "to_account_id": bob, "amount": money(801, "JPY") });
    assert_eq!(
        app.post("/v1/transfers", Some("s2"), &overdraw)
            .await
            .status(),
        402
    );
    app.assert_ledger_verifies().await;
}

#[tokio::test]
async fn bad_input_gets_a_stable_problem_type_and_writes_nothing() {
    let app = spawn_app().await;
    let (wallet, merchant) = funded_pair(&app, 1_000).await;
    let usd_merchant = app.open("merchant", "USD").await;
    let sagas = app.count("sagas").await;
    let transfers = app.count("transfers").await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            payment(Uuid::new_v4(), merchant, 100),
            404,
            "account-not-found",
        ),
        (
            payment(wallet, Uuid::new_v4(), 100),
            404,
            "account-not-found",
        ),
        (payment(wallet, usd_merchant, 100), 422, "currency-mismatch"),
        (payment(merchant, wallet, 100), 422, "wrong-account-kind"),
        (payment(wallet, merchant, 0), 422, "validation"),
        (payment(wallet, merchant, -100), 422, "validation"),
        (
            payment(wallet, merchant, 1_000_000_000_000_001),
            422,
            "validation",
        ),
        (
            json!({ "wallet_account_id": wallet, "merchant_account_id": merchant, "amount": { "value": 10.5, "currency": "JPY" } }),
            400,
            "malformed-request",
        ),
        (
            json!({ "wallet_account_id": wallet, "merchant_account_id": merchant, "amount": { "value": 9223372036854775808u64, "currency": "JPY" } }),
            400,
            "malformed-request",
        ),
        (
            json!({ "wallet_account_id": wallet, "merchant_account_id": merchant, "amount": { "value": 100, "currency": "XXX" } }),
            422,
            "unknown-currency",
        ),
        (
            json!({ "wallet_account_id": wallet, "merchant_account_id": merchant, "amount": { "value": 100, "currency": "jpy" } }),
            400,
            "malformed-request",
        ),
        (
            json!({ "wallet_account_id": "not-a-uuid", "merchant_account_id": merchant, "amount": money(100, "JPY") }),
            400,
            "malformed-request",
        ),
        (
            json!({ "wallet_account_id": wallet, "merchant_account_id": merchant, "amount": money(100, "JPY"), "fee_bps": 1_001 }),
            422,
            "validation",
        ),
    ];
    for (index, (body, status, type_slug)) in cases.into_iter().enumerate() {
        let response = app
            .post("/v1/payments", Some(&format!("bad-{index}")), &body)
            .await;
        assert_eq!(response.status(), status, "case {index}: {body}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "case {index}"
        );
        let problem: Value = response.json().await.expect("json");
        assert_eq!(
            problem["type"],
            format!("https://paytool.local.test/problems/{type_slug}"),
            "case {index}: {problem}"
        );
    }
    let refund = json!({ "payment_id": Uuid::new_v4(), "amount": money(1, "JPY") });
    assert_eq!(
        app.post("/v1/refunds", Some("bad-refund"), &refund)
            .await
            .status(),
        404
    );
    assert_eq!(app.count("sagas").await, sagas, "no saga was written");
    assert_eq!(
        app.count("transfers").await,
        transfers,
        "no transfer was written"
    );
    assert_eq!(app.available(wallet).await, 1_000);
}

#[tokio::test]
async fn callers_need_a_valid_token_with_the_right_role() {
    let app = spawn_app().await;
    let (wallet, merchant) = funded_pair(&app, 1_000).await;
    let url = format!("{}/v1/payments", app.address);
    let anonymous = app
        .client
        .post(&url)
        .header("Idempotency-Key", "a")
        .json(&payment(wallet, merchant, 1))
        .send()
        .await
        .expect("sent");
    assert_eq!(anonymous.status(), 401);
    let reader = app
        .client
        .post(&url)
        .bearer_auth(&app.reader)
        .header("Idempotency-Key", "b")
        .json(&payment(wallet, merchant, 1))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        reader.status(),
        403,
        "ledger-read does not allow moving money"
    );
    // An unsigned token claiming everything.
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let forged = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(
            r#"{"sub":"x","azp":"consumer-api","aud":"orchestrator","exp":9999999999,"resource_access":{"orchestrator":{"roles":["ledger-write"]}}}"#
        )
    );
    let forged = app
        .client
        .post(&url)
        .bearer_auth(forged)
        .header("Idempotency-Key", "c")
        .json(&payment(wallet, merchant, 1))
        .send()
        .await
        .expect("sent");
    assert_eq!(forged.status(), 401);
    // A token signed by Keycloak with its signature tampered with.
    let mut tampered = app.writer.clone();
    tampered.pop();
    tampered.push(if app.writer.ends_with('A') { 'B' } else { 'A' });
    let tampered = app
        .client
        .post(&url)
        .bearer_auth(tampered)
        .header("Idempotency-Key", "d")
        .json(&payment(wallet, merchant, 1))
        .send()
        .await
        .expect("sent");
    assert_eq!(tampered.status(), 401);
    assert_eq!(app.available(wallet).await, 1_000);
}

#[tokio::test]
async fn account_history_pages_newest_first_without_gaps_or_repeats() {
    let app = spawn_app().await;
    let wallet = app.open("wallet", "JPY").await;
    for value in 1..=5 {
        assert_eq!(app.top_up(wallet, value, "JPY").await.status(), 201);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let query = cursor
            .as_ref()
            .map(|c| format!("&cursor={c}"))
            .unwrap_or_default();
        let page: Value = app
            .get(&format!("/v1/accounts/{wallet}/transfers?limit=2{query}"))
            .await
            .json()
            .await
            .expect("json");
        seen.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|t| t["amount"].as_i64().expect("amount")),
        );
        cursor = page["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, vec![5, 4, 3, 2, 1]);
    assert_eq!(
        app.get(&format!("/v1/accounts/{wallet}/transfers?limit=101"))
            .await
            .status(),
        422
    );
}

#[tokio::test]
async fn the_verify_endpoint_reports_every_invariant() {
    let app = spawn_app().await;
    let (wallet, merchant) = funded_pair(&app, 1_000).await;
    assert_eq!(
        app.post("/v1/payments", Some("v"), &payment(wallet, merchant, 400))
            .await
            .status(),
        201
    );
    let report: Value = app
        .get("/internal/ledger/verify")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(report["ok"], true, "{report}");
    let names: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "debits_equal_credits",
            "no_wallet_below_zero",
            "balances_equal_transfers",
            "transfers_applied_once",
            "open_reservations_listed",
            "refunds_within_captures"
        ]
    );
    // Break the ledger behind its back: verify must notice.
    sqlx::query(
        "UPDATE account_balances SET credits_posted = credits_posted + 1 WHERE account_id = $1",
    )
    .bind(merchant)
    .execute(&app.pool)
    .await
    .expect("tamper");
    let report: Value = app
        .get("/internal/ledger/verify")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(report["ok"], false);
    let failed: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["ok"] == false)
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(failed, ["debits_equal_credits", "balances_equal_transfers"]);
}
