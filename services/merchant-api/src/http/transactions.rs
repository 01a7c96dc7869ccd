//! The merchant's transactions, newest first, by cursor, with date and status filters.

use super::{merchant_of, AppState};
use crate::error::Error;
use crate::records::{view, TransactionRow};
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use paykit::auth::Principal;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

pub const PAGE_MAX: i64 = 100;
const PAGE_DEFAULT: i64 = 20;
const STATUSES: &[&str] = &["completed", "partially_refunded", "refunded"];
const KINDS: &[&str] = &["payment", "refund"];

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/transactions", get(list))
}

#[derive(Deserialize)]
struct Filter {
    limit: Option<i64>,
    cursor: Option<String>,
    /// Inclusive, RFC 3339.
    from: Option<chrono::DateTime<chrono::Utc>>,
    /// Exclusive, RFC 3339.
    to: Option<chrono::DateTime<chrono::Utc>>,
    status: Option<String>,
    kind: Option<String>,
}

type Position = (chrono::DateTime<chrono::Utc>, Uuid);

/// Cursors are opaque to clients: the last row's time and id, base64url.
fn encode_cursor((at, id): &Position) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{}|{id}", at.timestamp_micros()))
}

fn decode_cursor(cursor: &str) -> Result<Position, Error> {
    let invalid = || Error::Invalid("cursor is not one this API returned".into());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (micros, id) = text.split_once('|').ok_or_else(invalid)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(chrono::DateTime::from_timestamp_micros)
        .ok_or_else(invalid)?;
    Ok((at, id.parse().map_err(|_| invalid())?))
}

fn one_of(field: &str, value: Option<String>, allowed: &[&str]) -> Result<Option<String>, Error> {
    match value {
        Some(value) if !allowed.contains(&value.as_str()) => Err(Error::Invalid(format!(
            "{field} must be one of {}",
            allowed.join(", ")
        ))),
        other => Ok(other),
    }
}

async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(filter): Query<Filter>,
) -> Result<Json<Value>, Error> {
    let merchant = merchant_of(&state, &principal).await?;
    let limit = filter.limit.unwrap_or(PAGE_DEFAULT);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(Error::Invalid(format!(
            "limit must be between 1 and {PAGE_MAX}"
        )));
    }
    if let (Some(from), Some(to)) = (filter.from, filter.to) {
        if from >= to {
            return Err(Error::Invalid("from must be before to".into()));
        }
    }
    let status = one_of("status", filter.status, STATUSES)?;
    let kind = one_of("kind", filter.kind, KINDS)?;
    let position = filter.cursor.as_deref().map(decode_cursor).transpose()?;
    // One statement for every filter: an absent one is a NULL parameter that matches all rows.
    let mut rows: Vec<TransactionRow> = sqlx::query_as!(
        TransactionRow,
        r#"SELECT id, kind, status, channel, amount_value, fee_value, refunded_value, currency::text AS "currency!",
                payment_id, payment_request_id, reference, created_at, completed_at
         FROM transactions
         WHERE merchant_id = $1
           AND ($2::timestamptz IS NULL OR created_at >= $2)
           AND ($3::timestamptz IS NULL OR created_at < $3)
           AND ($4::text IS NULL OR status = $4)
           AND ($5::text IS NULL OR kind = $5)
           AND ($6::timestamptz IS NULL OR (created_at, id) < ($6, $7))
         ORDER BY created_at DESC, id DESC
         LIMIT $8"#,
        merchant.id,
        filter.from,
        filter.to,
        status.as_deref(),
        kind.as_deref(),
        position.map(|p| p.0),
        position.map(|p| p.1),
        limit + 1
    )
    .fetch_all(&state.pool)
    .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last()
            .map(|row| encode_cursor(&(row.created_at, row.id)))
    } else {
        None
    };
    let items: Vec<Value> = rows.iter().map(view).collect();
    Ok(Json(json!({ "items": items, "next_cursor": next_cursor })))
}
