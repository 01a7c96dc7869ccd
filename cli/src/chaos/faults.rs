//! Injecting a fault into the running platform, and taking it back.
//!
//! A process fault acts on the component's process group (the supervisor makes each
//! component's leader a group leader): a SIGKILL of a launcher alone would leave the engine it
//! started running, and a SIGSTOP of a leader alone would leave its workers answering.
//!
//! A network fault acts on a Toxiproxy route (`paytool up --chaos`): toxics added to the
//! route's proxy, or the proxy disabled, and taken back through the same API.

use super::experiment::{Direction, Fault, Target};
use crate::runtime::components::toxiproxy::{self, Api, Route, Stream, Toxic, ToxicKind};
use crate::runtime::components::ComponentName;
use crate::runtime::home::Home;
use crate::runtime::state::RuntimeState;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One process that a fault hit: which instance, and the group it led.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub component: ComponentName,
    pub instance: u8,
    pub pid: u32,
}

impl Injected {
    /// What it hit, for the journal: an instance, or a route.
    pub fn subject(&self) -> Option<String> {
        self.hit
            .as_ref()
            .map(Hit::id)
            .or_else(|| self.route.clone())
    }
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
    /// SIGKILL to the process group of a load generator the fault started (stress-ng).
    StopLoad { pid: u32, what: String },
    /// The toxics removed from a Toxiproxy route's proxy.
    RemoveToxics {
        api: String,
        proxy: String,
        toxics: Vec<String>,
    },
    /// A Toxiproxy route's proxy enabled again.
    EnableProxy { api: String, proxy: String },
    /// The instance restarted on the machine's clock, through the supervisor's socket.
    ClockBack { socket: PathBuf, hit: Hit },
    /// The filler deleted from a data volume.
    Unfill { dir: PathBuf },
    /// A failpoint turned off on the instance listening on `port`.
    FailpointOff { port: u16, name: String },
}

/// What the fault did, for the journal.
#[derive(Debug, Clone, Serialize)]
pub struct Injected {
    pub hit: Option<Hit>,
    /// The Toxiproxy route of a network fault.
    pub route: Option<String>,
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

/// Whether `pid` is still one of this installation's components: it leads its own process
/// group and its parent is the installation's supervisor. A pid read from the state can be
/// stale (the component restarted), and on a busy machine pids come round again within
/// minutes (pid_max is 32768 here): a signal to a stale pid's group could stop a stranger's
/// processes (a shell, a build), and nothing would ever continue them.
fn is_component(home: &Home, pid: u32) -> bool {
    let supervisor = crate::runtime::state::running_supervisor(home);
    crate::support::procfs::process(pid)
        .is_some_and(|p| p.group == pid && !p.zombie && Some(p.parent) == supervisor)
}

fn signal_group(home: &Home, hit: &Hit, signal: Signal) -> anyhow::Result<()> {
    anyhow::ensure!(
        is_component(home, hit.pid),
        "{} is no longer process {} (it restarted or stopped): no {signal} sent",
        hit.id(),
        hit.pid
    );
    let pid = i32::try_from(hit.pid)?;
    killpg(Pid::from_raw(pid), signal)
        .map_err(|errno| anyhow::anyhow!("{signal} to {}'s group {pid}: {errno}", hit.id()))
}

/// The instances a target names: the one given, or every one the installation runs.
fn instances_of(home: &Home, target: &Target) -> Vec<u8> {
    target.instance.map_or_else(
        || (0..target.component.instances(home)).collect(),
        |instance| vec![instance],
    )
}

/// What a fault needs besides its target, checked by the pre-flight: libfaketime for a clock
/// skew, a volume of its own (`paytool up --chaos`, as root) for a disk-full fault, services
/// built with failpoints (and paytool's operator account in the realm) for a failpoint.
pub async fn ready_to_inject(home: &Home, fault: &Fault) -> anyhow::Result<()> {
    match fault {
        Fault::Failpoint { target, name, .. } => {
            let admin = super::failpoints::Admin::new(home).await?;
            let instances = instances_of(home, target);
            for instance in instances {
                let port = super::failpoints::port_of(home, target.component, instance)?;
                let points = admin.list(port).await.map_err(|error| {
                    anyhow::anyhow!(
                        "{}'s failpoints: {error:#}",
                        crate::runtime::components::instance_id(target.component, instance)
                    )
                })?;
                let active = points
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["name"] == name.as_str() && !p["actions"].is_null());
                anyhow::ensure!(
                    !active,
                    "{name} is set already on {} (a run that did not end?)",
                    crate::runtime::components::instance_id(target.component, instance)
                );
            }
        }
        Fault::ClockSkew { .. } => {
            let library = crate::runtime::supervisor::FAKETIME_LIBRARY;
            anyhow::ensure!(
                Path::new(library).exists(),
                "{library} is missing: `paytool setup` installs faketime"
            );
        }
        Fault::DiskFull { target, .. } => {
            let instances = instances_of(home, target);
            for instance in instances {
                let dir = crate::runtime::components::kafka::data_dir(home, instance);
                anyhow::ensure!(
                    crate::runtime::volume::is_mountpoint(&dir),
                    "{} is on the machine's disk, not a volume of its own: an installation made with `paytool up --chaos` as root has one",
                    dir.display()
                );
            }
        }
        _ => {}
    }
    Ok(())
}

/// Injects one fault. The caller undoes it with [`undo`] when its window ends.
pub async fn inject(home: &Home, fault: &Fault, rng: &mut StdRng) -> anyhow::Result<Injected> {
    match fault {
        Fault::Kill { target } => {
            let hit = resolve(home, target, rng)?;
            signal_group(home, &hit, Signal::SIGKILL)?;
            Ok(Injected {
                detail: format!("SIGKILL to {} (group {})", hit.id(), hit.pid),
                hit: Some(hit),
                route: None,
                undo: Undo::Nothing,
            })
        }
        Fault::Terminate { target } => {
            let hit = resolve(home, target, rng)?;
            anyhow::ensure!(
                is_component(home, hit.pid),
                "{} is no longer process {}: no SIGTERM sent",
                hit.id(),
                hit.pid
            );
            nix::sys::signal::kill(Pid::from_raw(i32::try_from(hit.pid)?), Signal::SIGTERM)?;
            Ok(Injected {
                detail: format!("SIGTERM to {} ({})", hit.id(), hit.pid),
                hit: Some(hit),
                route: None,
                undo: Undo::Nothing,
            })
        }
        Fault::Pause { target, duration_s } => {
            let hit = resolve(home, target, rng)?;
            signal_group(home, &hit, Signal::SIGSTOP)?;
            Ok(Injected {
                detail: format!(
                    "SIGSTOP to {} (group {}) for {duration_s} s",
                    hit.id(),
                    hit.pid
                ),
                hit: Some(hit.clone()),
                route: None,
                undo: Undo::Resume { hit },
            })
        }
        Fault::ClockSkew {
            target,
            offset_s,
            duration_s,
        } => {
            let hit = resolve(home, target, rng)?;
            let restarted =
                crate::runtime::rollout::skew_clock(home, hit.component, hit.instance, *offset_s)
                    .await?;
            let hit = Hit {
                pid: restarted.new_pid.unwrap_or(hit.pid),
                ..hit
            };
            Ok(Injected {
                detail: format!(
                    "{} restarted ({}) with its clock {offset_s:+} s off for {duration_s} s; ready in {} ms",
                    hit.id(),
                    hit.pid,
                    restarted.ready_ms
                ),
                hit: Some(hit.clone()),
                route: None,
                undo: Undo::ClockBack {
                    socket: crate::runtime::rollout::socket_path(home),
                    hit,
                },
            })
        }
        Fault::Failpoint {
            target,
            name,
            actions,
            duration_s,
        } => {
            let hit = resolve(home, target, rng)?;
            let port = super::failpoints::port_of(home, hit.component, hit.instance)?;
            super::failpoints::Admin::new(home)
                .await?
                .set(port, name, actions)
                .await
                .map_err(|error| anyhow::anyhow!("setting {name} on {}: {error:#}", hit.id()))?;
            Ok(Injected {
                detail: format!("{name} set to {actions} on {} for {duration_s} s", hit.id()),
                hit: Some(hit),
                route: None,
                undo: Undo::FailpointOff {
                    port,
                    name: name.clone(),
                },
            })
        }
        Fault::DiskFull { target, duration_s } => {
            let hit = resolve(home, target, rng)?;
            let dir = crate::runtime::components::kafka::data_dir(home, hit.instance);
            let taken = crate::runtime::volume::fill(&dir)?;
            Ok(Injected {
                detail: format!(
                    "{}'s volume {} filled ({} MiB) for {duration_s} s",
                    hit.id(),
                    dir.display(),
                    taken / (1024 * 1024)
                ),
                hit: Some(hit),
                route: None,
                undo: Undo::Unfill { dir },
            })
        }
        Fault::CpuPressure {
            workers,
            load_percent,
            duration_s,
        } => {
            let args = [
                "--cpu".to_string(),
                workers.to_string(),
                "--cpu-load".to_string(),
                load_percent.to_string(),
            ];
            let what = format!("{workers} CPU workers at {load_percent} %");
            start_stress(&args, *duration_s, what)
        }
        Fault::MemoryPressure {
            megabytes,
            duration_s,
        } => {
            let args = [
                "--vm".to_string(),
                "1".to_string(),
                "--vm-bytes".to_string(),
                format!("{megabytes}M"),
                "--vm-keep".to_string(),
            ];
            start_stress(&args, *duration_s, format!("{megabytes} MiB held"))
        }
        Fault::Failover => {
            let outcome = crate::runtime::db::switchover(home).await?;
            Ok(Injected {
                hit: None,
                route: None,
                undo: Undo::Nothing,
                detail: format!(
                    "switchover from {} to {} in {} ms",
                    outcome.from, outcome.to, outcome.duration_ms
                ),
            })
        }
        Fault::Latency { .. }
        | Fault::Bandwidth { .. }
        | Fault::Timeout { .. }
        | Fault::ResetPeer { .. }
        | Fault::SlowClose { .. }
        | Fault::Cut { .. } => network(home, fault, rng).await,
    }
}

/// Where Debian's stress-ng is (`paytool setup` installs it).
const STRESS_NG: &str = "/usr/bin/stress-ng";
/// stress-ng's own timeout is the window plus this: it ends by itself even if paytool dies
/// before taking the fault back.
const STRESS_GRACE_S: u32 = 5;

/// Starts stress-ng in a process group of its own, ended by [`undo`] (or its own timeout).
fn start_stress(args: &[String], duration_s: u32, what: String) -> anyhow::Result<Injected> {
    use std::os::unix::process::CommandExt;
    anyhow::ensure!(
        Path::new(STRESS_NG).exists(),
        "{STRESS_NG} is missing: `paytool setup` installs it"
    );
    let mut child = std::process::Command::new(STRESS_NG)
        .args(args)
        .arg("--timeout")
        .arg(format!("{}s", duration_s + STRESS_GRACE_S))
        .arg("--quiet")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()?;
    let pid = child.id();
    // Reaped when it ends, so that it does not linger as a zombie for the rest of the run.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(Injected {
        hit: None,
        route: None,
        detail: format!("stress-ng ({pid}): {what} for {duration_s} s"),
        undo: Undo::StopLoad { pid, what },
    })
}

/// A network fault's route, which must exist in this installation's Toxiproxy.
pub fn route_of(home: &Home, fault: &Fault) -> anyhow::Result<&'static Route> {
    let (from, to) = fault
        .route()
        .ok_or_else(|| anyhow::anyhow!("{} is not a network fault", fault.kind()))?;
    anyhow::ensure!(
        home.marker.chaos,
        "a {} fault needs the services' calls through Toxiproxy: an installation made with `paytool up --chaos`",
        fault.kind()
    );
    Route::find(from, to).ok_or_else(|| {
        anyhow::anyhow!(
            "{} does not call {} through Toxiproxy",
            from.as_str(),
            to.as_str()
        )
    })
}

/// The streams a direction covers, with a fault type's own default.
fn streams(direction: Option<Direction>, default: Direction) -> Vec<Stream> {
    match direction.unwrap_or(default) {
        Direction::Upstream => vec![Stream::Upstream],
        Direction::Downstream => vec![Stream::Downstream],
        Direction::Both => vec![Stream::Upstream, Stream::Downstream],
    }
}

async fn network(home: &Home, fault: &Fault, rng: &mut StdRng) -> anyhow::Result<Injected> {
    use rand::Rng;
    let route = route_of(home, fault)?;
    let api = Api::new(home)?;
    let api_url = toxiproxy::api_url(home);
    let (kind, attributes, streams, said) = match fault {
        Fault::Cut { duration_s, .. } => {
            api.set_enabled(route.name, false).await?;
            return Ok(Injected {
                hit: None,
                route: Some(route.name.to_string()),
                undo: Undo::EnableProxy {
                    api: api_url,
                    proxy: route.name.to_string(),
                },
                detail: format!("{} disabled for {duration_s} s", route.name),
            });
        }
        Fault::Latency {
            latency_ms,
            jitter_ms,
            direction,
            ..
        } => (
            ToxicKind::Latency,
            serde_json::json!({ "latency": latency_ms, "jitter": jitter_ms }),
            streams(*direction, Direction::Downstream),
            format!("{latency_ms} ms ± {jitter_ms} ms"),
        ),
        Fault::Bandwidth {
            rate_kbps,
            direction,
            ..
        } => (
            ToxicKind::Bandwidth,
            serde_json::json!({ "rate": rate_kbps }),
            streams(*direction, Direction::Downstream),
            format!("{rate_kbps} KB/s"),
        ),
        Fault::Timeout {
            timeout_ms,
            direction,
            ..
        } => (
            ToxicKind::Timeout,
            serde_json::json!({ "timeout": timeout_ms }),
            streams(*direction, Direction::Both),
            format!("nothing through, closed after {timeout_ms} ms"),
        ),
        Fault::ResetPeer { direction, .. } => (
            ToxicKind::ResetPeer,
            serde_json::json!({ "timeout": 0 }),
            streams(*direction, Direction::Upstream),
            "connections reset".to_string(),
        ),
        Fault::SlowClose {
            delay_ms,
            direction,
            ..
        } => (
            ToxicKind::SlowClose,
            serde_json::json!({ "delay": delay_ms }),
            streams(*direction, Direction::Downstream),
            format!("closes delayed {delay_ms} ms"),
        ),
        Fault::Kill { .. }
        | Fault::Terminate { .. }
        | Fault::Pause { .. }
        | Fault::Failover
        | Fault::ClockSkew { .. }
        | Fault::DiskFull { .. }
        | Fault::Failpoint { .. }
        | Fault::CpuPressure { .. }
        | Fault::MemoryPressure { .. } => {
            anyhow::bail!("{} is not a network fault", fault.kind())
        }
    };
    // A name of its own, so that two faults on one route are taken back one by one.
    let tag: u32 = rng.gen();
    let mut added: Vec<String> = Vec::new();
    for stream in &streams {
        let toxic = Toxic {
            name: format!("paytool-{}-{}-{tag:08x}", fault.kind(), stream.as_str()),
            kind,
            stream: *stream,
            toxicity: 1.0,
            attributes: attributes.clone(),
        };
        if let Err(error) = api.add_toxic(route.name, &toxic).await {
            // Nothing half-injected: the ones already added go again.
            for name in &added {
                let _ = api.remove_toxic(route.name, name).await;
            }
            return Err(error);
        }
        added.push(toxic.name);
    }
    Ok(Injected {
        hit: None,
        route: Some(route.name.to_string()),
        detail: format!(
            "{} on {} ({}) for {} s",
            fault.kind(),
            route.name,
            said,
            fault.duration_s()
        ),
        undo: Undo::RemoveToxics {
            api: api_url,
            proxy: route.name.to_string(),
            toxics: added,
        },
    })
}

/// Takes a fault back. Idempotent: resuming a group that runs is harmless, and a group that is
/// gone (the supervisor replaced it) has nothing left to resume; a toxic that is gone already
/// is fine, and enabling an enabled proxy changes nothing.
pub async fn undo(home: &Home, undo: &Undo) -> anyhow::Result<()> {
    match undo {
        Undo::FailpointOff { port, name } => {
            super::failpoints::Admin::new(home)
                .await?
                .remove(*port, name)
                .await
        }
        Undo::Nothing => Ok(()),
        Undo::StopLoad { pid, .. } => {
            match killpg(Pid::from_raw(i32::try_from(*pid)?), Signal::SIGKILL) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
                Err(errno) => Err(anyhow::anyhow!(
                    "SIGKILL to stress-ng's group {pid}: {errno}"
                )),
            }
        }
        Undo::RemoveToxics { api, proxy, toxics } => {
            let api = Api::at(api)?;
            for toxic in toxics {
                api.remove_toxic(proxy, toxic).await?;
            }
            Ok(())
        }
        Undo::EnableProxy { api, proxy } => Api::at(api)?.set_enabled(proxy, true).await,
        Undo::Unfill { dir } => crate::runtime::volume::unfill(dir),
        Undo::ClockBack { socket, hit } => {
            crate::runtime::rollout::skew_clock_at(socket, hit.component, hit.instance, 0)
                .await
                .map(|_| ())
        }
        // A group that is no longer the component's (the supervisor replaced it) has nothing
        // of ours left to resume, and its pid may be a stranger's by now.
        Undo::Resume { hit } if !is_component(home, hit.pid) => Ok(()),
        Undo::Resume { hit } => signal_group(home, hit, Signal::SIGCONT),
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
        .filter(|pid| is_component(home, *pid))
        .filter(|pid| {
            i32::try_from(*pid)
                .ok()
                .is_some_and(|pid| killpg(Pid::from_raw(pid), Signal::SIGCONT).is_ok())
        })
        .count()
}

/// Every proxy enabled and every toxic removed: the `reset-network` rollback. Without
/// `--chaos` there is nothing to reset.
pub async fn reset_network(home: &Home) -> anyhow::Result<String> {
    if !home.marker.chaos {
        return Ok("no Toxiproxy in this installation: nothing to reset".into());
    }
    Api::new(home)?.reset().await?;
    Ok("every proxy enabled, every toxic removed".into())
}

/// Whether a process is stopped (state `T`): how the tests see that a pause took effect and
/// was taken back.
pub fn is_stopped(pid: u32) -> bool {
    crate::support::procfs::process(pid).is_some_and(|p| p.stopped)
}
