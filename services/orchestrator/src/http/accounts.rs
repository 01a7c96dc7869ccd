//! Accounts: create (idempotent on the caller's id), read with balance, history by cursor.

use super::{require, AppState, ROLE_READ, ROLE_WRITE};
use crate::error::Error;
use crate::ledger::{self, AccountKind, HISTORY_PAGE_MAX};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use paykit::auth::Principal;
use paykit::contract::{AccountWithBalance, NewAccount, TransferPage};
use paykit::problem::JsonBody;
use serde::Deserialize;
use uuid::Uuid;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/accounts", post(create))
        .route("/v1/accounts/{id}", get(read))
        .route("/v1/accounts/{id}/transfers", get(transfers))
}

async fn create(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<NewAccount>,
) -> Result<(StatusCode, Json<AccountWithBalance>), Error> {
    require(&principal, ROLE_WRITE)?;
    if !matches!(body.kind, AccountKind::Wallet | AccountKind::Merchant) {
        return Err(Error::Invalid(
            "only wallet and merchant accounts are opened through the API".into(),
        ));
    }
    if body
        .owner_ref
        .as_ref()
        .is_some_and(|r| r.chars().count() > 200)
    {
        return Err(Error::Invalid(
            "owner_ref is longer than 200 characters".into(),
        ));
    }
    let account = ledger::create_account(
        &state.pool,
        body.id,
        body.kind,
        body.currency,
        body.owner_ref.as_deref(),
    )
    .await?;
    let mut connection = state.pool.acquire().await?;
    let balance = ledger::balance(&mut connection, account.id).await?;
    Ok((
        StatusCode::CREATED,
        Json(AccountWithBalance {
            account,
            balance: balance.wire(),
        }),
    ))
}

async fn read(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<AccountWithBalance>, Error> {
    require(&principal, ROLE_READ)?;
    let mut connection = state.pool.acquire().await?;
    let account = ledger::account(&mut connection, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("account {id}")))?;
    let balance = ledger::balance(&mut connection, id).await?;
    Ok(Json(AccountWithBalance {
        account,
        balance: balance.wire(),
    }))
}

#[derive(Deserialize)]
struct Page {
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn transfers(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<Uuid>,
    Query(page): Query<Page>,
) -> Result<Json<TransferPage>, Error> {
    require(&principal, ROLE_READ)?;
    let limit = page.limit.unwrap_or(20);
    if !(1..=HISTORY_PAGE_MAX).contains(&limit) {
        return Err(Error::Invalid(format!(
            "limit must be between 1 and {HISTORY_PAGE_MAX}"
        )));
    }
    let before = page
        .cursor
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| Error::Invalid("the cursor is not one this API gave out".into()))
        })
        .transpose()?;
    let mut connection = state.pool.acquire().await?;
    if ledger::account(&mut connection, id).await?.is_none() {
        return Err(Error::NotFound(format!("account {id}")));
    }
    let items = ledger::history(&mut connection, id, limit, before).await?;
    let next_cursor = (items.len() == usize::try_from(limit).unwrap_or(0))
        .then(|| items.last().map(|t| t.seq.to_string()))
        .flatten();
    Ok(Json(TransferPage {
        items: items.iter().map(ledger::Transfer::wire).collect(),
        next_cursor,
    }))
}
