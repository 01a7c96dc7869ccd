//! Consumer-presented mode: the consumer shows a one-time code, the merchant scans and charges it.

use crate::helpers::{json_of, new_key, yen, Person, World};
use paykit::testing::problem_type;
use serde_json::{json, Value};

async fn code_of(world: &World, consumer: &Person) -> String {
    let response = world
        .consumer_post(consumer, "/v1/payment-codes", &new_key(), json!({}))
        .await;
    assert_eq!(response.status(), 201);
    json_of(response).await["code"]
        .as_str()
        .expect("a code")
        .to_string()
}

async fn charge(
    world: &World,
    merchant: &Person,
    code: &str,
    amount: i64,
    key: &str,
) -> reqwest::Response {
    world
        .merchant_post(
            merchant,
            "/v1/charges",
            key,
            json!({ "payment_code": code, "amount": yen(amount), "reference": "TILL-3" }),
        )
        .await
}

#[tokio::test]
async fn a_merchant_charges_a_consumers_code_once_and_a_retry_replays() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let consumer = world.consumer(3_000).await;
    let code = code_of(&world, &consumer).await;
    let key = new_key();
    let charged = charge(&world, &merchant, &code, 1_200, &key).await;
    assert_eq!(charged.status(), 201);
    let charged: Value = json_of(charged).await;
    assert_eq!(charged["channel"], "code");
    assert_eq!(charged["amount"]["value"], 1_200);
    assert_eq!(charged["reference"], "TILL-3");
    assert_eq!(world.balance(&consumer).await, 1_800);

    let replay = charge(&world, &merchant, &code, 1_200, &key).await;
    assert_eq!(replay.status(), 201);
    assert_eq!(json_of(replay).await["id"], charged["id"]);

    let again = charge(&world, &merchant, &code, 1_200, &new_key()).await;
    assert_eq!(again.status(), 410, "a code pays once");
    assert_eq!(problem_type(again).await, "payment-code-used");
    assert_eq!(world.balance(&consumer).await, 1_800);
    world.assert_ledger_balances().await;
}

#[tokio::test]
async fn unknown_malformed_and_expired_codes_are_refused_and_nothing_moves() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let consumer = world.consumer(1_000).await;
    let unknown = charge(&world, &merchant, "280000000000000000", 100, &new_key()).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(problem_type(unknown).await, "payment-code-not-found");
    let malformed = charge(&world, &merchant, "12345", 100, &new_key()).await;
    assert_eq!(malformed.status(), 422);

    let code = code_of(&world, &consumer).await;
    world
        .consumer_sql(
            "UPDATE payment_codes SET created_at = now() - interval '2 minutes', expires_at = now() - interval '1 minute' WHERE consumer_id = $1::uuid",
            &consumer.id,
        )
        .await;
    let expired = charge(&world, &merchant, &code, 100, &new_key()).await;
    assert_eq!(expired.status(), 410);
    assert_eq!(problem_type(expired).await, "payment-code-expired");
    assert_eq!(world.balance(&consumer).await, 1_000);
}

#[tokio::test]
async fn a_code_of_a_wallet_without_enough_money_is_declined_with_402() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let consumer = world.consumer(50).await;
    let code = code_of(&world, &consumer).await;
    let declined = charge(&world, &merchant, &code, 500, &new_key()).await;
    assert_eq!(declined.status(), 402);
    assert_eq!(world.balance(&consumer).await, 50);
    let code = code_of(&world, &consumer).await;
    let paid = json_of(charge(&world, &merchant, &code, 50, &new_key()).await).await;
    let page = world
        .merchant_transactions_with(&merchant, "", paid["id"].as_str().expect("id"))
        .await;
    assert_eq!(
        page["items"].as_array().map(Vec::len),
        Some(1),
        "only the charge that went through"
    );
}

#[tokio::test]
async fn two_tills_charging_one_code_at_once_take_the_money_once() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let other = world.merchant().await;
    let consumer = world.consumer(2_000).await;
    let code = code_of(&world, &consumer).await;
    let (key_a, key_b) = (new_key(), new_key());
    let (a, b) = tokio::join!(
        charge(&world, &merchant, &code, 700, &key_a),
        charge(&world, &other, &code, 700, &key_b)
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 410]);
    assert_eq!(world.balance(&consumer).await, 1_300);
}
