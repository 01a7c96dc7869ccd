//! Sending money between consumers and the transaction list, against a real orchestrator.

use crate::helpers::{spawn_app, unique_email, TestApp};
use paykit::testing::problem_type;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";

async fn consumer(app: &TestApp) -> (String, String, Value) {
    let email = unique_email();
    let registered: Value = app
        .register(&email, PASSWORD)
        .await
        .json()
        .await
        .expect("json");
    let token = app.login(&email, PASSWORD).await;
    (email, token, registered)
}

async fn available(app: &TestApp, token: &str) -> i64 {
    app.wallet(token).await["available"]["value"]
        .as_i64()
        .expect("value")
}

fn jpy(value: i64) -> Value {
    json!({ "value": value, "currency": "JPY" })
}

#[tokio::test]
async fn money_sent_by_email_arrives_once_and_never_overdraws() {
    let app = spawn_app().await;
    let (_, alice, _) = consumer(&app).await;
    let (bob_email, bob, bob_registered) = consumer(&app).await;
    assert_eq!(
        app.post_with_key(
            &alice,
            "/v1/wallet/top-ups",
            "t",
            json!({ "amount": jpy(3_000) })
        )
        .await
        .status(),
        201
    );

    let send = json!({ "to": { "email": bob_email.to_uppercase() }, "amount": jpy(1_200) });
    let sent = app
        .post_with_key(&alice, "/v1/transfers", "s1", send.clone())
        .await;
    assert_eq!(sent.status(), 201);
    let sent: Value = sent.json().await.expect("json");
    assert_eq!(sent["to"]["consumer_id"], bob_registered["id"]);
    assert_eq!(
        app.post_with_key(&alice, "/v1/transfers", "s1", send)
            .await
            .headers()["idempotency-replayed"],
        "true"
    );
    assert_eq!(available(&app, &alice).await, 1_800);
    assert_eq!(available(&app, &bob).await, 1_200, "sent once");

    let by_id = json!({ "to": { "consumer_id": bob_registered["id"] }, "amount": jpy(1_801) });
    let overdraw = app
        .post_with_key(&alice, "/v1/transfers", "s2", by_id)
        .await;
    assert_eq!(overdraw.status(), 402);
    assert_eq!(problem_type(overdraw).await, "insufficient-funds");
    assert_eq!(available(&app, &alice).await, 1_800);
}

#[tokio::test]
async fn transfers_to_nobody_or_to_oneself_are_refused() {
    let app = spawn_app().await;
    let (alice_email, alice, _) = consumer(&app).await;
    assert_eq!(
        app.post_with_key(
            &alice,
            "/v1/wallet/top-ups",
            "t",
            json!({ "amount": jpy(100) })
        )
        .await
        .status(),
        201
    );
    let nobody = app
        .post_with_key(
            &alice,
            "/v1/transfers",
            "a",
            json!({ "to": { "email": unique_email() }, "amount": jpy(1) }),
        )
        .await;
    assert_eq!(nobody.status(), 404);
    assert_eq!(problem_type(nobody).await, "recipient-not-found");
    let myself = app
        .post_with_key(
            &alice,
            "/v1/transfers",
            "b",
            json!({ "to": { "email": alice_email }, "amount": jpy(1) }),
        )
        .await;
    assert_eq!(myself.status(), 422);
    let usd = app.post_with_key(&alice,
        "/v1/transfers",
        "c",
        json!({ "to": { "email": unique_email() }, "amount": { "value": 1, "currency": "USD" } }),
    )
    .await;
    assert_eq!(usd.status(), 404, "the recipient is checked first");
    // Found by scripts/fuzz-apis.sh: a NUL in the address was a 500 (PostgreSQL text has no NUL).
    let nul = app
        .post_with_key(
            &alice,
            "/v1/transfers",
            "e",
            json!({ "to": { "email": "b\u{0}b@example.test" }, "amount": jpy(1) }),
        )
        .await;
    assert_eq!(nul.status(), 404);
    assert_eq!(problem_type(nul).await, "recipient-not-found");
    let negative = app
        .post_with_key(
            &alice,
            "/v1/transfers",
            "d",
            json!({ "to": { "email": alice_email }, "amount": jpy(-5) }),
        )
        .await;
    assert_eq!(negative.status(), 422);
    assert_eq!(available(&app, &alice).await, 100);
}

#[tokio::test]
async fn the_transaction_list_pages_newest_first() {
    let app = spawn_app().await;
    let (_, alice, _) = consumer(&app).await;
    let (bob_email, _, _) = consumer(&app).await;
    for (key, value) in [("t1", 500), ("t2", 700)] {
        assert_eq!(
            app.post_with_key(
                &alice,
                "/v1/wallet/top-ups",
                key,
                json!({ "amount": jpy(value) })
            )
            .await
            .status(),
            201
        );
    }
    assert_eq!(
        app.post_with_key(
            &alice,
            "/v1/transfers",
            "s",
            json!({ "to": { "email": bob_email }, "amount": jpy(300) })
        )
        .await
        .status(),
        201
    );
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let query = cursor
            .as_ref()
            .map(|c| format!("&cursor={c}"))
            .unwrap_or_default();
        let page: Value = app
            .client
            .get(format!("{}/v1/transactions?limit=2{query}", app.address))
            .bearer_auth(&alice)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        for item in page["items"].as_array().expect("items") {
            seen.push((
                item["kind"].as_str().unwrap_or("").to_string(),
                item["direction"].as_str().unwrap_or("").to_string(),
                item["amount"]["value"].as_i64().unwrap_or(0),
            ));
        }
        cursor = page["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    let expected = [
        ("p2p", "out", 300),
        ("top_up", "in", 700),
        ("top_up", "in", 500),
    ];
    assert_eq!(
        seen,
        expected
            .iter()
            .map(|(k, d, v)| ((*k).to_string(), (*d).to_string(), *v))
            .collect::<Vec<_>>()
    );
    let too_many = app
        .client
        .get(format!("{}/v1/transactions?limit=101", app.address))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("sent");
    assert_eq!(too_many.status(), 422);
}
