//! Sending money to another consumer, by email or by id.

use super::wallet::{consumer_of, ledger_key, wallet_view};
use super::AppState;
use crate::error::{ledger_refusal, Error};
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
use serde_json::{json, Value};
use uuid::Uuid;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new().route(
        "/v1/transfers",
        post(send).layer(from_fn_with_state(state, idempotent::<AppState>)),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, untagged)]
enum Recipient {
    Email { email: String },
    Id { consumer_id: Uuid },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Send {
    to: Recipient,
    amount: Money,
}

async fn send(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Send>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let sender = consumer_of(&state, &principal).await?;
    let amount = body
        .amount
        .positive()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let recipient: Option<(Uuid, Uuid, String)> = match &body.to {
        Recipient::Email { email } => {
            sqlx::query_as("SELECT id, wallet_account_id, currency::text FROM consumers WHERE lower(email) = lower($1)")
                .bind(email.trim())
                .fetch_optional(&state.pool)
                .await?
        }
        Recipient::Id { consumer_id } => {
            sqlx::query_as("SELECT id, wallet_account_id, currency::text FROM consumers WHERE id = $1")
                .bind(consumer_id)
                .fetch_optional(&state.pool)
                .await?
        }
    };
    let (recipient_id, recipient_wallet, recipient_currency) =
        recipient.ok_or(Error::UnknownRecipient)?;
    if recipient_id == sender.id {
        return Err(Error::Invalid("you cannot send money to yourself".into()));
    }
    if amount.currency != sender.currency || recipient_currency != sender.currency.as_str() {
        return Err(Error::Invalid(format!(
            "this transfer is in {}, your wallet keeps {} and the recipient's {recipient_currency}",
            amount.currency, sender.currency
        )));
    }
    let answer = state
        .orchestrator
        .transfer(
            sender.wallet,
            recipient_wallet,
            amount,
            &ledger_key(&sender, &headers),
        )
        .await?;
    if !answer.is_success() {
        return Err(ledger_refusal(&answer));
    }
    let wallet = wallet_view(&state, &sender).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "id": answer.body["id"], "status": answer.body["state"], "amount": amount, "to": { "consumer_id": recipient_id }, "wallet": wallet }),
        ),
    ))
}
