//! Injecting a fault into the running platform, and taking it back.
//!
//! A process fault acts on the component's process group (the supervisor makes each
//! component's leader a group leader): a SIGKILL of a launcher alone would leave the engine it
//! started running, and a SIGSTOP of a leader alone would leave its workers answering.

use super::experiment::{Fault, Target};
use crate::runtime::components::ComponentName;
use crate::runtime::home::Home;
use crate::runtime::state::RuntimeState;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Serialize;

/// One process that a fault hit: which instance, and the group it led.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub component: ComponentName,
    pub instance: u8,
    pub pid: u32,
}

impl Hit {
    pub fn id(&self) -> String {
        crate::runtime::components::instance_id(self.component, self.instance)
    }
}

/// What must be undone when the fault's window ends (or at rollback).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "undo", rename_all = "kebab-case")]
pub enum Undo {
    /// Nothing: the supervisor restarts what was killed or stopped.
    Nothing,
    /// SIGCONT to the group that was stopped.
    Resume { hit: Hit },
}

/// What the fault did, for the journal.
#[derive(Debug, Clone, Serialize)]
pub struct Injected {
    pub hit: Option<Hit>,
    pub undo: Undo,
    pub detail: String,
}

/// The instances of a component that the supervisor runs now, with their pids.
fn running(home: &Home, component: ComponentName) -> Vec<Hit> {
    RuntimeState::load(home)
        .map(|state| {
            state
                .components
                .iter()
                .filter(|c| c.name == component)
                .filter_map(|c| {
                    c.pid.map(|pid| Hit {
                        component,
                        instance: c.instance,
                        pid,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The instance a target names, or one chosen with the run's random source.
pub fn resolve(home: &Home, target: &Target, rng: &mut StdRng) -> anyhow::Result<Hit> {
    let mut candidates = running(home, target.component);
    candidates.sort_by_key(|hit| hit.instance);
    match target.instance {
        Some(instance) => candidates
            .into_iter()
            .find(|hit| hit.instance == instance)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{} has no running instance {instance}",
                    target.component.as_str()
                )
            }),
        None => candidates.choose(rng).cloned().ok_or_else(|| {
            anyhow::anyhow!(
                "{} has no running instance (is it part of this installation?)",
                target.component.as_str()
            )
        }),
    }
}

fn signal_group(hit: &Hit, signal: Signal) -> anyhow::Result<()> {
    let pid = i32::try_from(hit.pid)?;
    killpg(Pid::from_raw(pid), signal)
        .map_err(|errno| anyhow::anyhow!("{signal} to {}'s group {pid}: {errno}", hit.id()))
}

/// Injects one fault. The caller undoes it with [`undo`] when its window ends.
pub async fn inject(home: &Home, fault: &Fault, rng: &mut StdRng) -> anyhow::Result<Injected> {
    match fault {
        Fault::Kill { target } => {
            let hit = resolve(home, target, rng)?;
            signal_group(&hit, Signal::SIGKILL)?;
            Ok(Injected {
                detail: format!("SIGKILL to {} (group {})", hit.id(), hit.pid),
                hit: Some(hit),
                undo: Undo::Nothing,
            })
        }
        Fault::Terminate { target } => {
            let hit = resolve(home, target, rng)?;
            nix::sys::signal::kill(Pid::from_raw(i32::try_from(hit.pid)?), Signal::SIGTERM)?;
            Ok(Injected {
                detail: format!("SIGTERM to {} ({})", hit.id(), hit.pid),
                hit: Some(hit),
                undo: Undo::Nothing,
            })
        }
        Fault::Pause { target, duration_s } => {
            let hit = resolve(home, target, rng)?;
            signal_group(&hit, Signal::SIGSTOP)?;
            Ok(Injected {
                detail: format!(
                    "SIGSTOP to {} (group {}) for {duration_s} s",
                    hit.id(),
                    hit.pid
                ),
                hit: Some(hit.clone()),
                undo: Undo::Resume { hit },
            })
        }
        Fault::Failover => {
            let outcome = crate::runtime::db::switchover(home).await?;
            Ok(Injected {
                hit: None,
                undo: Undo::Nothing,
                detail: format!(
                    "switchover from {} to {} in {} ms",
                    outcome.from, outcome.to, outcome.duration_ms
                ),
            })
        }
    }
}

/// Takes a fault back. Idempotent: resuming a group that runs is harmless, and a group that is
/// gone (the supervisor replaced it) has nothing left to resume.
pub fn undo(undo: &Undo) -> anyhow::Result<()> {
    match undo {
        Undo::Nothing => Ok(()),
        Undo::Resume { hit } => match signal_group(hit, Signal::SIGCONT) {
            Ok(()) => Ok(()),
            Err(_) if !crate::runtime::state::is_alive(hit.pid) => Ok(()),
            Err(error) => Err(error),
        },
    }
}

/// SIGCONT to every component group the supervisor knows: the `resume-all` rollback, so that
/// nothing stays frozen whatever happened to the run.
pub fn resume_all(home: &Home) -> usize {
    let Some(state) = RuntimeState::load(home) else {
        return 0;
    };
    state
        .components
        .iter()
        .filter_map(|c| c.pid)
        .filter(|pid| {
            i32::try_from(*pid)
                .ok()
                .is_some_and(|pid| killpg(Pid::from_raw(pid), Signal::SIGCONT).is_ok())
        })
        .count()
}

/// Whether a process is stopped (state `T`): how the tests see that a pause took effect and
/// was taken back.
pub fn is_stopped(pid: u32) -> bool {
    crate::support::procfs::process(pid).is_some_and(|p| p.stopped)
}
