//! Registration: a Keycloak user with the `consumer` role and a wallet in the ledger.

use super::AppState;
use crate::error::{refused, Error};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use paykit::contract::{AccountKind, NewAccount};
use paykit::events::Envelope;
use paykit::keycloak::Person;
use paykit::money::Currency;
use paykit::problem::JsonBody;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

const NAME_MAX_CHARS: usize = 100;
/// Where registrations are announced.
pub const CONSUMERS_TOPIC: &str = "consumers.v1";

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/consumers", post(register))
}

fn person(registration: &Registration) -> Person<'_> {
    Person {
        email: registration.email.trim(),
        password: &registration.password,
        name: registration.name.trim(),
    }
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
    person(registration).validate().map_err(Error::Invalid)?;
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

/// Makes the Keycloak user with the consumer role, opens the wallet, records the consumer; a
/// failure after the user exists removes the user again (see `ServiceAccount::register`).
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
    let taken: bool = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM consumers WHERE lower(email) = $1) AS "exists!""#,
        &email
    )
    .fetch_one(&state.pool)
    .await?;
    if taken {
        return Err(Error::DuplicateEmail);
    }
    let person = Person {
        email: &email,
        ..person(&registration)
    };
    let new = NewConsumer {
        id: Uuid::new_v4(),
        wallet: Uuid::new_v4(),
        email: &email,
        name: registration.name.trim(),
        currency: &currency,
    };
    state
        .keycloak
        .register(&person, super::ROLE_CONSUMER, |user_id| {
            new.open(&state, user_id)
        })
        .await?;
    let (id, wallet) = (new.id, new.wallet);
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "email": email, "wallet": { "id": wallet, "currency": currency } })),
    ))
}

struct NewConsumer<'a> {
    id: Uuid,
    wallet: Uuid,
    email: &'a str,
    name: &'a str,
    currency: &'a str,
}

impl NewConsumer<'_> {
    /// Opens the wallet in the ledger and records the consumer for the Keycloak user.
    async fn open(&self, state: &AppState, user_id: String) -> Result<(), Error> {
        let currency = Currency::parse(self.currency)
            .map_err(|e| Error::Upstream(anyhow::anyhow!("the wallet's currency: {e}")))?;
        let opened = state
            .orchestrator
            .open_account(&NewAccount {
                id: self.wallet,
                kind: AccountKind::Wallet,
                currency,
                owner_ref: Some(format!("consumer:{}", self.id)),
            })
            .await?;
        if !opened.is_success() {
            return Err(refused(&opened));
        }
        let mut tx = state.pool.begin().await?;
        sqlx::query!(
            "INSERT INTO consumers (id, keycloak_user_id, email, name, wallet_account_id, currency) VALUES ($1, $2, $3, $4, $5, $6)",
            self.id,
            &user_id,
            self.email,
            self.name,
            self.wallet,
            self.currency,
        )
        .execute(&mut *tx)
        .await
        .map_err(|error| match &error {
            sqlx::Error::Database(db) if db.constraint() == Some("consumers_email_unique") => {
                Error::DuplicateEmail
            }
            _ => Error::Database(error),
        })?;
        let event = Envelope::new(
            "consumer.registered",
            format!("consumer/{}", self.id),
            json!({ "id": self.id, "wallet_account_id": self.wallet, "currency": self.currency }),
        );
        paykit::events::append(&mut tx, CONSUMERS_TOPIC, &self.id.to_string(), &event).await?;
        tx.commit().await?;
        paykit::events::wake_relays();
        Ok(())
    }
}
