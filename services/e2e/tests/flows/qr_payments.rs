//! Merchant-presented mode: the merchant shows a QR code, the consumer scans and pays it.

use crate::helpers::{json_of, new_key, World};
use paykit::testing::problem_type;
use serde_json::Value;

#[tokio::test]
async fn a_consumer_pays_a_dynamic_qr_made_by_merchant_api_and_the_money_moves_exactly() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let consumer = world.consumer(10_000).await;
    let request = world.payment_request(&merchant, Some(1_250)).await;
    assert_eq!(request["kind"], "dynamic");
    let qr = request["payload"].as_str().expect("payload");
    // What the merchant shows is a valid EMVCo payload with the amount in it.
    let decoded = emvco::decode(qr).expect("merchant-api's payload decodes");
    assert_eq!(decoded.amount.and_then(|a| a.minor_units), Some(1_250));
    assert_eq!(decoded.currency.as_str(), "392");
    assert_eq!(decoded.merchant_name.as_str(), "Cafe Paytool");

    let paid = world.pay(&consumer, qr, None, &new_key()).await;
    assert_eq!(paid.status(), 201);
    let payment = json_of(paid).await;
    assert_eq!(payment["status"], "completed");
    assert_eq!(payment["amount"]["value"], 1_250);
    assert_eq!(payment["merchant"]["name"], "Cafe Paytool");
    assert_eq!(payment["merchant"]["id"], merchant.id.as_str());
    assert_eq!(payment["wallet"]["available"]["value"], 10_000 - 1_250);

    let id = payment["id"].as_str().expect("id");
    let read = json_of(
        world
            .consumer_get(&consumer, &format!("/v1/payments/{id}"))
            .await,
    )
    .await;
    assert_eq!(read["id"], id);
    assert_eq!(read["status"], "completed");

    // The default fee is 100 basis points of 1250 yen: 12.5, rounded half up to 13 whole yen.
    let transactions = world.merchant_transactions_with(&merchant, "", id).await;
    let items = transactions["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id);
    assert_eq!(items[0]["channel"], "qr");
    let fee = items[0]["fee"]["value"].as_i64().expect("fee");
    assert_eq!(fee, 13, "1% of 1250 yen, rounded half up");
    assert_eq!(world.merchant_balance(&merchant).await, 1_250 - fee);
    let request_after = json_of(
        world
            .merchant_get(
                &merchant,
                &format!(
                    "/v1/payment-requests/{}",
                    request["id"].as_str().expect("id")
                ),
            )
            .await,
    )
    .await;
    assert_eq!(request_after["status"], "paid");
    assert_eq!(request_after["payment_id"], id);
    world.assert_ledger_balances().await;
}

#[tokio::test]
async fn a_static_qr_takes_the_amount_the_consumer_enters_and_can_be_paid_again() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let consumer = world.consumer(5_000).await;
    let request = world.payment_request(&merchant, None).await;
    assert_eq!(request["kind"], "static");
    assert!(request["expires_at"].is_null());
    let qr = request["payload"].as_str().expect("payload");
    let without_amount = world.pay(&consumer, qr, None, &new_key()).await;
    assert_eq!(without_amount.status(), 422, "a static QR needs an amount");
    let mut last = Value::Null;
    for amount in [300, 700] {
        let paid = world.pay(&consumer, qr, Some(amount), &new_key()).await;
        assert_eq!(paid.status(), 201);
        last = json_of(paid).await["id"].clone();
    }
    assert_eq!(world.balance(&consumer).await, 4_000);
    let last = last.as_str().expect("id");
    let transactions = world.merchant_transactions_with(&merchant, "", last).await;
    assert_eq!(transactions["items"].as_array().map(Vec::len), Some(2));
    world.assert_ledger_balances().await;
}

#[tokio::test]
async fn a_replayed_payment_is_not_charged_twice() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let consumer = world.consumer(5_000).await;
    let request = world.payment_request(&merchant, Some(1_000)).await;
    let qr = request["payload"].as_str().expect("payload");
    let key = new_key();
    let first = world.pay(&consumer, qr, None, &key).await;
    assert_eq!(first.status(), 201);
    let first = json_of(first).await;
    let again = world.pay(&consumer, qr, None, &key).await;
    assert_eq!(again.status(), 201);
    assert_eq!(
        again
            .headers()
            .get("idempotency-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    assert_eq!(
        json_of(again).await,
        first,
        "the replay answers what the payment answered (stored with the payment's record)"
    );
    let changed = world.pay(&consumer, qr, Some(999), &key).await;
    assert_eq!(changed.status(), 422, "the same key with another body");
    assert_eq!(world.balance(&consumer).await, 4_000);
    let page = world.settled_transactions(&merchant, &consumer).await;
    assert_eq!(
        page["items"].as_array().map(Vec::len),
        Some(2),
        "the replay was recorded once"
    );
    world.assert_ledger_balances().await;
}

#[tokio::test]
async fn a_dynamic_qr_is_paid_once_even_when_many_pay_it_at_the_same_moment() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let request = world.payment_request(&merchant, Some(500)).await;
    let qr = request["payload"].as_str().expect("payload").to_string();
    let mut consumers = Vec::new();
    for _ in 0..4 {
        consumers.push(world.consumer(1_000).await);
    }
    let keys: Vec<String> = consumers.iter().map(|_| new_key()).collect();
    let attempts = consumers
        .iter()
        .zip(&keys)
        .map(|(c, key)| world.pay(c, &qr, None, key));
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    let mut total = 0;
    for consumer in &consumers {
        total += world.balance(consumer).await;
    }
    assert_eq!(total, 4 * 1_000 - 500, "exactly one consumer was charged");
    let late = world.pay(&consumers[0], &qr, None, &new_key()).await;
    assert_eq!(late.status(), 409);
    assert_eq!(problem_type(late).await, "already-paid");
    world.assert_ledger_balances().await;
}

#[tokio::test]
async fn concurrent_retries_of_one_payment_charge_once() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let consumer = world.consumer(3_000).await;
    let request = world.payment_request(&merchant, Some(800)).await;
    let qr = request["payload"].as_str().expect("payload").to_string();
    let key = new_key();
    let attempts = (0..4).map(|_| world.pay(&consumer, &qr, None, &key));
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    // Each is the first (201), a replay of it (201), or told the first is in flight (409).
    assert!(statuses.contains(&201), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    assert_eq!(world.balance(&consumer).await, 2_200);
}

#[tokio::test]
async fn an_expired_qr_is_refused_with_410_and_charges_nothing() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let consumer = world.consumer(2_000).await;
    let request = world.payment_request(&merchant, Some(100)).await;
    world
        .merchant_sql(
            "UPDATE payment_requests SET expires_at = now() - interval '1 second', created_at = now() - interval '1 minute' WHERE id = $1::uuid",
            request["id"].as_str().expect("id"),
        )
        .await;
    let paid = world
        .pay(
            &consumer,
            request["payload"].as_str().expect("payload"),
            None,
            &new_key(),
        )
        .await;
    assert_eq!(paid.status(), 410);
    assert_eq!(problem_type(paid).await, "payment-request-expired");
    assert_eq!(world.balance(&consumer).await, 2_000);
}

#[tokio::test]
async fn without_enough_money_the_payment_is_402_and_the_qr_stays_payable() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let poor = world.consumer(100).await;
    let request = world.payment_request(&merchant, Some(500)).await;
    let qr = request["payload"].as_str().expect("payload");
    let declined = world.pay(&poor, qr, None, &new_key()).await;
    assert_eq!(declined.status(), 402);
    assert_eq!(problem_type(declined).await, "insufficient-funds");
    assert_eq!(world.balance(&poor).await, 100);
    let rich = world.consumer(1_000).await;
    assert_eq!(world.pay(&rich, qr, None, &new_key()).await.status(), 201);
}

#[tokio::test]
async fn malformed_foreign_and_mismatched_qr_codes_are_refused_and_nothing_moves() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let consumer = world.consumer(1_000).await;
    let request = world.payment_request(&merchant, Some(300)).await;
    let qr = request["payload"].as_str().expect("payload");

    // One character changed: the CRC no longer matches.
    let mut tampered = qr.to_string();
    let at = tampered.find("300").expect("the amount is in the payload");
    tampered.replace_range(at..at + 3, "100");
    let response = world.pay(&consumer, &tampered, None, &new_key()).await;
    assert_eq!(response.status(), 400);
    assert_eq!(problem_type(response).await, "malformed-qr");

    let broken = world.pay(&consumer, "00020101021", None, &new_key()).await;
    assert_eq!(broken.status(), 400, "broken TLV");

    // A valid EMVCo payload of another scheme (no paytool template).
    let foreign = emvco::encode(&emvco::PaymentRequest {
        gui: "com.example.other".into(),
        merchant_id: "m-1".into(),
        payment_request_id: None,
        merchant_category_code: emvco::Mcc::parse("5812").expect("mcc"),
        currency: emvco::CurrencyCode::from_alpha("JPY").expect("JPY"),
        amount_minor_units: Some(300),
        country: emvco::CountryCode::parse("JP").expect("JP"),
        merchant_name: emvco::MerchantName::parse("Elsewhere").expect("name"),
        merchant_city: emvco::MerchantCity::parse("Osaka").expect("city"),
        reference_label: None,
    })
    .expect("encodes");
    let other = world.pay(&consumer, &foreign, None, &new_key()).await;
    assert_eq!(other.status(), 422);

    let wrong_amount = world.pay(&consumer, qr, Some(299), &new_key()).await;
    assert_eq!(
        wrong_amount.status(),
        422,
        "the amount differs from the QR's"
    );

    // A well-formed paytool QR naming a request that does not exist.
    let unknown = qr.replace(
        &uuid::Uuid::parse_str(request["id"].as_str().expect("id"))
            .expect("uuid")
            .simple()
            .to_string(),
        &uuid::Uuid::new_v4().simple().to_string(),
    );
    let unknown = recrc(&unknown);
    let missing = world.pay(&consumer, &unknown, None, &new_key()).await;
    assert_eq!(missing.status(), 404);

    assert_eq!(world.balance(&consumer).await, 1_000, "nothing was charged");
    let paid = json_of(world.pay(&consumer, qr, None, &new_key()).await).await;
    let page = world
        .merchant_transactions_with(&merchant, "", paid["id"].as_str().expect("id"))
        .await;
    assert_eq!(
        page["items"].as_array().map(Vec::len),
        Some(1),
        "only the good payment"
    );
}

/// The payload with its CRC computed again (after an edit in a test).
fn recrc(payload: &str) -> String {
    let body = &payload[..payload.len() - 4];
    format!("{body}{:04X}", emvco::crc16_ccitt_false(body.as_bytes()))
}
