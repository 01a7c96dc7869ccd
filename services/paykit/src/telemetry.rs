//! Telemetry every service shares: JSON logs on stdout (the supervisor writes them to
//! `.paytool/logs/`) that carry the trace and span ids of the work they describe, and
//! OpenTelemetry traces exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! Context crosses process boundaries as W3C `traceparent`: [`http_server_span`] continues an
//! incoming one, [`inject_http`] adds the current one to an outgoing request, the outbox stores
//! it with each event ([`current_traceparent`]) and the Kafka consumer continues it
//! ([`consumer_span`]). So one payment is one trace from the gateway to the merchant's feed.
//!
//! `RUST_LOG` picks the levels; the default is `info`.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::{Map, Value};
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// The standard variable naming the collector (`http://127.0.0.1:4318`); unset, no export.
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Log lines waiting for the writer thread, at most: past it a line is dropped and counted
/// ([`log_lines_dropped`]), never waited for. At a few hundred bytes a line, 64 MiB at worst.
const LOG_LINES_QUEUED_MAX: usize = 131_072;
/// The writer's buffer: lines that come together go out in one write, flushed whenever the
/// queue is empty, so a quiet service's line is on stdout at once.
const LOG_WRITE_BUFFER_BYTES: usize = 64 * 1024;

static LOG_DROPS: std::sync::OnceLock<tracing_appender::non_blocking::ErrorCounter> =
    std::sync::OnceLock::new();

/// Log lines dropped since the start because the writer thread fell behind (a stdout that
/// stopped reading); `/metrics` shows it as `log_lines_dropped`.
pub fn log_lines_dropped() -> usize {
    LOG_DROPS.get().map_or(0, |counter| counter.dropped_lines())
}

/// Keeps the exporter and the log writer alive; dropping it flushes the spans and the lines
/// still queued (at shutdown).
pub struct Telemetry {
    provider: SdkTracerProvider,
    _log_writer: Option<tracing_appender::non_blocking::WorkerGuard>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("telemetry: flushing spans at shutdown failed: {error}");
        }
    }
}

/// Sets up logging and tracing for `service`; keep the result until the process ends.
pub fn init(service: &'static str) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    let endpoint = std::env::var(OTLP_ENDPOINT_ENV).ok();
    if let Some(endpoint) = endpoint.as_deref().filter(|e| !e.is_empty()) {
        // The batch processor bounds its queue (2048 spans) and drops beyond it: telemetry
        // never slows a payment down or holds memory without limit.
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .build()
        {
            Ok(exporter) => builder = builder.with_batch_exporter(exporter),
            Err(error) => eprintln!("telemetry: no span export to {endpoint}: {error}"),
        }
    }
    let provider = builder.build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());
    let tracer = provider.tracer(service);
    // A request's task formats its lines; a thread of their own writes them, so a slow reader
    // of stdout (the supervisor's pipe) never blocks a runtime worker, and a burst is one write.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_LINES_QUEUED_MAX)
        .lossy(true)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::with_capacity(
            LOG_WRITE_BUFFER_BYTES,
            std::io::stdout(),
        ));
    // `try_init` so that tests that build several apps in one process do not panic.
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(JsonWithTrace)
                .with_writer(writer.clone()),
        )
        .try_init()
        .is_ok();
    let log_writer = if installed {
        let _ = LOG_DROPS.set(writer.error_counter());
        Some(guard)
    } else {
        // Another app of this process installed its writer first; this one's goes unused.
        None
    };
    tracing::info!(
        service,
        otlp = endpoint.as_deref().unwrap_or("off"),
        "telemetry initialised"
    );
    Telemetry {
        provider,
        _log_writer: log_writer,
    }
}

/// One JSON object a line: time, level, target, the event's fields, the current span's name
/// and fields, and the OpenTelemetry trace and span ids that link the line to its trace.
struct JsonWithTrace;

impl<S, N> FormatEvent<S, N> for JsonWithTrace
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        line.insert(
            "level".into(),
            Value::String(event.metadata().level().to_string()),
        );
        line.insert(
            "target".into(),
            Value::String(event.metadata().target().to_string()),
        );
        event.record(&mut JsonVisitor(&mut line));
        // The innermost span's name; fields of every span in scope (inner ones win), among
        // them `trace_id` and `span_id`, which the spans that start or continue a trace record
        // (see `with_trace_ids`).
        if let Some(scope) = ctx.event_scope() {
            let mut named = false;
            for span in scope {
                if !named {
                    line.insert("span".into(), Value::String(span.name().to_string()));
                    named = true;
                }
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                    if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                        for (name, value) in fields {
                            line.entry(name).or_insert(value);
                        }
                    }
                }
            }
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.into()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
}

struct HeaderExtractor<'a>(&'a axum::http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct TextExtractor<'a>(&'a str);

impl Extractor for TextExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }
    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

struct HeaderInjector<'a>(&'a mut reqwest::header::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(key.as_bytes()),
            reqwest::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The span of one HTTP request served: named by route, continuing the caller's trace.
pub fn http_server_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(
            || request.uri().path().to_string(),
            |p| p.as_str().to_string(),
        );
    let method = request.method().as_str();
    let span = tracing::info_span!(
        "http.request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = method,
        http.route = route,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    with_trace_ids(span)
}

/// Records the span's OpenTelemetry ids as its fields, so that every log line inside it carries
/// them. The parent must be set before: reading the context starts the span.
fn with_trace_ids(span: tracing::Span) -> tracing::Span {
    let context = span.context();
    let otel = context.span();
    let ids = otel.span_context();
    if ids.is_valid() {
        span.record("trace_id", ids.trace_id().to_string());
        span.record("span_id", ids.span_id().to_string());
    }
    span
}

/// Records the answer's status on the request's span; a 5xx marks the span as an error.
pub fn record_http_status(span: &tracing::Span, status: u16) {
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}

/// Adds the current span's `traceparent` to an outgoing request's headers.
pub fn inject_http(headers: &mut reqwest::header::HeaderMap) {
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
}

/// The current span's W3C `traceparent`, if it belongs to a trace.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// The span of handling one consumed event, continuing the trace of the producer's change.
pub fn consumer_span(consumer: &str, topic: &str, traceparent: Option<&str>) -> tracing::Span {
    let span = tracing::info_span!(
        "event.process",
        otel.name = format!("process {topic}"),
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.destination.name = topic,
        messaging.consumer.group.name = consumer,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    if let Some(traceparent) = traceparent {
        let parent = TraceContextPropagator::new().extract(&TextExtractor(traceparent));
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    }
    with_trace_ids(span)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The log lines written while `work` runs under a subscriber set up as `init` does.
    fn lines_of(work: impl FnOnce()) -> Vec<Value> {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(EnvFilter::new("info"))
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(JsonWithTrace)
                    .with_writer(move || writer.clone()),
            );
        tracing::subscriber::with_default(subscriber, work);
        let text = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf-8");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("every line is JSON"))
            .collect()
    }

    #[test]
    fn a_line_inside_a_continued_trace_carries_its_trace_and_span_ids() {
        let lines = lines_of(|| {
            let span = consumer_span(
                "merchant-api.payments",
                "payments.v1",
                Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            );
            span.in_scope(|| tracing::info!(event = "e-1", "event handled"));
        });
        let line = lines
            .iter()
            .find(|l| l["message"] == "event handled")
            .expect("the line");
        assert_eq!(line["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(line["span"], "event.process");
        assert_eq!(line["event"], "e-1");
        let span_id = line["span_id"].as_str().expect("a span id");
        assert_eq!(span_id.len(), 16);
        assert_ne!(
            span_id, "b7ad6b7169203331",
            "the consumer's span is a child"
        );
    }

    #[test]
    fn a_request_s_lines_continue_the_caller_s_trace() {
        let lines = lines_of(|| {
            let request = axum::http::Request::builder()
                .uri("/v1/payments")
                .header(
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                )
                .body(axum::body::Body::empty())
                .expect("a request");
            let span = http_server_span(&request);
            record_http_status(&span, 201);
            span.in_scope(|| tracing::info!(status = 201, "answered"));
        });
        let line = lines
            .iter()
            .find(|l| l["message"] == "answered")
            .unwrap_or_else(|| panic!("the line: {lines:?}"));
        assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(line["http.route"], "/v1/payments");
    }

    #[test]
    fn a_line_outside_any_span_has_no_trace() {
        let lines = lines_of(|| tracing::info!(port = 8080, "listening"));
        assert_eq!(lines[0]["message"], "listening");
        assert_eq!(lines[0]["port"], 8080);
        assert!(lines[0].get("trace_id").is_none());
    }
}
