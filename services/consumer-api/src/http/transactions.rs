//! The signed-in consumer's transactions, newest first, by cursor.

use super::wallet::consumer_of;
use super::AppState;
use crate::error::{ledger_refusal, Error};
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use paykit::auth::Principal;
use paykit::money::Money;
use serde::Deserialize;
use serde_json::{json, Value};

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
    let answer = state
        .orchestrator
        .history(consumer.wallet, limit, page.cursor.as_deref())
        .await?;
    if !answer.is_success() {
        return Err(ledger_refusal(&answer));
    }
    let wallet = consumer.wallet.to_string();
    let items: Vec<Value> = answer.body["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|transfer| {
            let incoming = transfer["credit_account_id"].as_str() == Some(wallet.as_str());
            let value = transfer["amount"].as_i64().unwrap_or_default();
            json!({
                "id": transfer["id"],
                "kind": transfer["code"],
                "direction": if incoming { "in" } else { "out" },
                "state": if transfer["kind"] == "pending" { "pending" } else { "posted" },
                "amount": Money::new(value, consumer.currency),
                "created_at": transfer["created_at"],
            })
        })
        .collect();
    Ok(Json(
        json!({ "items": items, "next_cursor": answer.body["next_cursor"] }),
    ))
}
