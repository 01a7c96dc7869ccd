//! Taking a payment through the orchestrator's saga, shared by QR payments and code charges.

use crate::error::{answered, Error};
use crate::records::Saga;
use crate::state::{AppState, Merchant};
use paykit::contract::{self, NewPayment, SagaState};
use paykit::money::Money;
use std::time::Duration;
use uuid::Uuid;

/// How many times an unfinished saga is read again before the caller is told to retry.
const SETTLE_POLLS_MAX: u32 = 10;
const SETTLE_POLL_INTERVAL_MS: u64 = 200;

/// Runs the payment saga wallet → merchant under `key` (a retry with the same key is the same
/// saga) and waits, boundedly, for it to complete. A refusal (402 insufficient funds, ...) is
/// passed on; a saga still under way after the wait is [`Error::Pending`]. With the saga comes
/// the payer's wallet balance the orchestrator answered, when its answer was final.
pub async fn take(
    state: &AppState,
    merchant: &Merchant,
    wallet: Uuid,
    amount: Money,
    reference: Option<&str>,
    metadata: serde_json::Value,
    key: &str,
) -> Result<(Saga, Option<contract::Balance>), Error> {
    let answer = state
        .orchestrator
        .pay(
            &NewPayment {
                wallet_account_id: wallet,
                merchant_account_id: merchant.ledger_account_id,
                amount,
                fee_bps: state.payments.fee_bps,
                reference: reference.map(str::to_string),
                metadata: Some(metadata),
            },
            key,
        )
        .await?;
    let started: contract::Saga = answered(&answer)?;
    // A balance read before the saga ended would not be the one after it.
    let balance = started
        .wallet_balance
        .filter(|_| started.state == SagaState::Completed);
    Ok((settled(state, started).await?, balance))
}

/// The saga once it is `completed`, reading it again while it is under way.
pub async fn settled(state: &AppState, started: contract::Saga) -> Result<Saga, Error> {
    let mut saga = Saga::from(started);
    for _ in 0..SETTLE_POLLS_MAX {
        if saga.state == SagaState::Completed {
            return Ok(saga);
        }
        tokio::time::sleep(Duration::from_millis(SETTLE_POLL_INTERVAL_MS)).await;
        let now: contract::Saga = answered(&state.orchestrator.saga(saga.id).await?)?;
        if let Some(failure) = &now.failure {
            return Err(Error::Upstream(anyhow::anyhow!(
                "payment {} failed after it started: {}: {}",
                saga.id,
                failure.type_slug,
                failure.detail
            )));
        }
        saga = Saga::from(now);
    }
    if saga.state == SagaState::Completed {
        return Ok(saga);
    }
    Err(Error::Pending(saga.id))
}
