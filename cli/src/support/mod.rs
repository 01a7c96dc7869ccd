//! What every room uses: progress output, exit codes, reading files, reading `/proc`.

pub mod exit;
pub mod files;
pub mod procfs;
pub mod ui;
