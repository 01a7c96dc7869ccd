//! The merchant's live feed: a payment made in the test arrives on the stream; a reconnect with
//! Last-Event-ID gets exactly what it missed; the WebSocket variant carries the same events.

use crate::helpers::{json_of, new_key, Person, World};
use futures_util::StreamExt;
use serde_json::Value;
use sse_stream::SseByteStream;
use std::time::Duration;

/// A bound on waiting for events, so that a broken stream fails the test instead of hanging it.
const WAIT_BOUND_S: u64 = 20;

/// Reads Server-Sent Events (decoded by `sse-stream`) from a response until `count` events
/// with an id, a type and JSON data arrived.
async fn next_events(response: reqwest::Response, count: usize) -> Vec<(i64, String, Value)> {
    let mut blocks = std::pin::pin!(SseByteStream::new(response.bytes_stream()));
    let mut events = Vec::new();
    let read = async {
        while events.len() < count {
            let block = blocks
                .next()
                .await
                .expect("the stream stays open")
                .expect("an event stream");
            let id = block.id.and_then(|id| id.parse::<i64>().ok());
            let data = block
                .data
                .and_then(|data| serde_json::from_str::<Value>(&data).ok());
            if let (Some(id), Some(kind), Some(data)) = (id, block.event, data) {
                events.push((id, kind, data));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(WAIT_BOUND_S), read)
        .await
        .expect("the events arrive");
    events
}

async fn open_stream(
    world: &World,
    merchant: &Person,
    last_event_id: Option<i64>,
) -> reqwest::Response {
    let mut request = world
        .http
        .get(format!(
            "{}/v1/transactions/stream",
            world.platform.merchant_api
        ))
        .bearer_auth(&merchant.token)
        .header("Accept", "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    let response = request.send().await.expect("the stream opens");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/event-stream"[..])
    );
    response
}

async fn pay(world: &World, consumer: &Person, qr: &str, amount: i64) -> String {
    let payment = json_of(world.pay(consumer, qr, Some(amount), &new_key()).await).await;
    payment["id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn a_payment_made_now_arrives_on_the_open_stream() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let consumer = world.consumer(5_000).await;
    let qr = world.payment_request(&merchant, None).await["payload"]
        .as_str()
        .expect("payload")
        .to_string();
    let stream = open_stream(&world, &merchant, None).await;
    let id = pay(&world, &consumer, &qr, 321).await;
    let events = next_events(stream, 1).await;
    let (event_id, kind, data) = &events[0];
    assert_eq!(*event_id, 1);
    assert_eq!(kind, "payment.completed");
    assert_eq!(data["type"], "payment.completed");
    assert_eq!(data["data"]["id"], id.as_str());
    assert_eq!(data["data"]["amount"]["value"], 321);
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_gets_exactly_the_missed_events() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let other = world.merchant().await;
    let consumer = world.consumer(5_000).await;
    let qr = world.payment_request(&merchant, None).await["payload"]
        .as_str()
        .expect("payload")
        .to_string();
    let other_qr = world.payment_request(&other, None).await["payload"]
        .as_str()
        .expect("payload")
        .to_string();
    let first = open_stream(&world, &merchant, None).await;
    let one = pay(&world, &consumer, &qr, 100).await;
    let seen = next_events(first, 1).await;
    let last = seen[0].0;
    // Disconnected (the response is dropped): three payments happen, one to someone else.
    let two = pay(&world, &consumer, &qr, 200).await;
    pay(&world, &consumer, &other_qr, 50).await;
    let three = pay(&world, &consumer, &qr, 300).await;
    let resumed = open_stream(&world, &merchant, Some(last)).await;
    let four_later = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        pay(&world, &consumer, &qr, 400).await
    };
    let (missed, four) = tokio::join!(next_events(resumed, 3), four_later);
    let ids: Vec<&str> = missed
        .iter()
        .map(|e| e.2["data"]["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        [two.as_str(), three.as_str(), four.as_str()],
        "in order, none twice, none of another merchant's"
    );
    let event_ids: Vec<i64> = missed.iter().map(|e| e.0).collect();
    assert_eq!(event_ids, [last + 1, last + 2, last + 3]);
    assert_ne!(one, two);
    // From the start: every event of this merchant.
    let all = next_events(open_stream(&world, &merchant, Some(0)).await, 4).await;
    assert_eq!(all.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
}

#[tokio::test]
async fn the_websocket_variant_delivers_the_same_events() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let world = World::new().await;
    let merchant = world.merchant().await;
    let consumer = world.consumer(5_000).await;
    let qr = world.payment_request(&merchant, None).await["payload"]
        .as_str()
        .expect("payload")
        .to_string();
    let earlier = pay(&world, &consumer, &qr, 10).await;
    let url = format!(
        "{}/v1/transactions/ws?last_event_id=0",
        world.platform.merchant_api.replace("http://", "ws://")
    );
    let mut request = url.into_client_request().expect("a request");
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", merchant.token)
            .parse()
            .expect("a header"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the socket opens");
    let later = pay(&world, &consumer, &qr, 20).await;
    let mut received = Vec::new();
    let read = async {
        while received.len() < 2 {
            match socket.next().await.expect("open").expect("a message") {
                Message::Text(text) => {
                    let event: Value = serde_json::from_str(&text).expect("json");
                    received.push(event["data"]["id"].as_str().expect("id").to_string());
                }
                _ => continue,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(WAIT_BOUND_S), read)
        .await
        .expect("the events arrive");
    assert_eq!(received, [earlier, later]);
}

#[tokio::test]
async fn a_refund_is_streamed_with_the_payment_it_refunds() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let consumer = world.consumer(5_000).await;
    let qr = world.payment_request(&merchant, None).await["payload"]
        .as_str()
        .expect("payload")
        .to_string();
    let id = pay(&world, &consumer, &qr, 1_000).await;
    let refund = world
        .merchant_post(
            &merchant,
            "/v1/refunds",
            &new_key(),
            serde_json::json!({ "payment_id": id, "amount": crate::helpers::yen(400) }),
        )
        .await;
    assert_eq!(refund.status(), 201);
    let events = next_events(open_stream(&world, &merchant, Some(0)).await, 2).await;
    assert_eq!(events[1].1, "payment.refunded");
    assert_eq!(
        events[1].2["data"]["payment"]["status"],
        "partially_refunded"
    );
    assert_eq!(events[1].2["data"]["refund"]["amount"]["value"], 400);
}

#[tokio::test]
async fn an_idle_stream_sends_heartbeats() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let mut stream = open_stream(&world, &merchant, None).await.bytes_stream();
    let mut text = String::new();
    let read = async {
        while text.matches(": heartbeat").count() < 2 {
            let chunk = stream.next().await.expect("open").expect("bytes");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(Duration::from_secs(WAIT_BOUND_S), read)
        .await
        .expect("heartbeats arrive");
    assert!(
        text.starts_with(": connected") || text.contains("retry:"),
        "{text}"
    );
}
