//! Paying a merchant by scanning its QR code (merchant-presented mode), and reading a payment.
//!
//! The scanned text is decoded and checked here (TLV, CRC, mandatory fields); the payment
//! request it names is paid through merchant-api, which owns requests and runs the saga.

use super::wallet::{consumer_of, ledger_key, wallet_after};
use super::AppState;
use crate::error::{answered, Error};
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use paykit::auth::Principal;
use paykit::contract::{RequestPaid, RequestPayment, Saga};
use paykit::idempotency::{idempotent, Claim};
use paykit::money::{Currency, Money};
use paykit::problem::JsonBody;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/v1/payments",
            post(pay).layer(from_fn_with_state(state, idempotent::<AppState>)),
        )
        .route("/v1/payments/{id}", get(read))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pay {
    /// The EMVCo payload the consumer scanned.
    qr: String,
    /// Only for a static QR code, which carries no amount.
    amount: Option<Money>,
}

/// What a scanned payload asks for: whose request, which one, and how much if it says.
struct Scanned {
    merchant_id: Uuid,
    payment_request_id: Uuid,
    amount: Option<Money>,
}

fn scan(qr: &str) -> Result<Scanned, Error> {
    let payload = emvco::decode(qr.trim()).map_err(|e| Error::MalformedQr(e.to_string()))?;
    let account = payload.platform_account(emvco::PLATFORM_GUI).ok_or_else(|| {
        Error::Invalid(
            "this QR code is for another payment scheme; only paytool merchants' codes can be paid here"
                .into(),
        )
    })?;
    let id = |value: Option<String>, what: &str| {
        value
            .and_then(|v| Uuid::parse_str(&v).ok())
            .ok_or_else(|| Error::MalformedQr(format!("its {what} is missing or not an id")))
    };
    let merchant_id = id(account.merchant_id, "merchant id")?;
    let payment_request_id = id(account.payment_request_id, "payment request id")?;
    let amount = match payload.amount {
        None => None,
        Some(amount) => {
            let currency = payload
                .currency_alpha
                .and_then(|alpha| Currency::parse(alpha).ok())
                .ok_or_else(|| Error::MalformedQr("its currency is not one we know".into()))?;
            let value = amount
                .minor_units
                .ok_or_else(|| Error::MalformedQr("its amount cannot be read".into()))?;
            Some(Money::new(value, currency))
        }
    };
    Ok(Scanned {
        merchant_id,
        payment_request_id,
        amount,
    })
}

async fn pay(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(claim): Extension<Claim>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Pay>,
) -> Result<Response, Error> {
    let consumer = consumer_of(&state, &principal).await?;
    let scanned = scan(&body.qr)?;
    let amount = match (scanned.amount, body.amount) {
        (Some(asked), Some(given)) if asked != given => {
            return Err(Error::Invalid(format!(
                "this QR code asks for {asked}; leave amount out or send exactly that"
            )))
        }
        (Some(asked), _) => asked,
        (None, Some(given)) => given
            .positive()
            .map_err(|e| Error::Invalid(format!("amount: {e}")))?,
        (None, None) => {
            return Err(Error::Invalid(
                "this QR code has no amount: say how much to pay in amount".into(),
            ))
        }
    };
    if amount.currency != consumer.currency {
        return Err(Error::Invalid(format!(
            "your wallet keeps {}; it cannot pay {amount}",
            consumer.currency
        )));
    }
    let answer = state
        .merchant_api
        .post(
            &format!(
                "/internal/v1/payment-requests/{}/payments",
                scanned.payment_request_id
            ),
            Some(&ledger_key(&consumer, &headers)),
            &RequestPayment {
                merchant_id: scanned.merchant_id,
                wallet_account_id: consumer.wallet,
                payer_ref: format!("consumer:{}", consumer.id),
                amount: Some(amount),
            },
        )
        .await?;
    let payment: RequestPaid = answered(&answer)?;
    let id = payment.id;
    let merchant_name = payment.merchant.name.as_str();
    // Everything the answer shows came with merchant-api's answer.
    let mut view = paid_view(&consumer.currency, &payment, scanned.merchant_id);
    view["wallet"] = wallet_after(&state, &consumer, payment.wallet_balance.as_ref()).await?;
    let body = Bytes::from(serde_json::to_vec(&view).map_err(|e| Error::Upstream(e.into()))?);
    // The payment's record and the answer stored under the Idempotency-Key commit together:
    // one commit, not one for each.
    let mut tx = state.pool.begin().await?;
    // The payment's own time, so that reading it later shows what this answer showed.
    sqlx::query!(
        "INSERT INTO payments (id, consumer_id, merchant_id, merchant_name, payment_request_id, amount_value, currency, reference, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
        id,
        consumer.id,
        scanned.merchant_id,
        merchant_name,
        scanned.payment_request_id,
        amount.value,
        amount.currency.as_str(),
        payment.reference.as_deref(),
        payment.created_at,
    )
    .execute(&mut *tx)
    .await?;
    Ok(claim
        .commit_with_answer(tx, StatusCode::CREATED, body)
        .await?)
}

fn status_of(amount: i64, refunded: i64) -> &'static str {
    match refunded {
        0 => "completed",
        r if r >= amount => "refunded",
        _ => "partially_refunded",
    }
}

/// A payment as merchant-api answered its paying: the same shape as [`payment_view`].
fn paid_view(currency: &Currency, payment: &RequestPaid, merchant_id: Uuid) -> Value {
    let (amount, refunded) = (payment.amount.value, payment.refunded_amount);
    json!({
        "id": payment.id,
        "status": status_of(amount, refunded),
        "amount": Money::new(amount, *currency),
        "refunded": Money::new(refunded, *currency),
        "merchant": { "id": merchant_id, "name": payment.merchant.name },
        "payment_request_id": payment.payment_request_id,
        "reference": payment.reference,
        "created_at": payment.created_at,
    })
}

/// A payment of the consumer's: what was paid to whom, and what the ledger says of it now
/// (refunds included).
async fn payment_view(state: &AppState, currency: &Currency, id: Uuid) -> Result<Value, Error> {
    let row = sqlx::query!(
        "SELECT merchant_id, merchant_name, payment_request_id, amount_value, reference, created_at FROM payments WHERE id = $1",
        id
    )
    .fetch_one(&state.pool)
    .await?;
    let (merchant_id, merchant_name, request, amount, reference, created_at) = (
        row.merchant_id,
        row.merchant_name,
        row.payment_request_id,
        row.amount_value,
        row.reference,
        row.created_at,
    );
    let saga: Saga = answered(&state.orchestrator.saga(id).await?)?;
    let refunded = saga.refunded_amount;
    Ok(json!({
        "id": id,
        "status": status_of(amount, refunded),
        "amount": Money::new(amount, *currency),
        "refunded": Money::new(refunded, *currency),
        "merchant": { "id": merchant_id, "name": merchant_name },
        "payment_request_id": request,
        "reference": reference,
        "created_at": created_at,
    }))
}

async fn read(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<Value>, Error> {
    let consumer = consumer_of(&state, &principal).await?;
    let mine: bool = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM payments WHERE id = $1 AND consumer_id = $2) AS "exists!""#,
        id,
        consumer.id
    )
    .fetch_one(&state.pool)
    .await?;
    if !mine {
        return Err(Error::PaymentNotFound);
    }
    Ok(Json(payment_view(&state, &consumer.currency, id).await?))
}
