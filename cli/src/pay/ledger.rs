//! `paytool ledger verify`: asks the orchestrator to check the ledger's invariants, with a
//! token of the orchestrator's own service account (role `ledger-read`).

use crate::runtime::components::keycloak::client_token;
use crate::runtime::home::Home;
use crate::support::exit::{fail, Code};
use serde_json::Value;
use std::time::Duration;

/// Verifying scans every transfer; on a large ledger that takes a while, but not forever.
const VERIFY_TIMEOUT_MS: u64 = 120_000;

pub async fn verify(home: &Home, json: bool) -> anyhow::Result<i32> {
    let report = report(home).await?;
    let ok = report["ok"].as_bool().unwrap_or(false);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "ledger: {} accounts, {} transfers — {}",
            report["accounts"],
            report["transfers"],
            if ok {
                "every invariant holds"
            } else {
                "INVARIANTS VIOLATED"
            }
        );
        for check in report["checks"].as_array().into_iter().flatten() {
            let mark = if check["ok"].as_bool() == Some(true) {
                "✔"
            } else {
                "✘"
            };
            println!(
                "  {mark} {:<26} {}",
                check["name"].as_str().unwrap_or("?"),
                check["description"].as_str().unwrap_or("")
            );
            for violation in check["violations"].as_array().into_iter().flatten() {
                println!("      {}", violation.as_str().unwrap_or(""));
            }
        }
    }
    Ok(if ok { 0 } else { Code::Violation as i32 })
}

/// The orchestrator's report (`ok`, `accounts`, `transfers`, `checks[]`), for `verify` and for
/// other commands that end with the same check (`paytool pay demo`).
pub async fn report(home: &Home) -> anyhow::Result<Value> {
    crate::runtime::state::require_running(home)?;
    let secrets = home.secrets()?;
    let ports = home.ports();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(VERIFY_TIMEOUT_MS))
        .build()?;
    let token = client_token(&http, home, "orchestrator", &secrets.client_orchestrator)
        .await
        .map_err(|error| fail(Code::Failed, format!("{error:#}")))?;
    let response = http
        .get(format!(
            "http://127.0.0.1:{}/internal/ledger/verify",
            ports.orchestrator
        ))
        .bearer_auth(token)
        .send()
        .await?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        return Err(fail(
            Code::Failed,
            format!("the orchestrator answered {status}: {body}"),
        ));
    }
    Ok(response.json().await?)
}

/// The checks of a report (`report`) that do not hold, one line each: name and violations.
pub fn failed_checks(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["ok"].as_bool() != Some(true))
        .map(|c| format!("{}: {}", c["name"], c["violations"]))
        .collect()
}
