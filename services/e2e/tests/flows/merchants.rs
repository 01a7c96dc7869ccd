//! Merchant registration and payment requests: bad input is refused and nothing is written.

use crate::helpers::{json_of, new_key, yen, World, PASSWORD};
use paykit::testing::problem_type;
use serde_json::json;

#[tokio::test]
async fn a_registered_merchant_signs_in_and_sees_its_profile() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let me = json_of(world.merchant_get(&merchant, "/v1/merchants/me").await).await;
    assert_eq!(me["id"], merchant.id.as_str());
    assert_eq!(me["currency"], "JPY");
    assert_eq!(me["balance"]["value"], 0);
    let again = world.register_merchant(&merchant.email, "Another").await;
    assert_eq!(again.status(), 409);
    assert_eq!(problem_type(again).await, "email-taken");
}

#[tokio::test]
async fn a_registration_that_cannot_fit_a_qr_code_is_refused() {
    let world = World::new().await;
    for (field, value) in [
        ("name", json!("A name much too long for field 59")),
        ("city", json!("A city name too long")),
        ("country", json!("JPN")),
        ("mcc", json!("58")),
        ("currency", json!("XXX")),
        // Fits field 59, but Keycloak's user profile refuses `<` in a person's name.
        ("name", json!("Cafe <b>")),
        ("password", json!("short")),
        ("email", json!("not-an-email")),
    ] {
        let mut body = json!({
            "name": "Cafe", "city": "Tokyo", "country": "JP", "mcc": "5812",
            "currency": "JPY", "email": e2e::unique_email("merchant"), "password": PASSWORD,
        });
        body[field] = value;
        let response = world
            .http
            .post(format!("{}/v1/merchants", world.platform.merchant_api))
            .json(&body)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 422, "{field}");
        let problem = json_of(response).await;
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains(field)),
            "{field}: {problem}"
        );
    }
}

#[tokio::test]
async fn bad_payment_requests_are_refused_and_none_is_made() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    for body in [
        json!({ "amount": yen(0) }),
        json!({ "amount": yen(-5) }),
        json!({ "amount": { "value": 100, "currency": "USD" } }),
        json!({ "amount": yen(100), "expires_in_s": 5 }),
        json!({ "amount": yen(100), "expires_in_s": 100_000 }),
        json!({ "expires_in_s": 60 }),
        json!({ "amount": yen(100), "reference": "R".repeat(26) }),
        json!({ "amount": yen(100), "reference": "café" }),
    ] {
        let response = world
            .merchant_post(&merchant, "/v1/payment-requests", &new_key(), body.clone())
            .await;
        assert_eq!(response.status(), 422, "{body}");
        assert_eq!(
            response.headers().get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/problem+json"[..])
        );
    }
    for body in [
        json!({ "amount": { "value": 1.5, "currency": "JPY" } }),
        json!({ "amount": { "value": 100, "currency": "yen" } }),
        json!({ "amount": "100" }),
        json!({ "surprise": true }),
    ] {
        let response = world
            .merchant_post(&merchant, "/v1/payment-requests", &new_key(), body.clone())
            .await;
        assert_eq!(response.status(), 400, "{body}");
    }
    let without_key = world
        .http
        .post(format!(
            "{}/v1/payment-requests",
            world.platform.merchant_api
        ))
        .bearer_auth(&merchant.token)
        .json(&json!({ "amount": yen(100) }))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        without_key.status(),
        400,
        "money-moving POSTs need an Idempotency-Key"
    );
    let count: i64 = {
        let pool = world.platform.merchant_db.pool().expect("pool");
        sqlx::query_scalar("SELECT count(*) FROM payment_requests")
            .fetch_one(&pool)
            .await
            .expect("counted")
    };
    assert_eq!(count, 0, "nothing was written");
}
