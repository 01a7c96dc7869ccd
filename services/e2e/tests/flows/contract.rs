//! The running merchant-api and consumer-api against services/contracts/: every JSON answer
//! the flows produce matches its documented schema, and every documented JSON operation is
//! exercised here (images and streams are checked in qr_images.rs and stream.rs).

use crate::helpers::{new_key, yen, Person, World};
use paykit::testing::Contract;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Checks answers and remembers which operations were checked.
struct Checker {
    contract: Contract,
    checked: BTreeSet<(String, String)>,
}

impl Checker {
    fn new(name: &str) -> Self {
        Self {
            contract: Contract::load(name),
            checked: BTreeSet::new(),
        }
    }

    async fn check(
        &mut self,
        method: &str,
        template: &str,
        response: reqwest::Response,
    ) -> (u16, Value) {
        self.checked
            .insert((method.to_string(), template.to_string()));
        self.contract
            .check_response(method, template, response)
            .await
    }

    /// Panics unless every documented operation but `elsewhere` was checked.
    fn assert_covered(&self, elsewhere: &[&str]) {
        let missing: Vec<_> = self
            .contract
            .operations()
            .into_iter()
            .filter(|(_, path)| !elsewhere.contains(&path.as_str()))
            .filter(|operation| !self.checked.contains(operation))
            .collect();
        assert!(
            missing.is_empty(),
            "operations the contract test never called: {missing:?}"
        );
    }
}

async fn code_of(world: &World, consumer: &Person) -> String {
    let response = world
        .consumer_post(consumer, "/v1/payment-codes", &new_key(), json!({}))
        .await;
    let body: Value = response.json().await.expect("json");
    body["code"].as_str().expect("code").to_string()
}

#[tokio::test]
async fn merchant_api_answers_as_its_contract_says() {
    let world = World::new().await;
    let mut api = Checker::new("merchant-api");
    let email = e2e::unique_email("merchant");
    let (status, _) = api
        .check(
            "post",
            "/v1/merchants",
            world.register_merchant(&email, "Contract Cafe").await,
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = api
        .check(
            "post",
            "/v1/merchants",
            world.register_merchant(&email, "Contract Cafe").await,
        )
        .await;
    assert_eq!(status, 409);
    let merchant = Person {
        id: String::new(),
        token: e2e::login(&email, crate::helpers::PASSWORD).await,
        email,
    };
    let (status, _) = api
        .check(
            "get",
            "/v1/merchants/me",
            world.merchant_get(&merchant, "/v1/merchants/me").await,
        )
        .await;
    assert_eq!(status, 200);

    let made = world
        .merchant_post(
            &merchant,
            "/v1/payment-requests",
            &new_key(),
            json!({ "amount": yen(900), "reference": "A-1" }),
        )
        .await;
    let (status, request) = api.check("post", "/v1/payment-requests", made).await;
    assert_eq!(status, 201);
    let (status, _) = api
        .check(
            "post",
            "/v1/payment-requests",
            world
                .merchant_post(
                    &merchant,
                    "/v1/payment-requests",
                    &new_key(),
                    json!({ "amount": yen(0) }),
                )
                .await,
        )
        .await;
    assert_eq!(status, 422);
    let id = request["id"].as_str().expect("id");
    let (status, _) = api
        .check(
            "get",
            "/v1/payment-requests/{id}",
            world
                .merchant_get(&merchant, &format!("/v1/payment-requests/{id}"))
                .await,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = api
        .check(
            "get",
            "/v1/payment-requests/{id}",
            world
                .merchant_get(
                    &merchant,
                    &format!("/v1/payment-requests/{}", uuid::Uuid::new_v4()),
                )
                .await,
        )
        .await;
    assert_eq!(status, 404);

    let consumer = world.consumer(5_000).await;
    let paid = world
        .pay(
            &consumer,
            request["payload"].as_str().expect("payload"),
            None,
            &new_key(),
        )
        .await;
    let payment: Value = paid.json().await.expect("json");
    let code = code_of(&world, &consumer).await;
    let charged = world
        .merchant_post(
            &merchant,
            "/v1/charges",
            &new_key(),
            json!({ "payment_code": code, "amount": yen(100) }),
        )
        .await;
    let (status, _) = api.check("post", "/v1/charges", charged).await;
    assert_eq!(status, 201);
    let used = world
        .merchant_post(
            &merchant,
            "/v1/charges",
            &new_key(),
            json!({ "payment_code": code, "amount": yen(100) }),
        )
        .await;
    let (status, _) = api.check("post", "/v1/charges", used).await;
    assert_eq!(status, 410);
    let refunded = world
        .merchant_post(
            &merchant,
            "/v1/refunds",
            &new_key(),
            json!({ "payment_id": payment["id"], "amount": yen(300) }),
        )
        .await;
    let (status, _) = api.check("post", "/v1/refunds", refunded).await;
    assert_eq!(status, 201);
    world
        .merchant_transactions_when(&merchant, "", |page| {
            page["items"]
                .as_array()
                .is_some_and(|items| items.len() == 3)
        })
        .await;
    let listed = world
        .merchant_get(&merchant, "/v1/transactions?limit=2")
        .await;
    let (status, page) = api.check("get", "/v1/transactions", listed).await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    let (status, _) = api
        .check(
            "get",
            "/v1/transactions",
            world
                .merchant_get(&merchant, "/v1/transactions?limit=1000")
                .await,
        )
        .await;
    assert_eq!(status, 422);

    // The internal endpoint, as consumer-api calls it, and as nobody else may.
    let internal = format!(
        "{}/internal/v1/payment-requests/{id}/payments",
        world.platform.merchant_api
    );
    let body = json!({ "merchant_id": uuid::Uuid::new_v4(), "wallet_account_id": uuid::Uuid::new_v4(), "payer_ref": "consumer:x" });
    let service = paykit::testing::client_token("consumer-api").await;
    let answer = world
        .send(
            reqwest::Method::POST,
            internal.clone(),
            Some(&service),
            Some(&new_key()),
            Some(body.clone()),
        )
        .await;
    let (status, _) = api
        .check(
            "post",
            "/internal/v1/payment-requests/{id}/payments",
            answer,
        )
        .await;
    assert_eq!(status, 404, "the request is not that merchant's");
    let answer = world
        .send(
            reqwest::Method::POST,
            internal,
            Some(&merchant.token),
            Some(&new_key()),
            Some(body),
        )
        .await;
    let (status, _) = api
        .check(
            "post",
            "/internal/v1/payment-requests/{id}/payments",
            answer,
        )
        .await;
    assert_eq!(status, 403, "a merchant is not consumer-api");

    api.assert_covered(&[
        "/v1/payment-requests/{id}/qr.svg",
        "/v1/payment-requests/{id}/qr.png",
        "/v1/payment-requests/{id}/code128.svg",
        "/v1/transactions/stream",
        "/v1/transactions/ws",
    ]);
}

#[tokio::test]
async fn consumer_api_payments_answer_as_its_contract_says() {
    let world = World::new().await;
    let mut api = Checker::new("consumer-api");
    let merchant = world.merchant().await;
    let consumer = world.consumer(2_000).await;
    let request = world.payment_request(&merchant, Some(600)).await;
    let qr = request["payload"].as_str().expect("payload");
    let (status, payment) = api
        .check(
            "post",
            "/v1/payments",
            world.pay(&consumer, qr, None, &new_key()).await,
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = api
        .check(
            "post",
            "/v1/payments",
            world.pay(&consumer, qr, None, &new_key()).await,
        )
        .await;
    assert_eq!(status, 409);
    let (status, _) = api
        .check(
            "post",
            "/v1/payments",
            world.pay(&consumer, "000201", None, &new_key()).await,
        )
        .await;
    assert_eq!(status, 400);
    let id = payment["id"].as_str().expect("id");
    let (status, _) = api
        .check(
            "get",
            "/v1/payments/{id}",
            world
                .consumer_get(&consumer, &format!("/v1/payments/{id}"))
                .await,
        )
        .await;
    assert_eq!(status, 200);
    let stranger = world.consumer(0).await;
    let (status, _) = api
        .check(
            "get",
            "/v1/payments/{id}",
            world
                .consumer_get(&stranger, &format!("/v1/payments/{id}"))
                .await,
        )
        .await;
    assert_eq!(
        status, 404,
        "another consumer's payment is not there for them"
    );
    let sent = world
        .consumer_post(
            &consumer,
            "/v1/transfers",
            &new_key(),
            json!({ "to": { "email": stranger.email }, "amount": yen(100), "note": "lunch" }),
        )
        .await;
    let (status, transfer) = api.check("post", "/v1/transfers", sent).await;
    assert_eq!(status, 201);
    assert_eq!(transfer["note"], "lunch");
    let (status, page) = api
        .check(
            "get",
            "/v1/transactions",
            world.consumer_get(&stranger, "/v1/transactions").await,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        page["items"][0]["note"], "lunch",
        "the recipient sees the note"
    );
    let (status, page) = api
        .check(
            "get",
            "/v1/transactions",
            world
                .consumer_get(&consumer, "/v1/transactions?limit=100")
                .await,
        )
        .await;
    assert_eq!(status, 200);
    let merchants: Vec<&Value> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|item| item["merchant"]["name"] == "Cafe Paytool")
        .collect();
    assert!(
        !merchants.is_empty(),
        "the payment names its merchant: {page}"
    );
    let redemption = world
        .send(
            reqwest::Method::POST,
            format!("{}/internal/v1/payment-codes/redemptions", world.platform.consumer_api),
            Some(&consumer.token),
            Some(&new_key()),
            Some(json!({ "code": "280000000000000000", "merchant_id": uuid::Uuid::new_v4(), "amount": yen(1) })),
        )
        .await;
    let (status, _) = api
        .check("post", "/internal/v1/payment-codes/redemptions", redemption)
        .await;
    assert_eq!(status, 403, "a consumer cannot redeem codes");
}
