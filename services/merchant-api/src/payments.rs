//! Taking a payment through the orchestrator's saga, shared by QR payments and code charges.

use crate::error::{refused, Error};
use crate::http::{AppState, Merchant};
use crate::records::Saga;
use paykit::internal::PaymentOrder;
use paykit::money::Money;
use std::time::Duration;
use uuid::Uuid;

/// How many times an unfinished saga is read again before the caller is told to retry.
const SETTLE_POLLS_MAX: u32 = 10;
const SETTLE_POLL_INTERVAL_MS: u64 = 200;

/// Runs the payment saga wallet → merchant under `key` (a retry with the same key is the same
/// saga) and waits, boundedly, for it to complete. A refusal (402 insufficient funds, ...) is
/// passed on; a saga still under way after the wait is [`Error::Pending`].
pub async fn take(
    state: &AppState,
    merchant: &Merchant,
    wallet: Uuid,
    amount: Money,
    reference: Option<&str>,
    metadata: serde_json::Value,
    key: &str,
) -> Result<Saga, Error> {
    let answer = state
        .orchestrator
        .pay(
            &PaymentOrder {
                wallet,
                merchant_account: merchant.ledger_account_id,
                amount,
                fee_bps: state.payments.fee_bps,
                reference,
                metadata,
            },
            key,
        )
        .await?;
    if !answer.is_success() {
        return Err(refused(&answer));
    }
    settled(state, &answer.body).await
}

/// The saga once it is `completed`, reading it again while it is under way.
pub async fn settled(state: &AppState, view: &serde_json::Value) -> Result<Saga, Error> {
    let mut saga = Saga::from_view(view).ok_or_else(|| {
        Error::Upstream(anyhow::anyhow!(
            "the orchestrator's saga lacks fields: {view}"
        ))
    })?;
    for _ in 0..SETTLE_POLLS_MAX {
        if saga.state == "completed" {
            return Ok(saga);
        }
        tokio::time::sleep(Duration::from_millis(SETTLE_POLL_INTERVAL_MS)).await;
        let answer = state.orchestrator.saga(saga.id).await?;
        if !answer.is_success() {
            return Err(refused(&answer));
        }
        if let Some(failure) = answer.body.get("failure").filter(|f| !f.is_null()) {
            return Err(Error::Upstream(anyhow::anyhow!(
                "payment {} failed after it started: {failure}",
                saga.id
            )));
        }
        saga = Saga::from_view(&answer.body).ok_or_else(|| {
            Error::Upstream(anyhow::anyhow!("the orchestrator's saga lacks fields"))
        })?;
    }
    if saga.state == "completed" {
        return Ok(saga);
    }
    Err(Error::Pending(saga.id))
}
