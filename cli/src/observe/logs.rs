//! `paytool logs --query LOGSQL`: every component's log, searched in VictoriaLogs.
//!
//! The collector reads each component's log file (`paytool logs NAME` prints one) and sends
//! its lines to VictoriaLogs with the component as `service.name`, a request's line with its
//! trace (`trace_id`), its level and its message as `_msg`. This asks VictoriaLogs' LogsQL
//! endpoint, in a bounded time window and with a bounded number of lines, and prints them
//! oldest first: `TIME COMPONENT LEVEL MESSAGE`, or each line's fields as JSON with `--json`.

use crate::runtime::components::observability::victorialogs_url;
use crate::runtime::home::Home;
use crate::support::exit::{fail, Code};
use serde_json::{Map, Value};
use std::time::Duration;

/// The most lines one search may print.
pub const LIMIT_MAX: u32 = 10_000;
/// One search's bound: VictoriaLogs scans every line of the window that matches.
const QUERY_TIMEOUT_MS: u64 = 30_000;
/// How long a search waits for lines still on their way (`--wait-ms`): the collector reads
/// the files every half second and sends in batches of a second.
pub const WAIT_MS_MAX: u64 = 60_000;
const POLL_MS: u64 = 500;

/// What to search.
#[derive(Debug, Clone)]
pub struct Search {
    /// A LogsQL query (`trace_id:…`, `error`, `status:>=500`), or none for every line.
    pub query: Option<String>,
    /// Only this component's lines (`consumer-api`, `gateway`, `consumer-api.1`).
    pub component: Option<String>,
    /// Only this trace's lines.
    pub trace_id: Option<String>,
    /// How far back: a LogsQL duration (`15m`, `1h`, `2d`).
    pub since: String,
    pub limit: u32,
}

impl Search {
    /// The whole LogsQL query: the window, the component, the trace, then the user's query.
    pub fn logsql(&self) -> anyhow::Result<String> {
        let duration_ok = !self.since.is_empty()
            && self
                .since
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.');
        if !duration_ok {
            return Err(fail(
                Code::Usage,
                format!(
                    "--since {:?} is not a duration: a number and a unit, as 15m, 1h or 2d",
                    self.since
                ),
            ));
        }
        let mut parts = vec![format!("_time:{}", self.since)];
        if let Some(component) = &self.component {
            parts.push(format!(
                "_stream:{{service.name={}}}",
                serde_json::to_string(component)?
            ));
        }
        if let Some(trace_id) = &self.trace_id {
            if trace_id.len() != 32 || !trace_id.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(fail(
                    Code::Usage,
                    format!("--trace {trace_id:?} is not a trace id: 32 hexadecimal digits"),
                ));
            }
            parts.push(format!("trace_id:={}", trace_id.to_ascii_lowercase()));
        }
        if let Some(query) = self.query.as_deref().filter(|q| !q.trim().is_empty()) {
            parts.push(format!("({query})"));
        }
        Ok(parts.join(" "))
    }
}

/// Runs the search (waiting up to `wait_ms` for a first line) and prints what it found; exit
/// code 0 with lines, 1 with none (as grep).
pub async fn run(home: &Home, search: &Search, json: bool, wait_ms: u64) -> anyhow::Result<i32> {
    crate::runtime::state::require_running(home)?;
    let lines = find(home, search, wait_ms.min(WAIT_MS_MAX)).await?;
    for line in &lines {
        if json {
            println!("{}", Value::Object(line.clone()));
        } else {
            println!("{}", text(line));
        }
    }
    if lines.is_empty() {
        eprintln!(
            "no line matches {} (VictoriaLogs, {})",
            search.logsql()?,
            victorialogs_url(home)
        );
        return Ok(1);
    }
    Ok(0)
}

/// The matching lines, oldest first; asks again until one arrives or `wait_ms` is spent.
pub async fn find(
    home: &Home,
    search: &Search,
    wait_ms: u64,
) -> anyhow::Result<Vec<Map<String, Value>>> {
    let query = search.logsql()?;
    let limit = search.limit.clamp(1, LIMIT_MAX);
    let url = format!("{}/select/logsql/query", victorialogs_url(home));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(QUERY_TIMEOUT_MS))
        .build()?;
    let started = std::time::Instant::now();
    loop {
        let answer = http
            .post(&url)
            .form(&[("query", query.as_str()), ("limit", &limit.to_string())])
            .send()
            .await
            .map_err(|e| {
                fail(
                    Code::NotRunning,
                    format!("cannot reach VictoriaLogs at {url}: {e} (`paytool status` shows whether victorialogs is up)"),
                )
            })?;
        let status = answer.status();
        let body = answer.text().await?;
        if status == reqwest::StatusCode::BAD_REQUEST {
            return Err(fail(
                Code::Usage,
                format!(
                    "VictoriaLogs refused the query {query}: {}",
                    body.trim().chars().take(300).collect::<String>()
                ),
            ));
        }
        if !status.is_success() {
            return Err(fail(
                Code::Failed,
                format!("VictoriaLogs answered {status} to {query}"),
            ));
        }
        let mut lines = parse(&body)?;
        if !lines.is_empty() || started.elapsed() >= Duration::from_millis(wait_ms) {
            lines.sort_by(|a, b| time_of(a).cmp(time_of(b)));
            return Ok(lines);
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
}

/// VictoriaLogs answers one JSON object a line.
fn parse(body: &str) -> anyhow::Result<Vec<Map<String, Value>>> {
    body.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| match serde_json::from_str::<Value>(line)? {
            Value::Object(fields) => Ok(fields),
            other => anyhow::bail!("VictoriaLogs answered a line that is not an object: {other}"),
        })
        .collect()
}

fn time_of(line: &Map<String, Value>) -> &str {
    line.get("_time").and_then(Value::as_str).unwrap_or("")
}

fn field<'a>(line: &'a Map<String, Value>, name: &str) -> &'a str {
    line.get(name).and_then(Value::as_str).unwrap_or("")
}

/// `TIME COMPONENT LEVEL MESSAGE [trace=…]`.
fn text(line: &Map<String, Value>) -> String {
    let level = match field(line, "severity_text") {
        "" | "Unspecified" => "-",
        level => level,
    };
    let mut out = format!(
        "{} {:<16} {:<5} {}",
        time_of(line),
        field(line, "service.name"),
        level,
        field(line, "_msg")
    );
    // A service's request line says which request and how it was answered.
    for name in ["otel.name", "http.response.status_code"] {
        let value = field(line, name);
        if !value.is_empty() {
            out.push(' ');
            out.push_str(value);
        }
    }
    let trace = field(line, "trace_id");
    if !trace.is_empty() {
        out.push_str(&format!(" trace={trace}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search() -> Search {
        Search {
            query: None,
            component: None,
            trace_id: None,
            since: "1h".into(),
            limit: 100,
        }
    }

    #[test]
    fn the_query_puts_the_window_the_component_and_the_trace_before_the_users_words() {
        let query = Search {
            query: Some("error OR status:>=500".into()),
            component: Some("consumer-api".into()),
            trace_id: Some("0AF7651916CD43DD8448EB211C80319C".into()),
            ..search()
        }
        .logsql()
        .expect("a query");
        assert_eq!(
            query,
            "_time:1h _stream:{service.name=\"consumer-api\"} trace_id:=0af7651916cd43dd8448eb211c80319c (error OR status:>=500)"
        );
    }

    #[test]
    fn a_window_or_a_trace_id_that_is_not_one_is_refused_before_asking() {
        for since in ["", "1h | delete", "1 h"] {
            let bad = Search {
                since: since.into(),
                ..search()
            };
            assert!(bad.logsql().is_err(), "{since:?}");
        }
        let bad = Search {
            trace_id: Some("not-a-trace".into()),
            ..search()
        };
        assert!(bad.logsql().is_err());
    }

    #[test]
    fn a_line_prints_its_time_component_level_message_and_trace() {
        let line: Map<String, Value> = serde_json::from_str(
            r#"{"_time":"2026-12-07T16:15:20Z","service.name":"merchant-api","severity_text":"INFO","_msg":"answered","trace_id":"20852c0f03397b99141c998d377cb3c0"}"#,
        )
        .expect("json");
        assert_eq!(
            text(&line),
            "2026-12-07T16:15:20Z merchant-api     INFO  answered trace=20852c0f03397b99141c998d377cb3c0"
        );
    }
}
