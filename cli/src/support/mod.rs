//! What every room uses: progress output and exit codes.

pub mod exit;
pub mod ui;
