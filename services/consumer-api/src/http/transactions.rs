//! The signed-in consumer's transactions, newest first, by cursor.

use super::wallet::consumer_of;
use super::AppState;
use crate::error::{answered, Error};
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use paykit::auth::Principal;
use paykit::contract::TransferPage;
use paykit::money::Money;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use uuid::Uuid;

/// The largest page, as the ledger allows.
pub const PAGE_MAX: i64 = 100;
const PAGE_DEFAULT: i64 = 20;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/transactions", get(list))
}

#[derive(Deserialize)]
struct Page {
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<Page>,
) -> Result<Json<Value>, Error> {
    let consumer = consumer_of(&state, &principal).await?;
    let limit = page.limit.unwrap_or(PAGE_DEFAULT);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(Error::Invalid(format!(
            "limit must be between 1 and {PAGE_MAX}"
        )));
    }
    let history: TransferPage = answered(
        &state
            .orchestrator
            .history(consumer.wallet, limit, page.cursor.as_deref())
            .await?,
    )?;
    let transfers = &history.items;
    // Notes of transfers and merchants of payments, by the orchestrator's saga id.
    let sagas: Vec<Uuid> = transfers.iter().filter_map(|t| t.saga_id).collect();
    let notes: HashMap<Uuid, String> = sqlx::query!(
        "SELECT transfer_id, note FROM transfer_notes WHERE transfer_id = ANY($1)",
        &sagas[..]
    )
    .fetch_all(&state.pool)
    .await?
    .into_iter()
    .map(|row| (row.transfer_id, row.note))
    .collect();
    let merchants: HashMap<Uuid, (Uuid, String)> = sqlx::query!(
        "SELECT id, merchant_id, merchant_name FROM payments WHERE id = ANY($1)",
        &sagas[..]
    )
    .fetch_all(&state.pool)
    .await?
    .into_iter()
    .map(|row| (row.id, (row.merchant_id, row.merchant_name)))
    .collect();
    let items: Vec<Value> = transfers
        .iter()
        .map(|transfer| {
            let saga = transfer.saga_id;
            let note = saga.and_then(|id| notes.get(&id));
            let merchant = saga
                .and_then(|id| merchants.get(&id))
                .map(|(id, name)| json!({ "id": id, "name": name }));
            let incoming = transfer.credit_account_id == consumer.wallet;
            json!({
                "id": transfer.id,
                "kind": transfer.code,
                "direction": if incoming { "in" } else { "out" },
                "state": if transfer.kind == "pending" { "pending" } else { "posted" },
                "amount": Money::new(transfer.amount, consumer.currency),
                "operation_id": saga,
                "note": note,
                "merchant": merchant,
                "created_at": transfer.created_at,
            })
        })
        .collect();
    Ok(Json(
        json!({ "items": items, "next_cursor": history.next_cursor }),
    ))
}
