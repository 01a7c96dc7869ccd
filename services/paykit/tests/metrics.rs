//! `GET /metrics` carries the process's own series, in the names of Prometheus' standard process
//! collector, sampled at the scrape: the rust-runtime dashboard reads them.

/// The value of the sample `name value` (no labels), if the page has it.
fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn the_metrics_page_has_the_process_cpu_memory_descriptors_threads_and_start_time() {
    // A lazy pool that is never used: with no outbox to sample, `/metrics` queries nothing.
    let settings = paykit::db::DatabaseSettings {
        url: "postgres://nobody:nothing@127.0.0.1:1/nowhere" // pragma: allowlist secret
            .to_string()
            .into(),
        max_connections: 1,
        acquire_timeout_ms: 300,
        statement_timeout_ms: 300,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = format!(
        "http://127.0.0.1:{}",
        listener.local_addr().expect("bound").port()
    );
    tokio::spawn(paykit::server::serve(
        listener,
        paykit::metrics::router(paykit::metrics::Sampled {
            pool: settings.pool().expect("a lazy pool"),
            outbox: false,
        }),
    ));
    let page = reqwest::get(format!("{address}/metrics"))
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    for name in [
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_threads",
    ] {
        let value = sample(&page, name).unwrap_or_else(|| panic!("no {name} in:\n{page}"));
        assert!(value >= 1.0, "{name} = {value}");
    }
    let cpu_s = sample(&page, "process_cpu_seconds_total").expect("CPU time");
    assert!(cpu_s >= 0.0, "{cpu_s}");
    let started_s = sample(&page, "process_start_time_seconds").expect("start time");
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    assert!(
        started_s > now_s - 3600.0 && started_s <= now_s + 1.0,
        "started at {started_s}, now {now_s}"
    );
    assert!(
        page.contains("# HELP process_resident_memory_bytes"),
        "{page}"
    );
}
