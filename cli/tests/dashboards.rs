//! Checks of the platform's dashboards (`stacks/observability/dashboards/*.yaml`: Perses
//! dashboards, for both runtimes).
//!
//! Structurally: they parse, each is a Perses `Dashboard` of the `paytool` project named after
//! its file, every panel is a time-series or stat chart of Prometheus queries placed exactly
//! once on a 24-column grid without overlapping, and no query names a data source of its own
//! (the project's default Prometheus is the one).
//!
//! Against what really runs: every metric a query reads must be exported by the running test
//! platform (the one `scripts/test.sh` starts; `PAYTOOL_TEST_STATUS` names its
//! `status --json --show-secrets` document). There is no list of names here to fall back on.
//! The test makes the platform do what the panels show (`paytool pay demo`: payments, charges,
//! refunds, events consumed), waits until Prometheus has scraped every target after it, and
//! takes what Prometheus holds (`/api/v1/label/__name__/values`), plus the series of the
//! recording rules (`stacks/local/prometheus/recording-rules.yaml` and those generated from
//! `stacks/observability/slos.yaml`) whose own inputs are exported, plus `ALERTS` when
//! Prometheus has alerting rules loaded. So a panel that reads a series nothing exports — a
//! renamed metric, an exporter that is not running — fails here.
//!
//! The SLO generator is `paytool::observe::slo_rules`.

use paytool::observe::slo_rules as slo;

use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const DASHBOARDS: [&str; 6] = [
    "http.yaml",
    "kafka.yaml",
    "payments.yaml",
    "postgres.yaml",
    "runtime.yaml",
    "slos.yaml",
];
/// The project the dashboards belong to (its default data source is the platform's Prometheus).
const PROJECT: &str = "paytool";
/// What a query's variables stand for when it is run here: every value of a list variable,
/// a rate window of four scrapes, the last hour as the dashboard's range.
const SUBSTITUTIONS: [(&str, &str); 4] = [
    ("$__rate_interval", "1m"),
    ("$__range", "1h"),
    ("$job", ".*"),
    ("$slo", ".*"),
];

const STATUS_ENV: &str = "PAYTOOL_TEST_STATUS";
const RECORDING_RULES: &str = "stacks/local/prometheus/recording-rules.yaml";
/// The demo's loopback source address: its own, so that the gateway's per-address
/// registration limit counts it apart from the other suites that share the platform.
const DEMO_SOURCE_ADDRESS: &str = "127.0.0.61";
/// `paytool pay demo` takes seconds; past this it is stuck and is killed.
const DEMO_TIMEOUT_MS: u64 = 120_000;
/// Prometheus scrapes every 15 s (less under `PAYTOOL_SLO_TIME_SCALE`): every target has been
/// scraped after the demo well within this.
const SCRAPED_TIMEOUT_MS: u64 = 90_000;
const POLL_MS: u64 = 500;
const HTTP_TIMEOUT_MS: u64 = 10_000;

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

const GRID_COLUMNS: i64 = 24;

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

fn dashboards_dir() -> PathBuf {
    project_root().join("stacks/observability/dashboards")
}

/// Every dashboard by file name, parsed.
fn dashboards() -> BTreeMap<String, Value> {
    let dir = dashboards_dir();
    std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .map(|path| {
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).expect("read a dashboard");
            let value: Value = serde_yaml::from_str(&text)
                .unwrap_or_else(|error| panic!("{name} is not valid YAML: {error}"));
            (name, value)
        })
        .collect()
}

/// The panels by key (`spec.panels`).
fn panels(dashboard: &Value) -> Vec<(&str, &Value)> {
    dashboard["spec"]["panels"]
        .as_object()
        .expect("a dashboard has a panels object")
        .iter()
        .map(|(key, panel)| (key.as_str(), panel))
        .collect()
}

/// A panel's PromQL queries.
fn panel_queries(panel: &Value) -> Vec<&str> {
    panel["spec"]["queries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|query| str_of(&query["spec"]["plugin"]["spec"], "query"))
        .collect()
}

/// A query as this test runs it: its variables replaced by what they stand for.
fn runnable(expr: &str) -> String {
    SUBSTITUTIONS
        .iter()
        .fold(expr.to_string(), |expr, (variable, value)| {
            expr.replace(variable, value)
        })
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or("")
}

/// What the running test platform exports, found once per run of this file (the tests share it).
struct Exported {
    /// Every series name a dashboard may read.
    names: BTreeSet<String>,
    /// Scrape targets that were not up when the names were taken (`job`: error), to explain a
    /// missing series.
    down: Vec<String>,
}

fn exported() -> &'static Exported {
    static EXPORTED: OnceLock<Exported> = OnceLock::new();
    EXPORTED.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(ask_the_platform())
    })
}

/// The platform's installation home and its Prometheus, from the status document.
fn platform() -> (String, String) {
    let path = std::env::var(STATUS_ENV).unwrap_or_else(|_| {
        panic!("{STATUS_ENV} is not set: run the tests through scripts/test.sh, which starts a test platform (the dashboards are checked against what it exports)")
    });
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let status: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"));
    let home = status["home"]
        .as_str()
        .expect("the status names the installation's home")
        .to_string();
    let port = status["components"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "prometheus")
        .and_then(|c| c["ports"]["http"].as_u64())
        .unwrap_or_else(|| panic!("{path} lists no prometheus component with an http port"));
    (home, format!("http://127.0.0.1:{port}"))
}

/// `paytool pay demo` on the platform: every step a panel shows happens at least once, so every
/// series it reads has been recorded (the services export a series from its first sample on).
fn run_the_demo(home: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_paytool"))
        .args(["--home", home, "pay", "demo", "--json"])
        .env("PAYTOOL_PAY_SOURCE_ADDRESS", DEMO_SOURCE_ADDRESS)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("paytool runs");
    let deadline = Instant::now() + Duration::from_millis(DEMO_TIMEOUT_MS);
    while child.try_wait().expect("wait for paytool").is_none() {
        if Instant::now() >= deadline {
            child.kill().ok();
            panic!("paytool pay demo did not finish within {DEMO_TIMEOUT_MS} ms");
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
    let output = child.wait_with_output().expect("paytool's output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "paytool pay demo failed ({}): {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("paytool pay demo printed no JSON ({e}): {stdout}"));
    assert_eq!(report["ok"], true, "{report:#}");
}

async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let response = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    let body: Value = response
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"));
    assert_eq!(body["status"], "success", "GET {url}: {body}");
    body["data"].clone()
}

/// The active targets, once every one has been scraped after `after` (within the bound).
async fn scraped_after(
    client: &reqwest::Client,
    prometheus: &str,
    after: chrono::DateTime<chrono::Utc>,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_millis(SCRAPED_TIMEOUT_MS);
    loop {
        let targets = get_json(client, &format!("{prometheus}/api/v1/targets?state=active")).await
            ["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!targets.is_empty(), "Prometheus has no active targets");
        let stale: Vec<String> = targets
            .iter()
            .filter(|target| {
                chrono::DateTime::parse_from_rfc3339(str_of(target, "lastScrape"))
                    .map_or(true, |at| at < after)
            })
            .map(|target| str_of(&target["labels"], "job").to_string())
            .collect();
        if stale.is_empty() {
            return targets;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape {stale:?} within {SCRAPED_TIMEOUT_MS} ms after {after}"
        );
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
}

async fn ask_the_platform() -> Exported {
    let (home, prometheus) = platform();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(HTTP_TIMEOUT_MS))
        .build()
        .expect("an HTTP client");
    run_the_demo(&home);
    // Prometheus' clock, not ours, dates its scrapes: a scrape that started after this instant
    // has seen everything the demo did. Two such rounds: a series the demo made first is one
    // sample after the first, and a rate needs two.
    let _ = scraped_after(&client, &prometheus, chrono::Utc::now()).await;
    let targets = scraped_after(&client, &prometheus, chrono::Utc::now()).await;
    let down = targets
        .iter()
        .filter(|target| str_of(target, "health") != "up")
        .map(|target| {
            format!(
                "{} ({}): {}",
                str_of(&target["labels"], "job"),
                str_of(target, "scrapeUrl"),
                str_of(target, "lastError")
            )
        })
        .collect();
    let mut names: BTreeSet<String> = get_json(
        &client,
        &format!("{prometheus}/api/v1/label/__name__/values"),
    )
    .await
    .as_array()
    .expect("a list of names")
    .iter()
    .filter_map(|name| name.as_str().map(str::to_string))
    .collect();
    // Prometheus writes ALERTS (and ALERTS_FOR_STATE) for the alerting rules it evaluates,
    // while one is pending or firing: the series exists exactly when such rules are loaded.
    let alerting_rules = get_json(&client, &format!("{prometheus}/api/v1/rules?type=alert")).await
        ["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|group| group["rules"].as_array().map_or(0, Vec::len))
        .sum::<usize>();
    if alerting_rules > 0 {
        names.extend(["ALERTS".to_string(), "ALERTS_FOR_STATE".to_string()]);
    }
    Exported {
        names: with_recorded_series(names, &recording_rules()),
        down,
    }
}

#[derive(Deserialize)]
struct RulesFile {
    groups: Vec<RulesGroup>,
}

#[derive(Deserialize)]
struct RulesGroup {
    rules: Vec<RulesEntry>,
}

#[derive(Deserialize)]
struct RulesEntry {
    record: Option<String>,
    expr: String,
}

/// Every recording rule the local Prometheus evaluates, as (series recorded, expression).
fn recording_rules() -> Vec<(String, String)> {
    let slos = slo::load(&project_root().join(slo::SLOS_PATH)).expect("the project's SLOs load");
    let mut rules: Vec<(String, String)> = slo::rules(&slos)
        .groups
        .into_iter()
        .flat_map(|group| group.rules)
        .filter_map(|rule| match rule {
            slo::Rule::Record { record, expr, .. } => Some((record, expr)),
            slo::Rule::Alert { .. } => None,
        })
        .collect();
    let path = project_root().join(RECORDING_RULES);
    let text = std::fs::read_to_string(&path).expect("read the recording rules");
    let file: RulesFile = serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not a rules file: {e}", path.display()));
    rules.extend(
        file.groups
            .into_iter()
            .flat_map(|group| group.rules)
            .filter_map(|rule| rule.record.map(|record| (record, rule.expr))),
    );
    rules
}

/// `exported` plus the series of every recording rule whose inputs are all exported (or
/// recorded by such a rule): a rule over a series nothing exports records nothing, so it
/// cannot vouch for a panel.
fn with_recorded_series(
    mut exported: BTreeSet<String>,
    rules: &[(String, String)],
) -> BTreeSet<String> {
    let reads: Vec<(&String, BTreeSet<String>)> = rules
        .iter()
        .map(|(record, expr)| {
            let names = metric_names(expr)
                .unwrap_or_else(|error| panic!("the rule recording {record}: {error}"));
            (record, names)
        })
        .collect();
    // Each pass adds at least one series or stops, so this ends within `rules.len()` passes.
    loop {
        let before = exported.len();
        for (record, names) in &reads {
            if names.is_subset(&exported) {
                exported.insert((*record).clone());
            }
        }
        if exported.len() == before {
            return exported;
        }
    }
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

/// Every PromQL query of a dashboard, with where it is: panel queries and list variables'
/// matchers (their series selectors).
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (key, panel) in panels(dashboard) {
        for (index, expr) in panel_queries(panel).into_iter().enumerate() {
            found.push((format!("panel {key} query {index}"), expr.to_string()));
        }
    }
    for variable in variables(dashboard) {
        for matcher in variable["spec"]["plugin"]["spec"]["matchers"]
            .as_array()
            .into_iter()
            .flatten()
        {
            found.push((
                format!("variable {:?}", str_of(&variable["spec"], "name")),
                matcher.as_str().unwrap_or("").to_string(),
            ));
        }
    }
    found
}

fn variables(dashboard: &Value) -> &[Value] {
    dashboard["spec"]["variables"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

#[test]
fn the_six_dashboards_are_there_and_parse() {
    let found: Vec<String> = dashboards().into_keys().collect();
    assert_eq!(found, DASHBOARDS);
}

#[test]
fn the_kind_runtimes_perses_is_given_every_dashboard_in_the_project_it_provisions() {
    // stacks/observability/kustomization.yaml makes the ConfigMap Perses provisions from on
    // kind: a dashboard file not listed there would be on the local runtime only.
    let kustomization: Value = serde_yaml::from_str(
        &std::fs::read_to_string(project_root().join("stacks/observability/kustomization.yaml"))
            .expect("read stacks/observability/kustomization.yaml"),
    )
    .expect("YAML");
    let generator = kustomization["configMapGenerator"]
        .as_array()
        .and_then(|g| g.iter().find(|m| m["name"] == "perses-dashboards"))
        .expect("a perses-dashboards ConfigMap");
    let listed: Vec<String> = generator["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            str_of_value(f)
                .strip_prefix("dashboards/")
                .expect("a file of dashboards/")
                .to_owned()
        })
        .collect();
    assert_eq!(listed, DASHBOARDS);
    // The project the dashboards name, with a default datasource (their queries name none).
    let provisioned = std::fs::read_to_string(
        project_root().join("stacks/kind/platform/observability/perses/project.yaml"),
    )
    .expect("read perses/project.yaml");
    let resources: Vec<Value> = serde_yaml::Deserializer::from_str(&provisioned)
        .map(|d| Value::deserialize(d).expect("YAML"))
        .collect();
    assert!(resources
        .iter()
        .any(|r| r["kind"] == "Project" && r["metadata"]["name"] == PROJECT));
    assert!(resources.iter().any(|r| r["kind"] == "Datasource"
        && r["metadata"]["project"] == PROJECT
        && r["spec"]["default"] == true
        && r["spec"]["plugin"]["kind"] == "PrometheusDatasource"));
}

fn str_of_value(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
}

#[test]
fn every_dashboard_is_a_perses_dashboard_of_the_project_named_after_its_file() {
    for (name, dashboard) in dashboards() {
        assert_eq!(str_of(&dashboard, "kind"), "Dashboard", "{name}");
        assert_eq!(str_of(&dashboard["metadata"], "project"), PROJECT, "{name}");
        assert_eq!(
            Some(str_of(&dashboard["metadata"], "name")),
            name.strip_suffix(".yaml"),
            "{name}"
        );
        let display = &dashboard["spec"]["display"];
        assert!(!str_of(display, "name").is_empty(), "{name} has no name");
        assert!(
            !str_of(display, "description").is_empty(),
            "{name} has no description"
        );
        assert!(!str_of(&dashboard["spec"], "duration").is_empty(), "{name}");
        assert!(!panels(&dashboard).is_empty(), "{name} has no panels");
    }
}

#[test]
fn every_panel_is_a_time_series_or_stat_chart_of_prometheus_queries_on_the_default_source() {
    for (name, dashboard) in dashboards() {
        for (key, panel) in panels(&dashboard) {
            assert_eq!(str_of(panel, "kind"), "Panel", "{name}: {key}");
            let spec = &panel["spec"];
            assert!(
                !str_of(&spec["display"], "name").is_empty(),
                "{name}: panel {key} has no name"
            );
            let chart = str_of(&spec["plugin"], "kind");
            assert!(
                chart == "TimeSeriesChart" || chart == "StatChart",
                "{name}: panel {key} is a {chart:?}"
            );
            let queries = spec["queries"].as_array().cloned().unwrap_or_default();
            assert!(!queries.is_empty(), "{name}: panel {key} has no query");
            for query in &queries {
                assert_eq!(str_of(query, "kind"), "TimeSeriesQuery", "{name}: {key}");
                let plugin = &query["spec"]["plugin"];
                assert_eq!(
                    str_of(plugin, "kind"),
                    "PrometheusTimeSeriesQuery",
                    "{name}: {key}"
                );
                assert!(
                    plugin["spec"].get("datasource").is_none(),
                    "{name}: a query of {key} names a data source: the project's default is the one"
                );
                assert!(
                    !str_of(&plugin["spec"], "query").trim().is_empty(),
                    "{name}: {key}"
                );
            }
        }
    }
}

#[test]
fn every_panel_is_placed_once_on_the_24_column_grid_without_overlapping() {
    for (name, dashboard) in dashboards() {
        let mut placed: Vec<(String, [i64; 4])> = Vec::new();
        for layout in dashboard["spec"]["layouts"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert_eq!(str_of(layout, "kind"), "Grid", "{name}");
            for item in layout["spec"]["items"].as_array().into_iter().flatten() {
                let reference = str_of(&item["content"], "$ref");
                let key = reference
                    .strip_prefix("#/spec/panels/")
                    .unwrap_or_else(|| panic!("{name}: an item refers to {reference:?}"));
                let field = |field: &str| {
                    item[field]
                        .as_i64()
                        .unwrap_or_else(|| panic!("{name}: {key} has no {field}"))
                };
                let (x, y, w, h) = (field("x"), field("y"), field("width"), field("height"));
                assert!(
                    x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= GRID_COLUMNS,
                    "{name}: {key} at x={x} y={y} w={w} h={h} is outside the 24-column grid"
                );
                for (other, [ox, oy, ow, oh]) in &placed {
                    let apart = x + w <= *ox || *ox + *ow <= x || y + h <= *oy || *oy + *oh <= y;
                    assert!(apart, "{name}: {key} and {other} overlap");
                }
                placed.push((key.to_string(), [x, y, w, h]));
            }
        }
        let mut placed_keys: Vec<&str> = placed.iter().map(|(key, _)| key.as_str()).collect();
        placed_keys.sort_unstable();
        let mut keys: Vec<&str> = panels(&dashboard).into_iter().map(|(key, _)| key).collect();
        keys.sort_unstable();
        assert_eq!(placed_keys, keys, "{name}: every panel once on the grid");
    }
}

#[test]
fn every_query_reads_only_series_the_running_platform_exports() {
    let exported = exported();
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
                Ok(metrics) => problems.extend(metrics.difference(&exported.names).map(|metric| {
                    format!("{name}: {place} reads {metric}, which nothing on the test platform exports")
                })),
                Err(error) => problems.push(format!("{name}: {place}: {error}")),
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n(scrape targets down: {:?})",
        problems.join("\n"),
        exported.down
    );
}

#[test]
fn the_slo_dashboard_reads_the_generated_recording_rules() {
    let all = dashboards();
    let slos = all.get("slos.yaml").expect("slos.yaml");
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
        assert!(read.contains(&series), "slos.yaml does not read {series}");
    }
}

/// A GET of the platform's Prometheus, once the demo has run and been scraped: its status and
/// body. Blocking, for the synchronous tests (the demo's own runtime is another).
fn prometheus_get(path: &str, query: &[(&str, &str)]) -> (u16, String) {
    let _ = exported();
    let (_, prometheus) = platform();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let response = reqwest::Client::builder()
            .timeout(Duration::from_millis(HTTP_TIMEOUT_MS))
            .build()
            .expect("an HTTP client")
            .get(format!("{prometheus}{path}"))
            .query(query)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    })
}

/// The issue's measure: on the running platform, after the demo, no panel is empty.
#[test]
fn every_panels_query_returns_data_on_the_running_platform() {
    let mut empty = Vec::new();
    let mut asked = 0;
    for (name, dashboard) in dashboards() {
        for (key, panel) in panels(&dashboard) {
            for expr in panel_queries(panel) {
                let query = runnable(expr);
                let (_, body) = prometheus_get("/api/v1/query", &[("query", query.as_str())]);
                let answer: Value = serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("{name}: {key}: {query}: {e}: {body}"));
                assert_eq!(
                    answer["status"], "success",
                    "{name}: {key}: {query}: {answer}"
                );
                asked += 1;
                let has_data = match str_of(&answer["data"], "resultType") {
                    "vector" | "matrix" => answer["data"]["result"]
                        .as_array()
                        .is_some_and(|result| !result.is_empty()),
                    _ => true,
                };
                if !has_data {
                    empty.push(format!("{name}: {key}: {query}"));
                }
            }
        }
    }
    assert!(
        asked >= 50,
        "only {asked} queries: are the dashboards there?"
    );
    assert!(
        empty.is_empty(),
        "panels with no data:\n{}",
        empty.join("\n")
    );
}

/// The local runtime shows the dashboards as Prometheus consoles made from the same files
/// (`paytool::observe::consoles`): each is served, names every panel, and every stat has an
/// answer (the page computes it when asked; `-` is a query that answered nothing).
#[test]
fn every_dashboard_is_served_as_a_console_with_every_panel_and_every_stat_answered() {
    let get = |path: String| prometheus_get(&path, &[]);
    let (status, index) = get("/consoles/index.html".into());
    assert_eq!(status, 200, "{index}");
    for (name, dashboard) in dashboards() {
        let stem = name.strip_suffix(".yaml").expect("a YAML file");
        assert!(
            index.contains(&format!("{stem}.html")),
            "the index lists {stem}"
        );
        let (status, page) = get(format!("/consoles/{stem}.html"));
        assert_eq!(status, 200, "{stem}: {page}");
        for (key, _) in panels(&dashboard) {
            assert!(
                page.contains(&format!("data-panel=\"{key}\"")),
                "{stem}: the console has no panel {key}"
            );
        }
        assert!(
            !page.contains("class=\"paytool-value\">-<"),
            "{stem}: a stat answered nothing:\n{page}"
        );
    }
}

#[test]
fn every_scrape_target_of_the_platform_is_up() {
    let exported = exported();
    assert!(
        exported.down.is_empty(),
        "scrape targets down: {:#?}",
        exported.down
    );
}

#[test]
fn a_recording_rule_vouches_for_its_series_only_when_what_it_reads_is_exported() {
    let rules = [
        ("a:rate5m".to_string(), "sum(rate(a_total[5m]))".to_string()),
        ("a:p99".to_string(), "max(a:rate5m) * 2".to_string()),
        ("b:rate5m".to_string(), "sum(rate(b_total[5m]))".to_string()),
        ("c:ratio".to_string(), "a:p99 / b:rate5m".to_string()),
        ("constant".to_string(), "vector(0.99)".to_string()),
    ];
    let exported: BTreeSet<String> = ["a_total".to_string()].into();
    let with_rules = with_recorded_series(exported, &rules);
    assert_eq!(
        with_rules.into_iter().collect::<Vec<_>>(),
        ["a:p99", "a:rate5m", "a_total", "constant"]
    );
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
    let known = &exported().names;
    let renamed = metric_names(r#"sum(rate(http_requests_total{job="consumer-api"}[5m]))"#)
        .expect("valid PromQL");
    assert_eq!(
        renamed.difference(known).collect::<Vec<_>>(),
        ["http_requests_total"]
    );
}
