//! `paytool pay demo`: the whole flow on the running platform, each step timed, with the
//! merchant's live feed followed from the first moment in a task of its own, and the ledger
//! verified at the end.
//!
//! A consumer tops up, pays the merchant's dynamic QR code, shows a one-time code that the
//! merchant charges, sends money to a friend, and gets part of the QR payment refunded. Then the
//! wallets must hold exactly what those amounts say, the merchant's live feed must have
//! delivered the payment, the charge and the refund, and its transaction list (built from
//! Kafka events, so a moment behind) must show them.

use super::client::{Gateway, Host, Session};
use super::stream::{self, Notice};
use super::{describe_event, print_transactions, register_consumer, register_merchant};
use super::{Identity, Merchant, Role};
use crate::runtime::home::Home;
use crate::support::exit::{fail, Code};
use crate::support::ui::Ui;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const CURRENCY: &str = "JPY";
const TOP_UP: i64 = 10_000;
const QR_PAYMENT: i64 = 1_200;
const CODE_CHARGE: i64 = 800;
const TRANSFER: i64 = 500;
const REFUND: i64 = 300;
/// The wallets after the flow, to the yen: what the amounts above say and nothing else.
const CONSUMER_AFTER: i64 = TOP_UP - QR_PAYMENT - CODE_CHARGE - TRANSFER + REFUND;
const FRIEND_AFTER: i64 = TRANSFER;
/// The feed connects in milliseconds; this bounds a platform that does not answer.
const WATCH_CONNECT_TIMEOUT_MS: u64 = 10_000;
/// How long the payment, the charge and the refund may take to reach the live feed.
const EVENTS_TIMEOUT_MS: u64 = 15_000;
/// How long the merchant's list (fed by Kafka) may take to show them.
const LIST_CATCH_UP_TIMEOUT_MS: u64 = 15_000;
const LIST_POLL_INTERVAL_MS: u64 = 200;

#[derive(Debug, Serialize)]
struct Step {
    name: &'static str,
    ok: bool,
    /// Wall-clock time of the step.
    ms: u64,
    /// When it ended, from the start of the demo (to relate events to their requests).
    ended_at_ms: u64,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct Received {
    /// When it arrived, from the start of the demo.
    received_at_ms: u64,
    event: Value,
}

enum FromWatcher {
    Connected,
    Dropped(String),
    Event(Received),
}

#[derive(Debug, Default, Serialize)]
struct Report {
    ok: bool,
    total_ms: u64,
    accounts: BTreeMap<&'static str, Value>,
    steps: Vec<Step>,
    ids: BTreeMap<&'static str, String>,
    /// Every event the merchant's feed delivered, in order of arrival.
    events: Vec<Received>,
    /// The payment, the charge and the refund all arrived within the bound.
    events_complete: bool,
    /// For each of those, milliseconds from the request's answer to the event's arrival.
    event_lag_ms: BTreeMap<&'static str, i64>,
    /// Why the live stream dropped, each time it did (it reconnects with Last-Event-ID).
    stream_drops: Vec<String>,
    transactions: Vec<Value>,
    balances: BTreeMap<&'static str, Value>,
    ledger: Value,
    ledger_ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

struct Demo {
    ui: Ui,
    started: Instant,
    report: Report,
}

impl Demo {
    fn elapsed_ms(&self) -> u64 {
        millis(self.started.elapsed())
    }

    /// Runs one step under a progress line and records it, failed or not.
    async fn step<T>(
        &mut self,
        name: &'static str,
        working: &str,
        work: impl std::future::Future<Output = anyhow::Result<T>>,
        describe: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<T> {
        let line = self.ui.step(name);
        line.working(working);
        let began = Instant::now();
        let outcome = work.await;
        let ms = millis(began.elapsed());
        let (detail, error) = match &outcome {
            Ok(value) => (describe(value), None),
            Err(error) => (String::new(), Some(format!("{error:#}"))),
        };
        match &error {
            None => line.done(&format!("{ms:>5} ms  {detail}")),
            Some(error) => line.failed(&format!("{ms:>5} ms  {error}")),
        }
        self.report.steps.push(Step {
            name,
            ok: error.is_none(),
            ms,
            ended_at_ms: self.elapsed_ms(),
            detail,
            error,
        });
        outcome
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

pub async fn run(home: &Home, json: bool) -> anyhow::Result<i32> {
    let gateway = Gateway::connect(home)?;
    let mut demo = Demo {
        ui: Ui::new(json),
        started: Instant::now(),
        report: Report::default(),
    };
    let outcome = flow(&mut demo, &gateway, home).await;
    demo.report.total_ms = demo.elapsed_ms();
    demo.report.ok = outcome.is_ok();
    if let Err(error) = &outcome {
        demo.report.error = Some(format!("{error:#}"));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&demo.report)?);
    } else {
        print_summary(&demo.report);
    }
    outcome?;
    Ok(0)
}

async fn flow(demo: &mut Demo, gateway: &Gateway, home: &Home) -> anyhow::Result<()> {
    let currency = CURRENCY;
    let money = |value: i64| json!({ "value": value, "currency": currency });

    let shopper = Identity::new("demo-shopper", None, None);
    let consumer = demo
        .step(
            "new consumer",
            &shopper.email,
            register_consumer(gateway, &shopper, "Demo Shopper", currency),
            |p| format!("{} (wallet {})", p.email, p.account_id),
        )
        .await?;
    let owner = Identity::new("demo-ramen", None, None);
    let merchant_profile = demo
        .step(
            "new merchant",
            &owner.email,
            register_merchant(
                gateway,
                &owner,
                "Demo Ramen",
                currency,
                &Merchant {
                    city: "Tokyo".into(),
                    country: "JP".into(),
                    mcc: "5812".into(),
                },
            ),
            |p| format!("Demo Ramen, {}", p.email),
        )
        .await?;
    let pal = Identity::new("demo-friend", None, None);
    let friend_profile = demo
        .step(
            "new friend",
            &pal.email,
            register_consumer(gateway, &pal, "Demo Friend", currency),
            |p| p.email.clone(),
        )
        .await?;
    for (role, profile) in [
        ("consumer", &consumer),
        ("merchant", &merchant_profile),
        ("friend", &friend_profile),
    ] {
        demo.report.accounts.insert(
            role,
            json!({ "email": profile.email, "id": profile.id, "account_id": profile.account_id }),
        );
    }
    let mut shopper = Session::new(gateway.clone(), "demo-shopper", consumer, None);
    let mut merchant = Session::new(gateway.clone(), "demo-ramen", merchant_profile, None);
    let mut friend = Session::new(gateway.clone(), "demo-friend", friend_profile, None);

    // The merchant's feed from its very first event (the merchant is new), in a task of its
    // own: events are printed as they arrive, whatever step the flow is at.
    let (sender, mut inbox) = mpsc::unbounded_channel();
    let watcher = tokio::spawn({
        let mut session = merchant.clone();
        let ui = demo.ui.clone();
        let ui_notices = demo.ui.clone();
        let started = demo.started;
        async move {
            let events = sender.clone();
            stream::watch(
                &mut session,
                Some("0".to_string()),
                move |event| {
                    let value: Value = serde_json::from_str(&event.data)
                        .unwrap_or_else(|_| json!({ "type": event.event, "data": event.data }));
                    ui.println(&format!("  ⚡ {}", describe_event(&value)));
                    events
                        .send(FromWatcher::Event(Received {
                            received_at_ms: millis(started.elapsed()),
                            event: value,
                        }))
                        .is_ok()
                },
                move |notice| {
                    let _ = sender.send(match notice {
                        Notice::Connected { .. } => FromWatcher::Connected,
                        Notice::Dropped { reason, .. } => {
                            ui_notices.println(&format!(
                                "  the live stream dropped ({reason}); reconnecting"
                            ));
                            FromWatcher::Dropped(reason)
                        }
                    });
                },
            )
            .await
        }
    });
    let mut arrived: Vec<Received> = Vec::new();
    let mut drops: Vec<String> = Vec::new();
    let connected = demo
        .step(
            "live stream",
            "connecting to the live stream",
            async {
                let deadline = tokio::time::sleep(Duration::from_millis(WATCH_CONNECT_TIMEOUT_MS));
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        message = inbox.recv() => match message {
                            Some(FromWatcher::Connected) => return Ok(()),
                            Some(FromWatcher::Event(event)) => arrived.push(event),
                            Some(FromWatcher::Dropped(reason)) => drops.push(reason),
                            None => return Err(fail(Code::Failed, "the live stream ended before it connected")),
                        },
                        () = &mut deadline => return Err(fail(Code::Failed, format!(
                            "the live stream did not connect within {} s",
                            WATCH_CONNECT_TIMEOUT_MS / 1000
                        ))),
                    }
                }
            },
            |()| "the merchant's live stream is open (from its first event)".to_string(),
        )
        .await;
    if let Err(error) = connected {
        watcher.abort();
        // The watcher's own error says more than "did not connect" when it has one.
        return Err(error);
    }

    let topped = demo
        .step(
            "top-up",
            &super::amount::display(TOP_UP, CURRENCY),
            shopper.post_keyed(
                Host::Api,
                "/v1/wallet/top-ups",
                &json!({ "amount": money(TOP_UP) }),
                &new_key(),
            ),
            |a| {
                format!(
                    "{}; wallet {}",
                    super::display_json(&a["amount"]),
                    super::display_json(&a["wallet"]["available"])
                )
            },
        )
        .await?;
    demo.report.ids.insert("top_up", super::text(&topped["id"]));

    let request = demo
        .step(
            "dynamic qr",
            "a dynamic QR code",
            merchant.post_keyed(
                Host::Merchant,
                "/v1/payment-requests",
                &json!({ "amount": money(QR_PAYMENT), "reference": "DEMO-QR" }),
                &new_key(),
            ),
            |r| {
                format!(
                    "{} {}, {} characters of EMVCo payload",
                    super::text(&r["kind"]),
                    super::display_json(&r["amount"]),
                    r["payload"].as_str().map_or(0, str::len)
                )
            },
        )
        .await?;
    demo.report
        .ids
        .insert("payment_request", super::text(&request["id"]));

    let payment = demo
        .step(
            "pay qr",
            "paying the scanned payload",
            shopper.post_keyed(
                Host::Api,
                "/v1/payments",
                &json!({ "qr": request["payload"] }),
                &new_key(),
            ),
            |p| {
                format!(
                    "{} to {}; wallet {}",
                    super::display_json(&p["amount"]),
                    super::text(&p["merchant"]["name"]),
                    super::display_json(&p["wallet"]["available"])
                )
            },
        )
        .await?;
    let payment_id = super::text(&payment["id"]);
    demo.report.ids.insert("payment", payment_id.clone());

    let code = demo
        .step(
            "payment code",
            "a one-time payment code",
            shopper.post(Host::Api, "/v1/payment-codes", &json!({})),
            |c| super::text(&c["code"]),
        )
        .await?;
    let charge = demo
        .step(
            "charge code",
            "charging the code",
            merchant.post_keyed(
                Host::Merchant,
                "/v1/charges",
                &json!({ "payment_code": code["code"], "amount": money(CODE_CHARGE), "reference": "DEMO-CODE" }),
                &new_key(),
            ),
            |c| {
                format!(
                    "{} (fee {}, net {})",
                    super::display_json(&c["amount"]),
                    super::display_json(&c["fee"]),
                    super::display_json(&c["net"])
                )
            },
        )
        .await?;
    let charge_id = super::text(&charge["id"]);
    demo.report.ids.insert("charge", charge_id.clone());

    let transfer = demo
        .step(
            "send p2p",
            "P2P transfer",
            shopper.post_keyed(
                Host::Api,
                "/v1/transfers",
                &json!({ "to": { "email": friend.profile.email }, "amount": money(TRANSFER), "note": "ramen money" }),
                &new_key(),
            ),
            |t| {
                format!(
                    "{}; wallet {}",
                    super::display_json(&t["amount"]),
                    super::display_json(&t["wallet"]["available"])
                )
            },
        )
        .await?;
    demo.report
        .ids
        .insert("transfer", super::text(&transfer["id"]));

    let refund = demo
        .step(
            "refund",
            "part of the QR payment",
            merchant.post_keyed(
                Host::Merchant,
                "/v1/refunds",
                &json!({ "payment_id": payment_id, "amount": money(REFUND) }),
                &new_key(),
            ),
            |r| format!("{} of the QR payment", super::display_json(&r["amount"])),
        )
        .await?;
    let refund_id = super::text(&refund["id"]);
    demo.report.ids.insert("refund", refund_id.clone());

    // The live feed: the payment, the charge and the refund, whenever they arrived.
    let wanted = [
        Wanted {
            what: "payment",
            kind: "payment.completed",
            id: payment_id.clone(),
            step: "pay qr",
        },
        Wanted {
            what: "charge",
            kind: "payment.completed",
            id: charge_id.clone(),
            step: "charge code",
        },
        Wanted {
            what: "refund",
            kind: "payment.refunded",
            id: refund_id.clone(),
            step: "refund",
        },
    ];
    let events_outcome = demo
        .step(
            "events arrived",
            "waiting for the payment, the charge and the refund",
            async {
                let deadline = tokio::time::sleep(Duration::from_millis(EVENTS_TIMEOUT_MS));
                tokio::pin!(deadline);
                loop {
                    if wanted.iter().all(|w| find(&arrived, w).is_some()) {
                        return Ok(arrived.len());
                    }
                    tokio::select! {
                        message = inbox.recv() => match message {
                            Some(FromWatcher::Event(event)) => arrived.push(event),
                            Some(FromWatcher::Dropped(reason)) => drops.push(reason),
                            Some(FromWatcher::Connected) => {}
                            None => return Err(fail(Code::Failed, "the live stream ended early")),
                        },
                        () = &mut deadline => {
                            let missing: Vec<&str> = wanted
                                .iter()
                                .filter(|w| find(&arrived, w).is_none())
                                .map(|w| w.what)
                                .collect();
                            return Err(fail(Code::Failed, format!(
                                "the live stream did not deliver the {} within {} s",
                                missing.join(" and "),
                                EVENTS_TIMEOUT_MS / 1000
                            )));
                        }
                    }
                }
            },
            |count| format!("{count} events: payment, charge and refund all arrived"),
        )
        .await;
    watcher.abort();
    demo.report.events_complete = events_outcome.is_ok();
    for wanted in &wanted {
        let answered_at = demo.report.steps.iter().find(|s| s.name == wanted.step);
        if let (Some(event), Some(answered_at)) = (find(&arrived, wanted), answered_at) {
            let lag = i128::from(event.received_at_ms) - i128::from(answered_at.ended_at_ms);
            demo.report
                .event_lag_ms
                .insert(wanted.what, i64::try_from(lag).unwrap_or(i64::MAX));
        }
    }
    demo.report.events = arrived;
    demo.report.stream_drops = drops;
    events_outcome?;

    let expected = [payment_id.clone(), charge_id.clone(), refund_id.clone()];
    let items = demo
        .step(
            "merchant list",
            "waiting for the list to catch up (it is built from Kafka events)",
            async {
                let deadline = Instant::now() + Duration::from_millis(LIST_CATCH_UP_TIMEOUT_MS);
                loop {
                    let page = merchant
                        .get(Host::Merchant, "/v1/transactions?limit=20")
                        .await?;
                    let items = page["items"].as_array().cloned().unwrap_or_default();
                    let shows = |id: &String| items.iter().any(|i| i["id"].as_str() == Some(id));
                    // The payment's row must show the refund too, not only the refund's row.
                    let refunded = items.iter().any(|i| {
                        i["id"].as_str() == Some(&payment_id)
                            && i["refunded"]["value"].as_i64() == Some(REFUND)
                    });
                    if expected.iter().all(shows) && refunded {
                        return Ok(items);
                    }
                    if Instant::now() >= deadline {
                        return Err(fail(
                            Code::Failed,
                            format!(
                                "the merchant's list did not show the payment, the charge and the refund within {} s",
                                LIST_CATCH_UP_TIMEOUT_MS / 1000
                            ),
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(LIST_POLL_INTERVAL_MS)).await;
                }
            },
            |items: &Vec<Value>| format!("{} transactions", items.len()),
        )
        .await?;
    demo.report.transactions = items;

    let balances = demo
        .step(
            "balances",
            "reading the wallets",
            async {
                Ok((
                    shopper.get(Host::Api, "/v1/wallet").await?,
                    friend.get(Host::Api, "/v1/wallet").await?,
                    merchant.get(Host::Merchant, "/v1/merchants/me").await?,
                ))
            },
            |(c, f, m)| {
                format!(
                    "consumer {}, friend {}, merchant {}",
                    super::display_json(&c["available"]),
                    super::display_json(&f["available"]),
                    super::display_json(&m["balance"])
                )
            },
        )
        .await?;
    let (consumer_wallet, friend_wallet, merchant_me) = balances;
    demo.report
        .balances
        .insert("consumer", consumer_wallet["available"].clone());
    demo.report
        .balances
        .insert("friend", friend_wallet["available"].clone());
    demo.report
        .balances
        .insert("merchant", merchant_me["balance"].clone());
    for (who, wallet, expected) in [
        ("consumer", &consumer_wallet, CONSUMER_AFTER),
        ("friend", &friend_wallet, FRIEND_AFTER),
    ] {
        if wallet["available"]["value"].as_i64() != Some(expected) {
            return Err(fail(
                Code::Failed,
                format!(
                    "the {who}'s wallet holds {}, not the {} the flow adds up to",
                    super::display_json(&wallet["available"]),
                    super::amount::display(expected, CURRENCY)
                ),
            ));
        }
    }

    let ledger = demo
        .step(
            "ledger verify",
            "the orchestrator checks every invariant",
            crate::pay::ledger::report(home),
            |r| {
                format!(
                    "{} accounts, {} transfers: {}",
                    r["accounts"],
                    r["transfers"],
                    if r["ok"].as_bool() == Some(true) {
                        "every invariant holds"
                    } else {
                        "INVARIANTS VIOLATED"
                    }
                )
            },
        )
        .await?;
    demo.report.ledger_ok = ledger["ok"].as_bool() == Some(true);
    demo.report.ledger = ledger;
    if !demo.report.ledger_ok {
        return Err(fail(
            Code::Violation,
            "the ledger's invariants are violated: see `paytool ledger verify`",
        ));
    }
    Ok(())
}

fn new_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// An event the demo waits for: what it is about, and the step whose answer it follows.
struct Wanted {
    what: &'static str,
    kind: &'static str,
    id: String,
    step: &'static str,
}

/// The event of the wanted kind about its id: a payment's or charge's own, or a refund's.
fn find<'a>(arrived: &'a [Received], wanted: &Wanted) -> Option<&'a Received> {
    arrived.iter().find(|received| {
        let event = &received.event;
        let about = match wanted.kind {
            "payment.refunded" => &event["data"]["refund"]["id"],
            _ => &event["data"]["id"],
        };
        event["type"].as_str() == Some(wanted.kind) && about.as_str() == Some(wanted.id.as_str())
    })
}

fn print_summary(report: &Report) {
    if !report.transactions.is_empty() {
        println!("\nThe merchant's transactions, newest first:");
        print_transactions(Role::Merchant, &json!({ "items": report.transactions }));
    }
    if !report.events.is_empty() {
        println!("\nLive events, as the merchant received them:");
        for received in &report.events {
            println!(
                "  +{:>5} ms  {}",
                received.received_at_ms,
                describe_event(&received.event)
            );
        }
        let lags: Vec<String> = report
            .event_lag_ms
            .iter()
            .map(|(what, ms)| format!("{what} {ms} ms"))
            .collect();
        if !lags.is_empty() {
            println!(
                "  (from the request's answer to its event: {})",
                lags.join(", ")
            );
        }
    }
    if !report.ledger.is_null() {
        println!(
            "\nLedger: {} accounts, {} transfers — {}",
            report.ledger["accounts"],
            report.ledger["transfers"],
            if report.ledger_ok {
                "every invariant holds"
            } else {
                "INVARIANTS VIOLATED"
            }
        );
    }
    let steps_ms: u64 = report.steps.iter().map(|s| s.ms).sum();
    println!(
        "\n{} in {} ms ({} steps, {steps_ms} ms in them)",
        if report.ok { "Done" } else { "Failed" },
        report.total_ms,
        report.steps.len()
    );
}
