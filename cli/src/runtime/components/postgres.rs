//! PostgreSQL 15 from Debian: one cluster per installation under `.paytool/postgres`, on
//! loopback TCP only, with one database and role per service plus Keycloak's. With `--ha` this
//! component is HAProxy in front of a Patroni cluster instead (`patroni.rs`), on the same port,
//! so that nothing else needs to know which node is the primary.

use super::{run_to_log, services, ComponentName, Ctx, Spec};
use crate::runtime::home::{Home, Secrets};
use crate::runtime::probe::Probe;
use anyhow::Context;
use nix::sys::signal::Signal;
use nix::unistd::{chown, User};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::str::FromStr;

/// The cluster refuses to run as root, so a root supervisor runs it as this user.
const SYSTEM_USER: &str = "postgres";

super::engine_component!(
    /// PostgreSQL 15 from Debian.
    Postgres,
    Postgres,
    prepare = prepare,
    after_ready = after_ready
);

fn probe(home: &Home, secrets: &Secrets) -> Probe {
    Probe::Postgres {
        url: admin_url(home, secrets),
    }
}

pub fn admin_url(home: &Home, secrets: &Secrets) -> String {
    format!(
        "postgres://postgres:{}@127.0.0.1:{}/postgres",
        secrets.postgres_superuser,
        home.ports().postgres
    )
}

fn data_dir(ctx: &Ctx) -> PathBuf {
    ctx.home
        .component_dir(ComponentName::Postgres.as_str())
        .join("data")
}

fn run_as() -> Option<User> {
    if nix::unistd::Uid::effective().is_root() {
        User::from_name(SYSTEM_USER).ok().flatten()
    } else {
        None
    }
}

fn spec(ctx: &Ctx) -> anyhow::Result<Spec> {
    if ctx.home.marker.ha {
        return haproxy_spec(ctx);
    }
    let port = ctx.home.ports().postgres;
    let settings = [
        "listen_addresses=127.0.0.1".to_string(),
        format!("port={port}"),
        // TCP only: no socket file to collide with another cluster's.
        "unix_socket_directories=".to_string(),
        // Services (10 each), Keycloak, tests that create a database each: room for all.
        "max_connections=300".to_string(),
        "shared_buffers=256MB".to_string(),
        "log_line_prefix=%m [%p] %q%u@%d ".to_string(),
        "log_min_duration_statement=1000".to_string(),
    ];
    let mut settings = settings.to_vec();
    // Per-statement counters, which `paytool bench` reads to say how many statements a payment
    // costs each service; loaded when the installed PostgreSQL ships it (Debian's does).
    if ctx
        .tools
        .pg_bin
        .parent()
        .is_some_and(|dir| dir.join("lib/pg_stat_statements.so").exists())
    {
        settings.push("shared_preload_libraries=pg_stat_statements".to_string());
    }
    let mut args = vec!["-D".to_string(), data_dir(ctx).display().to_string()];
    for setting in settings {
        args.push("-c".to_string());
        args.push(setting);
    }
    Ok(Spec {
        name: ComponentName::Postgres,
        instance: 0,
        program: ctx.tools.pg_bin.join("postgres"),
        args,
        env: vec![("LC_ALL".into(), "C.UTF-8".into())],
        cwd: ctx.home.component_dir(ComponentName::Postgres.as_str()),
        run_as: run_as().map(|u| u.name),
        ports: vec![("postgres", port)],
        urls: vec![format!("postgres://127.0.0.1:{port}")],
        probe: probe(&ctx.home, &ctx.secrets),
        ready_timeout_ms: 60_000,
        // SIGINT is PostgreSQL's "fast" shutdown: it ends client sessions instead of waiting
        // for them (SIGTERM's "smart" mode can wait forever on a pooled connection).
        stop_signal: Signal::SIGINT,
        stop_timeout_ms: 30_000,
    })
}

async fn prepare(ctx: &Ctx) -> anyhow::Result<()> {
    if ctx.home.marker.ha {
        return write_haproxy_config(ctx);
    }
    let dir = ctx.home.component_dir(ComponentName::Postgres.as_str());
    let data = data_dir(ctx);
    std::fs::create_dir_all(&dir)?;
    let user = run_as();
    if let Some(user) = &user {
        chown(&dir, Some(user.uid), Some(user.gid))
            .context("cannot hand the postgres directory to the postgres user")?;
    }
    if data.join("PG_VERSION").is_file() {
        remove_stale_lock(&data)?;
        return Ok(());
    }
    // A half-made cluster from an interrupted first start is useless: start it afresh.
    if data.exists() {
        std::fs::remove_dir_all(&data)?;
    }
    let pwfile = dir.join("initdb.pw");
    std::fs::write(&pwfile, &ctx.secrets.postgres_superuser)?;
    std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o600))?;
    if let Some(user) = &user {
        chown(&pwfile, Some(user.uid), Some(user.gid))?;
    }
    let mut command = tokio::process::Command::new(ctx.tools.pg_bin.join("initdb"));
    command
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .current_dir(&dir);
    if let Some(user) = &user {
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    let result = run_to_log(ctx, ComponentName::Postgres, 0, &mut command).await;
    let _ = std::fs::remove_file(&pwfile);
    result
}

fn haproxy_config_path(ctx: &Ctx) -> PathBuf {
    ctx.home
        .component_dir(ComponentName::Postgres.as_str())
        .join("haproxy.cfg")
}

/// How often HAProxy asks each node whether it is the primary, and after how many noes it
/// stops sending connections there (and cuts the open ones, so that no client keeps writing to
/// a demoted node).
const CHECK_INTERVAL_MS: u32 = 1_000;
const CHECK_FALLS: u32 = 2;

/// With `--ha`, the `postgres` component is HAProxy on PostgreSQL's port: every connection goes
/// to the node whose Patroni answers `GET /primary` with 200.
fn write_haproxy_config(ctx: &Ctx) -> anyhow::Result<()> {
    let ports = ctx.home.ports();
    let dir = ctx.home.component_dir(ComponentName::Postgres.as_str());
    std::fs::create_dir_all(&dir)?;
    let mut servers = String::new();
    for instance in 0..ComponentName::Patroni.instances(&ctx.home) {
        let index = usize::from(instance);
        servers.push_str(&format!(
            "    server {} 127.0.0.1:{} check port {}\n",
            super::patroni::node_name(instance),
            ports.patroni_postgres[index],
            ports.patroni_rest[index]
        ));
    }
    // redispatch: a connection whose server went down is retried on the other; fastinter and
    // downinter check a changing server every 250 ms (measured: a switchover's write gap went
    // from 4.2 s to 2.2 s with them).
    let config = format!(
        "# Written by paytool: the stable address of the primary of the Patroni cluster.\n\
         global\n    maxconn 1000\n\n\
         defaults\n    mode tcp\n    retries 3\n    option redispatch 1\n    timeout connect 1s\n    timeout queue 3s\n    timeout client 30m\n    timeout server 30m\n    timeout check 1s\n\n\
         listen postgres\n    bind 127.0.0.1:{port}\n    option httpchk\n    http-check send meth GET uri /primary\n    http-check expect status 200\n\
         \x20   default-server inter {CHECK_INTERVAL_MS}ms fastinter 250ms downinter 250ms fall {CHECK_FALLS} rise 1 on-marked-down shutdown-sessions\n{servers}",
        port = ports.postgres,
    );
    std::fs::write(haproxy_config_path(ctx), config)?;
    Ok(())
}

fn haproxy_spec(ctx: &Ctx) -> anyhow::Result<Spec> {
    let port = ctx.home.ports().postgres;
    Ok(Spec {
        name: ComponentName::Postgres,
        instance: 0,
        program: ctx.tools.haproxy.clone(),
        // -db: in the foreground, under the supervisor.
        args: vec![
            "-db".into(),
            "-f".into(),
            haproxy_config_path(ctx).display().to_string(),
        ],
        env: Vec::new(),
        cwd: ctx.home.component_dir(ComponentName::Postgres.as_str()),
        run_as: None,
        ports: vec![("postgres", port)],
        urls: vec![format!("postgres://127.0.0.1:{port}")],
        // The same probe as one server's: a query, here through HAProxy to the primary.
        probe: probe(&ctx.home, &ctx.secrets),
        ready_timeout_ms: 60_000,
        stop_signal: Signal::SIGTERM,
        stop_timeout_ms: 10_000,
    })
}

/// A postmaster that was SIGKILLed (its supervisor was killed, then `up` cleared the leftovers)
/// leaves `postmaster.pid` behind. PostgreSQL treats the pid in it as alive while it is an
/// unreaped zombie, which a machine whose init does not reap keeps forever. The file goes
/// only when its pid is truly gone; a live postmaster's lock is never touched.
fn remove_stale_lock(data: &std::path::Path) -> anyhow::Result<()> {
    let lock = data.join("postmaster.pid");
    let Ok(text) = std::fs::read_to_string(&lock) else {
        return Ok(());
    };
    let pid = text
        .lines()
        .next()
        .and_then(|line| line.trim().parse::<u32>().ok());
    if pid.is_some_and(|pid| !crate::runtime::state::is_alive(pid)) {
        std::fs::remove_file(&lock)?;
    }
    Ok(())
}

/// The set-up below is idempotent, so a connection that breaks under it (PostgreSQL restarting
/// right after it first answered: Patroni's node finishing its bootstrap behind HAProxy, which
/// cuts the session) is tried again, a bounded number of times.
const SET_UP_ATTEMPTS_MAX: u32 = 5;

async fn after_ready(ctx: &Ctx) -> anyhow::Result<()> {
    let mut backoff = paykit::backoff::Backoff::new(500, 4_000);
    let mut attempt = 1;
    loop {
        match set_up_roles(ctx).await {
            Err(error)
                if attempt < SET_UP_ATTEMPTS_MAX
                    && error
                        .downcast_ref::<sqlx::Error>()
                        .is_some_and(|e| paykit::resilience::database_unavailable(e).is_some()) =>
            {
                tokio::time::sleep(backoff.next_delay()).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// Roles and databases: one per service and Keycloak's, created if absent, passwords kept in
/// step with `secrets.json`.
async fn set_up_roles(ctx: &Ctx) -> anyhow::Result<()> {
    let options = PgConnectOptions::from_str(&admin_url(&ctx.home, &ctx.secrets))?;
    let mut connection = options.connect().await?;
    let mut owners: Vec<(String, String)> = services::Service::ALL
        .iter()
        .map(|service| {
            (
                service.database(),
                service.database_password(&ctx.secrets).to_string(),
            )
        })
        .collect();
    owners.push(("keycloak".to_string(), ctx.secrets.db_keycloak.clone()));
    // The scaffolded services' (their names are checked: lowercase words and hyphens).
    owners.extend(
        super::apps::of(&ctx.home)
            .into_iter()
            .map(|app| (app.database(), app.database_password(&ctx.secrets))),
    );
    for (name, password) in owners {
        // Names are fixed identifiers and passwords are hex (see home::random_secret), so the
        // statements below cannot be injected into; DDL takes no bind parameters. The names
        // are ours (an invariant); the passwords come from a file a person may have edited,
        // so a bad one is an error that says what to do, not a panic.
        assert!(name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        anyhow::ensure!(
            !password.is_empty() && password.chars().all(|c| c.is_ascii_hexdigit()),
            "the database password of {name} in {} is not hexadecimal: restore the file, or start afresh with `paytool down --purge`",
            ctx.home.secrets_path().display()
        );
        let role_exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(&name)
                .fetch_one(&mut connection)
                .await?;
        let verb = if role_exists { "ALTER" } else { "CREATE" };
        connection
            .execute(format!("{verb} ROLE {name} LOGIN PASSWORD '{password}'").as_str())
            .await?;
        let db_exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&name)
                .fetch_one(&mut connection)
                .await?;
        if !db_exists {
            connection
                .execute(format!("CREATE DATABASE {name} OWNER {name}").as_str())
                .await?;
        }
    }
    connection.close().await.ok();
    Ok(())
}
