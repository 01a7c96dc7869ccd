//! The deterministic judge of `paytool chaos auto`: a run is a finding when money broke (an
//! invariant), or when the platform did not degrade the way a sound one does, measured
//! against the run's own control window (the seconds of load before the fault). The model
//! never decides: it only proposes.
//!
//! A sound platform, under a fault, fails fast (answers within the fault's own added
//! latency plus [`HANG_MARGIN_MS`]) and recovers (after the window and
//! [`RECOVERY_GRACE_S`], its error ratio and p99 are back near the control's). Each check has
//! its margin stated here, so a finding can be argued with numbers.

use super::space::{self, Action};
use crate::chaos::journal::{Event, Journal, Second, Verdict};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The invariants that were failing, and their evidence: what a run found before this one.
/// The invariants look at the whole platform, so money lost in one run is still missing at
/// the next: only what is new is this run's.
pub type Violations = BTreeMap<String, BTreeSet<String>>;

/// The failing invariants of a run's journal.
pub fn violations(journal: &Journal) -> Violations {
    journal
        .invariants
        .iter()
        .flat_map(|report| report.checks.iter())
        .filter(|check| !check.ok)
        .map(|check| (check.name.clone(), check.evidence.iter().cloned().collect()))
        .collect()
}

/// Above the control's p99 and the fault's own added latency (twice: a call and its answer
/// may both cross the route, and a payment makes more than one call), how long answers may
/// take during the window. A caller's deadline (3 s) and one retry fit in it; a call with no
/// deadline waiting on a black hole does not.
pub const HANG_MARGIN_MS: f64 = 8_000.0;
/// Seconds after the window before recovery is asked for (breakers half-open after 5 s,
/// a restarted component is ready within a few).
pub const RECOVERY_GRACE_S: u64 = 10;
/// Seconds (of the window and its grace) whose p99 must pass the hang bound for a latency
/// finding. A sound caller's three attempts of 3 s reach 9 s in a second or so of a 20 s
/// pause (measured: one second at 9.3 s); a caller without its own bound hangs to the
/// request's 10 s for every second of the window.
pub const HANG_SECONDS_MIN: usize = 4;
/// How much worse than the control the recovered error ratio may be.
pub const RECOVERY_ERROR_MARGIN: f64 = 0.05;
/// How much slower than the control the recovered p99 may be: twice, plus this.
pub const RECOVERY_P99_MARGIN_MS: f64 = 250.0;
/// How much worse than the control the error ratio during the window may be, for a fault the
/// platform promises to ride out ([`space::promised`]).
pub const AVAILABILITY_ERROR_MARGIN: f64 = 0.05;
/// Seconds of recovery needed to judge it: fewer and the run says nothing about it.
const RECOVERY_SECONDS_MIN: usize = 5;

/// What a finding broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Broken {
    /// An invariant of the money.
    Money,
    /// Answers hung: slower than the fault explains, during its window.
    Latency,
    /// The platform did not come back after the window.
    Recovery,
    /// Requests failed during a fault the platform promises to ride out (Kafka away: the
    /// outboxes hold the events; Keycloak away: tokens and keys are cached).
    Availability,
}

/// What broke, as one word each: `latency+recovery`.
pub fn names(broken: &[Broken]) -> String {
    broken
        .iter()
        .map(|b| b.as_str())
        .collect::<Vec<_>>()
        .join("+")
}

impl Broken {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Money => "money",
            Self::Latency => "latency",
            Self::Recovery => "recovery",
            Self::Availability => "availability",
        }
    }
}

/// The judge's word on one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Judgement {
    /// Empty: the platform behaved.
    pub broken: Vec<Broken>,
    /// Which component it is put on, and the mechanism suspected, for each broken thing.
    pub component: String,
    pub mechanism: Vec<String>,
    /// How close the run came to a finding, 0 to 1 (1: it is one): what a learning planner
    /// learns from when nothing broke.
    pub severity: f64,
    pub control: Window,
    pub during: Window,
    pub after: Window,
    /// The run did not give the judge what it needs (the pre-flight failed, no load): no
    /// finding, and not counted as a clean run either.
    pub inconclusive: Option<String>,
}

/// One stretch of the run's timeline.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Window {
    pub seconds: usize,
    pub requests: u64,
    pub errors: u64,
    /// The highest of the seconds' p99s (the timeline keeps a p99 per second).
    pub p99_ms: Option<f64>,
}

impl Window {
    fn of(seconds: &[&Second]) -> Self {
        Self {
            seconds: seconds.len(),
            requests: seconds.iter().map(|s| s.requests).sum(),
            errors: seconds.iter().map(|s| s.errors).sum(),
            p99_ms: seconds
                .iter()
                .filter_map(|s| s.p99_ms)
                .fold(None, |max: Option<f64>, p| {
                    Some(max.map_or(p, |m| m.max(p)))
                }),
        }
    }

    pub fn error_ratio(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

/// The word on a step the guard stopped before anything was injected.
pub fn guarded(action: &Action, why: &str) -> Judgement {
    Judgement {
        broken: Vec::new(),
        component: space::component_of(action),
        mechanism: Vec::new(),
        severity: 0.0,
        control: Window::default(),
        during: Window::default(),
        after: Window::default(),
        inconclusive: Some(why.to_string()),
    }
}

/// Judges one run of `action`; `before` is what was failing before it (nothing, for a run on
/// its own).
pub fn judge(action: &Action, before: &Violations, journal: &Journal) -> Judgement {
    let component = space::component_of(action);
    let mut judgement = Judgement {
        broken: Vec::new(),
        component,
        mechanism: Vec::new(),
        severity: 0.0,
        control: Window::default(),
        during: Window::default(),
        after: Window::default(),
        inconclusive: None,
    };
    if journal.verdict == Verdict::PreflightFailed {
        judgement.inconclusive = Some(format!("the pre-flight failed: {}", journal.summary));
        return judgement;
    }
    if let Some(report) = &journal.invariants {
        for check in report.checks.iter().filter(|c| !c.ok) {
            let known = before.get(&check.name);
            if known.is_some_and(|seen| check.evidence.iter().all(|line| seen.contains(line))) {
                continue;
            }
            // Money is put where its evidence points (the invariants read the records, and
            // the topic, to tell): damage left by a weakness shows again under later faults
            // on other targets, and belongs to the weakness's component, not theirs.
            if let (false, Some(component)) = (
                judgement.broken.contains(&Broken::Money),
                check.component.as_ref(),
            ) {
                judgement.component = component.clone();
            }
            judgement.broken.push(Broken::Money);
            judgement.mechanism.push(format!(
                "{}: {}",
                check.name,
                check.evidence.first().cloned().unwrap_or_default()
            ));
        }
    }
    let (Some(injected_s), Some(undone_s)) = window_of(journal, action) else {
        if judgement.broken.is_empty() {
            judgement.inconclusive = Some("no fault window in the journal".into());
        }
        judgement.severity = if judgement.broken.is_empty() {
            0.0
        } else {
            1.0
        };
        return judgement;
    };
    let seconds: Vec<&Second> = journal.timeline.iter().collect();
    // The first second ramps up (users registered, connections made): not a control.
    let control: Vec<&Second> = seconds
        .iter()
        .copied()
        .filter(|s| s.at_s >= 1 && s.at_s < injected_s)
        .collect();
    // A request sent in the window may answer after it: the grace is watched too.
    let during: Vec<&Second> = seconds
        .iter()
        .copied()
        .filter(|s| s.at_s >= injected_s && s.at_s <= undone_s + RECOVERY_GRACE_S)
        .collect();
    let after: Vec<&Second> = seconds
        .iter()
        .copied()
        .filter(|s| s.at_s > undone_s + RECOVERY_GRACE_S)
        // The last second is cut short by the load's end.
        .filter(|s| s.requests > 0)
        .collect();
    judgement.control = Window::of(&control);
    judgement.during = Window::of(&during);
    judgement.after = Window::of(&after);
    let control_p99 = judgement.control.p99_ms.unwrap_or(0.0);
    let added = f64::from(space::added_latency_ms(action)) * 2.0;
    let hang_bound = control_p99 + added + HANG_MARGIN_MS;
    let mut severity: f64 = 0.0;
    let hung_seconds = during
        .iter()
        .filter(|s| s.p99_ms.is_some_and(|p| p > hang_bound))
        .count();
    if let Some(p99) = judgement.during.p99_ms {
        severity = severity.max((p99 / hang_bound).min(1.0) * 0.9);
        if hung_seconds >= HANG_SECONDS_MIN {
            judgement.broken.push(Broken::Latency);
            judgement.mechanism.push(format!(
                "answers took up to {p99:.0} ms during the window, more than the {hang_bound:.0} ms the fault explains in {hung_seconds} seconds (control p99 {control_p99:.0} ms, added {added:.0} ms, margin {HANG_MARGIN_MS:.0} ms): a call without a deadline, or a queue without a bound"
            ));
        }
    }
    if space::promised(action) && judgement.during.requests > 0 {
        let bound = judgement.control.error_ratio() + AVAILABILITY_ERROR_MARGIN;
        let errors = judgement.during.error_ratio();
        severity = severity.max((errors / bound).min(1.0) * 0.9);
        if errors > bound {
            judgement.broken.push(Broken::Availability);
            judgement.mechanism.push(format!(
                "error ratio {errors:.3} during the window (control {:.3}, bound {bound:.3}) under a fault the platform promises to ride out: a dependency that should be optional is on the payment's path",
                judgement.control.error_ratio()
            ));
        }
    }
    if judgement.after.seconds >= RECOVERY_SECONDS_MIN {
        let error_bound = judgement.control.error_ratio() + RECOVERY_ERROR_MARGIN;
        let p99_bound = control_p99 * 2.0 + RECOVERY_P99_MARGIN_MS;
        let errors = judgement.after.error_ratio();
        let p99 = judgement.after.p99_ms.unwrap_or(0.0);
        severity = severity
            .max((errors / error_bound.max(f64::EPSILON)).min(1.0) * 0.9)
            .max((p99 / p99_bound).min(1.0) * 0.6);
        if errors > error_bound || p99 > p99_bound {
            judgement.broken.push(Broken::Recovery);
            judgement.mechanism.push(format!(
                "{} s after the window: error ratio {errors:.3} (control {:.3}, bound {error_bound:.3}), p99 {p99:.0} ms (bound {p99_bound:.0} ms): it did not come back",
                RECOVERY_GRACE_S,
                judgement.control.error_ratio()
            ));
        }
    }
    judgement.broken.sort();
    judgement.broken.dedup();
    judgement.severity = if judgement.broken.is_empty() {
        severity
    } else {
        1.0
    };
    judgement
}

/// The seconds of the load's timeline at which the fault went in and was taken back (the
/// method counts from the run's start, the timeline from the load's).
fn window_of(journal: &Journal, action: &Action) -> (Option<u64>, Option<u64>) {
    let zero_ms = journal.load_started_ms.unwrap_or(0);
    let second = |at_ms: u64| at_ms.saturating_sub(zero_ms) / 1000;
    let injected = journal.method.iter().find_map(|e| match e {
        Event::Injected { at_ms, .. } => Some(second(*at_ms)),
        _ => None,
    });
    let undone = journal
        .method
        .iter()
        .find_map(|e| match e {
            Event::Undone { at_ms, .. } => Some(second(*at_ms)),
            _ => None,
        })
        // A kill has nothing to take back: its window is the restart, a few seconds.
        .or_else(|| injected.map(|at| at + u64::from(space::window_s(action)).max(5)));
    (injected, undone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::auto::space::FaultKind;

    fn second(at_s: u64, requests: u64, errors: u64, p99_ms: f64) -> Second {
        Second {
            at_s,
            requests,
            errors,
            p99_ms: Some(p99_ms),
        }
    }

    fn journal(timeline: Vec<Second>, injected_ms: u64, undone_ms: u64) -> Journal {
        let mut journal: Journal = serde_json::from_value(serde_json::json!({
            "format": 1, "name": "t", "title": "t",
            "experiment": serde_json::to_value(
                crate::chaos::auto::space::experiment(&action()).expect("valid")).expect("json"),
            "seed": 1, "started_at": "", "duration_ms": 0, "verdict": "passed", "summary": "",
            "preflight": [], "method": [], "steady_state_after": [], "load": null,
            "timeline": [], "invariants": null,
        }))
        .expect("a journal");
        journal.timeline = timeline;
        journal.method = serde_json::from_value(serde_json::json!([
            { "event": "injected", "at_ms": injected_ms, "fault": "timeout", "target": null, "detail": "", "until_ms": null },
            { "event": "undone", "at_ms": undone_ms, "target": null, "detail": "" },
        ]))
        .expect("events");
        journal
    }

    fn action() -> Action {
        Action {
            fault: FaultKind::Timeout,
            target: "consumer-api->orchestrator".into(),
            intensity: 3,
        }
    }

    /// 10 s of control, 20 s of window, 25 s after, each second as given.
    fn run(during: (u64, f64), after: (u64, f64)) -> Journal {
        let mut timeline = Vec::new();
        for at in 1..10 {
            timeline.push(second(at, 10, 0, 60.0));
        }
        for at in 10..=30 {
            timeline.push(second(at, 10, during.0, during.1));
        }
        for at in 31..=55 {
            timeline.push(second(at, 10, after.0, after.1));
        }
        journal(timeline, 10_000, 30_000)
    }

    #[test]
    fn failing_fast_and_coming_back_is_no_finding() {
        let verdict = judge(&action(), &Violations::new(), &run((6, 3_100.0), (0, 70.0)));
        assert!(verdict.broken.is_empty(), "{verdict:?}");
        assert!(
            verdict.severity > 0.0 && verdict.severity < 1.0,
            "{verdict:?}"
        );
        assert_eq!(verdict.control.requests, 90);
        assert_eq!(verdict.component, "consumer-api");
    }

    #[test]
    fn answers_that_hang_through_the_window_are_a_latency_finding() {
        let verdict = judge(
            &action(),
            &Violations::new(),
            &run((2, 19_500.0), (0, 70.0)),
        );
        assert_eq!(verdict.broken, vec![Broken::Latency], "{verdict:?}");
        assert_eq!(verdict.severity, 1.0);
    }

    #[test]
    fn a_few_slow_seconds_are_retries_not_a_finding() {
        let mut journal = run((3, 3_000.0), (0, 70.0));
        for second in journal
            .timeline
            .iter_mut()
            .filter(|s| (20..23).contains(&s.at_s))
        {
            second.p99_ms = Some(9_500.0);
        }
        assert!(judge(&action(), &Violations::new(), &journal)
            .broken
            .is_empty());
    }

    #[test]
    fn errors_that_stay_after_the_window_are_a_recovery_finding() {
        let verdict = judge(&action(), &Violations::new(), &run((5, 3_000.0), (4, 90.0)));
        assert_eq!(verdict.broken, vec![Broken::Recovery], "{verdict:?}");
        let slow = judge(
            &action(),
            &Violations::new(),
            &run((5, 3_000.0), (0, 900.0)),
        );
        assert_eq!(slow.broken, vec![Broken::Recovery], "{slow:?}");
    }

    #[test]
    fn added_latency_is_allowed_for_but_no_more() {
        let latency = Action {
            fault: FaultKind::Latency,
            target: "consumer-api->orchestrator".into(),
            intensity: 3,
        };
        // 2 000 ms a call: up to 60 + 4 000 + 8 000 ms is explained.
        assert!(
            judge(&latency, &Violations::new(), &run((0, 11_000.0), (0, 70.0)))
                .broken
                .is_empty()
        );
        assert_eq!(
            judge(&latency, &Violations::new(), &run((0, 13_000.0), (0, 70.0))).broken,
            vec![Broken::Latency]
        );
    }

    #[test]
    fn a_paused_edge_service_explains_its_own_wait_but_a_paused_dependency_does_not() {
        let pause = |target: &str| Action {
            fault: FaultKind::Pause,
            target: target.into(),
            intensity: 3,
        };
        // Every answer of the window at the load's 10 s timeout.
        let hung = run((0, 10_000.0), (0, 70.0));
        assert!(judge(&pause("merchant-api"), &Violations::new(), &hung)
            .broken
            .is_empty());
        assert_eq!(
            judge(&pause("orchestrator"), &Violations::new(), &hung).broken,
            vec![Broken::Latency]
        );
    }

    #[test]
    fn money_that_was_missing_before_the_run_is_not_this_runs_finding() {
        let mut journal = run((3, 3_000.0), (0, 70.0));
        journal.invariants = serde_json::from_value(serde_json::json!({
            "ok": false, "converged_ms": 0,
            "checks": [{ "name": "merchant_lists_exact", "description": "", "ok": false,
                         "evidence": ["payment a is not on its merchant's list"] }],
        }))
        .expect("a report");
        let fresh = judge(&action(), &Violations::new(), &journal);
        assert_eq!(fresh.broken, vec![Broken::Money]);
        let before = violations(&journal);
        assert!(judge(&action(), &before, &journal).broken.is_empty());
        if let Some(report) = journal.invariants.as_mut() {
            report.checks[0]
                .evidence
                .push("payment b is not on its merchant's list".into());
        }
        assert_eq!(
            judge(&action(), &before, &journal).broken,
            vec![Broken::Money]
        );
    }

    #[test]
    fn money_is_put_on_the_component_its_evidence_points_at_not_the_faults_target() {
        let mut journal = run((3, 3_000.0), (0, 70.0));
        journal.invariants = serde_json::from_value(serde_json::json!({
            "ok": false, "converged_ms": 0,
            "checks": [{ "name": "merchant_lists_exact", "description": "", "ok": false,
                         "evidence": ["payment a completed but is not on its merchant's list"],
                         "component": "merchant-api" }],
        }))
        .expect("a report");
        let verdict = judge(&action(), &Violations::new(), &journal);
        assert_eq!(verdict.broken, vec![Broken::Money]);
        assert_eq!(verdict.component, "merchant-api");
        // A report from before the invariants located anything: the fault's target, as before.
        if let Some(report) = journal.invariants.as_mut() {
            report.checks[0].component = None;
        }
        let verdict = judge(&action(), &Violations::new(), &journal);
        assert_eq!(verdict.component, space::component_of(&action()));
    }

    #[test]
    fn errors_under_a_fault_the_platform_promises_to_ride_out_are_an_availability_finding() {
        let keycloak_cut = Action {
            fault: FaultKind::Cut,
            target: "consumer-api->keycloak".into(),
            intensity: 2,
        };
        // Two failed requests a second in ten: fine where the fault is on the payment's path,
        // not where the platform says payments go on.
        let journal = run((2, 80.0), (0, 70.0));
        assert!(judge(&action(), &Violations::new(), &journal)
            .broken
            .is_empty());
        let verdict = judge(&keycloak_cut, &Violations::new(), &journal);
        assert_eq!(verdict.broken, vec![Broken::Availability], "{verdict:?}");
        assert_eq!(verdict.component, "consumer-api");
        // Within the margin it is none.
        let quiet = run((0, 80.0), (0, 70.0));
        assert!(judge(&keycloak_cut, &Violations::new(), &quiet)
            .broken
            .is_empty());
    }

    #[test]
    fn a_failed_pre_flight_is_inconclusive_not_clean() {
        let mut journal = run((0, 60.0), (0, 60.0));
        journal.verdict = Verdict::PreflightFailed;
        let verdict = judge(&action(), &Violations::new(), &journal);
        assert!(verdict.inconclusive.is_some());
        assert!(verdict.broken.is_empty());
    }
}
