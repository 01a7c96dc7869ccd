//! Load scenarios as data (`stacks/load/scenarios.yaml`): parsed, checked and bounded here,
//! with the thresholds each run is judged by. Pure: no I/O beyond reading the file.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const RATE_MAX_PER_S: u32 = 1_000;
pub const DURATION_MAX_S: u32 = 1_800;
const CONSUMERS_MAX: u32 = 500;
const MERCHANTS_MAX: u32 = 100;
const WEIGHT_MAX: u32 = 1_000;

/// What one arrival does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    QrPayment,
    CodeCharge,
    TopUp,
    P2pSend,
    TransactionsRead,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Self::QrPayment => "qr-payment",
            Self::CodeCharge => "code-charge",
            Self::TopUp => "top-up",
            Self::P2pSend => "p2p-send",
            Self::TransactionsRead => "transactions-read",
        }
    }

    /// Whether it moves money (and so carries an Idempotency-Key and needs a funded wallet).
    pub fn moves_money(self) -> bool {
        !matches!(self, Self::TransactionsRead)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// An operation's name, or `all`.
    pub operation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_ratio_max: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub rate_per_s: u32,
    pub duration_s: u32,
    pub consumers: u32,
    pub merchants: u32,
    pub hot_merchant: bool,
    pub operations: BTreeMap<Operation, u32>,
    #[serde(default)]
    pub thresholds: Vec<Threshold>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    scenarios: Vec<Scenario>,
}

pub fn load(path: &Path) -> anyhow::Result<Vec<Scenario>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text).with_context(|| format!("{} is not a valid scenario file", path.display()))
}

pub fn parse(text: &str) -> anyhow::Result<Vec<Scenario>> {
    let file: File = serde_yaml::from_str(text)?;
    if file.scenarios.is_empty() {
        bail!("no scenarios");
    }
    let mut names = std::collections::BTreeSet::new();
    for scenario in &file.scenarios {
        scenario
            .validate()
            .with_context(|| format!("scenario {}", scenario.name))?;
        if !names.insert(scenario.name.as_str()) {
            bail!("two scenarios are named {}", scenario.name);
        }
    }
    Ok(file.scenarios)
}

impl Scenario {
    pub fn validate(&self) -> anyhow::Result<()> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 40
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            bail!("the name must be 1 to 40 lowercase letters, digits and '-'");
        }
        check_range("rate_per_s", self.rate_per_s, RATE_MAX_PER_S)?;
        check_range("duration_s", self.duration_s, DURATION_MAX_S)?;
        check_range("consumers", self.consumers, CONSUMERS_MAX)?;
        check_range("merchants", self.merchants, MERCHANTS_MAX)?;
        if self.operations.is_empty() {
            bail!("operations: at least one");
        }
        for (operation, weight) in &self.operations {
            check_range(operation.name(), *weight, WEIGHT_MAX)?;
        }
        if self.operations.contains_key(&Operation::P2pSend) && self.consumers < 2 {
            bail!("p2p-send needs at least two consumers");
        }
        for threshold in &self.thresholds {
            let known = threshold.operation == "all"
                || self
                    .operations
                    .keys()
                    .any(|o| o.name() == threshold.operation);
            if !known {
                bail!(
                    "a threshold names {}, which is not an operation of this scenario",
                    threshold.operation
                );
            }
            for (what, value) in [("p95_ms", threshold.p95_ms), ("p99_ms", threshold.p99_ms)] {
                if value.is_some_and(|v| !(v > 0.0 && v.is_finite())) {
                    bail!("{what} must be a positive number of milliseconds");
                }
            }
            if threshold
                .error_ratio_max
                .is_some_and(|r| !(0.0..=1.0).contains(&r))
            {
                bail!("error_ratio_max must be within 0..=1");
            }
        }
        Ok(())
    }

    /// The scenario with `--rate` and `--duration` applied (and checked).
    pub fn with_overrides(
        mut self,
        rate_per_s: Option<u32>,
        duration_s: Option<u32>,
    ) -> anyhow::Result<Self> {
        if let Some(rate) = rate_per_s {
            self.rate_per_s = rate;
        }
        if let Some(duration) = duration_s {
            self.duration_s = duration;
        }
        self.validate()?;
        Ok(self)
    }

    /// The operation of arrival `index`: a smooth weighted round robin, so every window of the
    /// run has the mix's proportions (no randomness to make two runs differ).
    pub fn schedule(&self) -> Vec<Operation> {
        let total: i64 = self.operations.values().map(|w| i64::from(*w)).sum();
        let mut current: Vec<(Operation, i64, i64)> = self
            .operations
            .iter()
            .map(|(op, w)| (*op, i64::from(*w), 0))
            .collect();
        let mut order = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for _ in 0..total {
            for entry in &mut current {
                entry.2 += entry.1;
            }
            let best = current
                .iter_mut()
                .max_by_key(|entry| entry.2)
                .expect("at least one operation");
            best.2 -= total;
            order.push(best.0);
        }
        order
    }
}

fn check_range(what: &str, value: u32, max: u32) -> anyhow::Result<()> {
    if value == 0 || value > max {
        bail!("{what} must be from 1 to {max}, not {value}");
    }
    Ok(())
}

/// One breached threshold, said as a person would.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breach {
    pub operation: String,
    pub what: String,
    pub limit: f64,
    pub measured: f64,
}

/// What a run measured of one operation (or of all of them), for the thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub error_ratio: Option<f64>,
}

/// The thresholds a run breached, given what it measured per operation name and for `all`.
pub fn breaches(thresholds: &[Threshold], measured: &BTreeMap<String, Measured>) -> Vec<Breach> {
    let mut out = Vec::new();
    for threshold in thresholds {
        let Some(m) = measured.get(&threshold.operation) else {
            continue;
        };
        let checks = [
            ("p95_ms", threshold.p95_ms, m.p95_ms),
            ("p99_ms", threshold.p99_ms, m.p99_ms),
            ("error_ratio", threshold.error_ratio_max, m.error_ratio),
        ];
        for (what, limit, value) in checks {
            if let (Some(limit), Some(value)) = (limit, value) {
                if value > limit {
                    out.push(Breach {
                        operation: threshold.operation.clone(),
                        what: what.to_string(),
                        limit,
                        measured: value,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> Vec<Scenario> {
        load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../stacks/load/scenarios.yaml"))
            .expect("the project's scenarios parse")
    }

    #[test]
    fn the_projects_scenarios_parse_and_the_smoke_one_runs_every_operation() {
        let scenarios = project();
        let names: Vec<&str> = scenarios.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["mix", "payments", "hot-merchant", "smoke"]);
        let smoke = &scenarios[3];
        assert_eq!(smoke.operations.len(), 5);
        assert!(scenarios[2].hot_merchant);
    }

    #[test]
    fn the_schedule_keeps_the_mix_in_every_window() {
        let mix = project().remove(0);
        let order = mix.schedule();
        assert_eq!(order.len(), 100);
        let count = |op| order.iter().filter(|o| **o == op).count();
        assert_eq!(count(Operation::QrPayment), 40);
        assert_eq!(count(Operation::TransactionsRead), 25);
        assert_eq!(count(Operation::CodeCharge), 15);
        // Smooth: any 20 consecutive arrivals hold 8 QR payments, give or take one.
        for window in order.windows(20) {
            let qr = window
                .iter()
                .filter(|o| **o == Operation::QrPayment)
                .count();
            assert!((7..=9).contains(&qr), "{window:?}");
        }
    }

    #[test]
    fn bad_scenarios_are_refused_with_the_reason() {
        let base = "scenarios:\n  - name: a\n    description: d\n    rate_per_s: 1\n    duration_s: 1\n    consumers: 2\n    merchants: 1\n    hot_merchant: false\n    operations: { qr-payment: 1 }\n";
        assert!(parse(base).is_ok());
        for (change, reason) in [
            (
                ("rate_per_s: 1", "rate_per_s: 0"),
                "rate_per_s must be from 1",
            ),
            (
                ("rate_per_s: 1", "rate_per_s: 5000"),
                "rate_per_s must be from 1 to 1000",
            ),
            (("name: a", "name: A b"), "lowercase"),
            (("{ qr-payment: 1 }", "{ refund: 1 }"), "unknown variant"),
            (("{ qr-payment: 1 }", "{}"), "at least one"),
            (
                ("consumers: 2", "consumers: 1\n    speed: 3"),
                "unknown field",
            ),
            (
                (
                    "{ qr-payment: 1 }",
                    "{ p2p-send: 1 }\n    thresholds: [{ operation: top-up, p99_ms: 5 }]",
                ),
                "not an operation",
            ),
        ] {
            let text = base.replace(change.0, change.1);
            let error = format!("{:#}", parse(&text).expect_err(change.1));
            assert!(error.contains(reason), "{change:?}: {error}");
        }
        assert!(format!(
            "{:#}",
            parse(
                &base
                    .replace("{ qr-payment: 1 }", "{ p2p-send: 1 }")
                    .replace("consumers: 2", "consumers: 1")
            )
            .expect_err("p2p alone")
        )
        .contains("two consumers"));
    }

    #[test]
    fn overrides_are_checked_like_the_file() {
        let smoke = project().remove(3);
        assert_eq!(
            smoke
                .clone()
                .with_overrides(Some(20), Some(3))
                .expect("fine")
                .rate_per_s,
            20
        );
        assert!(smoke
            .with_overrides(Some(RATE_MAX_PER_S + 1), None)
            .is_err());
    }

    #[test]
    fn a_run_over_its_thresholds_names_each_breach() {
        let thresholds = vec![
            Threshold {
                operation: "qr-payment".into(),
                p95_ms: Some(200.0),
                p99_ms: Some(300.0),
                error_ratio_max: None,
            },
            Threshold {
                operation: "all".into(),
                p95_ms: None,
                p99_ms: None,
                error_ratio_max: Some(0.001),
            },
        ];
        let measured = BTreeMap::from([
            (
                "qr-payment".to_string(),
                Measured {
                    p95_ms: Some(150.0),
                    p99_ms: Some(320.0),
                    error_ratio: Some(0.0),
                },
            ),
            (
                "all".to_string(),
                Measured {
                    p95_ms: Some(150.0),
                    p99_ms: Some(320.0),
                    error_ratio: Some(0.01),
                },
            ),
        ]);
        let found = breaches(&thresholds, &measured);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            (found[0].operation.as_str(), found[0].what.as_str()),
            ("qr-payment", "p99_ms")
        );
        assert_eq!(
            (found[1].operation.as_str(), found[1].what.as_str()),
            ("all", "error_ratio")
        );
        let calm = BTreeMap::from([(
            "all".to_string(),
            Measured {
                p95_ms: None,
                p99_ms: None,
                error_ratio: Some(0.0),
            },
        )]);
        assert!(breaches(&thresholds, &calm).is_empty());
    }
}
