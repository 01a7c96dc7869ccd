//! The supervisor's view of the platform, kept in `.paytool/run/state.json`.
//!
//! The supervisor is its only writer (atomically, after every change); `up` and `status` read
//! it. `status --json` adds live health to it; docs/status-json.md documents that document.

use crate::runtime::components::ComponentName;
use crate::runtime::home::{write_atomic, Home};
use crate::support::procfs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Components are being started in order.
    Starting,
    /// Every component became ready at least once; the supervisor watches them.
    Running,
    /// A component could not be started; the supervisor stops what it started.
    Failed,
    Stopping,
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentPhase {
    Pending,
    Starting,
    Ready,
    /// Running, but its readiness probe fails (a service whose database is gone, say): out of
    /// the gateway's upstream until it passes again.
    Unready,
    /// Being replaced by `paytool rollout`: out of the gateway's upstream, draining, then
    /// started again.
    RollingOut,
    /// It exited; the supervisor starts it again after a backoff.
    Restarting,
    /// Its binaries are being built in the background (`paytool up` on a machine that has not
    /// built them yet): the rest of the platform runs meanwhile, and the supervisor starts it
    /// as soon as the build is done. Not a failure: `status` does not count it as unhealthy.
    Building,
    /// It exited too often or never became ready; the supervisor gave up on it.
    Failed,
    Stopped,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComponentState {
    pub name: ComponentName,
    /// Which of its instances (0 unless a service runs replicas); missing in state files
    /// written before replicas existed.
    #[serde(default)]
    pub instance: u8,
    pub state: ComponentPhase,
    pub pid: Option<u32>,
    pub ports: BTreeMap<String, u16>,
    pub urls: Vec<String>,
    pub restarts: u32,
    /// Milliseconds from spawn to ready, for the latest start.
    pub ready_ms: Option<u64>,
    pub message: Option<String>,
    pub log: PathBuf,
    /// Seconds this instance's clock is off the machine's (a chaos clock skew); 0 normally.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub clock_offset_s: i32,
}

fn is_zero(offset_s: &i32) -> bool {
    *offset_s == 0
}

impl ComponentState {
    /// `consumer-api`, or `consumer-api.1` for its second instance.
    pub fn id(&self) -> String {
        crate::runtime::components::instance_id(self.name, self.instance)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeState {
    pub supervisor_pid: u32,
    pub started_at: String,
    pub phase: Phase,
    pub message: Option<String>,
    pub components: Vec<ComponentState>,
}

impl RuntimeState {
    pub fn path(home: &Home) -> PathBuf {
        home.run_dir().join("state.json")
    }

    pub fn load(home: &Home) -> Option<Self> {
        let text = std::fs::read_to_string(Self::path(home)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Why the state file is there but not readable as this version's (a paytool that knows
    /// other components wrote it), or `None` when it reads or is absent.
    pub fn unreadable(home: &Home) -> Option<String> {
        let text = std::fs::read_to_string(Self::path(home)).ok()?;
        serde_json::from_str::<Self>(&text).err().map(|error| {
            format!(
                "{} was written by another paytool version ({error})",
                Self::path(home).display()
            )
        })
    }

    /// The component pids the state file records, read without knowing the components' names,
    /// so that `down` stops what another version of paytool started.
    pub fn recorded_pids(home: &Home) -> Vec<u32> {
        let Ok(text) = std::fs::read_to_string(Self::path(home)) else {
            return Vec::new();
        };
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
            return Vec::new();
        };
        value["components"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|component| component["pid"].as_u64())
            .filter_map(|pid| u32::try_from(pid).ok())
            .collect()
    }

    pub fn save(&self, home: &Home) -> anyhow::Result<()> {
        write_atomic(
            &Self::path(home),
            serde_json::to_string_pretty(self)?.as_bytes(),
            0o644,
        )
    }

    pub fn component_mut(
        &mut self,
        name: ComponentName,
        instance: u8,
    ) -> Option<&mut ComponentState> {
        self.components
            .iter_mut()
            .find(|c| c.name == name && c.instance == instance)
    }
}

/// The live supervisor's pid, or the one-line failure (exit 7) that commands needing the
/// running platform give.
pub fn require_running(home: &Home) -> anyhow::Result<u32> {
    running_supervisor(home).ok_or_else(|| {
        crate::support::exit::fail(
            crate::support::exit::Code::NotRunning,
            "the platform is not running: start it with `paytool up`",
        )
    })
}

/// The live supervisor's pid, if one runs for this installation.
pub fn running_supervisor(home: &Home) -> Option<u32> {
    let text = std::fs::read_to_string(home.run_dir().join("supervisor.pid")).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    is_alive(pid).then_some(pid)
}

pub fn is_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    // Signal 0 checks existence; a zombie (exited, not yet reaped) counts as gone.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None).is_ok()
        && !procfs::process(pid).is_some_and(|p| p.zombie)
}

/// Whether any process is left in the process group (each component leads its own group).
pub fn group_alive(pgid: u32) -> bool {
    let Ok(raw) = i32::try_from(pgid) else {
        return false;
    };
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(raw), None).is_ok()
}
