//! ${{ values.title }}: ${{ values.description }}
//!
//! Scaffolded by `paytool scaffold service ${{ values.name }} --lang rust` (template version
//! ${{ values.template_version }}); owned by ${{ values.owner }}.

pub mod configuration;
pub mod domain;
pub mod error;
pub mod http;
pub mod startup;

/// The service's name: its binary, its Prometheus job, its spans' `service.name`.
pub const SERVICE: &str = "${{ values.name }}";
