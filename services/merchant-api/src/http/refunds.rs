//! Refunds: all or part of a payment back to the consumer's wallet, never more than was paid.

use super::{ledger_key, merchant_amount, merchant_of, AppState};
use crate::error::{refused, Error};
use crate::payments;
use crate::records::record_refund;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::routing::post;
use axum::{Json, Router};
use paykit::auth::Principal;
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
    let payment: Option<(i64, i64)> = sqlx::query_as(
        "SELECT amount_value, refunded_value FROM transactions WHERE id = $1 AND merchant_id = $2 AND kind = 'payment'",
    )
    .bind(body.payment_id)
    .bind(merchant.id)
    .fetch_optional(&state.pool)
    .await?;
    let (paid, refunded) = payment.ok_or(Error::NotFound("payment"))?;
    // The ledger enforces this too; saying it here gives the merchant the numbers.
    if amount.value > paid - refunded {
        return Err(Error::Invalid(format!(
            "at most {} of this payment can still be refunded",
            Money::new(paid - refunded, amount.currency)
        )));
    }
    let answer = state
        .orchestrator
        .refund(
            body.payment_id,
            amount,
            &ledger_key("refund", &merchant, &headers),
        )
        .await?;
    if !answer.is_success() {
        return Err(refused(&answer));
    }
    let saga = payments::settled(&state, &answer.body).await?;
    let refund = record_refund(&state.pool, &merchant, body.payment_id, &saga).await?;
    Ok((StatusCode::CREATED, Json(refund)))
}
