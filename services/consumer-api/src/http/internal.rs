//! Calls from other services of the platform, never from the internet (the gateway does not
//! route `/internal/`): merchant-api redeems the payment code a merchant scanned.

use super::payment_codes::code_hash;
use super::AppState;
use crate::error::Error;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use paykit::auth::Principal;
use paykit::contract::{CodeRedemption, RedeemedCode};
use paykit::money::Currency;
use paykit::problem::JsonBody;

/// The client role merchant-api's service account holds to redeem codes.
pub const ROLE_REDEEM: &str = "payment-codes-redeem";
const CLIENT: &str = "consumer-api";
const KEY_MAX_CHARS: usize = 255;

pub fn router() -> Router<AppState> {
    Router::new().route("/internal/v1/payment-codes/redemptions", post(redeem))
}

/// Marks a code used for the merchant's charge and says whose wallet pays. The same charge
/// (same Idempotency-Key) redeeming again gets the same answer; any other is refused with 410.
async fn redeem(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CodeRedemption>,
) -> Result<(StatusCode, Json<RedeemedCode>), Error> {
    if !principal.has_client_role(CLIENT, ROLE_REDEEM) {
        return Err(Error::Forbidden(ROLE_REDEEM));
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= KEY_MAX_CHARS)
        .ok_or_else(|| {
            Error::Invalid("an Idempotency-Key of 1 to 255 characters is required".into())
        })?;
    let hash = code_hash(body.code.trim());
    let row = sqlx::query!(
        r#"SELECT consumer_id, wallet_account_id, currency::text AS "currency!", expires_at <= now() AS "expired!", redeemed_key FROM payment_codes WHERE code_sha256 = $1"#,
        &hash
    )
    .fetch_optional(&state.pool)
    .await?
    .ok_or(Error::PaymentCodeUnknown)?;
    // Expired by the database's clock, the one every instance shares (not this instance's).
    let (consumer, wallet, currency, expired, redeemed_key) = (
        row.consumer_id,
        row.wallet_account_id,
        row.currency,
        row.expired,
        row.redeemed_key,
    );
    let wallet_currency = Currency::parse(&currency)
        .map_err(|e| Error::Upstream(anyhow::anyhow!("stored currency: {e}")))?;
    let answer = || {
        (
            StatusCode::CREATED,
            Json(RedeemedCode {
                consumer_id: consumer,
                wallet_account_id: wallet,
                currency: wallet_currency,
            }),
        )
    };
    match redeemed_key.as_deref() {
        Some(earlier) if earlier == key => return Ok(answer()),
        Some(_) => return Err(Error::PaymentCodeUsed),
        None => {}
    }
    if expired {
        return Err(Error::PaymentCodeExpired);
    }
    if body.amount.currency.as_str() != currency {
        return Err(Error::Invalid(format!(
            "this customer's wallet keeps {currency}; it cannot pay {}",
            body.amount
        )));
    }
    let redeemed = sqlx::query!(
        "UPDATE payment_codes SET redeemed_at = now(), redeemed_key = $2, redeemed_by_merchant = $3
         WHERE code_sha256 = $1 AND redeemed_at IS NULL AND expires_at > now()",
        &hash,
        key,
        body.merchant_id
    )
    .execute(&state.pool)
    .await?
    .rows_affected()
        == 1;
    if !redeemed {
        // Another charge took it between the read and the update, or it just expired.
        return Err(Error::PaymentCodeUsed);
    }
    Ok(answer())
}
