//! The command line. Every subcommand's `--help` ends with examples.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "paytool",
    version,
    about = "Brings the paytool barcode payments platform up on this machine and drives it.",
    after_help = "Examples:\n  paytool up                 # install what is missing, start everything, print the URLs\n  paytool status --json      # machine-readable state and health\n  paytool logs keycloak -f   # follow one component's log\n  paytool down --purge       # stop everything and delete its data\n\nExit codes: 0 ok, 1 failed, 2 usage, 3 prerequisite missing, 4 state directory unusable,\n5 port taken, 6 component not ready in time, 7 not running, 8 ledger invariant violated,
9 refused by the platform, 10 payment declined, 11 login refused, 130 interrupted."
)]
pub struct Cli {
    /// The installation's state directory [default: .paytool in the checkout]
    #[arg(long, global = true, env = "PAYTOOL_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install what the local runtime needs (apt packages, Kafka, Keycloak); a no-op when present
    #[command(
        after_help = "Examples:\n  paytool setup\n  paytool setup --no-hosts   # leave /etc/hosts alone\n\nDownloads are cached under ~/.cache/paytool (PAYTOOL_CACHE_DIR overrides)."
    )]
    Setup(SetupArgs),

    /// Start PostgreSQL, Kafka, Keycloak, the services, the TLS gateway and the observability
    /// stack (collector, Jaeger, Prometheus, Alertmanager), supervised
    #[command(
        after_help = "Examples:\n  paytool up\n  paytool up --replicas 2                  # two instances of every service behind the gateway\n  paytool up --replicas 2 --replicas orchestrator=3\n  paytool up --ha                          # PostgreSQL with a synchronous replica that fails over\n  paytool up --kafka-brokers 3             # three Kafka brokers; one may die without losing an event\n  paytool up --chaos                       # the services' calls through Toxiproxy (paytool chaos)\n  PAYTOOL_PORT_BASE=27000 paytool --home /tmp/pt up   # a second installation beside the first\n  paytool up --runtime kind --dry-run      # the kind runtime's plan and manifests, no cluster needed\n\nReturns once every component is ready; a supervisor keeps them running and restarts\na crashed one with bounded backoff. A second `up` while running does nothing.\nReplica counts, --ha, the brokers and --chaos are kept with the installation: a later `up` runs\nthe same."
    )]
    Up(UpArgs),

    /// Restart a service's instances one at a time, with no request lost: each leaves the
    /// gateway's upstream, drains and is replaced (by a rebuilt binary, or --binary)
    #[command(
        after_help = "Examples:\n  cargo build --workspace --bins && paytool rollout consumer-api\n  paytool rollout orchestrator --json\n  paytool rollout merchant-api --binary ./merchant-api --max-unavailable 2\n\nNeeds more instances than --max-unavailable (`paytool up --replicas 2`). A new instance\nthat is not ready within its bound (30 s) rolls the whole service back to what ran before.\nExit code 0 when every instance runs the new binary, 1 when rolled back, 2 when refused\n(nothing changed), 7 when not running."
    )]
    Rollout(RolloutArgs),

    /// OCI images of the services, built without a daemon and pushed to the registry
    #[command(
        subcommand,
        after_help = "Examples:\n  paytool images build\n  paytool images build orchestrator --json\n  paytool images push consumer-api\n\nImages go to the installation's registry (`paytool up --delivery`) at\nregistry.local.test, tagged with the git revision and `latest` (docs/delivery.md)."
    )]
    Images(ImagesCommand),

    /// The installation's git server: the project pushed to it, clones, credentials
    #[command(
        subcommand,
        after_help = "Examples:\n  paytool git init\n  paytool git clone ~/work/paytool\n  paytool git clone /tmp/p --with basic --json\n\nThe git server is at git.local.test (`paytool up --delivery`): git's smart-HTTP server and\ngitweb behind the gateway, over TLS from the platform's CA. Nothing is anonymous\n(docs/delivery.md)."
    )]
    Git(GitCommand),

    /// One step of a service's CI pipeline, in a checkout of the commit (what the CI server runs)
    #[command(
        after_help = "Examples:\n  paytool ci build merchant-api\n  paytool ci test orchestrator --source ~/clone\n  paytool ci deploy consumer-api --json\n\nThe steps of services/NAME/ci.toml: test (cargo test), build (cargo build, the commit as\nPAYTOOL_REVISION), image, push (to the installation's registry), deploy (a rolling restart onto\nthe new binary). Buildbot runs them on the local runtime, the Jenkinsfiles on kind. In a clone,\nset PAYTOOL_PROJECT_ROOT to the installation's checkout. Exit code 0 when the step passed, 1\nwhen it failed, 2 for a service without a pipeline, 7 when the platform is not running."
    )]
    Ci(CiArgs),

    /// The kind runtime's manifests and a real Kubernetes API server: serve one here, check
    /// the stacks against the house rules, apply them server-side
    #[command(
        subcommand,
        after_help = "Examples:\n  paytool kube serve --dir /tmp/kube &        # kube-apiserver + etcd on 127.0.0.1:26443\n  paytool kube apply --kubeconfig /tmp/kube/kubeconfig\n  paytool kube check services/orchestrator/deploy/overlays/local --json\n\nWith no PATH, every stack of the kind runtime: the namespaces, then each service's local\noverlay (docs/kubernetes.md)."
    )]
    Kube(KubeCommand),

    /// PostgreSQL's high availability (`paytool up --ha`)
    #[command(
        subcommand,
        after_help = "Examples:\n  paytool db failover\n  paytool db failover --json"
    )]
    Db(DbCommand),

    /// Stop every component gracefully (SIGTERM, SIGKILL after a bound); keeps the data
    #[command(
        after_help = "Examples:\n  paytool down\n  paytool down --purge   # also delete .paytool (databases, topics, secrets, CA)\n  paytool down --runtime kind   # delete the kind cluster `paytool up --runtime kind` made"
    )]
    Down {
        /// Also delete the installation's data, secrets and certificates
        #[arg(long)]
        purge: bool,
        /// Which runtime to stop
        #[arg(long, value_enum, default_value_t = RuntimeKind::Local)]
        runtime: RuntimeKind,
    },

    /// Every component with state, pid, ports, URLs and live health
    #[command(
        after_help = "Examples:\n  paytool status\n  paytool status --json | jq '.components[] | {name, health}'\n  paytool status --json --show-secrets | jq -r .connections.postgres_admin_url\n  paytool status --runtime kind\n\nExit code 0 when everything is healthy, 1 when something is not, 7 when not running.\nThe JSON document is described in docs/status-json.md."
    )]
    Status {
        /// Print the status as JSON (a stable, documented interface)
        #[arg(long)]
        json: bool,
        /// Include passwords and client secrets in the connection details
        #[arg(long)]
        show_secrets: bool,
        /// Which runtime to report on
        #[arg(long, value_enum, default_value_t = RuntimeKind::Local)]
        runtime: RuntimeKind,
    },

    /// Print a component's log, or search every component's log in VictoriaLogs (--query)
    #[command(
        after_help = "Examples:\n  paytool logs postgres\n  paytool logs gateway -f\n  paytool logs supervisor -n 200\n  paytool logs --query error --since 15m                 # every component's errors\n  paytool logs --trace 0af7651916cd43dd8448eb211c80319c  # one request's lines, every service\n  paytool logs consumer-api --query 'status:>=500' --json\n\nWith --query or --trace the lines come from VictoriaLogs (LogsQL: docs/observability.md), oldest\nfirst, at most --limit; its web UI is https://logs.local.test (sign in as `operator`: paytool\nstatus --show-secrets). Exit code 0 with lines, 1 when none matched, 2 for a query VictoriaLogs\nrefuses, 7 when the platform is not running."
    )]
    Logs {
        /// postgres, kafka, jaeger, otel-collector, agent, alertmanager, prometheus, keycloak,
        /// orchestrator, consumer-api, merchant-api, gateway, victorialogs, sign-in, registry
        /// (with --delivery), a scaffolded service by its name, or supervisor; a service's
        /// further instances are NAME.1, NAME.2, … [required without --query or --trace]
        #[arg(required_unless_present_any = ["query", "trace"])]
        component: Option<String>,
        /// Keep printing new lines as they are written (a component's file)
        #[arg(short, long, conflicts_with_all = ["query", "trace"])]
        follow: bool,
        /// How many of the last lines to print first (a component's file)
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: usize,
        /// Search every component's log with this LogsQL query (`error`, `status:>=500`,
        /// `"payment captured"`)
        #[arg(long, value_name = "LOGSQL")]
        query: Option<String>,
        /// Only the lines of this trace (32 hex digits: a traceparent's, `paytool trace`'s)
        #[arg(long, value_name = "TRACE_ID")]
        trace: Option<String>,
        /// How far back to search (a LogsQL duration: 15m, 1h, 2d)
        #[arg(long, default_value = "1h")]
        since: String,
        /// The most lines to print (at most 10000)
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// Wait up to this long for a first matching line (lines reach VictoriaLogs a second or
        /// two after they are written)
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=60_000))]
        wait_ms: u64,
        /// Each line's fields as a JSON object, one a line
        #[arg(long)]
        json: bool,
    },

    /// The local certificate authority and the *.local.test certificate
    #[command(
        subcommand,
        after_help = "Examples:\n  paytool tls init\n  paytool tls init --trust   # also trust the CA system-wide (root)"
    )]
    Tls(TlsCommand),

    /// The double-entry ledger
    #[command(
        subcommand,
        after_help = "Examples:\n  paytool ledger verify\n  paytool ledger verify --json"
    )]
    Ledger(LedgerCommand),

    /// EMVCo merchant-presented QR payloads: decode one to JSON, or make one
    #[command(
        subcommand,
        after_help = "Examples:\n  paytool qr decode '00020101021126...6304ABCD'\n  paytool qr encode --merchant-id m-42 --name Cafe --city Seattle --country US --mcc 5814 --currency USD"
    )]
    Qr(QrCommand),

    /// Measure the platform on this machine, everything in one run (never asserted in tests)
    #[command(
        after_help = "Examples:\n  paytool bench                         # everything, ~10 minutes; report + chart under .paytool/bench\n  paytool bench --rates 40,50,62,77,96 --step-s 15 --json\n  paytool bench ledger                  # the ledger alone next to pgbench\n  paytool bench stream                  # commit → merchant feed only\n\nIn one run on the same PostgreSQL: pgbench TPC-B, the ledger alone, then QR payments end to\nend at climbing arrival rates through the gateway (uniform merchants, one hot merchant) and\nstraight to the services; p99 at half the highest rate; the merchant's notification delay;\neach component's idle and peak memory. Prints the targets with what was measured and writes\na markdown report with a PNG chart. Exit 0 whatever the figures; 8 if the ledger fails its\ninvariants, 7 when the platform is not running."
    )]
    Bench(BenchArgs),

    /// Pay and get paid through the running platform's gateway, as consumers and merchants do
    #[command(subcommand, after_help = PAY_HELP)]
    Pay(PayCommand),

    /// Sign in as a person with the OAuth 2.0 device grant: approve a code in a browser; `paytool
    /// pay` then acts as you without --as
    #[command(after_help = LOGIN_HELP)]
    Login(LoginArgs),

    /// End the `paytool login` sign-in: revoke it at Keycloak and delete the profile `me`
    #[command(
        after_help = "Examples:\n  paytool logout\n  paytool logout --json\n\nThe profile is deleted even when Keycloak cannot be reached (the session then ends by itself\nafter 30 minutes unused). Signed out already is not an error."
    )]
    Logout {
        /// Print what was done as JSON
        #[arg(long)]
        json: bool,
    },

    /// A payment's trace (any saga: payment, refund, top-up, transfer) as a waterfall, from Jaeger
    #[command(
        after_help = "Examples:\n  paytool trace 0193a6f2-7c4e-7b1a-9f31-2b8e5d0c4a11\n  paytool trace 0193a6f2-7c4e-7b1a-9f31-2b8e5d0c4a11 --json | jq '.spans[] | {service, name, duration_ms}'\n\nThe id is what the APIs answer as a payment's `id` (the orchestrator's saga). Spans arrive in\nJaeger a second or two after the payment: the command waits up to --wait-ms for the trace.\nExit code 0 when found, 1 when no trace has that id, 7 when the platform is not running."
    )]
    Trace {
        /// The payment's id (a UUID)
        payment_id: uuid::Uuid,
        /// Print the trace as JSON (spans in tree order with depth, offsets and parents)
        #[arg(long)]
        json: bool,
        /// How long to wait for the trace to reach Jaeger
        #[arg(long, default_value_t = 5_000, value_name = "MS")]
        wait_ms: u64,
    },

    /// Alerts that Alertmanager sent to the local webhook receiver: firing first, then resolved
    #[command(
        after_help = "Examples:\n  paytool alerts\n  paytool alerts --firing --json | jq -r '.[].labels.slo'\n\nThe SLO burn-rate alerts (stacks/observability/slos.yaml) page at 14.4x over 1h and 5m or\n6x over 6h and 30m, and open a ticket at 1x over 3d and 6h. Exit code 0 whether or not\nanything fires; 7 when the platform was never started."
    )]
    Alerts {
        /// Only alerts firing now
        #[arg(long)]
        firing: bool,
        /// At most this many alerts (newest first)
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Print the alerts as JSON
        #[arg(long)]
        json: bool,
    },

    /// Each SLO with its error ratio, burn rates and the error budget left, from Prometheus
    #[command(
        after_help = "Examples:\n  paytool slo\n  paytool slo --json | jq '.[] | {name, budget_remaining}'\n\nThe budget is counted over each SLO's window (30 days) on what Prometheus holds; an SLO\nwithout traffic yet shows no data. Exit code 0 when every budget is positive, 1 when one is\nspent, 7 when the platform is not running."
    )]
    Slo {
        /// Print the SLOs as JSON
        #[arg(long)]
        json: bool,
    },

    /// Run a load scenario (stacks/load/scenarios.yaml) against the running platform's gateway
    #[command(
        after_help = "Examples:\n  paytool load                                   # the mix: 40/s for 30 s\n  paytool load --scenario payments --rate 80 --duration 60\n  paytool load --scenario smoke --json | jq '.operations[\"qr-payment\"].latency.p99_ms'\n\nAn open model: arrivals start at the rate whatever the answers (too many outstanding and\nthey are dropped and counted). Users are registered and funded first. Exit code 0 when\nevery threshold held, 1 when one was breached, 2 for an unknown scenario, 7 not running."
    )]
    Load(LoadArgs),

    /// Chaos experiments on the running platform, with the money checked after every one
    #[command(
        subcommand,
        after_help = "Examples:\n  paytool chaos list\n  paytool chaos validate\n  paytool chaos run kill-consumer-api-under-load\n  paytool chaos report .paytool/chaos/journals/20261206T101500Z-pause-kafka.json\n\nExperiments live in stacks/chaos/experiments (docs/chaos.md)."
    )]
    Chaos(ChaosCommand),

    /// New services from the project's templates, and their upgrades to newer templates
    #[command(
        subcommand,
        after_help = "Examples:\n  paytool scaffold service loyalty --lang rust --owner loyalty-team\n  paytool scaffold service rewards --lang kotlin\n  paytool scaffold service gift-cards --lang rust --dry-run --json\n  paytool scaffold upgrade loyalty\n\nTemplates live in templates/service/<language> (docs/scaffolding.md)."
    )]
    Scaffold(ScaffoldCommand),

    /// Internal: the supervisor process that `up` starts
    #[command(name = "__supervise", hide = true)]
    Supervise,

    /// Internal: paytool's agent (Alertmanager's webhook receiver, the gateway's spans)
    #[command(name = "__agent", hide = true)]
    Agent {
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long)]
        spans_udp: std::net::SocketAddr,
        #[arg(long)]
        otlp_endpoint: String,
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        traces_listen: std::net::SocketAddr,
        #[arg(long)]
        jaeger_url: String,
    },
}

#[derive(Debug, Args, Clone, Default)]
pub struct UpArgs {
    #[command(flatten)]
    pub setup: SetupArgs,
    /// Instances of every service (N), or of one (SERVICE=N), 1 to 4; repeatable, the later
    /// wins. Kept with the installation. [default: what the installation has, else 1]
    #[arg(long, value_name = "N|SERVICE=N", value_parser = parse_replicas)]
    pub replicas: Vec<ReplicaSetting>,
    /// PostgreSQL as a Patroni cluster: a primary and a synchronous replica that takes over
    /// when the primary dies, behind HAProxy. Chosen for a new installation, then kept.
    #[arg(long)]
    pub ha: bool,
    /// Kafka brokers: 1, or 3 (each also a controller of the metadata quorum; topics
    /// replicated three times, an acknowledged event outlives one broker). Chosen for a new
    /// installation, then kept. [default: what the installation has, else 1]
    #[arg(long, value_name = "N", value_parser = parse_kafka_brokers)]
    pub kafka_brokers: Option<u8>,
    /// The services call PostgreSQL, Keycloak and each other through Toxiproxy, where `paytool
    /// chaos` makes network faults (latency, resets, cuts). Kept with the installation.
    #[arg(long, overrides_with = "no_chaos")]
    pub chaos: bool,
    /// Direct calls again (no Toxiproxy), for an installation made with `--chaos`.
    #[arg(long, overrides_with = "chaos")]
    pub no_chaos: bool,
    /// Local delivery beside the platform: the image registry at
    /// https://registry.local.test, which `paytool images push` sends the services' images to
    /// (docs/delivery.md). Kept with the installation.
    #[arg(long, overrides_with = "no_delivery")]
    pub delivery: bool,
    /// No local delivery from the next start (its stored images are kept).
    #[arg(long, overrides_with = "delivery")]
    pub no_delivery: bool,
    /// Percent of the traces started at the gateway sent on to Jaeger (1 to 100), chosen by
    /// trace id; a client's own `traceparent` decides for its trace, and a request that failed
    /// (5xx) keeps the gateway's span. Kept with the installation. [default: what the
    /// installation has, else 100]
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=100))]
    pub trace_sample_percent: Option<u8>,
    /// Where the platform runs: supervised processes on this machine, or a kind cluster
    /// installed by Argo CD from Git (docs/kubernetes.md)
    #[arg(long, value_enum, default_value_t = RuntimeKind::Local)]
    pub runtime: RuntimeKind,
    /// With --runtime kind: print the plan and the rendered manifests; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// With --runtime kind --dry-run: write manifests.yaml and plan.json into DIR instead of
    /// printing the manifests
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// With --runtime kind --dry-run: print the plan as JSON
    #[arg(long)]
    pub json: bool,
}

/// Where `paytool up` runs the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RuntimeKind {
    /// Real engines as supervised processes on this machine (the default)
    #[default]
    Local,
    /// A kind cluster: the bootstrap applied, then Argo CD syncs the stacks from Git
    Kind,
}

/// `--kafka-brokers`: one, or three. Two would be worse than one: a quorum of two stops when
/// either dies.
fn parse_kafka_brokers(text: &str) -> Result<u8, String> {
    match text {
        "1" => Ok(1),
        "3" => Ok(3),
        _ => Err(format!(
            "{text:?} brokers: 1 or 3 (a quorum of 2 would stop when either broker died)"
        )),
    }
}

/// The services, as the command line names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceName {
    Orchestrator,
    ConsumerApi,
    MerchantApi,
}

/// One `--replicas` value: a count for every service, or for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaSetting {
    pub service: Option<ServiceName>,
    pub count: u8,
}

fn parse_replicas(text: &str) -> Result<ReplicaSetting, String> {
    use clap::ValueEnum;
    let (service, count) = match text.split_once('=') {
        Some((service, count)) => (
            Some(ServiceName::from_str(service, false).map_err(|_| {
                format!("{service:?} is not a service: orchestrator, consumer-api or merchant-api")
            })?),
            count,
        ),
        None => (None, text),
    };
    let count: u8 = count
        .parse()
        .ok()
        .filter(|n| (1..=4).contains(n))
        .ok_or_else(|| format!("{count:?} is not a number of instances from 1 to 4"))?;
    Ok(ReplicaSetting { service, count })
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Build an OCI image of each service: its binary (beside paytool's), the libraries it
    /// links, a non-root user; labelled with the git revision; written under the installation
    #[command(
        after_help = "Examples:\n  paytool images build                 # orchestrator, consumer-api, merchant-api\n  paytool images build loyalty --json  # a scaffolded Rust service\n\nThe same binary and libraries give the same digest. Exit code 0 when every image is\nbuilt, 3 when a binary is missing (build it first), 2 for an unknown service."
    )]
    Build {
        /// Services to build (the platform's three when none is named)
        services: Vec<String>,
        /// Print what was built as JSON
        #[arg(long)]
        json: bool,
    },
    /// Push each service's built image to the installation's registry, tagged with its
    /// revision and `latest`
    #[command(
        after_help = "Examples:\n  paytool images push\n  paytool images push orchestrator --json | jq -r .[0].by_digest\n\nNeeds `paytool up --delivery`. Builds each image first, from the binary as it is now (an\nunchanged binary gives the same image, which the registry already has). Exit code 0\nwhen every image is pushed, 3 when a binary is missing, 7 when the registry does not answer."
    )]
    Push {
        /// Services to push (the platform's three when none is named)
        services: Vec<String>,
        /// Print what was pushed as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct CiArgs {
    /// The step: test, build, image, push or deploy
    #[arg(value_enum)]
    pub step: crate::runtime::components::ci::Step,
    /// The service whose pipeline it is (services/SERVICE/ci.toml)
    pub service: String,
    /// The checkout of the commit (the working directory by default)
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// Print what the step did as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum GitCommand {
    /// Make a repository on the git server (unless it is there) and push this project's HEAD
    /// to its `main`
    #[command(
        after_help = "Examples:\n  paytool git init\n  paytool git init --repository demo --json\n\nPushes over HTTPS through the gateway with a token of the realm's `git` client.\nA `main` on the server that has commits HEAD lacks is not overwritten (the push is refused).\nExit code 0 when pushed, 2 for a bad name or no git server here, 7 when not running,\n11 when the credentials are refused."
    )]
    Init {
        /// The repository's name (`NAME.git` on the server)
        #[arg(long, default_value = crate::delivery::git::DEFAULT_REPOSITORY)]
        repository: String,
        /// Print what was pushed as JSON
        #[arg(long)]
        json: bool,
    },
    /// Clone a repository of the git server into DIR, set up to pull and push with nothing
    /// more: the platform's CA, the host's address, paytool as its credential helper
    #[command(
        after_help = "Examples:\n  paytool git clone ./paytool-clone\n  paytool git clone /tmp/demo --repository demo --with basic --json\n\nThen `git pull` and `git push` in DIR work as they are. If GIT_SSL_CAINFO is set in your\nenvironment it wins over the clone's CA: unset it there. Exit code 0 when cloned, 2 for a\nbad name or a non-empty DIR, 7 when not running, 11 when the credentials are refused."
    )]
    Clone {
        /// Where the clone goes (made; must be empty if it exists)
        dir: PathBuf,
        /// The repository's name (`NAME.git` on the server)
        #[arg(long, default_value = crate::delivery::git::DEFAULT_REPOSITORY)]
        repository: String,
        /// What the clone's credential helper answers with
        #[arg(long = "with", value_enum, default_value_t = crate::delivery::git::Credentials::Token)]
        credentials: crate::delivery::git::Credentials,
        /// Print what was cloned as JSON
        #[arg(long)]
        json: bool,
    },
    /// git's credential helper for this installation's git server (git runs it: a clone made by
    /// `paytool git clone` names it)
    #[command(
        after_help = "Examples:\n  printf 'protocol=https\\nhost=git.local.test\\n\\n' | paytool git credential get\n  git config credential.https://git.local.test.helper '!paytool git credential'\n\nAnswers `get` for git.local.test only (nothing for any other host); `store` and `erase`\nkeep nothing."
    )]
    Credential {
        /// git's operation: get, store or erase
        #[arg(value_parser = ["get", "store", "erase"])]
        operation: String,
        /// What to answer with: a fresh realm token, or the installation's Basic credentials
        #[arg(long = "with", value_enum, default_value_t = crate::delivery::git::Credentials::Token)]
        credentials: crate::delivery::git::Credentials,
    },
}

#[derive(Debug, Subcommand)]
pub enum KubeCommand {
    /// Run a real kube-apiserver and its etcd on loopback until Ctrl-C (binaries from
    /// scripts/install-kube-apiserver.sh); writes DIR/kubeconfig for clients
    #[command(
        after_help = "Examples:\n  paytool kube serve --dir /tmp/kube\n  paytool kube serve --dir /tmp/kube --port 27443 --json\n\nNo pod runs: there is no node and no controller manager. etcd takes PORT+1 and PORT+2.\nExit code 0 when stopped by a signal, 1 when a process died, 3 when the binaries are not\nbuilt, 6 when the server was not ready within 120 s."
    )]
    Serve {
        /// Where its certificates, token, etcd data, logs and kubeconfig live (kept)
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The API server's port on 127.0.0.1
        #[arg(long, default_value_t = crate::kube::apiserver::DEFAULT_PORT)]
        port: u16,
        /// Print the server, version and kubeconfig as one JSON line once ready
        #[arg(long)]
        json: bool,
    },
    /// Render stacks and apply every object server-side: namespaces and CRDs first, then a
    /// server-side dry run of everything, then for real
    #[command(
        after_help = "Examples:\n  paytool kube apply --kubeconfig /tmp/kube/kubeconfig\n  paytool kube apply services/orchestrator/deploy/overlays/local --dry-run --json\n\nOne refused object stops the run after the dry run, before anything else is written; each\nrefusal names the object, its file and the server's message. Exit code 0 when every object\nwas accepted, 1 when one was refused, 3 without kubectl, 7 when the server does not answer."
    )]
    Apply {
        /// Kustomize directories or YAML files [default: every stack of the kind runtime]
        paths: Vec<PathBuf>,
        /// The cluster to apply to
        #[arg(long, env = "KUBECONFIG", value_name = "FILE")]
        kubeconfig: Option<PathBuf>,
        /// Only the server's dry run (namespaces and CRDs are still written, for it)
        #[arg(long)]
        dry_run: bool,
        /// Print every object's outcome as JSON
        #[arg(long)]
        json: bool,
    },
    /// Check rendered workloads against the house rules, offline: non-root, read-only root
    /// filesystem, no privilege escalation, requests and limits, probes, pinned images
    #[command(
        after_help = "Examples:\n  paytool kube check\n  paytool kube check services/loyalty/deploy/overlays/local --json\n\nExit code 0 when nothing breaks a rule, 1 otherwise (each violation on its own line)."
    )]
    Check {
        /// Kustomize directories or YAML files [default: every stack of the kind runtime]
        paths: Vec<PathBuf>,
        /// Print the count and every violation as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Hand the primary role to the synchronous replica (a switchover), and wait until the
    /// old primary follows it
    #[command(
        after_help = "Examples:\n  paytool db failover\n  paytool db failover --json | jq .duration_ms\n\nNeeds an installation made with `paytool up --ha`. No committed transaction is lost: the\nreplica is synchronous. Writes wait (or fail and are retried by the services) for the few\nseconds of the switch. Exit code 0 when the other node is the primary, 1 when it did not\nhappen within the bound (60 s), 2 without --ha, 7 when not running."
    )]
    Failover {
        /// Print the outcome as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args, Clone)]
pub struct RolloutArgs {
    /// The service to roll out
    #[arg(value_enum)]
    pub service: ServiceName,
    /// How many instances may be out of service at once (fewer than it runs)
    #[arg(long, default_value_t = 1)]
    pub max_unavailable: u8,
    /// Roll out this binary instead of the one beside paytool
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct SetupArgs {
    /// Do not add the *.local.test names to /etc/hosts
    #[arg(long)]
    pub no_hosts: bool,
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Create the local CA and a certificate for *.local.test (kept if present)
    #[command(
        after_help = "Examples:\n  paytool tls init\n  paytool tls init --trust   # also add the CA to the system trust store (root)\n  paytool tls init --force   # make a new CA and certificate"
    )]
    Init {
        /// Add the CA to the system trust store (update-ca-certificates)
        #[arg(long)]
        trust: bool,
        /// Replace an existing CA and certificate
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Check every invariant: debits equal credits per currency, no wallet below zero, balances
    /// equal their transfers, no transfer applied twice, refunds within captures
    #[command(
        after_help = "Examples:\n  paytool ledger verify\n  paytool ledger verify --json | jq '.checks[] | select(.ok == false)'\n\nExit code 0 when every invariant holds, 8 when one is violated, 7 when not running."
    )]
    Verify {
        /// Print the full report as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    #[command(flatten)]
    pub all: BenchAllArgs,
}

#[derive(Debug, Args, Clone)]
pub struct BenchAllArgs {
    /// Concurrent clients for pgbench and the ledger (1 to 64); pgbench's scale is the same
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub clients: u16,
    /// Seconds each step runs (5 to 120)
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(5..=120))]
    pub step_s: u16,
    /// The arrival rates the end-to-end ladders climb, payments a second, comma-separated, each
    /// at most 25 % above the one before; a ladder stops at the first step the platform cannot
    /// keep up with
    #[arg(long, default_value = crate::perf::bench::DEFAULT_RATES)]
    pub rates: String,
    /// Steps at most of each open-model baseline ladder (pgbench, the ledger, the sagas at
    /// fixed rates, 25 % apart from a quarter of their closed figure; 1 to 12)
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u8).range(1..=12))]
    pub open_steps: u8,
    /// Where the markdown report and the chart go [default: <home>/bench]
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<std::path::PathBuf>,
    /// Print the whole report as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The ledger alone (uniform merchants and one hot merchant) next to pgbench's TPC-B, on the
    /// running platform's PostgreSQL, in scratch databases that are dropped afterwards
    #[command(
        after_help = "Examples:\n  paytool bench ledger\n  paytool bench ledger --clients 8 --duration-s 20 --json"
    )]
    Ledger(BenchLedgerArgs),
    /// A payment's delay from the ledger's commit to the merchant's live feed (p50/p90/p99),
    /// under a steady load through the running platform's gateway
    #[command(
        after_help = "Examples:\n  paytool bench stream\n  paytool bench stream --rate-per-s 50 --duration-s 20 --json\n\nExit code 1 if a payment failed or its event was lost or delivered twice."
    )]
    Stream(BenchStreamArgs),
}

#[derive(Debug, Args, Clone)]
pub struct LoadArgs {
    /// The scenario's name: mix, payments, hot-merchant or smoke (see stacks/load/scenarios.yaml)
    #[arg(long, default_value = "mix")]
    pub scenario: String,
    /// Arrivals per second, instead of the scenario's (1 to 1000)
    #[arg(long = "rate", value_name = "PER_S")]
    pub rate_per_s: Option<u32>,
    /// Seconds the load runs, instead of the scenario's (1 to 1800)
    #[arg(long = "duration", value_name = "S")]
    pub duration_s: Option<u32>,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct BenchStreamArgs {
    /// Payments started per second (1 to 500)
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=500))]
    pub rate_per_s: u16,
    /// Seconds the load runs (1 to 600)
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u16).range(1..=600))]
    pub duration_s: u16,
    /// Print the results as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct BenchLedgerArgs {
    /// Concurrent clients, for pgbench and the ledger alike (1 to 64)
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub clients: u16,
    /// Seconds each measurement runs (1 to 600)
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=600))]
    pub duration_s: u16,
    /// Steps at most of each open-model ladder (fixed rates 25 % apart from a quarter of the
    /// closed figure; 1 to 12)
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u8).range(1..=12))]
    pub open_steps: u8,
    /// Print the results as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum QrCommand {
    /// Check a payload (TLV syntax, CRC, mandatory fields) and print its fields as JSON
    #[command(
        after_help = "Examples:\n  paytool qr decode '00020101021126...6304ABCD'\n  zbarimg -q --raw qr.png | paytool qr decode \"$(cat)\"\n\nExit code 0 when the payload is valid, 1 with the reason when it is not."
    )]
    Decode {
        /// The payload text, as scanned
        payload: String,
    },
    /// Make a payload for one of this platform's merchants (static without an amount, dynamic with one)
    #[command(
        after_help = "Examples:\n  paytool qr encode --merchant-id m-42 --name 'Ramen Ichiban' --city Tokyo --country JP --mcc 5812 --currency JPY\n  paytool qr encode --merchant-id m-42 --name Cafe --city Seattle --country US --mcc 5814 --currency USD --amount-minor 1250 --request-id pr-1"
    )]
    Encode(QrEncodeArgs),
}

#[derive(Debug, Args, Clone)]
pub struct QrEncodeArgs {
    #[arg(long)]
    pub merchant_id: String,
    /// Merchant name (at most 25 characters)
    #[arg(long)]
    pub name: String,
    /// Merchant city (at most 15 characters)
    #[arg(long)]
    pub city: String,
    /// ISO 3166-1 alpha-2 country code
    #[arg(long)]
    pub country: String,
    /// Merchant category code (4 digits)
    #[arg(long)]
    pub mcc: String,
    /// ISO 4217 alphabetic currency code
    #[arg(long)]
    pub currency: String,
    /// The amount in minor units; makes a dynamic (single-use) payload
    #[arg(long)]
    pub amount_minor: Option<i64>,
    /// The payment request this payload pays
    #[arg(long)]
    pub request_id: Option<String>,
    /// Reference label (additional data 62, sub-id 05)
    #[arg(long)]
    pub reference: Option<String>,
}

const LOGIN_HELP: &str = "Examples:
  paytool login                          # prints a URL and a code; approve it in any browser
  paytool pay balance                    # then: acts as you (the profile `me`), no --as needed
  paytool login --json --timeout-s 120   # JSON lines: the code, then who signed in; 11 after 2 min
  paytool login --no-wait && paytool login   # start now (prints the code), finish later

Keycloak's device authorization grant (RFC 8628) for the public client `paytool-cli`: no
password passes through paytool. The tokens are saved as the profile `me` in
<home>/pay/profiles.json (0600) with `login: device`; they renew with the refresh token while
the Keycloak session lives (30 minutes unused, 10 hours at most), then `paytool login` again.
With --json, stdout has one JSON object per line: the code to approve, then who signed in.
Exit codes: 0 signed in, 11 denied or the code expired (or --timeout-s passed), 7 not
running, 130 interrupted (Ctrl-C).";

#[derive(Debug, Args, Clone)]
pub struct LoginArgs {
    /// One JSON object per line on stdout: the code to approve, then who signed in
    #[arg(long)]
    pub json: bool,
    /// Print the code and return at once; a later `paytool login` waits for that same code
    #[arg(long)]
    pub no_wait: bool,
    /// Give up after this many seconds (exit 11) even if the code is still valid (1 to 3600)
    /// [default: until the code expires, 10 minutes on this platform]
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub timeout_s: Option<u32>,
}

const PAY_HELP: &str = "Examples:
  paytool pay demo                                   # the whole flow, timed, with live events
  paytool pay register consumer alice
  paytool pay register merchant ramen --city Kyoto --mcc 5812
  paytool pay topup --as alice 5000
  paytool pay qr --as ramen --amount 1200 --reference T-7   # prints the payload and the QR
  paytool pay pay --as alice '000201010212...6304ABCD'
  paytool pay charge --as ramen \"$(paytool pay code --as alice)\" 800
  paytool pay watch --as ramen                       # live payments, Ctrl-C to stop

Profiles (email, password, tokens) are kept in <home>/pay/profiles.json (mode 0600).
Without --as, commands act as the `paytool login` sign-in (profile `me`); when it holds both
roles, --role consumer|merchant picks one for `txns` and `balance`.
AMOUNT is exact: 1200, '1200 JPY', '12.50 USD'; without a currency, the profile's.
Exit codes: 2 bad usage (a bad amount, an unknown profile), 7 not running, 9 refused by the
platform (not found, conflict, expired, invalid), 10 declined (insufficient funds), 11 login
refused, 8 ledger invariant violated (demo), 130 interrupted.";

#[derive(Debug, Args, Clone)]
pub struct AsProfile {
    /// The saved profile to act as (`paytool pay register ... NAME`) [default: the `paytool
    /// login` sign-in, profile `me`]
    #[arg(long = "as", value_name = "PROFILE")]
    pub profile: Option<String>,
    /// Which of the sign-in's roles to act in, when it holds both consumer and merchant
    #[arg(long, value_enum, value_name = "ROLE")]
    pub role: Option<Role>,
}

#[derive(Debug, Args, Clone)]
pub struct Keyed {
    /// Idempotency-Key for the request [default: a fresh UUID]; the same key and body again
    /// gives the first answer instead of moving money twice
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PayCommand {
    /// Register a consumer or a merchant and save it as a profile (logged in)
    #[command(
        after_help = "Examples:\n  paytool pay register consumer alice\n  paytool pay register consumer bob --email bob@example.test --currency USD\n  paytool pay register merchant ramen --city Kyoto --country JP --mcc 5812\n\nWithout --email and --password a unique address (NAME-<random>@example.test) and a random\npassword are made; both are saved in the profile so that later commands can log in again."
    )]
    Register(PayRegisterArgs),

    /// Add money to a consumer's wallet
    #[command(
        after_help = "Examples:\n  paytool pay topup --as alice 5000\n  paytool pay topup --as bob 25.00 USD --idempotency-key topup-2024-06-01"
    )]
    Topup {
        #[command(flatten)]
        who: AsProfile,
        /// The amount: 1200, '1200 JPY', '12.50 USD' (without a currency, the profile's)
        #[arg(allow_negative_numbers = true)]
        amount: String,
        /// The currency, when not part of AMOUNT
        currency: Option<String>,
        #[command(flatten)]
        keyed: Keyed,
        /// Print the answer as JSON
        #[arg(long)]
        json: bool,
    },

    /// As a merchant, make a QR code to be paid: dynamic with --amount, static without
    #[command(
        after_help = "Examples:\n  paytool pay qr --as ramen --amount 1200 --reference T-7\n  paytool pay qr --as ramen                       # static: the payer enters the amount\n  paytool pay qr --as ramen --amount 1200 --json | jq -r .payload\n\nPrints the EMVCo payload and draws the QR code in the terminal (scan it with a phone)."
    )]
    Qr {
        #[command(flatten)]
        who: AsProfile,
        /// The amount, which makes the code dynamic (paid once, expiring)
        #[arg(long, allow_negative_numbers = true)]
        amount: Option<String>,
        /// Reference shown to the payer and printed on receipts (1 to 25 printable characters)
        #[arg(long)]
        reference: Option<String>,
        /// Seconds until a dynamic code expires (30 to 86400) [server default: 300]
        #[arg(long, value_parser = clap::value_parser!(u32).range(30..=86_400))]
        expires_in_s: Option<u32>,
        #[command(flatten)]
        keyed: Keyed,
        /// Print the payment request as JSON (no drawing)
        #[arg(long)]
        json: bool,
    },

    /// As a consumer, pay a merchant's QR code (the scanned payload text)
    #[command(
        after_help = "Examples:\n  paytool pay pay --as alice '00020101021226...6304ABCD'\n  paytool pay pay --as alice \"$(zbarimg -q --raw qr.png)\" --amount 500   # a static code\n\nA dynamic code carries its amount; a static one needs --amount."
    )]
    Pay {
        #[command(flatten)]
        who: AsProfile,
        /// The EMVCo payload the QR code holds
        payload: String,
        /// The amount, for a static code
        #[arg(long, allow_negative_numbers = true)]
        amount: Option<String>,
        #[command(flatten)]
        keyed: Keyed,
        /// Print the payment as JSON
        #[arg(long)]
        json: bool,
    },

    /// As a consumer, get a one-time payment code (18 digits, valid 60 s) to show at a till
    #[command(
        after_help = "Examples:\n  paytool pay code --as alice\n  paytool pay charge --as ramen \"$(paytool pay code --as alice)\" 800"
    )]
    Code {
        #[command(flatten)]
        who: AsProfile,
        /// Print the code and its expiry as JSON
        #[arg(long)]
        json: bool,
    },

    /// As a merchant, charge the one-time code a consumer shows
    #[command(
        after_help = "Examples:\n  paytool pay charge --as ramen 281234567890123456 800\n  paytool pay charge --as ramen 281234567890123456 '8.00 USD' --reference T-9"
    )]
    Charge {
        #[command(flatten)]
        who: AsProfile,
        /// The consumer's 18-digit code
        code: String,
        /// The amount: 1200, '1200 JPY', '12.50 USD'
        #[arg(allow_negative_numbers = true)]
        amount: String,
        /// The currency, when not part of AMOUNT
        currency: Option<String>,
        /// Reference for the receipt (1 to 25 characters)
        #[arg(long)]
        reference: Option<String>,
        #[command(flatten)]
        keyed: Keyed,
        /// Print the transaction as JSON
        #[arg(long)]
        json: bool,
    },

    /// As a consumer, send money to another consumer (by email or profile name)
    #[command(
        after_help = "Examples:\n  paytool pay send --as alice --to bob 500 --note 'lunch'\n  paytool pay send --as alice --to carol@example.test '5.00 USD'"
    )]
    Send {
        #[command(flatten)]
        who: AsProfile,
        /// The recipient: an email address, or the name of a consumer profile
        #[arg(long, value_name = "EMAIL_OR_PROFILE")]
        to: String,
        /// The amount: 1200, '1200 JPY', '12.50 USD'
        #[arg(allow_negative_numbers = true)]
        amount: String,
        /// The currency, when not part of AMOUNT
        currency: Option<String>,
        /// One line the recipient sees (at most 140 characters)
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        keyed: Keyed,
        /// Print the transfer as JSON
        #[arg(long)]
        json: bool,
    },

    /// As a merchant, refund all or part of a payment
    #[command(
        after_help = "Examples:\n  paytool pay refund --as ramen 0b9c6f4e-3f1e-4a47-9d1e-6a8c2b1d9e70 300\n\nNever more than is left of the payment (refused with the figure otherwise)."
    )]
    Refund {
        #[command(flatten)]
        who: AsProfile,
        /// The payment's id (from `pay txns` or the payment's answer)
        payment_id: String,
        /// The amount: 1200, '1200 JPY', '12.50 USD'
        #[arg(allow_negative_numbers = true)]
        amount: String,
        /// The currency, when not part of AMOUNT
        currency: Option<String>,
        #[command(flatten)]
        keyed: Keyed,
        /// Print the refund as JSON
        #[arg(long)]
        json: bool,
    },

    /// A consumer's wallet entries or a merchant's payments and refunds, newest first
    #[command(
        after_help = "Examples:\n  paytool pay txns --as alice\n  paytool pay txns --as ramen --limit 5 --json | jq '.items[] | {id, kind, status}'"
    )]
    Txns {
        #[command(flatten)]
        who: AsProfile,
        /// How many, newest first (1 to 100)
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=100))]
        limit: u16,
        /// Print the page as JSON
        #[arg(long)]
        json: bool,
    },

    /// A consumer's wallet or a merchant's balance
    #[command(
        after_help = "Examples:\n  paytool pay balance                # as the `paytool login` sign-in\n  paytool pay balance --as alice\n  paytool pay balance --as ramen --json | jq .balance.value"
    )]
    Balance {
        #[command(flatten)]
        who: AsProfile,
        /// Print the wallet or merchant as JSON
        #[arg(long)]
        json: bool,
    },

    /// As a merchant, print payments and refunds as they happen (Server-Sent Events)
    #[command(
        after_help = "Examples:\n  paytool pay watch --as ramen\n  paytool pay watch --as ramen --from-start --json | jq -c 'select(.type == \"payment.refunded\")'\n\nReconnects after a dropped connection with Last-Event-ID, so no event is missed or repeated.\nCtrl-C ends it (exit 130)."
    )]
    Watch {
        #[command(flatten)]
        who: AsProfile,
        /// Replay every event of the merchant first, then follow
        #[arg(long)]
        from_start: bool,
        /// One JSON event per line
        #[arg(long)]
        json: bool,
    },

    /// The saved profiles (never their passwords or tokens)
    #[command(after_help = "Examples:\n  paytool pay profiles\n  paytool pay profiles --json")]
    Profiles {
        /// Print them as JSON
        #[arg(long)]
        json: bool,
    },

    /// Show the whole flow, timed: register, top up, pay a QR, charge a code, send, refund,
    /// the merchant's list and live events, then verify the ledger
    #[command(
        after_help = "Examples:\n  paytool pay demo\n  paytool pay demo --json | jq '.steps[] | {name, ms}'\n\nRegisters three new accounts each time (nothing is saved as a profile). Exit code 0 when\nevery step worked and the ledger verifies, 8 when the ledger does not."
    )]
    Demo {
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args, Clone)]
pub struct PayRegisterArgs {
    /// consumer or merchant
    #[arg(value_enum)]
    pub role: Role,
    /// The profile's name, used with --as
    pub name: String,
    /// The name others see (a merchant's on its QR codes, at most 25 characters) [default: NAME]
    #[arg(long)]
    pub display_name: Option<String>,
    /// Email to register [default: NAME-<random>@example.test]
    #[arg(long)]
    pub email: Option<String>,
    /// Password (10 to 128 characters) [default: random, saved in the profile]
    #[arg(long)]
    pub password: Option<String>,
    /// ISO 4217 currency of the wallet or the merchant
    #[arg(long, default_value = "JPY")]
    pub currency: String,
    /// Merchants: the city on the QR codes (at most 15 characters)
    #[arg(long, default_value = "Tokyo")]
    pub city: String,
    /// Merchants: ISO 3166-1 alpha-2 country code
    #[arg(long, default_value = "JP")]
    pub country: String,
    /// Merchants: merchant category code (4 digits; 5812 restaurants, 5814 fast food, 5411 groceries)
    #[arg(long, default_value = "5812")]
    pub mcc: String,
    /// Print the profile as JSON (without password or tokens)
    #[arg(long)]
    pub json: bool,
}

/// Which of a profile's accounts a command acts as (a user may hold both roles).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Consumer,
    Merchant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Consumer => "consumer",
            Role::Merchant => "merchant",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_a_count_for_every_service_or_one_services_count() {
        assert_eq!(
            parse_replicas("2"),
            Ok(ReplicaSetting {
                service: None,
                count: 2
            })
        );
        assert_eq!(
            parse_replicas("consumer-api=3"),
            Ok(ReplicaSetting {
                service: Some(ServiceName::ConsumerApi),
                count: 3
            })
        );
        for bad in ["0", "5", "two", "gateway=2", "orchestrator=", "-1"] {
            assert!(parse_replicas(bad).is_err(), "{bad} was accepted");
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ScaffoldCommand {
    /// Render a new service into services/NAME (a Rust one joins the workspace) and register it
    /// with the local runtime (the next `paytool up` builds, starts, probes and routes it)
    #[command(
        after_help = "Examples:\n  paytool scaffold service loyalty --lang rust\n  paytool scaffold service gift-cards --lang kotlin --owner cards-team --port 28402\n  paytool scaffold service loyalty --lang rust --dry-run --json | jq -r '.files[]'\n\nThen: paytool up, and https://loyalty.local.test/health/ready answers.\nExit code 2 when the name is taken, invalid, or a file it would write exists (nothing is written)."
    )]
    Service(ScaffoldServiceArgs),
    /// Re-render a scaffolded service with the current template: a three-way merge of what
    /// it was made with, what it is now, and what the template makes today
    #[command(
        after_help = "Examples:\n  paytool scaffold upgrade loyalty\n  paytool scaffold upgrade loyalty --dry-run --json\n\nExit code 0 when it merged cleanly (or had nothing to do), 1 when files have conflict markers to resolve."
    )]
    Upgrade {
        /// The service's name (its directory under services/)
        name: String,
        /// Say what would change, and write nothing
        #[arg(long)]
        dry_run: bool,
        /// Print the outcome as JSON
        #[arg(long)]
        json: bool,
    },
}

/// The languages a service can be scaffolded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceLanguage {
    Rust,
    Kotlin,
}

#[derive(Debug, Args)]
pub struct ScaffoldServiceArgs {
    /// The service's name: lowercase words joined by single hyphens (loyalty, gift-cards)
    pub name: String,
    /// The template's language
    #[arg(long = "lang", value_enum)]
    pub language: ServiceLanguage,
    /// The team that owns it (its Backstage owner)
    #[arg(long, default_value = "payments-team")]
    pub owner: String,
    /// One line that says what it does
    #[arg(long)]
    pub description: Option<String>,
    /// Its port in the default installation (28401..28408); the first free one when not given
    #[arg(long)]
    pub port: Option<u16>,
    /// Say what would be written, and write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the outcome as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ChaosCommand {
    /// The experiments under stacks/chaos/experiments
    #[command(
        after_help = "Examples:\n  paytool chaos list\n  paytool chaos list --json | jq -r '.[] | select(.ci) | .name'"
    )]
    List {
        /// Print the list as JSON
        #[arg(long)]
        json: bool,
    },
    /// Check experiment files against the schema (every one under stacks/chaos/experiments
    /// when none is named)
    #[command(
        after_help = "Examples:\n  paytool chaos validate\n  paytool chaos validate my-experiment.yaml --json\n\nExit code 0 when every file is valid, 2 when one is not (each error says the file and where)."
    )]
    Validate {
        /// Experiment files
        files: Vec<PathBuf>,
        /// Print the results as JSON
        #[arg(long)]
        json: bool,
    },
    /// An experiment's method as a Chaos Mesh Workflow, for the Kubernetes runtime (what Chaos
    /// Mesh cannot express is listed as not rendered)
    #[command(
        after_help = "Examples:\n  paytool chaos render pause-kafka > pause-kafka.workflow.yaml\n  paytool chaos render latency-consumer-merchant-under-load --namespace paytool --json | jq .skipped\n\nTargets are chosen by the label app.kubernetes.io/name=<component> in the namespace."
    )]
    Render {
        /// An experiment's name (`paytool chaos list`) or a file
        experiment: String,
        /// The platform's namespace
        #[arg(long, default_value = "paytool")]
        namespace: String,
        /// Print the workflow and what was not rendered as JSON
        #[arg(long)]
        json: bool,
    },
    /// Autonomous chaos: a planner proposes faults from the action space, each runs as an
    /// experiment (always rolled back), a deterministic judge finds what broke, and the planner
    /// learns, until the budget is spent
    #[command(
        after_help = "Examples:\n  paytool chaos auto --budget 10 --planner learned\n  paytool chaos auto --budget 20 --planner llm --llm-url http://127.0.0.1:31900/v1 --json\n\nEach step takes about a minute. Exit code 0 when the loop ran (findings or not: they are in\nthe report), 7 when the platform is not running, 2 for bad options."
    )]
    Auto(ChaosAutoArgs),
    /// Measures the planners on the seeded weaknesses: hidden random subsets switched on, each
    /// planner run to the largest budget, recall at each budget, false alarms with every
    /// weakness off, localisation, time and tokens per finding; a report and a curve
    #[command(
        after_help = "Examples:\n  paytool chaos bench --planners random,learned --budgets 10,20,40 --subsets 5\n  paytool chaos bench --planners random --budgets 2 --subsets 1 --json   # the machinery, in minutes\n\nEach step is about a minute: planners × (subsets + 1) × the largest budget minutes in all."
    )]
    Bench(ChaosBenchArgs),
    /// Proves that each seeded weakness matters: its exposing action run N times with the
    /// weakness off and N times on, each judged (the services need `--features failpoints`)
    #[command(
        after_help = "Examples:\n  paytool chaos prove --runs 10\n  paytool chaos prove --weakness paykit.weakness.call-without-deadline --runs 3 --json\n\nEach run takes about a minute: 3 weaknesses × 2 × 10 runs is about an hour."
    )]
    Prove {
        /// Runs per side (off, on)
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=50))]
        runs: u32,
        /// Only this weakness (its failpoint's name)
        #[arg(long)]
        weakness: Option<String>,
        #[arg(long)]
        seed: Option<u64>,
        /// Print the counts as JSON
        #[arg(long)]
        json: bool,
    },
    /// A service's failpoints (services built with `--features failpoints`): listed, set, or
    /// turned off, on every instance (or one)
    #[command(
        after_help = "Examples:\n  paytool chaos failpoint orchestrator\n  paytool chaos failpoint orchestrator orchestrator.saga.before-step 20%return\n  paytool chaos failpoint consumer-api paykit.request.delay 'return(300)' --instance 1\n  paytool chaos failpoint consumer-api paykit.request.delay off\n\nActions: off, or return chains (`20%return`, `3*return`, `return(MS)` on a delay point)."
    )]
    Failpoint {
        service: ServiceName,
        /// The point (none: list them)
        name: Option<String>,
        /// What it does (`off` turns it off); none: show it
        actions: Option<String>,
        /// Only this instance (0 is the first)
        #[arg(long)]
        instance: Option<u8>,
        /// Print as JSON
        #[arg(long)]
        json: bool,
    },
    /// One action of `auto`'s space, run and judged: how a finding is looked at again, or a
    /// fault is tried by hand against the same judge
    #[command(
        after_help = "Examples:\n  paytool chaos try timeout consumer-api->orchestrator --intensity 3\n  paytool chaos try pause kafka --intensity 2 --json\n\nTargets: orchestrator, consumer-api, merchant-api, kafka, postgres (kill, pause); a route\nFROM->TO (latency, timeout, reset-peer, cut); machine (cpu-pressure); kafka (disk-full).\nExit code 0 when nothing broke, 1 when the judge found something, 2 for an action outside the space."
    )]
    Try {
        fault: FaultKind,
        target: String,
        /// 1 (mild) to 3 (strong)
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=3))]
        intensity: u8,
        #[arg(long)]
        seed: Option<u64>,
        /// Print the judgement as JSON
        #[arg(long)]
        json: bool,
    },
    /// Print the experiments' JSON Schema (stacks/chaos/experiment.schema.json is this)
    #[command(
        after_help = "Examples:\n  paytool chaos schema > stacks/chaos/experiment.schema.json"
    )]
    Schema,
    /// Run one experiment: pre-flight, method, rollbacks, steady state, invariants, journal
    #[command(
        after_help = "Examples:\n  paytool chaos run pause-kafka\n  paytool chaos run ./my-experiment.yaml --seed 42 --json\n\nCtrl-C stops the faults and rolls back. Exit code 0 passed, 1 pre-flight failed, deviated\nor aborted, 8 an invariant of the money violated, 7 not running, 130 interrupted."
    )]
    Run(ChaosRunArgs),
    /// Run an experiment again from its journal: the same experiment, the same seed
    #[command(
        after_help = "Examples:\n  paytool chaos replay .paytool/chaos/journals/20261206T101500Z-pause-kafka.json"
    )]
    Replay(ChaosReplayArgs),
    /// A journal as a markdown report (or as JSON)
    #[command(
        after_help = "Examples:\n  paytool chaos report .paytool/chaos/journals/20261206T101500Z-pause-kafka.json > report.md\n\nExit code: the run's own (0 passed, 1, 8, 130)."
    )]
    Report {
        /// The journal (JSON) a run wrote
        journal: PathBuf,
        /// Print the journal itself
        #[arg(long)]
        json: bool,
    },
}

/// A fault of `paytool chaos auto`'s action space.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL to a component (the supervisor restarts it)
    Kill,
    /// SIGSTOP for 5, 10 or 20 s
    Pause,
    /// 100, 500 or 2 000 ms on each answer of a route
    Latency,
    /// Nothing through a route for 5, 10 or 20 s
    Timeout,
    /// Every connection of a route reset for 5, 10 or 20 s
    ResetPeer,
    /// A route's proxy disabled for 5, 10 or 20 s
    Cut,
    /// Two CPU workers at 50, 80 or 100 %
    CpuPressure,
    /// Kafka's log directory full for 5, 10 or 20 s
    DiskFull,
}

/// Who proposes the next experiment in `paytool chaos auto`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum PlannerKind {
    /// Uniform over the action space: the baseline
    Random,
    /// Thompson sampling over fault × target, learning from how close each run came
    Learned,
    /// A language model behind an OpenAI-compatible chat endpoint (--llm-url)
    Llm,
}

#[derive(Debug, Args, Clone)]
pub struct ChaosBenchArgs {
    /// The planners to measure
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [PlannerKind::Random, PlannerKind::Learned])]
    pub planners: Vec<PlannerKind>,
    /// The budgets K at which recall is reported (the largest is run)
    #[arg(long, value_delimiter = ',', default_values_t = [10, 20, 40])]
    pub budgets: Vec<u32>,
    /// Random subsets of weaknesses besides the one with every weakness off
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=20))]
    pub subsets: u32,
    #[arg(long)]
    pub seed: Option<u64>,
    /// The model's OpenAI-compatible API (llm planner)
    #[arg(long)]
    pub llm_url: Option<String>,
    #[arg(long, default_value = "smollm2")]
    pub llm_model: String,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ChaosAutoArgs {
    /// How many experiments to run (each about a minute), 1 to 200
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub budget: u32,
    #[arg(long, value_enum, default_value_t = PlannerKind::Learned)]
    pub planner: PlannerKind,
    /// The seed of every random choice; random when not given, and in the report either way
    #[arg(long)]
    pub seed: Option<u64>,
    /// The model's OpenAI-compatible API (llm planner), e.g. http://127.0.0.1:31900/v1
    #[arg(long)]
    pub llm_url: Option<String>,
    /// The model's name at that API
    #[arg(long, default_value = "smollm2")]
    pub llm_model: String,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ChaosRunArgs {
    /// An experiment's name (`paytool chaos list`) or a file
    pub experiment: String,
    /// The seed of every random choice (which replica...); random when not given, and
    /// written to the journal either way
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the journal as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ChaosReplayArgs {
    /// The journal of the run to repeat
    pub journal: PathBuf,
    /// Print the new journal as JSON
    #[arg(long)]
    pub json: bool,
}
