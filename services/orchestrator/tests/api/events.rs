//! Every finished saga leaves exactly one event in the outbox, written in the transaction that
//! finished it, keyed and typed as services/contracts/events.yaml says; unfinished steps and
//! replays leave none. (Without Kafka settings the rows stay in the outbox, where they can be
//! read.)

use crate::helpers::spawn_app;
use serde_json::{json, Value};
use uuid::Uuid;

async fn outbox(pool: &sqlx::PgPool) -> Vec<(String, String, Value)> {
    sqlx::query_as("SELECT topic, key, envelope FROM outbox ORDER BY seq")
        .fetch_all(pool)
        .await
        .expect("the outbox reads")
}

#[tokio::test]
async fn each_finished_saga_puts_one_event_in_the_outbox_and_a_replay_none() {
    let app = spawn_app().await;
    let wallet = app.open("wallet", "JPY").await;
    let merchant = app.open("merchant", "JPY").await;
    let other = app.open("wallet", "JPY").await;
    assert_eq!(app.top_up(wallet, 5_000, "JPY").await.status(), 201);
    let pay = json!({
        "wallet_account_id": wallet, "merchant_account_id": merchant,
        "amount": { "value": 1_000, "currency": "JPY" }, "fee_bps": 100,
        "metadata": { "channel": "qr", "payer_ref": "consumer:x" },
    });
    let paid: Value = app
        .post("/v1/payments", Some("pay-1"), &pay)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        app.post("/v1/payments", Some("pay-1"), &pay).await.status(),
        201
    );
    let too_much = json!({
        "wallet_account_id": wallet, "merchant_account_id": merchant,
        "amount": { "value": 999_999, "currency": "JPY" },
    });
    assert_eq!(
        app.post("/v1/payments", Some("pay-2"), &too_much)
            .await
            .status(),
        402
    );
    let refund = json!({ "payment_id": paid["id"], "amount": { "value": 400, "currency": "JPY" } });
    assert_eq!(
        app.post("/v1/refunds", Some("refund-1"), &refund)
            .await
            .status(),
        201
    );
    let p2p = json!({ "from_account_id": wallet, "to_account_id": other, "amount": { "value": 10, "currency": "JPY" } });
    assert_eq!(
        app.post("/v1/transfers", Some("p2p-1"), &p2p)
            .await
            .status(),
        201
    );

    let events = outbox(&app.pool).await;
    let types: Vec<(&str, &str)> = events
        .iter()
        .map(|(topic, _, envelope)| (topic.as_str(), envelope["type"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        types,
        [
            ("ledger.v1", "top_up.completed"),
            ("payments.v1", "payment.completed"),
            ("payments.v1", "payment.declined"),
            ("payments.v1", "refund.completed"),
            ("ledger.v1", "transfer.completed"),
        ],
        "one event per finished saga, none for the replay"
    );
    let (_, key, payment) = &events[1];
    assert_eq!(
        key,
        &merchant.to_string(),
        "payments are keyed by the merchant's account"
    );
    assert_eq!(
        payment["subject"],
        format!("payment/{}", paid["id"].as_str().expect("id"))
    );
    assert_eq!(payment["data"]["metadata"]["channel"], "qr");
    assert_eq!(payment["data"]["amount"]["value"], 1_000);
    assert_eq!(payment["data"]["fee"]["value"], 10);
    assert!(payment["id"]
        .as_str()
        .and_then(|id| id.parse::<Uuid>().ok())
        .is_some());
    let (_, refund_key, _) = &events[3];
    assert_eq!(
        refund_key,
        &merchant.to_string(),
        "a refund is keyed by the merchant too"
    );
}

#[tokio::test]
async fn metadata_that_is_not_a_small_object_is_refused() {
    let app = spawn_app().await;
    let wallet = app.open("wallet", "JPY").await;
    let merchant = app.open("merchant", "JPY").await;
    for metadata in [json!("text"), json!({ "blob": "x".repeat(3_000) })] {
        let body = json!({
            "wallet_account_id": wallet, "merchant_account_id": merchant,
            "amount": { "value": 1, "currency": "JPY" }, "metadata": metadata,
        });
        let response = app
            .post("/v1/payments", Some(&Uuid::new_v4().to_string()), &body)
            .await;
        assert_eq!(response.status(), 422);
    }
    assert!(outbox(&app.pool).await.is_empty());
}
