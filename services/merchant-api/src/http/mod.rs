//! HTTP resources, one module per resource, each with its own `router()`.

pub mod charges;
pub mod dashboard;
pub mod internal;
pub mod merchants;
pub mod payment_requests;
pub mod refunds;
pub mod stream;
pub mod transactions;

use crate::error::Error;
use axum::middleware::from_fn_with_state;
use axum::Router;
use paykit::auth::Principal;
use uuid::Uuid;

/// The service's state and the merchant type live below the handlers, in `crate::state`, so
/// that the payment flow (`crate::payments`) the handlers call does not import them from here.
pub use crate::state::{AppState, Merchant};

pub const ROLE_MERCHANT: &str = "merchant";

pub fn router(state: AppState) -> Router {
    let public = Router::new()
        .merge(merchants::router())
        .merge(payment_requests::router(state.clone()))
        .merge(charges::router(state.clone()))
        .merge(refunds::router(state.clone()))
        .merge(transactions::router())
        .merge(stream::router())
        .merge(dashboard::router())
        .with_state(state.clone());
    // A signed-in browser's cookie authenticates the merchant's own routes like a bearer token;
    // the calls between services (/internal/) stay bearer-only.
    let public = match &state.sessions {
        Some(sessions) => public
            .layer(from_fn_with_state(
                sessions.clone(),
                paykit::web::authenticate,
            ))
            .merge(paykit::web::router(sessions.clone())),
        None => public,
    };
    public
        .merge(internal::router().with_state(state.clone()))
        .merge(paykit::metrics::router(paykit::metrics::Sampled {
            pool: state.pool.clone(),
            outbox: true,
        }))
        .merge(paykit::health::router(state.readiness.clone()))
        .merge(paykit::failpoints::router(
            crate::SERVICE,
            state.verifier.clone(),
        ))
}

/// The merchant behind a token: the `merchant` realm role and a registration.
pub async fn merchant_of(state: &AppState, principal: &Principal) -> Result<Merchant, Error> {
    if !principal.has_realm_role(ROLE_MERCHANT) {
        return Err(Error::Forbidden(ROLE_MERCHANT));
    }
    sqlx::query_as!(
        Merchant,
        r#"SELECT id, name, city, country::text AS "country!", mcc::text AS "mcc!", currency::text AS "currency!", ledger_account_id
         FROM merchants WHERE keycloak_user_id = $1"#,
        &principal.subject
    )
    .fetch_optional(&state.pool)
    .await?
    .ok_or(Error::NotRegistered)
}

pub async fn merchant_by_id(state: &AppState, id: Uuid) -> Result<Option<Merchant>, Error> {
    Ok(sqlx::query_as!(
        Merchant,
        r#"SELECT id, name, city, country::text AS "country!", mcc::text AS "mcc!", currency::text AS "currency!", ledger_account_id
         FROM merchants WHERE id = $1"#,
        id
    )
    .fetch_optional(&state.pool)
    .await?)
}

/// The Idempotency-Key the orchestrator gets for a merchant's money-moving request: the
/// merchant's own key (already checked by the idempotency layer), scoped to the operation and
/// the merchant, so that a retry cannot apply twice there either.
pub fn ledger_key(operation: &str, merchant: &Merchant, headers: &axum::http::HeaderMap) -> String {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    format!("{operation}:{}:{key}", merchant.id)
}

/// An amount the merchant asks for: positive, bounded, in the merchant's currency.
pub fn merchant_amount(
    merchant: &Merchant,
    amount: paykit::money::Money,
) -> Result<paykit::money::Money, Error> {
    let amount = amount
        .positive()
        .map_err(|e| Error::Invalid(format!("amount: {e}")))?;
    if amount.currency.as_str() != merchant.currency {
        return Err(Error::Invalid(format!(
            "amount: this merchant is paid in {}, not {}",
            merchant.currency, amount.currency
        )));
    }
    Ok(amount)
}
