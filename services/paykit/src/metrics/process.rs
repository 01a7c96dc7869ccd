//! The process's own series, in the names of Prometheus' standard process collector:
//! `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_virtual_memory_bytes`,
//! `process_virtual_memory_max_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_start_time_seconds` and `process_threads` (the rust-runtime dashboard reads them).
//!
//! `metrics-process` reads them from /proc at each scrape: nothing runs between scrapes. CPU
//! time is a gauge of fractional seconds (its `use-gauge-on-cpu-seconds-total` feature)
//! because the facade's counters hold whole numbers, and a counter of whole seconds would make
//! the CPU of a mostly idle service a staircase of zeros and ones. It only ever grows, so
//! `rate()` reads it as it reads a counter.

use std::sync::OnceLock;

static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();

/// Samples the process into the installed recorder (described, with HELP lines, once).
pub fn sample() {
    COLLECTOR
        .get_or_init(|| {
            let collector = metrics_process::Collector::default();
            collector.describe();
            collector
        })
        .collect();
}
