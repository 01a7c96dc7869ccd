//! Sending money to another consumer, by email or by id.

use super::wallet::{consumer_of, ledger_key, wallet_after};
use super::AppState;
use crate::error::{answered, Error};
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::routing::post;
use axum::{Json, Router};
use paykit::auth::Principal;
use paykit::contract::{NewTransfer, Saga};
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
    /// What the sender writes with it; the recipient sees it in their transactions.
    note: Option<String>,
}

/// A note is a line of text, as long as a text message.
pub const NOTE_MAX_CHARS: usize = 140;

fn check_note(note: Option<&str>) -> Result<Option<String>, Error> {
    let Some(note) = note.map(str::trim) else {
        return Ok(None);
    };
    if note.is_empty()
        || note.chars().count() > NOTE_MAX_CHARS
        || note.chars().any(char::is_control)
    {
        return Err(Error::Invalid(format!(
            "note must be 1 to {NOTE_MAX_CHARS} characters on one line"
        )));
    }
    Ok(Some(note.to_string()))
}

async fn send(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Send>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let sender = consumer_of(&state, &principal).await?;
    let note = check_note(body.note.as_deref())?;
    let amount = body
        .amount
        .positive()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let recipient: Option<(Uuid, Uuid, String)> = match &body.to {
        // PostgreSQL text cannot hold NUL, so no consumer's email has one (and binding it
        // would fail the query): such an address is nobody's.
        Recipient::Email { email } if email.contains('\0') => None,
        Recipient::Email { email } => sqlx::query!(
            r#"SELECT id, wallet_account_id, currency::text AS "currency!" FROM consumers WHERE lower(email) = lower($1)"#,
            email.trim()
        )
        .fetch_optional(&state.pool)
        .await?
        .map(|row| (row.id, row.wallet_account_id, row.currency)),
        Recipient::Id { consumer_id } => sqlx::query!(
            r#"SELECT id, wallet_account_id, currency::text AS "currency!" FROM consumers WHERE id = $1"#,
            consumer_id
        )
        .fetch_optional(&state.pool)
        .await?
        .map(|row| (row.id, row.wallet_account_id, row.currency)),
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
            &NewTransfer {
                from_account_id: sender.wallet,
                to_account_id: recipient_wallet,
                amount,
            },
            &ledger_key(&sender, &headers),
        )
        .await?;
    let transfer: Saga = answered(&answer)?;
    if let Some(note) = &note {
        sqlx::query!(
            "INSERT INTO transfer_notes (transfer_id, consumer_id, note) VALUES ($1, $2, $3) ON CONFLICT (transfer_id) DO NOTHING",
            transfer.id,
            sender.id,
            note
        )
        .execute(&state.pool)
        .await?;
    }
    let wallet = wallet_after(&state, &sender, transfer.wallet_balance.as_ref()).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": transfer.id,
            "status": transfer.state,
            "amount": amount,
            "to": { "consumer_id": recipient_id },
            "note": note,
            "wallet": wallet,
        })),
    ))
}
