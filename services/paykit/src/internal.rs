//! Calls from one service to another over loopback, authenticated with the caller's Keycloak
//! service account, and the orchestrator's API as every service calls it.
//!
//! The bodies sent and answered are the types of [`crate::contract`]. An answer keeps the
//! callee's status and JSON body, so that a refusal (a problem document) can be passed on to the
//! caller's own client unchanged (a 402 from the ledger stays a 402); a success is read as the
//! contract type the call promises with [`Answer::parse`].

use crate::contract::{NewAccount, NewPayment, NewRefund, NewTopUp, NewTransfer};
use crate::keycloak::{KeycloakError, ServiceAccount};
use crate::problem::Problem;
use crate::resilience::{Guard, Outcome, Policy, Unavailable, DEADLINE_HEADER};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use uuid::Uuid;

/// How long a call waits under the seeded weakness `paykit.weakness.call-without-deadline`.
const WEAK_CALL_TIMEOUT_MS: u64 = 120_000;

/// Where another service listens, e.g. `http://127.0.0.1:28101`.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceSettings {
    pub base_url: String,
}

/// What the other service answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The callee's refusal as a problem to pass on, when it answered 4xx with a problem
    /// document. Anything else (5xx, a body that is not a problem) is not the client's fault
    /// and is left to the caller to log and answer 500 for.
    pub fn refusal(&self) -> Option<Problem> {
        if !(400..500).contains(&self.status) {
            return None;
        }
        serde_json::from_value::<Problem>(self.body.clone()).ok()
    }

    /// The body of a success as the contract type `T` the call answers with. A body that is
    /// not one is the callee's fault, to log.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, anyhow::Error> {
        T::deserialize(&self.body).map_err(|error| {
            anyhow::anyhow!(
                "the service's answer is not a {}: {error}",
                std::any::type_name::<T>()
            )
        })
    }

    /// Why this answer is not a success: the callee's refusal to pass on (`Ok`), or a fault of
    /// the callee's to log (`Err`).
    pub fn failure(&self) -> Result<Problem, anyhow::Error> {
        self.refusal()
            .ok_or_else(|| anyhow::anyhow!("the service answered {}: {}", self.status, self.body))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Down, hung, or shedding load, after the retries its policy allows: a 503 to pass on.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    #[error("no service token: {0}")]
    Token(KeycloakError),
    /// One attempt's failure; the retry loop turns the last one into `Unavailable`.
    #[error("the service cannot be reached: {0}")]
    Transport(reqwest::Error),
}

/// Another service, called as this service's account, under the bounds of
/// [`crate::resilience`]: a deadline, retries of what is idempotent, a breaker and a bulkhead.
#[derive(Clone)]
pub struct ServiceClient {
    settings: ServiceSettings,
    account: Arc<ServiceAccount>,
    guard: Arc<Guard>,
    http: reqwest::Client,
}

/// Whether a call may be sent again after it failed: reads, and writes with an
/// `Idempotency-Key` (or an id of the caller's choosing), may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    Safe,
    Never,
}

impl ServiceClient {
    /// `destination` names the callee in metrics, `/health/ready` and 503 problems.
    pub fn new(
        destination: &'static str,
        settings: ServiceSettings,
        account: Arc<ServiceAccount>,
    ) -> Self {
        Self {
            settings,
            account,
            guard: Guard::new(destination, Policy::SERVICE),
            // No idle connections kept: calls go through the gateway's internal listener, and
            // a gateway reload (an instance joining or leaving, a rollout) closes idle kept-alive
            // connections; a call sent on one at that moment would be lost on the wire, and a
            // call that may not be repeated would fail. A new loopback connection per call costs
            // a few tens of microseconds.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap_or_default(),
        }
    }

    /// This destination's breaker, budget and bulkhead (for `/health/ready`).
    pub fn guard(&self) -> Arc<Guard> {
        Arc::clone(&self.guard)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.base_url)
    }

    async fn send(
        &self,
        repeat: Repeat,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Answer, CallError> {
        let answered = self
            .guard
            .call(repeat == Repeat::Safe, |timeout| {
                // Seeded weakness (chaos bench): the call's own bound forgotten.
                let timeout = if crate::failpoints::weak("paykit.weakness.call-without-deadline") {
                    std::time::Duration::from_millis(WEAK_CALL_TIMEOUT_MS)
                } else {
                    timeout
                };
                // The callee's span continues this one: one trace across the services.
                let mut headers = reqwest::header::HeaderMap::new();
                crate::telemetry::inject_http(&mut headers);
                let request = build()
                    .headers(headers)
                    .header(DEADLINE_HEADER, timeout.as_millis().to_string())
                    .timeout(timeout);
                async move {
                    let token = match self.account.token().await {
                        Ok(token) => token,
                        // Keycloak's trouble, not the callee's: the breaker is not told.
                        Err(error) => return (Outcome::Answered, Err(CallError::Token(error))),
                    };
                    match request.bearer_auth(token).send().await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let body = response.json::<Value>().await.unwrap_or(Value::Null);
                            let outcome = if matches!(status, 502..=504) {
                                Outcome::Failed
                            } else {
                                Outcome::Answered
                            };
                            (outcome, Ok(Answer { status, body }))
                        }
                        Err(error) => (Outcome::Failed, Err(CallError::Transport(error))),
                    }
                }
            })
            .await?;
        match answered {
            Err(CallError::Token(KeycloakError::Unreachable(error))) => {
                Err(CallError::Unavailable(Unavailable {
                    destination: "keycloak",
                    reason: format!("no service token: {error}"),
                    retry_after_s: crate::resilience::RETRY_AFTER_DEFAULT_S,
                }))
            }
            other => other,
        }
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Answer, CallError> {
        self.send(Repeat::Safe, || self.http.get(self.url(path)).query(query))
            .await
    }

    /// A POST; `idempotency_key` for the ones that move money, which makes it safe to repeat.
    pub async fn post<B: Serialize + ?Sized>(
        &self,
        path: &str,
        idempotency_key: Option<&str>,
        body: &B,
    ) -> Result<Answer, CallError> {
        let repeat = if idempotency_key.is_some() {
            Repeat::Safe
        } else {
            Repeat::Never
        };
        self.post_with(path, idempotency_key, body, repeat).await
    }

    /// A POST whose repetition the caller vouches for (`Repeat::Safe` for a create with an id
    /// of the caller's choosing).
    pub async fn post_with<B: Serialize + ?Sized>(
        &self,
        path: &str,
        idempotency_key: Option<&str>,
        body: &B,
        repeat: Repeat,
    ) -> Result<Answer, CallError> {
        self.send(repeat, || {
            let mut request = self.http.post(self.url(path)).json(body);
            if let Some(key) = idempotency_key {
                request = request.header("Idempotency-Key", key);
            }
            request
        })
        .await
    }
}

/// The orchestrator: accounts, sagas and the ledger.
#[derive(Clone)]
pub struct Orchestrator(ServiceClient);

impl Orchestrator {
    pub fn new(settings: ServiceSettings, account: Arc<ServiceAccount>) -> Self {
        Self(ServiceClient::new("orchestrator", settings, account))
    }

    /// The orchestrator's breaker, budget and bulkhead (for `/health/ready`).
    pub fn guard(&self) -> Arc<Guard> {
        self.0.guard()
    }

    /// Opens a `wallet` or `merchant` account with the id the caller chose (a retry of the
    /// same id and currency answers with the account already open): an
    /// [`AccountWithBalance`](crate::contract::AccountWithBalance).
    pub async fn open_account(&self, account: &NewAccount) -> Result<Answer, CallError> {
        // The id is the caller's: a repeat opens nothing twice.
        self.0
            .post_with("/v1/accounts", None, account, Repeat::Safe)
            .await
    }

    /// An [`AccountWithBalance`](crate::contract::AccountWithBalance).
    pub async fn account(&self, id: Uuid) -> Result<Answer, CallError> {
        self.0.get(&format!("/v1/accounts/{id}"), &[]).await
    }

    /// One page of an account's transfers, newest first: a
    /// [`TransferPage`](crate::contract::TransferPage).
    pub async fn history(
        &self,
        account: Uuid,
        limit: i64,
        cursor: Option<&str>,
    ) -> Result<Answer, CallError> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_string()));
        }
        self.0
            .get(&format!("/v1/accounts/{account}/transfers"), &query)
            .await
    }

    // Every saga-starting call answers with a [`Saga`](crate::contract::Saga).

    pub async fn top_up(
        &self,
        top_up: &NewTopUp,
        idempotency_key: &str,
    ) -> Result<Answer, CallError> {
        self.0
            .post("/v1/top-ups", Some(idempotency_key), top_up)
            .await
    }

    pub async fn transfer(
        &self,
        transfer: &NewTransfer,
        idempotency_key: &str,
    ) -> Result<Answer, CallError> {
        self.0
            .post("/v1/transfers", Some(idempotency_key), transfer)
            .await
    }

    /// A merchant payment saga: reserve on the wallet, then capture to the merchant.
    pub async fn pay(
        &self,
        payment: &NewPayment,
        idempotency_key: &str,
    ) -> Result<Answer, CallError> {
        self.0
            .post("/v1/payments", Some(idempotency_key), payment)
            .await
    }

    /// A payment or refund saga, as it is now.
    pub async fn saga(&self, id: Uuid) -> Result<Answer, CallError> {
        self.0.get(&format!("/v1/payments/{id}"), &[]).await
    }

    pub async fn refund(
        &self,
        refund: &NewRefund,
        idempotency_key: &str,
    ) -> Result<Answer, CallError> {
        self.0
            .post("/v1/refunds", Some(idempotency_key), refund)
            .await
    }
}
