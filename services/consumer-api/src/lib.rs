//! consumer-api: the consumer half of the payment flow.

pub mod configuration;
pub mod error;
pub mod http;
pub mod startup;

pub const SERVICE: &str = "consumer-api";
