//! The orchestrator: payment sagas over a double-entry ledger.

pub mod configuration;
pub mod error;
pub mod http;
pub mod startup;

pub const SERVICE: &str = "orchestrator";
