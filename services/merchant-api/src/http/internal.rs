//! Calls from other services of the platform, never from the internet (the gateway does not
//! route `/internal/`): consumer-api pays a payment request for a signed-in consumer.

use super::AppState;
use crate::error::Error;
use crate::payments;
use crate::state::Merchant;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use paykit::auth::Principal;
use paykit::contract::{MerchantRef, RequestPaid, RequestPayment, SagaState};
use paykit::money::{Currency, Money};
use paykit::problem::JsonBody;
use serde_json::json;
use uuid::Uuid;

/// The client role consumer-api's service account holds to pay requests for consumers.
pub const ROLE_PAY: &str = "payment-requests-pay";
const CLIENT: &str = "merchant-api";
const KEY_MAX_CHARS: usize = 255;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/internal/v1/payment-requests/{id}/payments",
        post(pay_request),
    )
}

/// A payment request as paying it needs it.
struct RequestState {
    merchant_id: Uuid,
    kind: String,
    amount_value: Option<i64>,
    currency: String,
    reference: Option<String>,
    status: String,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    paying_key: Option<String>,
    payment_id: Option<Uuid>,
    // The merchant's, read in the same query (a merchant's row never changes but for its
    // event counter, which is not read here).
    name: String,
    city: String,
    country: String,
    mcc: String,
    merchant_currency: String,
    ledger_account_id: Uuid,
}

fn key_of(headers: &HeaderMap) -> Result<String, Error> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= KEY_MAX_CHARS)
        .map(str::to_string)
        .ok_or_else(|| {
            Error::Invalid("an Idempotency-Key of 1 to 255 characters is required".into())
        })
}

/// Pays a payment request. A dynamic request is claimed for the payer's key first, so that two
/// payers cannot both pay it and a retry of the same payer goes on where it stopped; the saga's
/// own key makes the ledger side idempotent too.
async fn pay_request(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    JsonBody(body): JsonBody<RequestPayment>,
) -> Result<(StatusCode, Json<RequestPaid>), Error> {
    if !principal.has_client_role(CLIENT, ROLE_PAY) {
        return Err(Error::Forbidden(ROLE_PAY));
    }
    let key = key_of(&headers)?;
    let request = sqlx::query_as!(
        RequestState,
        r#"SELECT r.merchant_id, r.kind, r.amount_value, r.currency::text AS "currency!", r.reference, r.status, r.expires_at, r.paying_key, r.payment_id,
                  m.name, m.city, m.country::text AS "country!", m.mcc::text AS "mcc!", m.currency::text AS "merchant_currency!", m.ledger_account_id
           FROM payment_requests r JOIN merchants m ON m.id = r.merchant_id WHERE r.id = $1"#,
        id
    )
    .fetch_optional(&state.pool)
    .await?;
    let RequestState {
        merchant_id,
        kind,
        amount_value: fixed_amount,
        currency,
        reference,
        status,
        expires_at,
        paying_key,
        payment_id,
        name,
        city,
        country,
        mcc,
        merchant_currency,
        ledger_account_id,
    } = request.ok_or(Error::NotFound("payment request"))?;
    if merchant_id != body.merchant_id {
        return Err(Error::NotFound("payment request"));
    }
    // The request and its merchant in one round trip (it was two).
    let merchant = Merchant {
        id: merchant_id,
        name,
        city,
        country,
        mcc,
        currency: merchant_currency,
        ledger_account_id,
    };
    let currency = Currency::parse(&currency).map_err(|e| Error::Upstream(e.into()))?;
    let amount = match (fixed_amount, body.amount) {
        (Some(fixed), Some(given)) if given != Money::new(fixed, currency) => {
            return Err(Error::Invalid(format!(
                "this QR code asks for {}; an amount of {given} cannot be paid with it",
                Money::new(fixed, currency)
            )))
        }
        (Some(fixed), _) => Money::new(fixed, currency),
        (None, Some(given)) => given
            .positive()
            .map_err(|e| Error::Invalid(format!("amount: {e}")))?,
        (None, None) => {
            return Err(Error::Invalid(
                "this QR code has no amount: say how much to pay".into(),
            ))
        }
    };
    if amount.currency != currency {
        return Err(Error::Invalid(format!(
            "this merchant is paid in {currency}, not {}",
            amount.currency
        )));
    }
    let mine = paying_key.as_deref() == Some(key.as_str());
    if kind == "dynamic" && !mine {
        if status == "paid" || payment_id.is_some() {
            return Err(Error::AlreadyPaid);
        }
        if let Some(at) = expires_at.filter(|at| *at <= chrono::Utc::now()) {
            return Err(Error::Expired(at));
        }
        let claimed = sqlx::query!(
            "UPDATE payment_requests SET paying_key = $2 WHERE id = $1 AND status = 'open' AND paying_key IS NULL AND expires_at > now()",
            id,
            &key
        )
        .execute(&state.pool)
        .await?
        .rows_affected()
            == 1;
        if !claimed {
            return Err(Error::BeingPaid);
        }
    }
    let saga_key = format!("pay:{id}:{key}");
    let metadata =
        json!({ "channel": "qr", "payment_request_id": id, "payer_ref": body.payer_ref });
    let outcome = payments::take(
        &state,
        &merchant,
        body.wallet_account_id,
        amount,
        reference.as_deref(),
        metadata,
        &saga_key,
    )
    .await;
    let (saga, wallet_balance) = match outcome {
        Ok(taken) => taken,
        Err(error) => {
            // A refusal (no funds, say) frees a dynamic request for another try or payer; an
            // unknown outcome keeps the claim, so that only this payer's retry goes on.
            if kind == "dynamic" && matches!(error, Error::Refused(_)) {
                sqlx::query!(
                    "UPDATE payment_requests SET paying_key = NULL WHERE id = $1 AND paying_key = $2 AND status = 'open'",
                    id,
                    &key
                )
                .execute(&state.pool)
                .await?;
            }
            return Err(error);
        }
    };
    if kind == "dynamic" {
        // The request is paid now; the transaction list learns of it from the ledger's event.
        sqlx::query!(
            "UPDATE payment_requests SET status = 'paid', payment_id = $2 WHERE id = $1",
            id,
            saga.id
        )
        .execute(&state.pool)
        .await?;
    }
    Ok((
        StatusCode::CREATED,
        Json(RequestPaid {
            id: saga.id,
            status: SagaState::Completed,
            amount: Money::new(saga.amount, currency),
            merchant: MerchantRef {
                id: merchant.id,
                name: merchant.name,
            },
            payment_request_id: id,
            reference,
            created_at: saga.created_at,
            refunded_amount: saga.refunded_amount,
            wallet_balance,
        }),
    ))
}
