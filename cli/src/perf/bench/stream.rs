//! `paytool bench stream`: how long a payment takes from the ledger's commit to the merchant's
//! live feed, under a steady load through the whole running platform — consumer-api,
//! merchant-api, the orchestrator's saga and outbox, the relay, Kafka, merchant-api's consumer
//! and inbox, the stream — all behind the TLS gateway.
//!
//! Each payment's delay is the time the feed delivered its event here minus the event's
//! `completed_at`, the moment the ledger's last saga step started its transaction (PostgreSQL's
//! `now()`), on the same machine's clock.

use crate::args::BenchStreamArgs;
use crate::pay::client::{Gateway, Host, Session};
use crate::pay::stream;
use crate::pay::{register_consumer, register_merchant, Identity, Merchant};
use crate::perf::stats::Latencies;
use crate::runtime::home::Home;
use crate::support::ui::Ui;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};

const CURRENCY: &str = "JPY";
/// Payers share the load, so that one wallet's row is not the bottleneck being measured.
const PAYERS_MIN: usize = 4;
/// Payments a second each payer makes: a person, or even a busy app, pays far less often than
/// the gateway's per-user limit (20 a second), so the load is spread over enough payers that
/// the benchmark measures the platform, not its rate limiter.
const PAYMENTS_PER_PAYER_PER_S: usize = 5;
/// Requests in flight at once; a slower platform queues here rather than in the gateway.
const IN_FLIGHT_MAX: usize = 32;
/// After the last payment, events still missing after this are reported as lost.
const DRAIN_BOUND_MS: u64 = 30_000;
/// The amounts paid: 100 to 199 yen, so that every payer's top-up covers its share.
const AMOUNT_MIN: i64 = 100;
const AMOUNT_SPREAD: i64 = 100;

struct Arrival {
    payment: String,
    delay_us: u64,
}

pub async fn run(home: &Home, args: &BenchStreamArgs, ui: &Ui) -> anyhow::Result<i32> {
    let report = measure(home, args.rate_per_s, args.duration_s, ui).await?;
    let (failed, lost, duplicates) = (
        report["failed"].as_u64().unwrap_or(0),
        report["lost"].as_u64().unwrap_or(0),
        report["duplicates"].as_u64().unwrap_or(0),
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let line = |name: &str, s: &Value| {
            println!(
                "{name:<24} p50 {:>7.1} ms   p90 {:>7.1} ms   p99 {:>7.1} ms   max {:>7.1} ms",
                s["p50"].as_f64().unwrap_or_default(),
                s["p90"].as_f64().unwrap_or_default(),
                s["p99"].as_f64().unwrap_or_default(),
                s["max"].as_f64().unwrap_or_default()
            )
        };
        println!(
            "{} payments at {}/s: {failed} failed, {lost} events lost, {duplicates} delivered twice",
            report["payments"], args.rate_per_s
        );
        line("commit → merchant feed", &report["commit_to_feed_ms"]);
        line("payment request (HTTPS)", &report["payment_request_ms"]);
    }
    Ok(if failed == 0 && lost == 0 && duplicates == 0 {
        0
    } else {
        1
    })
}

/// The measurement itself: a report with `payments`, `failed`, `lost`, `duplicates`,
/// `commit_to_feed_ms` and `payment_request_ms` (each p50/p90/p99/max).
pub async fn measure(
    home: &Home,
    rate_per_s: u16,
    duration_s: u16,
    ui: &Ui,
) -> anyhow::Result<Value> {
    let gateway = Gateway::connect(home)?;
    let payments = usize::from(rate_per_s) * usize::from(duration_s);
    let payer_count = usize::from(rate_per_s)
        .div_ceil(PAYMENTS_PER_PAYER_PER_S)
        .max(PAYERS_MIN);

    let line = ui.step("set-up");
    line.working("a merchant, payers, top-ups, a static QR");
    let owner = Identity::new("bench-shop", None, None);
    let merchant_profile = register_merchant(
        &gateway,
        &owner,
        "Bench Shop",
        CURRENCY,
        &Merchant {
            city: "Tokyo".into(),
            country: "JP".into(),
            mcc: "5812".into(),
        },
    )
    .await?;
    let mut merchant = Session::new(gateway.clone(), "bench-shop", merchant_profile, None);
    let mut payers = Vec::new();
    for i in 0..payer_count {
        let identity = Identity::new(&format!("bench-payer-{i}"), None, None);
        let profile = register_consumer(&gateway, &identity, "Bench Payer", CURRENCY).await?;
        let mut session = Session::new(gateway.clone(), "bench-payer", profile, None);
        let share = i64::try_from(payments / payer_count + 1)? * (AMOUNT_MIN + AMOUNT_SPREAD);
        crate::perf::load::fund(&mut session, share).await?;
        payers.push(session);
    }
    let qr = crate::perf::load::static_qr(&mut merchant).await?;
    line.done(&format!("{payer_count} payers, static QR"));

    // The feed, from the merchant's first event, in a task of its own.
    let (sender, mut arrivals) = mpsc::unbounded_channel::<Arrival>();
    let (connected_tx, mut connected_rx) = mpsc::unbounded_channel::<()>();
    let watcher = tokio::spawn({
        let mut session = merchant.clone();
        async move {
            stream::watch(
                &mut session,
                Some("0".to_string()),
                move |event| {
                    let received = chrono::Utc::now();
                    let value: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
                    let data = &value["data"];
                    let committed = data["completed_at"]
                        .as_str()
                        .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok());
                    if let (Some(committed), Some(payment)) = (committed, data["id"].as_str()) {
                        // The same clock on both sides: a delay below zero is rounding, read as 0.
                        let delay_us = (received - committed).num_microseconds().unwrap_or(0);
                        let _ = sender.send(Arrival {
                            payment: payment.to_string(),
                            delay_us: u64::try_from(delay_us).unwrap_or(0),
                        });
                    }
                    true
                },
                move |notice| {
                    if matches!(notice, stream::Notice::Connected { .. }) {
                        let _ = connected_tx.send(());
                    }
                },
            )
            .await
        }
    });
    tokio::time::timeout(Duration::from_secs(10), connected_rx.recv())
        .await
        .map_err(|_| anyhow::anyhow!("the merchant's live feed did not connect within 10 s"))?;

    let line = ui.step("steady load");
    line.working(&format!("{} payments/s for {} s", rate_per_s, duration_s));
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate_per_s));
    let mut ticker = tokio::time::interval(interval);
    let slots = Arc::new(Semaphore::new(IN_FLIGHT_MAX));
    let mut requests = Vec::with_capacity(payments);
    let started = Instant::now();
    for i in 0..payments {
        ticker.tick().await;
        let permit = slots.clone().acquire_owned().await?;
        let mut payer = payers[i % payer_count].clone();
        let qr = qr.clone();
        let amount = AMOUNT_MIN + i64::try_from(i)? % AMOUNT_SPREAD;
        requests.push(tokio::spawn(async move {
            let asked = Instant::now();
            let answer = payer
                .post_keyed(
                    Host::Api,
                    "/v1/payments",
                    &json!({ "qr": qr, "amount": { "value": amount, "currency": CURRENCY } }),
                    &uuid::Uuid::new_v4().to_string(),
                )
                .await;
            drop(permit);
            answer.map(|body| {
                (
                    body["id"].as_str().unwrap_or_default().to_string(),
                    asked.elapsed(),
                )
            })
        }));
    }
    let mut paid: Vec<String> = Vec::new();
    let mut request_latencies = Latencies::default();
    let mut failed = 0;
    for request in requests {
        match request.await? {
            Ok((id, elapsed)) => {
                paid.push(id);
                request_latencies.record(elapsed);
            }
            Err(error) => {
                failed += 1;
                ui.println(&format!("  a payment failed: {error:#}"));
            }
        }
    }
    let offered_s = started.elapsed().as_secs_f64();
    line.done(&format!("{} paid, {failed} failed", paid.len()));

    let line = ui.step("feed");
    line.working("waiting for every payment's event");
    let mut delays: HashMap<String, u64> = HashMap::new();
    let mut duplicates = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(DRAIN_BOUND_MS);
    while paid.iter().any(|id| !delays.contains_key(id)) {
        match tokio::time::timeout_at(deadline, arrivals.recv()).await {
            Ok(Some(arrival)) => {
                if delays.insert(arrival.payment, arrival.delay_us).is_some() {
                    duplicates += 1;
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    watcher.abort();
    let lost = paid.iter().filter(|id| !delays.contains_key(*id)).count();
    let feed_delays = Latencies::of_us(paid.iter().filter_map(|id| delays.get(id)).copied());
    line.done(&format!(
        "{} events, {lost} lost, {duplicates} twice",
        feed_delays.count()
    ));

    let report = json!({
        "rate_per_s": rate_per_s,
        "duration_s": duration_s,
        "offered_s": offered_s,
        "payments": paid.len(),
        "failed": failed,
        "lost": lost,
        "duplicates": duplicates,
        "commit_to_feed_ms": summary(&feed_delays),
        "payment_request_ms": summary(&request_latencies),
    });
    Ok(report)
}

/// p50, p90, p99 and max in ms (nearest rank, 3 significant digits: [`crate::perf::stats`]);
/// 0 for no values.
fn summary(latencies: &Latencies) -> Value {
    let rank = |q: f64| -> f64 { latencies.percentile_ms(q).unwrap_or(0.0) };
    json!({
        "count": latencies.count(),
        "p50": rank(0.50),
        "p90": rank(0.90),
        "p99": rank(0.99),
        "max": latencies.max_ms().unwrap_or(0.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values = Latencies::of_us((1..=100).map(|ms| ms * 1_000));
        let s = summary(&values);
        assert_eq!(s["p50"], 50.0);
        assert_eq!(s["p90"], 90.0);
        assert_eq!(s["p99"], 99.0);
        assert_eq!(s["max"], 100.0);
        assert_eq!(summary(&Latencies::default())["count"], 0);
    }
}
