//! `/v1/items`: the resource the contract (services/contracts/${{ values.name }}.yaml) documents.
//! Replace it with the service's own; keep the shape: parse into domain types, one query each.

use super::AppState;
use crate::domain::{ItemName, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX};
use crate::error::Error;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use paykit::problem::JsonBody;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/items", get(list).post(create))
        .route("/v1/items/{id}", get(show))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewItem {
    pub name: String,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Item {
    pub id: Uuid,
    pub name: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize)]
pub struct ItemPage {
    pub items: Vec<Item>,
    /// The cursor of the next page, `null` on the last one.
    pub next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    pub limit: Option<u32>,
    pub after: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    JsonBody(new): JsonBody<NewItem>,
) -> Result<(StatusCode, Json<Item>), Error> {
    let name = ItemName::parse(&new.name).map_err(Error::Invalid)?;
    let item: Item = sqlx::query_as(
        "INSERT INTO items (id, name) VALUES ($1, $2) RETURNING id, name, created_at",
    )
    .bind(Uuid::now_v7())
    .bind(name.as_str())
    .fetch_one(&state.pool)
    .await?;
    tracing::info!(item.id = %item.id, "item created");
    Ok((StatusCode::CREATED, Json(item)))
}

async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Item>, Error> {
    let id = Uuid::parse_str(&id).map_err(|_| Error::NotFound(format!("item {id}")))?;
    sqlx::query_as("SELECT id, name, created_at FROM items WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.pool)
        .await?
        .map(Json)
        .ok_or_else(|| Error::NotFound(format!("item {id}")))
}

/// Newest first, keyset-paginated on the id (UUIDv7 ids sort by creation time).
async fn list(
    State(state): State<AppState>,
    Query(query): Query<PageQuery>,
) -> Result<Json<ItemPage>, Error> {
    let limit = query.limit.unwrap_or(PAGE_LIMIT_DEFAULT);
    if !(1..=PAGE_LIMIT_MAX).contains(&limit) {
        return Err(Error::Invalid(format!(
            "limit must be between 1 and {PAGE_LIMIT_MAX}"
        )));
    }
    let after = match query.after.as_deref() {
        None => None,
        Some(cursor) => Some(
            Uuid::parse_str(cursor)
                .map_err(|_| Error::Invalid("after is not a cursor this API gave".into()))?,
        ),
    };
    // One more than asked: whether it exists says whether there is a next page.
    let mut items: Vec<Item> = sqlx::query_as(
        "SELECT id, name, created_at FROM items
         WHERE $1::uuid IS NULL OR id < $1
         ORDER BY id DESC LIMIT $2",
    )
    .bind(after)
    .bind(i64::from(limit) + 1)
    .fetch_all(&state.pool)
    .await?;
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|item| item.id.to_string())
    } else {
        None
    };
    Ok(Json(ItemPage { items, next }))
}
