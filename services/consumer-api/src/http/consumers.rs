//! Registration: a Keycloak user with the `consumer` role and a wallet in the ledger.

use super::AppState;
use crate::error::{ledger_refusal, Error};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use paykit::money::Currency;
use paykit::problem::JsonBody;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

/// Passwords shorter than this are refused (Keycloak's own policy may ask for more).
const PASSWORD_MIN_CHARS: usize = 10;
const PASSWORD_MAX_CHARS: usize = 128;
const EMAIL_MAX_CHARS: usize = 254;
const NAME_MAX_CHARS: usize = 100;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/consumers", post(register))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Registration {
    email: String,
    password: String,
    name: String,
    currency: Option<Currency>,
}

fn validate(registration: &Registration) -> Result<(), Error> {
    let email = registration.email.trim();
    let well_formed = email.len() <= EMAIL_MAX_CHARS
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !well_formed {
        return Err(Error::Invalid(
            "email must be an address like name@example.com (at most 254 characters)".into(),
        ));
    }
    let password_chars = registration.password.chars().count();
    if !(PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&password_chars) {
        return Err(Error::Invalid(format!(
            "password must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters"
        )));
    }
    let name = registration.name.trim();
    if name.is_empty()
        || name.chars().count() > NAME_MAX_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(Error::Invalid(format!(
            "name must be 1 to {NAME_MAX_CHARS} printable characters"
        )));
    }
    Ok(())
}

/// Makes the Keycloak user, gives it the consumer role, opens the wallet, records the consumer.
/// A failure after the user exists removes the user again, so a retry can succeed.
async fn register(
    State(state): State<AppState>,
    JsonBody(registration): JsonBody<Registration>,
) -> Result<(StatusCode, Json<Value>), Error> {
    validate(&registration)?;
    let email = registration.email.trim().to_lowercase();
    let currency = registration
        .currency
        .map(|c| c.to_string())
        .unwrap_or_else(|| state.default_currency.clone());
    let taken: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM consumers WHERE lower(email) = $1)")
            .bind(&email)
            .fetch_one(&state.pool)
            .await?;
    if taken {
        return Err(Error::DuplicateEmail);
    }
    let user_id = state
        .keycloak
        .create_user(&email, &registration.password, registration.name.trim())
        .await?;
    let outcome = async {
        state.keycloak.assign_realm_role(&user_id, super::ROLE_CONSUMER).await?;
        let id = Uuid::new_v4();
        let wallet = Uuid::new_v4();
        let opened = state.orchestrator.open_wallet(wallet, &currency, &format!("consumer:{id}")).await?;
        if !opened.is_success() {
            return Err(ledger_refusal(&opened));
        }
        sqlx::query("INSERT INTO consumers (id, keycloak_user_id, email, name, wallet_account_id, currency) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(id)
            .bind(&user_id)
            .bind(&email)
            .bind(registration.name.trim())
            .bind(wallet)
            .bind(&currency)
            .execute(&state.pool)
            .await
            .map_err(|error| match &error {
                sqlx::Error::Database(db) if db.constraint() == Some("consumers_email_unique") => Error::DuplicateEmail,
                _ => Error::Database(error),
            })?;
        Ok::<_, Error>((id, wallet))
    }
    .await;
    match outcome {
        Ok((id, wallet)) => Ok((
            StatusCode::CREATED,
            Json(
                json!({ "id": id, "email": email, "wallet": { "id": wallet, "currency": currency } }),
            ),
        )),
        Err(error) => {
            if let Err(cleanup) = state.keycloak.delete_user(&user_id).await {
                tracing::error!(%cleanup, user = %user_id, "could not remove the user of a failed registration");
            }
            Err(error)
        }
    }
}
