//! The service's one error type. Client errors become their problem type; a database out of
//! reach is a 503 with Retry-After; anything else is logged with its cause and answered with a
//! generic 500.

use crate::ledger::LedgerError;
use crate::saga::{failure_type, SagaError};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use paykit::problem::Problem;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the caller lacks the role {0}")]
    Forbidden(&'static str),
    #[error("an Idempotency-Key header is required")]
    MissingIdempotencyKey,
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Saga(#[from] SagaError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The task a saga ran in ended without an answer (it panicked): a bug.
    #[error("the saga's task failed: {0}")]
    Task(String),
    /// Only under the seeded weakness `orchestrator.weakness.waits-for-publish`.
    #[error("{0}")]
    Unavailable(paykit::resilience::Unavailable),
}

/// The HTTP status of a ledger refusal, by its stable type.
pub fn status_of(type_slug: &str) -> StatusCode {
    match type_slug {
        "insufficient-funds" => StatusCode::PAYMENT_REQUIRED,
        "account-not-found" | "payment-not-found" => StatusCode::NOT_FOUND,
        "account-closed"
        | "merchant-unavailable"
        | "payment-not-completed"
        | "transfer-id-reused" => StatusCode::CONFLICT,
        "reservation-expired" | "deadline-exceeded" => StatusCode::GONE,
        "internal" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

fn title_of(type_slug: &str) -> String {
    let mut title = type_slug.replace('-', " ");
    if let Some(first) = title.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    title
}

pub fn refusal(type_slug: &str, detail: impl Into<String>) -> Problem {
    Problem::new(status_of(type_slug), type_slug, &title_of(type_slug)).with_detail(detail)
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let problem = match self {
            Error::Forbidden(role) => Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden")
                .with_detail(format!("This needs the orchestrator role {role}.")),
            Error::MissingIdempotencyKey => Problem::new(StatusCode::BAD_REQUEST, "idempotency-key-missing", "Idempotency-Key missing")
                .with_detail("Every request that moves money needs an Idempotency-Key header (1 to 255 characters)."),
            Error::NotFound(what) => Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found").with_detail(format!("{what} does not exist.")),
            Error::Invalid(detail) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", "Invalid request").with_detail(detail),
            Error::Saga(SagaError::Ledger(error)) | Error::Ledger(error) => match error {
                LedgerError::Database(cause) => return Error::Database(cause).into_response(),
                other => refusal(failure_type(&other), other.to_string()),
            },
            Error::Saga(SagaError::Database(cause)) => return Error::Database(cause).into_response(),
            Error::Saga(error @ SagaError::Invalid(_)) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", "Invalid request").with_detail(error.to_string())
            }
            Error::Saga(error @ SagaError::WrongAccountKind { .. }) => refusal("wrong-account-kind", error.to_string()),
            Error::Saga(error @ SagaError::IdempotencyKeyReused) => refusal("idempotency-key-reused", error.to_string()),
            Error::Saga(error @ SagaError::PaymentNotFound(_)) => refusal("payment-not-found", error.to_string()),
            Error::Saga(error @ SagaError::PaymentNotCompleted(_)) => refusal("payment-not-completed", error.to_string()),
            Error::Saga(error @ SagaError::RefundExceedsCapture { .. }) => refusal("refund-exceeds-capture", error.to_string()),
            Error::Task(cause) => {
                tracing::error!(error = %cause, "saga task failed");
                Problem::internal()
            }
            Error::Unavailable(unavailable) => return unavailable.into_response(),
            Error::Database(cause) => {
                // A database out of reach is an outage (503, Retry-After): the caller's retry
                // with its key does the work once it is back. Anything else is a bug.
                if let Some(unavailable) = paykit::resilience::database_unavailable(&cause) {
                    tracing::warn!(error = %cause, "database unavailable");
                    return unavailable.into_response();
                }
                tracing::error!(error = %cause, "database error");
                Problem::internal()
            }
        };
        problem.into_response()
    }
}
