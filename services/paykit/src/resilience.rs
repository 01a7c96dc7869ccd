//! Calls to a dependency that degrade instead of piling up: a deadline passed down, retries
//! only where a call is idempotent and within a budget, a circuit breaker and a bulkhead per
//! destination.
//!
//! - **Deadline.** A request arrives with at most [`crate::server::REQUEST_TIMEOUT_MS`] to live,
//!   less when its caller sent a [`DEADLINE_HEADER`] (milliseconds it will still wait).
//!   [`deadline_layer`] keeps that instant for the request's task; every call made for the
//!   request gets what is left of it (at most its destination's `call_timeout_ms`) and passes
//!   the remainder on in the same header, so a callee never works for a caller that gave up.
//! - **Retries** only for calls that are safe to repeat (a read, or a write with an
//!   `Idempotency-Key`), after a transport failure or a 502/503/504, with jittered exponential
//!   backoff ([`crate::backoff`]), at most [`Policy::attempts_max`] attempts, and only while the
//!   destination's retry budget (tower's `TpsBudget`: about 10 % of the calls of the last
//!   10 s, plus one a second) has tokens: retries cannot multiply the load on a struggling
//!   dependency.
//! - **Circuit breaker** ([`Breaker`], pure and driven by the instants it is given, so its
//!   tests use a fake clock): closed until at least `requests_min` calls in the window failed
//!   in `failure_ratio_percent` or more; open for `open_ms` (calls fail at once, with the time
//!   left as Retry-After); then half-open, letting `half_open_probes` calls through, which close
//!   it when they all succeed and open it again when one fails.
//! - **Bulkhead.** At most `concurrency_max` calls in flight per destination; a call waits for a
//!   slot at most `queue_timeout_ms`, so a slow dependency holds a bounded share of the
//!   service's requests and connections.
//!
//! A destination that cannot be called is [`Unavailable`]: services answer it as 503 with
//! Retry-After, never 500.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower::retry::budget::{Budget, TpsBudget};

/// The header that carries a caller's remaining budget in milliseconds.
pub const DEADLINE_HEADER: &str = "request-timeout";
/// Below this much time left, a call is not started: it could not finish anyway.
pub const CALL_TIME_MIN_MS: u64 = 50;
/// A refusal of a destination that is down tells the client to come back after this long
/// (when no breaker knows better).
pub const RETRY_AFTER_DEFAULT_S: u64 = 1;
/// Retry-After never promises more than this.
pub const RETRY_AFTER_MAX_S: u64 = 30;

/// How one destination is called. Every field is a bound.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// The longest one attempt may take, when the request's deadline allows that much.
    pub call_timeout_ms: u64,
    /// Attempts of one idempotent call, the first included.
    pub attempts_max: u32,
    pub backoff_first_ms: u64,
    pub backoff_max_ms: u64,
    /// Retries allowed on top of the calls, in percent of the calls of the last `budget_ttl_ms`.
    pub retry_budget_percent: u32,
    /// Retries a second allowed even without recent calls (a service that just started).
    pub retry_budget_min_per_s: u32,
    pub retry_budget_ttl_ms: u64,
    pub breaker: BreakerSettings,
    /// Calls in flight to this destination at once.
    pub concurrency_max: u32,
    /// How long a call may wait for one of those slots.
    pub queue_timeout_ms: u64,
}

impl Policy {
    /// For the platform's own services on loopback: a payment saga answers within a few
    /// hundred milliseconds, so 3 s per attempt is a hung callee, not a slow one.
    pub const SERVICE: Policy = Policy {
        call_timeout_ms: 3_000,
        attempts_max: 3,
        backoff_first_ms: 50,
        backoff_max_ms: 400,
        retry_budget_percent: 10,
        retry_budget_min_per_s: 1,
        retry_budget_ttl_ms: 10_000,
        breaker: BreakerSettings {
            window_ms: 10_000,
            requests_min: 20,
            failure_ratio_percent: 50,
            open_ms: 5_000,
            half_open_probes: 3,
        },
        concurrency_max: 64,
        queue_timeout_ms: 250,
    };
}

#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    /// Calls older than this do not count.
    pub window_ms: u64,
    /// Fewer calls than this in the window never open the breaker.
    pub requests_min: u32,
    pub failure_ratio_percent: u32,
    /// How long an open breaker refuses calls before it probes.
    pub open_ms: u64,
    /// Calls let through while half-open.
    pub half_open_probes: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// The window is kept as this many buckets: bounded memory, whatever the call rate.
const BREAKER_BUCKETS: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which slice of time this bucket counts (`since_start / bucket_ms`).
    index: u64,
    succeeded: u32,
    failed: u32,
}

/// A circuit breaker for one destination. It never reads a clock: every method takes the
/// instant it is called at, from the caller (`Instant::now()` in service code, a fake clock in
/// tests).
#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    start: Instant,
    buckets: [Bucket; BREAKER_BUCKETS],
    state: BreakerState,
    opened_at: Option<Instant>,
    probes_started: u32,
    probes_succeeded: u32,
}

/// An open breaker's refusal: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub retry_after_ms: u64,
}

impl Breaker {
    pub fn new(settings: BreakerSettings, now: Instant) -> Self {
        assert!(
            settings.window_ms >= BREAKER_BUCKETS as u64,
            "a window of whole buckets"
        );
        assert!(settings.requests_min > 0 && settings.half_open_probes > 0);
        assert!((1..=100).contains(&settings.failure_ratio_percent));
        Self {
            settings,
            start: now,
            buckets: [Bucket::default(); BREAKER_BUCKETS],
            state: BreakerState::Closed,
            opened_at: None,
            probes_started: 0,
            probes_succeeded: 0,
        }
    }

    pub fn state(&self, now: Instant) -> BreakerState {
        match (self.state, self.opened_at) {
            (BreakerState::Open, Some(at))
                if now.saturating_duration_since(at)
                    >= Duration::from_millis(self.settings.open_ms)
                    // Seeded weakness (chaos bench): a breaker that never tries again.
                    && !crate::failpoints::weak("paykit.weakness.breaker-stays-open") =>
            {
                BreakerState::HalfOpen
            }
            (state, _) => state,
        }
    }

    /// Whether a call may start now. A call that was let through must be [`Breaker::record`]ed.
    pub fn allow(&mut self, now: Instant) -> Result<(), Refused> {
        match self.state(now) {
            BreakerState::Closed => Ok(()),
            BreakerState::Open => {
                let opened_at = self.opened_at.unwrap_or(now);
                let open_until = opened_at + Duration::from_millis(self.settings.open_ms);
                let left = open_until.saturating_duration_since(now);
                Err(Refused {
                    retry_after_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1),
                })
            }
            BreakerState::HalfOpen => {
                if self.state == BreakerState::Open {
                    // The open time is over: this is the first probe.
                    self.state = BreakerState::HalfOpen;
                    self.probes_started = 0;
                    self.probes_succeeded = 0;
                }
                if self.probes_started < self.settings.half_open_probes {
                    self.probes_started += 1;
                    Ok(())
                } else {
                    // Every probe is out; the rest wait for their outcome.
                    Err(Refused {
                        retry_after_ms: self.settings.open_ms.min(1_000),
                    })
                }
            }
        }
    }

    /// The outcome of a call that [`Breaker::allow`] let through.
    pub fn record(&mut self, now: Instant, succeeded: bool) {
        match self.state {
            BreakerState::HalfOpen => {
                if succeeded {
                    self.probes_succeeded += 1;
                    if self.probes_succeeded >= self.settings.half_open_probes {
                        self.close();
                    }
                } else {
                    self.open(now);
                }
            }
            BreakerState::Open => {
                // A call that started before the breaker opened; its outcome changes nothing.
            }
            BreakerState::Closed => {
                let bucket = self.bucket(now);
                if succeeded {
                    bucket.succeeded = bucket.succeeded.saturating_add(1);
                } else {
                    bucket.failed = bucket.failed.saturating_add(1);
                }
                let (succeeded, failed) = self.counts(now);
                let total = u64::from(succeeded) + u64::from(failed);
                if total >= u64::from(self.settings.requests_min)
                    && u64::from(failed) * 100
                        >= total * u64::from(self.settings.failure_ratio_percent)
                {
                    self.open(now);
                }
            }
        }
    }

    fn open(&mut self, now: Instant) {
        self.state = BreakerState::Open;
        self.opened_at = Some(now);
        self.probes_started = 0;
        self.probes_succeeded = 0;
    }

    fn close(&mut self) {
        self.state = BreakerState::Closed;
        self.opened_at = None;
        // A fresh window: the failures that opened it are history.
        self.buckets = [Bucket::default(); BREAKER_BUCKETS];
    }

    fn bucket_ms(&self) -> u64 {
        self.settings.window_ms / BREAKER_BUCKETS as u64
    }

    fn index_at(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.start).as_millis();
        u64::try_from(since).unwrap_or(u64::MAX) / self.bucket_ms()
    }

    fn bucket(&mut self, now: Instant) -> &mut Bucket {
        let index = self.index_at(now);
        let slot = &mut self.buckets[(index % BREAKER_BUCKETS as u64) as usize];
        if slot.index != index {
            *slot = Bucket {
                index,
                succeeded: 0,
                failed: 0,
            };
        }
        slot
    }

    /// Successes and failures within the window that ends now.
    fn counts(&self, now: Instant) -> (u32, u32) {
        let current = self.index_at(now);
        self.buckets
            .iter()
            .filter(|b| current.saturating_sub(b.index) < BREAKER_BUCKETS as u64)
            .fold((0, 0), |(s, f), b| {
                (s.saturating_add(b.succeeded), f.saturating_add(b.failed))
            })
    }
}

/// Why a destination could not be called: answered as 503 with Retry-After.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{destination} is unavailable: {reason}")]
pub struct Unavailable {
    pub destination: &'static str,
    pub reason: String,
    pub retry_after_s: u64,
}

impl Unavailable {
    /// The 503 problem document; [`axum::response::IntoResponse`] adds Retry-After to it.
    pub fn problem(&self) -> crate::problem::Problem {
        crate::problem::Problem::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "dependency-unavailable",
            "A service this request needs is unavailable",
        )
        .with_detail(format!(
            "The {} service did not answer in time; nothing was done twice. Retry after {} s with the same Idempotency-Key.",
            self.destination, self.retry_after_s
        ))
        .with_extension("retry_after_s", self.retry_after_s)
    }
}

impl axum::response::IntoResponse for Unavailable {
    fn into_response(self) -> axum::response::Response {
        let mut response = self.problem().into_response();
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(self.retry_after_s),
        );
        response
    }
}

/// A database error that means PostgreSQL is out of reach (no connection within the pool's
/// acquire timeout, a connection that broke, a server shutting down), as a 503; `None` for
/// errors of the query itself, which stay 500 (or their constraint's 4xx).
pub fn database_unavailable(error: &sqlx::Error) -> Option<Unavailable> {
    let reason = match error {
        sqlx::Error::PoolTimedOut => {
            "no database connection within the pool's acquire timeout".to_string()
        }
        sqlx::Error::Io(io) => format!("the database connection failed: {io}"),
        sqlx::Error::PoolClosed => "the database pool is closed".to_string(),
        // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now, 25006
        // read_only_sql_transaction (a primary that has just been demoted).
        sqlx::Error::Database(db)
            if matches!(
                db.code().as_deref(),
                Some("57P01" | "57P02" | "57P03" | "25006")
            ) =>
        {
            format!("the database refused: {}", db.message())
        }
        _ => return None,
    };
    Some(Unavailable {
        destination: "postgres",
        reason,
        retry_after_s: RETRY_AFTER_DEFAULT_S,
    })
}

/// One destination's breaker, retry budget and bulkhead, shared by every call to it.
pub struct Guard {
    pub destination: &'static str,
    pub policy: Policy,
    breaker: Mutex<Breaker>,
    budget: TpsBudget,
    slots: tokio::sync::Semaphore,
    /// Only the seeded weakness `calls-share-one-connection` takes it: one call at a time.
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("destination", &self.destination)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// What one attempt came to, as the breaker and the retry loop see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An answer that says the destination works (2xx, 4xx and 500 alike: a 500 is a bug of
    /// the callee's, not an outage, and it is not retried).
    Answered,
    /// No answer, a timeout, or 502/503/504: the destination is in trouble.
    Failed,
}

impl Guard {
    pub fn new(destination: &'static str, policy: Policy) -> Arc<Self> {
        assert!(policy.attempts_max >= 1 && policy.concurrency_max >= 1);
        let budget = TpsBudget::new(
            Duration::from_millis(policy.retry_budget_ttl_ms),
            policy.retry_budget_min_per_s,
            // Not money: a ratio of calls.
            policy.retry_budget_percent as f32 / 100.0,
        );
        let guard = Arc::new(Self {
            destination,
            policy,
            breaker: Mutex::new(Breaker::new(policy.breaker, Instant::now())),
            budget,
            slots: tokio::sync::Semaphore::new(policy.concurrency_max as usize),
            one_at_a_time: tokio::sync::Mutex::new(()),
        });
        guard.publish_state(BreakerState::Closed);
        guard
    }

    pub fn state(&self) -> BreakerState {
        self.lock().state(Instant::now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        // A poisoned lock means a panic mid-update of plain counters; they are still usable.
        self.breaker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn publish_state(&self, state: BreakerState) {
        for candidate in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            metrics::gauge!(
                "dependency_circuit_state",
                "destination" => self.destination,
                "state" => candidate.as_str()
            )
            .set(if candidate == state { 1.0 } else { 0.0 });
        }
    }

    fn unavailable(&self, reason: String, retry_after_ms: u64) -> Unavailable {
        metrics::counter!(
            "dependency_calls_refused_total",
            "destination" => self.destination
        )
        .increment(1);
        Unavailable {
            destination: self.destination,
            reason,
            retry_after_s: retry_after_ms
                .div_ceil(1_000)
                .clamp(RETRY_AFTER_DEFAULT_S, RETRY_AFTER_MAX_S),
        }
    }

    /// Runs `attempt` under this destination's bounds: each attempt gets the time it may take
    /// (what is left of the request's deadline, at most the policy's per-call timeout) and
    /// answers an [`Outcome`] with its value. Failed attempts are retried only when
    /// `idempotent`, within the attempts and the budget. The value of the last attempt is
    /// returned when it answered; otherwise the destination is [`Unavailable`].
    pub async fn call<T, E, F, Fut>(
        &self,
        idempotent: bool,
        mut attempt: F,
    ) -> Result<Result<T, E>, Unavailable>
    where
        F: FnMut(Duration) -> Fut,
        Fut: std::future::Future<Output = (Outcome, Result<T, E>)>,
        E: std::fmt::Display,
    {
        let _slot = tokio::time::timeout(
            Duration::from_millis(self.policy.queue_timeout_ms),
            self.slots.acquire(),
        )
        .await
        .map_err(|_| {
            self.unavailable(
                format!(
                    "{} calls in flight already (waited {} ms for a slot)",
                    self.policy.concurrency_max, self.policy.queue_timeout_ms
                ),
                RETRY_AFTER_DEFAULT_S * 1_000,
            )
        })?
        .map_err(|_| self.unavailable("closed".into(), RETRY_AFTER_DEFAULT_S * 1_000))?;
        // Seeded weakness (chaos bench): a pool of one connection, waited for without a bound.
        let _one = if crate::failpoints::weak("paykit.weakness.calls-share-one-connection") {
            Some(self.one_at_a_time.lock().await)
        } else {
            None
        };

        self.budget.deposit();
        let mut backoff =
            crate::backoff::Backoff::new(self.policy.backoff_first_ms, self.policy.backoff_max_ms);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            // Seeded weakness (chaos bench): tried again until the deadline, whatever the
            // attempts, the budget and the breaker say.
            let unlimited = crate::failpoints::weak("paykit.weakness.retry-without-limit");
            let left_ms = remaining_ms();
            if left_ms < CALL_TIME_MIN_MS {
                return Err(self.unavailable(
                    format!(
                        "the request's deadline left {left_ms} ms after {} attempts",
                        attempts - 1
                    ),
                    RETRY_AFTER_DEFAULT_S * 1_000,
                ));
            }
            let allowed = if unlimited {
                Ok(())
            } else {
                self.lock().allow(Instant::now())
            };
            if let Err(refused) = allowed {
                return Err(self.unavailable(
                    "its circuit breaker is open after repeated failures".into(),
                    refused.retry_after_ms,
                ));
            }
            let timeout = Duration::from_millis(left_ms.min(self.policy.call_timeout_ms));
            let (outcome, value) = attempt(timeout).await;
            let state = {
                let mut breaker = self.lock();
                breaker.record(Instant::now(), outcome == Outcome::Answered);
                breaker.state(Instant::now())
            };
            self.publish_state(state);
            metrics::counter!(
                "dependency_calls_total",
                "destination" => self.destination,
                "outcome" => match outcome { Outcome::Answered => "answered", Outcome::Failed => "failed" }
            )
            .increment(1);
            if outcome == Outcome::Answered {
                return Ok(value);
            }
            let why = match &value {
                Ok(_) => "it answered that it is unavailable".to_string(),
                Err(error) => error.to_string(),
            };
            if !idempotent || (attempts >= self.policy.attempts_max && !unlimited) {
                return Err(self.unavailable(
                    format!("{why} (attempt {attempts} of {})", self.policy.attempts_max),
                    RETRY_AFTER_DEFAULT_S * 1_000,
                ));
            }
            if !unlimited && !self.budget.withdraw() {
                metrics::counter!(
                    "dependency_retries_denied_total",
                    "destination" => self.destination
                )
                .increment(1);
                return Err(self.unavailable(
                    format!("{why}; the retry budget is spent"),
                    RETRY_AFTER_DEFAULT_S * 1_000,
                ));
            }
            metrics::counter!("dependency_retries_total", "destination" => self.destination)
                .increment(1);
            let delay = backoff.next_delay();
            let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            if delay_ms + CALL_TIME_MIN_MS > remaining_ms() {
                return Err(self.unavailable(
                    format!("{why}; no time left for another attempt"),
                    RETRY_AFTER_DEFAULT_S * 1_000,
                ));
            }
            tokio::time::sleep(delay).await;
        }
    }
}

tokio::task_local! {
    /// When the request being handled must be answered by.
    static DEADLINE: Instant;
}

/// Milliseconds left for the request being handled; outside a request (a background relay or
/// consumer), the whole request bound.
pub fn remaining_ms() -> u64 {
    DEADLINE
        .try_with(|deadline| {
            let left = deadline.saturating_duration_since(Instant::now());
            u64::try_from(left.as_millis()).unwrap_or(u64::MAX)
        })
        .unwrap_or(crate::server::REQUEST_TIMEOUT_MS)
}

/// The budget a caller sent, clamped to this service's own bound; garbage is ignored.
pub fn budget_ms(headers: &axum::http::HeaderMap) -> u64 {
    headers
        .get(DEADLINE_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok())
        .map_or(crate::server::REQUEST_TIMEOUT_MS, |ms| {
            ms.min(crate::server::REQUEST_TIMEOUT_MS)
        })
}

/// Keeps the request's deadline for its task, and answers 504 when it passes: the caller
/// has stopped waiting, so the work stops too (a transaction in flight rolls back).
pub async fn deadline_layer(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let budget = Duration::from_millis(budget_ms(request.headers()));
    let deadline = Instant::now() + budget;
    match DEADLINE
        .scope(deadline, tokio::time::timeout(budget, next.run(request)))
        .await
    {
        Ok(response) => response,
        Err(_) => crate::problem::Problem::new(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            "deadline-exceeded",
            "Deadline exceeded",
        )
        .with_detail(format!(
            "The request was not done within its {} ms; nothing was committed past that point, and a retry with the same Idempotency-Key is safe.",
            budget.as_millis()
        ))
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: BreakerSettings = BreakerSettings {
        window_ms: 10_000,
        requests_min: 10,
        failure_ratio_percent: 50,
        open_ms: 5_000,
        half_open_probes: 2,
    };

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn a_breaker_opens_when_half_the_calls_in_its_window_fail_and_not_before_the_minimum() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(SETTINGS, t0);
        for i in 0..9 {
            assert_eq!(breaker.allow(at(t0, i)), Ok(()));
            breaker.record(at(t0, i), false);
        }
        // Nine failures are fewer calls than the minimum: still closed.
        assert_eq!(breaker.state(at(t0, 9)), BreakerState::Closed);
        breaker.record(at(t0, 10), false);
        assert_eq!(breaker.state(at(t0, 10)), BreakerState::Open);
        let refused = breaker.allow(at(t0, 1_010)).expect_err("open refuses");
        assert_eq!(refused.retry_after_ms, 4_000);
    }

    #[test]
    fn failures_spread_among_enough_successes_keep_the_breaker_closed() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(SETTINGS, t0);
        for i in 0..100 {
            breaker.record(at(t0, i * 10), i % 3 != 0);
        }
        // 34 of 100 failed: under half.
        assert_eq!(breaker.state(at(t0, 1_000)), BreakerState::Closed);
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(SETTINGS, t0);
        for i in 0..9 {
            breaker.record(at(t0, i), false);
        }
        // Eleven seconds later the nine failures are out of the window; one more is one of one.
        breaker.record(at(t0, 11_000), false);
        assert_eq!(breaker.state(at(t0, 11_000)), BreakerState::Closed);
        for i in 0..9 {
            breaker.record(at(t0, 11_001 + i), false);
        }
        assert_eq!(breaker.state(at(t0, 11_010)), BreakerState::Open);
    }

    fn opened(t0: Instant) -> Breaker {
        let mut breaker = Breaker::new(SETTINGS, t0);
        for i in 0..10 {
            breaker.record(at(t0, i), false);
        }
        assert_eq!(breaker.state(at(t0, 10)), BreakerState::Open);
        breaker
    }

    #[test]
    fn after_its_open_time_a_breaker_lets_a_bounded_number_of_probes_through_and_closes_when_they_succeed(
    ) {
        let t0 = Instant::now();
        let mut breaker = opened(t0);
        assert_eq!(breaker.state(at(t0, 5_010)), BreakerState::HalfOpen);
        assert_eq!(breaker.allow(at(t0, 5_010)), Ok(()));
        assert_eq!(breaker.allow(at(t0, 5_011)), Ok(()));
        assert!(
            breaker.allow(at(t0, 5_012)).is_err(),
            "a third call waits for the two probes"
        );
        breaker.record(at(t0, 5_020), true);
        assert_eq!(breaker.state(at(t0, 5_020)), BreakerState::HalfOpen);
        breaker.record(at(t0, 5_021), true);
        assert_eq!(breaker.state(at(t0, 5_021)), BreakerState::Closed);
        assert_eq!(breaker.allow(at(t0, 5_022)), Ok(()));
        // The failures that opened it are forgotten: one failure does not reopen it.
        breaker.record(at(t0, 5_023), false);
        assert_eq!(breaker.state(at(t0, 5_023)), BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_opens_the_breaker_again_for_a_whole_open_time() {
        let t0 = Instant::now();
        let mut breaker = opened(t0);
        assert_eq!(breaker.allow(at(t0, 6_000)), Ok(()));
        breaker.record(at(t0, 6_100), false);
        assert_eq!(breaker.state(at(t0, 6_100)), BreakerState::Open);
        let refused = breaker.allow(at(t0, 7_100)).expect_err("open again");
        assert_eq!(refused.retry_after_ms, 4_000);
        assert_eq!(breaker.state(at(t0, 11_100)), BreakerState::HalfOpen);
    }

    #[test]
    fn a_callers_budget_is_clamped_to_the_services_own_bound_and_garbage_is_ignored() {
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(budget_ms(&headers), crate::server::REQUEST_TIMEOUT_MS);
        headers.insert(DEADLINE_HEADER, "1500".parse().expect("a header"));
        assert_eq!(budget_ms(&headers), 1_500);
        headers.insert(DEADLINE_HEADER, "99999999".parse().expect("a header"));
        assert_eq!(budget_ms(&headers), crate::server::REQUEST_TIMEOUT_MS);
        headers.insert(DEADLINE_HEADER, "soon".parse().expect("a header"));
        assert_eq!(budget_ms(&headers), crate::server::REQUEST_TIMEOUT_MS);
    }

    #[tokio::test]
    async fn an_idempotent_call_is_retried_after_failures_and_a_write_without_a_key_is_not() {
        let guard = Guard::new("test", Policy::SERVICE);
        let mut tries = 0;
        let answered: Result<Result<u32, String>, Unavailable> = guard
            .call(true, |_| {
                tries += 1;
                let n = tries;
                async move {
                    if n < 3 {
                        (Outcome::Failed, Err("connection refused".to_string()))
                    } else {
                        (Outcome::Answered, Ok(n))
                    }
                }
            })
            .await;
        assert_eq!(answered.expect("answered").expect("ok"), 3);

        let mut tries = 0;
        let unsafe_call: Result<Result<u32, String>, Unavailable> = guard
            .call(false, |_| {
                tries += 1;
                async { (Outcome::Failed, Err("connection reset".to_string())) }
            })
            .await;
        assert_eq!(tries, 1, "a call that is not idempotent runs once");
        let unavailable = unsafe_call.expect_err("unavailable");
        assert_eq!(unavailable.retry_after_s, RETRY_AFTER_DEFAULT_S);
        assert_eq!(unavailable.problem().status, 503);
    }

    #[tokio::test]
    async fn retries_stop_when_the_budget_is_spent() {
        let mut policy = Policy::SERVICE;
        policy.retry_budget_min_per_s = 1;
        policy.retry_budget_percent = 1;
        policy.backoff_first_ms = 1;
        policy.backoff_max_ms = 2;
        // A breaker that does not open in this test: only the budget stops retries.
        policy.breaker.requests_min = 1_000_000;
        let guard = Guard::new("budget", policy);
        let mut tries = 0u32;
        for _ in 0..50 {
            let _ = guard
                .call(true, |_| {
                    tries += 1;
                    async { (Outcome::Failed, Err::<(), _>("refused".to_string())) }
                })
                .await;
        }
        // 50 calls; the budget allows 1 % of them plus the reserve of one a second over its
        // 10 s lifetime: far fewer than the 100 retries that 3 attempts a call would make.
        let retries = tries - 50;
        assert!(retries <= 12, "{retries} retries for 50 calls");
        assert!(retries >= 1, "the reserve allows a retry at first");
    }

    #[tokio::test]
    async fn an_outbound_call_gets_what_is_left_of_the_request_deadline() {
        let deadline = Instant::now() + Duration::from_millis(800);
        let guard = Guard::new("deadline", Policy::SERVICE);
        let timeout = DEADLINE
            .scope(deadline, async {
                guard
                    .call(true, |timeout| async move {
                        (Outcome::Answered, Ok::<_, String>(timeout))
                    })
                    .await
            })
            .await
            .expect("answered")
            .expect("ok");
        assert!(timeout <= Duration::from_millis(800), "{timeout:?}");
        assert!(timeout > Duration::from_millis(500), "{timeout:?}");
    }
}
