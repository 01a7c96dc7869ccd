//! The ledger's invariants over HTTP, for `paytool ledger verify` and operators.

use super::{require, AppState, ROLE_READ};
use crate::error::Error;
use crate::invariants::{self, Report};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use paykit::auth::Principal;

pub fn router() -> Router<AppState> {
    Router::new().route("/internal/ledger/verify", get(verify))
}

/// Always 200 when the checks ran: `ok` and each check's `violations` say what they found.
async fn verify(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Report>, Error> {
    require(&principal, ROLE_READ)?;
    Ok(Json(invariants::verify(&state.pool).await?))
}
