//! The orchestrator: payment sagas over a double-entry ledger.

pub mod configuration;
pub mod error;
pub mod http;
pub mod invariants;
pub mod ledger;
pub mod saga;
pub mod startup;

pub const SERVICE: &str = "orchestrator";
