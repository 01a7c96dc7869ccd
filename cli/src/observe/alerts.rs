//! `paytool alerts`: what Alertmanager sent to the local webhook receiver (paytool's agent,
//! which keeps each notification as a line of `notifications.jsonl`), folded into one entry
//! per alert (by Alertmanager's fingerprint) with its latest status.

use crate::runtime::components::alerting::alerts_dir;
use crate::runtime::home::Home;
use crate::support::exit::{fail, Code};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Alert {
    pub fingerprint: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// `page` or `ticket`: the receiver that was notified.
    pub receiver: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    /// Set once resolved.
    pub ends_at: Option<String>,
    /// When the receiver last heard of it.
    pub notified_at: String,
    pub notifications: u32,
}

pub fn run(home: &Home, firing_only: bool, limit: u32, json: bool) -> anyhow::Result<i32> {
    let dir = alerts_dir(home);
    if !dir.exists() {
        return Err(fail(
            Code::NotRunning,
            "no alert receiver has run here yet: start the platform with `paytool up`",
        ));
    }
    let mut alerts = read(&dir)?;
    if firing_only {
        alerts.retain(|a| a.status == "firing");
    }
    alerts.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    if json {
        println!("{}", serde_json::to_string_pretty(&alerts)?);
        return Ok(0);
    }
    if alerts.is_empty() {
        println!(
            "{}",
            if firing_only {
                "no alert is firing"
            } else {
                "no alert has been sent"
            }
        );
        return Ok(0);
    }
    println!(
        "{:<9} {:<7} {:<26} {:<36} {:<20} SUMMARY",
        "STATUS", "TO", "ALERT", "SLO", "SINCE"
    );
    for alert in &alerts {
        let since = if alert.status == "firing" {
            &alert.starts_at
        } else {
            alert.ends_at.as_ref().unwrap_or(&alert.notified_at)
        };
        println!(
            "{:<9} {:<7} {:<26} {:<36} {:<20} {}",
            alert.status,
            alert.receiver,
            alert.labels.get("alertname").map_or("?", String::as_str),
            alert.labels.get("slo").map_or("-", String::as_str),
            since.get(..19).unwrap_or(since),
            alert.annotations.get("summary").map_or("", String::as_str)
        );
    }
    Ok(0)
}

/// Every alert in the store (the rotated file first), firing ones first, then by the latest
/// notification, newest first. Lines that are not notifications are skipped.
pub fn read(dir: &Path) -> anyhow::Result<Vec<Alert>> {
    let mut text = String::new();
    for name in [
        format!("{}.1", crate::observe::agent::STORE_FILE),
        crate::observe::agent::STORE_FILE.to_string(),
    ] {
        match std::fs::read_to_string(dir.join(&name)) {
            Ok(part) => text.push_str(&part),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(fold(&text))
}

fn strings(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Folds notification lines (oldest first) into alerts.
pub fn fold(lines: &str) -> Vec<Alert> {
    let mut by_fingerprint: HashMap<String, Alert> = HashMap::new();
    for line in lines.lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let receiver = entry["receiver"].as_str().unwrap_or("?").to_string();
        let notified_at = entry["received_at"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for alert in entry["notification"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let labels = strings(&alert["labels"]);
            let fingerprint = alert["fingerprint"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{labels:?}"));
            let status = alert["status"].as_str().unwrap_or("firing").to_string();
            let ends_at = alert["endsAt"]
                .as_str()
                .filter(|_| status == "resolved")
                .map(str::to_string);
            let notifications = by_fingerprint
                .get(&fingerprint)
                .map_or(0, |known| known.notifications);
            by_fingerprint.insert(
                fingerprint.clone(),
                Alert {
                    fingerprint,
                    status,
                    receiver: receiver.clone(),
                    labels,
                    annotations: strings(&alert["annotations"]),
                    starts_at: alert["startsAt"].as_str().unwrap_or_default().to_string(),
                    ends_at,
                    notified_at: notified_at.clone(),
                    notifications: notifications + 1,
                },
            );
        }
    }
    let mut alerts: Vec<Alert> = by_fingerprint.into_values().collect();
    alerts.sort_by(|a, b| {
        (b.status == "firing")
            .cmp(&(a.status == "firing"))
            .then_with(|| b.notified_at.cmp(&a.notified_at))
            .then_with(|| a.fingerprint.cmp(&b.fingerprint))
    });
    alerts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(at: &str, receiver: &str, status: &str, fingerprint: &str, slo: &str) -> String {
        json!({
            "received_at": at,
            "receiver": receiver,
            "notification": {
                "version": "4",
                "status": status,
                "alerts": [{
                    "status": status,
                    "fingerprint": fingerprint,
                    "labels": {"alertname": "SLOErrorBudgetBurnFast", "severity": receiver, "slo": slo},
                    "annotations": {"summary": format!("{slo}: burning")},
                    "startsAt": "2026-12-01T06:00:00Z",
                    "endsAt": if status == "resolved" { "2026-12-01T06:05:00Z" } else { "0001-01-01T00:00:00Z" },
                }],
            },
        })
        .to_string()
    }

    #[test]
    fn an_alert_that_fired_and_resolved_is_one_resolved_entry() {
        let store = [
            line(
                "2026-12-01T06:00:10Z",
                "page",
                "firing",
                "f1",
                "payment-creation-availability",
            ),
            line(
                "2026-12-01T06:05:10Z",
                "page",
                "resolved",
                "f1",
                "payment-creation-availability",
            ),
        ]
        .join("\n");
        let alerts = fold(&store);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].status, "resolved");
        assert_eq!(alerts[0].ends_at.as_deref(), Some("2026-12-01T06:05:00Z"));
        assert_eq!(alerts[0].notifications, 2);
    }

    #[test]
    fn firing_alerts_come_first_then_the_newest() {
        let store = [
            line("2026-12-01T06:00:10Z", "ticket", "firing", "old", "a"),
            line("2026-12-01T06:01:10Z", "page", "firing", "gone", "b"),
            line("2026-12-01T06:02:10Z", "page", "resolved", "gone", "b"),
            "not json".to_string(),
            line("2026-12-01T06:03:10Z", "page", "firing", "new", "c"),
        ]
        .join("\n");
        let order: Vec<(String, String)> = fold(&store)
            .into_iter()
            .map(|a| (a.fingerprint, a.status))
            .collect();
        assert_eq!(
            order,
            [
                ("new".into(), "firing".into()),
                ("old".into(), "firing".into()),
                ("gone".into(), "resolved".into())
            ]
        );
    }

    #[test]
    fn an_empty_store_has_no_alerts() {
        assert!(fold("").is_empty());
    }
}
