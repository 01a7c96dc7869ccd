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
    #[error("this needs the realm role {0}")]
    Forbidden(&'static str),
    #[error("no consumer for this login")]
    NotRegistered,
    #[error("no consumer with that email or id")]
    UnknownRecipient,
    /// The scanned text is not an EMVCo payload (TLV, CRC, mandatory fields); `.0` says why.
    #[error("malformed QR payload: {0}")]
    MalformedQr(String),
    #[error("no such payment code")]
    PaymentCodeUnknown,
    #[error("this payment code has been used")]
    PaymentCodeUsed,
    #[error("this payment code has expired")]
    PaymentCodeExpired,
    #[error("no payment of yours with that id")]
    PaymentNotFound,
    /// A refusal of another service (the orchestrator, merchant-api), passed on as it is.
    #[error("refused: {}", .0.title)]
    Refused(Problem),
    /// A dependency (another service, Keycloak, the database) that is down: 503, Retry-After.
    #[error(transparent)]
    Unavailable(paykit::resilience::Unavailable),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Upstream(anyhow::Error),
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
                Problem::new(StatusCode::FORBIDDEN, "not-a-consumer", "Not a consumer").with_detail(
                    "This login has no consumer account: register with POST /v1/consumers.",
                )
            }
            Error::UnknownRecipient => Problem::new(
                StatusCode::NOT_FOUND,
                "recipient-not-found",
                "Recipient not found",
            )
            .with_detail("No consumer has that email or id."),
            Error::MalformedQr(reason) => {
                Problem::new(StatusCode::BAD_REQUEST, "malformed-qr", "Malformed QR code")
                    .with_detail(format!(
                        "This is not a payment QR code that can be paid: {reason}."
                    ))
            }
            Error::PaymentCodeUnknown => Problem::new(
                StatusCode::NOT_FOUND,
                "payment-code-not-found",
                "Unknown payment code",
            )
            .with_detail(
                "No payment code like this was issued; ask the customer to show theirs again.",
            ),
            Error::PaymentCodeUsed => Problem::new(
                StatusCode::GONE,
                "payment-code-used",
                "Payment code already used",
            )
            .with_detail("Each code pays once; ask the customer to show a new one."),
            Error::PaymentCodeExpired => Problem::new(
                StatusCode::GONE,
                "payment-code-expired",
                "Payment code expired",
            )
            .with_detail("Codes are valid for 60 seconds; ask the customer to show a new one."),
            Error::PaymentNotFound => Problem::new(
                StatusCode::NOT_FOUND,
                "payment-not-found",
                "Payment not found",
            )
            .with_detail("You have no payment with that id."),
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
