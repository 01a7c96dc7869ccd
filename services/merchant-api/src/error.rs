//! The service's one error type. Client errors become their problem type; anything else is
//! logged with its cause and answered with a generic 500.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use paykit::problem::Problem;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("an account with this email exists already")]
    DuplicateEmail,
    #[error("this needs the role {0}")]
    Forbidden(&'static str),
    #[error("no merchant for this login")]
    NotRegistered,
    /// `.0` names what was not found ("payment request", "payment").
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("this payment request expired at {0}")]
    Expired(chrono::DateTime<chrono::Utc>),
    #[error("this payment request has been paid already")]
    AlreadyPaid,
    #[error("somebody else is paying this payment request right now")]
    BeingPaid,
    /// The ledger has not finished the payment within the wait; a retry with the same
    /// Idempotency-Key picks it up.
    #[error("payment {0} is still being processed")]
    Pending(uuid::Uuid),
    /// A refusal of another service (the orchestrator, consumer-api), passed on as it is.
    #[error("refused: {}", .0.title)]
    Refused(Problem),
    /// A dependency (another service, Keycloak, the database) that is down: 503, Retry-After.
    #[error(transparent)]
    Unavailable(paykit::resilience::Unavailable),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Upstream(#[from] anyhow::Error),
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let problem = match self {
            Error::Invalid(detail) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid request",
            )
            .with_detail(detail),
            Error::DuplicateEmail => Problem::new(
                StatusCode::CONFLICT,
                "email-taken",
                "Email already registered",
            )
            .with_detail("An account with this email exists already; log in instead."),
            Error::Forbidden(role) => Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden")
                .with_detail(format!("This needs the {role} role.")),
            Error::NotRegistered => {
                Problem::new(StatusCode::FORBIDDEN, "not-a-merchant", "Not a merchant").with_detail(
                    "This login has no merchant account: register with POST /v1/merchants.",
                )
            }
            Error::NotFound(what) => Problem::new(
                StatusCode::NOT_FOUND,
                &format!("{}-not-found", what.replace(' ', "-")),
                "Not found",
            )
            .with_detail(format!("No {what} with that id is yours to see.")),
            Error::Expired(at) => Problem::new(
                StatusCode::GONE,
                "payment-request-expired",
                "Payment request expired",
            )
            .with_detail(format!(
                "This payment request expired at {}; ask the merchant for a new QR code.",
                at.to_rfc3339()
            )),
            Error::AlreadyPaid => Problem::new(StatusCode::CONFLICT, "already-paid", "Already paid")
                .with_detail("This QR code has been paid already; nothing was charged."),
            Error::BeingPaid => Problem::new(
                StatusCode::CONFLICT,
                "payment-in-progress",
                "Payment in progress",
            )
            .with_detail("Somebody else is paying this QR code right now; nothing was charged."),
            Error::Pending(id) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "payment-pending",
                "Payment still processing",
            )
            .with_detail("The ledger has not finished this payment yet; retry with the same Idempotency-Key to get its outcome. Nothing is charged twice.")
            .with_extension("payment_id", id.to_string()),
            Error::Refused(problem) => problem,
            Error::Unavailable(unavailable) => {
                tracing::warn!(error = %unavailable, "dependency unavailable");
                return unavailable.into_response();
            }
            Error::Database(cause) => {
                if let Some(unavailable) = paykit::resilience::database_unavailable(&cause) {
                    tracing::warn!(error = %cause, "database unavailable");
                    return unavailable.into_response();
                }
                tracing::error!(error = %cause, "database error");
                Problem::internal()
            }
            Error::Upstream(cause) => {
                tracing::error!(error = ?cause, "upstream error");
                Problem::internal()
            }
        };
        problem.into_response()
    }
}

paykit::service_errors!(Error);
