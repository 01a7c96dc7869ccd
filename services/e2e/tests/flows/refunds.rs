//! Refunds: partial or full, never above what was paid; the consumer gets the money back.

use crate::helpers::{json_of, new_key, yen, World};
use serde_json::json;

#[tokio::test]
async fn a_payment_is_refunded_in_parts_up_to_its_amount_and_no_further() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let consumer = world.consumer(5_000).await;
    let request = world.payment_request(&merchant, Some(2_000)).await;
    let paid = world
        .pay(
            &consumer,
            request["payload"].as_str().expect("payload"),
            None,
            &new_key(),
        )
        .await;
    let payment = json_of(paid).await;
    let id = payment["id"].as_str().expect("id").to_string();
    assert_eq!(world.balance(&consumer).await, 3_000);

    let refund = |amount: i64, key: String| {
        let world = &world;
        let merchant = &merchant;
        let id = id.clone();
        async move {
            world
                .merchant_post(
                    merchant,
                    "/v1/refunds",
                    &key,
                    json!({ "payment_id": id, "amount": yen(amount) }),
                )
                .await
        }
    };
    let first_key = new_key();
    let first = refund(500, first_key.clone()).await;
    assert_eq!(first.status(), 201);
    let first = json_of(first).await;
    assert_eq!(first["kind"], "refund");
    assert_eq!(first["payment_id"], id.as_str());
    assert_eq!(world.balance(&consumer).await, 3_500);
    let replay = refund(500, first_key).await;
    assert_eq!(
        json_of(replay).await["id"],
        first["id"],
        "a retried refund is the same refund"
    );
    assert_eq!(world.balance(&consumer).await, 3_500);

    let too_much = refund(1_501, new_key()).await;
    assert_eq!(too_much.status(), 422, "only 1500 is left to refund");
    assert_eq!(refund(1_500, new_key()).await.status(), 201);
    assert_eq!(world.balance(&consumer).await, 5_000);
    assert_eq!(refund(1, new_key()).await.status(), 422, "nothing is left");

    let seen = json_of(
        world
            .consumer_get(&consumer, &format!("/v1/payments/{id}"))
            .await,
    )
    .await;
    assert_eq!(seen["status"], "refunded");
    assert_eq!(seen["refunded"]["value"], 2_000);
    let listed = world
        .merchant_transactions_when(&merchant, "&kind=payment", |page| {
            page["items"][0]["refunded"]["value"] == 2_000
        })
        .await;
    assert_eq!(listed["items"][0]["status"], "refunded");
    assert_eq!(listed["items"][0]["refunded"]["value"], 2_000);
    world.assert_ledger_balances().await;
}

#[tokio::test]
async fn a_merchant_cannot_refund_another_merchants_payment() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let thief = world.merchant().await;
    let consumer = world.consumer(1_000).await;
    let request = world.payment_request(&merchant, Some(400)).await;
    let payment = world.pay_request(&consumer, &request).await;
    let stolen = world
        .merchant_post(
            &thief,
            "/v1/refunds",
            &new_key(),
            json!({ "payment_id": payment["id"], "amount": yen(400) }),
        )
        .await;
    assert_eq!(stolen.status(), 404);
    assert_eq!(world.balance(&consumer).await, 600);
}
