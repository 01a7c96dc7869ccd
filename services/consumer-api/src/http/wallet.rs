//! The signed-in consumer's wallet: its balance, and top-ups into it.

use super::{require_consumer, AppState};
use crate::error::{answered, Error};
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::{Json, Router};
use paykit::auth::Principal;
use paykit::contract::{AccountWithBalance, Balance, NewTopUp, Saga};
use paykit::idempotency::idempotent;
use paykit::money::{Currency, Money};
use paykit::problem::JsonBody;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new().route("/v1/wallet", get(balance)).route(
        "/v1/wallet/top-ups",
        post(top_up).layer(from_fn_with_state(state, idempotent::<AppState>)),
    )
}

#[derive(Clone, Copy)]
pub struct Consumer {
    pub id: Uuid,
    pub wallet: Uuid,
    pub currency: Currency,
}

/// Consumers by their Keycloak subject. A consumer's row never changes once registered (no
/// statement updates or deletes one), so what was read once answers every later request: a
/// payment's read of it costs no database round trip. Emptied when full: a bound, not an LRU,
/// since a miss costs only the read it saves.
#[derive(Clone, Default)]
pub struct Consumers(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Consumer>>>);

/// At most this many consumers are kept (about 100 bytes each).
const CONSUMERS_KEPT_MAX: usize = 100_000;

impl Consumers {
    fn get(&self, subject: &str) -> Option<Consumer> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(subject)
            .copied()
    }

    fn keep(&self, subject: &str, consumer: Consumer) {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= CONSUMERS_KEPT_MAX {
            kept.clear();
        }
        kept.insert(subject.to_string(), consumer);
        assert!(kept.len() <= CONSUMERS_KEPT_MAX);
    }
}

pub async fn consumer_of(state: &AppState, principal: &Principal) -> Result<Consumer, Error> {
    require_consumer(principal)?;
    if let Some(consumer) = state.consumers.get(&principal.subject) {
        return Ok(consumer);
    }
    let row = sqlx::query!(
        r#"SELECT id, wallet_account_id, currency::text AS "currency!" FROM consumers WHERE keycloak_user_id = $1"#,
        &principal.subject
    )
    .fetch_optional(&state.pool)
    .await?
    .ok_or(Error::NotRegistered)?;
    let (id, wallet, currency) = (row.id, row.wallet_account_id, row.currency);
    let currency = Currency::parse(&currency)
        .map_err(|e| Error::Upstream(anyhow::anyhow!("stored currency: {e}")))?;
    let consumer = Consumer {
        id,
        wallet,
        currency,
    };
    state.consumers.keep(&principal.subject, consumer);
    Ok(consumer)
}

/// The Idempotency-Key the orchestrator gets for a consumer's money-moving request: the
/// consumer's own key, scoped to the consumer, so that a retry cannot apply twice there either.
pub fn ledger_key(consumer: &Consumer, headers: &HeaderMap) -> String {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    format!("consumer:{}:{key}", consumer.id)
}

/// The wallet's balance as money: available (what can be spent), pending (reserved), posted.
pub async fn wallet_view(state: &AppState, consumer: &Consumer) -> Result<Value, Error> {
    let wallet: AccountWithBalance = answered(&state.orchestrator.account(consumer.wallet).await?)?;
    Ok(wallet_json(consumer, &wallet.balance))
}

/// The wallet after a change, from the balance the orchestrator answered with it (read again
/// only when that answer did not carry one: a saga that needed more time).
pub async fn wallet_after(
    state: &AppState,
    consumer: &Consumer,
    answered: Option<&Balance>,
) -> Result<Value, Error> {
    match answered {
        Some(balance) => Ok(wallet_json(consumer, balance)),
        None => wallet_view(state, consumer).await,
    }
}

/// The wallet as the API shows it, from a balance the orchestrator answered.
fn wallet_json(consumer: &Consumer, balance: &Balance) -> Value {
    let money = |value: i64| Money::new(value, consumer.currency);
    json!({
        "id": consumer.wallet,
        "currency": consumer.currency,
        "available": money(balance.available),
        "pending": money(balance.pending_debits),
        "posted": money(balance.posted),
    })
}

async fn balance(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, Error> {
    let consumer = consumer_of(&state, &principal).await?;
    Ok(Json(wallet_view(&state, &consumer).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopUp {
    amount: Money,
}

/// The idempotency layer has checked the key and the caller; the orchestrator gets a key of
/// its own derived from both, so that a retried top-up cannot be applied twice there either.
async fn top_up(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<TopUp>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let consumer = consumer_of(&state, &principal).await?;
    let amount = body
        .amount
        .positive()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    if amount.currency != consumer.currency {
        return Err(Error::Invalid(format!(
            "this wallet keeps {}, not {}",
            consumer.currency, amount.currency
        )));
    }
    let answer = state
        .orchestrator
        .top_up(
            &NewTopUp {
                wallet_account_id: consumer.wallet,
                amount,
            },
            &ledger_key(&consumer, &headers),
        )
        .await?;
    let top_up: Saga = answered(&answer)?;
    let wallet = wallet_after(&state, &consumer, top_up.wallet_balance.as_ref()).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "id": top_up.id, "status": top_up.state, "amount": amount, "wallet": wallet }),
        ),
    ))
}
