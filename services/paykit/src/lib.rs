//! `paykit`: the one crate every paytool service shares.
//!
//! It holds what is the same in every service — layered configuration, telemetry, the
//! database pool, health endpoints, RFC 9457 problem responses, bearer-token auth, idempotency
//! keys and the HTTP server loop — so that each service's own code is only its domain (the
//! outbox joins it with events). One crate on purpose, not a crate per concern.

pub mod auth;
pub mod config;
pub mod db;
pub mod events;
pub mod health;
pub mod idempotency;
pub mod internal;
pub mod keycloak;
pub mod money;
pub mod problem;
pub mod server;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
