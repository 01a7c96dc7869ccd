//! What every room uses: progress output, exit codes, reading files.

pub mod exit;
pub mod files;
pub mod ui;
