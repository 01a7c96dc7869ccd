//! The merchant's live feed, `GET /v1/transactions/stream` (Server-Sent Events, decoded by
//! `sse-stream`), and a watcher that reconnects with `Last-Event-ID` after a dropped
//! connection, so that it misses nothing and sees nothing twice (the server's ids are
//! per merchant and gap-free; see docs/payments.md).

use super::client::{Host, Refusal, Session};
use crate::support::exit::{fail, Code};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use paykit::backoff::Backoff;
use serde_json::Value;
use sse_stream::{Sse, SseByteStream};
use std::io;
use std::pin::Pin;
use std::time::Duration;

/// The server sends a heartbeat comment every 15 s; three missed ones mean the connection is
/// gone even if TCP has not noticed.
const STREAM_IDLE_TIMEOUT_MS: u64 = 45_000;
/// The first wait before reconnecting, unless the server's `retry:` says otherwise; waits
/// double with jitter (`paykit::backoff`) and never pass the maximum, nor does a server's hint.
const RECONNECT_FIRST_MS: u64 = 500;
const RECONNECT_MAX_MS: u64 = 5_000;
/// Consecutive failed connections before giving up (30 s to a minute with the backoff above,
/// about 45 s on average): long enough to ride out a restart of merchant-api or the gateway.
const RECONNECT_ATTEMPTS_MAX: u32 = 15;
/// One event's text; the server's are a few hundred bytes. More means something is wrong.
const EVENT_MAX_BYTES: usize = 1 << 20;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The last id the server sent on this connection (as a browser's `EventSource` keeps it).
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

/// One connection's events, decoded by `sse-stream` from its bytes (in chunks of any size: a
/// chunk may end inside a line, or inside a UTF-8 character).
///
/// `sse-stream` hands over every block, including those with only `id:` or `retry:` (the
/// server's first block is a `retry:` and a comment); what a browser keeps across blocks — the
/// last id, the reconnection hint — is kept here.
struct Feed {
    blocks: Pin<Box<dyn Stream<Item = Result<Sse, sse_stream::Error>> + Send>>,
    id: Option<String>,
    /// The server's reconnection hint (`retry:`), in milliseconds.
    retry_ms: Option<u64>,
}

impl Feed {
    fn new(bytes: impl Stream<Item = io::Result<Bytes>> + Send + 'static) -> Self {
        let mut bound = EventBound::default();
        let bounded = bytes.map(move |chunk| {
            let chunk = chunk?;
            bound.admit(&chunk)?;
            Ok::<_, io::Error>(chunk)
        });
        Self {
            blocks: Box::pin(SseByteStream::new(bounded)),
            id: None,
            retry_ms: None,
        }
    }

    /// The next event; `None` once the bytes ended. Cancel-safe: a block is read whole or not.
    async fn next(&mut self) -> Option<anyhow::Result<SseEvent>> {
        loop {
            let block = match self.blocks.next().await? {
                Ok(block) => block,
                Err(sse_stream::Error::Body(source)) => {
                    return Some(Err(anyhow::Error::from_boxed(source)))
                }
                Err(sse_stream::Error::Utf8Parse(_)) => {
                    return Some(Err(anyhow::anyhow!(
                        "the live stream sent text that is not UTF-8"
                    )))
                }
                Err(other) => return Some(Err(anyhow::Error::new(other))),
            };
            // The last id seen is what a reconnection sends as Last-Event-ID.
            if let Some(id) = block.id.filter(|id| !id.contains('\0')) {
                self.id = Some(id);
            }
            if block.retry.is_some() {
                self.retry_ms = block.retry;
            }
            // A block without data dispatches nothing (comments never reach here).
            if let Some(data) = block.data {
                return Some(Ok(SseEvent {
                    id: self.id.clone(),
                    event: block.event.unwrap_or_else(|| "message".to_string()),
                    data,
                }));
            }
        }
    }
}

/// [`EVENT_MAX_BYTES`] for one event: `sse-stream` buffers a line, and an event's data, as
/// long as they grow, so the bytes since the last blank line (an event's end; the server ends
/// lines with LF or CRLF) are counted before it sees them.
#[derive(Debug, Default)]
struct EventBound {
    since_blank_line: usize,
    line_has_text: bool,
}

impl EventBound {
    fn admit(&mut self, chunk: &[u8]) -> io::Result<()> {
        for byte in chunk {
            match byte {
                b'\n' if !self.line_has_text => {
                    self.since_blank_line = 0;
                    continue;
                }
                b'\n' => self.line_has_text = false,
                b'\r' => {}
                _ => self.line_has_text = true,
            }
            self.since_blank_line += 1;
            if self.since_blank_line > EVENT_MAX_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the live stream sent an event over {EVENT_MAX_BYTES} bytes"),
                ));
            }
        }
        Ok(())
    }
}

/// What the watcher tells its caller besides events.
#[derive(Debug)]
pub enum Notice {
    Connected { resumed_after: Option<String> },
    Dropped { reason: String, retry_in_ms: u64 },
}

/// Follows the merchant's feed until `on_event` returns false or the connection cannot be
/// made again. `after`: the event id to resume after (`Some("0")` replays everything); `None`
/// starts with new events.
pub async fn watch(
    session: &mut Session,
    after: Option<String>,
    mut on_event: impl FnMut(&SseEvent) -> bool,
    mut on_notice: impl FnMut(Notice),
) -> anyhow::Result<()> {
    let mut last_id = after;
    let mut failures = 0;
    let mut backoff = Backoff::new(RECONNECT_FIRST_MS, RECONNECT_MAX_MS);
    loop {
        let mut connected = false;
        let outcome = follow(
            session,
            &mut last_id,
            &mut connected,
            &mut on_event,
            &mut on_notice,
        )
        .await;
        if connected {
            // The connection worked: start the count and the backoff afresh.
            failures = 0;
            backoff.reset();
        }
        let (reason, retry_hint_ms) = match outcome {
            Ok(Followed::Stopped) => return Ok(()),
            Ok(Followed::Ended { retry_hint_ms }) => {
                ("the server closed the stream".to_string(), retry_hint_ms)
            }
            Err(error) => {
                let reason = match error.downcast_ref::<Refusal>() {
                    // A refusal other than a lost login is final: a consumer's token, say.
                    Some(refusal) if refusal.status != 401 && refusal.status < 500 => {
                        return Err(error)
                    }
                    Some(refusal) => refusal.summary(),
                    None => format!("{error:#}"),
                };
                failures += 1;
                if failures >= RECONNECT_ATTEMPTS_MAX {
                    return Err(fail(
                        Code::NotRunning,
                        format!(
                            "the live stream failed {failures} times in a row ({reason}): is the platform up? see `paytool status`"
                        ),
                    ));
                }
                (reason, None)
            }
        };
        // The server's hint, after it closed the stream, is this wait (within our maximum);
        // otherwise the backoff's, with jitter: every merchant's feed dropped at once when
        // merchant-api restarted, and they should not all come back in the same instant.
        let retry_in_ms = match retry_hint_ms {
            Some(hint_ms) => hint_ms.min(RECONNECT_MAX_MS),
            None => u64::try_from(backoff.next_delay().as_millis()).unwrap_or(RECONNECT_MAX_MS),
        };
        on_notice(Notice::Dropped {
            reason,
            retry_in_ms,
        });
        tokio::time::sleep(Duration::from_millis(retry_in_ms)).await;
    }
}

enum Followed {
    Stopped,
    Ended { retry_hint_ms: Option<u64> },
}

/// One connection: events until it ends, with `last_id` kept up to date for the next one.
async fn follow(
    session: &mut Session,
    last_id: &mut Option<String>,
    connected: &mut bool,
    on_event: &mut impl FnMut(&SseEvent) -> bool,
    on_notice: &mut impl FnMut(Notice),
) -> anyhow::Result<Followed> {
    let token = session.token().await?;
    let mut request = session
        .gateway
        .streaming(Host::Merchant, "/v1/transactions/stream")
        .bearer_auth(token)
        .header("Accept", "text/event-stream");
    if let Some(id) = last_id.as_deref() {
        request = request.header("Last-Event-ID", id);
    }
    let idle = Duration::from_millis(STREAM_IDLE_TIMEOUT_MS);
    let response = tokio::time::timeout(idle, request.send())
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {} s", idle.as_secs()))??;
    if !response.status().is_success() {
        let status = response.status();
        let problem: Value = response.json().await.unwrap_or(Value::Null);
        if status == reqwest::StatusCode::UNAUTHORIZED {
            session.expire();
        }
        return Err(anyhow::Error::new(Refusal {
            code: super::client::code_for(status),
            status: status.as_u16(),
            title: problem["title"]
                .as_str()
                .unwrap_or("The live stream was refused")
                .to_string(),
            detail: problem["detail"].as_str().map(str::to_string),
        }));
    }
    *connected = true;
    on_notice(Notice::Connected {
        resumed_after: last_id.clone(),
    });
    // The idle bound is on bytes, not events: the heartbeats are comments, which the decoder
    // does not hand over.
    let chunks = futures_util::stream::unfold(response, move |mut response| async move {
        let chunk = match tokio::time::timeout(idle, response.chunk()).await {
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("nothing arrived for {} s", idle.as_secs()),
            )),
            Ok(Err(error)) => Err(io::Error::other(error)),
            Ok(Ok(None)) => return None,
            Ok(Ok(Some(chunk))) => Ok(chunk),
        };
        Some((chunk, response))
    });
    let mut feed = Feed::new(chunks);
    while let Some(event) = feed.next().await {
        let event = event?;
        if event.id.is_some() {
            last_id.clone_from(&event.id);
        }
        if !on_event(&event) {
            return Ok(Followed::Stopped);
        }
    }
    Ok(Followed::Ended {
        retry_hint_ms: feed.retry_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    const STREAM: &str = "retry: 2000\r\n: connected\r\n\r\nid: 1\nevent: payment.completed\ndata: {\"id\":1,\"note\":\"caf\u{e9}\"}\n\n: heartbeat\n\nid: 2\nevent: payment.refunded\ndata: {\"a\":\ndata: 2}\n\n";

    fn expected() -> Vec<SseEvent> {
        vec![
            SseEvent {
                id: Some("1".into()),
                event: "payment.completed".into(),
                data: "{\"id\":1,\"note\":\"caf\u{e9}\"}".into(),
            },
            SseEvent {
                id: Some("2".into()),
                event: "payment.refunded".into(),
                data: "{\"a\":\n2}".into(),
            },
        ]
    }

    /// The events of these chunks, and the feed that read them.
    async fn read(chunks: &[&'static [u8]]) -> (Vec<SseEvent>, Feed) {
        let chunks: Vec<io::Result<Bytes>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        let mut feed = Feed::new(futures_util::stream::iter(chunks));
        let mut events = Vec::new();
        while let Some(event) = feed.next().await {
            events.push(event.expect("parsed"));
        }
        (events, feed)
    }

    #[tokio::test]
    async fn events_are_parsed_from_one_chunk_with_comments_and_retry_hints_skipped() {
        let (events, feed) = read(&[STREAM.as_bytes()]).await;
        assert_eq!(events, expected());
        assert_eq!(feed.retry_ms, Some(2000));
    }

    #[tokio::test]
    async fn events_split_across_chunks_at_every_byte_come_out_the_same() {
        let bytes = STREAM.as_bytes();
        for split in 0..bytes.len() {
            let (events, _) = read(&[&bytes[..split], &bytes[split..]]).await;
            assert_eq!(events, expected(), "split at {split}");
        }
    }

    #[tokio::test]
    async fn an_event_is_only_dispatched_at_its_blank_line() {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<io::Result<Bytes>>();
        let chunks = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|chunk| (chunk, receiver))
        });
        let mut feed = Feed::new(chunks);
        let send = |chunk: &'static [u8]| sender.send(Ok(Bytes::from_static(chunk))).expect("open");
        send(b"id: 7\nevent: payment.completed\ndata: {}\n");
        assert!(feed.next().now_or_never().is_none());
        send(b"\n");
        let events: Vec<SseEvent> = feed
            .next()
            .await
            .into_iter()
            .map(|e| e.expect("parsed"))
            .collect();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].id.as_deref(), Some("7"));
    }

    #[tokio::test]
    async fn an_event_over_the_bound_ends_the_connection_and_heartbeats_do_not_add_up() {
        let heartbeats: &'static [u8] = ": heartbeat\n\n"
            .repeat(EVENT_MAX_BYTES / 8)
            .leak()
            .as_bytes();
        let (events, _) = read(&[heartbeats, b"data: {}\n\n"]).await;
        assert_eq!(events.len(), 1, "heartbeats end with a blank line each");

        let huge: &'static [u8] = format!("data: {}\n", "x".repeat(EVENT_MAX_BYTES))
            .leak()
            .as_bytes();
        let mut feed = Feed::new(futures_util::stream::iter([Ok(Bytes::from_static(huge))]));
        let error = feed
            .next()
            .await
            .expect("an answer")
            .expect_err("over the bound");
        assert!(
            format!("{error:#}").contains("over 1048576 bytes"),
            "{error:#}"
        );
    }
}
