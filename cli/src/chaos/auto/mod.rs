//! `paytool chaos auto`: autonomous chaos. Observe (the call graph from Jaeger's traces, the
//! action space the installation offers, every step so far), propose (a planner: random,
//! learned, or a language model), guard (the action is one of the space, so one fault at a
//! time within its bounds, on the allow-list; the run's own pre-flight asks for the steady
//! state before anything is injected), run (an ordinary `chaos run`, always rolled back, its
//! journal kept), judge (deterministically: [`judge`]), localise (the component the action
//! hit, the mechanism the judge names), learn, and again until the budget is spent.
//!
//! A finding is kept once per (what broke, component), shrunk to the mildest intensity that
//! still shows it, and replayable: `paytool chaos replay` on its journal runs the same
//! experiment with the same seed.

pub mod bench;
pub mod judge;
pub mod planner;
pub mod space;
pub mod weaknesses;

use crate::runtime::home::Home;
use crate::support::ui::Ui;
use planner::{LlmEndpoint, Observation, Outcome, Planner, PlannerKind, Proposal};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The most experiments one `auto` may run (each about a minute).
pub const BUDGET_MAX: u32 = 200;
/// How long the baseline's invariants may take to settle.
const BASELINE_SETTLE_MS: u64 = 5_000;
/// How long a step waits for the platform to take a payment before its fault.
const STEADY_TIMEOUT_MS: u32 = 60_000;
/// Jaeger's dependency graph is read over this much of the past.
const GRAPH_LOOKBACK_MS: u64 = 60 * 60 * 1000;
const GRAPH_TIMEOUT_MS: u64 = 5_000;

#[derive(Debug, Clone)]
pub struct AutoOptions {
    pub budget: u32,
    pub planner: PlannerKind,
    pub seed: u64,
    pub llm: Option<LlmEndpoint>,
    pub quiet: bool,
    /// The seeded weaknesses a bench switched on (hidden from the planner): armed again before
    /// every run, since a service restarted in between (killed by a step, or by the loop's
    /// repair) comes back with none. Empty for `paytool chaos auto`.
    pub armed: Vec<&'static weaknesses::Weakness>,
}

/// One step of the loop, as the report keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub n: u32,
    pub proposal: Proposal,
    pub seed: u64,
    pub verdict: String,
    pub judgement: judge::Judgement,
    pub journal: PathBuf,
    pub duration_ms: u64,
    /// Runs made to shrink a new finding (not counted in the budget's steps).
    pub shrink: Vec<ShrinkRun>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShrinkRun {
    pub action: space::Action,
    pub reproduced: bool,
    pub journal: PathBuf,
}

/// A weakness found: what broke, where, by which (mildest) action, and how to see it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    pub broken: judge::Broken,
    pub component: String,
    pub mechanism: String,
    pub action: space::Action,
    /// Of the mildest run that showed it: `paytool chaos replay JOURNAL`.
    pub journal: PathBuf,
    pub step: u32,
}

impl Finding {
    pub fn key(&self) -> String {
        key(self.broken, &self.component)
    }
}

fn key(broken: judge::Broken, component: &str) -> String {
    format!("{}@{component}", broken.as_str())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AutoReport {
    pub planner: PlannerKind,
    pub seed: u64,
    pub budget: u32,
    pub graph: Vec<(String, String)>,
    pub steps: Vec<StepRecord>,
    pub findings: Vec<Finding>,
    /// Steps whose run could not be judged (the pre-flight refused: the steady state did not
    /// hold before the fault, so nothing was injected).
    pub guarded: u32,
    /// Times the loop restarted the services because the platform did not take a payment
    /// before a run (a weakness left it broken, e.g. a breaker that never closes).
    #[serde(default)]
    pub repairs: u32,
    /// The model's answers refused (not an action of the space), and steps that fell back.
    pub refused_answers: u32,
    pub fallbacks: u32,
    pub tokens: u64,
    pub duration_ms: u64,
    /// The step (1-based) of the first finding.
    pub first_finding_step: Option<u32>,
}

/// Runs the loop; answers the report (written under the installation's `chaos/auto/`).
pub async fn run(
    home: &Home,
    project: &Path,
    options: &AutoOptions,
) -> anyhow::Result<(AutoReport, PathBuf)> {
    anyhow::ensure!(
        (1..=BUDGET_MAX).contains(&options.budget),
        "--budget must be 1 to {BUDGET_MAX}"
    );
    crate::runtime::state::require_running(home)?;
    let started = Instant::now();
    let ui = Ui::new(options.quiet);
    let offer = space::Offer {
        chaos: home.marker.chaos,
    };
    let actions = space::all(offer);
    let graph = observe_graph(home).await;
    let mut planner = Planner::new(options.planner, options.llm.clone())?;
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut report = AutoReport {
        planner: options.planner,
        seed: options.seed,
        budget: options.budget,
        graph: graph.clone(),
        steps: Vec::new(),
        findings: Vec::new(),
        guarded: 0,
        repairs: 0,
        refused_answers: 0,
        fallbacks: 0,
        tokens: 0,
        duration_ms: 0,
        first_finding_step: None,
    };
    let mut history: Vec<Outcome> = Vec::new();
    let mut before = baseline(home).await;
    for n in 1..=options.budget {
        let found: Vec<String> = report.findings.iter().map(Finding::key).collect();
        let observation = Observation {
            space: &actions,
            graph: &graph,
            history: &history,
            found: &found,
        };
        let proposal = planner.propose(&observation, &mut rng).await;
        report.refused_answers += proposal.refused;
        report.fallbacks += u32::from(proposal.fell_back);
        report.tokens += proposal.tokens;
        let line = ui.step(&format!("step {n}/{}", options.budget));
        line.working(&format!(
            "{} ({})",
            proposal.action,
            options.planner.as_str()
        ));
        let seed: u64 = rng.gen();
        let run_started = Instant::now();
        report.repairs += u32::from(prepare_run(home, &options.armed).await?);
        let (verdict, judgement, journal) =
            run_action(home, project, &proposal.action, seed, &mut before).await?;
        let mut record = StepRecord {
            n,
            proposal: proposal.clone(),
            seed,
            verdict,
            judgement: judgement.clone(),
            journal: journal.clone(),
            duration_ms: u64::try_from(run_started.elapsed().as_millis()).unwrap_or(u64::MAX),
            shrink: Vec::new(),
        };
        if judgement.inconclusive.is_some() {
            report.guarded += 1;
        }
        let mut new_finding = false;
        for broken in &judgement.broken {
            let finding_key = key(*broken, &judgement.component);
            if report.findings.iter().any(|f| f.key() == finding_key) {
                continue;
            }
            new_finding = true;
            let (action, journal, runs) = shrink(
                home,
                project,
                (&proposal.action, *broken, &journal),
                (&mut before, &options.armed, &mut report.repairs),
                &mut rng,
            )
            .await?;
            record.shrink.extend(runs);
            let index = judgement
                .broken
                .iter()
                .position(|b| b == broken)
                .unwrap_or(0);
            report.findings.push(Finding {
                broken: *broken,
                component: judgement.component.clone(),
                mechanism: judgement.mechanism.get(index).cloned().unwrap_or_default(),
                action,
                journal,
                step: n,
            });
            report.first_finding_step.get_or_insert(n);
        }
        if judgement.broken.is_empty() {
            line.done(&format!(
                "{}: held (severity {:.2})",
                proposal.action, judgement.severity
            ));
        } else {
            line.failed(&format!(
                "{}: {} on {}{}",
                proposal.action,
                judge::names(&judgement.broken),
                judgement.component,
                if new_finding { " (new)" } else { "" }
            ));
        }
        let outcome = Outcome {
            action: proposal.action.clone(),
            severity: judgement.severity,
            broken: judgement
                .broken
                .iter()
                .map(|b| b.as_str().to_string())
                .collect(),
            new_finding,
        };
        planner.learn(&outcome, &graph);
        history.push(outcome);
        report.steps.push(record);
    }
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let dir = home.dir.join("chaos").join("auto");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!(
        "{}-{}-{}.json",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        options.planner.as_str(),
        options.seed
    ));
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    Ok((report, path))
}

/// Waits (within its bound) until the platform takes a payment: a 503 is tried again.
pub async fn steady(home: &Home) -> anyhow::Result<()> {
    let outcome = super::probes::Probes::new(home)
        .run(&crate::chaos::experiment::Probe::Payment {
            timeout_ms: STEADY_TIMEOUT_MS,
        })
        .await;
    anyhow::ensure!(outcome.ok, "{}", outcome.detail);
    Ok(())
}

/// Before a run: the weaknesses a bench has on are armed again (idempotent), and when the
/// platform does not take a payment within the steady state's bound (a weakness left it
/// broken: a breaker that never closes, a consumer that stopped), the services are restarted
/// once (SIGKILL to each instance; the supervisor starts them again) and armed again: the
/// loop's repair, as an operator would restart what a finding left broken. Answers whether it
/// repaired. Without it, one such finding left every later step of the run guarded (seen in
/// the bench of 2026-12-07: 20 minutes of 503s). A platform still broken after the repair is
/// left to the run's own guard.
async fn prepare_run(home: &Home, armed: &[&'static weaknesses::Weakness]) -> anyhow::Result<bool> {
    arm(home, armed).await?;
    if steady(home).await.is_ok() {
        return Ok(false);
    }
    let mut rng = StdRng::seed_from_u64(0);
    for service in crate::runtime::components::services::Service::ALL {
        let component = service.component_name();
        for instance in 0..component.instances(home) {
            let fault = crate::chaos::experiment::Fault::Kill {
                target: crate::chaos::experiment::Target {
                    component,
                    instance: Some(instance),
                },
            };
            super::faults::inject(home, &fault, &mut rng).await?;
        }
    }
    // Steady waits (within its bound) for the restarted services to take payments again.
    let _ = steady(home).await;
    arm(home, armed).await?;
    Ok(true)
}

async fn arm(home: &Home, armed: &[&'static weaknesses::Weakness]) -> anyhow::Result<()> {
    for weakness in armed {
        weaknesses::switch(home, weakness, true).await?;
    }
    Ok(())
}

/// What is failing before a sequence of runs, so that none of it is put on the first run.
pub async fn baseline(home: &Home) -> judge::Violations {
    match super::invariants::check(home, BASELINE_SETTLE_MS).await {
        Ok(report) => report
            .checks
            .into_iter()
            .filter(|check| !check.ok)
            .map(|check| (check.name, check.evidence.into_iter().collect()))
            .collect(),
        Err(_) => judge::Violations::new(),
    }
}

/// One action run as an experiment and judged: (verdict, judgement, journal).
pub async fn run_action(
    home: &Home,
    project: &Path,
    action: &space::Action,
    seed: u64,
    before: &mut judge::Violations,
) -> anyhow::Result<(String, judge::Judgement, PathBuf)> {
    let experiment = space::experiment(action).map_err(|e| anyhow::anyhow!("{action}: {e}"))?;
    // The guard: the platform must be whole before anything is injected. The step before may
    // have left a breaker open or a component restarting; a payment is tried (its 503s again)
    // until one goes through, within the bound, and a step that never gets one is guarded.
    if let Err(error) = steady(home).await {
        let judgement = judge::guarded(
            action,
            &format!("the steady state did not hold before the fault: {error:#}"),
        );
        return Ok(("guarded".into(), judgement, PathBuf::new()));
    }
    let name = format!(
        "auto-{}-{}-{}",
        action.fault.as_str(),
        action.target.replace("->", "-to-"),
        action.intensity
    );
    let (journal, path) = super::perform(home, project, &name, experiment, seed, true).await?;
    // Ctrl-C took the run's faults back; it also ends the loop around it (whose error path
    // switches every weakness off), not just this step.
    anyhow::ensure!(
        journal.verdict != crate::chaos::journal::Verdict::Interrupted,
        "interrupted: the faults were taken back ({})",
        path.display()
    );
    let judgement = judge::judge(action, before, &journal);
    *before = judge::violations(&journal);
    Ok((journal.verdict.as_str().to_string(), judgement, path))
}

/// The mildest intensity of the action that still breaks the same thing: tried downwards,
/// stopping at the first that does not. Answers that action, its journal, and the runs made.
async fn shrink(
    home: &Home,
    project: &Path,
    (action, broken, journal): (&space::Action, judge::Broken, &Path),
    (before, armed, repairs): (
        &mut judge::Violations,
        &[&'static weaknesses::Weakness],
        &mut u32,
    ),
    rng: &mut StdRng,
) -> anyhow::Result<(space::Action, PathBuf, Vec<ShrinkRun>)> {
    let mut smallest = (action.clone(), journal.to_path_buf());
    let mut runs = Vec::new();
    let mut intensity = action.intensity;
    while intensity > 1 {
        intensity -= 1;
        let milder = space::Action {
            intensity,
            ..action.clone()
        };
        *repairs += u32::from(prepare_run(home, armed).await?);
        let (_, judgement, path) = run_action(home, project, &milder, rng.gen(), before).await?;
        let reproduced = judgement.broken.contains(&broken);
        runs.push(ShrinkRun {
            action: milder.clone(),
            reproduced,
            journal: path.clone(),
        });
        if !reproduced {
            break;
        }
        smallest = (milder, path);
    }
    Ok((smallest.0, smallest.1, runs))
}

/// Who calls whom: Jaeger's dependency links over the last hour, the services' routes when
/// Jaeger has none (a fresh installation, or Jaeger down).
pub async fn observe_graph(home: &Home) -> Vec<(String, String)> {
    match jaeger_dependencies(home).await {
        Ok(edges) if !edges.is_empty() => edges,
        _ => crate::runtime::components::toxiproxy::ROUTES
            .iter()
            .map(|r| (r.from.as_str().to_string(), r.to.as_str().to_string()))
            .collect(),
    }
}

async fn jaeger_dependencies(home: &Home) -> anyhow::Result<Vec<(String, String)>> {
    let url = format!(
        "{}/api/dependencies",
        crate::runtime::components::observability::jaeger_query_url(home)
    );
    let end_ms = chrono::Utc::now().timestamp_millis();
    let body: serde_json::Value = reqwest::Client::builder()
        .timeout(Duration::from_millis(GRAPH_TIMEOUT_MS))
        .build()?
        .get(url)
        .query(&[
            ("endTs", end_ms.to_string()),
            ("lookback", GRAPH_LOOKBACK_MS.to_string()),
        ])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let mut edges: Vec<(String, String)> = body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|link| {
            Some((
                link["parent"].as_str()?.to_string(),
                link["child"].as_str()?.to_string(),
            ))
        })
        .filter(|(parent, child)| parent != child)
        .collect();
    edges.sort();
    edges.dedup();
    Ok(edges)
}

/// The report for people.
pub fn print(report: &AutoReport, path: &Path) {
    println!(
        "{} planner, seed {}: {} steps, {} finding(s){}, {} guarded, {} repair(s), {} answer(s) refused, {} fallback(s), {} tokens, {:.0} s",
        report.planner.as_str(),
        report.seed,
        report.steps.len(),
        report.findings.len(),
        report
            .first_finding_step
            .map(|s| format!(" (first at step {s})"))
            .unwrap_or_default(),
        report.guarded,
        report.repairs,
        report.refused_answers,
        report.fallbacks,
        report.tokens,
        report.duration_ms as f64 / 1000.0
    );
    for finding in &report.findings {
        println!(
            "  {} on {} by {} (step {})\n    {}\n    replay: paytool chaos replay {}",
            finding.broken.as_str(),
            finding.component,
            finding.action,
            finding.step,
            finding.mechanism,
            finding.journal.display()
        );
    }
    println!("report: {}", path.display());
}
