//! `paytool setup`: installs what the local runtime needs, idempotently, with progress.
//!
//! Debian packages come through apt-get; Kafka's jars, the JMX exporter agent and Keycloak's
//! distribution come from Maven Central through mvn into `~/.cache/paytool`. Each step checks before it acts, so a
//! machine that has everything passes through in well under a second.

use crate::support::exit::{fail, Code};
use crate::support::ui::Ui;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

pub const KAFKA_VERSION: &str = "4.3.1";
pub const KEYCLOAK_VERSION: &str = "26.5.6";
/// The Prometheus JMX exporter's Java agent (`io.prometheus.jmx:jmx_prometheus_javaagent`),
/// which serves Kafka's MBeans as Prometheus metrics from inside its JVM.
pub const JMX_EXPORTER_VERSION: &str = "1.0.1";
/// Toxiproxy's server, built by scripts/install-toxiproxy.sh (which pins the same version: a
/// test compares them) under the cache's `toxiproxy-<version>/`.
pub const TOXIPROXY_VERSION: &str = "2.5.0";
/// `go install` of Toxiproxy: about 35 s on two cores with an empty Go cache.
const TOXIPROXY_BUILD_TIMEOUT_MS: u64 = 10 * 60 * 1000;
/// The image registry (CNCF Distribution), built by scripts/install-registry.sh (which pins
/// the same version: a test compares them) under the cache's `registry-<version>/`, only for
/// an installation with local delivery (`paytool up --delivery`).
pub const REGISTRY_VERSION: &str = "3.1.2";
/// `go install` of the registry: about 3 minutes of CPU on two cores, and a download of its
/// modules (three clouds' storage drivers) that took up to 10 minutes more here.
const REGISTRY_BUILD_TIMEOUT_MS: u64 = 30 * 60 * 1000;
/// VictoriaLogs and OAuth2 Proxy, built by scripts/install-victorialogs.sh and
/// scripts/install-oauth2-proxy.sh (which pin the same versions: a test compares them) as part
/// of the observability build, under the cache's `<name>-<version>/`.
pub const VICTORIALOGS_VERSION: &str = "1.52.2";
pub const OAUTH2_PROXY_VERSION: &str = "7.15.6";
/// The CI server's Buildbot (scripts/install-buildbot.sh pins it, with every package it needs).
pub const BUILDBOT_VERSION: &str = "4.3.0";
/// Its install: a venv and some forty wheels from PyPI, under a minute here.
const BUILDBOT_INSTALL_TIMEOUT_MS: u64 = 10 * 60 * 1000;
/// Keycloak 26 needs Java 21 or newer; Kafka runs on 17.
const KEYCLOAK_MIN_JAVA: u32 = 21;
const KAFKA_MIN_JAVA: u32 = 17;

/// Debian packages the local runtime uses.
pub const DEBIAN_PACKAGES: &[&str] = &[
    "postgresql-15",
    "nginx",
    "libnginx-mod-http-js",
    "maven",
    "unzip",
    "openssl",
    "ca-certificates",
    "openjdk-17-jre-headless",
    // `zbarimg`: the tests read every generated QR PNG back with a real decoder.
    "zbar-tools",
    // Metrics, SLO burn-rate rules (`promtool` checks and unit-tests them) and alert routing.
    "prometheus",
    "prometheus-alertmanager",
    // PostgreSQL's statistics as Prometheus metrics (the postgres dashboard).
    "prometheus-postgres-exporter",
    // The chart of `paytool bench` (its text).
    "fonts-dejavu-core",
    // PostgreSQL with a synchronous replica that fails over (`paytool up --ha`): Patroni, its
    // consensus store, and the stable address that follows the primary.
    "patroni",
    "etcd-server",
    "haproxy",
    // CPU and memory pressure for `paytool chaos` (faults cpu-pressure, memory-pressure).
    "stress-ng",
    // A service's clock put off the machine's (fault clock-skew): libfaketime, preloaded.
    "faketime",
    // The git server of local delivery (`paytool up --delivery`): git's own smart-HTTP server
    // run by fcgiwrap behind the gateway, and gitweb to browse it.
    "git",
    "fcgiwrap",
    "gitweb",
];

/// The names the gateway serves, mapped to loopback in /etc/hosts.
pub const HOST_NAMES: &[&str] = &[
    "sso.local.test",
    "api.local.test",
    "merchant.local.test",
    "wallet.local.test",
    "whoami.local.test",
    "registry.local.test",
    "git.local.test",
    "ci.local.test",
    "logs.local.test",
    "dashboards.local.test",
    "traces.local.test",
];
const HOSTS_BEGIN: &str = "# paytool begin: local gateway names";
const HOSTS_END: &str = "# paytool end";

/// Keycloak's build-time options, baked in once by `paytool setup` so that starts can be `--optimized`.
pub const KEYCLOAK_BUILD_OPTIONS: &[&str] = &[
    "build",
    "--db=postgres",
    "--health-enabled=true",
    "--metrics-enabled=true",
    // One node: no cluster discovery, no distributed caches to form.
    "--cache=local",
];

/// Paths of everything the runtime starts, found after setup.
#[derive(Debug, Clone)]
pub struct Tools {
    pub pg_bin: PathBuf,
    pub nginx: PathBuf,
    pub njs_module: PathBuf,
    pub kafka_java: PathBuf,
    pub kafka_libs: PathBuf,
    pub keycloak_java_home: PathBuf,
    pub keycloak_home: PathBuf,
    /// The OpenTelemetry Collector built with its builder, and Jaeger v2.
    pub otelcol: PathBuf,
    pub jaeger: PathBuf,
    /// VictoriaLogs, and the sign-in in front of the operators' web UIs (built with the two
    /// above).
    pub victorialogs: PathBuf,
    pub oauth2_proxy: PathBuf,
    /// Debian's packages.
    pub prometheus: PathBuf,
    pub alertmanager: PathBuf,
    pub postgres_exporter: PathBuf,
    /// The JMX exporter's agent jar, loaded into Kafka's JVM.
    pub jmx_exporter_agent: PathBuf,
    /// PostgreSQL's high availability (`paytool up --ha`).
    pub patroni: PathBuf,
    pub etcd: PathBuf,
    pub haproxy: PathBuf,
    /// Toxiproxy's server (`paytool up --chaos`).
    pub toxiproxy: PathBuf,
    /// The image registry (`paytool up --delivery`).
    pub registry: PathBuf,
    /// The git server (`paytool up --delivery`): Debian's fcgiwrap runs git's smart-HTTP
    /// server and gitweb (`components::git`), as the gateway asks.
    pub fcgiwrap: PathBuf,
    /// The CI server (`paytool up --delivery`): Buildbot's venv, made by
    /// scripts/install-buildbot.sh.
    pub buildbot: PathBuf,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Leave /etc/hosts alone.
    pub no_hosts: bool,
}

struct Step {
    name: &'static str,
    check: fn(&Setup) -> anyhow::Result<bool>,
    install: fn(&Setup, &Ui) -> anyhow::Result<()>,
    /// Runs in the background from the start of setup, beside the other steps (it needs none
    /// of them): `paytool setup` waits for it at the end, `paytool up` does not.
    background: bool,
}

/// Bounds on the install commands: past these a command is stuck (a mirror that stopped
/// answering, a lock never released) and is killed, with its log named in the error.
const APT_TIMEOUT_MS: u64 = 20 * 60 * 1000;
const MAVEN_TIMEOUT_MS: u64 = 15 * 60 * 1000;
const UNZIP_TIMEOUT_MS: u64 = 5 * 60 * 1000;
const KEYCLOAK_BUILD_TIMEOUT_MS: u64 = 10 * 60 * 1000;
/// The collector and Jaeger from source: about ten minutes on two cores, cold.
pub const OBSERVABILITY_BUILD_TIMEOUT_MS: u64 = 45 * 60 * 1000;
const CHECK_TIMEOUT_MS: u64 = 30_000;
const WAIT_POLL_MS: u64 = 500;

/// Where a background build stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildState {
    Built,
    /// A build holds the install script's lock.
    Building,
    /// Not built, and nothing is building it (never started, or it failed: see its log).
    Missing,
}

pub struct Setup {
    pub project: PathBuf,
    pub cache: PathBuf,
    pub options: Options,
}

const STEPS: &[Step] = &[
    Step {
        name: "debian packages",
        check: check_packages,
        install: install_packages,
        background: false,
    },
    Step {
        name: "java 21+ (keycloak)",
        check: check_java,
        install: explain_java,
        background: false,
    },
    Step {
        name: "kafka jars",
        check: check_kafka,
        install: install_kafka,
        background: false,
    },
    Step {
        name: "kafka jmx exporter",
        check: check_jmx_exporter,
        install: install_jmx_exporter,
        background: false,
    },
    Step {
        name: "keycloak",
        check: check_keycloak,
        install: install_keycloak,
        background: false,
    },
    Step {
        name: "otel collector + jaeger",
        check: check_observability,
        install: install_observability,
        background: true,
    },
    Step {
        name: "toxiproxy (paytool up --chaos)",
        check: check_toxiproxy,
        install: install_toxiproxy,
        background: false,
    },
    Step {
        name: "hosts entries",
        check: check_hosts,
        install: install_hosts,
        background: false,
    },
];

impl Setup {
    pub fn new(project: &Path, cache: &Path, options: Options) -> Self {
        Self {
            project: project.to_path_buf(),
            cache: cache.to_path_buf(),
            options,
        }
    }

    /// Whether every step is already satisfied (cheap: file and package checks only).
    pub fn is_complete(&self) -> bool {
        STEPS.iter().all(|step| (step.check)(self).unwrap_or(false))
    }

    /// `paytool setup`: every step, the background one (the observability build) started
    /// first so that it overlaps the others, and waited for at the end.
    pub fn run(&self, ui: &Ui) -> anyhow::Result<()> {
        self.run_steps(ui, true)
    }

    /// `paytool up`: every step but the background one, which is started (unless it is
    /// running already) and left to finish while the platform starts without it.
    pub fn run_for_up(&self, ui: &Ui) -> anyhow::Result<()> {
        self.run_steps(ui, false)
    }

    fn run_steps(&self, ui: &Ui, wait_for_background: bool) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.cache)
            .with_context(|| format!("cannot create the cache {}", self.cache.display()))?;
        let mut background = Vec::new();
        for step in STEPS.iter().filter(|step| step.background) {
            let line = ui.step(step.name);
            if (step.check)(self)? {
                line.done("present");
                continue;
            }
            let started = Instant::now();
            let child = self.start_observability_build()?;
            match child {
                Some(_) => line.working(&format!(
                    "building in the background (log {})",
                    self.log_path("observability").display()
                )),
                None => line.working("being built by an earlier run"),
            }
            background.push((line, started, child));
        }
        for step in STEPS.iter().filter(|step| !step.background) {
            let line = ui.step(step.name);
            if (step.check)(self)? {
                line.done("present");
                continue;
            }
            let started = Instant::now();
            line.working("installing");
            match (step.install)(self, ui) {
                Ok(()) => line.done(&format!(
                    "installed in {:.1}s",
                    started.elapsed().as_secs_f64()
                )),
                Err(error) => {
                    line.failed("failed");
                    return Err(error);
                }
            }
        }
        for (line, started, child) in background {
            if !wait_for_background {
                line.done("building in the background: the platform starts without the collector and Jaeger and adds them when they are built");
                continue;
            }
            line.working("waiting for the background build");
            let waited = match child {
                Some(mut child) => self.wait_for_own_build(&mut child),
                None => self.wait_for_observability(OBSERVABILITY_BUILD_TIMEOUT_MS),
            };
            match waited {
                Ok(()) => line.done(&format!("built in {:.1}s", started.elapsed().as_secs_f64())),
                Err(error) => {
                    line.failed("failed");
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    /// Starts scripts/install-observability.sh detached (its own process group, so Ctrl-C
    /// in this terminal does not reach it, and it outlives `paytool up`), unless a build holds
    /// its lock already. The child when this call started it.
    pub fn start_observability_build(&self) -> anyhow::Result<Option<std::process::Child>> {
        if self.observability_build_state() == BuildState::Building {
            return Ok(None);
        }
        let log = self.log_path("observability");
        std::fs::create_dir_all(log.parent().context("log dir")?)?;
        let file = std::fs::File::create(&log)?;
        use std::os::unix::process::CommandExt;
        let child = observability_script(self)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .process_group(0)
            .spawn()
            .context("cannot start scripts/install-observability.sh")?;
        Ok(Some(child))
    }

    /// Waits (bounded) for the build this process started.
    fn wait_for_own_build(&self, child: &mut std::process::Child) -> anyhow::Result<()> {
        let log = self.log_path("observability");
        let status = crate::support::child::wait_bounded(child, OBSERVABILITY_BUILD_TIMEOUT_MS)?;
        if status.is_some_and(|status| status.success()) && check_observability(self)? {
            return Ok(());
        }
        Err(failed_with_log(
            &format!(
                "building the collector and Jaeger failed or took over {} minutes",
                OBSERVABILITY_BUILD_TIMEOUT_MS / 60_000
            ),
            &log,
        ))
    }

    /// Built, being built (someone holds the script's lock), or neither.
    pub fn observability_build_state(&self) -> BuildState {
        if check_observability(self).unwrap_or(false) {
            return BuildState::Built;
        }
        let lock = self.observability_dir().join(".lock");
        let Ok(file) = std::fs::OpenOptions::new().read(true).open(&lock) else {
            return BuildState::Missing;
        };
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockSharedNonblock) {
            // Nobody holds it exclusively: no build is running (ours is released on drop).
            Ok(_unlocked_on_drop) => BuildState::Missing,
            Err(_) => BuildState::Building,
        }
    }

    /// Waits (bounded) until the background build is done; an error with its log's tail when
    /// it failed, or when nothing is building it.
    pub fn wait_for_observability(&self, timeout_ms: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + std::time::Duration::from_millis(timeout_ms);
        loop {
            match self.observability_build_state() {
                BuildState::Built => return Ok(()),
                BuildState::Missing => {
                    // The script may have exited a moment ago, between its stamp and our look.
                    if check_observability(self)? {
                        return Ok(());
                    }
                    return Err(failed_with_log(
                        "building the collector and Jaeger failed",
                        &self.log_path("observability"),
                    ));
                }
                BuildState::Building if Instant::now() >= deadline => {
                    return Err(fail(
                        Code::Prerequisite,
                        format!(
                            "the collector and Jaeger were not built within {} minutes; see {}",
                            timeout_ms / 60_000,
                            self.log_path("observability").display()
                        ),
                    ))
                }
                BuildState::Building => {
                    std::thread::sleep(std::time::Duration::from_millis(WAIT_POLL_MS))
                }
            }
        }
    }

    pub fn tools(&self) -> anyhow::Result<Tools> {
        let keycloak_java_home = find_java_home(KEYCLOAK_MIN_JAVA).ok_or_else(java_missing)?;
        let kafka_java = find_java_home(KAFKA_MIN_JAVA)
            .ok_or_else(java_missing)?
            .join("bin/java");
        Ok(Tools {
            pg_bin: PathBuf::from("/usr/lib/postgresql/15/bin"),
            nginx: PathBuf::from("/usr/sbin/nginx"),
            njs_module: PathBuf::from("/usr/lib/nginx/modules/ngx_http_js_module.so"),
            kafka_java,
            kafka_libs: self.kafka_dir().join("libs"),
            keycloak_java_home,
            keycloak_home: self.keycloak_dir(),
            otelcol: self.observability_dir().join("bin/paytool-otelcol"),
            jaeger: self.observability_dir().join("bin/jaeger"),
            victorialogs: self
                .cache
                .join(format!("victorialogs-{VICTORIALOGS_VERSION}"))
                .join("bin/victoria-logs"),
            oauth2_proxy: self
                .cache
                .join(format!("oauth2-proxy-{OAUTH2_PROXY_VERSION}"))
                .join("bin/oauth2-proxy"),
            prometheus: PathBuf::from("/usr/bin/prometheus"),
            alertmanager: PathBuf::from("/usr/bin/prometheus-alertmanager"),
            postgres_exporter: PathBuf::from("/usr/bin/prometheus-postgres-exporter"),
            jmx_exporter_agent: self.jmx_exporter_jar(),
            patroni: PathBuf::from("/usr/bin/patroni"),
            etcd: PathBuf::from("/usr/bin/etcd"),
            haproxy: PathBuf::from("/usr/sbin/haproxy"),
            toxiproxy: self.toxiproxy_path(),
            registry: self.registry_path(),
            fcgiwrap: PathBuf::from("/usr/sbin/fcgiwrap"),
            buildbot: self.buildbot_venv(),
        })
    }

    fn buildbot_venv(&self) -> PathBuf {
        self.cache.join(format!("venv-buildbot-{BUILDBOT_VERSION}"))
    }

    /// Installs the CI server (Buildbot, from PyPI into a venv) unless it is there: like the
    /// registry, only for installations with local delivery.
    pub fn ensure_buildbot(&self, ui: &Ui) -> anyhow::Result<()> {
        let line = ui.step("CI server (paytool up --delivery)");
        let script = self.project.join("scripts/install-buildbot.sh");
        let installed = Command::new("bash")
            .arg(&script)
            .arg("--check")
            .env("PAYTOOL_CACHE_DIR", &self.cache)
            .status()
            .is_ok_and(|status| status.success());
        if installed {
            line.done("present");
            return Ok(());
        }
        let started = Instant::now();
        line.working("installing Buildbot (once)");
        let mut command = Command::new("bash");
        command.arg(&script).env("PAYTOOL_CACHE_DIR", &self.cache);
        match self.run_logged("buildbot", &mut command, BUILDBOT_INSTALL_TIMEOUT_MS) {
            Ok(()) => {
                line.done(&format!(
                    "installed in {:.1}s",
                    started.elapsed().as_secs_f64()
                ));
                Ok(())
            }
            Err(error) => {
                line.failed("failed");
                Err(error)
            }
        }
    }

    fn registry_path(&self) -> PathBuf {
        self.cache
            .join(format!("registry-{REGISTRY_VERSION}"))
            .join("bin/registry")
    }

    /// Builds the image registry unless it is built: what `paytool up --delivery` needs beyond
    /// every installation's setup (a step of its own, so that installations without local
    /// delivery never pay for the build).
    pub fn ensure_registry(&self, ui: &Ui) -> anyhow::Result<()> {
        let line = ui.step("registry (paytool up --delivery)");
        if self.registry_path().is_file() {
            line.done("present");
            return Ok(());
        }
        let started = Instant::now();
        line.working("building (once; minutes)");
        let mut command = Command::new("bash");
        command
            .arg(self.project.join("scripts/install-registry.sh"))
            .env("PAYTOOL_CACHE_DIR", &self.cache);
        match self.run_logged("registry", &mut command, REGISTRY_BUILD_TIMEOUT_MS) {
            Ok(()) => {
                line.done(&format!("built in {:.1}s", started.elapsed().as_secs_f64()));
                Ok(())
            }
            Err(error) => {
                line.failed("failed");
                Err(error)
            }
        }
    }

    fn toxiproxy_path(&self) -> PathBuf {
        self.cache
            .join(format!("toxiproxy-{TOXIPROXY_VERSION}"))
            .join("bin/toxiproxy-server")
    }

    fn kafka_dir(&self) -> PathBuf {
        self.cache.join(format!("kafka-{KAFKA_VERSION}"))
    }
    fn jmx_exporter_jar(&self) -> PathBuf {
        self.cache
            .join(format!("jmx-exporter-{JMX_EXPORTER_VERSION}"))
            .join(format!(
                "jmx_prometheus_javaagent-{JMX_EXPORTER_VERSION}.jar"
            ))
    }
    fn keycloak_dir(&self) -> PathBuf {
        self.cache.join(format!("keycloak-{KEYCLOAK_VERSION}"))
    }
    fn observability_dir(&self) -> PathBuf {
        self.cache.join("observability")
    }
    /// The log of the collector's and Jaeger's build (foreground or background).
    pub fn observability_log(&self) -> PathBuf {
        self.log_path("observability")
    }
    fn log_path(&self, what: &str) -> PathBuf {
        self.cache.join("logs").join(format!("setup-{what}.log"))
    }

    /// Runs an install command with its output in a log file; on failure the error names the
    /// log and quotes its last lines.
    fn run_logged(&self, what: &str, command: &mut Command, timeout_ms: u64) -> anyhow::Result<()> {
        let log = self.log_path(what);
        std::fs::create_dir_all(log.parent().context("log dir")?)?;
        let file = std::fs::File::create(&log)?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot run {:?}", command.get_program()))?;
        let status =
            crate::support::child::wait_bounded(&mut child, timeout_ms)?.ok_or_else(|| {
                fail(
                    Code::Prerequisite,
                    format!(
                        "{what} did not finish within {} minutes and was stopped; see {}",
                        timeout_ms / 60_000,
                        log.display()
                    ),
                )
            })?;
        if status.success() {
            return Ok(());
        }
        Err(failed_with_log(&format!("{what} failed ({status})"), &log))
    }
}

/// A failed install step: what failed, its log, and the log's last lines, in one line.
fn failed_with_log(what: &str, log: &Path) -> anyhow::Error {
    let tail = crate::support::files::tail_lines(log, 5)
        .unwrap_or_default()
        .join(" | ");
    fail(
        Code::Prerequisite,
        format!("{what}; see {}: {tail}", log.display()),
    )
}

/// The collector and Jaeger are built from source with Go (scripts/install-observability.sh,
/// which pins their versions and keeps everything under the cache's `observability/`).
fn observability_script(setup: &Setup) -> Command {
    let mut command = Command::new("bash");
    command
        .arg(setup.project.join("scripts/install-observability.sh"))
        .env("PAYTOOL_CACHE_DIR", &setup.cache);
    command
}

fn check_observability(setup: &Setup) -> anyhow::Result<bool> {
    let Ok(mut child) = observability_script(setup)
        .arg("--check")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return Ok(false);
    };
    Ok(
        crate::support::child::wait_bounded(&mut child, CHECK_TIMEOUT_MS)?
            .is_some_and(|status| status.success()),
    )
}

fn install_observability(setup: &Setup, _: &Ui) -> anyhow::Result<()> {
    setup.run_logged(
        "observability",
        &mut observability_script(setup),
        OBSERVABILITY_BUILD_TIMEOUT_MS,
    )
}

/// The binary's path holds its version: its presence is the check.
fn check_toxiproxy(setup: &Setup) -> anyhow::Result<bool> {
    Ok(setup.toxiproxy_path().is_file())
}

fn install_toxiproxy(setup: &Setup, _: &Ui) -> anyhow::Result<()> {
    let mut command = Command::new("bash");
    command
        .arg(setup.project.join("scripts/install-toxiproxy.sh"))
        .env("PAYTOOL_CACHE_DIR", &setup.cache);
    setup.run_logged("toxiproxy", &mut command, TOXIPROXY_BUILD_TIMEOUT_MS)
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn missing_packages() -> anyhow::Result<Vec<&'static str>> {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${Status}\n"])
        .args(DEBIAN_PACKAGES)
        .output()
        .map_err(|_| {
            fail(
                Code::Prerequisite,
                "dpkg-query not found: paytool's local runtime needs a Debian-based machine",
            )
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    let installed: Vec<&str> = text
        .lines()
        .filter(|line| line.ends_with("install ok installed"))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    Ok(DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed.contains(p))
        .collect())
}

fn check_packages(_: &Setup) -> anyhow::Result<bool> {
    Ok(missing_packages()?.is_empty())
}

fn install_packages(setup: &Setup, _: &Ui) -> anyhow::Result<()> {
    let missing = missing_packages()?;
    if !is_root() {
        return Err(fail(
            Code::Prerequisite,
            format!(
                "missing Debian packages; run: sudo apt-get install -y {}",
                missing.join(" ")
            ),
        ));
    }
    setup.run_logged(
        "apt-get-update",
        Command::new("apt-get").args(["update", "-qq"]),
        APT_TIMEOUT_MS,
    )?;
    setup.run_logged(
        "apt-get-install",
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing),
        APT_TIMEOUT_MS,
    )
}

/// The newest JDK under /usr/lib/jvm (or `PAYTOOL_JAVA_HOME`) with at least `min` as major version.
pub fn find_java_home(min: u32) -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("PAYTOOL_JAVA_HOME").map(PathBuf::from) {
        if java_major(&home).is_some_and(|v| v >= min) {
            return Some(home);
        }
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/jvm")
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| !path.is_symlink() && path.join("bin/java").is_file())
        .filter_map(|path| java_major(&path).map(|major| (major, path)))
        .filter(|(major, _)| *major >= min)
        .collect();
    // Prefer the oldest that qualifies: the most conservative runtime for each engine.
    candidates.sort();
    candidates.into_iter().next().map(|(_, path)| path)
}

fn java_major(home: &Path) -> Option<u32> {
    let release = std::fs::read_to_string(home.join("release")).ok()?;
    let line = release
        .lines()
        .find(|line| line.starts_with("JAVA_VERSION="))?;
    let version = line.trim_start_matches("JAVA_VERSION=").trim_matches('"');
    version.split('.').next()?.parse().ok()
}

fn java_missing() -> anyhow::Error {
    fail(
        Code::Prerequisite,
        format!(
            "Keycloak {KEYCLOAK_VERSION} needs a JDK {KEYCLOAK_MIN_JAVA}+ under /usr/lib/jvm: install one (e.g. `apt-get install -y openjdk-{KEYCLOAK_MIN_JAVA}-jdk-headless` where your release has it) or set PAYTOOL_JAVA_HOME"
        ),
    )
}

fn check_java(_: &Setup) -> anyhow::Result<bool> {
    Ok(find_java_home(KEYCLOAK_MIN_JAVA).is_some())
}

fn explain_java(_: &Setup, _: &Ui) -> anyhow::Result<()> {
    Err(java_missing())
}

fn check_kafka(setup: &Setup) -> anyhow::Result<bool> {
    Ok(setup.kafka_dir().join("libs/.complete").is_file())
}

fn install_kafka(setup: &Setup, _: &Ui) -> anyhow::Result<()> {
    let libs = setup.kafka_dir().join("libs");
    std::fs::create_dir_all(&libs)?;
    let pom = setup.project.join("stacks/local/kafka/pom.xml");
    setup.run_logged(
        "kafka",
        Command::new("mvn")
            .args(["-B", "-q", "-f"])
            .arg(&pom)
            .arg(format!("-Dkafka.version={KAFKA_VERSION}"))
            .args(["dependency:copy-dependencies", "-DincludeScope=runtime"])
            .arg(format!("-DoutputDirectory={}", libs.display())),
        MAVEN_TIMEOUT_MS,
    )?;
    std::fs::write(libs.join(".complete"), KAFKA_VERSION)?;
    Ok(())
}

fn check_jmx_exporter(setup: &Setup) -> anyhow::Result<bool> {
    Ok(setup.jmx_exporter_jar().is_file())
}

/// Copied into a scratch directory first and renamed into place, so that an interrupted
/// download never leaves a jar that `check_jmx_exporter` would take for complete.
fn install_jmx_exporter(setup: &Setup, _: &Ui) -> anyhow::Result<()> {
    let jar = setup.jmx_exporter_jar();
    let dir = jar.parent().context("the agent's directory")?;
    let scratch = setup
        .cache
        .join(format!(".jmx-exporter-{JMX_EXPORTER_VERSION}.download"));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    setup.run_logged(
        "jmx-exporter",
        Command::new("mvn")
            .args(["-B", "-q", "dependency:copy"])
            .arg(format!(
                "-Dartifact=io.prometheus.jmx:jmx_prometheus_javaagent:{JMX_EXPORTER_VERSION}"
            ))
            .arg(format!("-DoutputDirectory={}", scratch.display())),
        MAVEN_TIMEOUT_MS,
    )?;
    std::fs::create_dir_all(dir)?;
    std::fs::rename(scratch.join(jar.file_name().context("a jar name")?), &jar)
        .context("mvn did not leave the JMX exporter's jar where expected")?;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

fn check_keycloak(setup: &Setup) -> anyhow::Result<bool> {
    Ok(setup.keycloak_dir().join(".paytool-built").is_file())
}

fn install_keycloak(setup: &Setup, _: &Ui) -> anyhow::Result<()> {
    let downloads = setup.cache.join("downloads");
    std::fs::create_dir_all(&downloads)?;
    let zip = downloads.join(format!("keycloak-quarkus-dist-{KEYCLOAK_VERSION}.zip"));
    if !zip.is_file() {
        setup.run_logged(
            "keycloak-download",
            Command::new("mvn")
                .args(["-B", "-q", "dependency:copy"])
                .arg(format!(
                    "-Dartifact=org.keycloak:keycloak-quarkus-dist:{KEYCLOAK_VERSION}:zip"
                ))
                .arg(format!("-DoutputDirectory={}", downloads.display())),
            MAVEN_TIMEOUT_MS,
        )?;
    }
    let target = setup.keycloak_dir();
    let unpack = setup
        .cache
        .join(format!(".keycloak-{KEYCLOAK_VERSION}.unpack"));
    let _ = std::fs::remove_dir_all(&unpack);
    let _ = std::fs::remove_dir_all(&target);
    setup.run_logged(
        "keycloak-unzip",
        Command::new("unzip")
            .arg("-q")
            .arg(&zip)
            .arg("-d")
            .arg(&unpack),
        UNZIP_TIMEOUT_MS,
    )?;
    std::fs::rename(unpack.join(format!("keycloak-{KEYCLOAK_VERSION}")), &target)
        .context("the Keycloak archive has an unexpected layout")?;
    let _ = std::fs::remove_dir_all(&unpack);
    let java_home = find_java_home(KEYCLOAK_MIN_JAVA).ok_or_else(java_missing)?;
    // The build step bakes build-time options into the distribution so that every start can
    // use --optimized and skip Quarkus' augmentation (about a minute on two cores).
    setup.run_logged(
        "keycloak-build",
        Command::new(target.join("bin/kc.sh"))
            .env("JAVA_HOME", &java_home)
            .args(KEYCLOAK_BUILD_OPTIONS),
        KEYCLOAK_BUILD_TIMEOUT_MS,
    )?;
    std::fs::write(target.join(".paytool-built"), KEYCLOAK_VERSION)?;
    Ok(())
}

fn check_hosts(setup: &Setup) -> anyhow::Result<bool> {
    if setup.options.no_hosts {
        return Ok(true);
    }
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    Ok(HOST_NAMES.iter().all(|name| {
        hosts.lines().any(|line| {
            let mut words = line.split('#').next().unwrap_or("").split_whitespace();
            words.next().is_some_and(|ip| ip.starts_with("127.")) && words.any(|w| w == *name)
        })
    }))
}

fn install_hosts(_: &Setup, _: &Ui) -> anyhow::Result<()> {
    let line = format!("127.0.0.1 {}", HOST_NAMES.join(" "));
    if !is_root() {
        return Err(fail(
            Code::Prerequisite,
            format!("the gateway names need /etc/hosts entries; run: echo '{line}' | sudo tee -a /etc/hosts (or pass --no-hosts)"),
        ));
    }
    let current = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let mut kept = Vec::new();
    let mut inside = false;
    for existing in current.lines() {
        if existing == HOSTS_BEGIN {
            inside = true;
        } else if existing == HOSTS_END {
            inside = false;
        } else if !inside {
            kept.push(existing.to_string());
        }
    }
    kept.extend([HOSTS_BEGIN.to_string(), line, HOSTS_END.to_string()]);
    // /etc/hosts is often a bind mount (containers): rewrite it in place, never rename over it.
    std::fs::write("/etc/hosts", kept.join("\n") + "\n").context("cannot write /etc/hosts")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_java_release_file_gives_the_major_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("release"),
            "IMPLEMENTOR=\"x\"\nJAVA_VERSION=\"21.0.4\"\n",
        )
        .expect("write");
        assert_eq!(java_major(dir.path()), Some(21));
        std::fs::write(dir.path().join("release"), "JAVA_VERSION=\"1.8.0_392\"\n").expect("write");
        assert_eq!(java_major(dir.path()), Some(1));
    }

    #[test]
    fn the_install_scripts_pin_the_versions_setup_expects() {
        let scripts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts");
        for (script, version) in [
            ("install-victorialogs.sh", VICTORIALOGS_VERSION),
            ("install-oauth2-proxy.sh", OAUTH2_PROXY_VERSION),
        ] {
            let text = std::fs::read_to_string(scripts.join(script)).expect("the script");
            assert!(text.contains(&format!("VERSION=v{version}\n")), "{script}");
        }
    }
}
