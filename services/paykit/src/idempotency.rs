//! Idempotency keys for requests that move money, after the IETF draft "The Idempotency-Key
//! HTTP Header Field" and Stripe's behaviour:
//!
//! - a request without `Idempotency-Key` is refused (400 `idempotency-key-missing`), one whose
//!   key is not 1 to 255 printable ASCII characters too (400 `idempotency-key-invalid`);
//! - keys are scoped to the caller (the token's subject) and the endpoint (method and path);
//! - the same key with the same body replays the stored status and body, marked with
//!   `Idempotency-Replayed: true`;
//! - the same key with another body is refused (422 `idempotency-key-reused`);
//! - while the first request with a key is still being handled, another gets 409
//!   `idempotency-key-in-flight`; a request that died in flight frees its key after
//!   [`IN_FLIGHT_LEASE_MS`];
//! - a 5xx answer is not stored (the client may retry with the same key);
//! - keys are kept at least [`RETENTION_HOURS`].
//!
//! The store is a table in the service's own database, `idempotency_keys`, made by paykit's
//! migrations (see [`crate::db::migrate`]). A handler that writes in its own transaction can
//! store its answer in it ([`Claim`]): the key then costs one commit (its claim), not two.

use crate::auth::{Principal, Verifier};
use crate::problem::Problem;
use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{FromRef, FromRequestParts, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use tracing::Instrument;

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotency-replayed";
/// Keys are kept at least this long (the draft suggests 24 hours).
pub const RETENTION_HOURS: i64 = 24;
/// A request in flight holds its key this long; after that a crashed request's key is free.
pub const IN_FLIGHT_LEASE_MS: i64 = 30_000;
/// Largest request or response body the layer buffers; larger ones are refused (413) or not stored.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;
pub const KEY_MAX_CHARS: usize = 255;
/// How many times a request tries to claim its key before giving up. A claim is retried only
/// when the key's row vanished between our insert (which found it there) and our read: another
/// request with the same key answered 5xx and released it. A second try almost always settles
/// it; the bound keeps a client hammering one failing key from spinning a handler forever.
pub const CLAIM_ATTEMPTS_MAX: u32 = 3;

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

/// What a new request with a key may do.
#[derive(Debug)]
pub enum Begin {
    /// First use (or a dead request's key taken over): handle it, then [`Store::complete`].
    Proceed,
    /// Answered before: send this again.
    Replay {
        status: u16,
        body: Vec<u8>,
        content_type: Option<String>,
    },
    InFlight,
    Mismatch,
    /// Claimed and released by other requests [`CLAIM_ATTEMPTS_MAX`] times while this one tried
    /// to claim it: the client should retry shortly.
    Contended,
}

/// The key a request holds while its handler runs, given to the handler as a request
/// extension by [`idempotent`]. A handler that writes in a transaction of its own may store
/// its answer in that same transaction ([`Claim::commit_with_answer`]): the answer and the
/// change it reports then commit together, one commit where the layer's own completion would
/// be a second. A handler that does not is completed by the layer as before.
#[derive(Clone)]
pub struct Claim {
    principal: String,
    endpoint: String,
    key: String,
    /// The body stored with the commit, once committed: the layer checks the handler sent it.
    answered: std::sync::Arc<std::sync::Mutex<Option<Bytes>>>,
}

impl Claim {
    /// Stores `body` (JSON, status `status`) as this key's answer inside `tx`, commits it, and
    /// answers the response to send: exactly what a replay will get (the layer asserts the
    /// handler sent it).
    pub async fn commit_with_answer(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        status: StatusCode,
        body: Bytes,
    ) -> Result<Response, sqlx::Error> {
        assert!(
            !status.is_server_error(),
            "a 5xx is never stored (its key is released for a retry)"
        );
        assert!(
            body.len() <= BODY_LIMIT_BYTES,
            "an answer too large to store"
        );
        let stored = store_answer(
            &mut *tx,
            Answer {
                principal: &self.principal,
                endpoint: &self.endpoint,
                key: &self.key,
                status: status.as_u16(),
                content_type: Some(JSON),
                body: &body,
            },
            Overwrite::OnlyUnanswered,
        )
        .await?;
        if stored != 1 {
            // Our claim is gone (its lease lapsed and another request took the key over):
            // nothing is committed, and the caller answers 5xx so the client retries.
            return Err(sqlx::Error::Protocol(
                "the Idempotency-Key's claim lapsed before its answer was stored".into(),
            ));
        }
        tx.commit().await?;
        *self.answered.lock().unwrap_or_else(|e| e.into_inner()) = Some(body.clone());
        Ok((
            status,
            [(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static(JSON),
            )],
            body,
        )
            .into_response())
    }

    fn answered(&self) -> Option<Bytes> {
        self.answered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

const JSON: &str = "application/json";

/// An answer to store under a key.
struct Answer<'a> {
    principal: &'a str,
    endpoint: &'a str,
    key: &'a str,
    status: u16,
    content_type: Option<&'a str>,
    body: &'a [u8],
}

/// Whether storing an answer may replace one already stored.
#[derive(Clone, Copy)]
enum Overwrite {
    /// The layer's completion after the handler (as it always was).
    Any,
    /// A handler's own commit: only while the key is still this request's unanswered claim.
    OnlyUnanswered,
}

/// The one statement that stores an answer under a key, in the pool or in a handler's
/// transaction. Answers how many rows it changed (0: the key's row is gone or, with
/// [`Overwrite::OnlyUnanswered`], already answered).
async fn store_answer<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    answer: Answer<'_>,
    overwrite: Overwrite,
) -> Result<u64, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE idempotency_keys SET status = $4, content_type = $5, body = $6
         WHERE principal = $1 AND endpoint = $2 AND key = $3 AND (status IS NULL OR NOT $7)",
    )
    .bind(answer.principal)
    .bind(answer.endpoint)
    .bind(answer.key)
    .bind(i16::try_from(answer.status).unwrap_or(500))
    .bind(answer.content_type)
    .bind(answer.body)
    .bind(matches!(overwrite, Overwrite::OnlyUnanswered))
    .execute(executor)
    .await?;
    Ok(updated.rows_affected())
}

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Claims the key for this request, or says why not. Bounded: at most
    /// [`CLAIM_ATTEMPTS_MAX`] claims, then [`Begin::Contended`].
    pub async fn begin(
        &self,
        principal: &str,
        endpoint: &str,
        key: &str,
        request_hash: &str,
    ) -> Result<Begin, sqlx::Error> {
        for _ in 0..CLAIM_ATTEMPTS_MAX {
            if let Some(begin) = self.claim(principal, endpoint, key, request_hash).await? {
                return Ok(begin);
            }
        }
        Ok(Begin::Contended)
    }

    /// One attempt at claiming the key; `None` when its row vanished under us (a 5xx released
    /// it between our insert and our read), so that the caller may try again.
    async fn claim(
        &self,
        principal: &str,
        endpoint: &str,
        key: &str,
        request_hash: &str,
    ) -> Result<Option<Begin>, sqlx::Error> {
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (principal, endpoint, key, request_hash, locked_until)
             VALUES ($1, $2, $3, $4, now() + $5 * interval '1 millisecond') ON CONFLICT DO NOTHING",
        )
        .bind(principal)
        .bind(endpoint)
        .bind(key)
        .bind(request_hash)
        .bind(IN_FLIGHT_LEASE_MS)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(Some(Begin::Proceed));
        }
        let row = sqlx::query(
            "SELECT request_hash, status, content_type, body, locked_until < now() AS lease_expired
             FROM idempotency_keys WHERE principal = $1 AND endpoint = $2 AND key = $3",
        )
        .bind(principal)
        .bind(endpoint)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            // Deleted between the insert and the read (a 5xx released it): the caller tries again.
            return Ok(None);
        };
        if row.try_get::<String, _>("request_hash")? != request_hash {
            return Ok(Some(Begin::Mismatch));
        }
        if let Some(status) = row.try_get::<Option<i16>, _>("status")? {
            return Ok(Some(Begin::Replay {
                status: u16::try_from(status).unwrap_or(500),
                body: row
                    .try_get::<Option<Vec<u8>>, _>("body")?
                    .unwrap_or_default(),
                content_type: row.try_get("content_type")?,
            }));
        }
        if row.try_get::<bool, _>("lease_expired")? {
            // The first request died without an answer: this one takes the key over, once.
            let taken = sqlx::query(
                "UPDATE idempotency_keys SET locked_until = now() + $4 * interval '1 millisecond'
                 WHERE principal = $1 AND endpoint = $2 AND key = $3 AND status IS NULL AND locked_until < now()",
            )
            .bind(principal)
            .bind(endpoint)
            .bind(key)
            .bind(IN_FLIGHT_LEASE_MS)
            .execute(&self.pool)
            .await?;
            if taken.rows_affected() == 1 {
                return Ok(Some(Begin::Proceed));
            }
        }
        Ok(Some(Begin::InFlight))
    }

    pub async fn complete(
        &self,
        principal: &str,
        endpoint: &str,
        key: &str,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(), sqlx::Error> {
        store_answer(
            &self.pool,
            Answer {
                principal,
                endpoint,
                key,
                status,
                content_type,
                body,
            },
            Overwrite::Any,
        )
        .await?;
        Ok(())
    }

    /// Frees a key whose request failed on our side, so that a retry can run.
    pub async fn release(
        &self,
        principal: &str,
        endpoint: &str,
        key: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM idempotency_keys WHERE principal = $1 AND endpoint = $2 AND key = $3 AND status IS NULL")
            .bind(principal)
            .bind(endpoint)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes keys older than the retention. Returns how many.
    /// Deletes expired keys now and then every `interval_ms`, until the task is aborted.
    pub fn spawn_purge(&self, interval_ms: u64) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(error) = store.purge_expired().await {
                    tracing::warn!(%error, "idempotency purge failed");
                }
                tokio::time::sleep(std::time::Duration::from_millis(interval_ms)).await;
            }
        })
    }

    pub async fn purge_expired(&self) -> Result<u64, sqlx::Error> {
        let deleted = sqlx::query(
            "DELETE FROM idempotency_keys WHERE created_at < now() - $1 * interval '1 hour'",
        )
        .bind(RETENTION_HOURS)
        .execute(&self.pool)
        .await?;
        Ok(deleted.rows_affected())
    }
}

fn problem(status: StatusCode, slug: &str, title: &str, detail: &str) -> Response {
    Problem::new(status, slug, title)
        .with_detail(detail)
        .into_response()
}

/// The request hash covers the method, the path and query, and the body bytes.
pub fn request_hash(endpoint: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(endpoint.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    hex::encode(hasher.finalize())
}

/// A key is 1 to [`KEY_MAX_CHARS`] printable ASCII characters (spaces inside allowed, none at
/// either end): something a client generated, never control characters or another encoding,
/// which would make two keys that print the same compare different.
fn parse_key(raw: &[u8]) -> Result<String, &'static str> {
    let text = std::str::from_utf8(raw)
        .ok()
        .filter(|t| t.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .ok_or("Idempotency-Key must be printable ASCII (a UUID is a good key).")?
        .trim();
    if text.is_empty() || text.len() > KEY_MAX_CHARS {
        return Err("Idempotency-Key must be 1 to 255 characters.");
    }
    Ok(text.to_string())
}

/// Middleware for routes that move money: `route.layer(from_fn_with_state(state, idempotent))`.
/// The state must give a [`Verifier`] (to know the caller) and a [`Store`].
pub async fn idempotent<S>(State(state): State<S>, request: Request, next: Next) -> Response
where
    S: Clone + Send + Sync + 'static,
    Verifier: FromRef<S>,
    Store: FromRef<S>,
{
    let (mut parts, body) = request.into_parts();
    let principal = match Principal::from_request_parts(&mut parts, &state).await {
        Ok(principal) => principal,
        Err(rejection) => return rejection.into_response(),
    };
    let key = match parts.headers.get(HEADER).map(|v| parse_key(v.as_bytes())) {
        Some(Ok(key)) => key,
        None => return problem(
            StatusCode::BAD_REQUEST,
            "idempotency-key-missing",
            "Idempotency-Key missing",
            "Every request that moves money needs an Idempotency-Key header (1 to 255 characters).",
        ),
        Some(Err(detail)) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "idempotency-key-invalid",
                "Idempotency-Key invalid",
                detail,
            )
        }
    };
    let endpoint = format!("{} {}", parts.method, parts.uri.path());
    let bytes: Bytes = match to_bytes(body, BODY_LIMIT_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
                "The request body is larger than this API accepts.",
            )
        }
    };
    let hash = request_hash(
        &format!("{endpoint}?{}", parts.uri.query().unwrap_or("")),
        &bytes,
    );
    let store = Store::from_ref(&state);
    let who = principal.subject.clone();
    // Claiming the key and handling the request run in one task of their own, so a client
    // that goes away (a timeout, a dropped connection) can neither cut a money-moving request
    // off halfway nor leave its key claimed with nothing running under it (which would answer
    // its retries 409 until the in-flight lease lapses). The answer is stored for the client's
    // retry, which then replays it. The task stays in the request's span, so the calls and
    // events it makes join the trace.
    let handled = tokio::spawn(
        async move {
            match store.begin(&who, &endpoint, &key, &hash).await {
                Ok(Begin::Proceed) => {}
                Ok(Begin::Replay {
                    status,
                    body,
                    content_type,
                }) => {
                    let mut response = Response::new(Body::from(body));
                    *response.status_mut() =
                        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    if let Some(content_type) =
                        content_type.and_then(|c| HeaderValue::from_str(&c).ok())
                    {
                        response
                            .headers_mut()
                            .insert(axum::http::header::CONTENT_TYPE, content_type);
                    }
                    response
                        .headers_mut()
                        .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
                    return response;
                }
                Ok(Begin::InFlight) => return problem(
                    StatusCode::CONFLICT,
                    "idempotency-key-in-flight",
                    "Request in progress",
                    "A request with this Idempotency-Key is still being handled; retry shortly.",
                ),
                Ok(Begin::Contended) => return problem(
                    StatusCode::CONFLICT,
                    "idempotency-key-contended",
                    "Idempotency-Key contended",
                    "Other requests with this Idempotency-Key kept claiming and releasing it; retry shortly.",
                ),
                Ok(Begin::Mismatch) => {
                    return problem(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "idempotency-key-reused",
                        "Idempotency-Key reused",
                        "This Idempotency-Key was used for a different request.",
                    )
                }
                Err(error) => {
                    tracing::error!(%error, "idempotency store unavailable");
                    // The database out of reach is an outage (503, Retry-After), not a bug.
                    return match crate::resilience::database_unavailable(&error) {
                        Some(unavailable) => unavailable.into_response(),
                        None => Problem::internal().into_response(),
                    };
                }
            }
            parts.extensions.insert(principal);
            let claim = Claim {
                principal: who.clone(),
                endpoint: endpoint.clone(),
                key: key.clone(),
                answered: Default::default(),
            };
            parts.extensions.insert(claim.clone());
            let request = Request::from_parts(parts, Body::from(bytes));
            let response = next.run(request).await;
            finish(&store, &claim, response).await
        }
        .instrument(tracing::Span::current()),
    );
    match handled.await {
        Ok(response) => response,
        Err(error) => {
            tracing::error!(%error, "the idempotent request's task failed");
            Problem::internal().into_response()
        }
    }
}

/// Stores the handler's answer under the key (or releases the key after a 5xx, which is not
/// stored so that a retry runs again) and returns it. An answer the handler already committed
/// with its own transaction ([`Claim::commit_with_answer`]) is not written again.
async fn finish(store: &Store, claim: &Claim, response: Response) -> Response {
    let (who, endpoint, key) = (&claim.principal, &claim.endpoint, &claim.key);
    let (response_parts, response_body) = response.into_parts();
    let response_bytes = match to_bytes(response_body, BODY_LIMIT_BYTES).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::error!(%error, "response too large to store for idempotency");
            let _ = store.release(who, endpoint, key).await;
            return Problem::internal().into_response();
        }
    };
    if let Some(stored) = claim.answered() {
        // What a replay will get is what this request gets.
        assert!(
            stored == response_bytes && !response_parts.status.is_server_error(),
            "a handler answered other than what it stored under its Idempotency-Key"
        );
        return Response::from_parts(response_parts, Body::from(response_bytes));
    }
    let outcome = if response_parts.status.is_server_error() {
        store.release(who, endpoint, key).await
    } else {
        let content_type = response_parts
            .headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        store
            .complete(
                who,
                endpoint,
                key,
                response_parts.status.as_u16(),
                content_type,
                &response_bytes,
            )
            .await
    };
    if let Err(error) = outcome {
        tracing::error!(%error, "cannot record the idempotent answer");
    }
    Response::from_parts(response_parts, Body::from(response_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_hash_is_the_lowercase_hex_sha_256_of_endpoint_nul_body() {
        // Stored hashes are compared with new ones: the format must not change.
        assert_eq!(
            request_hash("POST /v1/topups", br#"{"amount":1}"#),
            "430e0728368d5d3ed11aaaa9524afde90c5a15f023748952454df84c6d1274c0" // pragma: allowlist secret (a SHA-256 test vector)
        );
    }
}
