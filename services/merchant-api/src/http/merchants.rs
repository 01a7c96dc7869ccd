//! Registration: a Keycloak user with the `merchant` role and a merchant account in the ledger.

use super::{merchant_of, AppState, ROLE_MERCHANT};
use crate::domain::profile::Profile;
use crate::error::{answered, refused, Error};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use paykit::auth::Principal;
use paykit::contract::{AccountKind, AccountWithBalance, NewAccount};
use paykit::events::Envelope;
use paykit::keycloak::Person;
use paykit::money::Currency;
use paykit::problem::JsonBody;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/merchants", post(register))
        .route("/v1/merchants/me", get(me))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Registration {
    name: String,
    city: String,
    country: String,
    mcc: String,
    currency: String,
    email: String,
    password: String,
}

/// Makes the Keycloak user with the merchant role, opens the merchant's ledger account and
/// records the merchant; a failure after the user exists removes the user again.
async fn register(
    State(state): State<AppState>,
    JsonBody(registration): JsonBody<Registration>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let profile = Profile::parse(
        &registration.name,
        &registration.city,
        &registration.country,
        &registration.mcc,
        &registration.currency,
    )
    .map_err(Error::Invalid)?;
    let email = registration.email.trim().to_lowercase();
    let person = Person {
        email: &email,
        password: &registration.password,
        name: profile.name.as_str(),
    };
    person.validate().map_err(Error::Invalid)?;
    let taken: bool = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM merchants WHERE lower(email) = $1) AS "exists!""#,
        &email
    )
    .fetch_one(&state.pool)
    .await?;
    if taken {
        return Err(Error::DuplicateEmail);
    }
    let id = Uuid::new_v4();
    let account = Uuid::new_v4();
    state
        .keycloak
        .register(&person, ROLE_MERCHANT, |user_id| {
            record(&state, id, account, user_id, &email, &profile)
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(view(id, &email, &profile, account)),
    ))
}

async fn record(
    state: &AppState,
    id: Uuid,
    account: Uuid,
    user_id: String,
    email: &str,
    profile: &Profile,
) -> Result<(), Error> {
    let currency = Currency::parse(profile.currency)
        .map_err(|e| Error::Upstream(anyhow::anyhow!("the merchant's currency: {e}")))?;
    let opened = state
        .orchestrator
        .open_account(&NewAccount {
            id: account,
            kind: AccountKind::Merchant,
            currency,
            owner_ref: Some(format!("merchant:{id}")),
        })
        .await?;
    if !opened.is_success() {
        return Err(refused(&opened));
    }
    let mut tx = state.pool.begin().await?;
    sqlx::query!(
        "INSERT INTO merchants (id, keycloak_user_id, email, name, city, country, mcc, currency, ledger_account_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        id,
        &user_id,
        email,
        profile.name.as_str(),
        profile.city.as_str(),
        profile.country.as_str(),
        profile.mcc.as_str(),
        profile.currency,
        account,
    )
    .execute(&mut *tx)
    .await
    .map_err(|error| match &error {
        sqlx::Error::Database(db) if db.constraint() == Some("merchants_email_unique") => {
            Error::DuplicateEmail
        }
        _ => Error::Database(error),
    })?;
    let mut data = view(id, email, profile, account);
    // Other services need the business, not the login.
    data.as_object_mut().map(|d| d.remove("email"));
    let event = Envelope::new("merchant.registered", format!("merchant/{id}"), data);
    paykit::events::append(&mut tx, crate::MERCHANTS_TOPIC, &id.to_string(), &event).await?;
    tx.commit().await?;
    paykit::events::wake_relays();
    Ok(())
}

fn view(id: Uuid, email: &str, profile: &Profile, account: Uuid) -> Value {
    json!({
        "id": id,
        "email": email,
        "name": profile.name.as_str(),
        "city": profile.city.as_str(),
        "country": profile.country.as_str(),
        "mcc": profile.mcc.as_str(),
        "currency": profile.currency,
        "ledger_account_id": account,
    })
}

/// The signed-in merchant's profile and its ledger balance.
async fn me(State(state): State<AppState>, principal: Principal) -> Result<Json<Value>, Error> {
    let merchant = merchant_of(&state, &principal).await?;
    let account: AccountWithBalance = answered(
        &state
            .orchestrator
            .account(merchant.ledger_account_id)
            .await?,
    )?;
    let available = account.balance.available;
    Ok(Json(json!({
        "id": merchant.id,
        "name": merchant.name,
        "city": merchant.city,
        "country": merchant.country,
        "mcc": merchant.mcc,
        "currency": merchant.currency,
        "ledger_account_id": merchant.ledger_account_id,
        "balance": { "value": available, "currency": merchant.currency },
    })))
}
