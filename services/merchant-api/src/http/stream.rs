//! The merchant's live feed: Server-Sent Events, and the same events over a WebSocket.
//!
//! Each event carries its per-merchant id. A client that reconnects with `Last-Event-ID` (or
//! `?last_event_id=`) gets exactly the events after that id; without one, only new events.

use super::{merchant_of, AppState};
use crate::error::Error;
use crate::events::{self, Event};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use paykit::auth::Principal;
use paykit::problem::Problem;
use serde::Deserialize;
use std::time::Duration;
use tokio_stream::wrappers::ReceiverStream;

/// What EventSource clients wait before reconnecting.
const RECONNECT_HINT_MS: u64 = 2_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/transactions/stream", get(stream))
        .route("/v1/transactions/ws", get(websocket))
}

#[derive(Deserialize)]
struct Resume {
    last_event_id: Option<i64>,
}

/// Where the stream starts: after the client's last event, else after the newest one.
async fn start(
    state: &AppState,
    merchant: uuid::Uuid,
    headers: &HeaderMap,
    resume: &Resume,
) -> Result<i64, Error> {
    let header = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|id| *id >= 0)
                .ok_or_else(|| {
                    Error::Invalid("Last-Event-ID must be an event id this stream sent".into())
                })?,
        ),
    };
    match header.or(resume.last_event_id) {
        Some(id) if id < 0 => Err(Error::Invalid("last_event_id cannot be negative".into())),
        Some(id) => Ok(id),
        None => Ok(events::latest(&state.pool, merchant).await?),
    }
}

fn too_many_streams() -> Response {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too-many-streams",
        "Too many open streams",
    )
    .with_detail("This server has as many live streams open as it allows; retry shortly.")
    .into_response()
}

fn sse_event(event: &Event) -> sse::Event {
    sse::Event::default()
        .id(event.id.to_string())
        .event(event.kind.clone())
        .json_data(event)
        .unwrap_or_else(|_| sse::Event::default().comment("unserializable event"))
}

async fn stream(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(resume): Query<Resume>,
) -> Result<Response, Error> {
    let merchant = merchant_of(&state, &principal).await?;
    let after = start(&state, merchant.id, &headers, &resume).await?;
    let Some(receiver) = state.events.pump(state.pool.clone(), merchant.id, after) else {
        return Ok(too_many_streams());
    };
    let first = futures_util::stream::once(async {
        Ok::<_, std::convert::Infallible>(
            sse::Event::default()
                .retry(Duration::from_millis(RECONNECT_HINT_MS))
                .comment("connected"),
        )
    });
    let events = ReceiverStream::new(receiver)
        .map(|event| Ok::<_, std::convert::Infallible>(sse_event(&event)));
    Ok(Sse::new(first.chain(events))
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_millis(state.stream.heartbeat_interval_ms))
                .text("heartbeat"),
        )
        .into_response())
}

async fn websocket(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(resume): Query<Resume>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, Error> {
    let merchant = merchant_of(&state, &principal).await?;
    let after = start(&state, merchant.id, &headers, &resume).await?;
    let Some(receiver) = state.events.pump(state.pool.clone(), merchant.id, after) else {
        return Ok(too_many_streams());
    };
    let heartbeat = Duration::from_millis(state.stream.heartbeat_interval_ms);
    Ok(upgrade.on_upgrade(move |socket| relay(socket, receiver, heartbeat)))
}

/// Sends each event as a JSON text message, and a ping when idle; ends when the client goes.
async fn relay(
    mut socket: WebSocket,
    mut receiver: tokio::sync::mpsc::Receiver<Event>,
    interval: Duration,
) {
    let mut heartbeat = tokio::time::interval(interval);
    loop {
        tokio::select! {
            event = receiver.recv() => {
                let Some(event) = event else { return };
                let Ok(text) = serde_json::to_string(&event) else { continue };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            _ = heartbeat.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => {
                match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => {}
                }
            }
        }
    }
}
