//! `paytool down [--purge]`: stop the supervisor (which stops every component gracefully) and
//! optionally delete the installation's data.

use crate::runtime::home::Home;
use crate::runtime::state::{group_alive, is_alive, running_supervisor, RuntimeState};
use crate::support::exit::{fail, Code};
use crate::support::procfs;
use crate::support::ui::Ui;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::Path;
use std::time::{Duration, Instant};

/// The supervisor's own stop is bounded per component (at most 30 s each); this is the bound
/// on the whole, after which everything left is killed.
const DOWN_TIMEOUT_MS: u64 = 120_000;
/// How long a SIGKILLed leftover may take to disappear.
const LEFTOVER_EXIT_TIMEOUT_MS: u64 = 10_000;

pub async fn run(home_dir: &Path, project: &Path, purge: bool, ui: &Ui) -> anyhow::Result<()> {
    let home = match Home::open(home_dir, project) {
        Ok(Some(home)) => home,
        Ok(None) => {
            ui.println(&format!(
                "nothing to stop: no installation at {}",
                home_dir.display()
            ));
            return Ok(());
        }
        // A corrupt marker must not stop a purge: that is the way out of it.
        Err(error) if purge && home_dir.join("paytool.json").exists() => {
            ui.println(&format!(
                "the installation is unreadable ({error}); purging it anyway"
            ));
            // Its processes first: a supervisor that still runs (an installation of another
            // checkout, say) stops its components itself; deleting the directory under them
            // would leave them running with nothing to stop them.
            if let Some(pid) = recorded_supervisor(home_dir) {
                ui.println(&format!("stopping its supervisor (pid {pid}) first"));
                stop_supervisor(pid).await?;
            }
            crate::runtime::volume::unmount_under(home_dir)?;
            std::fs::remove_dir_all(home_dir)?;
            return Ok(());
        }
        Err(error) => return Err(error),
    };
    if let Some(why) = RuntimeState::unreadable(&home) {
        ui.println(&format!("{why}; stopping the processes it records anyway"));
    }
    let line = ui.step("stopping");
    let stopped = stop(&home).await?;
    line.done(&if stopped {
        "stopped".to_string()
    } else {
        "was not running".to_string()
    });
    // The components' volumes (`up --chaos`) with them: the next `up` mounts them again.
    let unmounted = crate::runtime::volume::unmount_under(&home.dir)?;
    if unmounted > 0 {
        ui.println(&format!("unmounted {unmounted} data volume(s)"));
    }
    if purge {
        if crate::runtime::tls::untrust(&home).unwrap_or(false) {
            ui.println("removed the installation's CA from the system trust store");
        }
        std::fs::remove_dir_all(&home.dir).map_err(|e| {
            fail(
                Code::Failed,
                format!("cannot delete {}: {e}", home.dir.display()),
            )
        })?;
        ui.println(&format!("deleted {}", home.dir.display()));
    } else {
        ui.println(&format!(
            "data kept in {}; `paytool down --purge` deletes it",
            home.dir.display()
        ));
    }
    Ok(())
}

/// Stops the supervisor and waits for it; kills leftovers of a crashed one.
pub async fn stop(home: &Home) -> anyhow::Result<bool> {
    let pgids = RuntimeState::recorded_pids(home);
    let Some(pid) = running_supervisor(home) else {
        // No supervisor, but maybe components it left behind when it was killed.
        let mut any = false;
        for pgid in pgids {
            any |= kill_leftovers(home, pgid);
        }
        return Ok(any);
    };
    stop_supervisor(pid).await?;
    for pgid in pgids {
        kill_leftovers(home, pgid);
    }
    Ok(true)
}

/// SIGTERM to a supervisor (it stops its components gracefully), SIGKILL after the bound.
async fn stop_supervisor(pid: u32) -> anyhow::Result<()> {
    let raw = i32::try_from(pid)?;
    kill(Pid::from_raw(raw), Signal::SIGTERM)?;
    let deadline = Instant::now() + Duration::from_millis(DOWN_TIMEOUT_MS);
    while is_alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if is_alive(pid) {
        let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
    }
    Ok(())
}

/// The live supervisor an installation directory records, read without opening it as a
/// `Home` (for one that cannot be opened).
fn recorded_supervisor(home_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(home_dir.join("run").join("supervisor.pid")).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    (is_alive(pid) && procfs::cwd(pid).is_some() && pid != std::process::id()).then_some(pid)
}

/// Kills what is left of a component's process group, but only processes that run inside this
/// installation's directory: after a reboot a recorded pid may belong to anybody.
fn kill_leftovers(home: &Home, pgid: u32) -> bool {
    if !group_alive(pgid) {
        return false;
    }
    let members = processes_in_group(pgid);
    let ours: Vec<u32> = members
        .into_iter()
        .filter(|pid| runs_inside(*pid, &home.dir))
        .collect();
    for pid in &ours {
        if let Ok(raw) = i32::try_from(*pid) {
            let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
        }
    }
    // SIGKILL is asynchronous: wait (bounded) until they are gone and their ports free.
    let deadline = Instant::now() + Duration::from_millis(LEFTOVER_EXIT_TIMEOUT_MS);
    while ours.iter().any(|pid| is_alive(*pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    !ours.is_empty()
}

fn processes_in_group(pgid: u32) -> Vec<u32> {
    procfs::processes()
        .into_iter()
        .filter(|(_, process)| process.group == pgid)
        .map(|(pid, _)| pid)
        .collect()
}

fn runs_inside(pid: u32, dir: &Path) -> bool {
    procfs::cwd(pid).is_some_and(|cwd| cwd.starts_with(dir))
}
