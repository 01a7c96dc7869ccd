//! Top-ups: money from the platform's funding account into a wallet.

use super::{start, AppState};
use crate::error::Error;
use crate::saga::Request;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use paykit::auth::Principal;
use paykit::contract::NewTopUp;
use paykit::problem::JsonBody;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/top-ups", post(create))
}

async fn create(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    JsonBody(body): JsonBody<NewTopUp>,
) -> Result<Response, Error> {
    start(
        &state,
        &principal,
        &headers,
        Request::TopUp {
            wallet_account_id: body.wallet_account_id,
            amount: body.amount,
        },
    )
    .await
}
