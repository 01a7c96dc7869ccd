//! Refunds: all or part of a payment back to the consumer's wallet, never more than was paid.

use super::{ledger_key, merchant_amount, merchant_of, AppState};
use crate::error::{answered, refused, Error};
use crate::payments;
use crate::records::Saga;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::routing::post;
use axum::{Json, Router};
use paykit::auth::Principal;
use paykit::contract::{NewRefund, SagaKind};
use paykit::idempotency::idempotent;
use paykit::money::Money;
use paykit::problem::JsonBody;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new().route(
        "/v1/refunds",
        post(refund).layer(from_fn_with_state(state, idempotent::<AppState>)),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Refund {
    payment_id: Uuid,
    amount: Money,
}

async fn refund(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Refund>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let merchant = merchant_of(&state, &principal).await?;
    let amount = merchant_amount(&merchant, body.amount)?;
    // The ledger is the authority on the payment: whose it is and what is left of it (the
    // transaction list may not have caught up with a payment made a moment ago).
    let found = state.orchestrator.saga(body.payment_id).await?;
    let payment = if found.is_success() {
        Some(Saga::from(answered::<paykit::contract::Saga>(&found)?))
    } else if found.status == 404 {
        None
    } else {
        return Err(refused(&found));
    };
    let payment = payment
        .filter(|p| {
            p.kind == SagaKind::Payment && p.credit_account_id == merchant.ledger_account_id
        })
        .ok_or(Error::NotFound("payment"))?;
    let left = payment.captured_amount - payment.refunded_amount;
    // The ledger enforces this too; saying it here gives the merchant the numbers.
    if amount.value > left {
        return Err(Error::Invalid(format!(
            "at most {} of this payment can still be refunded",
            Money::new(left, amount.currency)
        )));
    }
    let answer = state
        .orchestrator
        .refund(
            &NewRefund {
                payment_id: body.payment_id,
                amount,
            },
            &ledger_key("refund", &merchant, &headers),
        )
        .await?;
    let refund = payments::settled(&state, answered(&answer)?).await?;
    Ok((StatusCode::CREATED, Json(refund.transaction_view())))
}
