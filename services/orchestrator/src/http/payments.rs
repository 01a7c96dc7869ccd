//! Merchant payments: the reserve → confirm → capture saga, and reading one back.

use super::{require, start, AppState, ROLE_READ};
use crate::error::Error;
use crate::saga::Request;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use paykit::auth::Principal;
use paykit::contract::NewPayment;
use paykit::problem::JsonBody;
use uuid::Uuid;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/payments", post(create))
        .route("/v1/payments/{id}", get(read))
}

async fn create(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    JsonBody(body): JsonBody<NewPayment>,
) -> Result<Response, Error> {
    let request = Request::Payment {
        wallet_account_id: body.wallet_account_id,
        merchant_account_id: body.merchant_account_id,
        amount: body.amount,
        fee_bps: body.fee_bps,
        reference: body.reference,
        metadata: body.metadata,
    };
    start(&state, &principal, &headers, request).await
}

async fn read(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Response, Error> {
    require(&principal, ROLE_READ)?;
    let saga = state
        .sagas
        .get(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("payment {id}")))?;
    Ok(Json(saga).into_response())
}
