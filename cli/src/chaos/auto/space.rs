//! The closed action space of `paytool chaos auto`: which fault, where, how hard. Every action
//! is made into an ordinary experiment (the same schema, the same run), so whatever a planner
//! proposes is bounded by construction: one fault at a time, a window of at most
//! [`WINDOW_S_MAX`], only the components and routes of the allow-list.

use crate::chaos::experiment::{self, Direction, Experiment, Fault, Target};
use crate::runtime::components::toxiproxy::{Route, ROUTES};
use crate::runtime::components::ComponentName;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The longest fault window an action may have.
pub const WINDOW_S_MAX: u32 = 20;
/// Intensities run 1 (mild) to this (the strongest the space allows).
pub const INTENSITY_MAX: u8 = 3;
/// Seconds of load before the fault: the control window the judge compares with.
pub const CONTROL_S: u32 = 10;
/// Seconds of load after the window: the recovery the judge asks for.
pub const RECOVERY_S: u32 = 20;
/// The load under every action: the smoke scenario at this rate.
pub const LOAD_RATE_PER_S: u32 = 10;

pub use crate::args::FaultKind;

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        Self::Kill,
        Self::Pause,
        Self::Latency,
        Self::Timeout,
        Self::ResetPeer,
        Self::Cut,
        Self::CpuPressure,
        Self::DiskFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Pause => "pause",
            Self::Latency => "latency",
            Self::Timeout => "timeout",
            Self::ResetPeer => "reset-peer",
            Self::Cut => "cut",
            Self::CpuPressure => "cpu-pressure",
            Self::DiskFull => "disk-full",
        }
    }

    fn is_network(self) -> bool {
        matches!(
            self,
            Self::Latency | Self::Timeout | Self::ResetPeer | Self::Cut
        )
    }
}

/// The components a process fault may hit: the services and the engines they depend on. The
/// gateway, Keycloak and the observability stack are left out: breaking them tests the
/// clients, not the payments.
pub const PROCESS_TARGETS: [ComponentName; 5] = [
    ComponentName::Orchestrator,
    ComponentName::ConsumerApi,
    ComponentName::MerchantApi,
    ComponentName::Kafka,
    ComponentName::Postgres,
];

/// One point of the space.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Action {
    pub fault: FaultKind,
    /// A component (`orchestrator`), a route (`consumer-api->orchestrator`), or `machine` for
    /// CPU pressure.
    pub target: String,
    /// 1 (mild) to 3 (strong).
    #[schemars(range(min = 1, max = 3))]
    pub intensity: u8,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} ×{}",
            self.fault.as_str(),
            self.target,
            self.intensity
        )
    }
}

/// What the installation offers: network faults need `--chaos` (Toxiproxy), and so does a
/// full disk (Kafka's own volume).
#[derive(Debug, Clone, Copy)]
pub struct Offer {
    pub chaos: bool,
}

/// Every action the installation offers, in a stable order.
pub fn all(offer: Offer) -> Vec<Action> {
    let mut out = Vec::new();
    for fault in FaultKind::ALL {
        let targets: Vec<String> = match fault {
            FaultKind::Kill | FaultKind::Pause => PROCESS_TARGETS
                .iter()
                .map(|c| c.as_str().to_string())
                .collect(),
            FaultKind::CpuPressure => vec!["machine".into()],
            FaultKind::DiskFull if offer.chaos => vec![ComponentName::Kafka.as_str().into()],
            FaultKind::DiskFull => Vec::new(),
            _ if offer.chaos => ROUTES.iter().map(route_name).collect(),
            _ => Vec::new(),
        };
        let intensities = if fault == FaultKind::Kill {
            1..=1
        } else {
            1..=INTENSITY_MAX
        };
        for target in targets {
            for intensity in intensities.clone() {
                out.push(Action {
                    fault,
                    target: target.clone(),
                    intensity,
                });
            }
        }
    }
    out
}

/// `consumer-api->orchestrator`.
pub fn route_name(route: &Route) -> String {
    format!("{}->{}", route.from.as_str(), route.to.as_str())
}

fn route_of(target: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| route_name(r) == target)
}

/// The component a finding on this action is put on: the target, or the caller of a route
/// (whose handling of the broken call is what shows).
pub fn component_of(action: &Action) -> String {
    match action.target.split_once("->") {
        Some((from, _)) => from.to_string(),
        None => action.target.clone(),
    }
}

/// Whether the platform promises that payments go on through this action's fault: Kafka is
/// off the payment's path (the outboxes keep the events until it is back) and so is Keycloak
/// for the services (their tokens and its signing keys are cached). docs/resilience.md says
/// so; the judge holds the platform to it.
pub fn promised(action: &Action) -> bool {
    let kafka = ComponentName::Kafka.as_str();
    match action.target.split_once("->") {
        Some((_, to)) => to == ComponentName::Keycloak.as_str(),
        None => action.target == kafka,
    }
}

/// How long the action's fault lasts.
pub fn window_s(action: &Action) -> u32 {
    match action.fault {
        FaultKind::Kill => 0,
        _ => [5, 10, WINDOW_S_MAX][usize::from(action.intensity.clamp(1, INTENSITY_MAX) - 1)],
    }
}

/// The services the load reaches directly, through the gateway.
pub const EDGE_TARGETS: [ComponentName; 2] =
    [ComponentName::ConsumerApi, ComponentName::MerchantApi];

/// The latency an action adds (what the judge allows for): to each call of its route for a
/// network fault; for a paused service the load reaches directly, its whole pause. A frozen
/// process holds every request it has accepted until it resumes, and the gateway has no other
/// instance of it to try: that wait is the fault itself, not the platform's answer to it
/// (until 2026-12-07 it was not allowed for, and a 20 s pause of merchant-api was judged a
/// hang on a platform with every weakness off). A paused dependency is another matter: its
/// callers' deadlines must still answer fast, and that is what the judge looks for.
pub fn added_latency_ms(action: &Action) -> u32 {
    match action.fault {
        FaultKind::Latency => latency_ms(action.intensity),
        FaultKind::Pause
            if EDGE_TARGETS
                .iter()
                .any(|edge| edge.as_str() == action.target) =>
        {
            window_s(action) * 1_000
        }
        _ => 0,
    }
}

fn latency_ms(intensity: u8) -> u32 {
    [100, 500, 2_000][usize::from(intensity.clamp(1, INTENSITY_MAX) - 1)]
}

/// The fault an action stands for; an error names what is wrong with it.
pub fn fault(action: &Action) -> Result<Fault, String> {
    if !(1..=INTENSITY_MAX).contains(&action.intensity) {
        return Err(format!(
            "intensity {} is not 1 to {INTENSITY_MAX}",
            action.intensity
        ));
    }
    let duration_s = window_s(action).max(1);
    let process_target = || -> Result<Target, String> {
        PROCESS_TARGETS
            .iter()
            .find(|c| c.as_str() == action.target)
            .map(|component| Target {
                component: *component,
                instance: None,
            })
            .ok_or_else(|| {
                format!(
                    "{} is not a target for {} (one of {})",
                    action.target,
                    action.fault.as_str(),
                    PROCESS_TARGETS
                        .iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    };
    let route = || {
        route_of(&action.target).ok_or_else(|| {
            format!(
                "{} is not a route (one of {})",
                action.target,
                ROUTES.iter().map(route_name).collect::<Vec<_>>().join(", ")
            )
        })
    };
    Ok(match action.fault {
        FaultKind::Kill => Fault::Kill {
            target: process_target()?,
        },
        FaultKind::Pause => Fault::Pause {
            target: process_target()?,
            duration_s,
        },
        FaultKind::CpuPressure => {
            if action.target != "machine" {
                return Err("cpu-pressure's target is `machine`".into());
            }
            Fault::CpuPressure {
                workers: 2,
                load_percent: [50, 80, 100][usize::from(action.intensity - 1)],
                duration_s,
            }
        }
        FaultKind::DiskFull => {
            if action.target != ComponentName::Kafka.as_str() {
                return Err("disk-full's target is `kafka`".into());
            }
            Fault::DiskFull {
                target: Target {
                    component: ComponentName::Kafka,
                    instance: None,
                },
                duration_s,
            }
        }
        kind if kind.is_network() => {
            let route = route()?;
            let (from, to) = (route.from, route.to);
            match kind {
                FaultKind::Latency => Fault::Latency {
                    from,
                    to,
                    latency_ms: latency_ms(action.intensity),
                    jitter_ms: 0,
                    direction: Some(Direction::Downstream),
                    duration_s,
                },
                FaultKind::Timeout => Fault::Timeout {
                    from,
                    to,
                    timeout_ms: 0,
                    direction: None,
                    duration_s,
                },
                FaultKind::ResetPeer => Fault::ResetPeer {
                    from,
                    to,
                    direction: None,
                    duration_s,
                },
                _ => Fault::Cut {
                    from,
                    to,
                    duration_s,
                },
            }
        }
        _ => unreachable!("every kind is matched above"),
    })
}

/// The experiment that runs an action: the smoke load from before the fault to well after
/// it, the fault after the control window, every rollback, the invariants after. Its
/// hypothesis is lenient on purpose (the judge, not the hypothesis, decides a finding).
pub fn experiment(action: &Action) -> Result<Experiment, String> {
    let fault = fault(action)?;
    let window_s = window_s(action);
    let needs_chaos = action.fault.is_network() || action.fault == FaultKind::DiskFull;
    let text = serde_yaml::to_string(&serde_json::json!({
        "title": format!("auto: {action}"),
        "tags": ["auto"],
        "requires": { "chaos": needs_chaos },
        "steady_state": { "title": "the platform answers and the ledger verifies",
                          "probes": [ { "type": "ready" }, { "type": "ledger" } ] },
        "load": { "scenario": "smoke", "rate_per_s": LOAD_RATE_PER_S,
                  "duration_s": CONTROL_S + window_s + RECOVERY_S,
                  "error_ratio_max": 1.0 },
        "method": [ { "wait": CONTROL_S }, { "fault": fault }, { "wait": window_s + RECOVERY_S - 2 } ],
        "rollbacks": [ { "type": "resume-all" }, { "type": "reset-network" },
                       { "type": "wait-ready", "timeout_s": 120 } ],
        "settle_s": 60,
    }))
    .map_err(|e| e.to_string())?;
    // Through the same parser as a file: the schema's bounds hold for every action.
    experiment::parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::experiment::Step;

    #[test]
    fn kafka_and_the_routes_to_keycloak_are_promised_and_the_rest_are_not() {
        let promised = |fault, target: &str| {
            super::promised(&Action {
                fault,
                target: target.into(),
                intensity: 1,
            })
        };
        assert!(promised(FaultKind::Kill, "kafka"));
        assert!(promised(FaultKind::DiskFull, "kafka"));
        assert!(promised(FaultKind::Cut, "merchant-api->keycloak"));
        assert!(!promised(FaultKind::Cut, "consumer-api->orchestrator"));
        assert!(!promised(FaultKind::Kill, "postgres"));
    }

    #[test]
    fn every_action_of_the_space_is_a_valid_experiment_within_the_bounds() {
        let actions = all(Offer { chaos: true });
        assert!(actions.len() > 40, "{}", actions.len());
        for action in &actions {
            let experiment = experiment(action).unwrap_or_else(|e| panic!("{action}: {e}"));
            let faults: Vec<&Fault> = experiment
                .method
                .iter()
                .filter_map(|s| match s {
                    Step::Fault(f) => Some(f),
                    _ => None,
                })
                .collect();
            assert_eq!(faults.len(), 1, "{action}: one fault at a time");
            assert!(faults[0].duration_s() <= WINDOW_S_MAX, "{action}");
        }
    }

    #[test]
    fn without_toxiproxy_the_space_has_no_network_fault_and_no_full_disk() {
        let actions = all(Offer { chaos: false });
        assert!(!actions.is_empty());
        assert!(actions
            .iter()
            .all(|a| !a.fault.is_network() && a.fault != FaultKind::DiskFull));
    }

    #[test]
    fn an_action_outside_the_space_is_refused_saying_what_is_allowed() {
        let bad = [
            Action {
                fault: FaultKind::Kill,
                target: "gateway".into(),
                intensity: 1,
            },
            Action {
                fault: FaultKind::Latency,
                target: "orchestrator->kafka".into(),
                intensity: 2,
            },
            Action {
                fault: FaultKind::Pause,
                target: "kafka".into(),
                intensity: 4,
            },
            Action {
                fault: FaultKind::DiskFull,
                target: "postgres".into(),
                intensity: 1,
            },
        ];
        for action in bad {
            assert!(fault(&action).is_err(), "{action} was taken");
        }
        let error = fault(&Action {
            fault: FaultKind::Kill,
            target: "gateway".into(),
            intensity: 1,
        })
        .expect_err("refused");
        assert!(error.contains("orchestrator"), "{error}");
    }

    #[test]
    fn a_route_finding_is_put_on_its_caller() {
        let action = Action {
            fault: FaultKind::Timeout,
            target: "consumer-api->orchestrator".into(),
            intensity: 3,
        };
        assert_eq!(component_of(&action), "consumer-api");
        assert_eq!(window_s(&action), WINDOW_S_MAX);
    }
}
