//! The seeded weaknesses (failpoints of effect `weakness` in `paykit::failpoints`), what
//! exposes each, and the proof that each matters: with the weakness on, its exposing action
//! is a finding in (nearly) every run; with it off, in (nearly) none.

use super::judge::Broken;
use super::space::{Action, FaultKind};
use crate::chaos::failpoints::{port_of, Admin};
use crate::runtime::components::ComponentName;
use crate::runtime::home::Home;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One seeded weakness and the action that exposes it.
#[derive(Debug, Clone, Serialize)]
pub struct Weakness {
    /// The failpoint that switches it on.
    pub point: &'static str,
    /// Where it is switched on (every instance).
    pub service: ComponentName,
    pub fault: FaultKind,
    pub target: &'static str,
    pub intensity: u8,
    /// What the judge should say, and on which component: for money, where the invariants'
    /// evidence puts it (the records, and the topic, say which side lost it); for the rest, the
    /// component the fault's target names (the caller of a route).
    pub broken: Broken,
    pub component: &'static str,
}

impl Weakness {
    pub fn action(&self) -> Action {
        Action {
            fault: self.fault,
            target: self.target.to_string(),
            intensity: self.intensity,
        }
    }
}

pub const WEAKNESSES: &[Weakness] = &[
    Weakness {
        point: "paykit.weakness.call-without-deadline",
        service: ComponentName::ConsumerApi,
        fault: FaultKind::Timeout,
        target: "consumer-api->orchestrator",
        intensity: 3,
        broken: Broken::Latency,
        component: "consumer-api",
    },
    Weakness {
        point: "paykit.weakness.relay-drops-failed-batch",
        service: ComponentName::Orchestrator,
        fault: FaultKind::Pause,
        target: "kafka",
        intensity: 3,
        broken: Broken::Money,
        // The invariants find its events missing from the topic: the relay's.
        component: "orchestrator",
    },
    Weakness {
        point: "paykit.weakness.breaker-stays-open",
        service: ComponentName::ConsumerApi,
        fault: FaultKind::Cut,
        target: "consumer-api->orchestrator",
        intensity: 3,
        broken: Broken::Recovery,
        component: "consumer-api",
    },
    Weakness {
        point: "paykit.weakness.consumer-skips-failed-event",
        service: ComponentName::MerchantApi,
        // Slow, not cut: the payments whose events it applies also go through merchant-api's
        // database, so a cut stops them too and nothing arrives to be skipped. At 500 ms a
        // round trip the payments still get through while an apply outlasts its bound.
        fault: FaultKind::Latency,
        target: "merchant-api->postgres",
        intensity: 2,
        broken: Broken::Money,
        component: "merchant-api",
    },
    Weakness {
        point: "paykit.weakness.relay-listens-only",
        service: ComponentName::Orchestrator,
        fault: FaultKind::Cut,
        target: "orchestrator->postgres",
        intensity: 1,
        broken: Broken::Money,
        component: "orchestrator",
    },
    Weakness {
        point: "paykit.weakness.consumer-stops-on-error",
        service: ComponentName::MerchantApi,
        fault: FaultKind::Kill,
        target: "kafka",
        intensity: 1,
        broken: Broken::Money,
        // The topic has the events; merchant-api's consumer never applies them.
        component: "merchant-api",
    },
    Weakness {
        point: "paykit.weakness.service-token-not-cached",
        service: ComponentName::ConsumerApi,
        fault: FaultKind::Cut,
        target: "consumer-api->keycloak",
        intensity: 2,
        broken: Broken::Availability,
        component: "consumer-api",
    },
    Weakness {
        point: "paykit.weakness.signing-keys-not-cached",
        service: ComponentName::MerchantApi,
        fault: FaultKind::Cut,
        target: "merchant-api->keycloak",
        intensity: 2,
        broken: Broken::Availability,
        component: "merchant-api",
    },
    Weakness {
        point: "paykit.weakness.retry-without-limit",
        service: ComponentName::MerchantApi,
        fault: FaultKind::Cut,
        target: "merchant-api->orchestrator",
        intensity: 3,
        broken: Broken::Latency,
        component: "merchant-api",
    },
    Weakness {
        point: "paykit.weakness.keys-dropped-when-refresh-fails",
        service: ComponentName::Orchestrator,
        fault: FaultKind::Cut,
        target: "orchestrator->keycloak",
        intensity: 2,
        broken: Broken::Availability,
        component: "orchestrator",
    },
    Weakness {
        point: "paykit.weakness.calls-share-one-connection",
        service: ComponentName::MerchantApi,
        // A silent callee: each call holds the one connection for its whole 3 s timeout, so
        // the queue behind it grows by the arrival rate and a merchant's charge (its own
        // 10 s deadline) waits it out. Latency would have to slow each call past 1/rate to
        // queue at all, and the judge allows twice a latency fault's delay; 10 s of silence
        // (×2, on consumer-api) queued too few seconds: 0 of 2.
        fault: FaultKind::Timeout,
        target: "merchant-api->orchestrator",
        intensity: 3,
        broken: Broken::Latency,
        component: "merchant-api",
    },
    Weakness {
        point: "orchestrator.weakness.waits-for-publish",
        service: ComponentName::Orchestrator,
        fault: FaultKind::Pause,
        target: "kafka",
        intensity: 2,
        broken: Broken::Availability,
        component: "kafka",
    },
];

/// Switches a weakness on (`return`) or off on every instance of its service.
pub async fn switch(home: &Home, weakness: &Weakness, on: bool) -> anyhow::Result<()> {
    let admin = Admin::new(home).await?;
    for instance in 0..weakness.service.instances(home) {
        let port = port_of(home, weakness.service, instance)?;
        if on {
            admin.set(port, weakness.point, "return").await?;
        } else {
            admin.remove(port, weakness.point).await?;
        }
    }
    Ok(())
}

/// The counts of one weakness's proof.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proof {
    pub point: String,
    pub action: Action,
    pub runs: u32,
    /// Runs with the weakness on that the judge found (the expected broken thing and component).
    pub found_on: u32,
    /// Runs with it off that the judge found anything in.
    pub found_off: u32,
    pub journals: Vec<String>,
}

/// Runs the exposing action `runs` times with the weakness off, then `runs` times on (always
/// switched off again at the end).
pub async fn prove(
    home: &Home,
    project: &Path,
    weakness: &Weakness,
    runs: u32,
    seed: u64,
    progress: impl Fn(&str),
) -> anyhow::Result<Proof> {
    let action = weakness.action();
    let mut proof = Proof {
        point: weakness.point.to_string(),
        action: action.clone(),
        runs,
        found_on: 0,
        found_off: 0,
        journals: Vec::new(),
    };
    switch(home, weakness, false).await?;
    let mut before = super::baseline(home).await;
    for on in [false, true] {
        for n in 0..runs {
            // Each run with it on starts from a sound platform: a weakness may leave it broken
            // (a breaker that never closes) until it is off again.
            if on {
                switch(home, weakness, false).await?;
                super::steady(home).await?;
                switch(home, weakness, true).await?;
            }
            progress(&format!(
                "{} {}: run {}/{runs}",
                weakness.point,
                if on { "on" } else { "off" },
                n + 1
            ));
            let outcome = super::run_action(
                home,
                project,
                &action,
                seed.wrapping_add(u64::from(n)),
                &mut before,
            )
            .await;
            let (_, judgement, journal) = match outcome {
                Ok(outcome) => outcome,
                Err(error) => {
                    let _ = switch(home, weakness, false).await;
                    return Err(error);
                }
            };
            proof.journals.push(journal.display().to_string());
            if on {
                if judgement.broken.contains(&weakness.broken)
                    && judgement.component == weakness.component
                {
                    proof.found_on += 1;
                }
            } else if !judgement.broken.is_empty() {
                proof.found_off += 1;
            }
        }
    }
    switch(home, weakness, false).await?;
    Ok(proof)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_weakness_is_a_failpoint_its_service_offers_and_its_action_is_in_the_space() {
        let space = super::super::space::all(super::super::space::Offer { chaos: true });
        for weakness in WEAKNESSES {
            let point = paykit::failpoints::offered(weakness.service.as_str())
                .find(|p| p.name == weakness.point)
                .unwrap_or_else(|| {
                    panic!("{} offers no {}", weakness.service.as_str(), weakness.point)
                });
            assert_eq!(point.effect, paykit::failpoints::Effect::Weakness);
            assert!(space.contains(&weakness.action()), "{}", weakness.point);
        }
        let seeded = paykit::failpoints::CATALOGUE
            .iter()
            .filter(|p| p.effect == paykit::failpoints::Effect::Weakness)
            .count();
        assert_eq!(
            seeded,
            WEAKNESSES.len(),
            "every seeded weakness has its exposing action"
        );
    }
}
