//! `paytool`: brings the payments platform up on this machine and drives it.
//!
//! The crate is a library with a thin `main.rs`, so that integration tests and benchmarks use
//! the same code as the command. Rooms by concern (docs/architecture.md says what each owns and
//! may import):
//!
//! - [`args`]: the command line (clap only; no I/O, nothing from the other rooms).
//! - [`runtime`]: the installation (home, ports, TLS, state), `setup`, the supervisor and the
//!   components it runs, `up`/`down`/`status`/`logs`.
//! - [`observe`]: traces, SLOs and their rules, alerts, and paytool's agent.
//! - [`pay`]: the payment flows from the terminal, the ledger check, QR payloads.
//! - [`perf`]: load scenarios and benchmarks, and the one way to compute latency figures.
//! - [`chaos`]: experiments as data, the faults, probes and money invariants of a run, journals.
//! - [`scaffold`]: new services from the project's templates, and their upgrades.
//! - [`kube`]: the kind runtime's manifests: checked, and applied to a real API server.
//! - [`support`]: what every room uses: progress output, exit codes, reading `/proc`.
//! - [`app`]: one function from a parsed command line to an exit code.

pub mod app;
pub mod args;
pub mod chaos;
pub mod delivery;
pub mod kube;
pub mod observe;
pub mod pay;
pub mod perf;
pub mod runtime;
pub mod scaffold;
pub mod support;
