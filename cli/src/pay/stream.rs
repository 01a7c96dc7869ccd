//! The merchant's live feed, `GET /v1/transactions/stream` (Server-Sent Events): a parser for
//! the event-stream format, and a watcher that reconnects with `Last-Event-ID` after a dropped
//! connection, so that it misses nothing and sees nothing twice (the server's ids are
//! per merchant and gap-free; see docs/payments.md).

use super::client::{Host, Refusal, Session};
use crate::support::exit::{fail, Code};
use serde_json::Value;
use std::time::Duration;

/// The server sends a heartbeat comment every 15 s; three missed ones mean the connection is
/// gone even if TCP has not noticed.
const STREAM_IDLE_TIMEOUT_MS: u64 = 45_000;
/// The first wait before reconnecting, unless the server's `retry:` says otherwise.
const RECONNECT_FIRST_MS: u64 = 500;
const RECONNECT_MAX_MS: u64 = 5_000;
/// Consecutive failed connections before giving up (about a minute with the backoff above):
/// long enough to ride out a restart of merchant-api or the gateway.
const RECONNECT_ATTEMPTS_MAX: u32 = 15;
/// One event's text; the server's are a few hundred bytes. More means something is wrong.
const EVENT_MAX_BYTES: usize = 1 << 20;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

/// The event-stream format, fed in arbitrary chunks (a chunk may end inside a line, or inside
/// a UTF-8 character).
#[derive(Debug, Default)]
pub struct Parser {
    pending: Vec<u8>,
    id: Option<String>,
    event: Option<String>,
    data: Vec<String>,
    /// The server's reconnection hint (`retry:`), in milliseconds.
    pub retry_ms: Option<u64>,
}

impl Parser {
    pub fn feed(&mut self, chunk: &[u8]) -> anyhow::Result<Vec<SseEvent>> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.pending.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
        }
        if self.pending.len() + self.data.iter().map(String::len).sum::<usize>() > EVENT_MAX_BYTES {
            return Err(fail(
                Code::Failed,
                format!("the live stream sent an event over {EVENT_MAX_BYTES} bytes"),
            ));
        }
        Ok(events)
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let event = self.event.take();
            if self.data.is_empty() {
                return None;
            }
            let data = std::mem::take(&mut self.data).join("\n");
            return Some(SseEvent {
                id: self.id.clone(),
                event: event.unwrap_or_else(|| "message".to_string()),
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => self.data.push(value.to_string()),
            "event" => self.event = Some(value.to_string()),
            // The last id seen is what a reconnection sends as Last-Event-ID.
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            "retry" => self.retry_ms = value.parse().ok(),
            _ => {}
        }
        None
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
    let mut retry_ms = RECONNECT_FIRST_MS;
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
            retry_ms = RECONNECT_FIRST_MS;
        }
        let reason = match outcome {
            Ok(Followed::Stopped) => return Ok(()),
            Ok(Followed::Ended { retry_hint_ms }) => {
                retry_ms = retry_hint_ms.unwrap_or(retry_ms);
                "the server closed the stream".to_string()
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
                reason
            }
        };
        on_notice(Notice::Dropped {
            reason,
            retry_in_ms: retry_ms,
        });
        tokio::time::sleep(Duration::from_millis(retry_ms)).await;
        retry_ms = (retry_ms * 2).min(RECONNECT_MAX_MS);
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
    let mut response = tokio::time::timeout(idle, request.send())
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
    let mut parser = Parser::default();
    loop {
        let chunk = match tokio::time::timeout(idle, response.chunk()).await {
            Err(_) => anyhow::bail!("nothing arrived for {} s", idle.as_secs()),
            Ok(chunk) => chunk?,
        };
        let Some(chunk) = chunk else {
            return Ok(Followed::Ended {
                retry_hint_ms: parser.retry_ms,
            });
        };
        for event in parser.feed(&chunk)? {
            if event.id.is_some() {
                last_id.clone_from(&event.id);
            }
            if !on_event(&event) {
                return Ok(Followed::Stopped);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn events_are_parsed_from_one_chunk_with_comments_and_retry_hints_skipped() {
        let mut parser = Parser::default();
        assert_eq!(parser.feed(STREAM.as_bytes()).expect("parsed"), expected());
        assert_eq!(parser.retry_ms, Some(2000));
    }

    #[test]
    fn events_split_across_chunks_at_every_byte_come_out_the_same() {
        let bytes = STREAM.as_bytes();
        for split in 0..bytes.len() {
            let mut parser = Parser::default();
            let mut events = parser.feed(&bytes[..split]).expect("first part");
            events.extend(parser.feed(&bytes[split..]).expect("second part"));
            assert_eq!(events, expected(), "split at {split}");
        }
    }

    #[test]
    fn an_event_is_only_dispatched_at_its_blank_line() {
        let mut parser = Parser::default();
        assert!(parser
            .feed(b"id: 7\nevent: payment.completed\ndata: {}\n")
            .expect("parsed")
            .is_empty());
        let events = parser.feed(b"\n").expect("parsed");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].id.as_deref(), Some("7"));
    }
}
