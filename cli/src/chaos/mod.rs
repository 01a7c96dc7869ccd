//! `paytool chaos`: declarative chaos experiments on the running platform, with the money
//! checked after every one (docs/chaos.md).
//!
//! A run: pre-flight (the requirements, every target, every probe once: a failure injects
//! nothing) → the load, if any → the method (faults, waits, probes; the abort condition watched
//! every second) → every fault taken back and the rollbacks, always (also after an abort or
//! Ctrl-C) → the steady state again → the invariants → the journal.

pub mod auto;
pub mod chaos_mesh;
pub mod chart;
pub mod experiment;
pub mod failpoints;
pub mod faults;
pub mod invariants;
pub mod journal;
pub mod probes;

use crate::args::{ChaosCommand, ChaosRunArgs};
use crate::perf::load::{scenario, Tapped};
use crate::runtime::home::Home;
use crate::support::exit::{fail, Code};
use crate::support::ui::Ui;
use experiment::{Experiment, Fault, Load, Probe, Rollback, Step};
use faults::Undo;
use journal::{Event, Journal, Second, Verdict};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Answers of the load buffered for the live watch; more are dropped from the watch (counted
/// in the load's own report all the same).
const TAP_CAPACITY: usize = 65_536;
/// The load runs this long before the first fault, so that the abort watch has a baseline.
const LOAD_LEAD_MS: u64 = 3_000;
/// How often the method's loop looks at the abort flag, Ctrl-C and fault windows.
const TICK_MS: u64 = 100;
/// Longest the load may take to register its users before the run gives up on it.
const LOAD_SETUP_TIMEOUT_MS: u64 = 120_000;

pub async fn run(home_dir: &Path, project: &Path, command: ChaosCommand) -> anyhow::Result<i32> {
    match command {
        ChaosCommand::List { json } => list(project, json),
        ChaosCommand::Validate { files, json } => validate(project, &files, json),
        ChaosCommand::Auto(args) => {
            let home = crate::runtime::home::existing(home_dir, project)?;
            let options = auto::AutoOptions {
                budget: args.budget,
                planner: args.planner,
                seed: args.seed.unwrap_or_else(rand::random),
                llm: args.llm_url.map(|url| auto::planner::LlmEndpoint {
                    url,
                    model: args.llm_model,
                }),
                quiet: args.json,
                armed: Vec::new(),
            };
            let (report, path) = auto::run(&home, project, &options).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                auto::print(&report, &path);
            }
            Ok(0)
        }
        ChaosCommand::Try {
            fault,
            target,
            intensity,
            seed,
            json,
        } => {
            let home = crate::runtime::home::existing(home_dir, project)?;
            let action = auto::space::Action {
                fault,
                target,
                intensity,
            };
            auto::space::fault(&action).map_err(|reason| fail(Code::Usage, reason))?;
            let seed = seed.unwrap_or_else(rand::random);
            let (verdict, judgement, journal) = auto::run_action(
                &home,
                project,
                &action,
                seed,
                &mut auto::baseline(&home).await,
            )
            .await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "action": action, "seed": seed, "verdict": verdict,
                        "judgement": judgement, "journal": journal,
                    }))?
                );
            } else {
                println!(
                    "{action}: run {verdict}; {}",
                    if judgement.broken.is_empty() {
                        format!("nothing broke (severity {:.2})", judgement.severity)
                    } else {
                        format!(
                            "{} on {}: {}",
                            auto::judge::names(&judgement.broken),
                            judgement.component,
                            judgement.mechanism.join("; ")
                        )
                    }
                );
                println!("journal: {}", journal.display());
            }
            Ok(if judgement.broken.is_empty() { 0 } else { 1 })
        }
        ChaosCommand::Failpoint {
            service,
            name,
            actions,
            instance,
            json,
        } => {
            let home = crate::runtime::home::existing(home_dir, project)?;
            let component =
                crate::runtime::components::services::Service::from(service).component_name();
            let instances: Vec<u8> = match instance {
                Some(instance) => vec![instance],
                None => (0..component.instances(&home)).collect(),
            };
            let admin = failpoints::Admin::new(&home)
                .await
                .map_err(|error| fail(Code::Failed, format!("{error:#}")))?;
            let mut answers = Vec::new();
            for instance in instances {
                let port = failpoints::port_of(&home, component, instance)?;
                let id = crate::runtime::components::instance_id(component, instance);
                let answer = match (&name, actions.as_deref()) {
                    (Some(name), Some("off")) => admin
                        .remove(port, name)
                        .await
                        .map(|()| serde_json::json!({ "name": name, "actions": null })),
                    (Some(name), Some(actions)) => admin.set(port, name, actions).await,
                    (Some(name), None) => admin.list(port).await.map(|all| {
                        all.as_array()
                            .into_iter()
                            .flatten()
                            .find(|p| p["name"] == name.as_str())
                            .cloned()
                            .unwrap_or_default()
                    }),
                    (None, _) => admin.list(port).await,
                }
                .map_err(|error| fail(Code::Failed, format!("{id}: {error:#}")))?;
                answers.push(serde_json::json!({ "instance": id, "failpoints": answer }));
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&answers)?);
            } else {
                for answer in &answers {
                    let points = match &answer["failpoints"] {
                        serde_json::Value::Array(all) => all.clone(),
                        one => vec![one.clone()],
                    };
                    for point in points {
                        println!(
                            "{:<16} {:<44} {}",
                            answer["instance"].as_str().unwrap_or_default(),
                            point["name"].as_str().unwrap_or_default(),
                            point["actions"].as_str().unwrap_or("off")
                        );
                    }
                }
            }
            Ok(0)
        }
        ChaosCommand::Prove {
            runs,
            weakness,
            seed,
            json,
        } => {
            let home = crate::runtime::home::existing(home_dir, project)?;
            let chosen: Vec<&auto::weaknesses::Weakness> = auto::weaknesses::WEAKNESSES
                .iter()
                .filter(|w| weakness.as_deref().is_none_or(|name| w.point == name))
                .collect();
            if chosen.is_empty() {
                return Err(fail(
                    Code::Usage,
                    format!(
                        "no seeded weakness {}; they are {}",
                        weakness.unwrap_or_default(),
                        auto::weaknesses::WEAKNESSES
                            .iter()
                            .map(|w| w.point)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            let seed = seed.unwrap_or_else(rand::random);
            let ui = Ui::new(json);
            let mut proofs = Vec::new();
            for weakness in chosen {
                let line = ui.step(weakness.point);
                let proof = auto::weaknesses::prove(&home, project, weakness, runs, seed, |what| {
                    line.working(what)
                })
                .await?;
                line.done(&format!(
                    "on: found {}/{runs}; off: {}/{runs}",
                    proof.found_on, proof.found_off
                ));
                proofs.push(proof);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&proofs)?);
            }
            Ok(0)
        }
        ChaosCommand::Bench(args) => {
            let home = crate::runtime::home::existing(home_dir, project)?;
            let options = auto::bench::BenchOptions {
                planners: args.planners,
                budgets: args.budgets,
                subsets: args.subsets,
                seed: args.seed.unwrap_or_else(rand::random),
                llm: args.llm_url.map(|url| auto::planner::LlmEndpoint {
                    url,
                    model: args.llm_model,
                }),
                quiet: args.json,
            };
            let (report, path) = auto::bench::run(&home, project, &options).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", auto::bench::markdown(&report));
                println!("report: {}", path.display());
            }
            Ok(0)
        }
        ChaosCommand::Render {
            experiment,
            namespace,
            json,
        } => {
            let loaded = experiment::resolve(project, &experiment)?;
            let out = chaos_mesh::render(
                &loaded.name,
                &loaded.experiment,
                chaos_mesh::Layout::Single(&namespace),
            );
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "workflow": out.workflow, "skipped": out.skipped,
                    }))?
                );
            } else {
                for skipped in &out.skipped {
                    println!("# not rendered: {skipped}");
                }
                print!("{}", serde_yaml::to_string(&out.workflow)?);
            }
            Ok(0)
        }
        ChaosCommand::Schema => {
            println!("{}", serde_json::to_string_pretty(&experiment::schema())?);
            Ok(0)
        }
        ChaosCommand::Run(args) => {
            let home = crate::runtime::home::existing(home_dir, project)?;
            let loaded = experiment::resolve(project, &args.experiment)?;
            let seed = args.seed.unwrap_or_else(rand::random);
            execute(&home, project, &loaded.name, loaded.experiment, seed, &args).await
        }
        ChaosCommand::Replay(args) => {
            let home = crate::runtime::home::existing(home_dir, project)?;
            let journal = journal::read(&args.journal)?;
            let run_args = ChaosRunArgs {
                experiment: journal.name.clone(),
                seed: Some(journal.seed),
                json: args.json,
            };
            execute(
                &home,
                project,
                &journal.name,
                journal.experiment,
                journal.seed,
                &run_args,
            )
            .await
        }
        ChaosCommand::Report { journal, json } => {
            let journal_path = journal;
            let journal = journal::read(&journal_path)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&journal)?);
            } else {
                let png = journal_path.with_extension("png");
                let image = png
                    .exists()
                    .then(|| png.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .flatten();
                print!("{}", journal::markdown(&journal, image.as_deref()));
            }
            Ok(journal.verdict.exit_code())
        }
    }
}

fn list(project: &Path, json: bool) -> anyhow::Result<i32> {
    let all = experiment::load_all(&project.join(experiment::EXPERIMENTS_DIR))
        .map_err(|e| fail(Code::Usage, format!("{e:#}")))?;
    if json {
        let rows: Vec<serde_json::Value> = all
            .iter()
            .map(|l| {
                serde_json::json!({
                    "name": l.name,
                    "title": l.experiment.title,
                    "tags": l.experiment.tags,
                    "ci": l.experiment.ci,
                    "requires": l.experiment.requires,
                    "path": l.path,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for l in &all {
            println!(
                "{:<38} {:<3} {}",
                l.name,
                if l.experiment.ci { "ci" } else { "" },
                l.experiment.title
            );
        }
    }
    Ok(0)
}

fn validate(project: &Path, files: &[std::path::PathBuf], json: bool) -> anyhow::Result<i32> {
    let paths: Vec<std::path::PathBuf> = if files.is_empty() {
        experiment::paths(&project.join(experiment::EXPERIMENTS_DIR))
            .map_err(|e| fail(Code::Usage, format!("{e:#}")))?
    } else {
        files.to_vec()
    };
    let results: Vec<(String, Result<(), String>)> = paths
        .iter()
        .map(|path| {
            (
                path.display().to_string(),
                experiment::load(path)
                    .map(|_| ())
                    .map_err(|e| format!("{e:#}")),
            )
        })
        .collect();
    let bad = results.iter().filter(|(_, r)| r.is_err()).count();
    if json {
        let rows: Vec<serde_json::Value> = results
            .iter()
            .map(|(path, r)| {
                serde_json::json!({ "path": path, "ok": r.is_ok(), "error": r.as_ref().err() })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for (path, result) in &results {
            match result {
                Ok(()) => println!("✔ {path}"),
                Err(error) => println!("✘ {error}"),
            }
        }
        println!("{} valid, {bad} invalid", results.len() - bad);
    }
    Ok(if bad == 0 { 0 } else { Code::Usage as i32 })
}

/// The state one run shares between the method and the watches.
struct Run {
    home: Home,
    started: Instant,
    events: Mutex<Vec<Event>>,
    /// Fault windows still open: what undoes each, once.
    open: Mutex<Vec<(Option<String>, Undo)>>,
    abort: Mutex<Option<String>>,
    interrupted: AtomicBool,
}

impl Run {
    fn at_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn push(&self, event: Event) {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(event);
    }

    fn stopping(&self) -> Option<Verdict> {
        if self.interrupted.load(Ordering::Relaxed) {
            return Some(Verdict::Interrupted);
        }
        self.abort
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
            .then_some(Verdict::Aborted)
    }

    /// Returns once the run is stopping (an abort or Ctrl-C).
    async fn until_stopping(&self) {
        while self.stopping().is_none() {
            tokio::time::sleep(Duration::from_millis(TICK_MS)).await;
        }
    }

    /// Takes back one open window (or every one): idempotent, recorded once.
    async fn undo(&self, which: Option<usize>) {
        let taken: Vec<(Option<String>, Undo)> = {
            let mut open = self
                .open
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match which {
                Some(i) if i < open.len() => {
                    vec![std::mem::replace(&mut open[i], (None, Undo::Nothing))]
                }
                Some(_) => Vec::new(),
                None => open
                    .iter_mut()
                    .map(|w| std::mem::replace(w, (None, Undo::Nothing)))
                    .collect(),
            }
        };
        for (target, undo) in taken {
            if undo == Undo::Nothing {
                continue;
            }
            let detail = match faults::undo(&self.home, &undo).await {
                Ok(()) => format!("{undo:?}"),
                Err(error) => format!("{undo:?} failed: {error:#}"),
            };
            self.push(Event::Undone {
                at_ms: self.at_ms(),
                target,
                detail: detail.to_lowercase(),
            });
        }
    }
}

/// Runs one experiment and writes its journal; the exit code is the verdict's.
pub async fn execute(
    home: &Home,
    project: &Path,
    name: &str,
    experiment: Experiment,
    seed: u64,
    args: &ChaosRunArgs,
) -> anyhow::Result<i32> {
    let (journal, path) = perform(home, project, name, experiment, seed, args.json).await?;
    print_outcome(&journal, &path, args.json)?;
    Ok(journal.verdict.exit_code())
}

/// One run, start to end, its journal, report and timeline written; `quiet` shows no steps.
/// `paytool chaos run` prints what it answers; `paytool chaos auto` judges it.
pub async fn perform(
    home: &Home,
    project: &Path,
    name: &str,
    experiment: Experiment,
    seed: u64,
    quiet: bool,
) -> anyhow::Result<(Journal, PathBuf)> {
    crate::runtime::state::require_running(home)?;
    let ui = Ui::new(quiet);
    let started_at = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let run = Arc::new(Run {
        home: home.clone(),
        started: Instant::now(),
        events: Mutex::new(Vec::new()),
        open: Mutex::new(Vec::new()),
        abort: Mutex::new(None),
        interrupted: AtomicBool::new(false),
    });
    let mut rng = StdRng::seed_from_u64(seed);
    let probes = probes::Probes::new(home);

    // Ctrl-C from here on stops the faults and rolls back; it does not kill the run.
    let ctrl_c = {
        let run = Arc::clone(&run);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                run.interrupted.store(true, Ordering::Relaxed);
            }
        })
    };

    let line = ui.step("pre-flight");
    let (preflight, problems) = preflight(home, project, &experiment, &probes, &mut rng).await;
    let mut journal = Journal {
        format: journal::FORMAT,
        name: name.to_string(),
        title: experiment.title.clone(),
        experiment: experiment.clone(),
        seed,
        started_at,
        duration_ms: 0,
        verdict: Verdict::Passed,
        summary: String::new(),
        preflight,
        method: Vec::new(),
        steady_state_after: Vec::new(),
        load: None,
        timeline: Vec::new(),
        invariants: None,
        load_started_ms: None,
    };
    if !problems.is_empty() {
        line.failed(&problems.join("; "));
        journal.verdict = Verdict::PreflightFailed;
        journal.summary = format!("nothing was injected: {}", problems.join("; "));
        ctrl_c.abort();
        return finish(home, journal, run.started);
    }
    line.done(&format!(
        "{} probes hold, every target exists",
        journal.preflight.len()
    ));

    // The load, and the live watch over its answers.
    let timeline = Arc::new(Mutex::new(Vec::<Second>::new()));
    let load = match &experiment.load {
        Some(spec) => {
            let line = ui.step("load");
            line.working(&format!("registering users for {}", spec.scenario));
            match start_load(home, project, spec, &experiment, &run, &timeline).await {
                Ok(handle) => {
                    journal.load_started_ms = Some(run.at_ms());
                    line.done(&format!(
                        "{} at {}/s for {} s",
                        spec.scenario, spec.rate_per_s, spec.duration_s
                    ));
                    Some(handle)
                }
                Err(error) => {
                    line.failed(&format!("{error:#}"));
                    journal.verdict = Verdict::PreflightFailed;
                    journal.summary =
                        format!("the load could not start, nothing was injected: {error:#}");
                    ctrl_c.abort();
                    return finish(home, journal, run.started);
                }
            }
        }
        None => None,
    };
    if load.is_some() {
        tokio::time::sleep(Duration::from_millis(LOAD_LEAD_MS)).await;
    }

    // The method.
    let line = ui.step("method");
    let mut method_failed: Vec<String> = Vec::new();
    let mut window_tasks = Vec::new();
    for (index, step) in experiment.method.iter().enumerate() {
        if run.stopping().is_some() {
            break;
        }
        match step {
            Step::Fault(fault) => {
                line.working(&format!("step {}: {}", index + 1, fault_name(fault)));
                match faults::inject(home, fault, &mut rng).await {
                    Ok(injected) => {
                        run.push(Event::injected(run.at_ms(), fault, &injected));
                        if injected.undo != Undo::Nothing {
                            let slot = {
                                let mut open = run
                                    .open
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                                open.push((injected.subject(), injected.undo.clone()));
                                open.len() - 1
                            };
                            let run = Arc::clone(&run);
                            let duration = Duration::from_secs(u64::from(fault.duration_s()));
                            window_tasks.push(tokio::spawn(async move {
                                tokio::time::sleep(duration).await;
                                run.undo(Some(slot)).await;
                            }));
                        }
                    }
                    Err(error) => {
                        let detail = format!("{}: {error:#}", fault_name(fault));
                        run.push(Event::Failed {
                            at_ms: run.at_ms(),
                            detail: detail.clone(),
                        });
                        method_failed.push(detail);
                        break;
                    }
                }
            }
            Step::Wait(seconds) => {
                line.working(&format!("step {}: waiting {seconds} s", index + 1));
                run.push(Event::Wait {
                    at_ms: run.at_ms(),
                    seconds: *seconds,
                });
                let until = Instant::now() + Duration::from_secs(u64::from(*seconds));
                while Instant::now() < until && run.stopping().is_none() {
                    tokio::time::sleep(Duration::from_millis(TICK_MS)).await;
                }
            }
            Step::Probe(probe) => {
                line.working(&format!("step {}: probe {}", index + 1, probe.name()));
                // An abort or Ctrl-C does not wait for a probe (up to its own bound, a minute):
                // the faults are taken back at once.
                let outcome = tokio::select! {
                    outcome = probes.run(probe) => outcome,
                    () = run.until_stopping() => break,
                };
                if !outcome.ok {
                    method_failed.push(format!("{}: {}", outcome.probe, outcome.detail));
                }
                run.push(Event::Probe {
                    at_ms: run.at_ms(),
                    outcome,
                });
            }
        }
    }
    // Faults with a duration stay on for it, unless the run is stopping.
    for task in window_tasks {
        let mut task = task;
        loop {
            if run.stopping().is_some() {
                task.abort();
                break;
            }
            if tokio::time::timeout(Duration::from_millis(TICK_MS), &mut task)
                .await
                .is_ok()
            {
                break;
            }
        }
    }
    let stopped = run.stopping();
    match stopped {
        Some(verdict) => line.failed(verdict.as_str()),
        None if method_failed.is_empty() => line.done("every step ran"),
        None => line.failed(&method_failed.join("; ")),
    }

    // Rollbacks: always, whatever happened above.
    let line = ui.step("rollback");
    run.undo(None).await;
    let mut rollback_failed = Vec::new();
    for rollback in &experiment.rollbacks {
        let (ok, detail) = match rollback {
            Rollback::ResumeAll => (
                true,
                format!("SIGCONT to {} groups", faults::resume_all(home)),
            ),
            Rollback::ResetNetwork => match faults::reset_network(home).await {
                Ok(detail) => (true, detail),
                Err(error) => (false, format!("{error:#}")),
            },
            Rollback::WaitReady { timeout_s } => {
                let outcome = probes
                    .run(&Probe::Ready {
                        components: Vec::new(),
                        timeout_s: *timeout_s,
                    })
                    .await;
                (outcome.ok, outcome.detail)
            }
        };
        if !ok {
            rollback_failed.push(detail.clone());
        }
        run.push(Event::Rollback {
            at_ms: run.at_ms(),
            rollback: serde_json::to_value(rollback).unwrap_or_default(),
            ok,
            detail,
        });
    }
    if rollback_failed.is_empty() {
        line.done(&format!("{} rollbacks", experiment.rollbacks.len()));
    } else {
        line.failed(&rollback_failed.join("; "));
    }

    // The load: to its end when the run goes on, stopped when it does not.
    let mut load_breaches = Vec::new();
    if let Some(handle) = load {
        if stopped.is_some() {
            handle.abort();
        } else {
            let line = ui.step("load");
            line.working("waiting for the load to end");
            match handle.await {
                Ok(Ok(report)) => {
                    if let Some(spec) = &experiment.load {
                        load_breaches = load_deviations(spec, &report);
                    }
                    journal.load = Journal::load_report(&report);
                    line.done(&format!(
                        "{} requests, {} failed",
                        report.all.count, report.all.errors
                    ));
                }
                Ok(Err(error)) => load_breaches.push(format!("the load failed: {error:#}")),
                Err(error) => load_breaches.push(format!("the load failed: {error}")),
            }
        }
    }
    journal.timeline = timeline
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();

    // The steady state again, then the money.
    let mut deviations = Vec::new();
    if stopped != Some(Verdict::Interrupted) {
        let line = ui.step("steady state");
        for probe in &experiment.steady_state.probes {
            let outcome = probes.run(probe).await;
            if !outcome.ok {
                deviations.push(format!("{}: {}", outcome.probe, outcome.detail));
            }
            journal.steady_state_after.push(outcome);
        }
        if deviations.is_empty() {
            line.done(&experiment.steady_state.title);
        } else {
            line.failed(&deviations.join("; "));
        }
        let line = ui.step("invariants");
        line.working("waiting for every payment and event to settle");
        match invariants::check(home, u64::from(experiment.settle_s) * 1000).await {
            Ok(report) => {
                if report.ok {
                    line.done(&format!("{} hold", report.checks.len()));
                } else {
                    line.failed("VIOLATED");
                }
                journal.invariants = Some(report);
            }
            Err(error) => {
                line.failed(&format!("{error:#}"));
                deviations.push(format!("the invariants could not be checked: {error:#}"));
            }
        }
    }
    ctrl_c.abort();
    journal.method = run
        .events
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let violated: Vec<String> = journal
        .invariants
        .iter()
        .flat_map(|r| r.checks.iter())
        .filter(|c| !c.ok)
        .map(invariants::Check::summary)
        .collect();
    let abort_reason = run
        .abort
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    (journal.verdict, journal.summary) = if !violated.is_empty() {
        (Verdict::Violated, violated.join("; "))
    } else if stopped == Some(Verdict::Interrupted) {
        (
            Verdict::Interrupted,
            "interrupted: faults taken back, rollbacks run".into(),
        )
    } else if stopped == Some(Verdict::Aborted) {
        (
            Verdict::Aborted,
            format!("aborted: {}", abort_reason.unwrap_or_default()),
        )
    } else {
        let all: Vec<String> = method_failed
            .into_iter()
            .chain(rollback_failed)
            .chain(load_breaches)
            .chain(deviations)
            .collect();
        if all.is_empty() {
            (
                Verdict::Passed,
                "the steady state held, every invariant holds".into(),
            )
        } else {
            (Verdict::Deviated, all.join("; "))
        }
    };
    finish(home, journal, run.started)
}

fn fault_name(fault: &Fault) -> String {
    match (fault.target(), fault.route()) {
        (Some(target), _) => format!(
            "{} {}{}",
            fault.kind(),
            target.component.as_str(),
            target.instance.map(|i| format!(".{i}")).unwrap_or_default()
        ),
        (None, Some((from, to))) => {
            format!("{} {}→{}", fault.kind(), from.as_str(), to.as_str())
        }
        (None, None) => fault.kind(),
    }
}

fn finish(
    home: &Home,
    mut journal: Journal,
    started: Instant,
) -> anyhow::Result<(Journal, PathBuf)> {
    journal.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let path = journal::write(home, &journal)?;
    // The report and its timeline beside the journal; a chart that cannot be drawn (no font)
    // is said, not fatal: the journal holds every figure.
    let png = path.with_extension("png");
    let image = match chart::draw(&png, &journal) {
        Ok(()) => png.file_name().map(|n| n.to_string_lossy().into_owned()),
        Err(error) => {
            eprintln!("paytool: the timeline was not drawn: {error:#}");
            None
        }
    };
    std::fs::write(
        path.with_extension("md"),
        journal::markdown(&journal, image.as_deref()),
    )?;
    Ok((journal, path))
}

fn print_outcome(journal: &Journal, path: &Path, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&journal)?);
    } else {
        println!(
            "{}: {} — {}\njournal: {}\nreport:  {}",
            journal.name,
            journal.verdict.as_str().to_uppercase(),
            journal.summary,
            path.display(),
            path.with_extension("md").display()
        );
    }
    Ok(())
}

async fn preflight(
    home: &Home,
    project: &Path,
    experiment: &Experiment,
    probes: &probes::Probes,
    rng: &mut StdRng,
) -> (Vec<probes::Outcome>, Vec<String>) {
    let mut problems = Vec::new();
    if experiment.requires.ha && !home.marker.ha {
        problems.push("needs PostgreSQL in HA: an installation made with `paytool up --ha`".into());
    }
    let network = experiment
        .method
        .iter()
        .any(|step| matches!(step, Step::Fault(fault) if fault.route().is_some()));
    if (experiment.requires.chaos || network) && !home.marker.chaos {
        problems.push(
            "needs the services' calls through Toxiproxy: an installation made with `paytool up --chaos`"
                .into(),
        );
    } else if network {
        // Every route the method breaks must be there to break (Toxiproxy up, its proxies made).
        match crate::runtime::components::toxiproxy::Api::new(home) {
            Ok(api) => {
                for step in &experiment.method {
                    if let Step::Fault(fault) = step {
                        let route = match faults::route_of(home, fault) {
                            Ok(route) => route,
                            Err(_) if fault.route().is_none() => continue,
                            Err(error) => {
                                problems.push(format!("{error:#}"));
                                continue;
                            }
                        };
                        match api.proxy(route.name).await {
                            Ok(proxy) if proxy["enabled"] == true => {}
                            Ok(_) => problems.push(format!(
                                "{} is disabled in Toxiproxy already (a run that did not end? `paytool chaos` rollback `reset-network`)",
                                route.name
                            )),
                            Err(error) => problems.push(format!("{error:#}")),
                        }
                    }
                }
            }
            Err(error) => problems.push(format!("{error:#}")),
        }
    }
    let replicas = crate::runtime::components::services::Service::ALL
        .iter()
        .map(|s| s.component_name().instances(home))
        .min()
        .unwrap_or(1);
    if replicas < experiment.requires.replicas {
        problems.push(format!(
            "needs {} instances of each service, this installation runs {replicas}: `paytool up --replicas {}`",
            experiment.requires.replicas, experiment.requires.replicas
        ));
    }
    if let Some(load) = &experiment.load {
        match scenario::load(&project.join(crate::perf::load::SCENARIOS)) {
            Ok(all) if all.iter().any(|s| s.name == load.scenario) => {}
            Ok(_) => problems.push(format!("no load scenario {}", load.scenario)),
            Err(error) => problems.push(format!("{error:#}")),
        }
    }
    // Every target must exist now; the instance chosen here is not the one the method will
    // hit (a seeded choice made again there), only proof that one exists.
    let mut check_rng = StdRng::from_rng(&mut *rng).unwrap_or_else(|_| StdRng::seed_from_u64(0));
    for step in &experiment.method {
        if let Step::Fault(fault) = step {
            if let Some(target) = fault.target() {
                if let Err(error) = faults::resolve(home, target, &mut check_rng) {
                    problems.push(format!("{error:#}"));
                }
            }
            if let Err(error) = faults::ready_to_inject(home, fault).await {
                problems.push(format!("{error:#}"));
            }
        }
    }
    let mut outcomes = Vec::new();
    let method_probes = experiment.method.iter().filter_map(|s| match s {
        Step::Probe(p) => Some(p),
        _ => None,
    });
    for probe in experiment.steady_state.probes.iter().chain(method_probes) {
        let outcome = probes.run(probe).await;
        if !outcome.ok {
            problems.push(format!("{}: {}", outcome.probe, outcome.detail));
        }
        outcomes.push(outcome);
    }
    (outcomes, problems)
}

type LoadHandle = tokio::task::JoinHandle<anyhow::Result<crate::perf::load::Report>>;

/// Registers the load's users, then drives it in a task; its answers feed the timeline and the
/// abort watch.
async fn start_load(
    home: &Home,
    project: &Path,
    spec: &Load,
    experiment: &Experiment,
    run: &Arc<Run>,
    timeline: &Arc<Mutex<Vec<Second>>>,
) -> anyhow::Result<LoadHandle> {
    let scenario = scenario::load(&project.join(crate::perf::load::SCENARIOS))?
        .into_iter()
        .find(|s| s.name == spec.scenario)
        .ok_or_else(|| anyhow::anyhow!("no load scenario {}", spec.scenario))?
        .with_overrides(Some(spec.rate_per_s), Some(spec.duration_s))?;
    let (tap, mut answers) = tokio::sync::mpsc::channel::<Tapped>(TAP_CAPACITY);
    let platform = tokio::time::timeout(
        Duration::from_millis(LOAD_SETUP_TIMEOUT_MS),
        crate::perf::load::set_up(home, &scenario),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!("registering the load's users took over {LOAD_SETUP_TIMEOUT_MS} ms")
    })??;
    let platform = Arc::new(platform.tapped(tap));
    // The watch: answers into one-second buckets; the abort condition over the last seconds.
    {
        let run = Arc::clone(run);
        let timeline = Arc::clone(timeline);
        let abort = experiment.abort.clone();
        let origin = run.started;
        tokio::spawn(async move {
            let mut latencies: Vec<crate::perf::stats::Latencies> = Vec::new();
            let mut breached_s = 0u32;
            let mut last_judged_s = 0u64;
            while let Some(answer) = answers.recv().await {
                let second = answer.at.saturating_duration_since(origin).as_secs();
                let mut seconds = timeline
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                while seconds.len() as u64 <= second {
                    let at_s = seconds.len() as u64;
                    seconds.push(Second {
                        at_s,
                        ..Second::default()
                    });
                    latencies.push(crate::perf::stats::Latencies::default());
                }
                let bucket = &mut seconds[second as usize];
                bucket.requests += 1;
                bucket.errors += u64::from(!answer.ok);
                latencies[second as usize].record_us(answer.latency_us);
                bucket.p99_ms = latencies[second as usize].percentile_ms(0.99);
                // Judge each completed second once.
                if let Some(abort) = &abort {
                    if second > last_judged_s && second >= 1 {
                        last_judged_s = second;
                        let window = u64::from(abort.window_s);
                        let from = second.saturating_sub(window);
                        let (requests, errors) = seconds[from as usize..second as usize]
                            .iter()
                            .fold((0, 0), |(r, e), s| (r + s.requests, e + s.errors));
                        let ratio = if requests == 0 {
                            0.0
                        } else {
                            errors as f64 / requests as f64
                        };
                        if ratio > abort.error_ratio_max {
                            breached_s += 1;
                        } else {
                            breached_s = 0;
                        }
                        if breached_s >= abort.for_s {
                            let reason = format!(
                                "error ratio {ratio:.3} over the last {window} s, above {} for {} s",
                                abort.error_ratio_max, abort.for_s
                            );
                            let mut slot = run
                                .abort
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            if slot.is_none() {
                                run.push(Event::Aborted {
                                    at_ms: run.at_ms(),
                                    reason: reason.clone(),
                                });
                                *slot = Some(reason);
                            }
                        }
                    }
                }
            }
        });
    }
    let quiet = Ui::new(true);
    Ok(tokio::spawn(async move {
        crate::perf::load::drive(&platform, &scenario, &quiet).await
    }))
}

/// The load's hypothesis: the error ratio and the p99 within the experiment's bounds.
fn load_deviations(spec: &Load, report: &crate::perf::load::Report) -> Vec<String> {
    let mut out = Vec::new();
    if report.all.error_ratio > spec.error_ratio_max {
        out.push(format!(
            "the load's error ratio {:.4} is above {} ({} of {} failed: {:?})",
            report.all.error_ratio,
            spec.error_ratio_max,
            report.all.errors,
            report.all.count,
            report.all.statuses
        ));
    }
    if !spec.statuses_allowed.is_empty() {
        let others: Vec<String> = report
            .all
            .statuses
            .iter()
            .filter(|(status, _)| !spec.statuses_allowed.contains(status))
            .map(|(status, count)| format!("{count} × {status}"))
            .collect();
        if !others.is_empty() {
            out.push(format!(
                "answers outside {:?}: {}",
                spec.statuses_allowed,
                others.join(", ")
            ));
        }
    }
    if let (Some(max), Some(latency)) = (spec.p99_ms_max, &report.all.latency) {
        if latency.p99_ms > f64::from(max) {
            out.push(format!(
                "the load's p99 {:.0} ms is above {max} ms",
                latency.p99_ms
            ));
        }
    }
    out
}
