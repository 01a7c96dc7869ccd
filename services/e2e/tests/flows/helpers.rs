use e2e::Platform;
use reqwest::Response;
use serde_json::{json, Value};

pub const PASSWORD: &str = "correct horse battery";
/// How long a test waits for the event-fed list to catch up: a bound, not a speed check.
const SETTLE_POLLS_MAX: u32 = 300;
const SETTLE_POLL_MS: u64 = 50;

/// One spawned platform and a client for it.
pub struct World {
    pub platform: Platform,
    pub http: reqwest::Client,
}

/// A registered, signed-in consumer or merchant.
pub struct Person {
    pub id: String,
    pub email: String,
    pub token: String,
}

impl World {
    pub async fn new() -> Self {
        Self::with(e2e::Options::default()).await
    }

    pub async fn with(options: e2e::Options) -> Self {
        Self {
            platform: e2e::spawn_with(options).await,
            http: reqwest::Client::new(),
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        url: String,
        token: Option<&str>,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.http.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("sent")
    }

    /// A POST to consumer-api as `who`, with an Idempotency-Key.
    pub async fn consumer_post(
        &self,
        who: &Person,
        path: &str,
        key: &str,
        body: Value,
    ) -> Response {
        let url = format!("{}{path}", self.platform.consumer_api);
        self.send(
            reqwest::Method::POST,
            url,
            Some(&who.token),
            Some(key),
            Some(body),
        )
        .await
    }

    /// A POST to merchant-api as `who`, with an Idempotency-Key.
    pub async fn merchant_post(
        &self,
        who: &Person,
        path: &str,
        key: &str,
        body: Value,
    ) -> Response {
        let url = format!("{}{path}", self.platform.merchant_api);
        self.send(
            reqwest::Method::POST,
            url,
            Some(&who.token),
            Some(key),
            Some(body),
        )
        .await
    }

    pub async fn consumer_get(&self, who: &Person, path: &str) -> Response {
        let url = format!("{}{path}", self.platform.consumer_api);
        self.send(reqwest::Method::GET, url, Some(&who.token), None, None)
            .await
    }

    pub async fn merchant_get(&self, who: &Person, path: &str) -> Response {
        let url = format!("{}{path}", self.platform.merchant_api);
        self.send(reqwest::Method::GET, url, Some(&who.token), None, None)
            .await
    }

    /// Registers a JPY consumer, logs in and tops up `balance` yen (none when 0).
    pub async fn consumer(&self, balance: i64) -> Person {
        let email = e2e::unique_email("consumer");
        let registered = self
            .send(
                reqwest::Method::POST,
                format!("{}/v1/consumers", self.platform.consumer_api),
                None,
                None,
                Some(json!({ "email": email, "password": PASSWORD, "name": "Test Consumer" })),
            )
            .await;
        assert_eq!(registered.status(), 201, "the consumer registers");
        let body: Value = registered.json().await.expect("json");
        let person = Person {
            id: body["id"].as_str().expect("id").to_string(),
            token: e2e::login(&email, PASSWORD).await,
            email,
        };
        if balance > 0 {
            let topped = self
                .consumer_post(
                    &person,
                    "/v1/wallet/top-ups",
                    &uuid::Uuid::new_v4().to_string(),
                    json!({ "amount": yen(balance) }),
                )
                .await;
            assert_eq!(topped.status(), 201, "the top-up goes through");
        }
        person
    }

    /// Registers a JPY merchant in Tokyo and logs in.
    pub async fn merchant(&self) -> Person {
        let email = e2e::unique_email("merchant");
        let registered = self.register_merchant(&email, "Cafe Paytool").await;
        assert_eq!(registered.status(), 201, "the merchant registers");
        let body: Value = registered.json().await.expect("json");
        Person {
            id: body["id"].as_str().expect("id").to_string(),
            token: e2e::login(&email, PASSWORD).await,
            email,
        }
    }

    pub async fn register_merchant(&self, email: &str, name: &str) -> Response {
        self.send(
            reqwest::Method::POST,
            format!("{}/v1/merchants", self.platform.merchant_api),
            None,
            None,
            Some(json!({
                "name": name, "city": "Tokyo", "country": "JP", "mcc": "5812",
                "currency": "JPY", "email": email, "password": PASSWORD,
            })),
        )
        .await
    }

    /// A payment request of `merchant`: dynamic with `amount`, static without.
    pub async fn payment_request(&self, merchant: &Person, amount: Option<i64>) -> Value {
        let body = match amount {
            Some(value) => json!({ "amount": yen(value), "reference": "ORDER-1" }),
            None => json!({}),
        };
        let response = self
            .merchant_post(merchant, "/v1/payment-requests", &new_key(), body)
            .await;
        assert_eq!(response.status(), 201, "the payment request is made");
        response.json().await.expect("json")
    }

    /// `consumer` pays the scanned `qr` under `key`.
    pub async fn pay(
        &self,
        consumer: &Person,
        qr: &str,
        amount: Option<i64>,
        key: &str,
    ) -> Response {
        let mut body = json!({ "qr": qr });
        if let Some(value) = amount {
            body["amount"] = yen(value);
        }
        self.consumer_post(consumer, "/v1/payments", key, body)
            .await
    }

    /// `consumer` pays the payment request `request` (its QR's own amount); panics unless 201.
    pub async fn pay_request(&self, consumer: &Person, request: &Value) -> Value {
        let qr = request["payload"].as_str().expect("a payload");
        let response = self.pay(consumer, qr, None, &new_key()).await;
        assert_eq!(response.status(), 201, "the payment goes through");
        json_of(response).await
    }

    /// The merchant's list once every event so far is applied: a 1-yen sentinel payment by
    /// `consumer` is made last, and a merchant's events are applied in order.
    pub async fn settled_transactions(&self, merchant: &Person, consumer: &Person) -> Value {
        let sentinel = self.payment_request(merchant, Some(1)).await;
        let paid = self.pay_request(consumer, &sentinel).await;
        self.merchant_transactions_with(merchant, "", paid["id"].as_str().expect("id"))
            .await
    }

    /// The consumer's available balance, in yen.
    pub async fn balance(&self, consumer: &Person) -> i64 {
        let wallet: Value = self
            .consumer_get(consumer, "/v1/wallet")
            .await
            .json()
            .await
            .expect("json");
        wallet["available"]["value"].as_i64().expect("a balance")
    }

    /// The merchant's ledger balance, in yen (what it was paid, less fees and refunds).
    pub async fn merchant_balance(&self, merchant: &Person) -> i64 {
        let me: Value = self
            .merchant_get(merchant, "/v1/merchants/me")
            .await
            .json()
            .await
            .expect("json");
        me["balance"]["value"].as_i64().expect("a balance")
    }

    /// The merchant's transactions (one page of up to 100), as they are now.
    pub async fn merchant_transactions(&self, merchant: &Person, query: &str) -> Value {
        let response = self
            .merchant_get(merchant, &format!("/v1/transactions?limit=100{query}"))
            .await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    /// The merchant's transactions once `ready` holds of the page. The list is built from the
    /// ledger's events, so it catches up a moment after a payment; a merchant's events are
    /// applied in order, so once the newest expected item is there every earlier one is too.
    pub async fn merchant_transactions_when(
        &self,
        merchant: &Person,
        query: &str,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        for _ in 0..SETTLE_POLLS_MAX {
            let page = self.merchant_transactions(merchant, query).await;
            if ready(&page) {
                return page;
            }
            tokio::time::sleep(std::time::Duration::from_millis(SETTLE_POLL_MS)).await;
        }
        panic!(
            "the merchant's list did not reach the expected state: {}",
            self.merchant_transactions(merchant, query).await
        );
    }

    /// The merchant's transactions once the one with `id` is among them.
    pub async fn merchant_transactions_with(
        &self,
        merchant: &Person,
        query: &str,
        id: &str,
    ) -> Value {
        self.merchant_transactions_when(merchant, query, |page| {
            page["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|item| item["id"] == id))
        })
        .await
    }

    /// Panics unless the orchestrator's ledger checks all pass.
    pub async fn assert_ledger_balances(&self) {
        let token = paykit::testing::client_token("consumer-api").await;
        let report: Value = self
            .send(
                reqwest::Method::GET,
                format!("{}/internal/ledger/verify", self.platform.orchestrator),
                Some(&token),
                None,
                None,
            )
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(report["ok"], true, "the ledger verifies: {report}");
    }

    /// Runs SQL on merchant-api's database (to age a row).
    pub async fn merchant_sql(&self, sql: &str, id: &str) {
        let pool = self.platform.merchant_db.pool().expect("pool");
        sqlx_execute(&pool, sql, id).await;
    }

    /// Runs SQL on consumer-api's database (to age a row).
    pub async fn consumer_sql(&self, sql: &str, id: &str) {
        let pool = self.platform.consumer_db.pool().expect("pool");
        sqlx_execute(&pool, sql, id).await;
    }
}

async fn sqlx_execute(pool: &sqlx::PgPool, sql: &str, id: &str) {
    let affected = sqlx::query(sql)
        .bind(id)
        .execute(pool)
        .await
        .expect("the statement runs")
        .rows_affected();
    assert_eq!(affected, 1, "{sql} changes one row");
}

pub fn yen(value: i64) -> Value {
    json!({ "value": value, "currency": "JPY" })
}

pub fn new_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub async fn json_of(response: Response) -> Value {
    response.json().await.expect("a JSON body")
}
