//! Registration, login through Keycloak, the wallet and idempotent top-ups, end to end against
//! a real orchestrator, PostgreSQL and Keycloak.

use crate::helpers::{spawn_app, unique_email};
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";

#[tokio::test]
async fn a_registered_consumer_logs_in_tops_up_and_sees_the_balance() {
    let app = spawn_app().await;
    let email = unique_email();
    let registered = app.register(&email, PASSWORD).await;
    assert_eq!(registered.status(), 201);
    let registered: Value = registered.json().await.expect("json");
    assert_eq!(registered["wallet"]["currency"], "JPY");

    let token = app.login(&email, PASSWORD).await;
    let wallet = app.wallet(&token).await;
    assert_eq!(
        wallet["available"],
        json!({ "value": 0, "currency": "JPY" })
    );
    assert_eq!(wallet["id"], registered["wallet"]["id"]);

    let top_up = |key: &'static str, value: i64| {
        app.post_with_key(
            &token,
            "/v1/wallet/top-ups",
            key,
            json!({ "amount": { "value": value, "currency": "JPY" } }),
        )
    };
    let first = top_up("t-1", 5_000).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("json");
    assert_eq!(
        first["wallet"]["available"],
        json!({ "value": 5_000, "currency": "JPY" })
    );

    let replay = top_up("t-1", 5_000).await;
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotency-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.expect("json"), first);
    let other_body = top_up("t-1", 6_000).await;
    assert_eq!(other_body.status(), 422);
    assert_eq!(
        paykit::testing::problem_type(other_body).await,
        "idempotency-key-reused"
    );

    let wallet = app.wallet(&token).await;
    assert_eq!(
        wallet["available"],
        json!({ "value": 5_000, "currency": "JPY" }),
        "topped up once"
    );
}

#[tokio::test]
async fn a_second_registration_with_the_same_email_is_refused() {
    let app = spawn_app().await;
    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    let again = app.register(&email.to_uppercase(), PASSWORD).await;
    assert_eq!(again.status(), 409);
    assert_eq!(paykit::testing::problem_type(again).await, "email-taken");
}

#[tokio::test]
async fn bad_registrations_are_refused_with_a_clear_problem() {
    let app = spawn_app().await;
    for (body, status, slug) in [
        (
            json!({ "email": "not-an-email", "password": PASSWORD, "name": "A" }),
            422,
            "validation",
        ),
        (
            json!({ "email": unique_email(), "password": "short", "name": "A" }),
            422,
            "validation",
        ),
        (
            json!({ "email": unique_email(), "password": PASSWORD, "name": "" }),
            422,
            "validation",
        ),
        (
            json!({ "email": unique_email(), "password": PASSWORD, "name": "A", "currency": "XXX" }),
            422,
            "unknown-currency",
        ),
        (
            json!({ "email": unique_email(), "password": PASSWORD }),
            400,
            "malformed-request",
        ),
        (
            json!({ "email": unique_email(), "password": PASSWORD, "name": "A", "admin": true }),
            400,
            "malformed-request",
        ),
    ] {
        let response = app
            .client
            .post(format!("{}/v1/consumers", app.address))
            .json(&body)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), status, "{body}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{body}"
        );
        assert_eq!(
            paykit::testing::problem_type(response).await,
            slug,
            "{body}"
        );
    }
}

#[tokio::test]
async fn the_wallet_needs_a_consumer_login() {
    let app = spawn_app().await;
    let anonymous = app
        .client
        .get(format!("{}/v1/wallet", app.address))
        .send()
        .await
        .expect("sent");
    assert_eq!(anonymous.status(), 401);
    let orchestrator = paykit::testing::client_token("orchestrator").await;
    let wrong = app
        .client
        .get(format!("{}/v1/wallet", app.address))
        .bearer_auth(orchestrator)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        wrong.status(),
        401,
        "a token for another audience is not accepted"
    );
    // merchant-api's account may call this service (to redeem codes) but is no consumer.
    let merchant_api = paykit::testing::client_token("merchant-api").await;
    let not_a_consumer = app
        .client
        .get(format!("{}/v1/wallet", app.address))
        .bearer_auth(merchant_api)
        .send()
        .await
        .expect("sent");
    assert_eq!(not_a_consumer.status(), 403);
    let email = unique_email();
    assert_eq!(app.register(&email, PASSWORD).await.status(), 201);
    let token = app.login(&email, PASSWORD).await;
    let without_key = app
        .client
        .post(format!("{}/v1/wallet/top-ups", app.address))
        .bearer_auth(&token)
        .json(&json!({ "amount": { "value": 1, "currency": "JPY" } }))
        .send()
        .await
        .expect("sent");
    assert_eq!(without_key.status(), 400);
    assert_eq!(
        paykit::testing::problem_type(without_key).await,
        "idempotency-key-missing"
    );
}
