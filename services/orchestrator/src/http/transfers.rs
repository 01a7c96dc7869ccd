//! Person-to-person transfers: wallet to wallet.

use super::{start, AppState};
use crate::error::Error;
use crate::saga::Request;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use paykit::auth::Principal;
use paykit::contract::NewTransfer;
use paykit::problem::JsonBody;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/transfers", post(create))
}

async fn create(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    JsonBody(body): JsonBody<NewTransfer>,
) -> Result<Response, Error> {
    start(
        &state,
        &principal,
        &headers,
        Request::P2p {
            from_account_id: body.from_account_id,
            to_account_id: body.to_account_id,
            amount: body.amount,
        },
    )
    .await
}
