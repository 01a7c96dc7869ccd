//! `paytool slo`: each SLO of stacks/observability/slos.yaml with its error ratio over its
//! window, the error budget left, the burn rates the page alerts watch, and what fires now,
//! all read from the running Prometheus.

use crate::observe::slo_rules::{error_ratio_record, Slo};
use crate::runtime::components::alerting::{load_slos, prometheus_url};
use crate::runtime::home::Home;
use crate::support::exit::{fail, Code};
use serde::Serialize;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const QUERY_TIMEOUT_MS: u64 = 10_000;

#[derive(Debug, Serialize)]
pub struct SloReport {
    pub name: String,
    pub description: String,
    pub objective: f64,
    pub window_days: u32,
    /// Bad / all events over the window; `None` without traffic.
    pub error_ratio: Option<f64>,
    /// Fractions of the error budget (1 - objective over the window).
    pub budget_consumed: Option<f64>,
    pub budget_remaining: Option<f64>,
    /// Error ratio / allowed error ratio over the last hour and five minutes.
    pub burn_rate_1h: Option<f64>,
    pub burn_rate_5m: Option<f64>,
    pub firing_alerts: Vec<String>,
}

pub async fn run(home: &Home, project: &Path, json: bool) -> anyhow::Result<i32> {
    crate::runtime::state::require_running(home)?;
    let file = load_slos(home, project)?;
    let prometheus = Prometheus::new(prometheus_url(home))?;
    let mut reports = Vec::with_capacity(file.slos.len());
    for slo in &file.slos {
        reports.push(report(&prometheus, slo).await?);
    }
    let overspent = reports
        .iter()
        .any(|r| r.budget_remaining.is_some_and(|left| left < 0.0));
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print_table(&reports);
    }
    Ok(if overspent { Code::Failed as i32 } else { 0 })
}

async fn report(prometheus: &Prometheus, slo: &Slo) -> anyhow::Result<SloReport> {
    let error_ratio = prometheus
        .scalar(&slo.error_ratio_expr(&format!("{}d", slo.window_days)))
        .await?;
    let budget = error_ratio
        .map(|ratio| slo.budget(ratio.clamp(0.0, 1.0)))
        .transpose()?;
    let allowed = slo.allowed_error_ratio();
    let burn = |window: &str| {
        format!(
            "{}{{slo=\"{}\"}} / {allowed}",
            error_ratio_record(window),
            slo.name
        )
    };
    let burn_rate_1h = prometheus.scalar(&burn("1h")).await?;
    let burn_rate_5m = prometheus.scalar(&burn("5m")).await?;
    let firing_alerts = prometheus
        .vector(&format!(
            "ALERTS{{alertstate=\"firing\",slo=\"{}\"}}",
            slo.name
        ))
        .await?
        .iter()
        .filter_map(|sample| sample["metric"]["alertname"].as_str().map(str::to_string))
        .collect();
    Ok(SloReport {
        name: slo.name.clone(),
        description: slo.description.trim().to_string(),
        objective: slo.objective,
        window_days: slo.window_days,
        error_ratio,
        budget_consumed: budget.map(|b| b.consumed),
        budget_remaining: budget.map(|b| b.remaining),
        burn_rate_1h,
        burn_rate_5m,
        firing_alerts,
    })
}

fn percent(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(
        || "no data".into(),
        |v| format!("{:.decimals$}%", v * 100.0),
    )
}

fn times(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.1}x"))
}

fn print_table(reports: &[SloReport]) {
    println!(
        "{:<36} {:>9} {:>7} {:>11} {:>12} {:>8} {:>8}  FIRING",
        "SLO", "OBJECTIVE", "WINDOW", "ERRORS", "BUDGET LEFT", "BURN 1h", "BURN 5m"
    );
    for r in reports {
        println!(
            "{:<36} {:>9} {:>6}d {:>11} {:>12} {:>8} {:>8}  {}",
            r.name,
            percent(Some(r.objective), 2),
            r.window_days,
            percent(r.error_ratio, 3),
            percent(r.budget_remaining, 1),
            times(r.burn_rate_1h),
            times(r.burn_rate_5m),
            if r.firing_alerts.is_empty() {
                "-".to_string()
            } else {
                r.firing_alerts.join(", ")
            }
        );
    }
}

pub struct Prometheus {
    client: reqwest::Client,
    url: String,
}

impl Prometheus {
    pub fn new(base: String) -> anyhow::Result<Self> {
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_millis(QUERY_TIMEOUT_MS))
                .build()?,
            url: format!("{base}/api/v1/query"),
        })
    }

    pub async fn vector(&self, query: &str) -> anyhow::Result<Vec<Value>> {
        let response = self
            .client
            .get(&self.url)
            .query(&[("query", query)])
            .send()
            .await
            .map_err(|e| fail(Code::Failed, format!("cannot reach Prometheus: {e}")))?;
        let body: Value = response.json().await?;
        if body["status"] != "success" {
            return Err(fail(
                Code::Failed,
                format!("Prometheus refused `{query}`: {}", body["error"]),
            ));
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The first sample's value; `None` for no sample or NaN (no traffic: 0/0).
    pub async fn scalar(&self, query: &str) -> anyhow::Result<Option<f64>> {
        Ok(self
            .vector(query)
            .await?
            .first()
            .and_then(|sample| sample["value"][1].as_str())
            .and_then(|text| text.parse::<f64>().ok())
            .filter(|value| value.is_finite()))
    }
}
