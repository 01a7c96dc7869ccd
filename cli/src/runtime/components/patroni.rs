//! PostgreSQL that fails over (`paytool up --ha`): two Patroni nodes, each with its own
//! PostgreSQL 15, one the primary and the other its synchronous replica, agreeing on the
//! leader through a one-member etcd. The `postgres` component is then HAProxy, the address the
//! services, Keycloak and the exporter use: it sends each connection to the node whose Patroni
//! REST API says it is the primary (see `postgres.rs`).
//!
//! Synchronous replication means a commit returns only once the replica has it: when the
//! primary dies, Patroni promotes the replica (only a synchronous one), and no committed payment
//! is lost. Without `--ha` none of this runs (no instances).

use super::{http_probe, Component, ComponentName, Ctx, Spec, Step};
use crate::runtime::home::{Home, Secrets};
use crate::runtime::probe::Probe;
use nix::sys::signal::Signal;
use nix::unistd::{chown, User};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

/// Patroni and PostgreSQL run as this user (PostgreSQL refuses root).
const SYSTEM_USER: &str = "postgres";
/// The leader key lives this long without renewal; Patroni renews it every `LOOP_WAIT_S` and
/// gives a DCS call `RETRY_TIMEOUT_S`. A dead primary is replaced within about `TTL_S`.
/// Patroni requires `TTL_S >= LOOP_WAIT_S + 2 * RETRY_TIMEOUT_S`.
/// Measured by hand on this machine: a killed primary's writes resume 10.6 s later with these
/// (6 s with 6/1/2, which two shared cores make prone to needless failovers).
pub const TTL_S: u32 = 10;
pub const LOOP_WAIT_S: u32 = 2;
pub const RETRY_TIMEOUT_S: u32 = 4;
const _: () = assert!(TTL_S >= LOOP_WAIT_S + 2 * RETRY_TIMEOUT_S);
/// The cluster's name in etcd.
const SCOPE: &str = "paytool";

pub struct Etcd;
pub struct Patroni;

fn run_as() -> Option<User> {
    if nix::unistd::Uid::effective().is_root() {
        User::from_name(SYSTEM_USER).ok().flatten()
    } else {
        None
    }
}

fn etcd_dir(home: &Home) -> PathBuf {
    home.component_dir(ComponentName::Etcd.as_str())
}

fn node_dir(home: &Home, instance: u8) -> PathBuf {
    home.component_dir(ComponentName::Patroni.as_str())
        .join(instance.to_string())
}

/// Patroni's name for a node: the instance's id, so that `patronictl list` and `paytool status`
/// say the same.
pub fn node_name(instance: u8) -> String {
    super::instance_id(ComponentName::Patroni, instance)
}

/// A node's REST API, where its role is read and a switchover asked for.
pub fn rest_url(home: &Home, instance: u8) -> String {
    format!(
        "http://127.0.0.1:{}",
        home.ports().patroni_rest[usize::from(instance)]
    )
}

impl Component for Etcd {
    fn name(&self) -> ComponentName {
        ComponentName::Etcd
    }

    fn spec(&self, ctx: &Ctx) -> anyhow::Result<Spec> {
        let ports = ctx.home.ports();
        let client = format!("http://127.0.0.1:{}", ports.etcd_client);
        let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
        let dir = etcd_dir(&ctx.home);
        Ok(Spec {
            name: ComponentName::Etcd,
            instance: 0,
            program: ctx.tools.etcd.clone(),
            args: [
                "--name",
                SCOPE,
                "--data-dir",
                &dir.join("data").display().to_string(),
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
                "--initial-cluster",
                &format!("{SCOPE}={peer}"),
                "--initial-cluster-state",
                "new",
            ]
            .map(str::to_string)
            .to_vec(),
            env: Vec::new(),
            cwd: dir,
            run_as: None,
            ports: vec![("client", ports.etcd_client), ("peer", ports.etcd_peer)],
            urls: vec![client],
            probe: self.probe(&ctx.home, &ctx.secrets),
            ready_timeout_ms: 30_000,
            stop_signal: Signal::SIGTERM,
            stop_timeout_ms: 10_000,
        })
    }

    fn specs(&self, ctx: &Ctx) -> anyhow::Result<Vec<Spec>> {
        if ctx.home.marker.ha {
            Ok(vec![self.spec(ctx)?])
        } else {
            Ok(Vec::new())
        }
    }

    fn probe(&self, home: &Home, _secrets: &Secrets) -> Probe {
        http_probe(format!(
            "http://127.0.0.1:{}/health",
            home.ports().etcd_client
        ))
    }

    fn prepare<'a>(&'a self, ctx: &'a Ctx) -> Step<'a> {
        Box::pin(async move {
            std::fs::create_dir_all(etcd_dir(&ctx.home))?;
            Ok(())
        })
    }
}

impl Component for Patroni {
    fn name(&self) -> ComponentName {
        ComponentName::Patroni
    }

    fn spec(&self, ctx: &Ctx) -> anyhow::Result<Spec> {
        node_spec(ctx, 0)
    }

    fn specs(&self, ctx: &Ctx) -> anyhow::Result<Vec<Spec>> {
        (0..ComponentName::Patroni.instances(&ctx.home))
            .map(|instance| node_spec(ctx, instance))
            .collect()
    }

    fn probe(&self, home: &Home, secrets: &Secrets) -> Probe {
        self.instance_probe(home, secrets, 0)
    }

    /// `/health` answers 200 while the node's PostgreSQL runs, as primary or replica.
    fn instance_probe(&self, home: &Home, _secrets: &Secrets, instance: u8) -> Probe {
        http_probe(format!("{}/health", rest_url(home, instance)))
    }

    /// Both nodes' configurations (each start writes them again: they follow the secrets).
    fn prepare<'a>(&'a self, ctx: &'a Ctx) -> Step<'a> {
        Box::pin(async move {
            for instance in 0..ComponentName::Patroni.instances(&ctx.home) {
                write_config(ctx, instance)?;
            }
            Ok(())
        })
    }

    /// Before a node (re)starts: its configuration, and the PostgreSQL a killed Patroni left
    /// running stopped. Patroni starts PostgreSQL in a process group of its own, so a SIGKILL
    /// of the node (chaos experiment kill-patroni-node) left the postmaster holding the node's
    /// port, and every restart of the node was refused for it: the node stayed down for good.
    fn prepare_instance<'a>(&'a self, ctx: &'a Ctx, instance: u8) -> Step<'a> {
        Box::pin(async move {
            write_config(ctx, instance)?;
            stop_leftover_postgres(&node_dir(&ctx.home, instance).join("data")).await;
            Ok(())
        })
    }
}

/// A leftover postmaster gets this long to stop after SIGINT (a fast shutdown: sessions ended,
/// a checkpoint) before it is killed; a fast shutdown of an idle node takes well under a second.
const LEFTOVER_STOP_TIMEOUT_MS: u64 = 10_000;
const LEFTOVER_POLL_MS: u64 = 100;

/// Stops the postmaster of `data_dir` when one still runs without its Patroni: the pid in its
/// `postmaster.pid`, if that process is a postgres of this very directory (a pid reused by
/// anything else is left alone). Fast shutdown first, SIGKILL of its process group after
/// [`LEFTOVER_STOP_TIMEOUT_MS`].
async fn stop_leftover_postgres(data_dir: &std::path::Path) {
    let Some(pid) = std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()
        .and_then(|text| text.lines().next()?.trim().parse::<u32>().ok())
    else {
        return;
    };
    let ours = std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let data = data_dir.as_os_str().as_encoded_bytes();
        args.first()
            .is_some_and(|program| program.ends_with(b"postgres"))
            && args.contains(&data)
    });
    if !ours {
        return;
    }
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    let target = nix::unistd::Pid::from_raw(raw);
    crate::support::log::line(
        "supervisor",
        &format!(
            "patroni: stopping the PostgreSQL (pid {pid}) a killed node left running in {}",
            data_dir.display()
        ),
    );
    let _ = nix::sys::signal::kill(target, Signal::SIGINT);
    let deadline = std::time::Instant::now() + Duration::from_millis(LEFTOVER_STOP_TIMEOUT_MS);
    while crate::runtime::state::is_alive(pid) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(LEFTOVER_POLL_MS)).await;
    }
    if crate::runtime::state::is_alive(pid) {
        let _ = nix::sys::signal::killpg(target, Signal::SIGKILL);
    }
}

fn config_path(home: &Home, instance: u8) -> PathBuf {
    node_dir(home, instance).join("patroni.yml")
}

fn node_spec(ctx: &Ctx, instance: u8) -> anyhow::Result<Spec> {
    let ports = ctx.home.ports();
    let index = usize::from(instance);
    Ok(Spec {
        name: ComponentName::Patroni,
        instance,
        program: ctx.tools.patroni.clone(),
        args: vec![config_path(&ctx.home, instance).display().to_string()],
        env: vec![("LC_ALL".into(), "C.UTF-8".into())],
        cwd: node_dir(&ctx.home, instance),
        run_as: run_as().map(|u| u.name),
        ports: vec![
            ("postgres", ports.patroni_postgres[index]),
            ("rest", ports.patroni_rest[index]),
        ],
        urls: vec![
            format!("postgres://127.0.0.1:{}", ports.patroni_postgres[index]),
            rest_url(&ctx.home, instance),
        ],
        probe: Patroni.instance_probe(&ctx.home, &ctx.secrets, instance),
        // The second node copies the first (pg_basebackup) once it has bootstrapped.
        ready_timeout_ms: 120_000,
        // Patroni stops its PostgreSQL (fast) and, on the primary, hands the leader key over.
        stop_signal: Signal::SIGTERM,
        stop_timeout_ms: 30_000,
    })
}

/// One node's Patroni configuration. YAML is a superset of JSON, so it is written as JSON.
fn write_config(ctx: &Ctx, instance: u8) -> anyhow::Result<()> {
    let dir = node_dir(&ctx.home, instance);
    std::fs::create_dir_all(&dir)?;
    let ports = ctx.home.ports();
    let index = usize::from(instance);
    let password = &ctx.secrets.postgres_superuser;
    // The superuser also replicates and rewinds: one local secret instead of three.
    let account = json!({ "username": "postgres", "password": password });
    let config = json!({
        "scope": SCOPE,
        "name": node_name(instance),
        "log": { "level": "INFO" },
        "restapi": {
            "listen": format!("127.0.0.1:{}", ports.patroni_rest[index]),
            "connect_address": format!("127.0.0.1:{}", ports.patroni_rest[index]),
        },
        // Patroni's etcd3 client talks to etcd 3.4's v3 gateway over HTTP (its v2 API is off).
        "etcd3": { "hosts": format!("127.0.0.1:{}", ports.etcd_client) },
        "watchdog": { "mode": "off" },
        "bootstrap": {
            "dcs": {
                "ttl": TTL_S,
                "loop_wait": LOOP_WAIT_S,
                "retry_timeout": RETRY_TIMEOUT_S,
                // Only a replica with every commit may be promoted.
                "maximum_lag_on_failover": 0,
                // A commit returns once the replica has it too. Not strict: with the replica
                // down the primary goes on alone (Patroni never promotes a replica that is not
                // synchronous, so a single failure loses nothing); strict would stop writes.
                "synchronous_mode": true,
                "synchronous_node_count": 1,
                "postgresql": {
                    "use_pg_rewind": true,
                    "use_slots": true,
                    "parameters": {
                        // Services (10 each, a few instances), Keycloak, the tests' databases.
                        "max_connections": 300,
                        "shared_buffers": "128MB",
                        "wal_log_hints": "on",
                        "log_min_duration_statement": 1000,
                    },
                },
            },
            "initdb": [
                { "encoding": "UTF8" },
                { "locale": "C.UTF-8" },
                { "auth": "scram-sha-256" },
                "data-checksums",
            ],
        },
        "postgresql": {
            "listen": format!("127.0.0.1:{}", ports.patroni_postgres[index]),
            "connect_address": format!("127.0.0.1:{}", ports.patroni_postgres[index]),
            "data_dir": dir.join("data"),
            "bin_dir": ctx.tools.pg_bin,
            "pgpass": dir.join("pgpass"),
            "authentication": {
                "superuser": account,
                "replication": account,
                "rewind": account,
            },
            // The node's own socket, in its own directory: Patroni talks to its PostgreSQL there.
            "parameters": { "unix_socket_directories": dir },
            // On every node (a replica's too); Patroni itself uses the local socket.
            "pg_hba": [
                "local all all scram-sha-256",
                "host all all 127.0.0.1/32 scram-sha-256",
                "host replication all 127.0.0.1/32 scram-sha-256",
            ],
        },
    });
    let path = config_path(&ctx.home, instance);
    std::fs::write(&path, serde_json::to_string_pretty(&config)?)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    if let Some(user) = run_as() {
        chown(&dir, Some(user.uid), Some(user.gid))?;
        chown(&path, Some(user.uid), Some(user.gid))?;
    }
    Ok(())
}
