//! The trace viewer of the local runtime, served by paytool's agent on its own loopback port
//! and, behind the operators' sign-in, at `https://traces.local.test`.
//!
//! Why not Jaeger's UI: the Jaeger module the runtime builds has no web assets (they come from
//! the jaeger-ui repository, which neither the Go module proxy nor the npm registry here
//! serves), so the page a person opens is this one, drawn on the server from Jaeger's query API
//! with the same parsing as `paytool trace`: a waterfall of every span, the services it
//! crossed, errors marked; a search by trace id (what a log line carries: VictoriaLogs'
//! `trace_id`) or by payment id; the latest requests through the gateway.

use super::html;
use super::trace::{parse, saga_search, Trace};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// One ask of Jaeger's query API.
const JAEGER_TIMEOUT_MS: u64 = 5_000;
/// How many recent requests the start page lists, and how far back it looks.
const RECENT_MAX: u32 = 20;
const RECENT_LOOKBACK: &str = "1h";

#[derive(Clone)]
pub struct Viewer {
    jaeger_url: String,
    http: reqwest::Client,
}

impl Viewer {
    pub fn new(jaeger_url: String) -> anyhow::Result<Self> {
        Ok(Self {
            jaeger_url,
            http: reqwest::Client::builder()
                .timeout(Duration::from_millis(JAEGER_TIMEOUT_MS))
                .build()?,
        })
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/", get(start))
            .route("/traces/{trace_id}", get(one))
            .with_state(self)
    }

    async fn ask<V: serde::Serialize>(
        &self,
        path: &str,
        query: &[(&str, V)],
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.jaeger_url);
        let response = self
            .http
            .get(&url)
            .query(query)
            .send()
            .await
            .map_err(|e| format!("cannot reach Jaeger: {e}"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(Value::Null);
        }
        if !status.is_success() {
            return Err(format!("Jaeger answered {status}"));
        }
        Ok(body)
    }
}

#[derive(Debug, Deserialize)]
struct Search {
    /// A trace id or a payment id.
    q: Option<String>,
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>\
         body{{font-family:sans-serif;margin:1.5rem;color:#222}}table{{border-collapse:collapse;width:100%}}\
         td,th{{padding:.2rem .4rem;border-bottom:1px solid #eee;text-align:left;font-size:.9rem}}\
         .bar{{position:relative;height:.9rem;background:#f4f4f4;min-width:20rem}}\
         .bar span{{position:absolute;top:0;bottom:0;background:#4a7bd0}}.error span{{background:#c0392b}}\
         .error td.name{{color:#c0392b}}form{{margin:1rem 0}}input{{width:32rem;padding:.3rem}}\
         </style></head><body><h1><a href=\"/\">Traces</a></h1>\
         <form action=\"/\"><input name=\"q\" placeholder=\"a trace id (32 hex digits, as in the logs) or a payment id\">\
         <button>Open</button></form>{body}</body></html>",
        html(title)
    ))
}

fn trouble(status: StatusCode, message: &str) -> Response {
    (status, page("Traces", &format!("<p>{}</p>", html(message)))).into_response()
}

fn is_trace_id(text: &str) -> bool {
    text.len() == 32 && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// The start page: a search, or the latest requests through the gateway.
async fn start(State(viewer): State<Viewer>, Query(search): Query<Search>) -> Response {
    if let Some(q) = search.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        if is_trace_id(q) {
            return Redirect::to(&format!("/traces/{}", q.to_ascii_lowercase())).into_response();
        }
        let Ok(payment) = uuid::Uuid::parse_str(q) else {
            return trouble(
                StatusCode::BAD_REQUEST,
                &format!("{q:?} is neither a trace id (32 hex digits) nor a payment id (a UUID)"),
            );
        };
        return match viewer.ask("/api/traces", &saga_search(payment)).await {
            Ok(body) => match body["data"][0]["traceID"].as_str() {
                Some(id) => Redirect::to(&format!("/traces/{id}")).into_response(),
                None => trouble(
                    StatusCode::NOT_FOUND,
                    &format!("no trace of the payment {payment} in Jaeger"),
                ),
            },
            Err(error) => trouble(StatusCode::BAD_GATEWAY, &error),
        };
    }
    let limit = RECENT_MAX.to_string();
    let body = match viewer
        .ask(
            "/api/traces",
            &[
                ("service", "gateway"),
                ("lookback", RECENT_LOOKBACK),
                ("limit", limit.as_str()),
            ],
        )
        .await
    {
        Ok(body) => body,
        Err(error) => return trouble(StatusCode::BAD_GATEWAY, &error),
    };
    // Jaeger answers the newest first.
    let traces: Vec<Trace> = body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| parse(t).ok())
        .collect();
    let mut rows = String::new();
    for trace in &traces {
        let root = trace.spans.first();
        rows.push_str(&format!(
            "<tr><td><a href=\"/traces/{id}\">{id}</a></td><td>{}</td><td>{:.2} ms</td><td>{}</td><td>{}</td></tr>",
            html(root.map_or("", |s| s.name.as_str())),
            trace.duration_us as f64 / 1000.0,
            trace.spans.len(),
            html(&trace.services.join(", ")),
            id = html(&trace.trace_id),
        ));
    }
    page(
        "Traces",
        &format!(
            "<h2>The latest requests through the gateway (last {RECENT_LOOKBACK})</h2><table>\
             <tr><th>trace</th><th>request</th><th>duration</th><th>spans</th><th>services</th></tr>{rows}</table>"
        ),
    )
    .into_response()
}

/// One trace as a waterfall.
async fn one(State(viewer): State<Viewer>, UrlPath(trace_id): UrlPath<String>) -> Response {
    if !is_trace_id(&trace_id) {
        return trouble(
            StatusCode::BAD_REQUEST,
            &format!("{trace_id:?} is not a trace id: 32 hexadecimal digits"),
        );
    }
    let body = match viewer
        .ask::<&str>(
            &format!("/api/traces/{}", trace_id.to_ascii_lowercase()),
            &[],
        )
        .await
    {
        Ok(body) => body,
        Err(error) => return trouble(StatusCode::BAD_GATEWAY, &error),
    };
    let Some(trace) = body["data"].get(0).and_then(|t| parse(t).ok()) else {
        return trouble(
            StatusCode::NOT_FOUND,
            &format!(
                "no trace {trace_id} in Jaeger (spans arrive a second or two after a request)"
            ),
        );
    };
    page(&format!("Trace {}", trace.trace_id), &waterfall(&trace)).into_response()
}

/// The trace's spans, indented by depth, each with a bar placed on the trace's time.
pub fn waterfall(trace: &Trace) -> String {
    let total = trace.duration_us.max(1) as f64;
    let mut rows = String::new();
    for span in &trace.spans {
        let left = span.start_offset_us as f64 * 100.0 / total;
        let width = (span.duration_us as f64 * 100.0 / total).max(0.3);
        rows.push_str(&format!(
            "<tr class=\"span{}\" data-service=\"{}\"><td class=\"name\" style=\"padding-left:{}rem\">{}{} {}</td>\
             <td><div class=\"bar\"><span style=\"left:{left:.2}%;width:{width:.2}%\"></span></div></td>\
             <td>{:.2} ms</td><td>+{:.2} ms</td></tr>",
            if span.error { " error" } else { "" },
            html(&span.service),
            0.4 + span.depth as f64,
            if span.error { "✘ " } else { "" },
            html(&span.service),
            html(&span.name),
            span.duration_us as f64 / 1000.0,
            span.start_offset_us as f64 / 1000.0,
        ));
    }
    format!(
        "<h2>Trace {}</h2><p>{:.2} ms, {} spans, services: {}</p><table>\
         <tr><th>service and span</th><th>time</th><th>duration</th><th>start</th></tr>{rows}</table>",
        html(&trace.trace_id),
        trace.duration_us as f64 / 1000.0,
        trace.spans.len(),
        html(&trace.services.join(", "))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_id_is_32_hex_digits_and_anything_else_is_not() {
        assert!(is_trace_id("0af7651916cd43dd8448eb211c80319c"));
        assert!(!is_trace_id("0af7651916cd43dd8448eb211c80319"));
        assert!(!is_trace_id("../../api/services/xxxxxxxxxxxxxxxxxx"));
    }

    #[test]
    fn text_from_a_trace_is_escaped_before_it_is_drawn() {
        assert_eq!(html("<script>&\""), "&lt;script&gt;&amp;&quot;");
    }
}
