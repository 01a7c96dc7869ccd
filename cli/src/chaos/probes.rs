//! Probes: what the steady-state hypothesis and the method measure, each with its tolerance.

use super::experiment::Probe;
use crate::observe::slo::Prometheus;
use crate::perf::load::scenario::{Operation, Scenario};
use crate::perf::load::Platform;
use crate::runtime::components::alerting::prometheus_url;
use crate::runtime::home::Home;
use crate::runtime::state::ComponentPhase;
use crate::runtime::status::Health;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// How often a probe that waits for something looks again.
const POLL_MS: u64 = 500;
/// Payments the probe's consumer is funded for: more than any run's probes make.
const PROBE_PAYMENTS_MAX: u32 = 200;

/// One probe's outcome, for the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub probe: String,
    pub ok: bool,
    /// What was seen: the value, the component that was not ready, the violated check.
    pub detail: String,
    pub value: Option<f64>,
    pub elapsed_ms: u64,
}

/// What probes share across one run: the consumer and merchant that the payment probe uses
/// (registered on first use, through the gateway like everyone else).
pub struct Probes {
    home: Home,
    payer: OnceCell<Arc<Platform>>,
    payments: std::sync::atomic::AtomicU64,
}

impl Probes {
    pub fn new(home: &Home) -> Self {
        Self {
            home: home.clone(),
            payer: OnceCell::new(),
            payments: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub async fn run(&self, probe: &Probe) -> Outcome {
        let started = Instant::now();
        let (ok, detail, value) = match self.measure(probe).await {
            Ok(seen) => seen,
            Err(error) => (false, format!("{error:#}"), None),
        };
        Outcome {
            probe: probe.name(),
            ok,
            detail,
            value,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }

    async fn measure(&self, probe: &Probe) -> anyhow::Result<(bool, String, Option<f64>)> {
        match probe {
            Probe::Ledger => {
                let report = crate::pay::ledger::report(&self.home).await?;
                let ok = report["ok"].as_bool() == Some(true);
                let failed = crate::pay::ledger::failed_checks(&report);
                let detail = if ok {
                    format!(
                        "{} accounts, {} transfers, every invariant holds",
                        report["accounts"], report["transfers"]
                    )
                } else {
                    failed.join("; ")
                };
                Ok((ok, detail, report["transfers"].as_f64()))
            }
            Probe::Ready {
                components,
                timeout_s,
            } => {
                let deadline = Instant::now() + Duration::from_secs(u64::from(*timeout_s));
                loop {
                    let status = crate::runtime::status::collect(&self.home, false).await?;
                    let not_ready: Vec<String> = status
                        .components
                        .iter()
                        .filter(|c| components.is_empty() || components.contains(&c.name))
                        .filter(|c| {
                            c.state != ComponentPhase::Building
                                && (c.state != ComponentPhase::Ready || c.health != Health::Healthy)
                        })
                        .map(|c| format!("{} {:?}", c.id, c.state).to_lowercase())
                        .collect();
                    if status.running && not_ready.is_empty() {
                        return Ok((true, "every component ready".into(), None));
                    }
                    if Instant::now() >= deadline {
                        return Ok((
                            false,
                            format!("not ready after {timeout_s} s: {}", not_ready.join(", ")),
                            None,
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
                }
            }
            Probe::Payment { timeout_ms } => {
                let deadline = Instant::now() + Duration::from_millis(u64::from(*timeout_ms));
                // Registering the probe's payer meets the same outages as a payment (a 503
                // while a breaker is open after a fault): tried again within the same bound.
                let payer = loop {
                    match self.payer().await {
                        Ok(payer) => break payer,
                        Err(error) if Instant::now() >= deadline => return Err(error),
                        Err(_) => tokio::time::sleep(Duration::from_millis(POLL_MS)).await,
                    }
                };
                let mut statuses = Vec::new();
                loop {
                    let index = self
                        .payments
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let started = Instant::now();
                    let (status, ok) = payer.pay_once(index).await;
                    statuses.push(status);
                    if ok {
                        let ms = started.elapsed().as_secs_f64() * 1000.0;
                        return Ok((true, format!("paid in {ms:.0} ms"), Some(ms)));
                    }
                    // A 503 (an outage answered as one) or no answer is tried again within the
                    // bound; anything else is the answer.
                    if !(status == 0 || status == 503) || Instant::now() >= deadline {
                        return Ok((false, format!("answers {statuses:?}"), None));
                    }
                    tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
                }
            }
            Probe::Promql { query, min, max } => {
                let prometheus = Prometheus::new(prometheus_url(&self.home))?;
                let value = prometheus.scalar(query).await?;
                let Some(value) = value else {
                    return Ok((false, "no sample".into(), None));
                };
                let ok = min.is_none_or(|min| value >= min) && max.is_none_or(|max| value <= max);
                Ok((ok, format!("{value}"), Some(value)))
            }
        }
    }

    /// The probe's consumer and merchant, registered and funded once per run.
    async fn payer(&self) -> anyhow::Result<&Arc<Platform>> {
        self.payer
            .get_or_try_init(|| async {
                let scenario = Scenario {
                    name: "chaos-probe".into(),
                    description: "the payment probe of a chaos run".into(),
                    rate_per_s: 1,
                    duration_s: PROBE_PAYMENTS_MAX,
                    consumers: 1,
                    merchants: 1,
                    hot_merchant: true,
                    operations: BTreeMap::from([(Operation::QrPayment, 1)]),
                    thresholds: Vec::new(),
                };
                Ok(Arc::new(
                    crate::perf::load::set_up(&self.home, &scenario).await?,
                ))
            })
            .await
    }
}
