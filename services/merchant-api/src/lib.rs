//! merchant-api: the merchant half of the payment flow — registration, EMVCo QR payment
//! requests, charging consumers' codes, refunds, the transaction list and its live feed.

pub mod configuration;
pub mod domain;
pub mod error;
pub mod events;
pub mod http;
pub mod ledger_events;
pub mod payments;
pub mod records;
pub mod startup;
pub mod state;

pub const SERVICE: &str = "merchant-api";

/// Where this service publishes what happens to merchants and their payment requests.
pub const MERCHANTS_TOPIC: &str = "merchants.v1";
