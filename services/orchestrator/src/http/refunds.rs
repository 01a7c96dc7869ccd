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
use paykit::money::Money;
use paykit::problem::JsonBody;
use serde::Deserialize;
use uuid::Uuid;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/refunds", post(create))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRefund {
    payment_id: Uuid,
    amount: Money,
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
