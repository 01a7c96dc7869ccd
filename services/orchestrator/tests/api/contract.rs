//! The running service against services/contracts/orchestrator.yaml: every answer below must
//! be an operation and status the contract documents, with a body its schema accepts.

use crate::helpers::spawn_app;
use paykit::testing::Contract;
use serde_json::{json, Value};
use uuid::Uuid;

async fn checked(
    contract: &Contract,
    method: &str,
    template: &str,
    response: reqwest::Response,
) -> (u16, Value) {
    contract.check_response(method, template, response).await
}

#[tokio::test]
async fn the_running_service_answers_as_its_contract_says() {
    let contract = Contract::load("orchestrator");
    let app = spawn_app().await;
    let money = |value: i64| json!({ "value": value, "currency": "JPY" });

    let wallet = Uuid::new_v4();
    let merchant = Uuid::new_v4();
    let open = |id: Uuid, kind: &str| json!({ "id": id, "kind": kind, "currency": "JPY", "owner_ref": "contract-test" });
    let (status, _) = checked(
        &contract,
        "post",
        "/v1/accounts",
        app.post("/v1/accounts", None, &open(wallet, "wallet"))
            .await,
    )
    .await;
    assert_eq!(status, 201);
    checked(
        &contract,
        "post",
        "/v1/accounts",
        app.post("/v1/accounts", None, &open(merchant, "merchant"))
            .await,
    )
    .await;
    let (status, _) = checked(
        &contract,
        "post",
        "/v1/accounts",
        app.post(
            "/v1/accounts",
            None,
            &json!({ "id": Uuid::new_v4(), "kind": "fees", "currency": "JPY" }),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422);

    let top_up = json!({ "wallet_account_id": wallet, "amount": money(5_000) });
    assert_eq!(
        checked(
            &contract,
            "post",
            "/v1/top-ups",
            app.post("/v1/top-ups", Some("t1"), &top_up).await
        )
        .await
        .0,
        201
    );
    assert_eq!(
        checked(
            &contract,
            "post",
            "/v1/top-ups",
            app.post("/v1/top-ups", None, &top_up).await
        )
        .await
        .0,
        400
    );

    let pay = |value: i64| json!({ "wallet_account_id": wallet, "merchant_account_id": merchant, "amount": money(value), "fee_bps": 200, "reference": "order-1" });
    let (status, payment) = checked(
        &contract,
        "post",
        "/v1/payments",
        app.post("/v1/payments", Some("p1"), &pay(2_000)).await,
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        checked(
            &contract,
            "post",
            "/v1/payments",
            app.post("/v1/payments", Some("p2"), &pay(9_000)).await
        )
        .await
        .0,
        402
    );
    assert_eq!(
        checked(
            &contract,
            "post",
            "/v1/payments",
            app.post("/v1/payments", Some("p1"), &pay(1)).await
        )
        .await
        .0,
        422
    );

    let payment_id = payment["id"].as_str().expect("id");
    let (status, _) = checked(
        &contract,
        "get",
        "/v1/payments/{id}",
        app.get(&format!("/v1/payments/{payment_id}")).await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        checked(
            &contract,
            "get",
            "/v1/payments/{id}",
            app.get(&format!("/v1/payments/{}", Uuid::new_v4())).await
        )
        .await
        .0,
        404
    );

    let refund = |value: i64| json!({ "payment_id": payment_id, "amount": money(value) });
    assert_eq!(
        checked(
            &contract,
            "post",
            "/v1/refunds",
            app.post("/v1/refunds", Some("r1"), &refund(500)).await
        )
        .await
        .0,
        201
    );
    assert_eq!(
        checked(
            &contract,
            "post",
            "/v1/refunds",
            app.post("/v1/refunds", Some("r2"), &refund(5_000)).await
        )
        .await
        .0,
        422
    );

    let other = Uuid::new_v4();
    checked(
        &contract,
        "post",
        "/v1/accounts",
        app.post("/v1/accounts", None, &open(other, "wallet")).await,
    )
    .await;
    let send = json!({ "from_account_id": wallet, "to_account_id": other, "amount": money(100) });
    assert_eq!(
        checked(
            &contract,
            "post",
            "/v1/transfers",
            app.post("/v1/transfers", Some("s1"), &send).await
        )
        .await
        .0,
        201
    );

    assert_eq!(
        checked(
            &contract,
            "get",
            "/v1/accounts/{id}",
            app.get(&format!("/v1/accounts/{wallet}")).await
        )
        .await
        .0,
        200
    );
    assert_eq!(
        checked(
            &contract,
            "get",
            "/v1/accounts/{id}",
            app.get(&format!("/v1/accounts/{}", Uuid::new_v4())).await
        )
        .await
        .0,
        404
    );
    let (status, page) = checked(
        &contract,
        "get",
        "/v1/accounts/{id}/transfers",
        app.get(&format!("/v1/accounts/{wallet}/transfers?limit=2"))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert!(page["next_cursor"].is_string());
    let (status, report) = checked(
        &contract,
        "get",
        "/internal/ledger/verify",
        app.get("/internal/ledger/verify").await,
    )
    .await;
    assert_eq!((status, report["ok"].as_bool()), (200, Some(true)));

    let anonymous = app
        .client
        .get(format!("{}/internal/ledger/verify", app.address))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        checked(&contract, "get", "/internal/ledger/verify", anonymous)
            .await
            .0,
        401
    );
}
