//! `paytool up`: set up what is missing, start the supervisor, and follow it until every
//! component is ready (or one fails, or Ctrl-C).

use crate::runtime::components::{self, services, ComponentName};
use crate::runtime::home::Home;
use crate::runtime::ports::{can_bind, in_use_on_loopback};
use crate::runtime::setup::Setup;
use crate::runtime::state::{running_supervisor, ComponentPhase, Phase, RuntimeState};
use crate::support::exit::{fail, Code};
use crate::support::ui::{Line, Ui};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// `up` gives up waiting after this, whatever the supervisor is doing.
const UP_TIMEOUT_MS: u64 = 15 * 60 * 1000;
const POLL_MS: u64 = 200;
/// After Ctrl-C, how long `up` waits for the supervisor to stop what it started.
const INTERRUPT_STOP_TIMEOUT_MS: u64 = 120_000;

/// What `paytool up` was asked for beyond what the installation already keeps.
#[derive(Debug, Clone, Default)]
pub struct Asked {
    /// `--replicas` in order, each a count for one service or (None) for all.
    pub replicas: Vec<(Option<services::Service>, u8)>,
    /// `--ha`: PostgreSQL as a Patroni cluster.
    pub ha: bool,
    /// `--kafka-brokers`: None keeps what the installation has.
    pub kafka_brokers: Option<u8>,
    /// `--chaos` / `--no-chaos`: None keeps what the installation has.
    pub chaos: Option<bool>,
    /// `--delivery` / `--no-delivery`: None keeps what the installation has.
    pub delivery: Option<bool>,
    /// `--trace-sample-percent`: None keeps what the installation has.
    pub trace_sample_percent: Option<u8>,
}

pub async fn run(
    home_dir: &Path,
    project: &Path,
    setup: &Setup,
    asked: &Asked,
    ui: &Ui,
) -> anyhow::Result<()> {
    let mut home = Home::open_or_create(home_dir, project)?;
    let mut wanted = home.marker.replicas;
    for (service, count) in &asked.replicas {
        match service {
            Some(service) => service.set_replicas(&mut wanted, *count),
            None => {
                for service in services::Service::ALL {
                    service.set_replicas(&mut wanted, *count);
                }
            }
        }
    }
    if let Some(pid) = running_supervisor(&home) {
        if wanted != home.marker.replicas
            || (asked.ha && !home.marker.ha)
            || asked
                .kafka_brokers
                .is_some_and(|brokers| brokers != home.marker.kafka_brokers)
            || asked.chaos.is_some_and(|chaos| chaos != home.marker.chaos)
            || asked
                .delivery
                .is_some_and(|delivery| delivery != home.marker.delivery)
            || asked
                .trace_sample_percent
                .is_some_and(|percent| percent != home.marker.trace_sample_percent)
        {
            return Err(fail(
                Code::Usage,
                format!("paytool is already running at {} with other settings: `paytool down` first, then `paytool up` with the new ones", home.dir.display()),
            ));
        }
        ui.println(&format!("paytool is already running at {} (supervisor pid {pid}); nothing to do. `paytool status` shows it.", home.dir.display()));
        // A service scaffolded since then joins at the next start.
        let found = components::apps::discover(project)?;
        let new: Vec<&str> = found
            .iter()
            .filter(|app| !home.marker.apps.contains(app))
            .map(|app| app.name.as_str())
            .collect();
        if !new.is_empty() {
            ui.println(&format!(
                "scaffolded since it started: {}; `paytool down` then `paytool up` runs them",
                new.join(", ")
            ));
        }
        return Ok(());
    }
    if wanted != home.marker.replicas {
        home.set_replicas(wanted)?;
    }
    if asked.ha {
        home.set_ha(true)?;
    }
    if let Some(brokers) = asked.kafka_brokers {
        home.set_kafka_brokers(brokers)?;
    }
    if let Some(chaos) = asked.chaos {
        home.set_chaos(chaos)?;
    }
    if let Some(delivery) = asked.delivery {
        home.set_delivery(delivery)?;
    }
    if let Some(percent) = asked.trace_sample_percent {
        home.set_trace_sample_percent(percent)?;
    }
    // A supervisor that was killed outright leaves its components running: stop those first,
    // or they would hold the ports and look like a stranger's processes.
    if crate::runtime::down::stop(&home).await? {
        ui.println(
            "stopped components left running by a previous supervisor that did not exit cleanly",
        );
        // A killed JVM can take a while to let go of its sockets on a loaded machine: give
        // the ports a bounded moment before calling them taken.
        let deadline = Instant::now() + Duration::from_millis(LEFTOVER_PORTS_FREE_TIMEOUT_MS);
        while check_ports(&home).is_err() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }
    if !setup.is_complete() {
        // Everything but the collector and Jaeger, which are built in the background: the
        // platform starts without them and the supervisor adds them when they are built.
        ui.println("setting up what the local runtime needs (once):");
        setup.run_for_up(ui)?;
    }
    if home.marker.delivery {
        setup.ensure_registry(ui)?;
        setup.ensure_buildbot(ui)?;
    }
    // Fail here, with setup's one-line advice, rather than inside the detached supervisor.
    setup.tools()?;
    if crate::runtime::tls::init(&home, false)? {
        ui.println(&format!(
            "made a local CA and a *.local.test certificate in {}",
            home.tls_dir().display()
        ));
    }
    let bin_dir = crate::runtime::project::bin_dir()?;
    let missing = services::missing_binaries(&bin_dir);
    if !missing.is_empty() {
        return Err(fail(
            Code::Prerequisite,
            format!("service binaries {} are not in {}: build them with `cargo build --workspace --bins` (add --release for a release paytool)", missing.join(", "), bin_dir.display()),
        ));
    }
    // Services scaffolded into the project run beside the platform's own: found by their
    // stamps, kept in the marker for `status`, `logs` and `down`, built like the rest.
    let apps = components::apps::discover(project)?;
    if !apps.is_empty() {
        let names: Vec<&str> = apps.iter().map(|app| app.name.as_str()).collect();
        let line = ui.step(&format!("scaffolded services ({})", names.join(", ")));
        line.working("building with cargo");
        components::apps::build(&apps, &bin_dir, project)?;
        line.done("built");
    }
    home.set_apps(apps)?;
    check_ports(&home)?;

    std::fs::create_dir_all(home.logs_dir())?;
    // The record of a previous supervisor must not be mistaken for the new one's.
    let _ = std::fs::remove_file(RuntimeState::path(&home));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.log_path("supervisor"))?;
    let exe = std::env::current_exe()?;
    let mut supervisor = std::process::Command::new(exe)
        .arg("__supervise")
        .arg("--home")
        .arg(&home.dir)
        .env("PAYTOOL_PROJECT_ROOT", project)
        .env("PAYTOOL_BIN_DIR", &bin_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let pid = supervisor.id();
    let started = Instant::now();

    // One line per instance, made as the supervisor's state file lists them.
    let mut lines: Vec<(ComponentName, u8, Line)> = Vec::new();
    let mut interrupted = Box::pin(tokio::signal::ctrl_c());
    loop {
        let state = RuntimeState::load(&home).filter(|state| state.supervisor_pid == pid);
        if let Some(state) = &state {
            for component in &state.components {
                let known = lines.iter().position(|(name, instance, _)| {
                    *name == component.name && *instance == component.instance
                });
                let index = known.unwrap_or_else(|| {
                    lines.push((component.name, component.instance, ui.step(&component.id())));
                    lines.len() - 1
                });
                show(&lines[index].2, component);
            }
            if state.phase == Phase::Running {
                break;
            }
        }
        if let Some(status) = supervisor.try_wait()? {
            // It stopped before everything was ready: say which component and why.
            let reason = state
                .as_ref()
                .and_then(|s| s.message.clone())
                .unwrap_or_else(|| {
                    format!(
                        "the supervisor exited ({status}); see {}",
                        home.log_path("supervisor").display()
                    )
                });
            let code = match status.code() {
                Some(5) => Code::PortTaken,
                Some(6) => Code::NotReady,
                Some(3) => Code::Prerequisite,
                Some(4) => Code::StateDir,
                _ => Code::Failed,
            };
            return Err(fail(code, reason));
        }
        if started.elapsed() > Duration::from_millis(UP_TIMEOUT_MS) {
            stop_supervisor(pid, &mut supervisor).await;
            return Err(fail(
                Code::NotReady,
                format!(
                    "the platform was not ready within {} minutes; see {}",
                    UP_TIMEOUT_MS / 60_000,
                    home.logs_dir().display()
                ),
            ));
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(POLL_MS)) => {}
            _ = &mut interrupted => {
                ui.println("interrupted: stopping what was started…");
                stop_supervisor(pid, &mut supervisor).await;
                return Err(fail(Code::Interrupted, "interrupted; everything `up` started has been stopped"));
            }
        }
    }
    drop(lines);
    print_summary(&home, started.elapsed());
    Ok(())
}

fn show(line: &Line, component: &crate::runtime::state::ComponentState) {
    match component.state {
        ComponentPhase::Pending => line.working("waiting for its turn"),
        ComponentPhase::Starting => {
            line.working(component.message.as_deref().unwrap_or("starting"))
        }
        ComponentPhase::Ready => line.done(&format!(
            "ready in {:.1}s{}",
            component.ready_ms.unwrap_or(0) as f64 / 1000.0,
            component
                .urls
                .first()
                .map(|u| format!("  {u}"))
                .unwrap_or_default()
        )),
        ComponentPhase::Restarting => line.working(&format!(
            "restarting: {}",
            component.message.as_deref().unwrap_or("")
        )),
        ComponentPhase::Building => line.done(
            component
                .message
                .as_deref()
                .unwrap_or("being built in the background"),
        ),
        ComponentPhase::Failed => line.failed(component.message.as_deref().unwrap_or("failed")),
        ComponentPhase::Unready => line.working(
            component
                .message
                .as_deref()
                .unwrap_or("failing its readiness probe"),
        ),
        ComponentPhase::RollingOut => line.working("rolling out"),
        ComponentPhase::Stopped => line.working("stopped"),
    }
}

/// Fails fast, before anything starts, when a port the installation needs is taken.
/// How long `up` waits for the ports of a killed supervisor's leftovers to be released.
const LEFTOVER_PORTS_FREE_TIMEOUT_MS: u64 = 30_000;

fn check_ports(home: &Home) -> anyhow::Result<()> {
    let ports = home.ports();
    for (component, port) in ports.loopback() {
        if in_use_on_loopback(port) {
            return Err(fail(Code::PortTaken, format!("port {port} wanted by {component} is already in use: stop what holds it (`ss -ltnp 'sport = :{port}'`), or use another --home with PAYTOOL_PORT_BASE")));
        }
    }
    for port in [ports.gateway_http, ports.gateway_https] {
        if !can_bind(port) {
            return Err(fail(Code::PortTaken, format!("port {port} wanted by the gateway is taken or not allowed: free it (`ss -ltnp 'sport = :{port}'`), or use another --home with PAYTOOL_PORT_BASE")));
        }
    }
    Ok(())
}

async fn stop_supervisor(pid: u32, supervisor: &mut std::process::Child) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(raw),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let deadline = Instant::now() + Duration::from_millis(INTERRUPT_STOP_TIMEOUT_MS);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = supervisor.try_wait() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
    let _ = supervisor.kill();
}

fn print_summary(home: &Home, elapsed: Duration) {
    let ports = home.ports();
    println!();
    println!(
        "paytool is up in {:.1}s. Logs: {}",
        elapsed.as_secs_f64(),
        home.logs_dir().display()
    );
    println!();
    println!(
        "  gateway (TLS, CA {})",
        crate::runtime::tls::TlsFiles::of(home).ca_cert.display()
    );
    for (host, what) in [
        ("whoami", "echo of your request"),
        ("sso", "Keycloak, realm paytool"),
        ("api", "consumer-api"),
        ("merchant", "merchant-api, and the merchant dashboard at /"),
        ("wallet", "the consumer wallet"),
    ] {
        println!("    {:<34} {what}", ports.public_url(host));
    }
    for app in &home.marker.apps {
        println!(
            "    {:<34} {}, scaffolded ({})",
            ports.public_url(&app.name),
            app.name,
            app.language.as_str()
        );
    }
    println!("  engines (loopback)");
    println!(
        "    postgres://127.0.0.1:{:<16} PostgreSQL 15",
        ports.postgres
    );
    println!(
        "    {:<36} Kafka (KRaft, {} broker{})",
        crate::runtime::components::kafka::bootstrap(home),
        home.marker.kafka_brokers,
        if home.marker.kafka_brokers == 1 {
            ""
        } else {
            "s"
        }
    );
    println!(
        "  operators' web UIs (sign in as `{}`; its password: paytool status --show-secrets)",
        crate::runtime::components::sign_in::USER
    );
    println!(
        "    {:<34} every component's log (`paytool logs --query`)",
        ports.public_url("logs")
    );
    println!(
        "    {:<34} the dashboards, and Prometheus' own UI",
        ports.public_url("dashboards")
    );
    println!(
        "    {:<34} traces: a trace id from the logs, or a payment id",
        ports.public_url("traces")
    );
    println!("  observability (loopback)");
    for (port, what) in [
        (
            ports.jaeger_query,
            "Jaeger's query API (`paytool trace PAYMENT_ID`)",
        ),
        (ports.prometheus, "Prometheus (`paytool slo`)"),
        (ports.alertmanager, "Alertmanager (`paytool alerts`)"),
    ] {
        println!("    http://127.0.0.1:{port:<19} {what}");
    }
    println!();
    println!("`paytool status` shows health, `paytool logs NAME -f` follows a log, `paytool logs --query WORDS` searches them all, `paytool down` stops it all.");
}
