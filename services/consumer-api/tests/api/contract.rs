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
        app.client
            .post(format!("{}/v1/wallet/top-ups", app.address))
            .bearer_auth(&token)
            .header("Idempotency-Key", key)
            .json(&json!({ "amount": { "value": value, "currency": "JPY" } }))
            .send()
    };
    assert_eq!(
        checked(
            &contract,
            "post",
            "/v1/wallet/top-ups",
            top_up("c1", 700).await.expect("sent")
        )
        .await,
        201
    );
    assert_eq!(
        checked(
            &contract,
            "post",
            "/v1/wallet/top-ups",
            top_up("c1", 700).await.expect("sent")
        )
        .await,
        201
    );
    assert_eq!(
        checked(
            &contract,
            "post",
            "/v1/wallet/top-ups",
            top_up("c1", 701).await.expect("sent")
        )
        .await,
        422
    );
    assert_eq!(
        checked(
            &contract,
            "post",
            "/v1/wallet/top-ups",
            top_up("c2", 0).await.expect("sent")
        )
        .await,
        422
    );
}
