//! The state directory of one installation (`.paytool/` by default).
//!
//! Layout: `paytool.json` (the marker: format, installation id, checkout, ports), `secrets.json`
//! (0600), `tls/`, `logs/`, `run/` (supervisor pid and state), and one directory per component
//! for its data. A directory without the marker, with an unreadable marker, or made by another
//! checkout is refused with an explanation instead of being reused or overwritten.

use crate::runtime::ports::Ports;
use crate::support::exit::{fail, Code};
use anyhow::Context;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Bumped when the layout changes incompatibly.
pub const FORMAT: u32 = 1;
const MARKER: &str = "paytool.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Marker {
    pub format: u32,
    pub installation_id: String,
    pub created_at: String,
    pub project_root: PathBuf,
    pub ports: Ports,
    /// Missing in markers written before replicas existed: one instance each.
    #[serde(default)]
    pub replicas: Replicas,
    /// PostgreSQL as a Patroni cluster (a primary and a synchronous replica behind HAProxy)
    /// instead of one server: chosen when the installation is made (`paytool up --ha`), since
    /// the two keep their data apart.
    #[serde(default)]
    pub ha: bool,
    /// How many Kafka brokers run (1, or 3 with `paytool up --kafka-brokers 3`), each also a
    /// controller of the metadata quorum: chosen when the installation is made, since the
    /// quorum's voters are written into every broker's storage when it is formatted. Missing
    /// in markers written before it existed: one.
    #[serde(default = "one_broker")]
    pub kafka_brokers: u8,
    /// The services call PostgreSQL, Keycloak and each other through Toxiproxy, where `paytool
    /// chaos` makes network faults (`paytool up --chaos`; `--no-chaos` takes it away). Off by
    /// default: a normal run pays no proxy hop.
    #[serde(default)]
    pub chaos: bool,
    /// Local delivery runs beside the platform: the image registry at `registry.local.test`
    /// (`paytool up --delivery`; `--no-delivery` takes it away, its images kept). Off by
    /// default: a platform that only serves payments needs none of it.
    #[serde(default)]
    pub delivery: bool,
    /// Percent of the traces started at the gateway that are kept (sent on to Jaeger), chosen
    /// by each trace's id; a caller's own `traceparent` decides for its trace, and the
    /// gateway's span of a request that failed (5xx) is kept whatever was chosen. `paytool up
    /// --trace-sample-percent`; every trace (100) when not set.
    #[serde(default = "every_trace")]
    pub trace_sample_percent: u8,
    /// The services scaffolded into the project (`paytool scaffold service`) that this
    /// installation runs, as `up` last found them under `services/`.
    #[serde(default)]
    pub apps: Vec<crate::runtime::components::apps::AppEntry>,
}

fn one_broker() -> u8 {
    1
}

fn every_trace() -> u8 {
    100
}

/// The sample rates an installation may keep: 1 to 100 percent of traces.
pub const TRACE_SAMPLE_PERCENTS: std::ops::RangeInclusive<u8> = 1..=100;

/// The broker counts an installation may have: one, or three (a quorum that outlives one
/// broker; two would stop when either died, as a quorum of two needs both).
pub const KAFKA_BROKER_COUNTS: [u8; 2] = [1, 3];

/// How many instances of each service run, kept with the installation (`paytool up
/// --replicas` sets it) so that every later `up` runs the same. Each is 1..=`REPLICAS_MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replicas {
    pub orchestrator: u8,
    pub consumer_api: u8,
    pub merchant_api: u8,
}

impl Default for Replicas {
    fn default() -> Self {
        Self {
            orchestrator: 1,
            consumer_api: 1,
            merchant_api: 1,
        }
    }
}

impl Replicas {
    /// Every count within 1..=`REPLICAS_MAX`, or the one-line reason it is not.
    pub fn check(&self) -> Result<(), String> {
        let max = crate::runtime::ports::REPLICAS_MAX;
        for (service, count) in [
            ("orchestrator", self.orchestrator),
            ("consumer-api", self.consumer_api),
            ("merchant-api", self.merchant_api),
        ] {
            if !(1..=max).contains(&count) {
                return Err(format!(
                    "{service} is set to {count} instances; a service runs 1 to {max}"
                ));
            }
        }
        Ok(())
    }
}

/// A secret of its own for one purpose (`label`), from one the installation keeps: 32 hex
/// digits of HMAC-SHA-256, which tell nothing of the key or of any other label's secret. What
/// is derived needs nothing new kept (a service scaffolded later, the registry's password).
pub fn derive(key: &str, label: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(label.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// Per-installation secrets, generated once and kept in `secrets.json` (mode 0600).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Secrets {
    pub postgres_superuser: String,
    pub db_orchestrator: String,
    pub db_consumer_api: String,
    pub db_merchant_api: String,
    pub db_keycloak: String,
    pub keycloak_admin: String,
    pub client_merchant_dashboard: String,
    pub client_wallet_web: String,
    pub client_consumer_api: String,
    pub client_merchant_api: String,
    pub client_orchestrator: String,
    /// `paytool-operator`: paytool's own service account (realm role `admin`), for the
    /// services' admin endpoints (failpoints). Installations made before it have none in their
    /// realm (`paytool down --purge` then `up` makes one).
    #[serde(default = "random_secret")]
    pub client_operator: String,
    /// Key for deriving consumer payment codes (consumer-api).
    pub payment_code_key: String,
}

impl Secrets {
    pub(crate) fn generate() -> Self {
        Self {
            postgres_superuser: random_secret(),
            db_orchestrator: random_secret(),
            db_consumer_api: random_secret(),
            db_merchant_api: random_secret(),
            db_keycloak: random_secret(),
            keycloak_admin: random_secret(),
            client_merchant_dashboard: random_secret(),
            client_wallet_web: random_secret(),
            client_consumer_api: random_secret(),
            client_merchant_api: random_secret(),
            client_orchestrator: random_secret(),
            client_operator: random_secret(),
            payment_code_key: random_secret(),
        }
    }
}

/// 256 random bits as hex: safe inside URLs, SQL literals and config files without quoting.
fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[derive(Debug, Clone)]
pub struct Home {
    pub dir: PathBuf,
    pub marker: Marker,
}

impl Home {
    /// Opens an existing installation; `None` when the directory does not exist or is empty.
    pub fn open(dir: &Path, project_root: &Path) -> anyhow::Result<Option<Self>> {
        if !dir.exists() || is_empty_dir(dir)? {
            return Ok(None);
        }
        if !dir.is_dir() {
            return Err(fail(
                Code::StateDir,
                format!(
                    "{} is a file, not a paytool state directory: move it away or pass --home DIR",
                    dir.display()
                ),
            ));
        }
        let marker_path = dir.join(MARKER);
        if !marker_path.exists() {
            return Err(fail(
                Code::StateDir,
                format!(
                    "{} is not empty and has no {MARKER}: it is not a paytool state directory; move it away or pass --home DIR",
                    dir.display()
                ),
            ));
        }
        let text = fs::read_to_string(&marker_path)
            .with_context(|| format!("cannot read {}", marker_path.display()))?;
        let mut marker: Marker = serde_json::from_str(&text).map_err(|error| {
            fail(
                Code::StateDir,
                format!(
                    "{} is corrupt ({error}): run `paytool down --purge --home {}` to start afresh (this deletes its data)",
                    marker_path.display(),
                    dir.display()
                ),
            )
        })?;
        marker.ports = marker.ports.filled();
        if let Err(why) = marker.replicas.check() {
            return Err(fail(
                Code::StateDir,
                format!(
                    "{}: {why}: set `replicas` there within bounds, or run `paytool up --replicas N`",
                    marker_path.display()
                ),
            ));
        }
        if !KAFKA_BROKER_COUNTS.contains(&marker.kafka_brokers) {
            return Err(fail(
                Code::StateDir,
                format!(
                    "{}: `kafka_brokers` is {}; an installation runs 1 or 3 brokers: purge it with `paytool down --purge`",
                    marker_path.display(),
                    marker.kafka_brokers
                ),
            ));
        }
        if marker.format != FORMAT {
            return Err(fail(
                Code::StateDir,
                format!(
                    "{} was made by a paytool with state format {} (this one reads {FORMAT}): purge it with `paytool down --purge`",
                    dir.display(),
                    marker.format
                ),
            ));
        }
        if marker.project_root != project_root {
            return Err(fail(
                Code::StateDir,
                format!(
                    "{} belongs to the checkout at {}, not {}: use that checkout, or pass --home DIR for a new installation",
                    dir.display(),
                    marker.project_root.display(),
                    project_root.display()
                ),
            ));
        }
        Ok(Some(Self {
            dir: dir.to_path_buf(),
            marker,
        }))
    }

    /// Opens the installation, creating it (marker, secrets, directories) when absent.
    pub fn open_or_create(dir: &Path, project_root: &Path) -> anyhow::Result<Self> {
        if let Some(home) = Self::open(dir, project_root)? {
            home.ensure_secrets()?;
            return Ok(home);
        }
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // Traversable by the `postgres` user, which runs the database from inside it;
        // everything secret below it has its own 0600/0700 mode.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
        let marker = Marker {
            format: FORMAT,
            installation_id: uuid::Uuid::new_v4().to_string(),
            created_at: chrono::Utc::now().to_rfc3339(),
            project_root: project_root.to_path_buf(),
            ports: Ports::plan()?,
            replicas: Replicas::default(),
            ha: false,
            kafka_brokers: one_broker(),
            chaos: false,
            delivery: false,
            trace_sample_percent: every_trace(),
            apps: Vec::new(),
        };
        let home = Self {
            dir: dir.to_path_buf(),
            marker,
        };
        home.ensure_secrets()?;
        write_atomic(
            &dir.join(MARKER),
            serde_json::to_string_pretty(&home.marker)?.as_bytes(),
            0o644,
        )?;
        Ok(home)
    }

    fn ensure_secrets(&self) -> anyhow::Result<()> {
        let path = self.secrets_path();
        if !path.exists() {
            write_atomic(
                &path,
                serde_json::to_string_pretty(&Secrets::generate())?.as_bytes(),
                0o600,
            )?;
        }
        Ok(())
    }

    /// Makes PostgreSQL highly available (or not), only while it has no data yet.
    pub fn set_ha(&mut self, ha: bool) -> anyhow::Result<()> {
        if self.marker.ha == ha {
            return Ok(());
        }
        let data = if self.marker.ha {
            self.component_dir("patroni")
        } else {
            self.component_dir("postgres").join("data")
        };
        if data.exists() {
            return Err(fail(
                Code::Usage,
                format!(
                    "{} already keeps its PostgreSQL data {}: start afresh with `paytool down --purge` to change that",
                    self.dir.display(),
                    if self.marker.ha { "in a Patroni cluster" } else { "in one server" }
                ),
            ));
        }
        self.marker.ha = ha;
        self.save_marker()
    }

    /// Sets how many Kafka brokers run, only while Kafka has no data yet: the brokers' storage
    /// is formatted with the quorum's voters, so the count cannot change under it.
    pub fn set_kafka_brokers(&mut self, brokers: u8) -> anyhow::Result<()> {
        if self.marker.kafka_brokers == brokers {
            return Ok(());
        }
        if !KAFKA_BROKER_COUNTS.contains(&brokers) {
            return Err(fail(
                Code::Usage,
                format!("{brokers} Kafka brokers: an installation runs 1 or 3"),
            ));
        }
        if self.component_dir("kafka").join("data").exists() {
            return Err(fail(
                Code::Usage,
                format!(
                    "{} already keeps its Kafka data in {} broker(s): start afresh with `paytool down --purge` to change that",
                    self.dir.display(),
                    self.marker.kafka_brokers
                ),
            ));
        }
        self.marker.kafka_brokers = brokers;
        self.save_marker()
    }

    /// Routes the services through Toxiproxy (or not) from the next start: nothing is kept in
    /// the proxies, so it may change at any `up`.
    pub fn set_chaos(&mut self, chaos: bool) -> anyhow::Result<()> {
        if self.marker.chaos == chaos {
            return Ok(());
        }
        self.marker.chaos = chaos;
        self.save_marker()
    }

    /// Runs local delivery (or not) from the next start; its storage stays either way.
    pub fn set_delivery(&mut self, delivery: bool) -> anyhow::Result<()> {
        if self.marker.delivery == delivery {
            return Ok(());
        }
        self.marker.delivery = delivery;
        self.save_marker()
    }

    /// Writes the marker as it is now (atomically: a crash leaves the old one or the new).
    fn save_marker(&self) -> anyhow::Result<()> {
        write_atomic(
            &self.dir.join(MARKER),
            serde_json::to_string_pretty(&self.marker)?.as_bytes(),
            0o644,
        )
    }

    /// The share of traces kept from the next start (the gateway and the services read it
    /// when they start).
    pub fn set_trace_sample_percent(&mut self, percent: u8) -> anyhow::Result<()> {
        if !TRACE_SAMPLE_PERCENTS.contains(&percent) {
            return Err(fail(
                Code::Usage,
                format!("--trace-sample-percent {percent}: 1 to 100"),
            ));
        }
        if self.marker.trace_sample_percent == percent {
            return Ok(());
        }
        self.marker.trace_sample_percent = percent;
        self.save_marker()
    }

    /// Keeps the scaffolded services this installation runs (`up` finds them in the project).
    pub fn set_apps(
        &mut self,
        apps: Vec<crate::runtime::components::apps::AppEntry>,
    ) -> anyhow::Result<()> {
        if self.marker.apps == apps {
            return Ok(());
        }
        self.marker.apps = apps;
        self.save_marker()
    }

    /// Keeps a new replica count in the marker (only while nothing runs: the supervisor reads
    /// it at start).
    pub fn set_replicas(&mut self, replicas: Replicas) -> anyhow::Result<()> {
        replicas.check().map_err(|why| fail(Code::Usage, why))?;
        self.marker.replicas = replicas;
        self.save_marker()
    }

    pub fn secrets(&self) -> anyhow::Result<Secrets> {
        let path = self.secrets_path();
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).map_err(|error| {
            fail(
                Code::StateDir,
                format!(
                    "{} is corrupt ({error}): purge the installation with `paytool down --purge`",
                    path.display()
                ),
            )
        })
    }

    pub fn secrets_path(&self) -> PathBuf {
        self.dir.join("secrets.json")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }
    pub fn log_path(&self, component: &str) -> PathBuf {
        self.logs_dir().join(format!("{component}.log"))
    }
    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }
    pub fn tls_dir(&self) -> PathBuf {
        self.dir.join("tls")
    }
    pub fn component_dir(&self, component: &str) -> PathBuf {
        self.dir.join(component)
    }
    pub fn ports(&self) -> &Ports {
        &self.marker.ports
    }
}

fn is_empty_dir(dir: &Path) -> anyhow::Result<bool> {
    if !dir.is_dir() {
        return Ok(false);
    }
    Ok(fs::read_dir(dir)?.next().is_none())
}

/// Writes via a temporary file and a rename, so a reader never sees half a file.
/// The installation for commands that need one to exist already (`paytool status`, `pay`,
/// `chaos run` …): a missing one is exit 7 with the command that makes one.
pub fn existing(home_dir: &Path, project: &Path) -> anyhow::Result<Home> {
    Home::open(home_dir, project)?.ok_or_else(|| {
        fail(
            Code::NotRunning,
            format!(
                "no installation at {}: start one with `paytool up`",
                home_dir.display()
            ),
        )
    })
}

pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let parent = path.parent().context("a file path without a parent")?;
    fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().expect("a temporary directory")
    }

    #[test]
    fn a_new_installation_gets_a_marker_and_private_secrets() {
        let root = tempdir();
        let home_dir = root.path().join("state");
        let home = Home::open_or_create(&home_dir, root.path()).expect("created");
        let mode = fs::metadata(home.secrets_path())
            .expect("secrets exist")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let secrets = home.secrets().expect("secrets parse");
        assert_eq!(secrets.postgres_superuser.len(), 64);
        assert_ne!(secrets.postgres_superuser, secrets.db_keycloak);
        let again = Home::open_or_create(&home_dir, root.path()).expect("reopened");
        assert_eq!(again.marker.installation_id, home.marker.installation_id);
        assert_eq!(
            again.secrets().expect("secrets").keycloak_admin,
            secrets.keycloak_admin
        );
    }

    #[test]
    fn a_directory_with_foreign_files_is_refused() {
        let root = tempdir();
        fs::write(root.path().join("notes.txt"), "mine").expect("write");
        let error = Home::open(root.path(), root.path()).expect_err("refused");
        assert_eq!(crate::support::exit::code_of(&error), Code::StateDir as i32);
        assert!(
            error.to_string().contains("not a paytool state directory"),
            "{error}"
        );
    }

    #[test]
    fn a_corrupt_marker_is_explained() {
        let root = tempdir();
        fs::write(root.path().join(MARKER), "{ not json").expect("write");
        let error = Home::open(root.path(), root.path()).expect_err("refused");
        assert_eq!(crate::support::exit::code_of(&error), Code::StateDir as i32);
        assert!(error.to_string().contains("corrupt"), "{error}");
    }

    #[test]
    fn an_installation_of_another_checkout_is_refused() {
        let root = tempdir();
        let home_dir = root.path().join("state");
        Home::open_or_create(&home_dir, Path::new("/somewhere/else")).expect("created");
        let error = Home::open(&home_dir, root.path()).expect_err("refused");
        assert!(
            error
                .to_string()
                .contains("belongs to the checkout at /somewhere/else"),
            "{error}"
        );
    }
}
