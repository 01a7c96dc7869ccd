//! One-time payment codes, as a consumer asks for them.

use crate::helpers::{spawn_app, unique_email};
use serde_json::Value;

#[tokio::test]
async fn a_payment_code_is_eighteen_fresh_digits_valid_for_a_minute_with_both_barcodes() {
    let app = spawn_app().await;
    let email = unique_email();
    assert_eq!(
        app.register(&email, "correct horse battery").await.status(),
        201
    );
    let token = app.login(&email, "correct horse battery").await;
    let ask = || {
        app.client
            .post(format!("{}/v1/payment-codes", app.address))
            .bearer_auth(&token)
            .send()
    };
    let first = ask().await.expect("sent");
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("json");
    let code = first["code"].as_str().expect("code");
    assert_eq!(code.len(), 18);
    assert!(
        code.starts_with("28") && code.chars().all(|c| c.is_ascii_digit()),
        "{code}"
    );
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(first["expires_at"].as_str().expect("expiry"))
            .expect("RFC 3339");
    let left = expires_at
        .signed_duration_since(chrono::Utc::now())
        .num_seconds();
    assert!(
        (50..=60).contains(&left),
        "valid for at most 60 s, {left} s left"
    );
    assert!(first["qr_svg"].as_str().expect("qr").contains("<svg"));
    assert!(first["code128_svg"]
        .as_str()
        .expect("barcode")
        .contains("<svg"));
    let second: Value = ask().await.expect("sent").json().await.expect("json");
    assert_ne!(second["code"], first["code"], "every code is new");
    let anonymous = app
        .client
        .post(format!("{}/v1/payment-codes", app.address))
        .send()
        .await
        .expect("sent");
    assert_eq!(anonymous.status(), 401);
}
