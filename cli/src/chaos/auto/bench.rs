//! `paytool chaos bench`: how well each planner finds the seeded weaknesses. For each subset of
//! weaknesses (the first with every one off, for false alarms; then random non-empty ones,
//! hidden from the planners), each planner runs `chaos auto` with the largest budget, and the
//! report measures, at each budget K: recall (active weaknesses found by step K, a finding
//! counting only when what broke and the component named match the weakness), experiments to
//! the first true finding, false alarms (findings that match no active weakness; on the
//! all-off subset, every finding), localisation precision (true findings ÷ findings), time and
//! model tokens per true finding, and guarded steps. A markdown report and a discovery curve
//! (mean recall by step, per planner) are written beside the JSON.

use super::planner::{LlmEndpoint, PlannerKind};
use super::weaknesses::{switch, Weakness, WEAKNESSES};
use super::{AutoOptions, AutoReport, Finding};
use crate::runtime::home::Home;
use crate::support::ui::Ui;
use anyhow::Context;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The most subsets one bench may take (each runs every planner for the largest budget).
pub const SUBSETS_MAX: u32 = 20;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub planners: Vec<PlannerKind>,
    pub budgets: Vec<u32>,
    /// Random subsets besides the all-off one.
    pub subsets: u32,
    pub seed: u64,
    pub llm: Option<LlmEndpoint>,
    pub quiet: bool,
}

/// One planner's run on one subset.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannerRun {
    pub planner: PlannerKind,
    pub subset: usize,
    pub active: Vec<String>,
    /// Each active weakness found, and the step of its finding.
    pub found: BTreeMap<String, u32>,
    pub false_alarms: Vec<String>,
    pub findings: usize,
    pub first_true_step: Option<u32>,
    pub guarded: u32,
    /// Times the services were restarted because a finding left the platform broken.
    #[serde(default)]
    pub repairs: u32,
    pub refused_answers: u32,
    pub tokens: u64,
    pub duration_ms: u64,
    pub report: PathBuf,
}

/// A planner's figures over every subset.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub planner: PlannerKind,
    /// Mean recall over the subsets with a weakness on, at each budget.
    pub recall_at: BTreeMap<u32, f64>,
    /// Mean step of the first true finding, over the subsets where there was one.
    pub mean_first_true_step: Option<f64>,
    /// Findings on the all-off subset (every one a false alarm) and its steps.
    pub false_alarms_all_off: usize,
    pub steps_all_off: u32,
    /// False alarms on the subsets with weaknesses on.
    pub false_alarms_with_weaknesses: usize,
    /// True findings ÷ findings, where there were findings.
    pub localisation_precision: Option<f64>,
    pub seconds_per_true_finding: Option<f64>,
    pub tokens_per_true_finding: Option<f64>,
    pub guarded: u32,
    pub refused_answers: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchReport {
    pub seed: u64,
    pub budgets: Vec<u32>,
    pub subsets: Vec<Vec<String>>,
    pub runs: Vec<PlannerRun>,
    pub summaries: Vec<Summary>,
    pub duration_ms: u64,
}

/// The subsets: every weakness off first, then `count` random non-empty ones.
pub fn subsets(count: u32, rng: &mut StdRng) -> Vec<Vec<&'static Weakness>> {
    let mut out: Vec<Vec<&'static Weakness>> = vec![Vec::new()];
    for _ in 0..count {
        let size = rng.gen_range(1..=WEAKNESSES.len());
        let mut all: Vec<&'static Weakness> = WEAKNESSES.iter().collect();
        all.shuffle(rng);
        all.truncate(size);
        all.sort_by_key(|w| w.point);
        out.push(all);
    }
    out
}

/// Whether a finding is the weakness: the same broken thing on the same component.
fn matches(finding: &Finding, weakness: &Weakness) -> bool {
    finding.broken == weakness.broken && finding.component == weakness.component
}

/// One planner's run scored against the subset that was on.
pub fn score(
    planner: PlannerKind,
    subset: usize,
    active: &[&Weakness],
    report: &AutoReport,
    path: &Path,
) -> PlannerRun {
    let mut found = BTreeMap::new();
    let mut false_alarms = Vec::new();
    for finding in &report.findings {
        match active.iter().find(|w| matches(finding, w)) {
            Some(weakness) => {
                found
                    .entry(weakness.point.to_string())
                    .or_insert(finding.step);
            }
            None => false_alarms.push(finding.key()),
        }
    }
    PlannerRun {
        planner,
        subset,
        active: active.iter().map(|w| w.point.to_string()).collect(),
        first_true_step: found.values().min().copied(),
        found,
        false_alarms,
        findings: report.findings.len(),
        guarded: report.guarded,
        repairs: report.repairs,
        refused_answers: report.refused_answers,
        tokens: report.tokens,
        duration_ms: report.duration_ms,
        report: path.to_path_buf(),
    }
}

/// The figures of one planner over its runs.
pub fn summarise(planner: PlannerKind, runs: &[&PlannerRun], budgets: &[u32]) -> Summary {
    let with: Vec<&&PlannerRun> = runs.iter().filter(|r| !r.active.is_empty()).collect();
    let off: Vec<&&PlannerRun> = runs.iter().filter(|r| r.active.is_empty()).collect();
    let recall_at = budgets
        .iter()
        .map(|k| {
            let recalls: Vec<f64> = with
                .iter()
                .map(|r| {
                    r.found.values().filter(|step| **step <= *k).count() as f64
                        / r.active.len() as f64
                })
                .collect();
            (*k, mean(&recalls).unwrap_or(0.0))
        })
        .collect();
    let firsts: Vec<f64> = with
        .iter()
        .filter_map(|r| r.first_true_step.map(f64::from))
        .collect();
    let true_findings: usize = with.iter().map(|r| r.found.len()).sum();
    let findings: usize = runs.iter().map(|r| r.findings).sum();
    let seconds: f64 = with.iter().map(|r| r.duration_ms as f64 / 1000.0).sum();
    let tokens: u64 = with.iter().map(|r| r.tokens).sum();
    let per_finding = |total: f64| (true_findings > 0).then(|| total / true_findings as f64);
    Summary {
        planner,
        recall_at,
        mean_first_true_step: mean(&firsts),
        false_alarms_all_off: off.iter().map(|r| r.findings).sum(),
        steps_all_off: off.len() as u32 * budgets.iter().copied().max().unwrap_or(0),
        false_alarms_with_weaknesses: with.iter().map(|r| r.false_alarms.len()).sum(),
        localisation_precision: (findings > 0).then(|| true_findings as f64 / findings as f64),
        seconds_per_true_finding: per_finding(seconds),
        tokens_per_true_finding: if planner == PlannerKind::Llm {
            per_finding(tokens as f64)
        } else {
            None
        },
        guarded: runs.iter().map(|r| r.guarded).sum(),
        refused_answers: runs.iter().map(|r| r.refused_answers).sum(),
    }
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Runs the bench; answers the report and where it was written.
pub async fn run(
    home: &Home,
    project: &Path,
    options: &BenchOptions,
) -> anyhow::Result<(BenchReport, PathBuf)> {
    anyhow::ensure!(!options.planners.is_empty(), "no planner to bench");
    anyhow::ensure!(
        options.subsets <= SUBSETS_MAX,
        "--subsets is at most {SUBSETS_MAX}"
    );
    let budget = options.budgets.iter().copied().max().unwrap_or(0);
    anyhow::ensure!(
        (1..=super::BUDGET_MAX).contains(&budget),
        "the largest budget must be 1 to {}",
        super::BUDGET_MAX
    );
    let started = std::time::Instant::now();
    let ui = Ui::new(options.quiet);
    let mut rng = StdRng::seed_from_u64(options.seed);
    let subsets = subsets(options.subsets, &mut rng);
    let mut runs = Vec::new();
    for (index, active) in subsets.iter().enumerate() {
        for weakness in WEAKNESSES {
            switch(home, weakness, false).await?;
        }
        for weakness in active {
            switch(home, weakness, true).await?;
        }
        for planner in &options.planners {
            let line = ui.step(&format!(
                "subset {index} ({} on), {}",
                active.len(),
                planner.as_str()
            ));
            line.working(&format!("{budget} steps"));
            let auto = AutoOptions {
                budget,
                planner: *planner,
                seed: rng.gen(),
                llm: options.llm.clone(),
                quiet: true,
                armed: active.clone(),
            };
            let outcome = super::run(home, project, &auto).await;
            let (report, path) = match outcome {
                Ok(done) => done,
                Err(error) => {
                    for weakness in WEAKNESSES {
                        let _ = switch(home, weakness, false).await;
                    }
                    return Err(error);
                }
            };
            let scored = score(*planner, index, active, &report, &path);
            line.done(&format!(
                "{} of {} found, {} false alarm(s)",
                scored.found.len(),
                active.len(),
                scored.false_alarms.len()
            ));
            runs.push(scored);
        }
    }
    for weakness in WEAKNESSES {
        switch(home, weakness, false).await?;
    }
    let summaries = options
        .planners
        .iter()
        .map(|planner| {
            let theirs: Vec<&PlannerRun> = runs.iter().filter(|r| r.planner == *planner).collect();
            summarise(*planner, &theirs, &options.budgets)
        })
        .collect();
    let report = BenchReport {
        seed: options.seed,
        budgets: options.budgets.clone(),
        subsets: subsets
            .iter()
            .map(|s| s.iter().map(|w| w.point.to_string()).collect())
            .collect(),
        runs,
        summaries,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    let dir = home.dir.join("chaos").join("bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!(
        "{}-{}.json",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        options.seed
    ));
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    std::fs::write(path.with_extension("md"), markdown(&report))?;
    if let Err(error) = curve(&path.with_extension("png"), &report) {
        eprintln!("paytool: the discovery curve was not drawn: {error:#}");
    }
    Ok((report, path))
}

/// The report for people.
pub fn markdown(report: &BenchReport) -> String {
    let mut out = format!(
        "# Chaos planners on seeded weaknesses\n\nSeed {}, budgets {:?}, {} subsets (the first with every weakness off), {:.0} min.\n\n",
        report.seed,
        report.budgets,
        report.subsets.len(),
        report.duration_ms as f64 / 60_000.0
    );
    out.push_str("| planner |");
    for k in &report.budgets {
        out.push_str(&format!(" recall@{k} |"));
    }
    out.push_str(" first true finding (step) | false alarms, all off | false alarms, weaknesses on | localisation precision | s / true finding | tokens / true finding | guarded | refused answers |\n|---|");
    for _ in &report.budgets {
        out.push_str("---|");
    }
    out.push_str("---|---|---|---|---|---|---|---|\n");
    let figure = |value: Option<f64>, digits: usize| {
        value.map_or_else(|| "–".to_string(), |v| format!("{v:.digits$}"))
    };
    for s in &report.summaries {
        out.push_str(&format!("| {} |", s.planner.as_str()));
        for k in &report.budgets {
            out.push_str(&format!(
                " {:.2} |",
                s.recall_at.get(k).copied().unwrap_or(0.0)
            ));
        }
        out.push_str(&format!(
            " {} | {} in {} steps | {} | {} | {} | {} | {} | {} |\n",
            figure(s.mean_first_true_step, 1),
            s.false_alarms_all_off,
            s.steps_all_off,
            s.false_alarms_with_weaknesses,
            figure(s.localisation_precision, 2),
            figure(s.seconds_per_true_finding, 0),
            figure(s.tokens_per_true_finding, 0),
            s.guarded,
            s.refused_answers
        ));
    }
    out.push_str("\n## Subsets\n\n");
    for (index, subset) in report.subsets.iter().enumerate() {
        out.push_str(&format!(
            "- {index}: {}\n",
            if subset.is_empty() {
                "every weakness off".to_string()
            } else {
                subset.join(", ")
            }
        ));
    }
    out
}

/// Mean recall by step, one line per planner.
fn curve(path: &Path, report: &BenchReport) -> anyhow::Result<()> {
    use plotters::prelude::*;
    crate::perf::bench::chart::register_font()?;
    let steps = report.budgets.iter().copied().max().unwrap_or(1);
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).context("drawing the curve")?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Discovery curve: mean recall by step", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d(0u32..steps, 0.0..1.05)
        .context("drawing the curve")?;
    chart
        .configure_mesh()
        .x_desc("experiments")
        .y_desc("recall")
        .label_style(("sans-serif", 13))
        .draw()
        .context("drawing the curve")?;
    let colours = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
    ];
    for (index, summary) in report.summaries.iter().enumerate() {
        let theirs: Vec<&PlannerRun> = report
            .runs
            .iter()
            .filter(|r| r.planner == summary.planner && !r.active.is_empty())
            .collect();
        let points: Vec<(u32, f64)> = (0..=steps)
            .map(|k| {
                let recalls: Vec<f64> = theirs
                    .iter()
                    .map(|r| {
                        r.found.values().filter(|step| **step <= k).count() as f64
                            / r.active.len() as f64
                    })
                    .collect();
                (k, mean(&recalls).unwrap_or(0.0))
            })
            .collect();
        let colour = colours[index % colours.len()];
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .context("drawing the curve")?
            .label(summary.planner.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .context("drawing the curve")?;
    root.present().context("writing the curve")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::auto::judge::Broken;
    use crate::chaos::auto::space::{Action, FaultKind};

    fn finding(broken: Broken, component: &str, step: u32) -> Finding {
        Finding {
            broken,
            component: component.into(),
            mechanism: String::new(),
            action: Action {
                fault: FaultKind::Kill,
                target: "kafka".into(),
                intensity: 1,
            },
            journal: PathBuf::new(),
            step,
        }
    }

    fn report(findings: Vec<Finding>) -> AutoReport {
        serde_json::from_value(serde_json::json!({
            "planner": "random", "seed": 1, "budget": 10, "graph": [], "steps": [],
            "findings": findings, "guarded": 0, "refused_answers": 0, "fallbacks": 0,
            "tokens": 0, "duration_ms": 60000, "first_finding_step": null,
        }))
        .expect("a report")
    }

    #[test]
    fn the_first_subset_has_every_weakness_off_and_the_others_are_not_empty() {
        let mut rng = StdRng::seed_from_u64(3);
        let all = subsets(5, &mut rng);
        assert_eq!(all.len(), 6);
        assert!(all[0].is_empty());
        assert!(all[1..]
            .iter()
            .all(|s| !s.is_empty() && s.len() <= WEAKNESSES.len()));
    }

    #[test]
    fn a_finding_counts_only_when_what_broke_and_where_match_an_active_weakness() {
        let deadline = &WEAKNESSES[0];
        let active = vec![deadline];
        let scored = score(
            PlannerKind::Random,
            1,
            &active,
            &report(vec![
                finding(deadline.broken, deadline.component, 4),
                finding(Broken::Recovery, "kafka", 2),
            ]),
            Path::new("r.json"),
        );
        assert_eq!(scored.found.get(deadline.point), Some(&4));
        assert_eq!(scored.false_alarms, vec!["recovery@kafka".to_string()]);
        assert_eq!(scored.first_true_step, Some(4));
        let wrong_place = score(
            PlannerKind::Random,
            1,
            &active,
            &report(vec![finding(deadline.broken, "merchant-api", 1)]),
            Path::new("r.json"),
        );
        assert!(wrong_place.found.is_empty());
    }

    #[test]
    fn recall_at_a_budget_counts_the_findings_made_by_then() {
        let active: Vec<&Weakness> = WEAKNESSES.iter().take(2).collect();
        let scored = score(
            PlannerKind::Learned,
            1,
            &active,
            &report(vec![
                finding(active[0].broken, active[0].component, 3),
                finding(active[1].broken, active[1].component, 15),
            ]),
            Path::new("r.json"),
        );
        let off = score(
            PlannerKind::Learned,
            0,
            &[],
            &report(vec![finding(Broken::Latency, "kafka", 5)]),
            Path::new("o.json"),
        );
        let summary = summarise(PlannerKind::Learned, &[&scored, &off], &[10, 20]);
        assert_eq!(summary.recall_at[&10], 0.5);
        assert_eq!(summary.recall_at[&20], 1.0);
        assert_eq!(summary.false_alarms_all_off, 1);
        assert_eq!(summary.mean_first_true_step, Some(3.0));
        assert_eq!(summary.localisation_precision, Some(2.0 / 3.0));
    }
}
