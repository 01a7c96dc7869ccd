//! Service-level objectives as data (`stacks/observability/slos.yaml`) and the Prometheus rules
//! generated from them: per SLO, recording rules for its error ratio over five windows and
//! multi-window, multi-burn-rate alerts (the SRE workbook's scheme).
//!
//! - `slo:sli_error:ratio_rate5m{slo="NAME"}` ... `ratio_rate3d`: the fraction of bad events;
//! - `slo:objective:ratio{slo="NAME"}`: the objective, so dashboards can compute burn rates;
//! - alerts `SLOErrorBudgetBurnFast` (page: 1h and 5m above 14.4x the allowed error ratio),
//!   `SLOErrorBudgetBurnMedium` (page: 6h and 30m above 6x) and `SLOErrorBudgetBurnSlow`
//!   (ticket: 3d and 6h above 1x), where burn = error ratio / (1 - objective).
//!
//! Pure: no I/O beyond reading the file, so the rule tests (`cli/tests/slo_rules.rs`) and the
//! dashboards' checks use it as it is.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Where the SLOs live, relative to the project root.
pub const SLOS_PATH: &str = "stacks/observability/slos.yaml";

/// The recording rule of the error ratio over `window` (e.g. `5m`).
pub fn error_ratio_record(window: &str) -> String {
    format!("slo:sli_error:ratio_rate{window}")
}

/// The recording rule holding each SLO's objective.
pub const OBJECTIVE_RECORD: &str = "slo:objective:ratio";

const MAX_NAME_CHARS: usize = 63;
const MAX_DESCRIPTION_CHARS: usize = 500;
const MAX_WINDOW_DAYS: u32 = 90;

/// A window the error ratio is recorded over, by its nominal name and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The name in the recording rule (`ratio_rate5m`); kept when the rules are scaled.
    pub name: &'static str,
    pub seconds: u64,
}

const W5M: Window = Window {
    name: "5m",
    seconds: 5 * 60,
};
const W30M: Window = Window {
    name: "30m",
    seconds: 30 * 60,
};
const W1H: Window = Window {
    name: "1h",
    seconds: 3_600,
};
const W6H: Window = Window {
    name: "6h",
    seconds: 6 * 3_600,
};
const W3D: Window = Window {
    name: "3d",
    seconds: 3 * 86_400,
};

/// Every window an error ratio is recorded over, shortest first.
pub const WINDOWS: [Window; 5] = [W5M, W30M, W1H, W6H, W3D];

/// One multi-window burn-rate alert: fires when both windows burn faster than `factor`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnAlert {
    pub alert: &'static str,
    pub long: Window,
    pub short: Window,
    /// Written as PromQL reads it (`14.4`), so the expression shows the workbook's numbers.
    pub factor: &'static str,
    pub severity: &'static str,
    pub for_seconds: u64,
}

/// The three alerts every SLO gets.
pub const BURN_ALERTS: [BurnAlert; 3] = [
    BurnAlert {
        alert: "SLOErrorBudgetBurnFast",
        long: W1H,
        short: W5M,
        factor: "14.4",
        severity: "page",
        for_seconds: 120,
    },
    BurnAlert {
        alert: "SLOErrorBudgetBurnMedium",
        long: W6H,
        short: W30M,
        factor: "6",
        severity: "page",
        for_seconds: 120,
    },
    BurnAlert {
        alert: "SLOErrorBudgetBurnSlow",
        long: W3D,
        short: W6H,
        factor: "1",
        severity: "ticket",
        for_seconds: 120,
    },
];

// --- the SLO file ------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloFile {
    pub slos: Vec<Slo>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    pub name: String,
    pub description: String,
    /// The fraction of good events, strictly between 0 and 1.
    pub objective: f64,
    pub window_days: u32,
    /// Written as a one-key map (`ratio:` or `latency:`) rather than a YAML tag.
    #[serde(with = "serde_yaml::with::singleton_map")]
    pub sli: Sli,
}

/// What counts as good, and out of what.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Sli {
    Ratio(RatioSli),
    Latency(LatencySli),
}

/// Good and total events as counters, each the sum of its selectors.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatioSli {
    pub good: Vec<String>,
    pub total: Vec<String>,
}

/// Good events are the histogram's observations at or under the threshold.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencySli {
    pub metric: String,
    /// The insides of label selectors (`job="x",route="/y"`), one per series family, summed.
    pub matchers: Vec<String>,
    pub threshold_seconds: f64,
}

/// Reads and validates the SLO file at `path`.
pub fn load(path: &Path) -> anyhow::Result<SloFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the SLOs at {}", path.display()))?;
    parse(&text).with_context(|| format!("invalid SLOs in {}", path.display()))
}

/// The platform's SLOs (`platform`) with those of the installation's scaffolded services
/// (`services/NAME/slo.yaml`, for each that has one), checked as one set: a name stays unique
/// across all of them.
pub fn load_with_apps(project: &Path, platform: &Path, apps: &[&str]) -> anyhow::Result<SloFile> {
    let mut file = load(platform)?;
    for app in apps {
        let path = project.join("services").join(app).join("slo.yaml");
        if path.is_file() {
            file.slos.extend(load(&path)?.slos);
        }
    }
    file.validate().with_context(|| {
        format!(
            "the SLOs of {} and the scaffolded services",
            platform.display()
        )
    })?;
    Ok(file)
}

/// Parses and validates an SLO file's text.
pub fn parse(text: &str) -> anyhow::Result<SloFile> {
    let file: SloFile = serde_yaml::from_str(text).context("not a valid SLO file")?;
    file.validate()?;
    Ok(file)
}

impl SloFile {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.slos.is_empty() {
            bail!("the file defines no SLO");
        }
        let mut names = BTreeSet::new();
        for slo in &self.slos {
            slo.validate()
                .with_context(|| format!("SLO {:?}", truncated(&slo.name)))?;
            if !names.insert(slo.name.as_str()) {
                bail!("SLO {:?} is defined twice", slo.name);
            }
        }
        Ok(())
    }
}

impl Slo {
    pub fn validate(&self) -> anyhow::Result<()> {
        validate_name(&self.name)?;
        let description = self.description.trim();
        if description.is_empty() {
            bail!("the description is empty");
        }
        if description.chars().count() > MAX_DESCRIPTION_CHARS {
            bail!("the description is longer than {MAX_DESCRIPTION_CHARS} characters");
        }
        // NaN fails both comparisons, so it is refused too.
        if !(self.objective > 0.0 && self.objective < 1.0) {
            bail!(
                "the objective {} is not strictly between 0 and 1 (write 99.9% as 0.999)",
                self.objective
            );
        }
        if !(1..=MAX_WINDOW_DAYS).contains(&self.window_days) {
            bail!(
                "window_days {} is not within 1..={MAX_WINDOW_DAYS}",
                self.window_days
            );
        }
        match &self.sli {
            Sli::Ratio(ratio) => {
                validate_selectors("good", &ratio.good)?;
                validate_selectors("total", &ratio.total)?;
            }
            Sli::Latency(latency) => {
                if !is_metric_name(&latency.metric) {
                    bail!("{:?} is not a metric name", latency.metric);
                }
                if ["_bucket", "_count", "_sum"]
                    .iter()
                    .any(|suffix| latency.metric.ends_with(suffix))
                {
                    bail!(
                        "give the histogram's base name, not {:?} (the generator adds _bucket and _count)",
                        latency.metric
                    );
                }
                if latency.matchers.is_empty() {
                    bail!("the latency SLI has no matchers");
                }
                for matchers in &latency.matchers {
                    let trimmed = matchers.trim();
                    if trimmed.starts_with('{') || trimmed.ends_with('}') {
                        bail!("write the matchers {matchers:?} without the surrounding braces");
                    }
                    let selects_le = trimmed.split(',').any(|matcher| {
                        matcher.split(['=', '!']).next().map(str::trim) == Some("le")
                    });
                    if selects_le {
                        bail!("the matchers {matchers:?} select `le`, which the threshold sets");
                    }
                }
                let threshold = latency.threshold_seconds;
                if !(threshold.is_finite() && threshold > 0.0) {
                    bail!("threshold_seconds {threshold} is not a positive number");
                }
            }
        }
        Ok(())
    }

    /// The allowed fraction of bad events: 1 - objective.
    pub fn allowed_error_ratio(&self) -> f64 {
        1.0 - self.objective
    }

    /// The PromQL error ratio (bad / total events) over `range` (a Prometheus duration).
    pub fn error_ratio_expr(&self, range: &str) -> String {
        let (good, total) = match &self.sli {
            Sli::Ratio(ratio) => (
                sum_of_rates(ratio.good.iter().map(String::as_str), range),
                sum_of_rates(ratio.total.iter().map(String::as_str), range),
            ),
            Sli::Latency(latency) => {
                let le = le_matcher(latency.threshold_seconds);
                let buckets: Vec<String> = latency
                    .matchers
                    .iter()
                    .map(|m| format!("{}_bucket{{{}}}", latency.metric, join_matchers(m, &le)))
                    .collect();
                let counts: Vec<String> = latency
                    .matchers
                    .iter()
                    .map(|m| format!("{}_count{{{}}}", latency.metric, m.trim()))
                    .collect();
                (
                    sum_of_rates(buckets.iter().map(String::as_str), range),
                    sum_of_rates(counts.iter().map(String::as_str), range),
                )
            }
        };
        // Without traffic this is 0/0 = NaN, which no alert threshold compares above.
        format!("1 - ({good}) / ({total})")
    }

    /// The error budget left, given the error ratio over the SLO's whole window.
    pub fn budget(&self, error_ratio: f64) -> anyhow::Result<Budget> {
        if !(0.0..=1.0).contains(&error_ratio) {
            bail!("the error ratio {error_ratio} is not within 0..=1");
        }
        let allowed = self.allowed_error_ratio();
        let consumed = error_ratio / allowed;
        Ok(Budget {
            allowed_error_ratio: allowed,
            consumed,
            remaining: 1.0 - consumed,
        })
    }
}

fn validate_name(name: &str) -> anyhow::Result<()> {
    let count = name.chars().count();
    if count == 0 || count > MAX_NAME_CHARS {
        bail!("the name must have 1 to {MAX_NAME_CHARS} characters");
    }
    let mut chars = name.chars();
    let first_is_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !first_is_letter || !rest_ok || name.ends_with('-') {
        bail!(
            "the name {name:?} must be lowercase letters, digits and '-', start with a letter and not end with '-'"
        );
    }
    Ok(())
}

fn validate_selectors(which: &str, selectors: &[String]) -> anyhow::Result<()> {
    if selectors.is_empty() {
        bail!("the {which} selectors are empty");
    }
    for selector in selectors {
        let selector = selector.trim();
        let name_end = selector.find('{').unwrap_or(selector.len());
        let (name, matchers) = selector.split_at(name_end);
        if !is_metric_name(name) {
            bail!("the {which} selector {selector:?} does not start with a metric name");
        }
        if !matchers.is_empty() && !matchers.ends_with('}') {
            bail!(
                "the {which} selector {selector:?} must be `metric{{matchers}}`, without a range or function"
            );
        }
    }
    Ok(())
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn truncated(text: &str) -> String {
    text.chars().take(MAX_NAME_CHARS + 1).collect()
}

/// `(sum(rate(a[r])) or vector(0)) + ...`: a selector with no series yet (a service not
/// scraped, no 5xx so far) counts as zero instead of emptying the whole sum.
fn sum_of_rates<'a>(selectors: impl Iterator<Item = &'a str>, range: &str) -> String {
    selectors
        .map(|selector| format!("(sum(rate({}[{range}])) or vector(0))", selector.trim()))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// The `le` matcher of a bucket boundary. Whole numbers are written both ways (`1`, `1.0`)
/// since exporters and Prometheus versions differ on it.
fn le_matcher(threshold: f64) -> String {
    if threshold.fract() == 0.0 {
        format!("le=~\"{threshold}|{threshold}.0\"")
    } else {
        format!("le=\"{threshold}\"")
    }
}

fn join_matchers(matchers: &str, extra: &str) -> String {
    let matchers = matchers.trim().trim_end_matches(',');
    if matchers.is_empty() {
        extra.to_string()
    } else {
        format!("{matchers},{extra}")
    }
}

// --- the rules file ----------------------------------------------------------------------------

/// A Prometheus rules file, as `promtool check rules` reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleFile {
    pub groups: Vec<RuleGroup>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleGroup {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Rule {
    Record {
        record: String,
        expr: String,
        labels: BTreeMap<String, String>,
    },
    Alert {
        alert: String,
        expr: String,
        #[serde(rename = "for")]
        for_: String,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
    },
}

impl RuleFile {
    pub fn to_yaml(&self) -> anyhow::Result<String> {
        let body = serde_yaml::to_string(self).context("cannot write the rules as YAML")?;
        Ok(format!(
            "# Generated from {SLOS_PATH} by cli/src/slo.rs: edit the SLOs, not this file.\n{body}"
        ))
    }

    /// Every series the recording rules produce (for checking dashboards against).
    pub fn recorded_series(&self) -> BTreeSet<String> {
        self.groups
            .iter()
            .flat_map(|group| &group.rules)
            .filter_map(|rule| match rule {
                Rule::Record { record, .. } => Some(record.clone()),
                Rule::Alert { .. } => None,
            })
            .collect()
    }
}

/// The rules for every SLO, at their real windows.
pub fn rules(file: &SloFile) -> RuleFile {
    build_rules(file, 1)
}

/// The rules with every window and `for` divided by `scale` (60 turns 1h into 1m and 5m into
/// 5s), and the groups evaluated every 1m / scale (at least 1s), so a test can watch alerts
/// fire within minutes. The recording rules keep their nominal names (`ratio_rate1h`), so the
/// alerts and dashboards read the same series. Durations round to the millisecond (at least 1).
pub fn scaled_rules(file: &SloFile, scale: u32) -> anyhow::Result<RuleFile> {
    if scale == 0 {
        bail!("the scale must be at least 1");
    }
    Ok(build_rules(file, scale))
}

fn build_rules(file: &SloFile, scale: u32) -> RuleFile {
    let duration = |seconds: u64| prom_duration(scale_ms(seconds * 1000, scale));
    let interval = (scale > 1).then(|| prom_duration(scale_ms(60_000, scale).max(1000)));
    let groups = file
        .slos
        .iter()
        .map(|slo| {
            let slo_label = BTreeMap::from([("slo".to_string(), slo.name.clone())]);
            let mut rules: Vec<Rule> = WINDOWS
                .iter()
                .map(|window| Rule::Record {
                    record: error_ratio_record(window.name),
                    expr: slo.error_ratio_expr(&duration(window.seconds)),
                    labels: slo_label.clone(),
                })
                .collect();
            rules.push(Rule::Record {
                record: OBJECTIVE_RECORD.to_string(),
                expr: format!("vector({})", slo.objective),
                labels: slo_label.clone(),
            });
            rules.extend(
                BURN_ALERTS
                    .iter()
                    .map(|burn| burn_alert(slo, burn, duration(burn.for_seconds))),
            );
            RuleGroup {
                name: format!("slo:{}", slo.name),
                interval: interval.clone(),
                rules,
            }
        })
        .collect();
    RuleFile { groups }
}

/// The alert's threshold as PromQL: `(14.4 * (1 - 0.999))`.
pub fn burn_threshold(slo: &Slo, burn: &BurnAlert) -> String {
    format!("({} * (1 - {}))", burn.factor, slo.objective)
}

fn burn_alert(slo: &Slo, burn: &BurnAlert, for_: String) -> Rule {
    let threshold = burn_threshold(slo, burn);
    let selector = |window: &Window| {
        format!(
            "{}{{slo=\"{}\"}}",
            error_ratio_record(window.name),
            slo.name
        )
    };
    let expr = format!(
        "{} > {threshold}\nand\n{} > {threshold}",
        selector(&burn.long),
        selector(&burn.short)
    );
    let labels = BTreeMap::from([
        ("severity".to_string(), burn.severity.to_string()),
        ("slo".to_string(), slo.name.clone()),
    ]);
    let objective = percent(slo.objective);
    let summary = format!(
        "{}: error budget burning over {}x too fast ({} and {} windows)",
        slo.name, burn.factor, burn.long.name, burn.short.name
    );
    let description = format!(
        "{} Objective {objective}% over {} days. Error ratio over {}: {{{{ $value | humanizePercentage }}}}; \
         at over {}x the allowed rate the whole budget goes in under {}.",
        slo.description.trim(),
        slo.window_days,
        burn.long.name,
        burn.factor,
        exhaustion(slo.window_days, burn.factor)
    );
    let annotations = BTreeMap::from([
        ("summary".to_string(), summary),
        ("description".to_string(), description),
    ]);
    Rule::Alert {
        alert: burn.alert.to_string(),
        expr,
        for_,
        labels,
        annotations,
    }
}

/// How long the window's budget lasts at `factor` times the allowed rate.
fn exhaustion(window_days: u32, factor: &str) -> String {
    let factor: f64 = factor.parse().unwrap_or(1.0);
    let hours = f64::from(window_days) * 24.0 / factor;
    if hours < 72.0 {
        format!("{hours:.0} hours")
    } else {
        format!("{:.0} days", hours / 24.0)
    }
}

/// `0.999` as `99.9`.
fn percent(fraction: f64) -> String {
    let text = format!("{:.6}", fraction * 100.0);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn scale_ms(ms: u64, scale: u32) -> u64 {
    let scale = u64::from(scale.max(1));
    ((ms + scale / 2) / scale).max(1)
}

/// A Prometheus duration in the largest unit that divides it exactly.
pub fn prom_duration(ms: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ];
    UNITS
        .iter()
        .find(|(unit, _)| ms.is_multiple_of(*unit))
        .map_or_else(
            || format!("{ms}ms"),
            |(unit, suffix)| format!("{}{suffix}", ms / unit),
        )
}

// --- error budgets -----------------------------------------------------------------------------

/// An SLO's error budget over its window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// 1 - objective.
    pub allowed_error_ratio: f64,
    /// The fraction of the budget spent: error ratio / allowed (above 1 when overspent).
    pub consumed: f64,
    /// The fraction left: 1 - consumed (negative when overspent).
    pub remaining: f64,
}

/// Each SLO with its budget, given the error ratios over their windows by SLO name; an SLO
/// with no ratio (no data yet) gets `None`.
pub fn budgets<'a>(
    file: &'a SloFile,
    error_ratios: &BTreeMap<String, f64>,
) -> anyhow::Result<Vec<(&'a Slo, Option<Budget>)>> {
    file.slos
        .iter()
        .map(|slo| {
            let budget = error_ratios
                .get(&slo.name)
                .map(|&ratio| slo.budget(ratio))
                .transpose()
                .with_context(|| format!("SLO {}", slo.name))?;
            Ok((slo, budget))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"
slos:
  - name: checkout-availability
    description: Checkout answers without a server error.
    objective: 0.999
    window_days: 30
    sli:
      ratio:
        good: ['http_server_requests_total{route="/c",status!~"5.."}']
        total: ['http_server_requests_total{route="/c"}']
  - name: checkout-latency
    description: Checkout answers within 300 ms.
    objective: 0.99
    window_days: 28
    sli:
      latency:
        metric: http_server_request_duration_seconds
        matchers: ['job="a",route="/c"', 'job="b"']
        threshold_seconds: 0.3
"#;

    fn one() -> SloFile {
        parse(ONE).expect("the sample parses")
    }

    fn error_of(text: &str) -> String {
        format!("{:#}", parse(text).expect_err("the file is refused"))
    }

    fn project_slos() -> SloFile {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(SLOS_PATH);
        load(&path).expect("the project's SLOs load")
    }

    fn record<'a>(group: &'a RuleGroup, name: &str) -> &'a str {
        group
            .rules
            .iter()
            .find_map(|rule| match rule {
                Rule::Record { record, expr, .. } if record == name => Some(expr.as_str()),
                _ => None,
            })
            .expect("the recording rule exists")
    }

    fn alert<'a>(group: &'a RuleGroup, name: &str) -> &'a Rule {
        group
            .rules
            .iter()
            .find(|rule| matches!(rule, Rule::Alert { alert, .. } if alert == name))
            .expect("the alert exists")
    }

    #[test]
    fn a_valid_file_parses_into_typed_slos() {
        let file = one();
        assert_eq!(file.slos.len(), 2);
        assert_eq!(file.slos[0].name, "checkout-availability");
        assert_eq!(file.slos[0].objective, 0.999);
        assert!(matches!(&file.slos[0].sli, Sli::Ratio(r) if r.good.len() == 1));
        assert!(
            matches!(&file.slos[1].sli, Sli::Latency(l) if l.threshold_seconds == 0.3 && l.matchers.len() == 2)
        );
    }

    #[test]
    fn the_projects_slo_file_parses_and_has_the_four_slos() {
        let names: Vec<String> = project_slos().slos.into_iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "payment-creation-availability",
                "payment-creation-latency",
                "merchant-notification-availability",
                "merchant-notification-latency",
            ]
        );
    }

    #[test]
    fn unknown_fields_are_refused_at_every_level() {
        assert!(error_of(&ONE.replace("slos:", "extra: 1\nslos:")).contains("unknown field"));
        assert!(
            error_of(&ONE.replace("window_days: 30", "window_days: 30\n    owner: x"))
                .contains("unknown field")
        );
        assert!(error_of(&ONE.replace("threshold_seconds", "threshold")).contains("threshold"));
        assert!(error_of(&ONE.replace("ratio:", "ratios:")).contains("unknown variant"));
    }

    #[test]
    fn an_objective_outside_the_open_unit_interval_is_refused() {
        for objective in ["0", "1", "1.5", "-0.1", "99.9", ".nan"] {
            let text = ONE.replace("objective: 0.999", &format!("objective: {objective}"));
            assert!(
                error_of(&text).contains("strictly between 0 and 1"),
                "objective {objective} was accepted"
            );
        }
    }

    #[test]
    fn names_must_be_short_lowercase_and_unique() {
        let long = format!("a{}", "b".repeat(MAX_NAME_CHARS));
        for bad in ["", "Checkout", "1checkout", "check out", "checkout-", &long] {
            let text = ONE.replace("name: checkout-availability", &format!("name: '{bad}'"));
            assert!(
                error_of(&text).contains("name"),
                "name {bad:?} was accepted"
            );
        }
        let twice = ONE.replace("checkout-latency", "checkout-availability");
        assert!(error_of(&twice).contains("defined twice"));
    }

    #[test]
    fn selectors_with_ranges_or_functions_and_bad_latency_slis_are_refused() {
        let ranged = ONE.replace(
            r#"total: ['http_server_requests_total{route="/c"}']"#,
            r#"total: ['http_server_requests_total{route="/c"}[5m]']"#,
        );
        assert!(error_of(&ranged).contains("without a range"));
        let function = ONE.replace(
            r#"good: ['http_server_requests_total{route="/c",status!~"5.."}']"#,
            r#"good: ['rate(x[5m])']"#,
        );
        assert!(error_of(&function).contains("metric name"));
        let empty = ONE.replace(
            r#"good: ['http_server_requests_total{route="/c",status!~"5.."}']"#,
            "good: []",
        );
        assert!(error_of(&empty).contains("empty"));
        let bucket = ONE.replace("_seconds\n", "_seconds_bucket\n");
        assert!(error_of(&bucket).contains("base name"));
        let braces = ONE.replace(r#"'job="b"'"#, r#"'{job="b"}'"#);
        assert!(error_of(&braces).contains("braces"));
        let zero = ONE.replace("threshold_seconds: 0.3", "threshold_seconds: 0");
        assert!(error_of(&zero).contains("positive"));
        let window = ONE.replace("window_days: 28", "window_days: 0");
        assert!(error_of(&window).contains("window_days"));
        assert!(error_of("slos: []").contains("no SLO"));
    }

    #[test]
    fn a_ratio_sli_becomes_one_minus_good_over_total_with_absent_series_as_zero() {
        assert_eq!(
            one().slos[0].error_ratio_expr("5m"),
            r#"1 - ((sum(rate(http_server_requests_total{route="/c",status!~"5.."}[5m])) or vector(0))) / ((sum(rate(http_server_requests_total{route="/c"}[5m])) or vector(0)))"#
        );
    }

    #[test]
    fn a_latency_sli_reads_the_threshold_bucket_against_the_count() {
        let expr = one().slos[1].error_ratio_expr("1h");
        assert_eq!(
            expr,
            concat!(
                r#"1 - ((sum(rate(http_server_request_duration_seconds_bucket{job="a",route="/c",le="0.3"}[1h])) or vector(0))"#,
                r#" + (sum(rate(http_server_request_duration_seconds_bucket{job="b",le="0.3"}[1h])) or vector(0)))"#,
                r#" / ((sum(rate(http_server_request_duration_seconds_count{job="a",route="/c"}[1h])) or vector(0))"#,
                r#" + (sum(rate(http_server_request_duration_seconds_count{job="b"}[1h])) or vector(0)))"#,
            )
        );
    }

    #[test]
    fn a_whole_number_threshold_matches_both_ways_of_writing_the_bucket() {
        assert_eq!(le_matcher(1.0), r#"le=~"1|1.0""#);
        assert_eq!(le_matcher(0.25), r#"le="0.25""#);
    }

    #[test]
    fn every_slo_gets_a_group_with_five_error_ratios_its_objective_and_three_alerts() {
        let file = rules(&one());
        assert_eq!(file.groups.len(), 2);
        let group = &file.groups[0];
        assert_eq!(group.name, "slo:checkout-availability");
        assert_eq!(group.interval, None);
        let records: Vec<&str> = group
            .rules
            .iter()
            .filter_map(|rule| match rule {
                Rule::Record { record, labels, .. } => {
                    assert_eq!(
                        labels.get("slo").map(String::as_str),
                        Some("checkout-availability")
                    );
                    Some(record.as_str())
                }
                Rule::Alert { .. } => None,
            })
            .collect();
        assert_eq!(
            records,
            [
                "slo:sli_error:ratio_rate5m",
                "slo:sli_error:ratio_rate30m",
                "slo:sli_error:ratio_rate1h",
                "slo:sli_error:ratio_rate6h",
                "slo:sli_error:ratio_rate3d",
                "slo:objective:ratio",
            ]
        );
        assert!(record(group, "slo:sli_error:ratio_rate3d").contains("[3d]"));
        assert!(record(group, "slo:sli_error:ratio_rate30m").contains("[30m]"));
        assert_eq!(record(group, OBJECTIVE_RECORD), "vector(0.999)");
    }

    #[test]
    fn the_alerts_use_the_workbook_windows_burn_factors_and_severities() {
        let file = rules(&one());
        let group = &file.groups[0];
        let expected = [
            ("SLOErrorBudgetBurnFast", "1h", "5m", "14.4", "page"),
            ("SLOErrorBudgetBurnMedium", "6h", "30m", "6", "page"),
            ("SLOErrorBudgetBurnSlow", "3d", "6h", "1", "ticket"),
        ];
        for (name, long, short, factor, severity) in expected {
            let Rule::Alert {
                expr,
                for_,
                labels,
                annotations,
                ..
            } = alert(group, name)
            else {
                unreachable!("alert() returns alerts");
            };
            assert_eq!(
                expr,
                &format!(
                    "slo:sli_error:ratio_rate{long}{{slo=\"checkout-availability\"}} > ({factor} * (1 - 0.999))\nand\n\
                     slo:sli_error:ratio_rate{short}{{slo=\"checkout-availability\"}} > ({factor} * (1 - 0.999))"
                )
            );
            assert_eq!(for_, "2m");
            assert_eq!(labels.get("severity").map(String::as_str), Some(severity));
            assert_eq!(
                labels.get("slo").map(String::as_str),
                Some("checkout-availability")
            );
            assert!(annotations["summary"].contains(&format!("{factor}x")));
            assert!(annotations["description"].contains("Objective 99.9% over 30 days"));
            assert!(annotations["description"].contains("humanizePercentage"));
        }
    }

    #[test]
    fn the_burn_thresholds_are_factor_times_the_allowed_error_ratio() {
        let slo = &one().slos[1];
        let fast = &BURN_ALERTS[0];
        assert_eq!(burn_threshold(slo, fast), "(14.4 * (1 - 0.99))");
        let thresholds: Vec<f64> = BURN_ALERTS
            .iter()
            .map(|burn| burn.factor.parse::<f64>().expect("a number") * slo.allowed_error_ratio())
            .collect();
        for (got, want) in thresholds.iter().zip([0.144, 0.06, 0.01]) {
            assert!((got - want).abs() < 1e-12, "{got} != {want}");
        }
    }

    #[test]
    fn the_alert_descriptions_say_when_the_budget_would_be_gone() {
        assert_eq!(exhaustion(30, "14.4"), "50 hours");
        assert_eq!(exhaustion(30, "6"), "5 days");
        assert_eq!(exhaustion(30, "1"), "30 days");
    }

    #[test]
    fn scaling_by_sixty_turns_hours_into_minutes_and_minutes_into_seconds() {
        let file = scaled_rules(&one(), 60).expect("scale 60");
        let group = &file.groups[0];
        assert_eq!(group.interval.as_deref(), Some("1s"));
        for (window, scaled) in [
            ("5m", "5s"),
            ("30m", "30s"),
            ("1h", "1m"),
            ("6h", "6m"),
            ("3d", "72m"),
        ] {
            let expr = record(group, &error_ratio_record(window));
            assert!(expr.contains(&format!("[{scaled}]")), "{window}: {expr}");
        }
        let Rule::Alert { for_, expr, .. } = alert(group, "SLOErrorBudgetBurnFast") else {
            unreachable!("alert() returns alerts");
        };
        assert_eq!(for_, "2s");
        // The names stay nominal, so the alerts read the same series at any scale.
        assert!(expr.contains("slo:sli_error:ratio_rate1h{"));
    }

    #[test]
    fn scaling_rounds_to_milliseconds_and_refuses_zero() {
        let file = scaled_rules(&one(), 7).expect("scale 7");
        assert!(record(&file.groups[0], "slo:sli_error:ratio_rate5m").contains("[42857ms]"));
        assert_eq!(file.groups[0].interval.as_deref(), Some("8571ms"));
        assert!(scaled_rules(&one(), 0).is_err());
        assert_eq!(scaled_rules(&one(), 1).expect("scale 1"), rules(&one()));
    }

    #[test]
    fn durations_are_written_in_the_largest_exact_unit() {
        assert_eq!(prom_duration(3 * 86_400_000), "3d");
        assert_eq!(prom_duration(72 * 60_000), "72m");
        assert_eq!(prom_duration(90_000), "90s");
        assert_eq!(prom_duration(1_500), "1500ms");
        assert_eq!(prom_duration(3_600_000), "1h");
    }

    #[test]
    fn the_yaml_names_its_source_and_carries_every_rule() {
        let yaml = rules(&one()).to_yaml().expect("yaml");
        assert!(yaml.starts_with("# Generated from stacks/observability/slos.yaml"));
        assert_eq!(yaml.matches("record: slo:sli_error:ratio_rate").count(), 10);
        assert_eq!(yaml.matches("alert: SLOErrorBudgetBurn").count(), 6);
        assert!(yaml.contains("for: 2m"));
        assert!(!yaml.contains("interval"));
    }

    #[test]
    fn the_recorded_series_are_the_error_ratios_and_the_objective() {
        let series = rules(&one()).recorded_series();
        assert_eq!(series.len(), 6);
        assert!(series.contains("slo:sli_error:ratio_rate3d"));
        assert!(series.contains(OBJECTIVE_RECORD));
    }

    #[test]
    fn the_budget_is_what_the_error_ratio_leaves_of_one_minus_the_objective() {
        let slo = &one().slos[0];
        let half = slo.budget(0.0005).expect("a ratio");
        assert!((half.allowed_error_ratio - 0.001).abs() < 1e-12);
        assert!((half.consumed - 0.5).abs() < 1e-9);
        assert!((half.remaining - 0.5).abs() < 1e-9);
        let untouched = slo.budget(0.0).expect("a ratio");
        assert_eq!(untouched.remaining, 1.0);
        let overspent = slo.budget(0.003).expect("a ratio");
        assert!((overspent.remaining + 2.0).abs() < 1e-9, "{overspent:?}");
        assert!(slo.budget(1.5).is_err());
        assert!(slo.budget(f64::NAN).is_err());
    }

    #[test]
    fn budgets_are_given_per_slo_and_none_without_data() {
        let file = one();
        let ratios = BTreeMap::from([("checkout-latency".to_string(), 0.0025)]);
        let got = budgets(&file, &ratios).expect("budgets");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.name, "checkout-availability");
        assert_eq!(got[0].1, None);
        let latency = got[1].1.expect("a budget");
        assert!((latency.remaining - 0.75).abs() < 1e-9, "{latency:?}");
        let bad = BTreeMap::from([("checkout-latency".to_string(), -0.1)]);
        assert!(budgets(&file, &bad).is_err());
    }
}
