//! HTTP resources, one module per resource, each with its own `router()`.

pub mod accounts;
pub mod ledger;
pub mod payments;
pub mod refunds;
pub mod top_ups;
pub mod transfers;

use crate::error::{refusal, Error};
use crate::saga::{Request, SagaState, SagaView, Sagas};
use axum::extract::FromRef;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use paykit::auth::{Principal, Verifier};
use sqlx::PgPool;
use tracing::Instrument;

/// The orchestrator's client roles (Keycloak client `orchestrator`).
pub const ROLE_WRITE: &str = "ledger-write";
pub const ROLE_READ: &str = "ledger-read";
const CLIENT: &str = "orchestrator";

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub readiness: paykit::health::Readiness,
    pub sagas: Sagas,
    pub verifier: Verifier,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(accounts::router())
        .merge(top_ups::router())
        .merge(payments::router())
        .merge(transfers::router())
        .merge(refunds::router())
        .merge(ledger::router())
        .with_state(state.clone())
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

pub fn require(principal: &Principal, role: &'static str) -> Result<(), Error> {
    if principal.has_client_role(CLIENT, role) {
        Ok(())
    } else {
        Err(Error::Forbidden(role))
    }
}

pub fn idempotency_key(headers: &HeaderMap) -> Result<String, Error> {
    headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|key| !key.is_empty() && key.len() <= 255)
        .map(str::to_string)
        .ok_or(Error::MissingIdempotencyKey)
}

/// Starts a saga for the caller and answers with it: 201 when it went through (or is still
/// under way), the problem of its refusal when it was declined. A replay answers the same and
/// says so in `Idempotency-Replayed`.
pub async fn start(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    request: Request,
) -> Result<Response, Error> {
    require(principal, ROLE_WRITE)?;
    let key = idempotency_key(headers)?;
    // The saga runs in a task of its own: the caller's deadline (or a client that went away)
    // drops only the wait for it, never a transaction halfway. A cancelled sqlx transaction is
    // not always rolled back (cancelled during its BEGIN, its connection went back to the pool
    // still inside it, and the next borrower's statements ran in that transaction: PostgreSQL
    // said "there is already a transaction in progress" under the database-latency
    // experiment). The saga's state is the answer a retry with the same key gets.
    let (sagas, client_id) = (state.sagas.clone(), principal.client_id.clone());
    let view =
        tokio::spawn(async move { sagas.start(&client_id, &key, request).await }.in_current_span())
            .await
            .map_err(|error| Error::Task(error.to_string()))??;
    if paykit::failpoints::weak("orchestrator.weakness.waits-for-publish") {
        wait_for_publish(state).await?;
    }
    let mut view = view;
    view.wallet_balance = wallet_balance(state, &view).await?;
    Ok(respond(view))
}

/// The balance of the wallet a saga moved, read once here so that the caller does not ask
/// for it in a request of its own: the debited account of a payment or a send, the credited
/// one of a top-up; none for a refund (its wallet is the payment's).
async fn wallet_balance(
    state: &AppState,
    saga: &SagaView,
) -> Result<Option<paykit::contract::Balance>, Error> {
    use paykit::contract::SagaKind;
    let wallet = match saga.kind {
        SagaKind::Payment | SagaKind::P2p => saga.debit_account_id,
        SagaKind::TopUp => saga.credit_account_id,
        SagaKind::Refund => return Ok(None),
    };
    let mut connection = state.pool.acquire().await?;
    let balance = crate::ledger::balance(&mut connection, wallet).await?;
    Ok(Some(balance.wire()))
}

/// How long the seeded weakness `orchestrator.weakness.waits-for-publish` waits.
const WEAK_PUBLISH_WAIT_MS: u64 = 5_000;

/// Seeded weakness (chaos bench): the answer waits until the outbox is published up to now,
/// which puts Kafka on the payment's path (a 503 when it does not get there in time).
async fn wait_for_publish(state: &AppState) -> Result<(), Error> {
    let upto: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM outbox")
        .fetch_one(&state.pool)
        .await?;
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_millis(WEAK_PUBLISH_WAIT_MS);
    loop {
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL AND seq <= $1",
        )
        .bind(upto.unwrap_or(0))
        .fetch_one(&state.pool)
        .await?;
        if pending == 0 {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::Unavailable(paykit::resilience::Unavailable {
                destination: "kafka",
                reason: format!("{pending} events not on Kafka within {WEAK_PUBLISH_WAIT_MS} ms"),
                retry_after_s: paykit::resilience::RETRY_AFTER_DEFAULT_S,
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub fn respond(view: SagaView) -> Response {
    let replayed = view.replayed;
    let mut response = match (&view.failure, view.state) {
        (Some(failure), SagaState::Declined | SagaState::Voided | SagaState::Failed) => {
            refusal(&failure.type_slug, failure.detail.clone())
                .with_extension("saga_id", view.id.to_string())
                .with_extension("state", view.state.as_str())
                .into_response()
        }
        _ => (StatusCode::CREATED, Json(&view)).into_response(),
    };
    if replayed {
        response
            .headers_mut()
            .insert("idempotency-replayed", HeaderValue::from_static("true"));
    }
    response
}
