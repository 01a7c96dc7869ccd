//! `paytool chaos` against the running test platform (the one `scripts/test.sh` starts;
//! `PAYTOOL_TEST_STATUS` names its `status --json --show-secrets` document): each fault type
//! takes effect and is taken back, the abort condition stops a run, Ctrl-C rolls back, and the
//! money invariants fail a run when money is broken behind the platform's back.
//!
//! The experiments hurt the shared platform on purpose, so the tests here take turns
//! (`TURN`), and each ends with the platform healthy again (every run's rollbacks wait for it).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const STATUS_ENV: &str = "PAYTOOL_TEST_STATUS";
const DATABASE_ENV: &str = "PAYTOOL_TEST_DATABASE_URL";
/// A run of the bounded experiments here takes well under this.
const RUN_TIMEOUT_MS: u64 = 240_000;

static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn status_file() -> Value {
    let path = std::env::var(STATUS_ENV).unwrap_or_else(|_| {
        panic!("{STATUS_ENV} is not set: run the tests through scripts/test.sh, which starts a test platform")
    });
    serde_json::from_str(&std::fs::read_to_string(&path).expect("the status file")).expect("JSON")
}

fn home() -> String {
    status_file()["home"].as_str().expect("home").to_string()
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paytool"));
    command
        .arg("--home")
        .arg(home())
        .args(args)
        .stdin(Stdio::null());
    command
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The platform's live status (pids, states).
fn status() -> Value {
    let output = command(&["status", "--json"]).output().expect("status");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&output)))
}

fn pid_of(component: &str) -> u32 {
    status()["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|c| c["id"] == component)
        .and_then(|c| c["pid"].as_u64())
        .unwrap_or_else(|| panic!("{component} has a pid"))
        .try_into()
        .expect("a pid")
}

/// Whether a process is stopped (SIGSTOP): `T` in /proc/PID/stat.
fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next())
        })
        == Some('T')
}

/// An experiment written to a temporary file.
struct File {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn experiment(yaml: &str) -> File {
    let dir = tempfile::tempdir().expect("a directory");
    let path = dir.path().join("experiment.yaml");
    std::fs::write(&path, yaml).expect("written");
    File { _dir: dir, path }
}

fn run_json(file: &Path) -> (Output, Value) {
    let output = command(&["chaos", "run", file.to_str().expect("utf-8"), "--json"])
        .output()
        .expect("paytool chaos run");
    let journal = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("the journal is JSON ({e}): {}", text(&output)));
    (output, journal)
}

fn spawn_run(file: &Path) -> Child {
    command(&["chaos", "run", file.to_str().expect("utf-8"), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("paytool chaos run")
}

fn wait_child(child: Child) -> (Output, Value) {
    let deadline = Instant::now() + Duration::from_millis(RUN_TIMEOUT_MS);
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().expect("waited"));
    while !waiter.is_finished() {
        assert!(
            Instant::now() < deadline,
            "chaos run {pid} did not end in time"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let output = waiter.join().expect("joined");
    let journal = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("the journal is JSON ({e}): {}", text(&output)));
    (output, journal)
}

fn events<'a>(journal: &'a Value, kind: &str) -> Vec<&'a Value> {
    journal["method"]
        .as_array()
        .expect("method events")
        .iter()
        .filter(|e| e["event"] == kind)
        .collect()
}

fn invariants_hold(journal: &Value) -> bool {
    let checks = journal["invariants"]["checks"].as_array().expect("checks");
    checks.len() >= 7 && checks.iter().all(|c| c["ok"] == true)
}

#[test]
fn every_starter_experiment_validates_and_a_broken_file_is_refused_saying_where() {
    let output = command(&["chaos", "validate", "--json"])
        .output()
        .expect("validate");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let rows: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert!(rows.as_array().expect("rows").len() >= 12, "{rows}");

    let broken = experiment(
        "title: t\nsteady_state: {title: s, probes: [{type: ledger}]}\nmethod:\n  - fault: {type: pause, target: {component: kafka}, duration_s: 9999}\n",
    );
    let output = command(&["chaos", "validate", broken.path.to_str().expect("utf-8")])
        .output()
        .expect("validate");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        said.contains("experiment.yaml") && said.contains("/method/0/fault/duration_s"),
        "{said}"
    );

    // A run of a broken file injects nothing: it is refused before the platform is touched.
    let output = command(&["chaos", "run", broken.path.to_str().expect("utf-8")])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
}

#[test]
fn a_killed_service_is_restarted_and_the_experiment_passes_with_every_invariant_holding() {
    let _turn = turn();
    let before = pid_of("orchestrator");
    let file = experiment(
        "title: kill the orchestrator
steady_state: {title: healthy, probes: [{type: ready}, {type: payment}, {type: ledger}]}
load: {scenario: smoke, rate_per_s: 5, duration_s: 15, error_ratio_max: 0.5}
method:
  - fault: {type: kill, target: {component: orchestrator}}
  - wait: 5
  - probe: {type: payment, timeout_ms: 30000}
rollbacks: [{type: wait-ready, timeout_s: 60}]
",
    );
    let (output, journal) = run_json(&file.path);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(journal["verdict"], "passed", "{journal:#}");
    let injected = events(&journal, "injected");
    assert_eq!(injected.len(), 1, "{journal:#}");
    assert_eq!(injected[0]["target"], "orchestrator");
    assert!(injected[0]["detail"]
        .as_str()
        .unwrap_or("")
        .contains(&before.to_string()));
    let after = pid_of("orchestrator");
    assert_ne!(before, after, "the supervisor started a new orchestrator");
    assert!(invariants_hold(&journal), "{:#}", journal["invariants"]);
    assert!(
        journal["load"]["all"]["count"].as_u64().unwrap_or(0) >= 50,
        "{:#}",
        journal["load"]
    );
    assert!(!journal["timeline"].as_array().expect("timeline").is_empty());

    // The journal makes a report, and the report says the verdict.
    let path = journal_path(&output);
    let report = command(&["chaos", "report", &path])
        .output()
        .expect("report");
    assert_eq!(report.status.code(), Some(0), "{}", text(&report));
    let markdown = String::from_utf8_lossy(&report.stdout);
    assert!(
        markdown.contains("**Verdict: passed**") && markdown.contains("merchant_feed_once"),
        "{markdown}"
    );

    // A replay runs the experiment the journal holds, with its seed, and hits the same target.
    let replayed = command(&["chaos", "replay", &path, "--json"])
        .output()
        .expect("replay");
    assert_eq!(replayed.status.code(), Some(0), "{}", text(&replayed));
    let again: Value = serde_json::from_slice(&replayed.stdout).expect("a journal");
    assert_eq!(again["seed"], journal["seed"]);
    assert_eq!(again["experiment"], journal["experiment"]);
    assert_eq!(events(&again, "injected")[0]["target"], "orchestrator");
}

/// The path of the journal a `--json` run wrote: the newest in the installation.
fn journal_path(_output: &Output) -> String {
    let dir = Path::new(&home()).join("chaos/journals");
    let mut all: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("journals")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    all.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    all.last().expect("a journal").display().to_string()
}

#[test]
fn a_pause_stops_the_component_for_its_window_and_resumes_it_after() {
    let _turn = turn();
    let kafka = pid_of("kafka");
    let file = experiment(
        "title: pause kafka
steady_state: {title: healthy, probes: [{type: ledger}]}
method:
  - fault: {type: pause, target: {component: kafka}, duration_s: 6}
rollbacks: [{type: wait-ready, timeout_s: 60}]
settle_s: 60
",
    );
    let child = spawn_run(&file.path);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen_stopped = false;
    while Instant::now() < deadline && !seen_stopped {
        seen_stopped = stopped(kafka);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(seen_stopped, "kafka ({kafka}) was never seen stopped");
    let (output, journal) = wait_child(child);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(!stopped(kafka), "kafka was resumed");
    assert_eq!(pid_of("kafka"), kafka, "resumed, not restarted");
    let injected = events(&journal, "injected");
    let undone = events(&journal, "undone");
    assert_eq!((injected.len(), undone.len()), (1, 1), "{journal:#}");
    let window_ms =
        undone[0]["at_ms"].as_u64().unwrap_or(0) - injected[0]["at_ms"].as_u64().unwrap_or(0);
    assert!(
        (5_500..=9_000).contains(&window_ms),
        "the window lasted {window_ms} ms"
    );
}

#[test]
fn ctrl_c_during_a_fault_takes_it_back_runs_the_rollbacks_and_exits_130() {
    let _turn = turn();
    let orchestrator = pid_of("orchestrator");
    let file = experiment(
        "title: pause the orchestrator for long
steady_state: {title: healthy, probes: [{type: ledger}]}
method:
  - fault: {type: pause, target: {component: orchestrator}, duration_s: 120}
rollbacks: [{type: resume-all}, {type: wait-ready, timeout_s: 60}]
",
    );
    let child = spawn_run(&file.path);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !stopped(orchestrator) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(stopped(orchestrator), "the orchestrator was paused");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let started = Instant::now();
    let (output, journal) = wait_child(child);
    assert_eq!(output.status.code(), Some(130), "{}", text(&output));
    assert!(
        started.elapsed() < Duration::from_secs(70),
        "it stopped without waiting out the fault"
    );
    assert_eq!(journal["verdict"], "interrupted");
    assert!(!stopped(orchestrator), "the orchestrator was resumed");
    assert_eq!(events(&journal, "rollback").len(), 2, "{journal:#}");
}

#[test]
fn an_error_ratio_above_the_abort_bound_aborts_the_run_and_rolls_back() {
    let _turn = turn();
    let orchestrator = pid_of("orchestrator");
    let file = experiment(
        "title: freeze the orchestrator under load
steady_state: {title: healthy, probes: [{type: ready}, {type: ledger}]}
load: {scenario: smoke, rate_per_s: 10, duration_s: 60, error_ratio_max: 0.01}
abort: {error_ratio_max: 0.2, window_s: 3, for_s: 2}
method:
  - wait: 2
  - fault: {type: pause, target: {component: orchestrator}, duration_s: 50}
rollbacks: [{type: resume-all}, {type: wait-ready, timeout_s: 60}]
",
    );
    let (output, journal) = run_json(&file.path);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!(journal["verdict"], "aborted", "{journal:#}");
    let injected = events(&journal, "injected")[0]["at_ms"]
        .as_u64()
        .unwrap_or(0);
    let aborted = events(&journal, "aborted");
    assert_eq!(aborted.len(), 1, "{journal:#}");
    let after_ms = aborted[0]["at_ms"].as_u64().unwrap_or(0) - injected;
    assert!(after_ms < 30_000, "aborted {after_ms} ms into a 50 s fault");
    assert!(!stopped(orchestrator), "the orchestrator was resumed");
    assert!(invariants_hold(&journal), "{:#}", journal["invariants"]);
}

#[test]
fn money_changed_behind_the_platforms_back_fails_the_run_with_exit_8_and_the_evidence() {
    let _turn = turn();
    // A run whose probe pays once, so the merchant side has a payment to tamper with.
    let quick = experiment(
        "title: nothing but a payment
steady_state: {title: healthy, probes: [{type: payment}, {type: ledger}]}
method:
  - wait: 1
settle_s: 30
",
    );
    let (output, journal) = run_json(&quick.path);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(journal["verdict"], "passed");

    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let admin = std::env::var(DATABASE_ENV).expect("PAYTOOL_TEST_DATABASE_URL");
    let merchant_db = admin
        .rsplit_once('/')
        .map(|(base, _)| format!("{base}/merchant_api"))
        .expect("a URL");
    let db = runtime
        .block_on(sqlx::PgPool::connect(&merchant_db))
        .expect("merchant-api's database");
    let tampered: uuid::Uuid = runtime
        .block_on(
            sqlx::query_scalar(
                "UPDATE transactions SET fee_value = fee_value + 1
                 WHERE id = (SELECT id FROM transactions WHERE kind = 'payment' AND fee_value + 1 <= amount_value ORDER BY created_at DESC LIMIT 1)
                 RETURNING id",
            )
            .fetch_one(&db),
        )
        .expect("a payment to tamper with");
    let settle = experiment(
        "title: nothing but a check
steady_state: {title: healthy, probes: [{type: ledger}]}
method:
  - wait: 1
settle_s: 3
",
    );
    let (output, journal) = run_json(&settle.path);
    // Put it back before asserting, so that a failure here leaves the platform whole.
    runtime
        .block_on(
            sqlx::query("UPDATE transactions SET fee_value = fee_value - 1 WHERE id = $1")
                .bind(tampered)
                .execute(&db),
        )
        .expect("restored");
    assert_eq!(output.status.code(), Some(8), "{}", text(&output));
    assert_eq!(journal["verdict"], "violated");
    let failed: Vec<&Value> = journal["invariants"]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["ok"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0]["name"], "merchant_balances_replayed");
    assert!(
        failed[0]["evidence"][0]
            .as_str()
            .unwrap_or("")
            .contains("the ledger holds"),
        "{failed:#?}"
    );

    let (output, journal) = run_json(&quick.path);
    assert_eq!(
        output.status.code(),
        Some(0),
        "whole again: {}",
        text(&output)
    );
    assert!(invariants_hold(&journal));
}

/// The pids of the stress-ng processes running now.
fn stress_ng() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim().starts_with("stress-ng"))
        })
        .collect()
}

#[test]
fn cpu_and_memory_pressure_run_for_their_window_and_stop_after_it() {
    let _turn = turn();
    assert!(stress_ng().is_empty(), "no stress-ng before the run");
    let file = experiment(
        "title: pressure
steady_state: {title: healthy, probes: [{type: ledger}]}
method:
  - fault: {type: cpu-pressure, workers: 1, load_percent: 50, duration_s: 6}
  - fault: {type: memory-pressure, megabytes: 64, duration_s: 6}
  - probe: {type: payment, timeout_ms: 20000}
settle_s: 30
",
    );
    let child = spawn_run(&file.path);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = 0;
    while Instant::now() < deadline && seen < 2 {
        seen = seen.max(stress_ng().len());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Each stress-ng is a parent and its workers: at least one process per fault.
    assert!(
        seen >= 2,
        "stress-ng ran during the window ({seen} processes seen)"
    );
    let (output, journal) = wait_child(child);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(events(&journal, "undone").len(), 2, "{journal:#}");
    let gone = Instant::now() + Duration::from_secs(5);
    while !stress_ng().is_empty() && Instant::now() < gone {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(stress_ng().is_empty(), "stress-ng stopped with its window");
}
