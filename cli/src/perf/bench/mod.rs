//! `paytool bench`: every measurement in one run on the running platform's one PostgreSQL —
//! pgbench's TPC-B, the ledger alone, then payments end to end (consumer-api → merchant-api →
//! orchestrator → Kafka → merchant-api) at a ladder of constant arrival rates through the TLS
//! gateway to uniform merchants and to one hot merchant, and straight to the services; p99 at
//! half the highest rate; the commit-to-merchant-feed delay; each component's idle and peak
//! memory. Prints the ratios the targets are stated in, and writes a markdown report with a PNG
//! chart of latency percentiles against arrival rate. Figures, never assertions.

pub mod chart;
pub mod ledger;
pub mod stream;

use crate::args::BenchAllArgs;
use crate::perf::load::{self, Route, Scenario};
use crate::runtime::home::Home;
use crate::support::exit::{fail, Code};
use crate::support::procfs;
use crate::support::ui::Ui;
use chart::Series;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A ladder stops climbing at a step with more failures than this, any dropped arrival, or a
/// p99 above `SATURATED_P99_MS`: the platform no longer keeps up with the rate.
const SATURATED_ERROR_RATIO: f64 = 0.01;
const SATURATED_P99_MS: f64 = 1_000.0;
const RSS_SAMPLE_MS: u64 = 500;
/// The stream measurement's rate is bounded: it pays one merchant (whose feed is followed).
const STREAM_RATE_MAX_PER_S: f64 = 100.0;

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub rate_per_s: u32,
    pub payments_per_s: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub error_ratio: f64,
    pub dropped: u64,
    /// Answers refused by a rate limit (429): a step whose failures are these measured the
    /// limit, not the platform.
    pub rate_limited: u64,
    /// CPU time per successful payment, ms, by component (its whole process tree) and for
    /// the load generator (this process): where a payment's cost goes.
    pub cpu_ms_per_payment: BTreeMap<String, f64>,
    /// The load generator's own CPU over the step, percent of one core.
    pub load_generator_cpu_pct: f64,
    /// Transactions per successful payment, by service database (PostgreSQL's
    /// `pg_stat_database.xact_commit`: every committed transaction, a lone read's too).
    pub db_transactions_per_payment: BTreeMap<String, f64>,
    /// Statements per successful payment, by service database (`pg_stat_statements`; empty
    /// where PostgreSQL runs without it).
    pub db_statements_per_payment: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ladder {
    pub name: &'static str,
    pub route: Route,
    pub hot_merchant: bool,
    pub steps: Vec<Step>,
    /// The most successful payments a second of a step the platform kept up with (no drops, at
    /// most 1 % failed, p99 at most 1 s).
    pub max_payments_per_s: f64,
    /// What stopped the ladder: the platform (failures, a p99 over 1 s, dropped arrivals), a
    /// rate limit, the load generator's own CPU, or the top of the ladder.
    pub capped_by: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub idle_mib: f64,
    pub peak_mib: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub what: &'static str,
    pub target: String,
    pub measured: String,
    pub met: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub when: String,
    pub machine: String,
    pub clients: u16,
    pub step_s: u16,
    pub pgbench_tps: f64,
    pub ledger: ledger::Report,
    pub ladders: Vec<Ladder>,
    pub half_max: Option<Step>,
    pub stream: Value,
    pub memory: BTreeMap<String, Memory>,
    /// Money checks that failed before the bench sent anything (the platform's past).
    pub damage_before: Vec<String>,
    pub targets: Vec<Target>,
    pub markdown: PathBuf,
    pub chart: PathBuf,
}

pub async fn run(
    home: &Home,
    pg_bin: &Path,
    project: &Path,
    args: &BenchAllArgs,
) -> anyhow::Result<i32> {
    crate::runtime::state::require_running(home)?;
    let rates = parse_rates(&args.rates)?;
    let ui = Ui::new(args.json);
    let (known_damage, damage_before) = damage_before(home, &ui).await?;
    let memory = MemorySampler::start(home);

    let ledger = ledger::ledger_report(
        home,
        pg_bin,
        args.clients,
        args.step_s,
        args.open_steps,
        &ui,
    )
    .await?;
    if !ledger.ledger_verified {
        return Err(fail(
            Code::Violation,
            "the ledger's invariants failed after its benchmark",
        ));
    }

    // One set of users for every end-to-end phase, funded for all of them.
    let scenarios = load::scenario::load(&project.join(load::SCENARIOS))?;
    let base = scenarios
        .iter()
        .find(|s| s.name == "payments")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("{} has no `payments` scenario", load::SCENARIOS))?;
    let highest = *rates.last().expect("at least one rate");
    let total_s = u32::from(args.step_s) * (u32::try_from(rates.len())? * 3 + 2);
    let funded = base.clone().with_overrides(
        Some(highest),
        Some(total_s.min(load::scenario::DURATION_MAX_S)),
    )?;
    let line = ui.step("payments: set-up");
    line.working(&format!(
        "{} consumers and {} merchants through the gateway",
        base.consumers, base.merchants
    ));
    let gateway = Arc::new(load::set_up(home, &funded).await?);
    let direct = Arc::new(gateway.routed(home, Route::Direct)?);
    line.done(&format!(
        "{} consumers, {} merchants",
        base.consumers, base.merchants
    ));

    let mut ladders = Vec::new();
    let mut order = [
        (
            "through the gateway, uniform merchants",
            &gateway,
            Route::Gateway,
            false,
        ),
        (
            "through the gateway, one hot merchant",
            &gateway,
            Route::Gateway,
            true,
        ),
        (
            "direct to the services, uniform merchants",
            &direct,
            Route::Direct,
            false,
        ),
    ];
    // A fresh order each run, so that no ladder always inherits the one before it's warmth or
    // its debris; the report keeps the order.
    {
        use rand::seq::SliceRandom;
        order.shuffle(&mut rand::thread_rng());
    }
    for (name, platform, route, hot) in order {
        drain(home, &ui, name, &known_damage).await?;
        warm_up(platform, &base, hot, rates[0], &ui, name).await?;
        let mut steps = Vec::new();
        for &rate in &rates {
            let scenario = Scenario {
                hot_merchant: hot,
                ..base
                    .clone()
                    .with_overrides(Some(rate), Some(u32::from(args.step_s)))?
            };
            let quiet = Ui::new(true);
            let line = ui.step(&format!("{name} at {rate}/s"));
            line.working(&format!("{} s", args.step_s));
            let cpu = CpuMeter::start(home);
            let db = DbMeter::start(home).await;
            let report = load::drive(platform, &scenario, &quiet).await?;
            let step = step_of(rate, &report, cpu.stop(), db.stop().await);
            line.done(&format!(
                "{:.0}/s, p50 {:.1} ms, p99 {:.1} ms, {:.2}% failed, {} dropped",
                step.payments_per_s,
                step.p50_ms,
                step.p99_ms,
                step.error_ratio * 100.0,
                step.dropped
            ));
            let saturated = is_saturated(&step);
            steps.push(step);
            if saturated {
                break;
            }
        }
        let max_payments_per_s = sustained_max(&steps);
        ladders.push(Ladder {
            name,
            route,
            hot_merchant: hot,
            capped_by: capped_by(&steps, rates.len()),
            steps,
            max_payments_per_s,
        });
    }

    // p99 at half the highest rate the gateway sustained, on a drained platform (a saturated
    // step leaves events for the consumers to catch up with).
    let gateway_max = ladders
        .iter()
        .find(|l| l.route == Route::Gateway && !l.hot_merchant)
        .map_or(0.0, |l| l.max_payments_per_s);
    let half_rate = (gateway_max / 2.0).floor() as u32;
    drain(home, &ui, "half the maximum", &known_damage).await?;
    let half_max = if half_rate >= 1 {
        let scenario = base
            .clone()
            .with_overrides(Some(half_rate), Some(u32::from(args.step_s) * 2))?;
        let line = ui.step(&format!("half the maximum: {half_rate}/s"));
        line.working(&format!("{} s through the gateway", args.step_s * 2));
        let cpu = CpuMeter::start(home);
        let db = DbMeter::start(home).await;
        let report = load::drive(&gateway, &scenario, &Ui::new(true)).await?;
        let step = step_of(half_rate, &report, cpu.stop(), db.stop().await);
        line.done(&format!(
            "p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
            step.p50_ms, step.p95_ms, step.p99_ms
        ));
        Some(step)
    } else {
        None
    };

    let stream_rate = (f64::from(half_rate.max(1))).min(STREAM_RATE_MAX_PER_S) as u16;
    let stream = stream::measure(home, stream_rate, args.step_s, &ui).await?;
    let memory = memory.stop();

    let when = chrono::Utc::now();
    let dir = args
        .report_dir
        .clone()
        .unwrap_or_else(|| home.dir.join("bench"));
    std::fs::create_dir_all(&dir)?;
    let stem = format!("bench-{}", when.format("%Y%m%dT%H%M%SZ"));
    let chart = dir.join(format!("{stem}.png"));
    let markdown = dir.join(format!("{stem}.md"));
    let series: Vec<Series> = ladders
        .iter()
        .map(|ladder| Series {
            name: ladder.name.to_string(),
            points: ladder
                .steps
                .iter()
                .map(|s| (f64::from(s.rate_per_s), s.p50_ms, s.p95_ms, s.p99_ms))
                .collect(),
        })
        .collect();
    chart::draw(&chart, &series)?;

    let targets = targets(&ledger, &ladders, half_max.as_ref(), &stream, &memory);
    let report = Report {
        when: when.to_rfc3339(),
        machine: machine(),
        clients: args.clients,
        step_s: args.step_s,
        pgbench_tps: ledger.pgbench_tps,
        ledger,
        ladders,
        half_max,
        stream,
        memory,
        damage_before,
        targets,
        markdown: markdown.clone(),
        chart: chart.clone(),
    };
    std::fs::write(&markdown, render_markdown(&report))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!();
        print!("{}", render_markdown(&report));
        println!(
            "\nreport: {}\nchart:  {}",
            markdown.display(),
            chart.display()
        );
    }
    Ok(0)
}

/// The platform no longer keeps up with a step's rate.
fn is_saturated(step: &Step) -> bool {
    step.error_ratio > SATURATED_ERROR_RATIO || step.dropped > 0 || step.p99_ms > SATURATED_P99_MS
}

/// The most payments a second of the steps the platform kept up with (of all steps when it
/// kept up with none).
fn sustained_max(steps: &[Step]) -> f64 {
    let kept_up = steps.iter().filter(|s| !is_saturated(s));
    let best = kept_up.map(|s| s.payments_per_s).fold(0.0, f64::max);
    if best > 0.0 {
        best
    } else {
        steps.iter().map(|s| s.payments_per_s).fold(0.0, f64::max)
    }
}

/// How long the platform may take to catch up after a ladder (events relayed and consumed,
/// every merchant's list complete) before the next measurement starts.
const DRAIN_MAX_MS: u64 = 120_000;
/// Seconds a ladder's first rate runs, unmeasured, before the ladder starts.
const WARM_UP_S: u32 = 5;

/// Waits until the platform has caught up with what the last measurement sent — the money
/// checks of `paytool chaos` (outboxes published, the merchants' lists equal to the completed
/// payments, the ledger verified) — so that a measurement does not pay for the one before it.
/// A check that still fails after [`DRAIN_MAX_MS`] is a violation: exit 8, never a figure.
///
/// `known`: the checks that already failed before the bench began ([`damage_before`]); they
/// are the platform's past, not this run's, and are not waited for.
async fn drain(
    home: &Home,
    ui: &Ui,
    before: &str,
    known: &std::collections::BTreeSet<String>,
) -> anyhow::Result<()> {
    let line = ui.step(&format!("caught up before {before}"));
    line.working("events relayed and consumed, the ledger verified");
    let report = crate::chaos::invariants::check_beside(home, DRAIN_MAX_MS, known).await?;
    if !report.ok {
        let failed: Vec<String> = report
            .checks
            .iter()
            .filter(|c| !c.ok && !known.contains(&c.name))
            .map(crate::chaos::invariants::Check::summary)
            .collect();
        return Err(fail(
            Code::Violation,
            format!(
                "the platform did not come right within {} s after the load: {}",
                DRAIN_MAX_MS / 1_000,
                failed.join("; ")
            ),
        ));
    }
    line.done(&format!("in {:.1} s", report.converged_ms as f64 / 1_000.0));
    Ok(())
}

/// The money checks that fail before the bench sends anything: a platform damaged before (a
/// chaos experiment with a seeded weakness on, say) is measured all the same, and says so.
async fn damage_before(
    home: &Home,
    ui: &Ui,
) -> anyhow::Result<(std::collections::BTreeSet<String>, Vec<String>)> {
    let report = crate::chaos::invariants::check(home, 0).await?;
    let failing: Vec<&crate::chaos::invariants::Check> =
        report.checks.iter().filter(|c| !c.ok).collect();
    if !failing.is_empty() {
        ui.println(&format!(
            "warning: the platform fails {} money check(s) before the bench begins; measured all the same: {}",
            failing.len(),
            failing
                .iter()
                .map(|c| c.summary())
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    Ok((
        failing.iter().map(|c| c.name.clone()).collect(),
        failing.iter().map(|c| c.summary()).collect(),
    ))
}

/// A few seconds at the ladder's first rate, not measured: connections opened, caches and
/// the JIT (Keycloak's) warm, so that the first step measures the platform, not its start.
async fn warm_up(
    platform: &Arc<load::Platform>,
    base: &Scenario,
    hot: bool,
    rate: u32,
    ui: &Ui,
    name: &str,
) -> anyhow::Result<()> {
    let scenario = Scenario {
        hot_merchant: hot,
        ..base.clone().with_overrides(Some(rate), Some(WARM_UP_S))?
    };
    let line = ui.step(&format!("{name}: warm-up"));
    line.working(&format!("{WARM_UP_S} s at {rate}/s, not measured"));
    load::drive(platform, &scenario, &Ui::new(true)).await?;
    line.done("done");
    Ok(())
}

/// Why a ladder stopped where it did. A step is the load generator's limit when this process
/// used nearly a whole core of its own (it cannot send faster than it runs).
fn capped_by(steps: &[Step], rungs: usize) -> String {
    let Some(last) = steps.last().filter(|s| is_saturated(s)) else {
        return format!("the top of the ladder ({} rates, none saturated)", rungs);
    };
    if last.load_generator_cpu_pct >= LOAD_GENERATOR_CPU_LIMIT_PCT {
        format!(
            "the load generator at {}/s (its own CPU {:.0} % of a core)",
            last.rate_per_s, last.load_generator_cpu_pct
        )
    } else if last.rate_limited > 0 {
        // Any 429 means a limit, not the platform's capacity, shaped the step.
        format!(
            "the rate limit at {}/s ({} answers 429)",
            last.rate_per_s, last.rate_limited
        )
    } else {
        let mut why = Vec::new();
        if last.error_ratio > SATURATED_ERROR_RATIO {
            why.push(format!("{:.1} % failed", last.error_ratio * 100.0));
        }
        if last.dropped > 0 {
            why.push(format!("{} arrivals dropped", last.dropped));
        }
        if last.p99_ms > SATURATED_P99_MS {
            why.push(format!("p99 {:.0} ms", last.p99_ms));
        }
        format!("the platform at {}/s ({})", last.rate_per_s, why.join(", "))
    }
}

fn step_of(rate: u32, report: &load::Report, cpu: CpuUse, db: DbUse) -> Step {
    let latency = report.all.latency.as_ref();
    let ok = report.all.ok.max(1) as f64;
    let per_payment = |counts: BTreeMap<String, i64>| -> BTreeMap<String, f64> {
        counts
            .into_iter()
            .map(|(name, n)| (name, n as f64 / ok))
            .collect()
    };
    Step {
        db_transactions_per_payment: per_payment(db.commits),
        db_statements_per_payment: per_payment(db.statements),
        rate_per_s: rate,
        rate_limited: report.all.statuses.get(&429).copied().unwrap_or(0),
        cpu_ms_per_payment: cpu
            .by_component_ms
            .into_iter()
            .map(|(name, ms)| (name, ms / ok))
            .collect(),
        load_generator_cpu_pct: cpu.load_generator_pct,
        payments_per_s: report.all.ok as f64 / f64::from(report.duration_s).max(1.0),
        p50_ms: latency.map_or(0.0, |l| l.p50_ms),
        p95_ms: latency.map_or(0.0, |l| l.p95_ms),
        p99_ms: latency.map_or(0.0, |l| l.p99_ms),
        error_ratio: report.all.error_ratio,
        dropped: report.dropped,
    }
}

/// The ladder `--rates` climbs by default: from 25 a second, each step 25 % above the last
/// (rounded down), to the rates no installation of this kind sustains. (It stopped at 425
/// until 2026-12-07, when the direct path sustained 425/s: its maximum, and the gateway's
/// share of it, were then capped by the ladder, as the report said.)
pub const DEFAULT_RATES: &str = "25,31,38,47,58,72,90,112,140,175,218,272,340,425,531,663,828";

/// A ladder's step may climb at most this many percent: the highest rate a ladder sustains is
/// then within a quarter of the true maximum (a ladder of 100, 150 calls 100 a maximum that may
/// be 149).
const STEP_CLIMB_MAX_PCT: u32 = 25;

/// `--rates 25,31,38`: strictly increasing whole numbers from 1 to the load engine's maximum,
/// each at most [`STEP_CLIMB_MAX_PCT`] above the one before (one more is always allowed, so
/// that small rates can climb at all).
pub fn parse_rates(text: &str) -> anyhow::Result<Vec<u32>> {
    let rates: Vec<u32> = text
        .split(',')
        .map(|part| {
            part.trim()
                .parse::<u32>()
                .ok()
                .filter(|r| (1..=load::scenario::RATE_MAX_PER_S).contains(r))
                .ok_or_else(|| {
                    fail(
                        Code::Usage,
                        format!(
                            "--rates: {part:?} is not a rate from 1 to {} a second",
                            load::scenario::RATE_MAX_PER_S
                        ),
                    )
                })
        })
        .collect::<anyhow::Result<_>>()?;
    if rates.windows(2).any(|w| w[0] >= w[1]) {
        return Err(fail(Code::Usage, "--rates must climb: 25,31,38"));
    }
    let too_steep = |low: u32, high: u32| {
        u64::from(high) * 100 > u64::from(low) * u64::from(100 + STEP_CLIMB_MAX_PCT)
            && high > low + 1
    };
    if let Some(w) = rates.windows(2).find(|w| too_steep(w[0], w[1])) {
        return Err(fail(
            Code::Usage,
            format!(
                "--rates: {} after {} climbs more than {STEP_CLIMB_MAX_PCT} %; put steps between them (say {})",
                w[1],
                w[0],
                w[0] + w[0] / 4
            ),
        ));
    }
    Ok(rates)
}

fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (denominator > 0.0).then(|| numerator / denominator)
}

fn targets(
    ledger: &ledger::Report,
    ladders: &[Ladder],
    half: Option<&Step>,
    stream: &Value,
    memory: &BTreeMap<String, Memory>,
) -> Vec<Target> {
    // Found by what they measured: the ladders run in a fresh order each time.
    let max_of = |route: Route, hot: bool| {
        ladders
            .iter()
            .find(|l| l.route == route && l.hot_merchant == hot)
            .map_or(0.0, |l| l.max_payments_per_s)
    };
    let uniform = max_of(Route::Gateway, false);
    let hot = max_of(Route::Gateway, true);
    let direct = max_of(Route::Direct, false);
    let at_least = |what, value: Option<f64>, limit: f64, how: &str| Target {
        what,
        target: format!("≥ {limit} ({how})"),
        measured: value.map_or("-".into(), |v| format!("{v:.2}")),
        met: value.map(|v| v >= limit),
    };
    let at_most = |what, value: Option<f64>, limit: f64, unit: &str| Target {
        what,
        target: format!("≤ {limit} {unit}"),
        measured: value.map_or("-".into(), |v| format!("{v:.1} {unit}")),
        met: value.map(|v| v <= limit),
    };
    let mut out = vec![
        at_least(
            "end-to-end payments/s ÷ pgbench TPC-B tps",
            ratio(uniform, ledger.pgbench_tps),
            0.5,
            "gateway, uniform",
        ),
        // Like with like: both measured at fixed arrival rates, held to p99 ≤ 1 s.
        at_least(
            "end-to-end payments/s ÷ pgbench TPC-B at a fixed rate",
            ratio(uniform, ledger.pgbench_open_tps),
            0.25,
            "gateway, uniform; both open-model",
        ),
        at_least(
            "hot merchant ÷ uniform",
            ratio(hot, uniform),
            0.8,
            "payments/s",
        ),
        at_least(
            "through the gateway ÷ direct",
            ratio(uniform, direct),
            0.85,
            "payments/s",
        ),
        at_most(
            "p99 at half the maximum rate",
            half.map(|s| s.p99_ms),
            50.0,
            "ms",
        ),
        at_most(
            "commit → merchant feed, p99",
            stream["commit_to_feed_ms"]["p99"].as_f64(),
            250.0,
            "ms",
        ),
    ];
    for (service, what) in [
        ("orchestrator", "orchestrator idle RSS"),
        ("consumer-api", "consumer-api idle RSS"),
        ("merchant-api", "merchant-api idle RSS"),
    ] {
        out.push(at_most(
            what,
            memory.get(service).map(|m| m.idle_mib),
            50.0,
            "MiB",
        ));
    }
    out
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    let memory_bytes = procfs::memory_total_bytes().unwrap_or(0);
    let cpu = procfs::cpu_model().unwrap_or_else(|| "unknown CPU".into());
    format!(
        "{cores} cores ({cpu}), {:.0} GiB",
        memory_bytes as f64 / 1024.0 / 1024.0 / 1024.0
    )
}

pub fn render_markdown(report: &Report) -> String {
    let mut out = format!(
        "# paytool bench, {}\n\nMachine: {}. {} clients for pgbench and the ledger; {} s a step.\n\n",
        report.when, report.machine, report.clients, report.step_s
    );
    out.push_str("## Targets (measured, never asserted)\n\n| what | target | measured | met |\n|---|---|---:|---|\n");
    for t in &report.targets {
        let met = match t.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "no data",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {met} |\n",
            t.what, t.target, t.measured
        ));
    }
    out.push_str(&format!(
        "\n## PostgreSQL and the ledger\n\n| workload | per second | p50 ms | p99 ms |\n|---|---:|---:|---:|\n| pgbench TPC-B (scale {}, {} clients, closed) | {:.0} | | |\n| pgbench TPC-B at a fixed rate, kept up with (p99 ≤ {} ms) | {:.0} | | |\n",
        report.clients, report.clients, report.pgbench_tps, ledger::OPEN_LATENCY_LIMIT_MS, report.ledger.pgbench_open_tps
    ));
    for phase in &report.ledger.phases {
        out.push_str(&format!(
            "| {} | {:.0} | {:.1} | {:.1} |\n",
            phase.name, phase.per_second, phase.p50_ms, phase.p99_ms
        ));
    }
    out.push_str(&format!(
        "\nThe same workloads at fixed arrival rates (open model), each step {} s, kept up with when at most 1 % of its operations ended over {} ms after they were due or failed and its throughput was within 3 % of the rate:\n\n| workload | kept up with, per second | steps (rate/s: done/s, late %, failed %) |\n|---|---:|---|\n",
        report.step_s,
        ledger::OPEN_LATENCY_LIMIT_MS
    ));
    for ladder in &report.ledger.open {
        let steps: Vec<String> = ladder
            .steps
            .iter()
            .map(|s| {
                format!(
                    "{}: {:.0}, {:.1}, {:.1}",
                    s.rate_per_s, s.tps, s.late_pct, s.failed_pct
                )
            })
            .collect();
        out.push_str(&format!(
            "| {} | {:.0} | {} |\n",
            ladder.name,
            ladder.max_per_s,
            steps.join("; ")
        ));
    }
    out.push_str("\n## Payments end to end (QR payments, constant arrival rate)\n");
    for ladder in &report.ladders {
        out.push_str(&format!(
            "\n{} — sustained **{:.0} payments/s** ({:.2} × pgbench); stopped by {}\n\n| rate/s | payments/s | p50 ms | p95 ms | p99 ms | failed | dropped |\n|---:|---:|---:|---:|---:|---:|---:|\n",
            ladder.name,
            ladder.max_payments_per_s,
            ratio(ladder.max_payments_per_s, report.pgbench_tps).unwrap_or(0.0),
            ladder.capped_by
        ));
        for s in &ladder.steps {
            out.push_str(&format!(
                "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}% | {} |\n",
                s.rate_per_s,
                s.payments_per_s,
                s.p50_ms,
                s.p95_ms,
                s.p99_ms,
                s.error_ratio * 100.0,
                s.dropped
            ));
        }
    }
    if let Some(half) = &report.half_max {
        out.push_str(&format!(
            "\nAt half the gateway's maximum ({}/s): p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, {:.2}% failed.\n",
            half.rate_per_s, half.p50_ms, half.p95_ms, half.p99_ms, half.error_ratio * 100.0
        ));
        out.push_str("\nCPU per payment there, by component (its process tree; the load generator is this process):\n\n| component | CPU ms a payment |\n|---|---:|\n");
        let mut costs: Vec<(&String, &f64)> = half.cpu_ms_per_payment.iter().collect();
        costs.sort_by(|a, b| b.1.total_cmp(a.1));
        for (name, ms) in costs.into_iter().filter(|(_, ms)| **ms >= 0.01) {
            out.push_str(&format!("| {name} | {ms:.2} |\n"));
        }
        let total: f64 = half.cpu_ms_per_payment.values().sum();
        out.push_str(&format!("| all | {total:.2} |\n"));
        out.push_str("\nPostgreSQL's work per payment there, by service database (transactions count a lone read too):\n\n| database | transactions | statements |\n|---|---:|---:|\n");
        for (name, commits) in &half.db_transactions_per_payment {
            let statements = half
                .db_statements_per_payment
                .get(name)
                .map_or("not counted".to_string(), |n| format!("{n:.1}"));
            out.push_str(&format!("| {name} | {commits:.1} | {statements} |\n"));
        }
    }
    let feed = &report.stream["commit_to_feed_ms"];
    out.push_str(&format!(
        "\n## The merchant's notification\n\n{} payments at {}/s: commit → merchant feed p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} lost, {} twice.\n",
        report.stream["payments"], report.stream["rate_per_s"],
        feed["p50"].as_f64().unwrap_or(0.0), feed["p99"].as_f64().unwrap_or(0.0), feed["max"].as_f64().unwrap_or(0.0),
        report.stream["lost"], report.stream["duplicates"]
    ));
    if !report.damage_before.is_empty() {
        out.push_str(&format!(
            "\n**Measured on a damaged platform**: before the bench sent anything, these money checks failed (not waited for between ladders): {}.\n",
            report.damage_before.join("; ")
        ));
    }
    out.push_str("\n## Memory (resident, each component's process tree)\n\n| component | idle MiB | peak MiB |\n|---|---:|---:|\n");
    for (name, m) in &report.memory {
        out.push_str(&format!(
            "| {name} | {:.1} | {:.1} |\n",
            m.idle_mib, m.peak_mib
        ));
    }
    out.push_str(&format!(
        "\n![latency percentiles against arrival rate]({})\n",
        report
            .chart
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    ));
    out
}

/// The load generator's own CPU above which a step says more of it than of the platform:
/// nearly a whole core of the two.
const LOAD_GENERATOR_CPU_LIMIT_PCT: f64 = 90.0;
/// The name the load generator's CPU goes under, next to the components'.
const LOAD_GENERATOR: &str = "load generator (paytool)";

/// The service databases whose work a payment's cost is counted in.
const SERVICE_DATABASES: [&str; 3] = ["consumer_api", "merchant_api", "orchestrator"];

/// The transactions and statements each service database took over a step, from PostgreSQL's own
/// counters. Best effort: a counter that cannot be read leaves its figure out, never the run.
struct DbMeter {
    admin_url: Option<String>,
    before: DbUse,
}

#[derive(Default)]
struct DbUse {
    commits: BTreeMap<String, i64>,
    statements: BTreeMap<String, i64>,
}

impl DbMeter {
    async fn start(home: &Home) -> Self {
        let admin_url = home
            .secrets()
            .ok()
            .map(|secrets| crate::runtime::components::postgres::admin_url(home, &secrets));
        let before = match &admin_url {
            Some(url) => db_counters(url).await,
            None => DbUse::default(),
        };
        Self { admin_url, before }
    }

    async fn stop(self) -> DbUse {
        let Some(url) = &self.admin_url else {
            return DbUse::default();
        };
        let after = db_counters(url).await;
        let delta = |after: BTreeMap<String, i64>, before: &BTreeMap<String, i64>| {
            after
                .into_iter()
                .filter_map(|(name, n)| Some((name.clone(), n - before.get(&name)?)))
                .collect()
        };
        DbUse {
            commits: delta(after.commits, &self.before.commits),
            statements: delta(after.statements, &self.before.statements),
        }
    }
}

async fn db_counters(admin_url: &str) -> DbUse {
    use sqlx::{ConnectOptions, Connection};
    let Ok(options) = <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(admin_url)
    else {
        return DbUse::default();
    };
    let Ok(mut connection) = options.connect().await else {
        return DbUse::default();
    };
    let names: Vec<String> = SERVICE_DATABASES.iter().map(|s| s.to_string()).collect();
    // A busy backend adds its counts to these at most once a second: a step's figures are
    // off by about a second's worth at each end, the same at both.
    let commits: Vec<(String, i64)> = sqlx::query_as(
        "SELECT datname::text, xact_commit FROM pg_stat_database WHERE datname = ANY($1)",
    )
    .bind(&names)
    .fetch_all(&mut connection)
    .await
    .unwrap_or_default();
    // Made where it is loaded (`shared_preload_libraries`); elsewhere this fails and the
    // statements are left out.
    let _ = sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&mut connection)
        .await;
    let statements: Vec<(String, i64)> = sqlx::query_as(
        "SELECT d.datname::text, sum(s.calls)::int8 FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
         WHERE d.datname = ANY($1) GROUP BY d.datname",
    )
    .bind(&names)
    .fetch_all(&mut connection)
    .await
    .unwrap_or_default();
    let _ = connection.close().await;
    DbUse {
        commits: commits.into_iter().collect(),
        statements: statements.into_iter().collect(),
    }
}

/// The CPU time each component (its process tree) and this process spend over a step.
struct CpuMeter {
    components: Vec<(String, u32)>,
    before: BTreeMap<String, u64>,
    started: std::time::Instant,
}

struct CpuUse {
    by_component_ms: BTreeMap<String, f64>,
    load_generator_pct: f64,
}

impl CpuMeter {
    fn start(home: &Home) -> Self {
        let components = components(home);
        let before = cpu_ticks(&components);
        Self {
            components,
            before,
            started: std::time::Instant::now(),
        }
    }

    fn stop(self) -> CpuUse {
        let after = cpu_ticks(&self.components);
        let ms_per_tick = 1_000.0 / procfs::ticks_per_second().max(1) as f64;
        let by_component_ms: BTreeMap<String, f64> = after
            .iter()
            .map(|(name, ticks)| {
                let spent = ticks.saturating_sub(self.before.get(name).copied().unwrap_or(0));
                (name.clone(), spent as f64 * ms_per_tick)
            })
            .collect();
        let elapsed_ms = self.started.elapsed().as_secs_f64() * 1_000.0;
        let own_ms = by_component_ms.get(LOAD_GENERATOR).copied().unwrap_or(0.0);
        CpuUse {
            by_component_ms,
            load_generator_pct: 100.0 * own_ms / elapsed_ms.max(1.0),
        }
    }
}

/// Each component's process tree's CPU ticks, and this process's under [`LOAD_GENERATOR`].
fn cpu_ticks(components: &[(String, u32)]) -> BTreeMap<String, u64> {
    let processes = procfs::processes();
    let mut ticks: BTreeMap<String, u64> = components
        .iter()
        .map(|(name, pid)| (name.clone(), procfs::tree_cpu_ticks(&processes, *pid)))
        .collect();
    let own = processes
        .get(&std::process::id())
        .map_or(0, |p| p.cpu_ticks);
    ticks.insert(LOAD_GENERATOR.to_string(), own);
    ticks
}

/// The running components with a process of their own: name and pid.
fn components(home: &Home) -> Vec<(String, u32)> {
    crate::runtime::state::RuntimeState::load(home)
        .map(|state| {
            state
                .components
                .into_iter()
                .filter_map(|c| Some((c.name.to_string(), c.pid?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Samples each component's resident memory (its whole process tree: PostgreSQL's backends,
/// a JVM's threads are one process) every `RSS_SAMPLE_MS`, keeping the first and the largest.
struct MemorySampler {
    samples: Arc<Mutex<BTreeMap<String, Memory>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MemorySampler {
    fn start(home: &Home) -> Self {
        let components = components(home);
        let samples = Arc::new(Mutex::new(BTreeMap::new()));
        let task = tokio::spawn({
            let samples = Arc::clone(&samples);
            async move {
                loop {
                    record(&samples, &components);
                    tokio::time::sleep(Duration::from_millis(RSS_SAMPLE_MS)).await;
                }
            }
        });
        Self { samples, task }
    }

    fn stop(self) -> BTreeMap<String, Memory> {
        self.task.abort();
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn record(samples: &Mutex<BTreeMap<String, Memory>>, components: &[(String, u32)]) {
    let processes = procfs::processes();
    let mut samples = samples.lock().unwrap_or_else(|e| e.into_inner());
    for (name, pid) in components {
        let mib = procfs::tree_rss_kib(&processes, *pid) as f64 / 1024.0;
        let entry = samples.entry(name.clone()).or_insert(Memory {
            idle_mib: mib,
            peak_mib: mib,
        });
        entry.peak_mib = entry.peak_mib.max(mib);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_maximum_is_the_best_step_the_platform_kept_up_with() {
        let step = |rate: u32, p99_ms: f64, dropped: u64| Step {
            rate_per_s: rate,
            payments_per_s: f64::from(rate),
            p50_ms: 1.0,
            p95_ms: 2.0,
            p99_ms,
            error_ratio: 0.0,
            dropped,
            rate_limited: 0,
            cpu_ms_per_payment: BTreeMap::new(),
            load_generator_cpu_pct: 10.0,
            db_transactions_per_payment: BTreeMap::new(),
            db_statements_per_payment: BTreeMap::new(),
        };
        let steps = [step(25, 30.0, 0), step(50, 60.0, 0), step(100, 1_100.0, 0)];
        assert_eq!(sustained_max(&steps), 50.0);
        assert_eq!(sustained_max(&[step(25, 30.0, 0), step(50, 90.0, 3)]), 25.0);
        assert_eq!(
            sustained_max(&[step(25, 2_000.0, 0)]),
            25.0,
            "none kept up: the best seen"
        );
    }

    #[test]
    fn a_ladder_says_what_stopped_it() {
        let step = |rate: u32, error_ratio: f64, limited: u64, own_cpu_pct: f64| Step {
            rate_per_s: rate,
            payments_per_s: f64::from(rate),
            p50_ms: 1.0,
            p95_ms: 2.0,
            p99_ms: 10.0,
            error_ratio,
            dropped: 0,
            rate_limited: limited,
            cpu_ms_per_payment: BTreeMap::new(),
            load_generator_cpu_pct: own_cpu_pct,
            db_transactions_per_payment: BTreeMap::new(),
            db_statements_per_payment: BTreeMap::new(),
        };
        let fine = step(25, 0.0, 0, 10.0);
        assert!(capped_by(std::slice::from_ref(&fine), 3).starts_with("the top of the ladder"));
        let failing = step(31, 0.05, 0, 10.0);
        assert_eq!(
            capped_by(&[fine.clone(), failing], 3),
            "the platform at 31/s (5.0 % failed)"
        );
        let limited = step(31, 0.05, 2, 10.0);
        assert!(capped_by(&[fine.clone(), limited], 3).starts_with("the rate limit at 31/s"));
        let busy = step(31, 0.05, 0, 95.0);
        assert!(capped_by(&[fine, busy], 3).starts_with("the load generator at 31/s"));
    }

    #[test]
    fn rates_must_climb_within_bounds() {
        assert_eq!(parse_rates("25, 31,38").expect("fine"), [25, 31, 38]);
        assert_eq!(parse_rates("1,2,3").expect("a step of one"), [1, 2, 3]);
        assert_eq!(
            parse_rates(DEFAULT_RATES)
                .expect("the default climbs by 25 %")
                .len(),
            17
        );
        for bad in [
            "", "50,25", "0,10", "10,10", "a", "2000", "25,50", "100,126",
        ] {
            assert!(parse_rates(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_are_met_or_not_by_the_numbers() {
        let step = |rate, p99| Step {
            rate_per_s: rate,
            payments_per_s: f64::from(rate),
            p50_ms: 1.0,
            p95_ms: 2.0,
            p99_ms: p99,
            error_ratio: 0.0,
            dropped: 0,
            rate_limited: 0,
            cpu_ms_per_payment: BTreeMap::new(),
            load_generator_cpu_pct: 10.0,
            db_transactions_per_payment: BTreeMap::new(),
            db_statements_per_payment: BTreeMap::new(),
        };
        let ladder = |max, route, hot_merchant| Ladder {
            name: "x",
            route,
            hot_merchant,
            steps: vec![],
            max_payments_per_s: max,
            capped_by: String::new(),
        };
        let ledger = ledger::Report {
            clients: 4,
            duration_s: 10,
            pgbench_tps: 1_000.0,
            pgbench_open_tps: 800.0,
            open: vec![],
            phases: vec![],
            ledger_uniform_vs_pgbench: 0.5,
            ledger_hot_vs_uniform: 1.0,
            ledger_verified: true,
        };
        let memory = BTreeMap::from([(
            "orchestrator".to_string(),
            Memory {
                idle_mib: 30.0,
                peak_mib: 60.0,
            },
        )]);
        let stream = serde_json::json!({ "commit_to_feed_ms": { "p99": 300.0 } });
        let found = targets(
            &ledger,
            // In the order a run may put them: they are found by route and merchant.
            &[
                ladder(650.0, Route::Direct, false),
                ladder(600.0, Route::Gateway, false),
                ladder(300.0, Route::Gateway, true),
            ],
            Some(&step(300, 40.0)),
            &stream,
            &memory,
        );
        let met: BTreeMap<&str, Option<bool>> = found.iter().map(|t| (t.what, t.met)).collect();
        assert_eq!(met["end-to-end payments/s ÷ pgbench TPC-B tps"], Some(true));
        assert_eq!(
            met["end-to-end payments/s ÷ pgbench TPC-B at a fixed rate"],
            Some(true)
        );
        assert_eq!(met["hot merchant ÷ uniform"], Some(false));
        assert_eq!(met["through the gateway ÷ direct"], Some(true));
        assert_eq!(met["p99 at half the maximum rate"], Some(true));
        assert_eq!(met["commit → merchant feed, p99"], Some(false));
        assert_eq!(met["orchestrator idle RSS"], Some(true));
        assert_eq!(met["consumer-api idle RSS"], None);
    }
}
