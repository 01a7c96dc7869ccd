//! All that paytool reads of `/proc`, through the `procfs` crate: processes (their parent,
//! group, state and resident memory), where one runs, the memory of a process tree, and the
//! machine's memory and CPU. Everything else calls this; nothing else parses `/proc`.
//!
//! A process may exit while it is being read: it is then left out (or reads as gone), never an
//! error.

use procfs::process::Stat;
use procfs::{Current, WithCurrentSystemInfo};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// One process, as its `/proc/PID/stat` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Process {
    pub parent: u32,
    pub group: u32,
    /// Exited, not yet reaped by its parent: it holds no memory, no port.
    pub zombie: bool,
    /// Stopped by a signal (SIGSTOP): alive, holding its ports, answering nothing.
    pub stopped: bool,
    /// Resident memory, KiB.
    pub rss_kib: u64,
    /// CPU time spent so far, user and system, in clock ticks ([`ticks_per_second`]).
    pub cpu_ticks: u64,
}

impl Process {
    fn of(stat: &Stat) -> Self {
        Self {
            parent: u32::try_from(stat.ppid).unwrap_or(0),
            group: u32::try_from(stat.pgrp).unwrap_or(0),
            zombie: stat.state == 'Z',
            stopped: stat.state == 'T',
            rss_kib: stat.rss_bytes().get() / 1024,
            cpu_ticks: stat.utime + stat.stime,
        }
    }
}

/// Every process: pid → [`Process`].
pub fn processes() -> BTreeMap<u32, Process> {
    let Ok(all) = procfs::process::all_processes() else {
        return BTreeMap::new();
    };
    all.filter_map(Result::ok)
        .filter_map(|process| {
            let stat = process.stat().ok()?;
            Some((u32::try_from(stat.pid).ok()?, Process::of(&stat)))
        })
        .collect()
}

/// One process, if it exists (a zombie too).
pub fn process(pid: u32) -> Option<Process> {
    let process = procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?;
    Some(Process::of(&process.stat().ok()?))
}

/// The directory a process runs in.
pub fn cwd(pid: u32) -> Option<PathBuf> {
    procfs::process::Process::new(i32::try_from(pid).ok()?)
        .ok()?
        .cwd()
        .ok()
}

/// The resident memory of `root` and all its descendants, KiB (0 if `root` is gone).
pub fn tree_rss_kib(processes: &BTreeMap<u32, Process>, root: u32) -> u64 {
    tree_sum(processes, root, |p| p.rss_kib)
}

/// The CPU time `root` and its living descendants have spent, clock ticks (a child that
/// exited is counted with its parent only once the parent reaped it and asked).
pub fn tree_cpu_ticks(processes: &BTreeMap<u32, Process>, root: u32) -> u64 {
    tree_sum(processes, root, |p| p.cpu_ticks)
}

/// Clock ticks a second, as the kernel counts CPU time.
pub fn ticks_per_second() -> u64 {
    procfs::ticks_per_second()
}

fn tree_sum(processes: &BTreeMap<u32, Process>, root: u32, of: fn(&Process) -> u64) -> u64 {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (pid, process) in processes {
        children.entry(process.parent).or_default().push(*pid);
    }
    let mut total = 0;
    let mut stack = vec![root];
    let mut seen = BTreeSet::new();
    while let Some(pid) = stack.pop() {
        if !seen.insert(pid) {
            continue;
        }
        total += processes.get(&pid).map_or(0, of);
        stack.extend(children.get(&pid).into_iter().flatten());
    }
    total
}

/// The machine's usable memory, bytes.
pub fn memory_total_bytes() -> Option<u64> {
    procfs::Meminfo::current().ok().map(|m| m.mem_total)
}

/// The first CPU's model name, where the kernel tells one.
pub fn cpu_model() -> Option<String> {
    let cpus = procfs::CpuInfo::current().ok()?;
    cpus.model_name(0).map(|m| m.trim().to_string())
}

/// Who holds a TCP port on this machine, as far as /proc tells: the socket's state and the
/// process that has it open, for a message about a port that is taken.
pub fn port_holder(port: u16) -> String {
    let sockets: Vec<procfs::net::TcpNetEntry> = procfs::net::tcp()
        .into_iter()
        .flatten()
        .chain(procfs::net::tcp6().into_iter().flatten())
        .filter(|entry| entry.local_address.port() == port)
        .collect();
    if sockets.is_empty() {
        return "no socket on it any more".into();
    }
    let inodes: BTreeSet<u64> = sockets.iter().map(|entry| entry.inode).collect();
    let mut owners = Vec::new();
    if let Ok(all) = procfs::process::all_processes() {
        for process in all.filter_map(Result::ok) {
            let Ok(fds) = process.fd() else { continue };
            let holds = fds.filter_map(Result::ok).any(|fd| {
                matches!(fd.target, procfs::process::FDTarget::Socket(inode) if inodes.contains(&inode))
            });
            if holds {
                let name = process.stat().map(|stat| stat.comm).unwrap_or_default();
                owners.push(format!("{name} pid {}", process.pid));
            }
        }
    }
    let states: Vec<String> = sockets
        .iter()
        .map(|entry| format!("{:?} to {}", entry.state, entry.remote_address))
        .collect();
    format!(
        "{}; held by {}",
        states.join(", "),
        if owners.is_empty() {
            "no process of ours to see".to_string()
        } else {
            owners.join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_trees_memory_and_cpu_are_the_sums_of_its_members_only() {
        let process = |parent, rss_kib| Process {
            parent,
            group: 1,
            zombie: false,
            stopped: false,
            rss_kib,
            cpu_ticks: rss_kib / 100,
        };
        let tree = BTreeMap::from([
            (1, process(0, 100)),
            (10, process(1, 1_000)),
            (11, process(10, 200)),
            (12, process(10, 300)),
            (20, process(1, 5_000)),
        ]);
        assert_eq!(tree_rss_kib(&tree, 10), 1_500);
        assert_eq!(tree_rss_kib(&tree, 20), 5_000);
        assert_eq!(tree_rss_kib(&tree, 99), 0);
        assert_eq!(tree_cpu_ticks(&tree, 10), 15);
        assert_eq!(tree_cpu_ticks(&tree, 1), 66);
    }

    #[test]
    fn this_process_is_read_as_it_is() {
        let pid = std::process::id();
        let me = process(pid).expect("this process is in /proc");
        assert!(!me.zombie);
        assert!(me.rss_kib > 0);
        // This test has run code, so this process has spent some CPU time, in ticks.
        let spin: u64 = (0..20_000_000u64).fold(0, |a, b| a.wrapping_add(b * b));
        assert!(spin > 0 && process(pid).expect("still here").cpu_ticks > 0);
        assert!(ticks_per_second() > 0);
        let listed = processes()[&pid];
        assert_eq!((listed.parent, listed.group), (me.parent, me.group));
        assert_eq!(cwd(pid), std::env::current_dir().ok());
        assert!(memory_total_bytes().is_some_and(|bytes| bytes > 0));
        assert_eq!(process(u32::MAX), None);
    }

    #[test]
    fn a_listening_port_is_said_to_be_held_by_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let port = listener.local_addr().expect("an address").port();
        let said = port_holder(port);
        assert!(said.contains("Listen"), "{said}");
        assert!(
            said.contains(&format!("pid {}", std::process::id())),
            "{said}"
        );
        drop(listener);
        // Another socket may share the number (an outgoing connection's, in TIME_WAIT), but
        // nothing listens on it any more.
        assert!(!port_holder(port).contains("Listen"));
    }
}
