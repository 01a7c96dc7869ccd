//! `paytool bench ledger`: the ledger's throughput next to pgbench's TPC-B, on the running
//! platform's PostgreSQL, in one run. Scratch databases are made for it and dropped after.
//! Figures, never assertions: docs/benchmarks.md says how to read and reproduce them.

use crate::args::BenchLedgerArgs;
use crate::perf::stats::Latencies;
use crate::runtime::home::Home;
use crate::support::exit::{fail, Code};
use crate::support::ui::Ui;
use orchestrator::ledger::{self, AccountKind, NewTransfer, TransferKind};
use orchestrator::saga::{Request, SagaSettings, Sagas};
use paykit::money::{Currency, Money};
use rand::Rng;
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor};
use std::str::FromStr;
use std::time::{Duration, Instant};
use uuid::Uuid;

const PGBENCH_DB: &str = "paytool_bench_pgbench";
const LEDGER_DB: &str = "paytool_bench_ledger";
/// Merchants in the uniform phase; the hot phase sends everything to the first.
const MERCHANTS: usize = 100;
const WALLETS_PER_CLIENT: usize = 50;
/// Each wallet starts with enough for any run: no transfer is refused for funds.
const WALLET_FUNDS: i64 = 1_000_000_000;

#[derive(Debug, Serialize)]
pub struct Phase {
    pub name: &'static str,
    pub operations: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// One step of pgbench at a fixed arrival rate (`-R`): the open model the payments' ladder
/// is measured in, so that the two compare like with like.
#[derive(Debug, Clone, Serialize)]
pub struct OpenStep {
    pub rate_per_s: u32,
    pub tps: f64,
    /// Transactions that ended more than [`OPEN_LATENCY_LIMIT_MS`] after their scheduled
    /// start, or were skipped for being that late already, percent.
    pub late_pct: f64,
    pub failed_pct: f64,
    pub sustained: bool,
}

impl OpenStep {
    /// Kept up with: at most 1 % late and 1 % failed, and the throughput within 3 % of the rate.
    fn judged(rate_per_s: u32, tps: f64, late_pct: f64, failed_pct: f64) -> Self {
        Self {
            rate_per_s,
            tps,
            late_pct,
            failed_pct,
            sustained: late_pct <= OPEN_LATE_PCT_MAX
                && failed_pct <= OPEN_FAILED_PCT_MAX
                && tps >= f64::from(rate_per_s) * (1.0 - OPEN_TPS_SHORTFALL_MAX),
        }
    }
}

/// The payments' ladder calls a step kept up with when its p99 is at most 1 s, at most 1 %
/// failed and nothing was dropped; pgbench's open steps are held to the same.
pub const OPEN_LATENCY_LIMIT_MS: u32 = 1_000;
const OPEN_LATE_PCT_MAX: f64 = 1.0;
const OPEN_FAILED_PCT_MAX: f64 = 1.0;
/// A step whose throughput falls this far under its rate did not keep up either.
const OPEN_TPS_SHORTFALL_MAX: f64 = 0.03;
/// The open ladder starts at this fraction of the closed run's tps, climbs 25 % a step, and
/// stops at the first step not kept up with, or after `--open-steps` (at most this many).
const OPEN_START_FRACTION: f64 = 0.25;
const OPEN_STEPS_MAX: usize = 12;

/// A workload's open-model ladder: each step a fixed arrival rate, 25 % above the last.
#[derive(Debug, Clone, Serialize)]
pub struct OpenLadder {
    pub name: &'static str,
    pub steps: Vec<OpenStep>,
    /// The most operations a second of a step kept up with.
    pub max_per_s: f64,
}

impl OpenLadder {
    fn new(name: &'static str, steps: Vec<OpenStep>) -> Self {
        let max_per_s = steps
            .iter()
            .filter(|s| s.sustained)
            .map(|s| s.tps)
            .fold(0.0, f64::max);
        Self {
            name,
            steps,
            max_per_s,
        }
    }
}

/// Operations in flight at once in an in-process open step, at most; an arrival past it is
/// dropped (and counted as failed): a step that needs more did not keep up.
const OPEN_IN_FLIGHT_MAX: usize = 4_096;

#[derive(Debug, Serialize)]
pub struct Report {
    pub clients: u16,
    pub duration_s: u16,
    /// Closed model: `clients` connections, each starting its next transaction at once.
    pub pgbench_tps: f64,
    /// Open model: the highest fixed arrival rate kept up with (see [`OpenStep`]).
    pub pgbench_open_tps: f64,
    /// pgbench, the ledger's transfers and the payment sagas (uniform), each as an open model.
    pub open: Vec<OpenLadder>,
    pub phases: Vec<Phase>,
    pub ledger_uniform_vs_pgbench: f64,
    pub ledger_hot_vs_uniform: f64,
    pub ledger_verified: bool,
}

pub async fn ledger(
    home: &Home,
    pg_bin: &std::path::Path,
    args: &BenchLedgerArgs,
    ui: &Ui,
) -> anyhow::Result<i32> {
    let report = ledger_report(
        home,
        pg_bin,
        args.clients,
        args.duration_s,
        args.open_steps,
        ui,
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!();
        println!(
            "pgbench TPC-B: {:.0} tps ({} clients, scale {})",
            report.pgbench_tps, args.clients, args.clients
        );
        println!(
            "pgbench TPC-B at a fixed rate: {:.0} tps kept up with (p99 ≤ {OPEN_LATENCY_LIMIT_MS} ms)",
            report.pgbench_open_tps
        );
        for phase in &report.phases {
            println!(
                "{:<32} {:>8.0}/s  p50 {:>6.1} ms  p99 {:>6.1} ms  ({} in {} s)",
                phase.name,
                phase.per_second,
                phase.p50_ms,
                phase.p99_ms,
                phase.operations,
                args.duration_s
            );
        }
        println!(
            "ledger transfers ÷ pgbench tps: {:.2}; hot merchant ÷ uniform: {:.2}",
            report.ledger_uniform_vs_pgbench, report.ledger_hot_vs_uniform
        );
    }
    Ok(if report.ledger_verified {
        0
    } else {
        Code::Violation as i32
    })
}

/// pgbench's TPC-B, then the ledger's transfers and payment sagas, uniform and hot, on scratch
/// databases of the running PostgreSQL; ends with the ledger's invariants over what it wrote.
pub async fn ledger_report(
    home: &Home,
    pg_bin: &std::path::Path,
    clients: u16,
    duration_s: u16,
    open_steps: u8,
    ui: &Ui,
) -> anyhow::Result<Report> {
    assert!((1..=OPEN_STEPS_MAX).contains(&usize::from(open_steps)));
    crate::runtime::state::require_running(home)?;
    let secrets = home.secrets()?;
    let port = home.ports().postgres;
    let admin_url = crate::runtime::components::postgres::admin_url(home, &secrets);
    let duration = Duration::from_secs(u64::from(duration_s));

    let line = ui.step("pgbench tpc-b");
    line.working(&format!(
        "scale {}, {} clients, {} s",
        clients, clients, duration_s
    ));
    recreate(&admin_url, PGBENCH_DB).await?;
    let pgbench = |extra: &[String]| {
        let mut command = std::process::Command::new(pg_bin.join("pgbench"));
        command
            .env("PGPASSWORD", &secrets.postgres_superuser)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
            .args(extra)
            .arg(PGBENCH_DB);
        command
    };
    // Scale at least the client count, so that clients do not all queue on a few branch rows.
    let init = pgbench(&["-i".into(), "-q".into(), "-s".into(), clients.to_string()]).output()?;
    if !init.status.success() {
        return Err(fail(
            Code::Failed,
            format!(
                "pgbench -i failed: {}",
                String::from_utf8_lossy(&init.stderr).trim()
            ),
        ));
    }
    // `clients` connections for `duration_s`, with `extra` options; stdout and stderr.
    let timed = |extra: &[String]| {
        let mut command = pgbench(&[
            "-c".into(),
            clients.to_string(),
            "-j".into(),
            clients.to_string(),
            "-T".into(),
            duration_s.to_string(),
        ]);
        command.args(extra);
        async move {
            let run = tokio::task::spawn_blocking(move || command.output()).await??;
            Ok::<_, anyhow::Error>((
                String::from_utf8_lossy(&run.stdout).into_owned(),
                String::from_utf8_lossy(&run.stderr).into_owned(),
            ))
        }
    };
    let (stdout, stderr) = timed(&[]).await?;
    let pgbench_tps = tps_of(&stdout).ok_or_else(|| {
        fail(
            Code::Failed,
            format!(
                "pgbench printed no tps: {} {}",
                stdout.trim(),
                stderr.trim()
            ),
        )
    })?;
    line.done(&format!("{pgbench_tps:.0} tps"));

    let line = ui.step("pgbench tpc-b, open model");
    let mut pgbench_steps: Vec<OpenStep> = Vec::new();
    let mut rate = (pgbench_tps * OPEN_START_FRACTION).max(1.0);
    for _ in 0..open_steps {
        let rate_per_s = rate.round() as u32;
        line.working(&format!("{rate_per_s}/s for {duration_s} s"));
        let (stdout, stderr) = timed(&[
            "-R".into(),
            rate_per_s.to_string(),
            "-L".into(),
            OPEN_LATENCY_LIMIT_MS.to_string(),
        ])
        .await?;
        let step = open_step(rate_per_s, &stdout).ok_or_else(|| {
            fail(
                Code::Failed,
                format!(
                    "pgbench -R printed no tps: {} {}",
                    stdout.trim(),
                    stderr.trim()
                ),
            )
        })?;
        let sustained = step.sustained;
        pgbench_steps.push(step);
        if !sustained {
            break;
        }
        rate *= 1.25;
    }
    let pgbench_open = OpenLadder::new("pgbench TPC-B", pgbench_steps);
    let pgbench_open_tps = pgbench_open.max_per_s;
    let mut open = vec![pgbench_open];
    drop_database(&admin_url, PGBENCH_DB).await?;
    line.done(&format!(
        "{pgbench_open_tps:.0} tps kept up with at a fixed rate (p99 ≤ {OPEN_LATENCY_LIMIT_MS} ms)"
    ));

    let line = ui.step("ledger set-up");
    line.working("accounts and funds");
    recreate(&admin_url, LEDGER_DB).await?;
    let options = PgConnectOptions::from_str(&admin_url)?.database(LEDGER_DB);
    let pool = PgPoolOptions::new()
        .max_connections(u32::from(clients) + 2)
        .connect_with(options)
        .await?;
    orchestrator::startup::migrate(&pool).await?;
    let currency = Currency::parse("JPY").map_err(|e| anyhow::anyhow!("{e}"))?;
    let funding = ledger::system_account(&pool, AccountKind::Funding, currency).await?;
    let mut wallets = Vec::new();
    for _ in 0..usize::from(clients) * WALLETS_PER_CLIENT {
        let id = Uuid::new_v4();
        ledger::create_account(&pool, id, AccountKind::Wallet, currency, None).await?;
        ledger::apply(
            &pool,
            &[posted(funding.id, id, WALLET_FUNDS, currency, "top_up")],
        )
        .await?;
        wallets.push(id);
    }
    let mut merchants = Vec::new();
    for _ in 0..MERCHANTS {
        let id = Uuid::new_v4();
        ledger::create_account(&pool, id, AccountKind::Merchant, currency, None).await?;
        merchants.push(id);
    }
    line.done(&format!("{} wallets, {MERCHANTS} merchants", wallets.len()));

    let mut phases = Vec::new();
    for (name, hot) in [
        ("ledger transfers, uniform", false),
        ("ledger transfers, hot merchant", true),
    ] {
        let line = ui.step(name);
        line.working(&format!("{} clients, {} s", clients, duration_s));
        let phase = run_phase(name, clients, duration, {
            let pool = pool.clone();
            let wallets = wallets.clone();
            let merchants = merchants.clone();
            move || {
                let pool = pool.clone();
                let (wallet, merchant) = pick(&wallets, &merchants, hot);
                async move {
                    ledger::apply(&pool, &[posted(wallet, merchant, 1, currency, "payment")])
                        .await
                        .map(|_| ())
                        .map_err(anyhow::Error::from)
                }
            }
        })
        .await?;
        line.done(&format!(
            "{:.0}/s, p50 {:.1} ms, p99 {:.1} ms",
            phase.per_second, phase.p50_ms, phase.p99_ms
        ));
        phases.push(phase);
    }
    let line = ui.step("ledger transfers, uniform, open model");
    let ladder = open_ladder(
        "ledger transfers, uniform",
        phases[0].per_second * OPEN_START_FRACTION,
        open_steps,
        duration,
        &line,
        {
            let pool = pool.clone();
            let wallets = wallets.clone();
            let merchants = merchants.clone();
            move || {
                let pool = pool.clone();
                let (wallet, merchant) = pick(&wallets, &merchants, false);
                async move {
                    ledger::apply(&pool, &[posted(wallet, merchant, 1, currency, "payment")])
                        .await
                        .map(|_| ())
                        .map_err(anyhow::Error::from)
                }
            }
        },
    )
    .await;
    line.done(&format!("{:.0}/s kept up with", ladder.max_per_s));
    open.push(ladder);
    let sagas = Sagas::new(pool.clone(), SagaSettings::default());
    for (name, hot) in [
        ("payment sagas, uniform", false),
        ("payment sagas, hot merchant", true),
    ] {
        let line = ui.step(name);
        line.working(&format!("{} clients, {} s", clients, duration_s));
        let phase = run_phase(name, clients, duration, {
            let sagas = sagas.clone();
            let wallets = wallets.clone();
            let merchants = merchants.clone();
            move || {
                let sagas = sagas.clone();
                let (wallet, merchant) = pick(&wallets, &merchants, hot);
                async move { pay(&sagas, wallet, merchant, currency).await }
            }
        })
        .await?;
        line.done(&format!(
            "{:.0}/s, p50 {:.1} ms, p99 {:.1} ms",
            phase.per_second, phase.p50_ms, phase.p99_ms
        ));
        phases.push(phase);
    }
    let line = ui.step("payment sagas, uniform, open model");
    let ladder = open_ladder(
        "payment sagas, uniform",
        phases[2].per_second * OPEN_START_FRACTION,
        open_steps,
        duration,
        &line,
        {
            let sagas = sagas.clone();
            let wallets = wallets.clone();
            let merchants = merchants.clone();
            move || {
                let sagas = sagas.clone();
                let (wallet, merchant) = pick(&wallets, &merchants, false);
                async move { pay(&sagas, wallet, merchant, currency).await }
            }
        },
    )
    .await;
    line.done(&format!("{:.0}/s kept up with", ladder.max_per_s));
    open.push(ladder);
    let line = ui.step("ledger verify");
    let verified = orchestrator::invariants::verify(&pool).await?;
    line.done(if verified.ok {
        "every invariant holds"
    } else {
        "VIOLATED"
    });
    pool.close().await;
    drop_database(&admin_url, LEDGER_DB).await?;

    let uniform = phases[0].per_second;
    let report = Report {
        clients,
        duration_s,
        pgbench_tps,
        pgbench_open_tps,
        open,
        ledger_uniform_vs_pgbench: uniform / pgbench_tps,
        ledger_hot_vs_uniform: phases[1].per_second / uniform,
        ledger_verified: verified.ok,
        phases,
    };
    Ok(report)
}

/// pgbench's "tps = 999.02 (without initial connection time)".
fn tps_of(stdout: &str) -> Option<f64> {
    stdout
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.trim_start_matches("tps = ").split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
}

/// What one `pgbench -R … -L …` run printed, judged; `None` without a tps line.
pub fn open_step(rate_per_s: u32, stdout: &str) -> Option<OpenStep> {
    // "number of transactions above the 1000.0 ms latency limit: 3/9000 (0.033%)", and the
    // same "(x%)" ending on the skipped and failed lines.
    let percent_on = |needle: &str| -> f64 {
        stdout
            .lines()
            .find(|l| l.contains(needle))
            .and_then(|l| l.rsplit_once('(')?.1.split_once('%'))
            .and_then(|(value, _)| value.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let tps = tps_of(stdout)?;
    let late_pct = percent_on("latency limit") + percent_on("transactions skipped");
    let failed_pct = percent_on("failed transactions");
    Some(OpenStep::judged(rate_per_s, tps, late_pct, failed_pct))
}

/// One payment saga of 100 minor units, which must complete.
async fn pay(
    sagas: &Sagas,
    wallet: Uuid,
    merchant: Uuid,
    currency: Currency,
) -> anyhow::Result<()> {
    let request = Request::Payment {
        wallet_account_id: wallet,
        merchant_account_id: merchant,
        amount: Money::new(100, currency),
        fee_bps: 250,
        reference: None,
        metadata: None,
    };
    let view = sagas
        .start("bench", &Uuid::new_v4().to_string(), request)
        .await?;
    anyhow::ensure!(view.state == "completed", "a payment ended {}", view.state);
    Ok(())
}

/// Climbs fixed arrival rates from `start_per_s`, 25 % a step, until a step is not kept up
/// with (or after `steps_max`).
async fn open_ladder<F, Fut>(
    name: &'static str,
    start_per_s: f64,
    steps_max: u8,
    duration: Duration,
    line: &crate::support::ui::Line,
    operation: F,
) -> OpenLadder
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut steps = Vec::new();
    let mut rate = start_per_s.max(1.0);
    for _ in 0..steps_max {
        let rate_per_s = rate.round() as u32;
        line.working(&format!("{rate_per_s}/s for {} s", duration.as_secs()));
        let step = run_open(rate_per_s, duration, operation.clone()).await;
        let sustained = step.sustained;
        steps.push(step);
        if !sustained {
            break;
        }
        rate *= 1.25;
    }
    OpenLadder::new(name, steps)
}

/// `operation` started at `rate_per_s` for `duration`, on schedule whatever the ones before
/// are doing; each one's latency counts from when it was due (so a queue shows), and one past
/// [`OPEN_LATENCY_LIMIT_MS`] is late.
async fn run_open<F, Fut>(rate_per_s: u32, duration: Duration, operation: F) -> OpenStep
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    assert!(rate_per_s > 0);
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate_per_s));
    let started = tokio::time::Instant::now();
    let arrivals = (duration.as_secs_f64() * f64::from(rate_per_s)).round() as u64;
    let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(OPEN_IN_FLIGHT_MAX));
    let mut tasks = tokio::task::JoinSet::new();
    let mut dropped = 0u64;
    for n in 0..arrivals {
        let due = started + interval.mul_f64(n as f64);
        tokio::time::sleep_until(due).await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            dropped += 1;
            continue;
        };
        let operation = operation.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let outcome = operation().await;
            (outcome.is_ok(), due.elapsed())
        });
    }
    let (mut ok, mut failed, mut late) = (0u64, dropped, 0u64);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((true, took)) => {
                ok += 1;
                if took > Duration::from_millis(u64::from(OPEN_LATENCY_LIMIT_MS)) {
                    late += 1;
                }
            }
            _ => failed += 1,
        }
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    let total = (ok + failed).max(1) as f64;
    let tps = ok as f64 / elapsed_s;
    let late_pct = late as f64 * 100.0 / total;
    let failed_pct = failed as f64 * 100.0 / total;
    OpenStep::judged(rate_per_s, tps, late_pct, failed_pct)
}

fn posted(
    debit: Uuid,
    credit: Uuid,
    amount: i64,
    currency: Currency,
    code: &'static str,
) -> NewTransfer {
    NewTransfer {
        id: Uuid::new_v4(),
        debit,
        credit,
        amount,
        currency,
        kind: TransferKind::Posted,
        code,
        saga_id: None,
    }
}

fn pick(wallets: &[Uuid], merchants: &[Uuid], hot: bool) -> (Uuid, Uuid) {
    let mut rng = rand::thread_rng();
    let wallet = wallets[rng.gen_range(0..wallets.len())];
    let merchant = if hot {
        merchants[0]
    } else {
        merchants[rng.gen_range(0..merchants.len())]
    };
    (wallet, merchant)
}

/// `clients` loops, each running `operation` back to back until `duration` has passed.
async fn run_phase<F, Fut>(
    name: &'static str,
    clients: u16,
    duration: Duration,
    operation: F,
) -> anyhow::Result<Phase>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let operation = operation.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::default();
            while Instant::now() < deadline {
                let began = Instant::now();
                operation().await?;
                latencies.record(began.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut all = Latencies::default();
    for task in tasks {
        all.add(&task.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(Phase {
        name,
        operations: all.count(),
        per_second: all.count() as f64 / elapsed,
        p50_ms: all.percentile_ms(0.50).unwrap_or(0.0),
        p99_ms: all.percentile_ms(0.99).unwrap_or(0.0),
    })
}

async fn recreate(admin_url: &str, database: &str) -> anyhow::Result<()> {
    drop_database(admin_url, database).await?;
    let mut connection = PgConnectOptions::from_str(admin_url)?.connect().await?;
    connection
        .execute(format!("CREATE DATABASE {database}").as_str())
        .await?;
    connection.close().await?;
    Ok(())
}

async fn drop_database(admin_url: &str, database: &str) -> anyhow::Result<()> {
    let mut connection = PgConnectOptions::from_str(admin_url)?.connect().await?;
    connection
        .execute(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)").as_str())
        .await?;
    connection.close().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // pgbench 17's summary of a throttled run with a latency limit.
    const KEPT_UP: &str = "transaction type: <builtin: TPC-B (sort of)>
scaling factor: 8
number of clients: 8
number of threads: 8
duration: 8 s
number of transactions actually processed: 7992
number of failed transactions: 0 (0.000%)
number of transactions skipped: 0 (0.000%)
number of transactions above the 1000.0 ms latency limit: 3/7992 (0.038%)
latency average = 1.780 ms
latency stddev = 0.920 ms
rate limit schedule lag: avg 0.109 (max 2.148) ms
initial connection time = 5.322 ms
tps = 999.020519 (without initial connection time)
";

    #[test]
    fn a_throttled_run_within_its_latency_limit_kept_up() {
        let step = open_step(1_000, KEPT_UP).expect("a step");
        assert_eq!(step.tps, 999.020519);
        assert!((step.late_pct - 0.038).abs() < 1e-9);
        assert_eq!(step.failed_pct, 0.0);
        assert!(step.sustained);
    }

    #[test]
    fn late_transactions_skipped_ones_or_a_shortfall_mean_it_did_not_keep_up() {
        let late = KEPT_UP.replace("3/7992 (0.038%)", "400/7992 (5.005%)");
        assert!(!open_step(1_000, &late).expect("a step").sustained);
        let skipped = KEPT_UP.replace("skipped: 0 (0.000%)", "skipped: 90 (1.100%)");
        let step = open_step(1_000, &skipped).expect("a step");
        assert!((step.late_pct - 1.138).abs() < 1e-9, "{}", step.late_pct);
        assert!(!step.sustained);
        assert!(!open_step(1_200, KEPT_UP).expect("a step").sustained);
        assert!(open_step(1_000, "no summary at all").is_none());
    }
}
