//! Failpoints: named places in the services where a chaos run makes the code fail, or wait, on
//! purpose (the `fail` crate). They are compiled in only with the `failpoints` feature, which
//! is off by default (a release build has none: every check below is a constant `None`); the
//! test platform's services are built with it (`cargo build --features failpoints`).
//!
//! They are set at run time through `/admin/failpoints` on each service instance, which
//! answers only a token with the realm role `admin` (`paytool chaos` asks for one with the
//! `paytool-operator` client). Only the actions that cannot block the async runtime are taken:
//! `off`, and `return` (with `p%` and `n*` prefixes and `->` chains). An error point fails its
//! work when it returns; a delay point waits the milliseconds it returns, asynchronously, up
//! to [`DELAY_MS_MAX`]. `sleep`, `delay`, `pause`, `panic`, `print` and `yield` would stop a
//! whole worker thread of the runtime (or the process) and are refused.

use crate::auth::{Principal, Verifier};
use crate::problem::Problem;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The realm role the admin endpoint asks for.
pub const ROLE_ADMIN: &str = "admin";
/// Longest a delay point may make anything wait.
pub const DELAY_MS_MAX: u64 = 30_000;
/// Longest actions string taken.
const ACTIONS_BYTES_MAX: usize = 256;

/// What a point does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    /// The work at the point fails (as its own failure would: a database error, say).
    Error,
    /// The work waits the milliseconds the point returns (`return(250)`).
    Delay,
    /// A seeded weakness: a realistic bug switched on while the point is set (`return`), for
    /// `paytool chaos auto` and `paytool chaos bench` to find. Off, the code is the sound one.
    Weakness,
}

/// One failpoint of the catalogue.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Point {
    pub name: &'static str,
    pub effect: Effect,
    pub what: &'static str,
}

/// Every failpoint there is. A service offers the ones named after it and paykit's (`paykit.`).
pub const CATALOGUE: &[Point] = &[
    Point {
        name: "paykit.request.delay",
        effect: Effect::Delay,
        what: "every request the service answers waits first (an overloaded or stalling service)",
    },
    Point {
        name: "paykit.outbox.before-publish",
        effect: Effect::Error,
        what: "the outbox relay fails a batch before it reaches Kafka (the rows stay unpublished and are tried again)",
    },
    Point {
        name: "paykit.weakness.call-without-deadline",
        effect: Effect::Weakness,
        what: "calls to other services wait up to 120 s instead of the policy's 3 s: a caller hangs as long as its callee is silent (a timeout fault on its route shows it as latency)",
    },
    Point {
        name: "paykit.weakness.relay-drops-failed-batch",
        effect: Effect::Weakness,
        what: "the outbox relay marks a batch published although Kafka refused it: events are lost while Kafka is away (a paused or full Kafka shows it as money: a payment missing from its merchant's list)",
    },
    Point {
        name: "paykit.weakness.consumer-skips-failed-event",
        effect: Effect::Weakness,
        what: "a consumer that cannot apply an event (its database away or too slow for the apply's bound) commits its offset and moves on instead of retrying: the event is lost (a slow database under the consumer shows it as money: a payment missing from its merchant's list)",
    },
    Point {
        name: "paykit.weakness.relay-listens-only",
        effect: Effect::Weakness,
        what: "the outbox relay wakes only when its writers tell it, never on its poll, and stops listening after its first failed round (its database away): events wait in the outbox for good (a cut between a service and its database shows it as money: events not published)",
    },
    Point {
        name: "paykit.weakness.consumer-stops-on-error",
        effect: Effect::Weakness,
        what: "a consumer's loop ends at its first consuming error (Kafka away) instead of retrying: events are no longer applied (a killed Kafka shows it as money: payments missing from their merchants' lists)",
    },
    Point {
        name: "paykit.weakness.service-token-not-cached",
        effect: Effect::Weakness,
        what: "a service asks Keycloak for a new token for every call to another service instead of caching it: Keycloak becomes part of every payment (a cut between the service and Keycloak shows it as availability: payments fail while Keycloak is away)",
    },
    Point {
        name: "paykit.weakness.signing-keys-not-cached",
        effect: Effect::Weakness,
        what: "a service fetches Keycloak's signing keys for every token it verifies instead of caching them: Keycloak becomes part of every request (a cut between the service and Keycloak shows it as availability: requests refused while Keycloak is away)",
    },
    Point {
        name: "paykit.weakness.breaker-stays-open",
        effect: Effect::Weakness,
        what: "a circuit breaker that opened never half-opens: calls to the other service are refused long after it is back (a cut on the caller's route shows it as no recovery)",
    },
    Point {
        name: "paykit.weakness.retry-without-limit",
        effect: Effect::Weakness,
        what: "a failed call to another service is tried again and again until the request's deadline, past the policy's attempts, the retry budget and an open circuit breaker: a caller hangs for as long as its callee is away (a cut on the caller's route shows it as latency)",
    },
    Point {
        name: "paykit.weakness.keys-dropped-when-refresh-fails",
        effect: Effect::Weakness,
        what: "a service holds Keycloak's signing keys (and the tokens they verified) for 5 s only and, when fetching them again fails, drops them instead of keeping the ones it has: every token is refused while Keycloak is away (a cut between the service and Keycloak shows it as availability)",
    },
    Point {
        name: "paykit.weakness.calls-share-one-connection",
        effect: Effect::Weakness,
        what: "every call to another service waits, without a bound, for the one call in flight to it to end (a pool of one connection): a slow or silent callee makes a queue that grows without end (a timeout fault on the caller's route shows it as latency)",
    },
    Point {
        name: "orchestrator.weakness.waits-for-publish",
        effect: Effect::Weakness,
        what: "the orchestrator answers a saga only once the outbox is published up to it (at most 5 s, else 503): Kafka is on the payment's path (a paused Kafka shows it as availability: payments refused while it is away)",
    },
    Point {
        name: "orchestrator.saga.before-step",
        effect: Effect::Error,
        what: "a saga step's transaction fails before its work (the saga stays where it is; recovery tries it again)",
    },
    Point {
        name: "orchestrator.saga.step-delay",
        effect: Effect::Delay,
        what: "a saga step waits inside its transaction, holding its connection and row locks",
    },
];

/// Whether this build has failpoints (the `failpoints` feature).
pub const fn compiled_in() -> bool {
    cfg!(feature = "failpoints")
}

/// The points a service offers: its own and paykit's.
pub fn offered(service: &str) -> impl Iterator<Item = &'static Point> + '_ {
    CATALOGUE.iter().filter(move |point| {
        point.name.starts_with("paykit.")
            || point
                .name
                .strip_prefix(service)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// Whether the point fires now; when it does, what its `return` carries.
#[inline]
pub fn fire(name: &str) -> Option<Option<String>> {
    #[cfg(feature = "failpoints")]
    {
        fail::eval(name, |value| value)
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = name;
        None
    }
}

/// Whether an error point fires now.
#[inline]
pub fn fails(name: &str) -> bool {
    fire(name).is_some()
}

/// Whether a seeded weakness is switched on.
#[inline]
pub fn weak(name: &str) -> bool {
    fire(name).is_some()
}

/// Waits what a delay point returns, when it fires (nothing otherwise).
pub async fn delay(name: &str) {
    if let Some(value) = fire(name) {
        let ms = value
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
            .min(DELAY_MS_MAX);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// The request-delay point as a middleware (added by `server::with_common_layers` when the
/// feature is on).
pub async fn request_delay(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    delay("paykit.request.delay").await;
    next.run(request).await
}

/// Checks actions against what the point may do: `off`, or `return` chains whose value a delay
/// point reads as milliseconds (bounded).
pub fn validate(point: &Point, actions: &str) -> Result<(), String> {
    if actions.len() > ACTIONS_BYTES_MAX {
        return Err(format!("actions longer than {ACTIONS_BYTES_MAX} bytes"));
    }
    if actions.trim() == "off" {
        return Ok(());
    }
    for action in actions.split("->") {
        let mut task = action.trim();
        // `p%` then `n*`, each optional.
        if let Some((p, rest)) = task.split_once('%') {
            let p: f64 = p
                .parse()
                .map_err(|_| format!("{action:?}: the probability must be a number"))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(format!("{action:?}: the probability must be 0 to 100"));
            }
            task = rest;
        }
        if let Some((n, rest)) = task.split_once('*') {
            n.parse::<u32>()
                .map_err(|_| format!("{action:?}: the count must be a whole number"))?;
            task = rest;
        }
        let (name, value) = match task.split_once('(') {
            Some((name, rest)) => (
                name,
                Some(
                    rest.strip_suffix(')')
                        .ok_or_else(|| format!("{action:?}: an unclosed parenthesis"))?,
                ),
            ),
            None => (task, None),
        };
        match name {
            "return" => {}
            "off" => continue,
            "sleep" | "delay" | "pause" | "panic" | "print" | "yield" => {
                return Err(format!(
                    "{name} would block the service's async runtime: use return, and return(MS) on a delay point"
                ))
            }
            other => return Err(format!("{other:?} is not an action (off, return)")),
        }
        if point.effect == Effect::Delay {
            let ms: u64 = value
                .ok_or_else(|| format!("{} is a delay point: give return(MS)", point.name))?
                .trim()
                .parse()
                .map_err(|_| format!("{action:?}: a delay point returns milliseconds"))?;
            if ms > DELAY_MS_MAX {
                return Err(format!("{ms} ms is more than {DELAY_MS_MAX} ms"));
            }
        }
    }
    Ok(())
}

/// One point as the endpoint shows it.
#[derive(Debug, Serialize)]
pub struct PointState {
    #[serde(flatten)]
    pub point: Point,
    /// Its actions now; none when it is off.
    pub actions: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setting {
    pub actions: String,
}

#[derive(Clone)]
struct AdminState {
    service: &'static str,
    verifier: Verifier,
}

impl axum::extract::FromRef<AdminState> for Verifier {
    fn from_ref(state: &AdminState) -> Self {
        state.verifier.clone()
    }
}

/// `GET /admin/failpoints`, `PUT` and `DELETE /admin/failpoints/{name}`.
pub fn router(service: &'static str, verifier: Verifier) -> Router {
    Router::new()
        .route("/admin/failpoints", get(list))
        .route(
            "/admin/failpoints/{name}",
            get(show).put(set).delete(remove),
        )
        .with_state(AdminState { service, verifier })
}

fn authorise(principal: &Principal) -> Result<(), Problem> {
    if !principal.has_realm_role(ROLE_ADMIN) {
        return Err(
            Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden")
                .with_detail(format!("failpoints need the realm role {ROLE_ADMIN}")),
        );
    }
    if !compiled_in() {
        return Err(
            Problem::new(StatusCode::NOT_FOUND, "failpoints-absent", "No failpoints").with_detail(
                "this build has no failpoints: build the services with `--features failpoints`",
            ),
        );
    }
    Ok(())
}

fn point(service: &str, name: &str) -> Result<&'static Point, Problem> {
    offered(service).find(|p| p.name == name).ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "failpoint-unknown",
            "Unknown failpoint",
        )
        .with_detail(format!(
            "{service} has no failpoint {name}; it has {}",
            offered(service)
                .map(|p| p.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

fn state_of(point: &'static Point) -> PointState {
    #[cfg(feature = "failpoints")]
    let actions = fail::list()
        .into_iter()
        .find(|(name, _)| name == point.name)
        .map(|(_, actions)| actions)
        .filter(|actions| !actions.is_empty() && actions != "off");
    #[cfg(not(feature = "failpoints"))]
    let actions = None;
    PointState {
        point: *point,
        actions,
    }
}

async fn list(
    State(state): State<AdminState>,
    principal: Principal,
) -> Result<Json<Vec<PointState>>, Problem> {
    authorise(&principal)?;
    Ok(Json(offered(state.service).map(state_of).collect()))
}

async fn show(
    State(state): State<AdminState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<PointState>, Problem> {
    authorise(&principal)?;
    Ok(Json(state_of(point(state.service, &name)?)))
}

async fn set(
    State(state): State<AdminState>,
    principal: Principal,
    Path(name): Path<String>,
    Json(setting): Json<Setting>,
) -> Result<Json<PointState>, Problem> {
    authorise(&principal)?;
    let point = point(state.service, &name)?;
    let invalid = |reason: String| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Invalid request",
        )
        .with_detail(reason)
    };
    validate(point, &setting.actions).map_err(invalid)?;
    #[cfg(feature = "failpoints")]
    fail::cfg(point.name, &setting.actions).map_err(invalid)?;
    tracing::warn!(failpoint = point.name, actions = %setting.actions, subject = %principal.subject, "failpoint set");
    Ok(Json(state_of(point)))
}

async fn remove(
    State(state): State<AdminState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    authorise(&principal)?;
    let point = point(state.service, &name)?;
    #[cfg(feature = "failpoints")]
    fail::remove(point.name);
    tracing::warn!(failpoint = point.name, subject = %principal.subject, "failpoint off");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> &'static Point {
        CATALOGUE
            .iter()
            .find(|p| p.name == name)
            .expect("in the catalogue")
    }

    #[test]
    fn a_service_is_offered_its_own_points_and_paykits_and_no_one_elses() {
        let names: Vec<&str> = offered("orchestrator").map(|p| p.name).collect();
        assert!(names.contains(&"orchestrator.saga.before-step"));
        assert!(names.contains(&"paykit.request.delay"));
        let consumer: Vec<&str> = offered("consumer-api").map(|p| p.name).collect();
        assert!(consumer
            .iter()
            .all(|n| n.starts_with("paykit.") || n.starts_with("consumer-api.")));
        assert!(!consumer.contains(&"orchestrator.saga.before-step"));
    }

    #[test]
    fn only_actions_that_cannot_block_the_runtime_are_taken() {
        let error = named("orchestrator.saga.before-step");
        let delay = named("paykit.request.delay");
        for good in ["return", "off", "50%return", "3*return", "25%2*return->off"] {
            assert_eq!(validate(error, good), Ok(()), "{good}");
        }
        for good in ["return(250)", "10%return(30000)"] {
            assert_eq!(validate(delay, good), Ok(()), "{good}");
        }
        for (point, bad) in [
            (error, "sleep(100)"),
            (error, "pause"),
            (error, "panic"),
            (error, "delay(5)"),
            (error, "explode"),
            (error, "150%return"),
            (error, "x*return"),
            (error, "return(unclosed"),
            (delay, "return"),
            (delay, "return(soon)"),
            (delay, "return(30001)"),
        ] {
            assert!(validate(point, bad).is_err(), "{bad} was taken");
        }
        assert!(
            validate(error, &"return->".repeat(100)).is_err(),
            "too long"
        );
    }

    #[test]
    fn every_point_is_named_after_paykit_or_a_service() {
        for point in CATALOGUE {
            assert!(
                ["paykit.", "orchestrator.", "consumer-api.", "merchant-api."]
                    .iter()
                    .any(|prefix| point.name.starts_with(prefix)),
                "{}",
                point.name
            );
        }
    }
}
