//! The running service against services/contracts/consumer-api.yaml.

use crate::helpers::{spawn_app, unique_email};
use paykit::testing::Contract;
use serde_json::json;

async fn checked(
    contract: &Contract,
    method: &str,
    template: &str,
    response: reqwest::Response,
) -> u16 {
    contract.check_response(method, template, response).await.0
}

#[tokio::test]
async fn the_running_service_answers_as_its_contract_says() {
    let contract = Contract::load("consumer-api");
    let app = spawn_app().await;
    let email = unique_email();
    let password = "correct horse battery";
    assert_eq!(
        checked(
            &contract,
            "post",
            "/v1/consumers",
            app.register(&email, password).await
        )
        .await,
        201
    );
    assert_eq!(
        checked(
            &contract,
            "post",
            "/v1/consumers",
            app.register(&email, password).await
        )
        .await,
        409
    );
    let bad = app
        .client
        .post(format!("{}/v1/consumers", app.address))
        .json(&json!({ "email": "x" }))
        .send()
        .await
        .expect("sent");
    assert_eq!(checked(&contract, "post", "/v1/consumers", bad).await, 400);
    // Found by scripts/fuzz-apis.sh: a body without Content-Type: application/json is 415,
    // which was undocumented.
    let no_content_type = app
        .client
        .post(format!("{}/v1/consumers", app.address))
        .body("{}")
        .send()
        .await
        .expect("sent");
    assert_eq!(
        checked(&contract, "post", "/v1/consumers", no_content_type).await,
        415
    );

    let token = app.login(&email, password).await;
    let wallet = app
        .client
        .get(format!("{}/v1/wallet", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent");
    assert_eq!(checked(&contract, "get", "/v1/wallet", wallet).await, 200);
    let anonymous = app
        .client
        .get(format!("{}/v1/wallet", app.address))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        checked(&contract, "get", "/v1/wallet", anonymous).await,
        401
    );

    let top_up = |key: &'static str, value: i64| {
        app.post_with_key(
            &token,
            "/v1/wallet/top-ups",
            key,
            json!({ "amount": { "value": value, "currency": "JPY" } }),
        )
    };
    assert_eq!(
        checked(
            &contract,
            "post",
            "/v1/wallet/top-ups",
            top_up("c1", 700).await
        )
        .await,
        201
    );
    assert_eq!(
        checked(
            &contract,
            "post",
            "/v1/wallet/top-ups",
            top_up("c1", 700).await
        )
        .await,
        201
    );
    assert_eq!(
        checked(
            &contract,
            "post",
            "/v1/wallet/top-ups",
            top_up("c1", 701).await
        )
        .await,
        422
    );
    assert_eq!(
        checked(
            &contract,
            "post",
            "/v1/wallet/top-ups",
            top_up("c2", 0).await
        )
        .await,
        422
    );

    let friend = unique_email();
    assert_eq!(
        checked(
            &contract,
            "post",
            "/v1/consumers",
            app.register(&friend, password).await
        )
        .await,
        201
    );
    let send = |key: &'static str, to: serde_json::Value, value: i64| {
        app.post_with_key(
            &token,
            "/v1/transfers",
            key,
            json!({ "to": to, "amount": { "value": value, "currency": "JPY" } }),
        )
    };
    let sent = send("x1", json!({ "email": friend }), 100).await;
    assert_eq!(checked(&contract, "post", "/v1/transfers", sent).await, 201);
    let overdraw = send("x2", json!({ "email": friend }), 10_000).await;
    assert_eq!(
        checked(&contract, "post", "/v1/transfers", overdraw).await,
        402
    );
    let nobody = send("x3", json!({ "email": unique_email() }), 1).await;
    assert_eq!(
        checked(&contract, "post", "/v1/transfers", nobody).await,
        404
    );

    let list = app
        .client
        .get(format!("{}/v1/transactions?limit=1", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        checked(&contract, "get", "/v1/transactions", list).await,
        200
    );
    let bad = app
        .client
        .get(format!("{}/v1/transactions?limit=0", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        checked(&contract, "get", "/v1/transactions", bad).await,
        422
    );

    let code = app
        .client
        .post(format!("{}/v1/payment-codes", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        checked(&contract, "post", "/v1/payment-codes", code).await,
        201
    );
}
