//! The supervisor: a detached `paytool` process that starts the components in waves, waits for
//! each to be really ready, restarts a crashed one with bounded backoff, and stops everything in
//! reverse order on SIGTERM. It records what it does in `.paytool/run/state.json`.

use crate::runtime::components::services::Service;
use crate::runtime::components::{self, ComponentName, Ctx, Spec};
use crate::runtime::ports::in_use_on_loopback;
use crate::runtime::project::cache_dir;
use crate::runtime::setup::{BuildState, Options, Setup, OBSERVABILITY_BUILD_TIMEOUT_MS};
use crate::runtime::state::{ComponentPhase, ComponentState, Phase, RuntimeState};
use crate::support::exit::{fail, Code, Failure};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot, watch};

/// Restart backoff doubles from the first value up to the cap, with jitter
/// (`paykit::backoff`): components that crashed together (PostgreSQL went away under all the
/// services) are not restarted in lockstep.
const RESTART_BACKOFF_FIRST_MS: u64 = 500;
const RESTART_BACKOFF_MAX_MS: u64 = 30_000;
/// More restarts than this within the window and the component is crash-looping: tried again
/// every `RESTART_BACKOFF_MAX_MS`, and reported as such.
const RESTARTS_MAX: usize = 5;
const RESTART_WINDOW_MS: u64 = 10 * 60 * 1000;
const READY_POLL_MS: u64 = 250;
/// After a component's leader died, how long the rest of its process group (a JVM under its
/// launcher) may take to go once SIGKILLed, and its ports to be free again, before a restart.
const GROUP_EXIT_TIMEOUT_MS: u64 = 10_000;
const PORT_RELEASE_TIMEOUT_MS: u64 = 15_000;
/// A first start waits this long for a port that is taken: `up` found every port free, yet in
/// CI a test installation's port was seen taken half a minute later, twice by something gone
/// again when looked at (see `support::procfs::port_holder` in the message); a short wait
/// rides that out, and a port that stays taken is still reported.
const FIRST_START_PORT_WAIT_MS: u64 = 5_000;
const PORT_POLL_MS: u64 = 100;
/// How often the supervisor probes each service instance's readiness while it runs, and how
/// many failures in a row take it out of the gateway's upstream.
const READINESS_WATCH_MS: u64 = 1_000;
const READINESS_FAILURES_MAX: u32 = 3;
/// After an instance leaves the upstream and nginx is reloaded, how long before it is stopped:
/// nginx's new workers take over within milliseconds; the old ones send nothing new.
const UPSTREAM_SETTLE_MS: u64 = 1_000;
/// Commands waiting for one watcher (a rollout sends one at a time).
const COMMAND_QUEUE_MAX: usize = 4;
/// How often a component built in the background looks whether its build is done.
const BUILD_POLL_MS: u64 = 2_000;
/// `up` starts the build a moment before the supervisor looks: a build that is neither done
/// nor running for this long was never started, or failed.
const BUILD_START_GRACE_MS: u64 = 30_000;

type Shared = Arc<Mutex<RuntimeState>>;

pub async fn run(ctx: Ctx) -> anyhow::Result<()> {
    // Our own session: Ctrl-C in the terminal that ran `up`, or closing it, does not reach us.
    let _ = nix::unistd::setsid();
    let ctx = Arc::new(ctx);
    let pid_file = ctx.home.run_dir().join("supervisor.pid");
    std::fs::create_dir_all(ctx.home.run_dir())?;
    std::fs::create_dir_all(ctx.home.logs_dir())?;
    std::fs::write(&pid_file, std::process::id().to_string())?;

    let mut specs: Vec<Spec> = Vec::new();
    for name in components::names_of(&ctx.home) {
        specs.extend(name.component().specs(&ctx)?);
    }
    // Services run from a staged copy of their binary, so that a rebuild does not change what
    // runs until `paytool rollout`, and a failed rollout can go back to what ran before.
    let control: SharedControl = Arc::new(Mutex::new(Control::default()));
    let stage_dir = ctx.home.run_dir().join("bin");
    let _ = std::fs::remove_dir_all(&stage_dir);
    std::fs::create_dir_all(&stage_dir)?;
    for service in Service::ALL {
        let staged = stage(&ctx, service, &ctx.bin_dir.join(service.as_str()), 1)?;
        let mut guard = lock_control(&control);
        guard
            .programs
            .insert(service.component_name(), staged.clone());
        guard.generations.insert(service.component_name(), 1);
        drop(guard);
        for spec in specs
            .iter_mut()
            .filter(|s| s.name == service.component_name())
        {
            spec.program = staged.clone();
        }
    }
    let state: Shared = Arc::new(Mutex::new(RuntimeState {
        supervisor_pid: std::process::id(),
        started_at: chrono::Utc::now().to_rfc3339(),
        phase: Phase::Starting,
        message: None,
        components: specs
            .iter()
            .map(|spec| ComponentState {
                name: spec.name,
                instance: spec.instance,
                state: ComponentPhase::Pending,
                pid: None,
                ports: spec
                    .ports
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), *v))
                    .collect::<BTreeMap<_, _>>(),
                urls: spec.urls.clone(),
                restarts: 0,
                ready_ms: None,
                message: None,
                log: ctx.home.log_path(&spec.id()),
                clock_offset_s: 0,
            })
            .collect(),
    }));
    save(&ctx, &state);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shutdown_tx = Arc::new(shutdown_tx);
    tokio::spawn(forward_signals(Arc::clone(&shutdown_tx)));
    tokio::spawn(crate::runtime::rollout::serve(
        Arc::clone(&ctx),
        Arc::clone(&state),
        Arc::clone(&control),
        shutdown_rx.clone(),
    ));

    let outcome = start_and_watch(&ctx, &state, &control, &specs, &shutdown_tx, shutdown_rx).await;
    let _ = std::fs::remove_file(&pid_file);
    outcome
}

async fn start_and_watch(
    ctx: &Arc<Ctx>,
    state: &Shared,
    control: &SharedControl,
    specs: &[Spec],
    request_shutdown: &watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let specs_of = |name: ComponentName| {
        specs
            .iter()
            .filter(move |s| s.name == name)
            .cloned()
            .collect::<Vec<_>>()
    };
    // Started components in start order, each watched by a task that hands its child back at shutdown.
    let mut watched: Vec<(Spec, tokio::task::JoinHandle<Option<Child>>)> = Vec::new();
    let mut failure: Option<anyhow::Error> = None;

    'waves: for wave in components::waves(&ctx.home) {
        // A component whose binaries are still being built does not hold its wave back: it
        // starts on its own once they are there (see `start_when_built`).
        let (deferred, now): (Vec<Spec>, Vec<Spec>) = wave
            .iter()
            .flat_map(|name| specs_of(*name))
            .partition(|spec| {
                spec.name.component().built_in_background() && !spec.program.is_file()
            });
        for spec in deferred {
            log(&format!(
                "{}: not built yet; starts when the background build is done",
                spec.id()
            ));
            let handle = tokio::spawn(start_when_built(
                Arc::clone(ctx),
                Arc::clone(state),
                spec.clone(),
                shutdown.clone(),
            ));
            watched.push((spec, handle));
        }
        let starts = now.into_iter().map(|spec| {
            let ctx = Arc::clone(ctx);
            let state = Arc::clone(state);
            let shutdown = shutdown.clone();
            async move {
                let outcome = start(&ctx, &state, &spec, shutdown, FIRST_START_PORT_WAIT_MS).await;
                (spec, outcome)
            }
        });
        let results = futures_join_all(starts).await;
        for (spec, outcome) in results {
            match outcome {
                Ok(child) => {
                    let (sender, commands) = mpsc::channel(COMMAND_QUEUE_MAX);
                    if Service::of(spec.name).is_some() {
                        lock_control(control).commands.insert(spec.key(), sender);
                    }
                    let handle = tokio::spawn(watch_component(
                        Arc::clone(ctx),
                        Arc::clone(state),
                        spec.clone(),
                        child,
                        shutdown.clone(),
                        commands,
                    ));
                    watched.push((spec, handle));
                }
                Err(error) => {
                    log(&format!("{}: {error:#}", spec.id()));
                    set(ctx, state, spec.key(), |c| {
                        c.state = ComponentPhase::Failed;
                        c.message = Some(format!("{error:#}"));
                    });
                    failure.get_or_insert(error);
                }
            }
        }
        if failure.is_some() || *shutdown.borrow() {
            break 'waves;
        }
    }

    if let Some(error) = &failure {
        let mut guard = lock(state);
        guard.phase = Phase::Failed;
        guard.message = Some(format!("{error:#}"));
        drop(guard);
        save(ctx, state);
    } else if !*shutdown.borrow() {
        lock(state).phase = Phase::Running;
        save(ctx, state);
        log("all components ready");
        let _ = shutdown.wait_for(|stop| *stop).await;
    }

    lock(state).phase = Phase::Stopping;
    save(ctx, state);
    // Tell the watchers to hand their children back (a failed start stops too, not only a
    // signal), then stop in reverse start order.
    let _ = request_shutdown.send(true);
    stop_all(ctx, state, watched).await;
    lock(state).phase = Phase::Stopped;
    save(ctx, state);
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Waits (bounded) for a component's background build, then starts and watches it like any
/// other. A build that fails or never ends marks the component failed; the rest of the
/// platform runs on. At shutdown, returns the child that is running, if any.
async fn start_when_built(
    ctx: Arc<Ctx>,
    state: Shared,
    spec: Spec,
    mut shutdown: watch::Receiver<bool>,
) -> Option<Child> {
    let setup = Setup::new(&ctx.project, &cache_dir(), Options::default());
    let log_path = setup.observability_log();
    set(&ctx, &state, spec.key(), |c| {
        c.state = ComponentPhase::Building;
        c.message = Some(format!(
            "being built in the background (scripts/install-observability.sh, log {}); starts when built",
            log_path.display()
        ));
    });
    let waiting = Instant::now();
    let mut missing_since: Option<Instant> = None;
    let failure = loop {
        if *shutdown.borrow() {
            return None;
        }
        let setup_now = Setup::new(&ctx.project, &cache_dir(), Options::default());
        let build = tokio::task::spawn_blocking(move || setup_now.observability_build_state())
            .await
            .unwrap_or(BuildState::Missing);
        match build {
            BuildState::Built => break None,
            BuildState::Building => missing_since = None,
            BuildState::Missing => {
                let since = *missing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(BUILD_START_GRACE_MS) {
                    break Some(format!(
                        "not built, and nothing is building it: run `paytool setup` (log {})",
                        log_path.display()
                    ));
                }
            }
        }
        if waiting.elapsed() > Duration::from_millis(OBSERVABILITY_BUILD_TIMEOUT_MS) {
            break Some(format!(
                "not built within {} minutes (log {})",
                OBSERVABILITY_BUILD_TIMEOUT_MS / 60_000,
                log_path.display()
            ));
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(BUILD_POLL_MS)) => {}
            _ = shutdown.changed() => {}
        }
    };
    if let Some(message) = failure {
        log(&format!("{}: {message}", spec.id()));
        set(&ctx, &state, spec.key(), |c| {
            c.state = ComponentPhase::Failed;
            c.message = Some(message);
        });
        return None;
    }
    log(&format!("{}: built; starting", spec.id()));
    match start(
        &ctx,
        &state,
        &spec,
        shutdown.clone(),
        FIRST_START_PORT_WAIT_MS,
    )
    .await
    {
        Ok(child) => {
            // Not a service: nothing sends it commands.
            let (_, commands) = mpsc::channel(1);
            watch_component(ctx, state, spec, child, shutdown, commands).await
        }
        Err(error) => {
            log(&format!("{}: {error:#}", spec.id()));
            set(&ctx, &state, spec.key(), |c| {
                c.state = ComponentPhase::Failed;
                c.message = Some(format!("{error:#}"));
            });
            None
        }
    }
}

/// Sets the shutdown flag on SIGTERM or SIGINT; ignores SIGHUP (a closed terminal).
async fn forward_signals(shutdown: Arc<watch::Sender<bool>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => continue,
        }
    }
    log("stop requested");
    let _ = shutdown.send(true);
}

/// A tiny join_all: runs the futures concurrently and keeps their order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        match handle.await {
            Ok(output) => outputs.push(output),
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
    outputs
}

/// Prepares, spawns and waits for one component to be ready; on shutdown during the wait,
/// returns the child so that it is stopped with the rest.
/// `port_wait_ms`: how long the component's ports may take to be free (a restart waits for the
/// previous process's sockets; a first start a few seconds).
async fn start(
    ctx: &Ctx,
    state: &Shared,
    spec: &Spec,
    mut shutdown: watch::Receiver<bool>,
    port_wait_ms: u64,
) -> anyhow::Result<Child> {
    set(ctx, state, spec.key(), |c| {
        c.state = ComponentPhase::Starting;
        c.pid = None;
        c.message = Some("preparing".into());
    });
    spec.name
        .component()
        .prepare_instance(ctx, spec.instance)
        .await?;
    let ports_deadline = Instant::now() + Duration::from_millis(port_wait_ms);
    while spec.ports.iter().any(|(_, port)| in_use_on_loopback(*port))
        && Instant::now() < ports_deadline
    {
        tokio::time::sleep(Duration::from_millis(PORT_POLL_MS)).await;
    }
    for (what, port) in &spec.ports {
        if in_use_on_loopback(*port) {
            return Err(fail(
                Code::PortTaken,
                format!(
                    "port {port} ({what}) wanted by {} is already in use ({}): stop what holds it, or set PAYTOOL_PORT_BASE for a fresh installation",
                    spec.id(),
                    crate::support::procfs::port_holder(*port)
                ),
            ));
        }
    }
    let started = Instant::now();
    let mut child = spawn(ctx, spec)?;
    let pid = child.id();
    log(&format!("{}: started pid {}", spec.id(), pid.unwrap_or(0)));
    set(ctx, state, spec.key(), |c| {
        c.pid = pid;
        c.message = Some("waiting until ready".into());
    });
    let deadline = started + Duration::from_millis(spec.ready_timeout_ms);
    loop {
        if *shutdown.borrow() {
            return Ok(child);
        }
        if let Some(status) = child.try_wait()? {
            let tail = crate::support::files::tail_lines(&ctx.home.log_path(&spec.id()), 3)
                .unwrap_or_default()
                .join(" | ");
            return Err(anyhow::Error::new(Failure::new(
                Code::NotReady,
                format!(
                    "{} exited ({status}) before it was ready; see {}: {tail}",
                    spec.id(),
                    ctx.home.log_path(&spec.id()).display()
                ),
            )));
        }
        let last_error = match spec.probe.check().await {
            Ok(()) => break,
            Err(error) => error,
        };
        if Instant::now() >= deadline {
            stop_child(spec, child).await;
            return Err(anyhow::Error::new(Failure::new(
                Code::NotReady,
                format!(
                    "{} was not ready within {} s (last probe: {last_error}); see {}",
                    spec.id(),
                    spec.ready_timeout_ms / 1000,
                    ctx.home.log_path(&spec.id()).display()
                ),
            )));
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(READY_POLL_MS)) => {}
            _ = shutdown.changed() => {}
        }
    }
    if let Err(error) = spec.name.component().after_ready(ctx).await {
        stop_child(spec, child).await;
        return Err(error.context(format!("{} started but its set-up failed", spec.id())));
    }
    let ready_ms = millis(started.elapsed());
    log(&format!("{}: ready in {ready_ms} ms", spec.id()));
    set(ctx, state, spec.key(), |c| {
        c.state = ComponentPhase::Ready;
        c.ready_ms = Some(ready_ms);
        c.message = None;
    });
    Ok(child)
}

fn spawn(ctx: &Ctx, spec: &Spec) -> anyhow::Result<Child> {
    let log_path = ctx.home.log_path(&spec.id());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&spec.cwd)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Each component leads its own process group, so that stopping it reaches its children
        // too (kc.sh starts a JVM).
        .process_group(0)
        .kill_on_drop(false);
    if let Some(user) = &spec.run_as {
        let user = nix::unistd::User::from_name(user)?
            .ok_or_else(|| anyhow::anyhow!("no system user {user}"))?;
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    command.spawn().map_err(|error| {
        anyhow::anyhow!(
            "cannot start {} ({}): {error}",
            spec.id(),
            spec.program.display()
        )
    })
}

/// What the control channel (`paytool rollout`) asks of one instance's watcher.
pub enum Command {
    /// Take the instance out of the gateway's upstream, drain and stop it, start `program`
    /// in its place and wait until it is ready. When the new one is not ready within its
    /// bound, the previous program is started again (and the answer is the error).
    Restart {
        program: PathBuf,
        /// When given, the instance's clock from now on: seconds off the machine's (0: the
        /// machine's own). A chaos fault's clock skew.
        clock_offset_s: Option<i32>,
        reply: oneshot::Sender<anyhow::Result<Restarted>>,
    },
}

/// libfaketime (Debian's `faketime`, installed by `paytool setup`), in the build for threaded
/// programs: preloaded into a service it shifts what the service reads as the time of day.
pub const FAKETIME_LIBRARY: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
/// Farthest a service's clock may be put off the machine's: a day.
pub const CLOCK_OFFSET_S_MAX: i32 = 86_400;

/// Sets (or, at 0, takes away) the environment that runs a program `offset_s` seconds off the
/// machine's clock. The offset is fixed for the process's life (`FAKETIME`, not a file read
/// again): libfaketime shifts the monotonic clock with the wall clock, so an offset that
/// changed under a running process would fire or stall every timer it has.
pub fn set_clock_offset(env: &mut Vec<(String, String)>, offset_s: i32) {
    assert!(
        offset_s.abs() <= CLOCK_OFFSET_S_MAX,
        "clock offset out of bounds"
    );
    env.retain(|(key, _)| key != "LD_PRELOAD" && key != "FAKETIME");
    if offset_s != 0 {
        env.push(("LD_PRELOAD".into(), FAKETIME_LIBRARY.into()));
        env.push(("FAKETIME".into(), format!("{offset_s:+}s")));
    }
}

/// One instance replaced.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Restarted {
    pub old_pid: Option<u32>,
    pub new_pid: Option<u32>,
    /// From the new process's spawn to its readiness.
    pub ready_ms: u64,
    /// From taking the old one out of the upstream to the new one in it.
    pub replaced_ms: u64,
}

/// What the watchers of services listen to, and which program each service runs now.
#[derive(Default)]
pub struct Control {
    pub commands: BTreeMap<(ComponentName, u8), mpsc::Sender<Command>>,
    pub programs: BTreeMap<ComponentName, PathBuf>,
    /// The last staged binary's number per service (`run/bin/NAME.N`).
    pub generations: BTreeMap<ComponentName, u32>,
}

pub type SharedControl = Arc<Mutex<Control>>;

/// What woke a watcher.
enum Event {
    Exited(String),
    Shutdown,
    Command(Command),
    ReadinessTick,
}

async fn next_command(commands: &mut mpsc::Receiver<Command>) -> Command {
    match commands.recv().await {
        Some(command) => command,
        // Nobody can send (a component that is not a service): wait for the other events.
        None => std::future::pending().await,
    }
}

/// Watches a running component: on exit, restarts it with backoff (the slowest once too many
/// restarts fall in the window; never given up on); a service's readiness is probed every `READINESS_WATCH_MS` (an
/// instance that fails it leaves the gateway's upstream until it passes again), and a
/// rollout's restart is carried out here. At shutdown, returns the child that is running.
async fn watch_component(
    ctx: Arc<Ctx>,
    state: Shared,
    mut spec: Spec,
    child: Child,
    mut shutdown: watch::Receiver<bool>,
    mut commands: mpsc::Receiver<Command>,
) -> Option<Child> {
    let mut child = Some(child);
    let mut recent_restarts: Vec<Instant> = Vec::new();
    let mut backoff =
        paykit::backoff::Backoff::new(RESTART_BACKOFF_FIRST_MS, RESTART_BACKOFF_MAX_MS);
    let watch_readiness = Service::of(spec.name).is_some();
    let mut readiness_failures = 0u32;
    loop {
        if let Some(running) = child.as_mut() {
            // Taken now: once the child is reaped, `id()` is gone, and with it the group to kill.
            let pid = running.id();
            let event = tokio::select! {
                status = running.wait() => Event::Exited(
                    status.map_or_else(|e| e.to_string(), |s| s.to_string()),
                ),
                _ = shutdown.wait_for(|stop| *stop) => Event::Shutdown,
                command = next_command(&mut commands) => Event::Command(command),
                () = tokio::time::sleep(Duration::from_millis(READINESS_WATCH_MS)), if watch_readiness => {
                    Event::ReadinessTick
                }
            };
            match event {
                Event::Shutdown => return child,
                Event::ReadinessTick => {
                    readiness_failures = watch_ready(&ctx, &state, &spec, readiness_failures).await;
                    continue;
                }
                Event::Command(Command::Restart {
                    program,
                    clock_offset_s,
                    reply,
                }) => {
                    let running = child.take().expect("a running child");
                    let (outcome, restarted) = replace(
                        &ctx,
                        &state,
                        &mut spec,
                        running,
                        (program, clock_offset_s),
                        &shutdown,
                    )
                    .await;
                    child = restarted;
                    readiness_failures = 0;
                    let _ = reply.send(outcome);
                    if child.is_some() {
                        continue;
                    }
                    // Neither the new program nor the old one started: supervise as a crash.
                }
                Event::Exited(exited) => {
                    log(&format!("{}: exited ({exited})", spec.id()));
                    // Leftovers of the group (a JVM under kc.sh) must not hold the ports, nor
                    // answer probes for a component nobody supervises any more.
                    kill_group(pid, Signal::SIGKILL);
                    child = None;
                    set(&ctx, &state, spec.key(), |c| {
                        c.state = ComponentPhase::Restarting;
                        c.pid = None;
                        c.message = Some(format!("exited ({exited})"));
                    });
                    wait_group_gone(pid).await;
                }
            }
        }
        if *shutdown.borrow() {
            return child;
        }
        let now = Instant::now();
        recent_restarts
            .retain(|at| now.duration_since(*at) < Duration::from_millis(RESTART_WINDOW_MS));
        // Past the bound it is crash-looping: tried again at the longest backoff, for as long
        // as it takes, never given up on. A supervisor that gave up turned a passing fault into
        // an outage for good: Kafka, its log directory full for 30 s (`chaos`, disk-full),
        // crashed on each start until the fifth and then stayed down after the disk had room.
        let delay = if recent_restarts.len() >= RESTARTS_MAX {
            log(&format!(
                "{}: crash-looping ({} restarts in {} minutes): trying again every {} s",
                spec.id(),
                recent_restarts.len(),
                RESTART_WINDOW_MS / 60_000,
                RESTART_BACKOFF_MAX_MS / 1000
            ));
            set(&ctx, &state, spec.key(), |c| {
                c.state = ComponentPhase::Restarting;
                c.message = Some(format!(
                    "crash-looping: {} restarts in {} minutes, trying again every {} s; see its log",
                    recent_restarts.len(),
                    RESTART_WINDOW_MS / 60_000,
                    RESTART_BACKOFF_MAX_MS / 1000
                ));
            });
            Duration::from_millis(RESTART_BACKOFF_MAX_MS)
        } else {
            backoff.next_delay()
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|stop| *stop) => return None,
        }
        recent_restarts.push(Instant::now());
        set(&ctx, &state, spec.key(), |c| c.restarts += 1);
        match start(
            &ctx,
            &state,
            &spec,
            shutdown.clone(),
            PORT_RELEASE_TIMEOUT_MS,
        )
        .await
        {
            Ok(started) => {
                child = Some(started);
                backoff.reset();
            }
            Err(error) => {
                log(&format!("{}: restart failed: {error:#}", spec.id()));
                set(&ctx, &state, spec.key(), |c| {
                    c.state = ComponentPhase::Restarting;
                    c.message = Some(format!("restart failed: {error:#}"));
                });
            }
        }
    }
}

/// One readiness probe of a running service instance: after `READINESS_FAILURES_MAX` failures
/// in a row it is `Unready` (out of the upstream), and `Ready` again on the first pass.
/// Returns the failures in a row so far.
async fn watch_ready(ctx: &Ctx, state: &Shared, spec: &Spec, failures: u32) -> u32 {
    let phase = lock(state)
        .component_mut(spec.name, spec.instance)
        .map(|c| c.state);
    match spec.probe.check().await {
        Ok(()) => {
            if phase == Some(ComponentPhase::Unready) {
                log(&format!("{}: ready again", spec.id()));
                set(ctx, state, spec.key(), |c| {
                    c.state = ComponentPhase::Ready;
                    c.message = None;
                });
            }
            0
        }
        Err(error) => {
            let failures = failures.saturating_add(1);
            if failures >= READINESS_FAILURES_MAX && phase == Some(ComponentPhase::Ready) {
                log(&format!(
                    "{}: not ready ({error}); out of the gateway's upstream",
                    spec.id()
                ));
                set(ctx, state, spec.key(), |c| {
                    c.state = ComponentPhase::Unready;
                    c.message = Some(format!("failing its readiness probe: {error}"));
                });
            }
            failures
        }
    }
}

/// A rollout's step for one instance: out of the upstream (and the gateway reloaded), a
/// moment for the gateway's workers to stop sending to it, a graceful stop (the service
/// drains), then `program` started and awaited; on failure the previous program again.
async fn replace(
    ctx: &Ctx,
    state: &Shared,
    spec: &mut Spec,
    running: Child,
    (program, clock_offset_s): (PathBuf, Option<i32>),
    shutdown: &watch::Receiver<bool>,
) -> (anyhow::Result<Restarted>, Option<Child>) {
    let began = Instant::now();
    let old_pid = running.id();
    log(&format!(
        "{}: rolling out {} (pid {})",
        spec.id(),
        program.display(),
        old_pid.unwrap_or(0)
    ));
    set(ctx, state, spec.key(), |c| {
        c.state = ComponentPhase::RollingOut;
        c.message = Some("rolling out: out of the gateway's upstream, draining".into());
    });
    tokio::time::sleep(Duration::from_millis(UPSTREAM_SETTLE_MS)).await;
    stop_child(spec, running).await;
    let previous = std::mem::replace(&mut spec.program, program);
    let previous_env = spec.env.clone();
    if let Some(offset_s) = clock_offset_s {
        set_clock_offset(&mut spec.env, offset_s);
    }
    let spawned = Instant::now();
    match start(ctx, state, spec, shutdown.clone(), PORT_RELEASE_TIMEOUT_MS).await {
        Ok(child) => {
            if let Some(offset_s) = clock_offset_s {
                set(ctx, state, spec.key(), |c| c.clock_offset_s = offset_s);
            }
            let new_pid = child.id();
            let restarted = Restarted {
                old_pid,
                new_pid,
                ready_ms: millis(spawned.elapsed()),
                replaced_ms: millis(began.elapsed()),
            };
            (Ok(restarted), Some(child))
        }
        Err(error) => {
            log(&format!(
                "{}: the new program did not start ({error:#}); rolling back to {}",
                spec.id(),
                previous.display()
            ));
            spec.program = previous;
            spec.env = previous_env;
            let error = error.context(format!(
                "{}: the new program was not ready; rolled back to the previous one",
                spec.id()
            ));
            match start(ctx, state, spec, shutdown.clone(), PORT_RELEASE_TIMEOUT_MS).await {
                Ok(child) => (Err(error), Some(child)),
                Err(again) => (
                    Err(error.context(format!("and the previous one failed too: {again:#}"))),
                    None,
                ),
            }
        }
    }
}

fn millis(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

async fn stop_all(
    ctx: &Ctx,
    state: &Shared,
    watched: Vec<(Spec, tokio::task::JoinHandle<Option<Child>>)>,
) {
    let mut children = Vec::new();
    for (spec, handle) in watched {
        children.push((spec, handle.await.ok().flatten()));
    }
    for (spec, child) in children.into_iter().rev() {
        if let Some(child) = child {
            log(&format!("{}: stopping", spec.id()));
            stop_child(&spec, child).await;
        }
        set(ctx, state, spec.key(), |c| {
            c.state = ComponentPhase::Stopped;
            c.pid = None;
        });
    }
}

/// The stop signal to the whole group, then SIGKILL after the component's bound.
async fn stop_child(spec: &Spec, mut child: Child) {
    let pid = child.id();
    kill_group(pid, spec.stop_signal);
    let graceful =
        tokio::time::timeout(Duration::from_millis(spec.stop_timeout_ms), child.wait()).await;
    if graceful.is_err() {
        log(&format!(
            "{}: no exit within {} ms, killing",
            spec.id(),
            spec.stop_timeout_ms
        ));
        kill_group(pid, Signal::SIGKILL);
        let _ = child.wait().await;
    }
    // Whatever else is left in the group goes too.
    kill_group(pid, Signal::SIGKILL);
}

/// Waits (bounded) until no process of the group is left.
async fn wait_group_gone(pgid: Option<u32>) {
    let Some(pgid) = pgid else { return };
    let deadline = Instant::now() + Duration::from_millis(GROUP_EXIT_TIMEOUT_MS);
    while crate::runtime::state::group_alive(pgid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(PORT_POLL_MS)).await;
    }
    if crate::runtime::state::group_alive(pgid) {
        log(&format!(
            "process group {pgid} still has members {GROUP_EXIT_TIMEOUT_MS} ms after SIGKILL"
        ));
    }
}

fn kill_group(pid: Option<u32>, signal: Signal) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, RuntimeState> {
    // A poisoned lock only means another task panicked mid-update; the data is still usable.
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lock_control(control: &SharedControl) -> std::sync::MutexGuard<'_, Control> {
    control
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn set(
    ctx: &Ctx,
    state: &Shared,
    (name, instance): (ComponentName, u8),
    update: impl FnOnce(&mut ComponentState),
) {
    let became_ready = {
        let mut guard = lock(state);
        guard
            .component_mut(name, instance)
            .is_some_and(|component| {
                let before = component.state;
                update(component);
                before != ComponentPhase::Ready && component.state == ComponentPhase::Ready
            })
    };
    save(ctx, state);
    if Service::of(name).is_some() {
        refresh_upstreams(ctx, state, false);
    } else if name == ComponentName::Gateway && became_ready {
        // Instances may have come and gone while it started from its first upstreams file.
        refresh_upstreams(ctx, state, true);
    }
}

/// Keeps the gateway's upstreams to the service instances that are ready, and reloads nginx
/// (SIGHUP: new workers with the new upstreams; old ones finish what they have) when they
/// change or `force`.
fn refresh_upstreams(ctx: &Ctx, state: &Shared, force: bool) {
    let (ready, gateway_pid) = {
        let guard = lock(state);
        let ready: BTreeSet<(ComponentName, u8)> = guard
            .components
            .iter()
            .filter(|c| Service::of(c.name).is_some() && c.state == ComponentPhase::Ready)
            .map(|c| (c.name, c.instance))
            .collect();
        let gateway_pid = guard
            .components
            .iter()
            .find(|c| c.name == ComponentName::Gateway)
            .filter(|c| matches!(c.state, ComponentPhase::Ready))
            .and_then(|c| c.pid);
        (ready, gateway_pid)
    };
    match components::gateway::write_upstreams(&ctx.home, &ready) {
        Ok(changed) => {
            if let (true, Some(pid)) = (changed || force, gateway_pid) {
                let members: Vec<String> = ready
                    .iter()
                    .map(|(name, instance)| components::instance_id(*name, *instance))
                    .collect();
                log(&format!(
                    "gateway: upstreams now {}; reloading",
                    members.join(", ")
                ));
                kill_pid(pid, Signal::SIGHUP);
            }
        }
        Err(error) => log(&format!("cannot write the gateway's upstreams: {error:#}")),
    }
}

fn kill_pid(pid: u32, signal: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(Pid::from_raw(raw), signal);
    }
}

/// Links (or copies) a service's binary to `run/bin/NAME.GENERATION` and returns that path.
pub fn stage(
    ctx: &Ctx,
    service: Service,
    binary: &Path,
    generation: u32,
) -> anyhow::Result<PathBuf> {
    let staged = ctx
        .home
        .run_dir()
        .join("bin")
        .join(format!("{}.{generation}", service.as_str()));
    let _ = std::fs::remove_file(&staged);
    // A hard link keeps this build's bytes when cargo replaces the file (it writes a new
    // inode); another file system gets a copy.
    if std::fs::hard_link(binary, &staged).is_err() {
        std::fs::copy(binary, &staged).map_err(|error| {
            anyhow::anyhow!(
                "cannot stage {} as {}: {error}",
                binary.display(),
                staged.display()
            )
        })?;
    }
    Ok(staged)
}

fn save(ctx: &Ctx, state: &Shared) {
    let guard = lock(state);
    if let Err(error) = guard.save(&ctx.home) {
        log(&format!("cannot write the state file: {error:#}"));
    }
}

/// Writes a line to the supervisor's log (its stderr). Never panics: `eprintln!` would, on a
/// full disk, and take the task watching a component down with it, leaving that component
/// unwatched. A line that cannot be written is lost; supervising goes on.
fn log(message: &str) {
    crate::support::log::line("supervisor", message);
}
