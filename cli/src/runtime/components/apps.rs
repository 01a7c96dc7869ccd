//! Services scaffolded into the project (`paytool scaffold service`). They are registered by
//! the stamp the scaffolder writes (`services/NAME/.paytool-template.json`), not by code like
//! the platform's own three: `paytool up` finds the stamps, keeps the list in the
//! installation's marker, builds each service, and the supervisor runs it as a component named
//! after it, probed at `/health/ready`, routed at `https://NAME.local.test` by the gateway and
//! scraped by Prometheus (job `NAME`).

use super::{http_probe, Component, ComponentName, Ctx, Spec};
use crate::runtime::home::{derive, Home, Secrets};
use crate::runtime::ports::{APPS_MAX, APP_PORTS};
use crate::runtime::probe::Probe;
use crate::support::exit::{fail, Code};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The file in a scaffolded service's directory that registers it: the template, its version
/// and the answers it was rendered with.
pub const STAMP_FILE: &str = ".paytool-template.json";

/// The languages a service can be scaffolded in: one template each, under
/// `templates/service/<language>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Language {
    Rust,
    Kotlin,
}

impl Language {
    pub const ALL: [Language; 2] = [Language::Rust, Language::Kotlin];

    pub fn as_str(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Kotlin => "kotlin",
        }
    }
}

/// A Kotlin service's heap: bounded, like everything the platform runs on one machine.
const KOTLIN_HEAP_MAX_MIB: u32 = 256;

/// What the runtime keeps of a scaffolded service, in the installation's marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppEntry {
    pub name: String,
    pub language: Language,
    /// Its port in the default installation, one of [`APP_PORTS`]; every installation maps
    /// it into its own range (`Ports::app_port`).
    pub port: u16,
}

/// The part of a stamp the runtime reads (the scaffolder writes more: the owner, the
/// description, the files as rendered).
#[derive(Debug, Deserialize)]
struct Stamp {
    answers: AppEntry,
}

/// The scaffolded services of a project, by name: every `services/*/` with a stamp. A stamp
/// that does not parse, names another directory or shares a port is an error that names the
/// file; more than [`APPS_MAX`] is an error too (their ports are reserved in every
/// installation's range).
pub fn discover(project: &Path) -> anyhow::Result<Vec<AppEntry>> {
    let services = project.join("services");
    let mut stamps: Vec<PathBuf> = std::fs::read_dir(&services)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", services.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join(STAMP_FILE))
        .filter(|stamp| stamp.is_file())
        .collect();
    stamps.sort();
    let mut apps: Vec<AppEntry> = Vec::new();
    for path in stamps {
        let broken = |why: String| fail(Code::Usage, format!("{}: {why}", path.display()));
        let text = std::fs::read_to_string(&path)?;
        let stamp: Stamp =
            serde_json::from_str(&text).map_err(|e| broken(format!("not a stamp ({e})")))?;
        let app = stamp.answers;
        check_name(&app.name).map_err(&broken)?;
        let dir = path
            .parent()
            .and_then(Path::file_name)
            .and_then(|name| name.to_str());
        if dir != Some(app.name.as_str()) {
            return Err(broken(format!(
                "names the service {:?}, but it sits in services/{}",
                app.name,
                dir.unwrap_or("?")
            )));
        }
        if !APP_PORTS.contains(&app.port) {
            return Err(broken(format!(
                "port {} is outside {}..{}",
                app.port, APP_PORTS.start, APP_PORTS.end
            )));
        }
        if let Some(other) = apps.iter().find(|other| other.port == app.port) {
            return Err(broken(format!(
                "port {} is also {}'s",
                app.port, other.name
            )));
        }
        apps.push(app);
    }
    if apps.len() > usize::from(APPS_MAX) {
        return Err(fail(
            Code::Usage,
            format!(
                "{} scaffolded services under {}: at most {APPS_MAX} run beside the platform",
                apps.len(),
                services.display()
            ),
        ));
    }
    Ok(apps)
}

/// The most characters a service's name may have: it becomes a host name label, a database
/// and role name, a crate name and a Kubernetes object name.
pub const NAME_MAX_CHARS: usize = 30;

/// Names a scaffolded service may not take: the platform's components, the gateway's hosts,
/// the directories beside the services, and the supervisor (whose log is `logs/supervisor.log`).
const RESERVED_NAMES: &[&str] = &[
    "api",
    "wallet",
    "merchant",
    "sso",
    "whoami",
    "contracts",
    "paykit",
    "emvco",
    "e2e",
    "cli",
    "paytool",
    "portal",
    "registry",
    "git",
    "ci",
    "ci-worker",
    "gateway",
    "app",
    "apps",
    "supervisor",
];

/// A service's name: 2 to [`NAME_MAX_CHARS`] lowercase letters, digits and single hyphens,
/// starting with a letter, not ending with a hyphen, not a name the platform uses.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = (2..=NAME_MAX_CHARS).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(format!(
            "{name:?} is not a service name: 2 to {NAME_MAX_CHARS} lowercase letters, digits and single hyphens, starting with a letter (e.g. loyalty, gift-cards)"
        ));
    }
    let platform = super::names().any(|component| component.as_str() == name);
    if platform || RESERVED_NAMES.contains(&name) {
        return Err(format!("{name:?} is a name the platform already uses"));
    }
    Ok(())
}

/// A scaffolded service as a component: a name, interned so that `ComponentName` stays
/// `Copy` and `as_str` stays `&'static str` like every other component's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct App {
    name: &'static str,
}

/// Each name is interned once per process; a process meets a handful (its project's stamps,
/// a name typed on the command line), and the bound keeps a loop over arbitrary input from
/// growing the table without end.
const INTERNED_MAX: usize = 64;

static INTERNED: Mutex<BTreeMap<&'static str, &'static App>> = Mutex::new(BTreeMap::new());

impl App {
    /// The component of a scaffolded service called `name`, or why there cannot be one.
    pub fn named(name: &str) -> Result<App, String> {
        Ok(*Self::interned(name)?)
    }

    fn interned(name: &str) -> Result<&'static App, String> {
        check_name(name)?;
        let mut table = INTERNED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(app) = table.get(name) {
            return Ok(app);
        }
        if table.len() >= INTERNED_MAX {
            return Err(format!(
                "more than {INTERNED_MAX} service names in one run of paytool"
            ));
        }
        // Leaked on purpose, bounded above: component names live as long as the process.
        let name: &'static str = Box::leak(name.to_string().into_boxed_str());
        let app: &'static App = Box::leak(Box::new(App { name }));
        table.insert(name, app);
        Ok(app)
    }

    /// The same component, with a `'static` lifetime (`ComponentName::component`).
    pub fn as_component(self) -> &'static App {
        Self::interned(self.name).expect("an App exists only once its name was interned")
    }

    pub const fn as_str(self) -> &'static str {
        self.name
    }

    /// The installation's record of it, if the installation runs it.
    pub fn entry(self, home: &Home) -> Option<&AppEntry> {
        home.marker.apps.iter().find(|app| app.name == self.name)
    }

    /// Where it listens in this installation.
    pub fn port(self, home: &Home) -> anyhow::Result<u16> {
        let entry = self.entry(home).ok_or_else(|| {
            anyhow::anyhow!("{} is not a service of this installation", self.name)
        })?;
        Ok(home.ports().app_port(entry.port))
    }

    /// The database and role it owns, named after it.
    pub fn database(self) -> String {
        self.name.replace('-', "_")
    }

    /// Its database role's password, derived from the installation's superuser password, so
    /// that a service scaffolded later needs no new secret kept (and one service's password
    /// says nothing of another's, or of the superuser's).
    pub fn database_password(self, secrets: &Secrets) -> String {
        derive(
            &secrets.postgres_superuser,
            &format!("app-database:{}", self.name),
        )
    }

    /// The secret of its Keycloak client (made by Keycloak's `after_ready`), derived from the
    /// installation's Keycloak admin password in the same way.
    pub fn client_secret(self, secrets: &Secrets) -> String {
        derive(
            &secrets.keycloak_admin,
            &format!("app-client:{}", self.name),
        )
    }

    pub fn database_url(self, home: &Home, secrets: &Secrets) -> String {
        let db = self.database();
        format!(
            "postgres://{db}:{}@127.0.0.1:{}/{db}",
            self.database_password(secrets),
            home.ports().postgres
        )
    }
}

/// Serialized as its name, like every other component.
impl Serialize for App {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name)
    }
}

impl<'de> Deserialize<'de> for App {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        App::named(&name).map_err(serde::de::Error::custom)
    }
}

/// The apps of an installation, from its marker.
pub fn of(home: &Home) -> Vec<App> {
    home.marker
        .apps
        .iter()
        .filter_map(|entry| App::named(&entry.name).ok())
        .collect()
}

impl Component for App {
    fn name(&self) -> ComponentName {
        ComponentName::App(*self)
    }

    fn spec(&self, ctx: &Ctx) -> anyhow::Result<Spec> {
        let app = *self;
        let entry = app
            .entry(&ctx.home)
            .ok_or_else(|| anyhow::anyhow!("{} is not a service of this installation", app.name))?;
        let port = app.port(&ctx.home)?;
        let dir = ctx.project.join("services").join(app.name);
        // A Rust service is a binary beside paytool's; a Kotlin one is Maven's runnable jar,
        // run by the JDK 17 that Kafka runs on.
        let (program, args) = match entry.language {
            Language::Rust => (ctx.bin_dir.join(app.name), Vec::new()),
            Language::Kotlin => (
                ctx.tools.kafka_java.clone(),
                vec![
                    format!("-Xmx{KOTLIN_HEAP_MAX_MIB}m"),
                    "-XX:+ExitOnOutOfMemoryError".to_string(),
                    "-jar".to_string(),
                    staged_jar(&ctx.home, app.name).display().to_string(),
                ],
            ),
        };
        let mut env: Vec<(String, String)> = vec![
            ("APP__HTTP__HOST".into(), "127.0.0.1".into()),
            ("APP__HTTP__PORT".into(), port.to_string()),
            (
                "APP__DATABASE__URL".into(),
                app.database_url(&ctx.home, &ctx.secrets),
            ),
        ];
        env.extend(super::services::auth_env(
            &ctx.home,
            app.name,
            &format!("http://127.0.0.1:{}", ctx.home.ports().keycloak),
        ));
        env.extend(super::services::telemetry_env(&ctx.home));
        // Where its outbox's relay publishes (the Rust template's events).
        env.push((
            "APP__KAFKA__BOOTSTRAP_SERVERS".into(),
            super::kafka::bootstrap(&ctx.home),
        ));
        Ok(Spec {
            name: ComponentName::App(app),
            instance: 0,
            program,
            args,
            env,
            cwd: dir,
            run_as: None,
            ports: vec![("http", port)],
            urls: vec![
                format!("http://127.0.0.1:{port}"),
                ctx.home.ports().public_url(app.name),
            ],
            probe: self.probe(&ctx.home, &ctx.secrets),
            // A JVM takes longer to start than a Rust binary.
            ready_timeout_ms: match entry.language {
                Language::Rust => 30_000,
                Language::Kotlin => 90_000,
            },
            // SIGTERM drains (paykit's `serve_draining`; the Kotlin template's shutdown hook):
            // readiness fails, in-flight requests finish within 5 s, then it exits.
            stop_signal: Signal::SIGTERM,
            stop_timeout_ms: 10_000,
        })
    }

    /// A Kotlin service runs from a copy of its jar taken when the supervisor starts it: the
    /// JVM reads classes from the jar as it first needs them, so a `mvn package` or `mvn
    /// verify` in the service's directory (which rewrites `target/NAME.jar`) would pull the
    /// classes out from under the running service (seen: `NoClassDefFoundError` and a service
    /// that answered nothing more). A restart keeps the copy; the next `paytool up` takes a new
    /// one. (A Rust binary needs none: cargo puts a rebuilt binary in a new file.)
    fn prepare<'a>(&'a self, ctx: &'a Ctx) -> super::Step<'a> {
        Box::pin(async move {
            let app = *self;
            if app.entry(&ctx.home).map(|e| e.language) != Some(Language::Kotlin) {
                return Ok(());
            }
            let staged = staged_jar(&ctx.home, app.name);
            if staged.is_file() {
                return Ok(());
            }
            let built = kotlin_jar(&ctx.project.join("services").join(app.name), app.name);
            std::fs::create_dir_all(staged.parent().expect("a directory"))?;
            let partial = staged.with_extension("jar.partial");
            std::fs::copy(&built, &partial)
                .map_err(|e| anyhow::anyhow!("cannot copy {} to run it: {e}", built.display()))?;
            std::fs::rename(&partial, &staged)?;
            Ok(())
        })
    }

    fn probe(&self, home: &Home, _secrets: &Secrets) -> Probe {
        // A marker without it (an installation made before it was scaffolded) has no port for
        // it: the probe then points nowhere and says not ready.
        let port = self.port(home).unwrap_or(0);
        http_probe(format!("http://127.0.0.1:{port}/health/ready"))
    }
}

/// Maven's runnable jar of a Kotlin service (the template's `finalName`).
fn kotlin_jar(dir: &Path, name: &str) -> PathBuf {
    dir.join("target").join(format!("{name}.jar"))
}

/// The copy of it the service runs from, beside the platform services' staged binaries (the
/// supervisor empties that directory when it starts).
fn staged_jar(home: &Home, name: &str) -> PathBuf {
    home.run_dir().join("bin").join(format!("{name}.jar"))
}

/// Builds the installation's scaffolded services: the Rust ones where `paytool` itself was
/// built (cargo decides what is out of date; an unchanged service takes about a second), the
/// Kotlin ones with Maven in their directory (`mvn package`, tests left to the test run).
pub fn build(apps: &[AppEntry], bin_dir: &Path, project: &Path) -> anyhow::Result<()> {
    for app in apps.iter().filter(|app| app.language == Language::Kotlin) {
        let dir = project.join("services").join(&app.name);
        let output = std::process::Command::new("mvn")
            .current_dir(&dir)
            .args(["-B", "-q", "-DskipTests", "package"])
            .output()
            .map_err(|e| {
                fail(
                    Code::Prerequisite,
                    format!("cannot run mvn ({e}): `paytool setup` installs Maven"),
                )
            })?;
        if !output.status.success() || !kotlin_jar(&dir, &app.name).is_file() {
            let said = String::from_utf8_lossy(&output.stdout);
            let last = said
                .lines()
                .rfind(|l| l.contains("ERROR"))
                .unwrap_or("no jar was made");
            return Err(fail(
                Code::Prerequisite,
                format!(
                    "Maven could not build {}: {last} (run `mvn package` in {} to see it all)",
                    app.name,
                    dir.display()
                ),
            ));
        }
    }
    build_rust(apps, bin_dir, project)
}

fn build_rust(apps: &[AppEntry], bin_dir: &Path, project: &Path) -> anyhow::Result<()> {
    let rust: Vec<&str> = apps
        .iter()
        .filter(|app| app.language == Language::Rust)
        .map(|app| app.name.as_str())
        .collect();
    if rust.is_empty() {
        return Ok(());
    }
    // bin_dir is `<target>/debug` or `<target>/release`, as cargo laid it out.
    let profile = bin_dir.file_name().and_then(|p| p.to_str());
    let target = bin_dir
        .parent()
        .filter(|_| matches!(profile, Some("debug" | "release")));
    let Some(target) = target else {
        return Err(fail(
            Code::Prerequisite,
            format!(
                "paytool runs from {}, not from a cargo target directory: build the scaffolded services ({}) with `cargo build -p NAME` and run the paytool built beside them",
                bin_dir.display(),
                rust.join(", ")
            ),
        ));
    };
    let mut cargo = std::process::Command::new("cargo");
    cargo
        .current_dir(project)
        .env("CARGO_TARGET_DIR", target)
        .args(["build", "--quiet", "--bins"]);
    if profile == Some("release") {
        cargo.arg("--release");
    }
    for name in &rust {
        cargo.args(["-p", name]);
    }
    let output = cargo
        .output()
        .map_err(|e| fail(Code::Prerequisite, format!("cannot run cargo: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(fail(
            Code::Prerequisite,
            format!(
                "cargo could not build the scaffolded services {}: {last} (run `cargo build -p {}` to see it all)",
                rust.join(", "),
                rust[0]
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_name_is_lowercase_words_joined_by_single_hyphens() {
        for good in ["loyalty", "gift-cards", "a2", "fx-rates-v2"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "x",
            "Loyalty",
            "2fa",
            "gift--cards",
            "gift-",
            "-gift",
            "gift_cards",
            "gift.cards",
            "a-very-long-name-that-goes-past-thirty",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn the_platforms_own_names_are_refused() {
        for taken in [
            "orchestrator",
            "consumer-api",
            "kafka",
            "gateway",
            "sso",
            "contracts",
            "supervisor",
        ] {
            let why = check_name(taken).expect_err(taken);
            assert!(why.contains("already uses"), "{why}");
        }
    }

    #[test]
    fn one_name_is_one_component_and_keeps_its_text() {
        let a = App::named("loyalty").expect("a valid name");
        let b = App::named("loyalty").expect("a valid name");
        assert_eq!(a, b);
        assert!(std::ptr::eq(a.as_component(), b.as_component()));
        assert_eq!(ComponentName::App(a).as_str(), "loyalty");
        assert_eq!(
            "loyalty".parse::<ComponentName>().ok(),
            Some(ComponentName::App(a))
        );
        assert!(App::named("Not A Name").is_err());
    }

    #[test]
    fn a_scaffolded_service_is_serialized_by_its_bare_name_like_every_component() {
        let loyalty = ComponentName::App(App::named("loyalty").expect("valid"));
        assert_eq!(
            serde_json::to_string(&loyalty).ok().as_deref(),
            Some("\"loyalty\"")
        );
        let back: ComponentName = serde_json::from_str("\"loyalty\"").expect("parses");
        assert_eq!(back, loyalty);
        let kafka: ComponentName = serde_json::from_str("\"kafka\"").expect("parses");
        assert_eq!(kafka, ComponentName::Kafka);
        assert_eq!(
            serde_json::to_string(&ComponentName::ConsumerApi)
                .ok()
                .as_deref(),
            Some("\"consumer-api\"")
        );
        assert!(serde_json::from_str::<ComponentName>("\"Not A Name\"").is_err());
    }

    #[test]
    fn a_services_database_password_and_client_secret_are_stable_and_its_own() {
        let secrets = Secrets::generate();
        let loyalty = App::named("loyalty").expect("valid");
        let rewards = App::named("rewards").expect("valid");
        let password = loyalty.database_password(&secrets);
        assert_eq!(password, loyalty.database_password(&secrets));
        assert_ne!(password, rewards.database_password(&secrets));
        assert_eq!(password.len(), 32);
        assert!(password.chars().all(|c| c.is_ascii_hexdigit()));
        let secret = loyalty.client_secret(&secrets);
        assert_eq!(secret, loyalty.client_secret(&secrets));
        assert_ne!(secret, password, "the client secret is another secret");
        assert_ne!(secret, rewards.client_secret(&secrets));
    }
}
