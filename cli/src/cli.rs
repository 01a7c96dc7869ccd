//! The command line. Every subcommand's `--help` ends with examples.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "paytool",
    version,
    about = "Brings the paytool barcode payments platform up on this machine and drives it.",
    after_help = "Examples:\n  paytool up                 # install what is missing, start everything, print the URLs\n  paytool status --json      # machine-readable state and health\n  paytool logs keycloak -f   # follow one component's log\n  paytool down --purge       # stop everything and delete its data\n\nExit codes: 0 ok, 1 failed, 2 usage, 3 prerequisite missing, 4 state directory unusable,\n5 port taken, 6 component not ready in time, 7 not running, 8 ledger invariant violated,
130 interrupted."
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

    /// Start PostgreSQL, Kafka, Keycloak, the services and the TLS gateway, supervised
    #[command(
        after_help = "Examples:\n  paytool up\n  PAYTOOL_PORT_BASE=27000 paytool --home /tmp/pt up   # a second installation beside the first\n\nReturns once every component is ready; a supervisor keeps them running and restarts\na crashed one with bounded backoff. A second `up` while running does nothing."
    )]
    Up(SetupArgs),

    /// Stop every component gracefully (SIGTERM, SIGKILL after a bound); keeps the data
    #[command(
        after_help = "Examples:\n  paytool down\n  paytool down --purge   # also delete .paytool (databases, topics, secrets, CA)"
    )]
    Down {
        /// Also delete the installation's data, secrets and certificates
        #[arg(long)]
        purge: bool,
    },

    /// Every component with state, pid, ports, URLs and live health
    #[command(
        after_help = "Examples:\n  paytool status\n  paytool status --json | jq '.components[] | {name, health}'\n  paytool status --json --show-secrets | jq -r .connections.postgres_admin_url\n\nExit code 0 when everything is healthy, 1 when something is not, 7 when not running.\nThe JSON document is described in docs/status-json.md."
    )]
    Status {
        /// Print the status as JSON (a stable, documented interface)
        #[arg(long)]
        json: bool,
        /// Include passwords and client secrets in the connection details
        #[arg(long)]
        show_secrets: bool,
    },

    /// Print a component's log (`supervisor` for the supervisor's own)
    #[command(
        after_help = "Examples:\n  paytool logs postgres\n  paytool logs gateway -f\n  paytool logs supervisor -n 200"
    )]
    Logs {
        /// postgres, kafka, keycloak, orchestrator, consumer-api, merchant-api, gateway or supervisor
        component: String,
        /// Keep printing new lines as they are written
        #[arg(short, long)]
        follow: bool,
        /// How many of the last lines to print first
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: usize,
    },

    /// The local certificate authority and the *.local.test certificate
    #[command(subcommand)]
    Tls(TlsCommand),

    /// The double-entry ledger
    #[command(subcommand)]
    Ledger(LedgerCommand),

    /// EMVCo merchant-presented QR payloads: decode one to JSON, or make one
    #[command(subcommand)]
    Qr(QrCommand),

    /// Measure throughput on this machine (never asserted in tests)
    #[command(subcommand)]
    Bench(BenchCommand),

    /// Internal: the supervisor process that `up` starts
    #[command(name = "__supervise", hide = true)]
    Supervise,
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

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The ledger alone (uniform merchants and one hot merchant) next to pgbench's TPC-B, on the
    /// running platform's PostgreSQL, in scratch databases that are dropped afterwards
    #[command(
        after_help = "Examples:\n  paytool bench ledger\n  paytool bench ledger --clients 8 --duration-s 20 --json"
    )]
    Ledger(BenchLedgerArgs),
}

#[derive(Debug, Args, Clone)]
pub struct BenchLedgerArgs {
    /// Concurrent clients, for pgbench and the ledger alike (1 to 64)
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub clients: u16,
    /// Seconds each measurement runs (1 to 600)
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=600))]
    pub duration_s: u16,
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
