//! The orchestrator's internal API, called with this service's Keycloak service account.

use paykit::keycloak::ServiceAccount;
use paykit::money::Money;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use uuid::Uuid;

#[derive(Debug, Clone, Deserialize)]
pub struct OrchestratorSettings {
    /// The orchestrator on loopback, e.g. `http://127.0.0.1:28101`.
    pub base_url: String,
}

/// What the orchestrator answered: its status and its JSON body (a problem document when it
/// refused), so that callers can pass a refusal on unchanged.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    #[error("the orchestrator cannot be reached: {0}")]
    Unreachable(#[from] reqwest::Error),
    #[error("no service token: {0}")]
    Token(#[from] paykit::keycloak::KeycloakError),
}

#[derive(Clone)]
pub struct Orchestrator {
    settings: OrchestratorSettings,
    account: Arc<ServiceAccount>,
}

impl Orchestrator {
    pub fn new(settings: OrchestratorSettings, account: Arc<ServiceAccount>) -> Self {
        Self { settings, account }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, OrchestratorError> {
        let response = request
            .bearer_auth(self.account.token().await?)
            .send()
            .await?;
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.base_url)
    }

    pub async fn open_wallet(
        &self,
        id: Uuid,
        currency: &str,
        owner_ref: &str,
    ) -> Result<Answer, OrchestratorError> {
        let body =
            json!({ "id": id, "kind": "wallet", "currency": currency, "owner_ref": owner_ref });
        self.send(
            self.account
                .http()
                .post(self.url("/v1/accounts"))
                .json(&body),
        )
        .await
    }

    pub async fn account(&self, id: Uuid) -> Result<Answer, OrchestratorError> {
        self.send(
            self.account
                .http()
                .get(self.url(&format!("/v1/accounts/{id}"))),
        )
        .await
    }

    pub async fn transfer(
        &self,
        from: Uuid,
        to: Uuid,
        amount: Money,
        idempotency_key: &str,
    ) -> Result<Answer, OrchestratorError> {
        let body = json!({ "from_account_id": from, "to_account_id": to, "amount": amount });
        self.send(
            self.account
                .http()
                .post(self.url("/v1/transfers"))
                .header("Idempotency-Key", idempotency_key)
                .json(&body),
        )
        .await
    }

    /// One page of an account's transfers, newest first.
    pub async fn history(
        &self,
        account: Uuid,
        limit: i64,
        cursor: Option<&str>,
    ) -> Result<Answer, OrchestratorError> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_string()));
        }
        self.send(
            self.account
                .http()
                .get(self.url(&format!("/v1/accounts/{account}/transfers")))
                .query(&query),
        )
        .await
    }

    pub async fn top_up(
        &self,
        wallet: Uuid,
        amount: Money,
        idempotency_key: &str,
    ) -> Result<Answer, OrchestratorError> {
        let body = json!({ "wallet_account_id": wallet, "amount": amount });
        self.send(
            self.account
                .http()
                .post(self.url("/v1/top-ups"))
                .header("Idempotency-Key", idempotency_key)
                .json(&body),
        )
        .await
    }
}
