//! The merchant's transaction list: newest first, by cursor, filtered, and only its own.

use crate::helpers::{json_of, new_key, World};
use serde_json::Value;

#[tokio::test]
async fn the_list_pages_by_cursor_newest_first_without_gaps_or_repeats() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let consumer = world.consumer(10_000).await;
    let request = world.payment_request(&merchant, None).await;
    let qr = request["payload"].as_str().expect("payload");
    let mut paid = Vec::new();
    for amount in [101, 102, 103, 104, 105] {
        let payment = json_of(world.pay(&consumer, qr, Some(amount), &new_key()).await).await;
        paid.push(payment["id"].as_str().expect("id").to_string());
    }
    world
        .merchant_transactions_with(&merchant, "", paid.last().expect("paid"))
        .await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(cursor) => format!("/v1/transactions?limit=2&cursor={cursor}"),
            None => "/v1/transactions?limit=2".to_string(),
        };
        let page: Value = json_of(world.merchant_get(&merchant, &query).await).await;
        pages += 1;
        for item in page["items"].as_array().expect("items") {
            seen.push(item["id"].as_str().expect("id").to_string());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
        assert!(pages <= 5, "the cursor ends");
    }
    assert_eq!(pages, 3);
    paid.reverse();
    assert_eq!(seen, paid, "every payment once, newest first");
}

#[tokio::test]
async fn filters_and_bad_queries() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let consumer = world.consumer(10_000).await;
    let request = world.payment_request(&merchant, None).await;
    let qr = request["payload"].as_str().expect("payload");
    let paid = json_of(world.pay(&consumer, qr, Some(100), &new_key()).await).await;
    let all = world
        .merchant_transactions_with(&merchant, "", paid["id"].as_str().expect("id"))
        .await;
    assert_eq!(all["items"].as_array().map(Vec::len), Some(1));
    let refunded = world
        .merchant_transactions(&merchant, "&status=refunded")
        .await;
    assert_eq!(refunded["items"].as_array().map(Vec::len), Some(0));
    let future = world
        .merchant_transactions(&merchant, "&from=2100-01-01T00:00:00Z")
        .await;
    assert_eq!(future["items"].as_array().map(Vec::len), Some(0));
    let past = world
        .merchant_transactions(
            &merchant,
            "&from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z",
        )
        .await;
    assert_eq!(past["items"].as_array().map(Vec::len), Some(1));
    for bad in [
        "/v1/transactions?limit=0",
        "/v1/transactions?limit=101",
        "/v1/transactions?status=lost",
        "/v1/transactions?cursor=not-a-cursor",
        "/v1/transactions?from=2100-01-01T00:00:00Z&to=2000-01-01T00:00:00Z",
    ] {
        let response = world.merchant_get(&merchant, bad).await;
        assert_eq!(response.status(), 422, "{bad}");
    }
    let unparsable = world
        .merchant_get(&merchant, "/v1/transactions?from=yesterday")
        .await;
    assert_eq!(unparsable.status(), 400);
}

#[tokio::test]
async fn merchants_see_only_their_own_transactions_and_requests() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let other = world.merchant().await;
    let consumer = world.consumer(1_000).await;
    let request = world.payment_request(&merchant, Some(100)).await;
    let id = request["id"].as_str().expect("id");
    world.pay_request(&consumer, &request).await;
    assert_eq!(
        world.merchant_transactions(&other, "").await["items"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    for path in [
        format!("/v1/payment-requests/{id}"),
        format!("/v1/payment-requests/{id}/qr.png"),
        format!("/v1/payment-requests/{id}/qr.svg"),
    ] {
        assert_eq!(
            world.merchant_get(&other, &path).await.status(),
            404,
            "{path}"
        );
    }
    // A consumer's token is not a merchant's.
    let forbidden = world.merchant_get(&consumer, "/v1/transactions").await;
    assert_eq!(forbidden.status(), 403);
}
