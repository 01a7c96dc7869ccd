//! Refunds: merchant to wallet, partial or full, never above what was captured.

use super::{start, AppState};
use crate::error::Error;
use crate::saga::Request;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use paykit::auth::Principal;
use paykit::contract::NewRefund;
use paykit::problem::JsonBody;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/refunds", post(create))
}

async fn create(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    JsonBody(body): JsonBody<NewRefund>,
) -> Result<Response, Error> {
    start(
        &state,
        &principal,
        &headers,
        Request::Refund {
            payment_id: body.payment_id,
            amount: body.amount,
        },
    )
    .await
}
