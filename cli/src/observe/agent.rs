//! paytool's local agent, a supervised component of the local runtime (`paytool __agent`):
//!
//! - the **webhook receiver** Alertmanager notifies (`POST /hooks/{receiver}`): each
//!   notification is appended to `<home>/alerts/notifications.jsonl`, which `paytool alerts`
//!   reads;
//! - the **gateway's spans**: nginx sends one JSON line per request over syslog (UDP, loopback)
//!   with the gateway's trace and span ids (see stacks/local/gateway/nginx.conf.tera); the agent
//!   turns each into an OTLP span and posts them in batches to the collector, so a payment's
//!   trace starts at the gateway rather than at a parent that no one exported.
//!
//! Bounded everywhere: the span queue drops (and counts) what it cannot hold rather than
//! growing, a batch is at most `SPAN_BATCH_MAX` spans or `SPAN_BATCH_MS` old, an export gets
//! `EXPORT_TIMEOUT_MS`, a notification body at most `NOTIFICATION_BYTES_MAX`, and the store is
//! rotated at `STORE_BYTES_MAX`.

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use paykit::backoff::Backoff;
use serde_json::{json, Value};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

const SPAN_QUEUE_MAX: usize = 8192;
const SPAN_BATCH_MAX: usize = 512;
const SPAN_BATCH_MS: u64 = 500;
const EXPORT_TIMEOUT_MS: u64 = 5_000;
/// One retry: the collector restarting loses at most a batch, never blocks the queue for long.
const EXPORT_ATTEMPTS: u32 = 2;
/// The pause before that retry, with jitter (`paykit::backoff`): the collector that refused a
/// batch is usually restarting, and an immediate retry meets the same closed port.
const EXPORT_RETRY_FIRST_MS: u64 = 200;
const EXPORT_RETRY_MAX_MS: u64 = 1_000;
const DATAGRAM_BYTES_MAX: usize = 8192;
const NOTIFICATION_BYTES_MAX: usize = 1024 * 1024;
/// The store is renamed to `notifications.jsonl.1` (replacing an older one) beyond this.
const STORE_BYTES_MAX: u64 = 16 * 1024 * 1024;
pub const STORE_FILE: &str = "notifications.jsonl";

pub struct AgentArgs {
    pub listen: SocketAddr,
    pub spans_udp: SocketAddr,
    pub otlp_endpoint: String,
    pub store_dir: PathBuf,
    /// The trace viewer's own address (behind the gateway at traces.local.test), and the
    /// Jaeger query API it reads.
    pub traces_listen: SocketAddr,
    pub jaeger_url: String,
}

#[derive(Clone)]
struct Shared {
    store: Arc<Mutex<PathBuf>>,
    spans_received: Arc<AtomicU64>,
    spans_dropped: Arc<AtomicU64>,
    spans_exported: Arc<AtomicU64>,
    /// Spans of traces the gateway did not sample, not sent on (and not dropped).
    spans_unsampled: Arc<AtomicU64>,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.store_dir)
        .with_context(|| format!("cannot create {}", args.store_dir.display()))?;
    let shared = Shared {
        store: Arc::new(Mutex::new(args.store_dir.join(STORE_FILE))),
        spans_received: Arc::default(),
        spans_dropped: Arc::default(),
        spans_exported: Arc::default(),
        spans_unsampled: Arc::default(),
    };
    let socket = UdpSocket::bind(args.spans_udp)
        .await
        .with_context(|| format!("cannot bind udp {}", args.spans_udp))?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let (queue, spans) = mpsc::channel(SPAN_QUEUE_MAX);
    tokio::spawn(receive_spans(socket, queue, shared.clone()));
    tokio::spawn(export_spans(spans, args.otlp_endpoint, shared.clone()));
    log(&format!(
        "agent: alert webhooks on http://{}, gateway spans on udp {}",
        args.listen, args.spans_udp
    ));

    // The trace viewer on a port of its own, so that the gateway can put the sign-in in front
    // of it without exposing the webhook receiver.
    let viewer = super::traces_ui::Viewer::new(args.jaeger_url)?.router();
    let viewer_listener = TcpListener::bind(args.traces_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.traces_listen))?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(viewer_listener, viewer).await {
            log(&format!("agent: the trace viewer stopped: {error}"));
        }
    });
    let app = Router::new()
        .route("/health", get(health))
        .route("/hooks/{receiver}", post(notification))
        .layer(DefaultBodyLimit::max(NOTIFICATION_BYTES_MAX))
        .with_state(shared);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            // The supervisor stops components with SIGTERM; Ctrl-C when run by hand.
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut terminate) => {
                    tokio::select! {
                        _ = terminate.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        })
        .await?;
    Ok(())
}

fn log(message: &str) {
    crate::support::log::line("agent", message);
}

async fn health(State(shared): State<Shared>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "spans_received": shared.spans_received.load(Ordering::Relaxed),
        "spans_exported": shared.spans_exported.load(Ordering::Relaxed),
        "spans_dropped": shared.spans_dropped.load(Ordering::Relaxed),
        "spans_unsampled": shared.spans_unsampled.load(Ordering::Relaxed),
    }))
}

/// Alertmanager's webhook (payload version 4): kept as received, with when and for which
/// receiver (page or ticket) it arrived.
async fn notification(
    State(shared): State<Shared>,
    UrlPath(receiver): UrlPath<String>,
    Json(body): Json<Value>,
) -> StatusCode {
    if !body.get("alerts").is_some_and(Value::is_array) {
        return StatusCode::UNPROCESSABLE_ENTITY;
    }
    let line = json!({
        "received_at": chrono::Utc::now().to_rfc3339(),
        "receiver": receiver,
        "notification": body,
    });
    let path = shared.store.lock().unwrap_or_else(|e| e.into_inner());
    match append(&path, &line.to_string()) {
        Ok(()) => StatusCode::OK,
        Err(e) => {
            log(&format!("agent: cannot store a notification: {e:#}"));
            // Alertmanager retries a failed webhook.
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

fn append(path: &Path, line: &str) -> anyhow::Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > STORE_BYTES_MAX) {
        std::fs::rename(path, path.with_extension("jsonl.1"))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(file, "{line}")?;
    Ok(())
}

async fn receive_spans(socket: UdpSocket, queue: mpsc::Sender<Value>, shared: Shared) {
    let mut buffer = vec![0u8; DATAGRAM_BYTES_MAX];
    loop {
        let Ok(length) = socket.recv(&mut buffer).await else {
            continue;
        };
        shared.spans_received.fetch_add(1, Ordering::Relaxed);
        let Some(span) = std::str::from_utf8(&buffer[..length])
            .ok()
            .and_then(span_of_syslog_line)
        else {
            shared.spans_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let Some(span) = span.kept() else {
            shared.spans_unsampled.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if queue.try_send(span).is_err() {
            shared.spans_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn export_spans(mut spans: mpsc::Receiver<Value>, otlp_endpoint: String, shared: Shared) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(EXPORT_TIMEOUT_MS))
        .build()
        .expect("a plain HTTP client builds");
    let url = format!("{}/v1/traces", otlp_endpoint.trim_end_matches('/'));
    let mut batch = Vec::with_capacity(SPAN_BATCH_MAX);
    loop {
        let Some(first) = spans.recv().await else {
            return;
        };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(SPAN_BATCH_MS);
        while batch.len() < SPAN_BATCH_MAX {
            match tokio::time::timeout_at(deadline, spans.recv()).await {
                Ok(Some(span)) => batch.push(span),
                Ok(None) | Err(_) => break,
            }
        }
        let count = batch.len() as u64;
        let body = otlp_request(std::mem::take(&mut batch));
        let mut exported = false;
        let mut backoff = Backoff::new(EXPORT_RETRY_FIRST_MS, EXPORT_RETRY_MAX_MS);
        for attempt in 1..=EXPORT_ATTEMPTS {
            if attempt > 1 {
                tokio::time::sleep(backoff.next_delay()).await;
            }
            match client.post(&url).json(&body).send().await {
                Ok(response) if response.status().is_success() => {
                    exported = true;
                    break;
                }
                Ok(response) => log(&format!(
                    "agent: the collector answered {}",
                    response.status()
                )),
                Err(e) => log(&format!("agent: cannot export spans: {e}")),
            }
        }
        let counter = if exported {
            &shared.spans_exported
        } else {
            &shared.spans_dropped
        };
        counter.fetch_add(count, Ordering::Relaxed);
    }
}

/// An OTLP/JSON export request (ExportTraceServiceRequest) of the gateway's spans.
pub fn otlp_request(spans: Vec<Value>) -> Value {
    json!({
        "resourceSpans": [{
            "resource": {"attributes": [attribute("service.name", json!({"stringValue": "gateway"}))]},
            "scopeSpans": [{
                "scope": {"name": "paytool.gateway-spans"},
                "spans": spans,
            }],
        }],
    })
}

fn attribute(key: &str, value: Value) -> Value {
    json!({"key": key, "value": value})
}

fn text(key: &str, value: &str) -> Option<Value> {
    (!value.is_empty() && value != "-").then(|| attribute(key, json!({"stringValue": value})))
}

/// A gateway span, and whether its trace was sampled.
#[derive(Debug)]
pub struct GatewaySpan {
    pub span: Value,
    /// The trace flags the gateway sent on (`01`: sampled); lines without them are sampled.
    pub sampled: bool,
    pub failed: bool,
}

impl GatewaySpan {
    /// The span to send on: a sampled trace's, or a failed request's whatever was sampled (an
    /// error is never sampled away).
    pub fn kept(self) -> Option<Value> {
        (self.sampled || self.failed).then_some(self.span)
    }
}

/// One syslog datagram from nginx (`<PRI>TIMESTAMP TAG: {json}`) as an OTLP/JSON span, or
/// `None` when it is not one of the gateway's span lines.
pub fn span_of_syslog_line(datagram: &str) -> Option<GatewaySpan> {
    let json_start = datagram.find('{')?;
    let line: Value = serde_json::from_str(datagram[json_start..].trim_end()).ok()?;
    let field = |name: &str| line.get(name).and_then(Value::as_str).unwrap_or("");
    let trace_id = field("trace_id");
    let span_id = field("span_id");
    let is_hex =
        |id: &str, length: usize| id.len() == length && id.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_hex(trace_id, 32) || !is_hex(span_id, 16) {
        return None;
    }
    let end_ns = seconds_to_ns(field("end_s"))?;
    let duration_ns = seconds_to_ns(field("duration_s"))?;
    let start_ns = end_ns.checked_sub(duration_ns)?;
    let status = line.get("status").and_then(Value::as_u64).unwrap_or(0);
    let method = field("method");
    let host = field("host");
    let attributes: Vec<Value> = [
        text("http.request.method", method),
        text("server.address", host),
        text("url.path", field("path")),
        Some(attribute(
            "http.response.status_code",
            json!({"intValue": status.to_string()}),
        )),
        text("client.address", field("remote")),
        text("enduser.kind", field("user")),
        text("upstream.address", field("upstream")),
        text("http.request.id", field("request_id")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut span = json!({
        "traceId": trace_id.to_ascii_lowercase(),
        "spanId": span_id.to_ascii_lowercase(),
        "name": format!("{method} {host}"),
        // SPAN_KIND_SERVER
        "kind": 2,
        "startTimeUnixNano": start_ns.to_string(),
        "endTimeUnixNano": end_ns.to_string(),
        "attributes": attributes,
        // STATUS_CODE_ERROR for server errors (the gateway's or its upstream's), else unset.
        "status": {"code": if status >= 500 { 2 } else { 0 }},
    });
    let parent = field("parent_span_id");
    if is_hex(parent, 16) {
        span["parentSpanId"] = json!(parent.to_ascii_lowercase());
    }
    let sampled = match field("sampled") {
        "" => true,
        flags => u8::from_str_radix(flags, 16).is_ok_and(|flags| flags & 1 == 1),
    };
    Some(GatewaySpan {
        span,
        sampled,
        failed: status >= 500,
    })
}

/// nginx's `$msec` / `$request_time`: seconds with exactly three decimals.
fn seconds_to_ns(text: &str) -> Option<u64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    if whole.is_empty() || fraction.len() > 9 {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let fraction_ns: u64 = format!("{fraction:0<9}").parse().ok()?;
    whole.checked_mul(1_000_000_000)?.checked_add(fraction_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"<190>Dec  1 06:00:00 paytool_gateway: {"trace_id":"4BF92F3577B34DA6A3CE929D0E0E4736","span_id":"00f067aa0ba902b7","parent_span_id":"","end_s":"1764568800.250","duration_s":"0.012","host":"api.local.test","method":"POST","path":"/v1/payments","status":201,"user":"3f1c","remote":"127.0.0.1","upstream":"127.0.0.1:28102","request_id":"4bf92f3577b34da6a3ce929d0e0e4736"}"#;

    #[test]
    fn a_gateway_line_becomes_a_server_span_ending_when_nginx_logged_it() {
        let span = span_of_syslog_line(LINE).expect("a span").span;
        assert_eq!(span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736"); // pragma: allowlist secret
        assert_eq!(span["spanId"], "00f067aa0ba902b7");
        assert!(span.get("parentSpanId").is_none(), "a root span: {span}");
        assert_eq!(span["name"], "POST api.local.test");
        assert_eq!(span["kind"], 2);
        assert_eq!(span["endTimeUnixNano"], "1764568800250000000");
        assert_eq!(span["startTimeUnixNano"], "1764568800238000000");
        assert_eq!(span["status"]["code"], 0);
        let attributes = span["attributes"].as_array().expect("attributes");
        assert!(attributes
            .contains(&json!({"key": "url.path", "value": {"stringValue": "/v1/payments"}})));
        assert!(attributes
            .contains(&json!({"key": "http.response.status_code", "value": {"intValue": "201"}})));
    }

    #[test]
    fn a_span_continuing_a_callers_trace_keeps_its_parent_and_server_errors_are_errors() {
        let line = LINE
            .replace(
                r#""parent_span_id":"""#,
                r#""parent_span_id":"b7ad6b7169203331""#,
            )
            .replace(r#""status":201"#, r#""status":502"#);
        let span = span_of_syslog_line(&line).expect("a span").span;
        assert_eq!(span["parentSpanId"], "b7ad6b7169203331"); // pragma: allowlist secret
        assert_eq!(span["status"]["code"], 2);
    }

    #[test]
    fn an_unsampled_trace_s_span_is_kept_only_when_its_request_failed() {
        let unsampled = LINE.replace(r#""status":201"#, r#""status":201,"sampled":"00""#);
        let span = span_of_syslog_line(&unsampled).expect("a span");
        assert!(!span.sampled);
        assert!(span.kept().is_none(), "not sampled, not failed");
        let failed = unsampled.replace(r#""status":201"#, r#""status":503"#);
        assert!(span_of_syslog_line(&failed)
            .expect("a span")
            .kept()
            .is_some());
        let sampled = LINE.replace(r#""status":201"#, r#""status":201,"sampled":"01""#);
        assert!(span_of_syslog_line(&sampled)
            .expect("a span")
            .kept()
            .is_some());
        // A line of a gateway that does not say (an older configuration): sampled.
        assert!(span_of_syslog_line(LINE).expect("a span").kept().is_some());
    }

    #[test]
    fn lines_that_are_not_gateway_spans_are_skipped() {
        for line in [
            "",
            "<190>Dec  1 06:00:00 paytool_gateway: not json",
            &LINE.replace("4BF92F3577B34DA6A3CE929D0E0E4736", "xyz"), // pragma: allowlist secret
            &LINE.replace("00f067aa0ba902b7", "00f067aa"),
            &LINE.replace(r#""end_s":"1764568800.250""#, r#""end_s":"-""#),
            &LINE.replace(
                r#""duration_s":"0.012""#,
                r#""duration_s":"99999999999.000""#,
            ),
        ] {
            assert!(span_of_syslog_line(line).is_none(), "{line}");
        }
    }

    #[test]
    fn nginx_seconds_convert_exactly_to_nanoseconds() {
        assert_eq!(seconds_to_ns("1.5"), Some(1_500_000_000));
        assert_eq!(seconds_to_ns("0.001"), Some(1_000_000));
        assert_eq!(seconds_to_ns("12"), Some(12_000_000_000));
        assert_eq!(seconds_to_ns(".5"), None);
        assert_eq!(seconds_to_ns("1.2.3"), None);
    }

    #[test]
    fn each_stored_notification_is_one_line() {
        let dir = std::env::temp_dir().join(format!("paytool-agent-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("the test data is as written");
        let path = dir.join(STORE_FILE);
        append(&path, r#"{"a":1}"#).expect("the test data is as written");
        append(&path, r#"{"a":2}"#).expect("the test data is as written");
        assert_eq!(
            std::fs::read_to_string(&path).expect("the test data is as written"),
            "{\"a\":1}\n{\"a\":2}\n"
        );
        std::fs::remove_dir_all(&dir).expect("the test data is as written");
    }
}
