//! `/v1/items`: the resource the contract (services/contracts/${{ values.name }}.yaml) documents.
//! Replace it with the service's own; keep the shape: every route takes the caller (a verified
//! bearer token), a POST takes an `Idempotency-Key`, input parses into domain types, one query
//! each, and a change's event goes to the outbox in the change's transaction. Items belong to
//! the caller who made them: another caller's are not found.

use super::AppState;
use crate::domain::{ItemName, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX};
use crate::error::Error;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::{Json, Router};
use paykit::auth::Principal;
use paykit::idempotency::idempotent;
use paykit::problem::JsonBody;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where every item made is told (services/contracts/${{ values.name }}.events.yaml).
pub const ITEMS_TOPIC: &str = "${{ values.name }}.items.v1";

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/v1/items",
            get(list).merge(post(create).layer(from_fn_with_state(state, idempotent::<AppState>))),
        )
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
    caller: Principal,
    JsonBody(new): JsonBody<NewItem>,
) -> Result<(StatusCode, Json<Item>), Error> {
    let name = ItemName::parse(&new.name).map_err(Error::Invalid)?;
    // The item and its event commit together: an event exists if and only if its item does.
    let mut tx = state.pool.begin().await?;
    let item: Item = sqlx::query_as(
        "INSERT INTO items (id, owner, name) VALUES ($1, $2, $3) RETURNING id, name, created_at",
    )
    .bind(Uuid::now_v7())
    .bind(&caller.subject)
    .bind(name.as_str())
    .fetch_one(&mut *tx)
    .await?;
    let event = paykit::events::Envelope::new(
        "item.created",
        format!("item/{}", item.id),
        serde_json::json!({
            "id": item.id,
            "owner": caller.subject,
            "name": item.name,
            "created_at": item.created_at,
        }),
    );
    paykit::events::append(&mut tx, ITEMS_TOPIC, &item.id.to_string(), &event).await?;
    tx.commit().await?;
    paykit::events::wake_relays();
    tracing::info!(item.id = %item.id, "item created");
    Ok((StatusCode::CREATED, Json(item)))
}

async fn show(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Json<Item>, Error> {
    let id = Uuid::parse_str(&id).map_err(|_| Error::NotFound(format!("item {id}")))?;
    sqlx::query_as("SELECT id, name, created_at FROM items WHERE id = $1 AND owner = $2")
        .bind(id)
        .bind(&caller.subject)
        .fetch_optional(&state.pool)
        .await?
        .map(Json)
        .ok_or_else(|| Error::NotFound(format!("item {id}")))
}

/// The caller's items, newest first, keyset-paginated on the id (UUIDv7 ids sort by creation
/// time).
async fn list(
    State(state): State<AppState>,
    caller: Principal,
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
         WHERE owner = $1 AND ($2::uuid IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3",
    )
    .bind(&caller.subject)
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
