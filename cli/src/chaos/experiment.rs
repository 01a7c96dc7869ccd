//! Experiments as data: the types that `stacks/chaos/experiments/*.yaml` parse into, in the
//! model Chaos Toolkit made the convention (a steady-state hypothesis, a method, rollbacks).
//!
//! The JSON Schema in `stacks/chaos/experiment.schema.json` is generated from these types
//! (`paytool chaos schema`; a test keeps the committed file equal to it), and every file is
//! checked against it before serde reads it: the bounds are written once, as `schemars`
//! attributes, and enforced by the schema. Unknown fields are refused by both.

use crate::runtime::components::services::Service;
use crate::runtime::components::toxiproxy::{Destination, Route};
use crate::runtime::components::ComponentName;
use anyhow::Context;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the starter set and any experiment of one's own live.
pub const EXPERIMENTS_DIR: &str = "stacks/chaos/experiments";
/// The committed schema, for editors and for `paytool chaos validate`.
pub const SCHEMA_PATH: &str = "stacks/chaos/experiment.schema.json";
/// An experiment file larger than this is not an experiment.
const FILE_BYTES_MAX: u64 = 64 * 1024;
/// Files in the experiments directory that `list` reads at most.
pub const FILES_MAX: usize = 200;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "paytool chaos experiment")]
pub struct Experiment {
    /// One line saying what is tried.
    #[schemars(length(min = 1, max = 120))]
    pub title: String,
    /// Why, and what was found (docs/chaos.md says more).
    #[serde(default)]
    #[schemars(length(max = 2000))]
    pub description: String,
    #[serde(default)]
    #[schemars(length(max = 12), inner(regex(pattern = r"^[a-z0-9][a-z0-9-]{0,31}$")))]
    pub tags: Vec<String>,
    /// What the installation must run for this experiment to make sense (checked in the
    /// pre-flight: an experiment on a replica needs replicas).
    #[serde(default)]
    pub requires: Requires,
    /// Runs in CI's bounded subset (`paytool chaos run --ci`).
    #[serde(default)]
    pub ci: bool,
    pub steady_state: SteadyState,
    /// A load (`paytool load`) that runs from before the method until after it.
    #[serde(default)]
    pub load: Option<Load>,
    /// Stops the faults and rolls back when the platform breaches it during the method.
    #[serde(default)]
    pub abort: Option<Abort>,
    /// Faults, waits and probes, in order.
    #[schemars(length(min = 1, max = 20))]
    pub method: Vec<Step>,
    /// Always run, also after a deviation, an abort or Ctrl-C; then the steady state again.
    #[serde(default)]
    #[schemars(length(max = 10))]
    pub rollbacks: Vec<Rollback>,
    /// Seconds the platform has after the rollbacks to settle every payment and event before
    /// the invariants count what is still off as violated.
    #[serde(default = "settle_s")]
    #[schemars(range(min = 1, max = 300))]
    pub settle_s: u32,
}

fn settle_s() -> u32 {
    90
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Requires {
    /// `paytool up --ha`: PostgreSQL with Patroni.
    #[serde(default)]
    pub ha: bool,
    /// Instances of each service at least (`paytool up --replicas N`).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 8))]
    pub replicas: u8,
    /// `paytool up --chaos`: the services' calls through Toxiproxy (every network fault).
    #[serde(default)]
    pub chaos: bool,
}

fn one() -> u8 {
    1
}

impl Default for Requires {
    fn default() -> Self {
        Self {
            ha: false,
            replicas: one(),
            chaos: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SteadyState {
    #[schemars(length(min = 1, max = 120))]
    pub title: String,
    /// Each must hold before the method (else nothing is injected) and after the rollbacks.
    #[schemars(length(min = 1, max = 10))]
    pub probes: Vec<Probe>,
}

/// What is measured, and what counts as healthy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Probe {
    /// `paytool ledger verify`: every invariant of the ledger holds.
    Ledger,
    /// Every component (or the ones named) is ready and answers its probe.
    Ready {
        #[serde(default)]
        #[schemars(length(max = 20))]
        components: Vec<ComponentName>,
        /// How long the platform may take to get there.
        #[serde(default = "ready_timeout_s")]
        #[schemars(range(min = 1, max = 300))]
        timeout_s: u32,
    },
    /// One QR payment through the gateway, by a consumer the run registers, paid within a
    /// bound. Retried with its key while the answer is a 503 (an outage answered as one).
    Payment {
        #[serde(default = "payment_timeout_ms")]
        #[schemars(range(min = 100, max = 60000))]
        timeout_ms: u32,
    },
    /// A PromQL instant query whose first sample lies within the bounds.
    Promql {
        #[schemars(length(min = 1, max = 1000))]
        query: String,
        #[serde(default)]
        min: Option<f64>,
        #[serde(default)]
        max: Option<f64>,
    },
}

fn ready_timeout_s() -> u32 {
    60
}
fn payment_timeout_ms() -> u32 {
    10_000
}

impl Probe {
    pub fn name(&self) -> String {
        match self {
            Self::Ledger => "ledger".into(),
            Self::Ready { components, .. } if components.is_empty() => "ready".into(),
            Self::Ready { components, .. } => format!(
                "ready {}",
                components
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Self::Payment { .. } => "payment".into(),
            Self::Promql { query, .. } => format!("promql {query}"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// A scenario of stacks/load/scenarios.yaml.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9-]{0,31}$"))]
    pub scenario: String,
    #[schemars(range(min = 1, max = 200))]
    pub rate_per_s: u32,
    /// Seconds of load; it starts before the method and must outlast it.
    #[schemars(range(min = 5, max = 600))]
    pub duration_s: u32,
    /// The hypothesis over the load: at most this share of requests fail …
    #[schemars(range(min = 0.0, max = 1.0))]
    pub error_ratio_max: f64,
    /// … and the 99th percentile stays under this.
    #[serde(default)]
    #[schemars(range(min = 1, max = 60000))]
    pub p99_ms_max: Option<u32>,
    /// When given, every answer must have one of these statuses: an outage answered as one
    /// (503) may be allowed while a 500 or a 502 is not. No answer at all counts as status 0.
    #[serde(default)]
    #[schemars(length(max = 20), inner(range(max = 599)))]
    pub statuses_allowed: Vec<u16>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Abort {
    /// The load's error ratio over the last `window_s` seconds …
    #[schemars(range(min = 0.0, max = 1.0))]
    pub error_ratio_max: f64,
    #[serde(default = "abort_window_s")]
    #[schemars(range(min = 1, max = 60))]
    pub window_s: u32,
    /// … above the bound for this many consecutive seconds aborts the run.
    #[serde(default = "abort_for_s")]
    #[schemars(range(min = 1, max = 120))]
    pub for_s: u32,
}

fn abort_window_s() -> u32 {
    5
}
fn abort_for_s() -> u32 {
    5
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Step {
    Fault(Fault),
    /// Seconds to let pass (faults with a duration stay on meanwhile).
    Wait(#[schemars(range(min = 1, max = 600))] u32),
    Probe(Probe),
}

/// A component, or one of its instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub component: ComponentName,
    /// Which instance (`consumer-api.1` is 1); none: one chosen with the run's seed.
    #[serde(default)]
    #[schemars(range(max = 7))]
    pub instance: Option<u8>,
}

/// What is done to the platform. Every fault is reversible and bounded in time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Fault {
    /// SIGKILL to the target's whole process group; the supervisor restarts it.
    Kill { target: Target },
    /// SIGTERM to the target's leader: a graceful stop (drain); the supervisor restarts it.
    Terminate { target: Target },
    /// SIGSTOP to the target's process group, SIGCONT after the duration (or at rollback).
    /// The method goes on meanwhile.
    Pause {
        target: Target,
        #[schemars(range(min = 1, max = 300))]
        duration_s: u32,
    },
    /// A PostgreSQL switchover through Patroni (`paytool db failover`; needs `--ha`).
    Failover,
    /// One service instance restarted (drained first, as a rollout does) with its time of day
    /// `offset_s` seconds off the machine's (libfaketime), and restarted on the machine's
    /// clock when the window ends. Tokens, deadlines and timestamps meet a clock that is off.
    ClockSkew {
        target: Target,
        #[schemars(range(min = -86400, max = 86400))]
        offset_s: i32,
        #[schemars(range(min = 1, max = 300))]
        duration_s: u32,
    },
    /// The target's data volume filled (`paytool up --chaos` gives Kafka's log directory a
    /// size-limited filesystem of its own): every write there fails with "no space left"
    /// until the filler is deleted when the window ends. The machine's disk is never filled.
    DiskFull {
        target: Target,
        #[schemars(range(min = 1, max = 300))]
        duration_s: u32,
    },
    /// A failpoint compiled into the services (`paykit::failpoints`; the test platform's build
    /// has them) set on the target instance for the window, through its authenticated admin
    /// endpoint, and turned off when the window ends. `actions` in the `fail` crate's terms,
    /// limited to what cannot block a service's async runtime: `return` (an error point fails
    /// its work; a delay point waits `return(MS)`), with `p%` and `n*` prefixes.
    Failpoint {
        target: Target,
        #[schemars(regex(pattern = r"^[a-z][a-z0-9.-]{0,63}$"))]
        name: String,
        #[schemars(length(min = 1, max = 256))]
        actions: String,
        #[schemars(range(min = 1, max = 300))]
        duration_s: u32,
    },
    /// CPU pressure from stress-ng for the window: `workers` busy loops each at
    /// `load_percent`. The components share the machine's cores (no cgroup per component
    /// here), so every one of them feels it.
    CpuPressure {
        #[schemars(range(min = 1, max = 8))]
        workers: u8,
        #[schemars(range(min = 1, max = 100))]
        load_percent: u8,
        #[schemars(range(min = 1, max = 300))]
        duration_s: u32,
    },
    /// Memory taken by stress-ng for the window (touched, so resident), leaving the
    /// components less page cache and, when large, less memory.
    MemoryPressure {
        #[schemars(range(min = 16, max = 16384))]
        megabytes: u32,
        #[schemars(range(min = 1, max = 300))]
        duration_s: u32,
    },
    /// Network faults, on the Toxiproxy route from a service to what it calls (`paytool up
    /// --chaos`, `requires: {chaos: true}`); each is removed when its window ends.
    ///
    /// Every chunk of data delayed by `latency_ms` ± `jitter_ms`. Downstream by default (the
    /// answers): about `latency_ms` more per request and answer.
    Latency {
        from: Service,
        to: Destination,
        #[schemars(range(min = 1, max = 10000))]
        latency_ms: u32,
        #[serde(default)]
        #[schemars(range(max = 5000))]
        jitter_ms: u32,
        #[serde(default)]
        direction: Option<Direction>,
        #[schemars(range(min = 1, max = 300))]
        duration_s: u32,
    },
    /// The data capped at `rate_kbps` kilobytes per second (Toxiproxy's unit). Downstream by
    /// default.
    Bandwidth {
        from: Service,
        to: Destination,
        #[schemars(range(min = 1, max = 1000000))]
        rate_kbps: u32,
        #[serde(default)]
        direction: Option<Direction>,
        #[schemars(range(min = 1, max = 300))]
        duration_s: u32,
    },
    /// Nothing gets through, and each connection is closed after `timeout_ms` (0: kept open,
    /// silent, until the window ends). Both ways by default.
    Timeout {
        from: Service,
        to: Destination,
        #[schemars(range(max = 60000))]
        timeout_ms: u32,
        #[serde(default)]
        direction: Option<Direction>,
        #[schemars(range(min = 1, max = 300))]
        duration_s: u32,
    },
    /// Every connection that carries data is reset (TCP RST) at once. Upstream by default: the
    /// next request on any connection, pooled or new, is answered with a reset.
    ResetPeer {
        from: Service,
        to: Destination,
        #[serde(default)]
        direction: Option<Direction>,
        #[schemars(range(min = 1, max = 300))]
        duration_s: u32,
    },
    /// A closing connection stays half-open `delay_ms` before its close reaches the other
    /// side. Downstream by default (the destination's close reaches the caller late).
    SlowClose {
        from: Service,
        to: Destination,
        #[schemars(range(min = 1, max = 60000))]
        delay_ms: u32,
        #[serde(default)]
        direction: Option<Direction>,
        #[schemars(range(min = 1, max = 300))]
        duration_s: u32,
    },
    /// The route's proxy disabled: every connection closed, new ones refused; enabled again
    /// when the window ends.
    Cut {
        from: Service,
        to: Destination,
        #[schemars(range(min = 1, max = 300))]
        duration_s: u32,
    },
}

/// Which data a network fault acts on: what the caller sends, what comes back, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    Upstream,
    Downstream,
    Both,
}

impl Fault {
    pub fn target(&self) -> Option<&Target> {
        match self {
            Self::Kill { target }
            | Self::Terminate { target }
            | Self::Pause { target, .. }
            | Self::ClockSkew { target, .. }
            | Self::DiskFull { target, .. }
            | Self::Failpoint { target, .. } => Some(target),
            _ => None,
        }
    }

    /// The Toxiproxy route of a network fault.
    pub fn route(&self) -> Option<(Service, Destination)> {
        match self {
            Self::Latency { from, to, .. }
            | Self::Bandwidth { from, to, .. }
            | Self::Timeout { from, to, .. }
            | Self::ResetPeer { from, to, .. }
            | Self::SlowClose { from, to, .. }
            | Self::Cut { from, to, .. } => Some((*from, *to)),
            Self::Kill { .. }
            | Self::Terminate { .. }
            | Self::Pause { .. }
            | Self::Failover
            | Self::ClockSkew { .. }
            | Self::DiskFull { .. }
            | Self::Failpoint { .. }
            | Self::CpuPressure { .. }
            | Self::MemoryPressure { .. } => None,
        }
    }

    pub fn duration_s(&self) -> u32 {
        match self {
            Self::Pause { duration_s, .. }
            | Self::ClockSkew { duration_s, .. }
            | Self::DiskFull { duration_s, .. }
            | Self::Failpoint { duration_s, .. }
            | Self::CpuPressure { duration_s, .. }
            | Self::MemoryPressure { duration_s, .. } => *duration_s,
            Self::Latency { duration_s, .. }
            | Self::Bandwidth { duration_s, .. }
            | Self::Timeout { duration_s, .. }
            | Self::ResetPeer { duration_s, .. }
            | Self::SlowClose { duration_s, .. }
            | Self::Cut { duration_s, .. } => *duration_s,
            Self::Kill { .. } | Self::Terminate { .. } | Self::Failover => 0,
        }
    }

    /// Its type as the files name it (`reset-peer`).
    pub fn kind(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v["type"].as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Rollback {
    /// SIGCONT to every component's process group: nothing stays frozen.
    ResumeAll,
    /// Every Toxiproxy proxy enabled and every toxic removed (`paytool up --chaos`): nothing
    /// stays broken in the network, whatever happened to the run.
    ResetNetwork,
    /// Waits until every component is ready and answers its probe.
    WaitReady {
        #[serde(default = "ready_timeout_s")]
        #[schemars(range(min = 1, max = 300))]
        timeout_s: u32,
    },
}

/// Longest a method may take, its waits added up and its last fault window closed: a run that
/// could last an hour is a mistake in the file.
pub const METHOD_S_MAX: u32 = 900;

impl Experiment {
    /// The checks a schema cannot express.
    fn check(&self) -> Result<(), String> {
        // The method's length: its waits in turn, and every fault's window from where it
        // starts (windows overlap the steps after them; the run waits for the last to close).
        let mut at_s = 0u32;
        let mut method_s = 0u32;
        for step in &self.method {
            match step {
                Step::Wait(s) => at_s += *s,
                Step::Fault(fault) => method_s = method_s.max(at_s + fault.duration_s()),
                Step::Probe(_) => {}
            }
            method_s = method_s.max(at_s);
            if let Step::Fault(fault) = step {
                if let Some(target) = fault.target() {
                    if matches!(
                        target.component,
                        ComponentName::Etcd | ComponentName::Patroni
                    ) && !self.requires.ha
                    {
                        return Err(format!(
                            "a fault on {} needs `requires: {{ha: true}}`",
                            target.component.as_str()
                        ));
                    }
                    if target.component == ComponentName::Toxiproxy && !self.requires.chaos {
                        return Err(
                            "a fault on toxiproxy needs `requires: {chaos: true}`".to_string()
                        );
                    }
                }
                if let Fault::ClockSkew {
                    target, offset_s, ..
                } = fault
                {
                    if Service::of(target.component).is_none() {
                        return Err(format!(
                            "a clock skew puts a service's clock off; {} is not a service",
                            target.component.as_str()
                        ));
                    }
                    if *offset_s == 0 {
                        return Err("a clock skew of 0 s changes nothing".into());
                    }
                }
                if let Fault::Failpoint {
                    target,
                    name,
                    actions,
                    ..
                } = fault
                {
                    let service = Service::of(target.component).ok_or_else(|| {
                        format!(
                            "failpoints are in the services; {} is not one",
                            target.component.as_str()
                        )
                    })?;
                    let point = paykit::failpoints::offered(service.as_str())
                        .find(|p| p.name == name)
                        .ok_or_else(|| {
                            format!(
                                "{} has no failpoint {name}; it has {}",
                                service.as_str(),
                                paykit::failpoints::offered(service.as_str())
                                    .map(|p| p.name)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        })?;
                    paykit::failpoints::validate(point, actions)
                        .map_err(|reason| format!("failpoint {name}: {reason}"))?;
                }
                if let Fault::DiskFull { target, .. } = fault {
                    if target.component != ComponentName::Kafka {
                        return Err(format!(
                            "a disk-full fault fills a data volume of its own, which only kafka has; not {}",
                            target.component.as_str()
                        ));
                    }
                    if !self.requires.chaos {
                        return Err(
                            "kafka's log directory is a volume of its own only under `paytool up --chaos`: a disk-full fault needs `requires: {chaos: true}`".into(),
                        );
                    }
                }
                if matches!(fault, Fault::Failover) && !self.requires.ha {
                    return Err("a failover needs `requires: {ha: true}`".into());
                }
                if let Some((from, to)) = fault.route() {
                    if !self.requires.chaos {
                        return Err(format!(
                            "a {} fault goes through Toxiproxy: it needs `requires: {{chaos: true}}`",
                            fault.kind()
                        ));
                    }
                    if Route::find(from, to).is_none() {
                        return Err(format!(
                            "{} does not call {} through Toxiproxy; it calls {}",
                            from.as_str(),
                            to.as_str(),
                            Route::of(from)
                        ));
                    }
                }
            }
        }
        if method_s > METHOD_S_MAX {
            return Err(format!(
                "the method's waits and faults add up to {method_s} s, more than {METHOD_S_MAX} s"
            ));
        }
        if let Some(load) = &self.load {
            if load.duration_s < method_s {
                return Err(format!(
                    "the load lasts {} s but the method {method_s} s: it must outlast the method",
                    load.duration_s
                ));
            }
        }
        if self.abort.is_some() && self.load.is_none() {
            return Err("an abort condition watches the load: add a `load`".into());
        }
        for probe in self
            .steady_state
            .probes
            .iter()
            .chain(self.method.iter().filter_map(|s| match s {
                Step::Probe(p) => Some(p),
                _ => None,
            }))
        {
            if let Probe::Promql {
                min: None,
                max: None,
                ..
            } = probe
            {
                return Err(format!("{}: give a min, a max or both", probe.name()));
            }
        }
        Ok(())
    }
}

/// The schema as generated from the types.
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Experiment)).unwrap_or_default()
}

/// One experiment file: its name (the file stem) and what it says.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub name: String,
    pub path: PathBuf,
    pub experiment: Experiment,
}

/// Reads, schema-checks and parses one file; the error is one line naming the file and where.
pub fn load(path: &Path) -> anyhow::Result<Loaded> {
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("experiment")
        .to_string();
    let size = std::fs::metadata(path)
        .with_context(|| format!("no experiment at {}", path.display()))?
        .len();
    anyhow::ensure!(
        size <= FILE_BYTES_MAX,
        "{}: {size} bytes, more than {FILE_BYTES_MAX}",
        path.display()
    );
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let experiment = parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(Loaded {
        name,
        path: path.to_path_buf(),
        experiment,
    })
}

/// Parses an experiment's YAML: serde first (types, names, unknown fields, said with the
/// path and line), then the schema (every bound), then the checks across fields.
pub fn parse(text: &str) -> Result<Experiment, String> {
    // Through a JSON value: serde_yaml reads enums only from YAML tags, and the files use the
    // plain `- fault: {...}` maps that JSON Schema can describe.
    let value: serde_json::Value =
        serde_yaml::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    let experiment: Experiment = serde_path_to_error::deserialize(value.clone()).map_err(|e| {
        let at = e.path().to_string();
        format!(
            "{}: {}",
            if at == "." { "/".to_string() } else { at },
            e.inner()
        )
    })?;
    let schema = schema();
    let validator = jsonschema::validator_for(&schema).map_err(|e| format!("schema: {e}"))?;
    if let Some(error) = validator.iter_errors(&value).next() {
        let error = most_specific(&error);
        let at = error.instance_path().to_string();
        return Err(format!(
            "{}: {error}",
            if at.is_empty() { "/".to_string() } else { at }
        ));
    }
    experiment.check()?;
    Ok(experiment)
}

/// The error inside a `oneOf` (a fault, a probe, a step): the branch whose tag matched (the
/// one without a `const` mismatch) and the fewest errors, so that a bound says its own field
/// instead of "not valid under any of the schemas".
fn most_specific<'a>(
    error: &'a jsonschema::ValidationError<'a>,
) -> &'a jsonschema::ValidationError<'a> {
    use jsonschema::error::ValidationErrorKind;
    let context = match error.kind() {
        ValidationErrorKind::OneOfNotValid { context } | ValidationErrorKind::AnyOf { context } => {
            context
        }
        _ => return error,
    };
    let tag_mismatch = |branch: &Vec<jsonschema::ValidationError<'static>>| {
        branch.iter().any(|e| {
            matches!(e.kind(), ValidationErrorKind::Constant { .. })
                || matches!(e.kind(), ValidationErrorKind::Required { .. })
                || matches!(e.kind(), ValidationErrorKind::AdditionalProperties { .. })
        })
    };
    context
        .iter()
        .filter(|branch| !branch.is_empty() && !tag_mismatch(branch))
        .min_by_key(|branch| branch.len())
        .and_then(|branch| branch.first())
        .map_or(error, |inner| most_specific(inner))
}

/// Every experiment under the directory, by name; a file that does not parse is an error.
pub fn load_all(dir: &Path) -> anyhow::Result<Vec<Loaded>> {
    paths(dir)?.iter().map(|p| load(p)).collect()
}

/// The experiment files under the directory, sorted; at most [`FILES_MAX`].
pub fn paths(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("no experiments directory at {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    paths.sort();
    anyhow::ensure!(
        paths.len() <= FILES_MAX,
        "{} holds {} experiments, more than {FILES_MAX}",
        dir.display(),
        paths.len()
    );
    Ok(paths)
}

/// An experiment named on the command line: a path, or a name under the experiments directory.
pub fn resolve(project: &Path, name_or_path: &str) -> anyhow::Result<Loaded> {
    let path = Path::new(name_or_path);
    if path.exists() {
        return load(path);
    }
    let by_name = project
        .join(EXPERIMENTS_DIR)
        .join(format!("{name_or_path}.yaml"));
    if by_name.exists() {
        return load(&by_name);
    }
    Err(crate::support::exit::fail(
        crate::support::exit::Code::Usage,
        format!(
            "no experiment {name_or_path}: give a file or a name that `paytool chaos list` shows"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "
title: kill the orchestrator
steady_state:
  title: healthy
  probes: [{type: ledger}]
method:
  - fault: {type: kill, target: {component: orchestrator}}
";

    #[test]
    fn a_minimal_experiment_parses_with_its_defaults() {
        let experiment = parse(MINIMAL).expect("parses");
        assert_eq!(experiment.requires.replicas, 1);
        assert!(!experiment.ci);
        assert_eq!(
            experiment.method.len(),
            1,
            "one step: {:?}",
            experiment.method
        );
    }

    #[test]
    fn an_unknown_field_is_refused_with_where_it_is() {
        let text = MINIMAL.replace("title: healthy", "title: healthy\n  colour: red");
        let error = parse(&text).expect_err("refused");
        assert!(error.contains("steady_state"), "{error}");
        assert!(error.contains("colour"), "{error}");
    }

    #[test]
    fn an_unknown_component_is_refused() {
        let error = parse(&MINIMAL.replace("orchestrator}", "mainframe}")).expect_err("refused");
        assert!(
            error.contains("/method/0/fault/target/component") && error.contains("mainframe"),
            "{error}"
        );
    }

    #[test]
    fn a_number_out_of_its_bounds_is_refused() {
        let text = MINIMAL.replace(
            "{type: kill, target: {component: orchestrator}}",
            "{type: pause, target: {component: kafka}, duration_s: 3600}",
        );
        let error = parse(&text).expect_err("refused");
        assert!(error.contains("duration_s"), "{error}");
        assert!(error.contains("3600"), "{error}");
    }

    #[test]
    fn a_failover_without_ha_is_refused() {
        let text = MINIMAL.replace(
            "{type: kill, target: {component: orchestrator}}",
            "{type: failover}",
        );
        assert!(parse(&text).expect_err("refused").contains("ha"));
    }

    #[test]
    fn a_network_fault_needs_chaos_and_a_route_that_exists() {
        let latency = "{type: latency, from: consumer-api, to: merchant-api, latency_ms: 500, duration_s: 10}";
        let text = MINIMAL.replace("{type: kill, target: {component: orchestrator}}", latency);
        assert!(parse(&text).expect_err("refused").contains("chaos: true"));
        let text = format!("{text}requires: {{chaos: true}}\n");
        let experiment = parse(&text).expect("parses");
        let Step::Fault(fault) = &experiment.method[0] else {
            panic!("a fault: {:?}", experiment.method)
        };
        assert_eq!(fault.duration_s(), 10);
        assert_eq!(
            fault.route(),
            Some((Service::ConsumerApi, Destination::MerchantApi))
        );
        let error =
            parse(&text.replace("from: consumer-api", "from: orchestrator")).expect_err("refused");
        assert!(
            error.contains("orchestrator does not call merchant-api"),
            "{error}"
        );
        let error = parse(&text.replace("500", "60000")).expect_err("refused");
        assert!(error.contains("latency_ms"), "{error}");
    }

    #[test]
    fn a_load_shorter_than_the_method_is_refused() {
        let text = format!(
            "{MINIMAL}  - wait: 30\nload: {{scenario: payments, rate_per_s: 5, duration_s: 10, error_ratio_max: 0.0}}\n"
        );
        assert!(parse(&text)
            .expect_err("refused")
            .contains("must outlast the method"));
    }

    #[test]
    fn the_committed_schema_is_the_one_the_types_make() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let committed: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.join(SCHEMA_PATH)).expect("the schema file"),
        )
        .expect("JSON");
        assert!(
            committed == schema(),
            "run `paytool chaos schema > {SCHEMA_PATH}` and commit it"
        );
    }

    #[test]
    fn every_experiment_of_the_starter_set_validates() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let all = load_all(&root.join(EXPERIMENTS_DIR)).expect("every experiment parses");
        assert!(all.len() >= 6, "the starter set: {}", all.len());
        assert!(all.iter().any(|l| l.experiment.ci), "a CI subset");
    }
}
