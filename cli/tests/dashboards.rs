//! Structural checks of the Grafana dashboards of the kind runtime
//! (`stacks/kind/observability/dashboards/*.json`), since no Grafana runs here to load them:
//! they parse, their uids and panel ids are unique, their panels tile a 24-column grid without
//! overlapping, every panel and query goes through the `${datasource}` variable, and every
//! metric a query reads is one the platform exports, a recording rule generated from
//! `stacks/observability/slos.yaml`, or on an explicit allow-list of exporter metrics. So
//! renaming a metric in a service without updating the dashboards fails here.
//!
//! The SLO generator is `paytool::observe::slo_rules`.

use paytool::observe::slo_rules as slo;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const DASHBOARDS: [&str; 6] = [
    "http.json",
    "kafka.json",
    "payments.json",
    "postgres.json",
    "rust-runtime.json",
    "slos.json",
];

/// What the services expose at /metrics (paykit::metrics and the orchestrator's sagas),
/// histograms by their series names.
const SERVICE_METRICS: &[&str] = &[
    "http_server_requests_total",
    "http_server_request_duration_seconds_bucket",
    "http_server_request_duration_seconds_sum",
    "http_server_request_duration_seconds_count",
    "db_pool_connections",
    "db_pool_max_connections",
    "outbox_unpublished_events",
    "outbox_oldest_unpublished_age_seconds",
    "events_consumed_total",
    "event_consumer_lag_seconds_bucket",
    "event_consumer_lag_seconds_sum",
    "event_consumer_lag_seconds_count",
    "saga_transitions_total",
    "sagas_finished_total",
    "saga_amount_minor_total",
];

/// Metrics of other exporters, by who provides them.
const EXPORTER_METRICS: &[(&str, &[&str])] = &[
    (
        "the standard process collector (metrics-process for the Rust services)",
        &[
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
            "process_threads",
        ],
    ),
    (
        "kafka_exporter",
        &[
            "kafka_brokers",
            "kafka_consumergroup_lag",
            "kafka_topic_partition_current_offset",
        ],
    ),
    (
        "postgres_exporter",
        &[
            "pg_up",
            "pg_stat_database_xact_commit",
            "pg_stat_database_xact_rollback",
            "pg_stat_database_numbackends",
            "pg_stat_database_deadlocks",
            "pg_database_size_bytes",
        ],
    ),
    ("Prometheus itself", &["up", "ALERTS"]),
];

/// PromQL functions and aggregations the dashboards may call.
const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "avg",
    "avg_over_time",
    "bottomk",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "count",
    "count_over_time",
    "count_values",
    "delta",
    "deriv",
    "floor",
    "group",
    "histogram_quantile",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "max",
    "max_over_time",
    "min",
    "min_over_time",
    "predict_linear",
    "quantile",
    "quantile_over_time",
    "rate",
    "resets",
    "round",
    "scalar",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev",
    "stdvar",
    "sum",
    "sum_over_time",
    "time",
    "timestamp",
    "topk",
    "vector",
];

/// Keywords followed by a list of label names in parentheses.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "inf", "nan"];

const DATASOURCE: &str = "${datasource}";
const GRID_COLUMNS: i64 = 24;

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

fn dashboards_dir() -> PathBuf {
    project_root().join("stacks/kind/observability/dashboards")
}

/// Every dashboard by file name, parsed.
fn dashboards() -> BTreeMap<String, Value> {
    let dir = dashboards_dir();
    std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).expect("read a dashboard");
            let value: Value = serde_json::from_str(&text)
                .unwrap_or_else(|error| panic!("{name} is not valid JSON: {error}"));
            (name, value)
        })
        .collect()
}

fn panels(dashboard: &Value) -> &[Value] {
    dashboard["panels"]
        .as_array()
        .map(Vec::as_slice)
        .expect("a dashboard has a panels array")
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or("")
}

/// The metrics a dashboard may read: the services', the SLO recording rules', the exporters'.
fn known_metrics() -> BTreeSet<String> {
    let slos = slo::load(&project_root().join(slo::SLOS_PATH)).expect("the project's SLOs load");
    let mut known: BTreeSet<String> = slo::rules(&slos).recorded_series();
    known.extend(SERVICE_METRICS.iter().map(|name| name.to_string()));
    for (_, names) in EXPORTER_METRICS {
        known.extend(names.iter().map(|name| name.to_string()));
    }
    known
}

/// The metric names a PromQL expression reads: identifiers that are not functions, keywords,
/// label names (inside `{...}` or a `by (...)` list), numbers, durations or Grafana variables.
/// An unknown identifier followed by `(` is an error: a misspelt function.
fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(&chars, i),
            '{' => i = skip_group(&chars, i, '{', '}')?,
            '[' => i = skip_group(&chars, i, '[', ']')?,
            '$' => {
                i += 1;
                if chars.get(i) == Some(&'{') {
                    i = skip_group(&chars, i, '{', '}')?;
                } else {
                    while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                        i += 1;
                    }
                }
            }
            _ if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            _ if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let lower = word.to_ascii_lowercase();
                let mut next = i;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                let opens = chars.get(next) == Some(&'(');
                if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                    if opens {
                        i = skip_group(&chars, next, '(', ')')?;
                    }
                } else if KEYWORDS.contains(&lower.as_str()) || FUNCTIONS.contains(&word.as_str()) {
                    // A keyword, or a function whose arguments the loop goes on to read.
                } else if opens {
                    return Err(format!("unknown function {word:?} in {expr:?}"));
                } else {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    Ok(names)
}

/// The index after the string literal starting at `start`.
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// The index after the group opened at `start`, strings inside it skipped whole.
fn skip_group(chars: &[char], start: usize, open: char, close: char) -> Result<usize, String> {
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = skip_string(chars, i);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(format!(
        "unclosed {open:?} in {:?}",
        chars.iter().collect::<String>()
    ))
}

/// Every PromQL query of a dashboard, with where it is: panel targets and query variables
/// (`label_values(metric, label)`, whose metric part is checked).
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            found.push((
                format!(
                    "panel {:?} target {}",
                    str_of(panel, "title"),
                    str_of(target, "refId")
                ),
                str_of(target, "expr").to_string(),
            ));
        }
    }
    for variable in variables(dashboard) {
        if str_of(variable, "type") == "query" {
            let query = variable["query"]["query"]
                .as_str()
                .or_else(|| variable["query"].as_str())
                .unwrap_or("");
            let expr = query
                .strip_prefix("label_values(")
                .and_then(|rest| rest.rsplit_once(','))
                .map_or(query, |(metric, _label)| metric);
            found.push((
                format!("variable {:?}", str_of(variable, "name")),
                expr.to_string(),
            ));
        }
    }
    found
}

fn variables(dashboard: &Value) -> &[Value] {
    dashboard["templating"]["list"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn uses_datasource_variable(value: &Value) -> bool {
    str_of(&value["datasource"], "uid") == DATASOURCE
        && str_of(&value["datasource"], "type") == "prometheus"
}

#[test]
fn the_six_dashboards_are_there_and_parse() {
    let found: Vec<String> = dashboards().into_keys().collect();
    assert_eq!(found, DASHBOARDS);
}

#[test]
fn every_dashboard_has_a_title_description_paytool_tag_and_schema_version_39() {
    for (name, dashboard) in dashboards() {
        assert_eq!(dashboard["schemaVersion"], 39, "{name}");
        assert!(
            !str_of(&dashboard, "title").is_empty(),
            "{name} has no title"
        );
        assert!(
            !str_of(&dashboard, "description").is_empty(),
            "{name} has no description"
        );
        let tags = dashboard["tags"].as_array().cloned().unwrap_or_default();
        assert!(
            tags.contains(&Value::from("paytool")),
            "{name} is not tagged paytool"
        );
        assert!(!panels(&dashboard).is_empty(), "{name} has no panels");
    }
}

#[test]
fn dashboard_uids_are_unique_and_fit_grafana() {
    let mut seen = BTreeMap::new();
    for (name, dashboard) in dashboards() {
        let uid = str_of(&dashboard, "uid").to_string();
        assert!(
            !uid.is_empty() && uid.len() <= 40,
            "{name}: uid {uid:?} must have 1 to 40 characters"
        );
        if let Some(other) = seen.insert(uid.clone(), name.clone()) {
            panic!("{name} and {other} share the uid {uid:?}");
        }
    }
}

#[test]
fn every_dashboard_has_a_prometheus_datasource_variable() {
    for (name, dashboard) in dashboards() {
        let datasource = variables(&dashboard)
            .iter()
            .find(|v| str_of(v, "name") == "datasource")
            .unwrap_or_else(|| panic!("{name} has no datasource variable"));
        assert_eq!(str_of(datasource, "type"), "datasource", "{name}");
        assert_eq!(str_of(datasource, "query"), "prometheus", "{name}");
        for variable in variables(&dashboard) {
            if str_of(variable, "type") == "query" {
                assert!(
                    uses_datasource_variable(variable),
                    "{name}: variable {:?} does not query ${{datasource}}",
                    str_of(variable, "name")
                );
            }
        }
    }
}

#[test]
fn panel_ids_are_unique_within_each_dashboard_and_types_are_timeseries_or_stat() {
    for (name, dashboard) in dashboards() {
        let mut ids = BTreeSet::new();
        for panel in panels(&dashboard) {
            let id = panel["id"]
                .as_i64()
                .unwrap_or_else(|| panic!("{name}: a panel without a numeric id"));
            assert!(ids.insert(id), "{name}: panel id {id} is used twice");
            let kind = str_of(panel, "type");
            assert!(
                kind == "timeseries" || kind == "stat",
                "{name}: panel {id} is of type {kind:?}"
            );
            assert!(
                !str_of(panel, "title").is_empty(),
                "{name}: panel {id} has no title"
            );
        }
    }
}

#[test]
fn panels_fit_the_24_column_grid_without_overlapping() {
    for (name, dashboard) in dashboards() {
        let mut placed: Vec<(i64, [i64; 4])> = Vec::new();
        for panel in panels(&dashboard) {
            let id = panel["id"].as_i64().unwrap_or(-1);
            let grid = &panel["gridPos"];
            let field = |key: &str| {
                grid[key]
                    .as_i64()
                    .unwrap_or_else(|| panic!("{name}: panel {id} has no gridPos.{key}"))
            };
            let (x, y, w, h) = (field("x"), field("y"), field("w"), field("h"));
            assert!(
                x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= GRID_COLUMNS,
                "{name}: panel {id} at x={x} y={y} w={w} h={h} is outside the 24-column grid"
            );
            for (other, [ox, oy, ow, oh]) in &placed {
                let apart = x + w <= *ox || *ox + *ow <= x || y + h <= *oy || *oy + *oh <= y;
                assert!(apart, "{name}: panels {id} and {other} overlap");
            }
            placed.push((id, [x, y, w, h]));
        }
    }
}

#[test]
fn every_panel_and_target_queries_the_datasource_variable() {
    for (name, dashboard) in dashboards() {
        for panel in panels(&dashboard) {
            let title = str_of(panel, "title");
            assert!(
                uses_datasource_variable(panel),
                "{name}: panel {title:?} does not use ${{datasource}}"
            );
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            assert!(!targets.is_empty(), "{name}: panel {title:?} has no query");
            let mut refs = BTreeSet::new();
            for target in &targets {
                assert!(
                    uses_datasource_variable(target),
                    "{name}: a query of {title:?} does not use ${{datasource}}"
                );
                let reference = str_of(target, "refId");
                assert!(
                    !reference.is_empty() && refs.insert(reference.to_string()),
                    "{name}: panel {title:?} has a missing or repeated refId {reference:?}"
                );
            }
        }
    }
}

#[test]
fn every_query_reads_only_known_metrics() {
    let known = known_metrics();
    let mut problems = Vec::new();
    for (name, dashboard) in dashboards() {
        for (place, expr) in queries(&dashboard) {
            if expr.trim().is_empty() {
                problems.push(format!("{name}: {place} has an empty expr"));
                continue;
            }
            match metric_names(&expr) {
                Ok(metrics) if metrics.is_empty() => {
                    problems.push(format!("{name}: {place} reads no metric: {expr}"));
                }
                Ok(metrics) => problems.extend(
                    metrics
                        .difference(&known)
                        .map(|metric| format!("{name}: {place} reads unknown metric {metric}")),
                ),
                Err(error) => problems.push(format!("{name}: {place}: {error}")),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_slo_dashboard_reads_the_generated_recording_rules() {
    let all = dashboards();
    let slos = all.get("slos.json").expect("slos.json");
    let read: BTreeSet<String> = queries(slos)
        .into_iter()
        .flat_map(|(_, expr)| metric_names(&expr).expect("valid PromQL"))
        .collect();
    for series in [
        slo::error_ratio_record("5m"),
        slo::error_ratio_record("1h"),
        slo::error_ratio_record("3d"),
        slo::OBJECTIVE_RECORD.to_string(),
    ] {
        assert!(read.contains(&series), "slos.json does not read {series}");
    }
}

#[test]
fn the_allow_list_names_exporters_and_does_not_shadow_service_metrics() {
    for (exporter, names) in EXPORTER_METRICS {
        for name in *names {
            assert!(
                !SERVICE_METRICS.contains(name),
                "{name} is listed as a service metric and as {exporter}'s"
            );
        }
    }
}

#[test]
fn the_metric_extractor_skips_functions_labels_strings_durations_and_variables() {
    let expr = r#"histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{job=~"$job",x="}{"}[$__rate_interval]))) / on (slo) group_left (kind) b:rule offset 5m > bool 1e3 and count(c or vector(0)) * ${factor}"#;
    let names = metric_names(expr).expect("valid");
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["a_bucket", "b:rule", "c"]
    );
}

#[test]
fn the_metric_extractor_refuses_unknown_functions_and_unclosed_groups() {
    assert!(metric_names("rat(x[5m])")
        .expect_err("unknown")
        .contains("rat"));
    assert!(metric_names(r#"x{job="a""#).is_err());
}

#[test]
fn a_renamed_metric_would_be_reported() {
    let known = known_metrics();
    let renamed = metric_names(r#"sum(rate(http_requests_total{job="consumer-api"}[5m]))"#)
        .expect("valid PromQL");
    assert_eq!(
        renamed.difference(&known).collect::<Vec<_>>(),
        ["http_requests_total"]
    );
}
