//! A client of the running test platform's TLS gateway (`paytool up` by scripts/test.sh), for the
//! tests that go the whole way a person's device goes: HTTPS, nginx, the supervised services.

use serde_json::Value;
use std::net::SocketAddr;

/// The password of every account the gateway tests register.
pub const PASSWORD: &str = "correct horse battery";

pub struct Gateway {
    pub client: reqwest::Client,
    pub port: u64,
}

impl Gateway {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self::from(std::net::Ipv4Addr::LOCALHOST)
    }

    /// A client whose connections come from `source` (any 127.x address is loopback), so that
    /// the rate-limit test has a client address of its own and leaves the others' budget alone.
    pub fn from(source: std::net::Ipv4Addr) -> Self {
        let status = paykit::testing::platform_status();
        let port = status["gateway"]["https_port"]
            .as_u64()
            .expect("the gateway's port");
        let ca = std::fs::read(
            status["gateway"]["ca_certificate"]
                .as_str()
                .expect("the CA"),
        )
        .expect("the CA is readable");
        let mut builder = reqwest::Client::builder()
            .local_address(std::net::IpAddr::V4(source))
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("the CA parses"));
        // The names resolve to loopback whether or not /etc/hosts has them.
        for host in [
            "api.local.test",
            "merchant.local.test",
            "sso.local.test",
            "wallet.local.test",
            "whoami.local.test",
        ] {
            let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
            builder = builder.resolve(host, address);
        }
        Self {
            client: builder.build().expect("a client"),
            port,
        }
    }

    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}.local.test:{}{path}", self.port)
    }

    pub async fn login(&self, email: &str) -> String {
        let status = paykit::testing::platform_status();
        let realm = status["connections"]["keycloak_realm"]
            .as_str()
            .expect("realm");
        let token: Value = self
            .client
            .post(self.url(
                "sso",
                &format!("/realms/{realm}/protocol/openid-connect/token"),
            ))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "paytool-cli"),
                ("username", email),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .expect("Keycloak answers through the gateway")
            .json()
            .await
            .expect("json");
        token["access_token"].as_str().expect("a token").to_string()
    }

    pub async fn post(
        &self,
        host: &str,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url(host, path))
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("sent")
    }

    /// Registers a merchant (a shop in Nara selling in JPY) and signs in as them.
    pub async fn register_merchant(&self) -> String {
        let email = crate::unique_email("till");
        let registered = self
            .post(
                "merchant",
                "/v1/merchants",
                None,
                serde_json::json!({ "name": "Till Shop", "city": "Nara", "country": "JP",
                    "mcc": "5411", "currency": "JPY", "email": email, "password": PASSWORD }),
            )
            .await;
        assert_eq!(registered.status(), 201);
        self.login(&email).await
    }

    /// Tops up the consumer's wallet with `yen`, then pays a dynamic QR of `price` yen that the
    /// merchant makes: the payment's answer (asserted 201) as JSON.
    pub async fn pay_a_dynamic_qr(
        &self,
        consumer: &str,
        merchant: &str,
        yen: i64,
        price: i64,
    ) -> Value {
        let topped = self
            .post(
                "api",
                "/v1/wallet/top-ups",
                Some(consumer),
                serde_json::json!({ "amount": { "value": yen, "currency": "JPY" } }),
            )
            .await;
        assert_eq!(topped.status(), 201);
        let request: Value = self
            .post(
                "merchant",
                "/v1/payment-requests",
                Some(merchant),
                serde_json::json!({ "amount": { "value": price, "currency": "JPY" } }),
            )
            .await
            .json()
            .await
            .expect("json");
        let paid = self
            .post(
                "api",
                "/v1/payments",
                Some(consumer),
                serde_json::json!({ "qr": request["payload"] }),
            )
            .await;
        assert_eq!(paid.status(), 201);
        paid.json().await.expect("json")
    }

    /// Registers a consumer and signs in as them.
    pub async fn register_consumer(&self) -> String {
        let email = crate::unique_email("limited");
        let registered = self
            .post(
                "api",
                "/v1/consumers",
                None,
                serde_json::json!({ "email": email, "password": PASSWORD, "name": "Lim Ited" }),
            )
            .await;
        assert_eq!(registered.status(), 201);
        self.login(&email).await
    }
}
