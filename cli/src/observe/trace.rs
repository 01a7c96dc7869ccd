//! `paytool trace PAYMENT_ID`: the payment's trace from Jaeger's query API, as a waterfall.
//!
//! The orchestrator drives every saga in a `saga.drive` span with the attribute `saga.id`, so
//! the trace is found by that tag; it holds the gateway's span (from paytool's agent), the
//! services' HTTP spans, the orchestrator's saga and the merchant's consumer of the payment's
//! event, linked parent to child by W3C trace context over HTTP and Kafka headers.

use crate::runtime::components::observability::jaeger_query_url;
use crate::runtime::home::Home;
use crate::support::exit::{fail, Code};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use uuid::Uuid;

const QUERY_TIMEOUT_MS: u64 = 5_000;
const POLL_MS: u64 = 250;
/// Spans of one trace reach Jaeger in batches: once found, the trace is read again until its
/// span count has not changed for this long (within --wait-ms).
const SETTLE_MS: u64 = 1_500;
/// Jaeger's search looks back this far for the saga's span.
const LOOKBACK: &str = "2d";
const BAR_WIDTH: usize = 40;
const NAME_WIDTH: usize = 56;
/// Traces deeper than this are drawn flat beyond it (a cycle in bad data cannot loop).
const DEPTH_MAX: usize = 32;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Span {
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub service: String,
    pub name: String,
    /// From the trace's first span's start.
    pub start_offset_us: u64,
    pub duration_us: u64,
    pub depth: usize,
    pub error: bool,
    /// The parent is named but not in the trace (never exported, or not yet arrived).
    pub parent_missing: bool,
    pub attributes: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    pub trace_id: String,
    pub duration_us: u64,
    pub services: Vec<String>,
    /// Depth-first, children by start time.
    pub spans: Vec<Span>,
}

pub async fn run(home: &Home, payment_id: Uuid, json: bool, wait_ms: u64) -> anyhow::Result<i32> {
    crate::runtime::state::require_running(home)?;
    let Some(trace) = find(home, payment_id, wait_ms).await? else {
        return Err(fail(
            Code::Failed,
            format!(
                "no trace in Jaeger for {payment_id} after {wait_ms} ms: is it a payment's id, and was it made since `paytool up`?"
            ),
        ));
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&trace)?);
    } else {
        print!("{}", render(&trace));
    }
    Ok(0)
}

/// Jaeger's search (`/api/traces`) for the trace of a saga (a payment's id): its
/// `saga.drive` span in the orchestrator carries the id.
pub fn saga_search(saga_id: Uuid) -> [(&'static str, String); 4] {
    [
        ("service", "orchestrator".to_string()),
        (
            "tags",
            serde_json::json!({ "saga.id": saga_id.to_string() }).to_string(),
        ),
        ("lookback", LOOKBACK.to_string()),
        ("limit", "1".to_string()),
    ]
}

/// Polls Jaeger for the saga's trace until it is found and settled, or `wait_ms` passes.
pub async fn find(home: &Home, saga_id: Uuid, wait_ms: u64) -> anyhow::Result<Option<Trace>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(QUERY_TIMEOUT_MS))
        .build()?;
    let url = format!("{}/api/traces", jaeger_query_url(home));
    let query = saga_search(saga_id);
    let started = Instant::now();
    let deadline = started + Duration::from_millis(wait_ms);
    let mut last: Option<(Trace, Instant)> = None;
    loop {
        let response = client
            .get(&url)
            .query(&query)
            .send()
            .await
            .map_err(|e| fail(Code::Failed, format!("cannot reach Jaeger at {url}: {e}")))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(fail(
                Code::Failed,
                format!("Jaeger answered {status}: {}", body["errors"]),
            ));
        }
        if let Some(found) = body["data"].get(0).map(parse).transpose()? {
            let now = Instant::now();
            match &last {
                Some((seen, since)) if seen.spans.len() == found.spans.len() => {
                    if now.duration_since(*since) >= Duration::from_millis(SETTLE_MS)
                        || now >= deadline
                    {
                        return Ok(Some(found));
                    }
                }
                _ => last = Some((found, now)),
            }
        }
        if Instant::now() >= deadline {
            return Ok(last.map(|(trace, _)| trace));
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
}

fn tag_value(tag: &Value) -> Value {
    tag.get("value").cloned().unwrap_or(Value::Null)
}

/// One trace of Jaeger's `/api/traces` answer (`traceID`, `spans[]` with `references`,
/// `startTime` and `duration` in microseconds, `processes` naming the services).
pub fn parse(trace: &Value) -> anyhow::Result<Trace> {
    let trace_id = trace["traceID"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("a trace without traceID"))?
        .to_string();
    let services: HashMap<&str, &str> = trace["processes"]
        .as_object()
        .map(|processes| {
            processes
                .iter()
                .map(|(id, process)| (id.as_str(), process["serviceName"].as_str().unwrap_or("?")))
                .collect()
        })
        .unwrap_or_default();
    struct Raw {
        span: Span,
        start_us: u64,
    }
    let mut raw: Vec<Raw> = Vec::new();
    for span in trace["spans"].as_array().into_iter().flatten() {
        let span_id = span["spanID"].as_str().unwrap_or_default().to_string();
        let parent = span["references"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["refType"] == "CHILD_OF" && r["traceID"] == trace_id.as_str())
            .and_then(|r| r["spanID"].as_str())
            .map(str::to_string);
        let attributes: BTreeMap<String, Value> = span["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|tag| Some((tag["key"].as_str()?.to_string(), tag_value(tag))))
            .collect();
        let error = attributes.get("error") == Some(&Value::Bool(true))
            || attributes.get("otel.status_code").and_then(Value::as_str) == Some("ERROR");
        raw.push(Raw {
            start_us: span["startTime"].as_u64().unwrap_or(0),
            span: Span {
                span_id,
                parent_span_id: parent,
                service: services
                    .get(span["processID"].as_str().unwrap_or(""))
                    .copied()
                    .unwrap_or("?")
                    .to_string(),
                name: span["operationName"].as_str().unwrap_or("?").to_string(),
                start_offset_us: 0,
                duration_us: span["duration"].as_u64().unwrap_or(0),
                depth: 0,
                error,
                parent_missing: false,
                attributes,
            },
        });
    }
    let first_us = raw.iter().map(|r| r.start_us).min().unwrap_or(0);
    let end_us = raw
        .iter()
        .map(|r| r.start_us + r.span.duration_us)
        .max()
        .unwrap_or(first_us);
    let known: std::collections::HashSet<String> =
        raw.iter().map(|r| r.span.span_id.clone()).collect();
    let mut children: HashMap<Option<String>, Vec<usize>> = HashMap::new();
    for (index, r) in raw.iter_mut().enumerate() {
        r.span.start_offset_us = r.start_us - first_us;
        let parent = r.span.parent_span_id.clone().filter(|p| known.contains(p));
        r.span.parent_missing = r.span.parent_span_id.is_some() && parent.is_none();
        children.entry(parent).or_default().push(index);
    }
    for siblings in children.values_mut() {
        siblings.sort_by_key(|&i| (raw[i].start_us, raw[i].span.span_id.clone()));
    }
    let mut ordered = Vec::with_capacity(raw.len());
    let mut visited = vec![false; raw.len()];
    let mut stack: Vec<(usize, usize)> = children
        .get(&None)
        .map(|roots| roots.iter().rev().map(|&i| (i, 0)).collect())
        .unwrap_or_default();
    while let Some((index, depth)) = stack.pop() {
        if std::mem::replace(&mut visited[index], true) {
            continue;
        }
        let mut span = raw[index].span.clone();
        span.depth = depth.min(DEPTH_MAX);
        if let Some(kids) = children.get(&Some(span.span_id.clone())) {
            stack.extend(kids.iter().rev().map(|&i| (i, depth + 1)));
        }
        ordered.push(span);
    }
    // Spans in a parent cycle (bad data) are never reached from a root: shown flat at the end.
    for (index, seen) in visited.iter().enumerate() {
        if !seen {
            ordered.push(raw[index].span.clone());
        }
    }
    let mut services: Vec<String> = ordered.iter().map(|s| s.service.clone()).collect();
    services.sort();
    services.dedup();
    Ok(Trace {
        trace_id,
        duration_us: end_us - first_us,
        services,
        spans: ordered,
    })
}

fn millis(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// The waterfall: one line a span, indented by depth, with a bar placed on the trace's time.
pub fn render(trace: &Trace) -> String {
    let mut out = format!(
        "trace {}  {}  {} spans  services: {}\n",
        trace.trace_id,
        millis(trace.duration_us),
        trace.spans.len(),
        trace.services.join(", ")
    );
    let total = trace.duration_us.max(1);
    for span in &trace.spans {
        let mut label = format!(
            "{}{}{} {}",
            "  ".repeat(span.depth),
            if span.error { "✘ " } else { "" },
            span.service,
            span.name
        );
        if label.chars().count() > NAME_WIDTH {
            label = label.chars().take(NAME_WIDTH - 1).collect::<String>() + "…";
        }
        let start = (span.start_offset_us as u128 * BAR_WIDTH as u128 / total as u128) as usize;
        let length = ((span.duration_us as u128 * BAR_WIDTH as u128).div_ceil(total as u128)
            as usize)
            .clamp(1, BAR_WIDTH - start.min(BAR_WIDTH - 1));
        let start = start.min(BAR_WIDTH - length);
        let bar = format!(
            "{}{}{}",
            " ".repeat(start),
            "█".repeat(length),
            " ".repeat(BAR_WIDTH - start - length)
        );
        out.push_str(&format!(
            "{label:<width$} │{bar}│ {:>10} +{}{}\n",
            millis(span.duration_us),
            millis(span.start_offset_us),
            if span.parent_missing {
                "  (parent not in trace)"
            } else {
                ""
            },
            width = NAME_WIDTH
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn span(
        id: &str,
        parent: Option<&str>,
        process: &str,
        name: &str,
        start: u64,
        duration: u64,
    ) -> Value {
        json!({
            "traceID": "t1",
            "spanID": id,
            "operationName": name,
            "references": parent.map(|p| vec![json!({"refType": "CHILD_OF", "traceID": "t1", "spanID": p})]).unwrap_or_default(),
            "startTime": start,
            "duration": duration,
            "processID": process,
            "tags": [{"key": "http.response.status_code", "type": "int64", "value": 201}],
        })
    }

    fn payment() -> Value {
        json!({
            "traceID": "t1",
            "processes": {
                "p1": {"serviceName": "gateway"},
                "p2": {"serviceName": "consumer-api"},
                "p3": {"serviceName": "orchestrator"},
                "p4": {"serviceName": "merchant-api"},
            },
            // Out of order, as Jaeger may answer.
            "spans": [
                span("d", Some("c"), "p4", "event.process payments.v1", 1_000_030_000, 2_000),
                span("b", Some("a"), "p2", "POST /v1/payments", 1_000_001_000, 18_000),
                span("a", None, "p1", "POST api.local.test", 1_000_000_000, 20_000),
                span("c", Some("b"), "p3", "POST /v1/payments", 1_000_002_000, 12_000),
                span("e", Some("c"), "p3", "saga.drive", 1_000_003_000, 10_000),
            ],
        })
    }

    #[test]
    fn spans_come_in_tree_order_with_depths_and_offsets() {
        let trace = parse(&payment()).expect("the test data is as written");
        let order: Vec<(&str, usize)> = trace
            .spans
            .iter()
            .map(|s| (s.span_id.as_str(), s.depth))
            .collect();
        assert_eq!(order, [("a", 0), ("b", 1), ("c", 2), ("e", 3), ("d", 3)]);
        assert_eq!(
            trace.duration_us, 32_000,
            "from the gateway's start to the consumer's end"
        );
        assert_eq!(trace.spans[3].start_offset_us, 3_000);
        assert_eq!(trace.spans[4].parent_span_id.as_deref(), Some("c"));
        assert_eq!(
            trace.services,
            ["consumer-api", "gateway", "merchant-api", "orchestrator"]
        );
        assert!(trace.spans.iter().all(|s| !s.parent_missing));
    }

    #[test]
    fn a_span_whose_parent_never_arrived_is_a_root_and_says_so() {
        let mut trace = payment();
        trace["spans"]
            .as_array_mut()
            .expect("the test data is as written")
            .retain(|s| s["spanID"] != "a");
        let trace = parse(&trace).expect("the test data is as written");
        assert_eq!(trace.spans[0].span_id, "b");
        assert_eq!(trace.spans[0].depth, 0);
        assert!(trace.spans[0].parent_missing);
        assert!(render(&trace).contains("(parent not in trace)"));
    }

    #[test]
    fn a_parent_cycle_in_bad_data_ends_and_keeps_every_span() {
        let bad = json!({
            "traceID": "t1",
            "processes": {"p1": {"serviceName": "x"}},
            "spans": [span("a", Some("b"), "p1", "one", 10, 5), span("b", Some("a"), "p1", "two", 12, 5)],
        });
        let trace = parse(&bad).expect("the test data is as written");
        assert_eq!(trace.spans.len(), 2);
    }

    #[test]
    fn the_waterfall_draws_each_span_within_the_bar() {
        let trace = parse(&payment()).expect("the test data is as written");
        let text = render(&trace);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert!(lines[0].starts_with("trace t1  32.00 ms  5 spans"));
        assert!(lines[1].starts_with("gateway POST api.local.test"));
        assert!(
            lines[4].starts_with("      orchestrator saga.drive"),
            "{text}"
        );
        for line in &lines[1..] {
            let bar: String = line
                .split('│')
                .nth(1)
                .expect("the test data is as written")
                .to_string();
            assert_eq!(bar.chars().count(), BAR_WIDTH, "{line}");
            assert!(bar.contains('█'), "{line}");
        }
        // The gateway's span covers the first 20 of 32 ms: 25 of 40 cells.
        assert_eq!(
            lines[1]
                .split('│')
                .nth(1)
                .expect("the test data is as written")
                .matches('█')
                .count(),
            25
        );
    }

    #[test]
    fn error_spans_are_marked() {
        let mut trace = payment();
        trace["spans"][1]["tags"] =
            json!([{"key": "otel.status_code", "type": "string", "value": "ERROR"}]);
        let trace = parse(&trace).expect("the test data is as written");
        let failed = trace
            .spans
            .iter()
            .find(|s| s.span_id == "b")
            .expect("the test data is as written");
        assert!(failed.error);
        assert!(render(&trace).contains("✘ consumer-api"));
    }
}
