//! merchant-api: the merchant half of the payment flow.

pub mod configuration;
pub mod error;
pub mod http;
pub mod startup;

pub const SERVICE: &str = "merchant-api";
