//! Charges: the merchant scans a consumer's one-time payment code (consumer-presented mode) and
//! takes the amount from the consumer's wallet.

use super::payment_requests::check_reference;
use super::{ledger_key, merchant_amount, merchant_of, AppState};
use crate::error::{answered, Error};
use crate::payments;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::routing::post;
use axum::{Json, Router};
use paykit::auth::Principal;
use paykit::contract::{CodeRedemption, RedeemedCode};
use paykit::idempotency::idempotent;
use paykit::money::Money;
use paykit::problem::JsonBody;
use serde::Deserialize;
use serde_json::{json, Value};

/// Consumer codes are 18 digits starting with this (see consumer-api's payment codes).
const CODE_PREFIX: &str = "28";
const CODE_DIGITS: usize = 18;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new().route(
        "/v1/charges",
        post(charge).layer(from_fn_with_state(state, idempotent::<AppState>)),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Charge {
    payment_code: String,
    amount: Money,
    reference: Option<String>,
}

async fn charge(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Charge>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let merchant = merchant_of(&state, &principal).await?;
    let amount = merchant_amount(&merchant, body.amount)?;
    let reference = check_reference(body.reference.as_deref())?;
    let code = body.payment_code.trim();
    if code.len() != CODE_DIGITS
        || !code.starts_with(CODE_PREFIX)
        || !code.chars().all(|c| c.is_ascii_digit())
    {
        return Err(Error::Invalid(format!(
            "payment_code must be the {CODE_DIGITS} digits starting with {CODE_PREFIX} that the customer's wallet shows"
        )));
    }
    let key = ledger_key("charge", &merchant, &headers);
    // consumer-api marks the code used (once per key) and says whose wallet it is.
    let redemption = state
        .consumer_api
        .post(
            "/internal/v1/payment-codes/redemptions",
            Some(&key),
            &CodeRedemption {
                code: code.to_string(),
                merchant_id: merchant.id,
                amount,
            },
        )
        .await?;
    let redeemed: RedeemedCode = answered(&redemption)?;
    let wallet = redeemed.wallet_account_id;
    let payer = format!("consumer:{}", redeemed.consumer_id);
    let metadata = json!({ "channel": "code", "payer_ref": payer });
    let (saga, _) = payments::take(
        &state,
        &merchant,
        wallet,
        amount,
        reference.as_deref(),
        metadata,
        &key,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(saga.transaction_view())))
}
