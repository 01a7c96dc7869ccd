//! `paytool load` against the running test platform (scripts/test.sh's `paytool up`): the smoke
//! scenario runs every operation of the mix through the gateway, each answered as it should be,
//! and the ledger still balances afterwards. Latencies are reported, never asserted (speed is
//! for `paytool bench`).

use serde_json::Value;
use std::process::{Command, Output};

fn home() -> String {
    paykit::testing::platform_status()["home"]
        .as_str()
        .expect("the status names the installation's home")
        .to_string()
}

fn paytool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paytool"))
        .args(["--home", &home()])
        .args(args)
        .output()
        .expect("paytool runs")
}

#[test]
fn the_smoke_scenario_runs_every_operation_without_an_error_and_the_ledger_balances() {
    let output = paytool(&["load", "--scenario", "smoke", "--json"]);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "load --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["arrivals"], 30, "5/s for 6 s");
    assert_eq!(report["dropped"], 0);
    let operations = report["operations"].as_object().expect("operations");
    assert_eq!(operations.len(), 5);
    for (name, operation) in operations {
        assert_eq!(operation["count"], 6, "{name}: one arrival in five");
        assert_eq!(operation["errors"], 0, "{name}: {operation}");
        let expected = if name == "transactions-read" {
            "200"
        } else {
            "201"
        };
        assert_eq!(operation["statuses"][expected], 6, "{name}: {operation}");
        let latency = &operation["latency"];
        for key in ["p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms"] {
            assert!(
                latency[key].as_f64().is_some_and(|v| v > 0.0),
                "{name} {key}: {latency}"
            );
        }
        assert!(latency["p50_ms"].as_f64() <= latency["p99_ms"].as_f64());
    }
    assert_eq!(report["all"]["count"], 30);

    let verified = paytool(&["ledger", "verify", "--json"]);
    let ledger: Value = serde_json::from_slice(&verified.stdout).expect("ledger verify --json");
    assert_eq!(ledger["ok"], true, "{ledger}");
}

#[test]
fn an_unknown_scenario_or_rate_is_refused_in_one_line_with_the_choices() {
    let unknown = paytool(&["load", "--scenario", "stampede"]);
    assert_eq!(unknown.status.code(), Some(2));
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    assert!(
        said.contains("mix, payments, hot-merchant, smoke"),
        "{said}"
    );
    let too_fast = paytool(&["load", "--scenario", "smoke", "--rate", "5000"]);
    assert_eq!(too_fast.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&too_fast.stderr).contains("rate_per_s must be from 1 to 1000"));
}
