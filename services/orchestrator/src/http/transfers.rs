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
use paykit::money::Money;
use paykit::problem::JsonBody;
use serde::Deserialize;
use uuid::Uuid;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/transfers", post(create))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTransfer {
    from_account_id: Uuid,
    to_account_id: Uuid,
    amount: Money,
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
