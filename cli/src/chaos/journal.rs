//! What a run writes: a JSON journal (everything that ran, when, every probe's values, the
//! verdict and the seed), from which `paytool chaos report` makes a markdown page and
//! `paytool chaos replay` runs the same experiment again.

use super::experiment::Experiment;
use super::faults::Injected;
use super::invariants;
use super::probes::Outcome;
use crate::perf::load::Report as LoadReport;
use crate::runtime::home::Home;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Bumped when the journal's shape changes in a way an older reader would misread.
pub const FORMAT: u32 = 1;
/// Journals kept per installation; the oldest go first.
pub const KEPT_MAX: usize = 500;

/// How a run ended. The order is precedence: a violated invariant outranks everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The hypothesis held before and after, the load within its bounds, every invariant held.
    Passed,
    /// The pre-flight failed: nothing was injected.
    PreflightFailed,
    /// The hypothesis (or the load's bounds, or a probe of the method) did not hold.
    Deviated,
    /// The abort condition was breached during the method: faults stopped, rolled back.
    Aborted,
    /// Ctrl-C: faults stopped, rolled back.
    Interrupted,
    /// Money was lost, created or moved twice, or a payment did not reach its end.
    Violated,
}

impl Verdict {
    pub fn exit_code(self) -> i32 {
        use crate::support::exit::Code;
        match self {
            Self::Passed => 0,
            Self::PreflightFailed | Self::Deviated | Self::Aborted => Code::Failed as i32,
            Self::Interrupted => Code::Interrupted as i32,
            Self::Violated => Code::Violation as i32,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::PreflightFailed => "preflight-failed",
            Self::Deviated => "deviated",
            Self::Aborted => "aborted",
            Self::Interrupted => "interrupted",
            Self::Violated => "violated",
        }
    }
}

/// One thing that happened during the method, at milliseconds from the start of the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    Injected {
        at_ms: u64,
        fault: serde_json::Value,
        target: Option<String>,
        detail: String,
        /// When its window ends (faults with a duration).
        until_ms: Option<u64>,
    },
    Undone {
        at_ms: u64,
        target: Option<String>,
        detail: String,
    },
    Probe {
        at_ms: u64,
        outcome: Outcome,
    },
    Wait {
        at_ms: u64,
        seconds: u32,
    },
    Aborted {
        at_ms: u64,
        reason: String,
    },
    Failed {
        at_ms: u64,
        detail: String,
    },
    Rollback {
        at_ms: u64,
        rollback: serde_json::Value,
        ok: bool,
        detail: String,
    },
}

impl Event {
    pub fn injected(at_ms: u64, fault: &super::experiment::Fault, injected: &Injected) -> Self {
        let until_ms =
            (fault.duration_s() > 0).then(|| at_ms + u64::from(fault.duration_s()) * 1000);
        Self::Injected {
            at_ms,
            fault: serde_json::to_value(fault).unwrap_or_default(),
            target: injected.subject(),
            detail: injected.detail.clone(),
            until_ms,
        }
    }
}

/// One second of the load, as its answers came.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Second {
    pub at_s: u64,
    pub requests: u64,
    pub errors: u64,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    pub format: u32,
    pub name: String,
    pub title: String,
    /// The experiment as it ran (a replay runs this, even if the file changed since).
    pub experiment: Experiment,
    pub seed: u64,
    pub started_at: String,
    pub duration_ms: u64,
    pub verdict: Verdict,
    /// Why, in one line.
    pub summary: String,
    pub preflight: Vec<Outcome>,
    pub method: Vec<Event>,
    pub steady_state_after: Vec<Outcome>,
    /// The load's report (`paytool load --json`), when one ran to its end.
    pub load: Option<serde_json::Value>,
    pub timeline: Vec<Second>,
    pub invariants: Option<invariants::Report>,
    /// When the load began, in the method's milliseconds: the timeline's second 0.
    #[serde(default)]
    pub load_started_ms: Option<u64>,
}

impl Journal {
    pub fn load_report(report: &LoadReport) -> Option<serde_json::Value> {
        serde_json::to_value(report).ok()
    }
}

pub fn dir(home: &Home) -> PathBuf {
    home.dir.join("chaos").join("journals")
}

/// Writes the journal next to the others, keeps at most [`KEPT_MAX`], returns its path.
pub fn write(home: &Home, journal: &Journal) -> anyhow::Result<PathBuf> {
    let dir = dir(home);
    std::fs::create_dir_all(&dir)?;
    let stamp = journal.started_at.replace([':', '-'], "");
    let path = dir.join(format!("{stamp}-{}.json", journal.name));
    crate::runtime::home::write_atomic(
        &path,
        serde_json::to_string_pretty(journal)?.as_bytes(),
        0o644,
    )?;
    let mut all: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    all.sort();
    let excess = all.len().saturating_sub(KEPT_MAX);
    for old in all.into_iter().take(excess) {
        let _ = std::fs::remove_file(old);
    }
    Ok(path)
}

pub fn read(path: &Path) -> anyhow::Result<Journal> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the journal {}: {e}", path.display()))?;
    let journal: Journal = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a chaos journal: {e}", path.display()))?;
    anyhow::ensure!(
        journal.format == FORMAT,
        "{} is a journal of format {}, this paytool reads {FORMAT}",
        path.display(),
        journal.format
    );
    Ok(journal)
}

/// The journal as a markdown page: what ran, the verdict, each probe and event, the load, and
/// each invariant with its evidence.
pub fn markdown(journal: &Journal, timeline_png: Option<&str>) -> String {
    let mut out = String::new();
    let line = |out: &mut String, text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(&mut out, format!("# Chaos: {}\n", journal.title));
    line(
        &mut out,
        format!(
            "**Verdict: {}** — {}\n\nExperiment `{}`, seed {}, started {}, {:.1} s.\n",
            journal.verdict.as_str(),
            journal.summary,
            journal.name,
            journal.seed,
            journal.started_at,
            journal.duration_ms as f64 / 1000.0
        ),
    );
    let probes = |out: &mut String, title: &str, outcomes: &[Outcome]| {
        line(
            out,
            format!("## {title}\n\n| probe | ok | seen | ms |\n|---|---|---|---|"),
        );
        for o in outcomes {
            line(
                out,
                format!(
                    "| {} | {} | {} | {} |",
                    o.probe,
                    if o.ok { "yes" } else { "**no**" },
                    o.detail.replace('|', "\\|"),
                    o.elapsed_ms
                ),
            );
        }
        line(out, String::new());
    };
    if let Some(png) = timeline_png {
        line(
            &mut out,
            format!("![requests, errors and p99 per second, faults shaded]({png})\n"),
        );
    }
    probes(
        &mut out,
        "Pre-flight and steady state before",
        &journal.preflight,
    );
    line(&mut out, "## Method\n\n| at (s) | what |\n|---|---|".into());
    for event in &journal.method {
        let (at_ms, what) = match event {
            Event::Injected {
                at_ms,
                detail,
                until_ms,
                ..
            } => (
                *at_ms,
                match until_ms {
                    Some(until) => {
                        format!("fault: {detail} (until {:.1} s)", *until as f64 / 1000.0)
                    }
                    None => format!("fault: {detail}"),
                },
            ),
            Event::Undone { at_ms, detail, .. } => (*at_ms, format!("undone: {detail}")),
            Event::Probe { at_ms, outcome } => (
                *at_ms,
                format!(
                    "probe {}: {} ({})",
                    outcome.probe,
                    if outcome.ok { "ok" } else { "failed" },
                    outcome.detail
                ),
            ),
            Event::Wait { at_ms, seconds } => (*at_ms, format!("wait {seconds} s")),
            Event::Aborted { at_ms, reason } => (*at_ms, format!("**aborted**: {reason}")),
            Event::Failed { at_ms, detail } => (*at_ms, format!("**failed**: {detail}")),
            Event::Rollback {
                at_ms, ok, detail, ..
            } => (
                *at_ms,
                format!(
                    "rollback: {detail}{}",
                    if *ok { "" } else { " (**failed**)" }
                ),
            ),
        };
        line(
            &mut out,
            format!(
                "| {:.1} | {} |",
                at_ms as f64 / 1000.0,
                what.replace('|', "\\|")
            ),
        );
    }
    line(&mut out, String::new());
    probes(
        &mut out,
        "Steady state after the rollbacks",
        &journal.steady_state_after,
    );
    if let Some(load) = &journal.load {
        let all = &load["all"];
        line(
            &mut out,
            format!(
                "## Load\n\n{} requests, {} failed (ratio {}), p99 {} ms.\n",
                all["count"], all["errors"], all["error_ratio"], all["latency"]["p99_ms"]
            ),
        );
    }
    if let Some(report) = &journal.invariants {
        line(
            &mut out,
            format!(
                "## Invariants (settled in {:.1} s)\n\n| invariant | holds | evidence |\n|---|---|---|",
                report.converged_ms as f64 / 1000.0
            ),
        );
        for check in &report.checks {
            line(
                &mut out,
                format!(
                    "| {} | {} | {} |",
                    check.name,
                    if check.ok { "yes" } else { "**no**" },
                    check.evidence.join("; ").replace('|', "\\|")
                ),
            );
        }
    }
    out
}
