//! `paytool load`: runs a scenario of `stacks/load/scenarios.yaml` against the running platform
//! through its TLS gateway and reports, per operation, how many, how many failed and the
//! latency percentiles (p50 … p99, max), judged by the scenario's thresholds.
//!
//! An open model, like k6's constant-arrival-rate executor (k6 itself is not used: its licence
//! is the AGPL): an arrival starts every 1/rate seconds whatever the platform answers; an
//! arrival that finds `IN_FLIGHT_MAX` requests outstanding is dropped and counted, so an
//! overloaded platform shows as latency and drops, never as a quietly lower rate. Every
//! request is one attempt (a 429 counts as an error, not a retry), timed from before its
//! first byte to its last.

pub mod scenario;

use crate::args::LoadArgs;
use crate::pay::client::{Gateway, Host, Session};
use crate::pay::{register_consumer, register_merchant, Identity, Merchant};
use crate::perf::stats::Latencies;
use crate::runtime::home::Home;
use crate::support::exit::{fail, Code};
use crate::support::ui::Ui;
pub use scenario::Scenario;
use scenario::{Measured, Operation};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;

pub const SCENARIOS: &str = "stacks/load/scenarios.yaml";
const CURRENCY: &str = "JPY";
/// Requests outstanding at once; an arrival beyond this is dropped (and counted).
const IN_FLIGHT_MAX: usize = 256;
/// One attempt's bound: a request still unanswered after this is an error.
const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Loopback addresses the users are spread over (127.0.3.1 …), each its own client to the
/// gateway's per-address limits, as separate devices would be.
const SOURCE_ADDRESSES: u8 = 16;
/// Registrations run this many at a time (Keycloak is the slow part).
const REGISTRATIONS_IN_FLIGHT: usize = 8;
/// Amounts 100..=199 yen; wallets are funded for their share of the money-moving arrivals.
const AMOUNT_MIN: i64 = 100;
const AMOUNT_SPREAD: i64 = 100;
const FUNDING_MARGIN: i64 = 10_000;

struct User {
    session: Mutex<Session>,
    email: String,
}

pub struct Platform {
    consumers: Vec<Arc<User>>,
    merchants: Vec<Arc<User>>,
    /// Each merchant's static payment request (its QR payload).
    qrs: Vec<String>,
    /// When set, requests skip the gateway and go to the services' own ports (plain HTTP on
    /// loopback): what `paytool bench` compares the gateway against.
    direct: Option<Direct>,
    /// Requests sent a second time after their connection failed under them (see `send`).
    resends: std::sync::atomic::AtomicU64,
    /// Where each answer is also told as it comes (`paytool chaos run` watches the error ratio
    /// live to abort); a full channel drops the copy, never the request.
    tap: Option<tokio::sync::mpsc::Sender<Tapped>>,
}

/// One answer, as the tap sees it.
#[derive(Debug, Clone, Copy)]
pub struct Tapped {
    pub at: Instant,
    pub ok: bool,
    pub latency_us: u64,
}

struct Direct {
    http: reqwest::Client,
    api: String,
    merchant: String,
}

/// Where `paytool load` sends its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// Through the TLS gateway (nginx), as people's devices do.
    Gateway,
    /// Straight to consumer-api's and merchant-api's loopback ports.
    Direct,
}

impl Platform {
    /// Tells every answer to `tap` as well.
    pub fn tapped(mut self, tap: tokio::sync::mpsc::Sender<Tapped>) -> Self {
        self.tap = Some(tap);
        self
    }

    /// One QR payment by the platform's first consumer to its first merchant: its status and
    /// whether it was paid (201).
    pub async fn pay_once(self: &Arc<Self>, index: u64) -> (u16, bool) {
        let sample = arrive(Arc::clone(self), Operation::QrPayment, index, true).await;
        (sample.status, sample.ok)
    }

    /// The same users, reached the other way.
    pub fn routed(&self, home: &Home, route: Route) -> anyhow::Result<Self> {
        let direct = match route {
            Route::Gateway => None,
            Route::Direct => {
                let ports = home.ports();
                Some(Direct {
                    http: reqwest::Client::builder()
                        .pool_max_idle_per_host(IN_FLIGHT_MAX)
                        .build()?,
                    api: format!("http://127.0.0.1:{}", ports.consumer_api),
                    merchant: format!("http://127.0.0.1:{}", ports.merchant_api),
                })
            }
        };
        Ok(Self {
            consumers: self.consumers.clone(),
            merchants: self.merchants.clone(),
            qrs: self.qrs.clone(),
            direct,
            resends: AtomicU64::new(0),
            tap: self.tap.clone(),
        })
    }

    fn http<'a>(&'a self, gateway: &'a Gateway) -> &'a reqwest::Client {
        self.direct.as_ref().map_or(gateway.http(), |d| &d.http)
    }

    fn url(&self, gateway: &Gateway, host: Host, path: &str) -> String {
        match (&self.direct, host) {
            (Some(direct), Host::Merchant) => format!("{}{path}", direct.merchant),
            (Some(direct), _) => format!("{}{path}", direct.api),
            (None, _) => gateway.url(host, path),
        }
    }
}

/// Nearest-rank percentiles to 3 significant digits (see [`crate::perf::stats`]).
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    /// `None` for no latencies (no request succeeded).
    fn of(latencies: &Latencies) -> Option<Self> {
        Some(Self {
            p50_ms: latencies.percentile_ms(0.50)?,
            p90_ms: latencies.percentile_ms(0.90)?,
            p95_ms: latencies.percentile_ms(0.95)?,
            p99_ms: latencies.percentile_ms(0.99)?,
            max_ms: latencies.max_ms()?,
            mean_ms: latencies.mean_ms()?,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OperationReport {
    pub count: u64,
    pub ok: u64,
    pub errors: u64,
    pub error_ratio: f64,
    /// Answers by HTTP status; `0` is a transport error or timeout.
    pub statuses: BTreeMap<u16, u64>,
    /// Of the successful requests only.
    pub latency: Option<Latency>,
    pub rate_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub rate_per_s: u32,
    pub duration_s: u32,
    pub consumers: u32,
    pub merchants: u32,
    pub hot_merchant: bool,
    pub setup_s: f64,
    /// Arrivals the schedule asked for, started, and dropped for want of a free slot.
    pub arrivals: u64,
    pub started: u64,
    pub dropped: u64,
    /// Requests sent a second time, with the same Idempotency-Key (or a read), because their
    /// connection failed before any answer; each counts once, by its final answer.
    pub resends: u64,
    /// From the first arrival to the last answer.
    pub elapsed_s: f64,
    pub operations: BTreeMap<String, OperationReport>,
    pub all: OperationReport,
    pub route: Route,
    pub thresholds: Vec<scenario::Threshold>,
    pub breaches: Vec<scenario::Breach>,
    pub ok: bool,
}

pub async fn run(home: &Home, project: &Path, args: &LoadArgs) -> anyhow::Result<i32> {
    let scenarios = scenario::load(&project.join(SCENARIOS))?;
    let names: Vec<&str> = scenarios.iter().map(|s| s.name.as_str()).collect();
    let chosen = scenarios
        .iter()
        .find(|s| s.name == args.scenario)
        .cloned()
        .ok_or_else(|| {
            fail(
                Code::Usage,
                format!(
                    "no scenario {} in {SCENARIOS}: choose one of {}",
                    args.scenario,
                    names.join(", ")
                ),
            )
        })?
        .with_overrides(args.rate_per_s, args.duration_s)
        .map_err(|e| fail(Code::Usage, format!("{e:#}")))?;
    // Progress goes to stderr and the report to stdout, so `--json` output stays a document
    // while whoever watches (a person, a test waiting for the timed phase) sees the phases.
    let ui = Ui::new(false);
    let report = execute(home, &chosen, &ui).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if report.ok { 0 } else { Code::Failed as i32 })
}

fn source(index: usize) -> IpAddr {
    let last = u8::try_from(index % usize::from(SOURCE_ADDRESSES)).unwrap_or(0) + 1;
    IpAddr::V4(Ipv4Addr::new(127, 0, 3, last))
}

/// Registers the scenario's users (spread over the source addresses), funds the consumers and
/// gives each merchant a static QR.
pub async fn set_up(home: &Home, scenario: &Scenario) -> anyhow::Result<Platform> {
    let gateways: Vec<Gateway> = (0..usize::from(SOURCE_ADDRESSES))
        .map(|i| Gateway::connect_from(home, Some(source(i))))
        .collect::<anyhow::Result<_>>()?;
    let arrivals = i64::from(scenario.rate_per_s) * i64::from(scenario.duration_s);
    let money_share: i64 = scenario
        .operations
        .iter()
        .filter(|(op, _)| op.moves_money() && **op != Operation::TopUp)
        .map(|(_, w)| i64::from(*w))
        .sum();
    let total_weight: i64 = scenario.operations.values().map(|w| i64::from(*w)).sum();
    let per_consumer = arrivals * money_share / total_weight / i64::from(scenario.consumers) + 1;
    let funding = per_consumer * (AMOUNT_MIN + AMOUNT_SPREAD) + FUNDING_MARGIN;

    let slots = Arc::new(Semaphore::new(REGISTRATIONS_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    let total = scenario.consumers + scenario.merchants;
    for i in 0..total {
        let gateway = gateways[i as usize % gateways.len()].clone();
        let slots = Arc::clone(&slots);
        let is_merchant = i >= scenario.consumers;
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await?;
            patiently(|| set_up_user(gateway.clone(), i, is_merchant, funding)).await
        });
    }
    let mut users = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (i, session, email, qr) = joined??;
        users.insert(i, (session, email, qr));
    }
    let mut platform = Platform {
        consumers: Vec::new(),
        merchants: Vec::new(),
        qrs: Vec::new(),
        direct: None,
        resends: std::sync::atomic::AtomicU64::new(0),
        tap: None,
    };
    for (_, (session, email, qr)) in users {
        let user = Arc::new(User {
            session: Mutex::new(session),
            email,
        });
        match qr {
            Some(qr) => {
                platform.merchants.push(user);
                platform.qrs.push(qr);
            }
            None => platform.consumers.push(user),
        }
    }
    Ok(platform)
}

struct Sample {
    operation: Operation,
    status: u16,
    ok: bool,
    latency_us: u64,
}

async fn token(user: &User) -> anyhow::Result<(String, Gateway)> {
    let mut session = user.session.lock().await;
    let token = session.token().await?;
    Ok((token, session.gateway.clone()))
}

/// One request: its status (0 for no answer) and its body. A `repeatable` request (a read, or
/// one with an Idempotency-Key, which the service carries out once) is sent a second time when
/// its connection failed under it before any answer came: the gateway closes kept-alive
/// connections when it reloads (a rollout reloads it), and a request racing that close is
/// lost on the wire. The resend is counted (`resends` in the report). A timeout, a refused
/// connection to the gateway itself, or any answer is final.
async fn send(
    request: reqwest::RequestBuilder,
    repeatable: bool,
    resends: &AtomicU64,
) -> (u16, Value) {
    let again = if repeatable {
        request.try_clone()
    } else {
        None
    };
    let timeout = Duration::from_millis(REQUEST_TIMEOUT_MS);
    let answered = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    };
    match request.timeout(timeout).send().await {
        Ok(response) => answered(response).await,
        Err(error) if !error.is_timeout() && !error.is_connect() => match again {
            Some(again) => {
                resends.fetch_add(1, Ordering::Relaxed);
                match again.timeout(timeout).send().await {
                    Ok(response) => answered(response).await,
                    Err(_) => (0, Value::Null),
                }
            }
            None => (0, Value::Null),
        },
        Err(_) => (0, Value::Null),
    }
}

fn money(index: u64) -> Value {
    let value = AMOUNT_MIN + i64::try_from(index % 100).unwrap_or(0) * AMOUNT_SPREAD / 100;
    json!({ "value": value, "currency": CURRENCY })
}

/// Arrival `index`: who does what to whom, and how it went.
async fn arrive(platform: Arc<Platform>, operation: Operation, index: u64, hot: bool) -> Sample {
    let consumers = platform.consumers.len() as u64;
    let consumer = &platform.consumers[(index % consumers) as usize];
    let merchant_index = if hot {
        0
    } else {
        (index % platform.merchants.len() as u64) as usize
    };
    let started = Instant::now();
    // No token (the sign-in itself failed) is a failure as a user would see it: status 0.
    let (status, expected) = perform(&platform, consumer, merchant_index, operation, index)
        .await
        .unwrap_or((0, 1));
    Sample {
        operation,
        status,
        ok: status == expected,
        latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
    }
}

async fn perform(
    platform: &Platform,
    consumer: &User,
    merchant_index: usize,
    operation: Operation,
    index: u64,
) -> anyhow::Result<(u16, u16)> {
    let (token, gateway) = token(consumer).await?;
    let http = platform.http(&gateway);
    let resends = &platform.resends;
    let key = || uuid::Uuid::new_v4().to_string();
    let post = |host: Host, path: &str, body: Value, keyed: bool| {
        let mut request = http
            .post(platform.url(&gateway, host, path))
            .bearer_auth(&token)
            .json(&body);
        if keyed {
            request = request.header("Idempotency-Key", key());
        }
        request
    };
    Ok(match operation {
        Operation::QrPayment => {
            let body = json!({ "qr": platform.qrs[merchant_index], "amount": money(index) });
            (
                send(post(Host::Api, "/v1/payments", body, true), true, resends)
                    .await
                    .0,
                201,
            )
        }
        Operation::TopUp => {
            let body = json!({ "amount": money(index) });
            (
                send(
                    post(Host::Api, "/v1/wallet/top-ups", body, true),
                    true,
                    resends,
                )
                .await
                .0,
                201,
            )
        }
        Operation::P2pSend => {
            let consumers = platform.consumers.len() as u64;
            let friend = &platform.consumers[((index + 1) % consumers) as usize];
            let body = json!({ "to": { "email": friend.email }, "amount": money(index) });
            (
                send(post(Host::Api, "/v1/transfers", body, true), true, resends)
                    .await
                    .0,
                201,
            )
        }
        Operation::TransactionsRead => {
            let request = http
                .get(platform.url(&gateway, Host::Api, "/v1/transactions?limit=20"))
                .bearer_auth(&token);
            (send(request, true, resends).await.0, 200)
        }
        Operation::CodeCharge => {
            let (status, code) = send(
                post(Host::Api, "/v1/payment-codes", json!({}), false),
                false,
                resends,
            )
            .await;
            if status != 201 {
                return Ok((status, 201));
            }
            let (merchant_token, merchant_gateway) =
                self::token(&platform.merchants[merchant_index]).await?;
            let body = json!({ "payment_code": code["code"], "amount": money(index) });
            let request = platform
                .http(&merchant_gateway)
                .post(platform.url(&merchant_gateway, Host::Merchant, "/v1/charges"))
                .bearer_auth(merchant_token)
                .header("Idempotency-Key", key())
                .json(&body);
            (send(request, true, resends).await.0, 201)
        }
    })
}

/// Runs the scenario on the running platform and measures it.
pub async fn execute(home: &Home, scenario: &Scenario, ui: &Ui) -> anyhow::Result<Report> {
    let line = ui.step(&format!("load {}: set-up", scenario.name));
    line.working(&format!(
        "{} consumers and {} merchants through the gateway",
        scenario.consumers, scenario.merchants
    ));
    let setup_started = Instant::now();
    let platform = Arc::new(set_up(home, scenario).await?);
    let setup_s = setup_started.elapsed().as_secs_f64();
    line.done(&format!(
        "{} consumers funded, {} merchants with a static QR ({setup_s:.1} s)",
        scenario.consumers, scenario.merchants
    ));
    let mut report = drive(&platform, scenario, ui).await?;
    report.setup_s = setup_s;
    Ok(report)
}

/// What one user's set-up made: its index, session, email and (a merchant's) static QR.
type SetUpUser = (u32, Session, String, Option<String>);

/// Registers one user through the gateway: a merchant with a static payment request, or a
/// consumer with its wallet funded.
async fn set_up_user(
    gateway: Gateway,
    i: u32,
    is_merchant: bool,
    funding: i64,
) -> anyhow::Result<SetUpUser> {
    if is_merchant {
        let identity = Identity::new(&format!("load-shop-{i}"), None, None);
        let profile = register_merchant(
            &gateway,
            &identity,
            "Load Shop",
            CURRENCY,
            &Merchant {
                city: "Osaka".into(),
                country: "JP".into(),
                mcc: "5812".into(),
            },
        )
        .await?;
        let email = profile.email.clone();
        let mut session = Session::new(gateway, "load-shop", profile, None);
        let qr = static_qr(&mut session).await?;
        anyhow::Ok((i, session, email, Some(qr)))
    } else {
        let identity = Identity::new(&format!("load-payer-{i}"), None, None);
        let profile = register_consumer(&gateway, &identity, "Load Payer", CURRENCY).await?;
        let email = profile.email.clone();
        let mut session = Session::new(gateway, "load-payer", profile, None);
        fund(&mut session, funding).await?;
        anyhow::Ok((i, session, email, None))
    }
}

/// Tops a consumer's wallet up by `minor` units of [`CURRENCY`].
pub async fn fund(session: &mut Session, minor: i64) -> anyhow::Result<()> {
    session
        .post_keyed(
            Host::Api,
            "/v1/wallet/top-ups",
            &json!({ "amount": { "value": minor, "currency": CURRENCY } }),
            &uuid::Uuid::new_v4().to_string(),
        )
        .await?;
    Ok(())
}

/// A merchant's static payment request (no amount): the QR text its payers scan.
pub async fn static_qr(session: &mut Session) -> anyhow::Result<String> {
    let request = session
        .post_keyed(
            Host::Merchant,
            "/v1/payment-requests",
            &json!({}),
            &uuid::Uuid::new_v4().to_string(),
        )
        .await?;
    Ok(request["payload"].as_str().unwrap_or_default().to_string())
}

/// How long the set-up waits out a platform that refuses for a while (a breaker still open
/// after the experiment before, a service restarting): the set-up is not measured, so it
/// retries a user whose set-up met a 502/503/504 instead of failing the whole run.
const SET_UP_PATIENCE_MS: u64 = 30_000;

async fn patiently<F, Fut>(set_up: F) -> anyhow::Result<SetUpUser>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<SetUpUser>>,
{
    let deadline = std::time::Instant::now() + Duration::from_millis(SET_UP_PATIENCE_MS);
    let mut backoff = paykit::backoff::Backoff::new(500, 4_000);
    loop {
        match set_up().await {
            Ok(user) => return Ok(user),
            Err(error) if transient(&error) && std::time::Instant::now() < deadline => {
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// A refusal the platform is expected to get over by itself: its gateway without an upstream,
/// a dependency away, a deadline passed.
fn transient(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<crate::pay::client::Refusal>()
        .is_some_and(|refusal| matches!(refusal.status, 502..=504))
}

/// The timed phase: arrivals at the scenario's rate for its duration, with users set up before.
pub async fn drive(
    platform: &Arc<Platform>,
    scenario: &Scenario,
    ui: &Ui,
) -> anyhow::Result<Report> {
    let schedule = scenario.schedule();
    let arrivals = u64::from(scenario.rate_per_s) * u64::from(scenario.duration_s);
    let line = ui.step(&format!("load {}", scenario.name));
    let slots = Arc::new(Semaphore::new(IN_FLIGHT_MAX));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(
        1.0 / f64::from(scenario.rate_per_s),
    ));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = JoinSet::new();
    let mut dropped = 0u64;
    let started = Instant::now();
    let mut last_progress = Instant::now();
    for index in 0..arrivals {
        ticker.tick().await;
        let operation = schedule[(index % schedule.len() as u64) as usize];
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            dropped += 1;
            continue;
        };
        let platform = Arc::clone(platform);
        let hot = scenario.hot_merchant;
        tasks.spawn(async move {
            let sample = arrive(Arc::clone(&platform), operation, index, hot).await;
            drop(slot);
            if let Some(tap) = &platform.tap {
                let _ = tap.try_send(Tapped {
                    at: Instant::now(),
                    ok: sample.ok,
                    latency_us: sample.latency_us,
                });
            }
            sample
        });
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            line.working(&format!(
                "{}/{} s, {} started, {} in flight, {dropped} dropped",
                started.elapsed().as_secs(),
                scenario.duration_s,
                index + 1 - dropped,
                IN_FLIGHT_MAX - slots.available_permits()
            ));
        }
    }
    line.working("waiting for the last answers");
    let mut samples = Vec::with_capacity(usize::try_from(arrivals).unwrap_or(0));
    while let Some(joined) = tasks.join_next().await {
        samples.push(joined?);
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    let mut report = summarize(scenario, arrivals, dropped, elapsed_s, &samples);
    report.resends = platform.resends.load(Ordering::Relaxed);
    if platform.direct.is_some() {
        report.route = Route::Direct;
    }
    if report.ok {
        line.done(&format!(
            "{} requests, {} failed, {dropped} dropped",
            report.all.count, report.all.errors
        ));
    } else {
        line.failed(&format!("{} threshold(s) breached", report.breaches.len()));
    }
    Ok(report)
}

fn operation_report<'a>(
    samples: impl Iterator<Item = &'a Sample>,
    elapsed_s: f64,
) -> OperationReport {
    let mut statuses = BTreeMap::new();
    let mut latencies = Latencies::default();
    let (mut count, mut ok) = (0u64, 0u64);
    for sample in samples {
        count += 1;
        *statuses.entry(sample.status).or_insert(0) += 1;
        if sample.ok {
            ok += 1;
            latencies.record_us(sample.latency_us);
        }
    }
    let latency = Latency::of(&latencies);
    OperationReport {
        count,
        ok,
        errors: count - ok,
        error_ratio: if count == 0 {
            0.0
        } else {
            (count - ok) as f64 / count as f64
        },
        statuses,
        latency,
        rate_per_s: if elapsed_s > 0.0 {
            count as f64 / elapsed_s
        } else {
            0.0
        },
    }
}

fn summarize(
    scenario: &Scenario,
    arrivals: u64,
    dropped: u64,
    elapsed_s: f64,
    samples: &[Sample],
) -> Report {
    let mut operations = BTreeMap::new();
    for operation in scenario.operations.keys() {
        operations.insert(
            operation.name().to_string(),
            operation_report(
                samples.iter().filter(|s| s.operation == *operation),
                elapsed_s,
            ),
        );
    }
    let all = operation_report(samples.iter(), elapsed_s);
    let measured: BTreeMap<String, Measured> = operations
        .iter()
        .chain(std::iter::once((&"all".to_string(), &all)))
        .map(|(name, r)| {
            (
                name.clone(),
                Measured {
                    p95_ms: r.latency.as_ref().map(|l| l.p95_ms),
                    p99_ms: r.latency.as_ref().map(|l| l.p99_ms),
                    error_ratio: Some(r.error_ratio),
                },
            )
        })
        .collect();
    let breaches = scenario::breaches(&scenario.thresholds, &measured);
    Report {
        scenario: scenario.name.clone(),
        rate_per_s: scenario.rate_per_s,
        duration_s: scenario.duration_s,
        consumers: scenario.consumers,
        merchants: scenario.merchants,
        hot_merchant: scenario.hot_merchant,
        // The timed phase only; `execute` adds its own set-up's time.
        setup_s: 0.0,
        arrivals,
        started: arrivals - dropped,
        dropped,
        // Filled by `drive`, which has the platform's count.
        resends: 0,
        elapsed_s,
        ok: breaches.is_empty(),
        operations,
        all,
        route: Route::Gateway,
        thresholds: scenario.thresholds.clone(),
        breaches,
    }
}

fn print_report(report: &Report) {
    println!(
        "scenario {}: {}/s for {} s, {} consumers, {} merchants{}; {} arrivals, {} dropped, {} resent, {:.1} s",
        report.scenario,
        report.rate_per_s,
        report.duration_s,
        report.consumers,
        report.merchants,
        if report.hot_merchant { " (one hot)" } else { "" },
        report.arrivals,
        report.dropped,
        report.resends,
        report.elapsed_s
    );
    println!(
        "{:<18} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}  STATUSES",
        "OPERATION", "COUNT", "ERRORS", "RATE/s", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "max ms"
    );
    let row = |name: &str, r: &OperationReport| {
        let l = r.latency.as_ref();
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let statuses: Vec<String> = r.statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
        println!(
            "{:<18} {:>7} {:>7} {:>8.1} {:>8} {:>8} {:>8} {:>8} {:>8}  {}",
            name,
            r.count,
            r.errors,
            r.rate_per_s,
            ms(l.map(|l| l.p50_ms)),
            ms(l.map(|l| l.p90_ms)),
            ms(l.map(|l| l.p95_ms)),
            ms(l.map(|l| l.p99_ms)),
            ms(l.map(|l| l.max_ms)),
            statuses.join(" ")
        );
    };
    for (name, r) in &report.operations {
        row(name, r);
    }
    row("all", &report.all);
    if report.breaches.is_empty() {
        println!("every threshold held");
    }
    for breach in &report.breaches {
        println!(
            "THRESHOLD BREACHED: {} {} {:.4} > {}",
            breach.operation, breach.what, breach.measured, breach.limit
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_counts_failures_apart_and_times_only_successes() {
        let samples = [
            Sample {
                operation: Operation::QrPayment,
                status: 201,
                ok: true,
                latency_us: 10_000,
            },
            Sample {
                operation: Operation::QrPayment,
                status: 429,
                ok: false,
                latency_us: 1_000,
            },
            Sample {
                operation: Operation::TopUp,
                status: 201,
                ok: true,
                latency_us: 20_000,
            },
        ];
        let scenario = scenario::parse(
            "scenarios:\n  - name: a\n    description: d\n    rate_per_s: 3\n    duration_s: 1\n    consumers: 1\n    merchants: 1\n    hot_merchant: false\n    operations: { qr-payment: 2, top-up: 1 }\n    thresholds: [{ operation: all, error_ratio_max: 0.1 }]\n",
        )
        .expect("parses")
        .remove(0);
        let report = summarize(&scenario, 3, 0, 1.0, &samples);
        let qr = &report.operations["qr-payment"];
        assert_eq!((qr.count, qr.ok, qr.errors), (2, 1, 1));
        assert_eq!(qr.statuses, BTreeMap::from([(201, 1), (429, 1)]));
        assert_eq!(qr.latency.as_ref().map(|l| l.max_ms), Some(10.0));
        assert_eq!(report.all.count, 3);
        assert!(!report.ok, "a third failed, over the 10% allowed");
        assert_eq!(report.breaches[0].what, "error_ratio");
    }

    #[test]
    fn users_are_spread_over_sixteen_loopback_addresses() {
        assert_eq!(source(0), IpAddr::V4(Ipv4Addr::new(127, 0, 3, 1)));
        assert_eq!(source(15), IpAddr::V4(Ipv4Addr::new(127, 0, 3, 16)));
        assert_eq!(source(16), source(0));
    }
}
