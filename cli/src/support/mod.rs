//! What every room uses: progress output, exit codes, reading files, reading `/proc`, the log
//! line of paytool's own background processes, bounded waits on child processes.

pub mod child;
pub mod exit;
pub mod files;
pub mod log;
pub mod procfs;
pub mod ui;
