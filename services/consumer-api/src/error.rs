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
    /// A refusal of the orchestrator, passed on as it is (its problem type and status).
    #[error("the ledger refused: {}", .0.title)]
    Ledger(Problem),
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
            Error::Ledger(problem) => problem,
            Error::Database(cause) => {
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

impl From<crate::orchestrator::OrchestratorError> for Error {
    fn from(error: crate::orchestrator::OrchestratorError) -> Self {
        Error::Upstream(anyhow::Error::new(error))
    }
}

impl From<paykit::keycloak::KeycloakError> for Error {
    fn from(error: paykit::keycloak::KeycloakError) -> Self {
        match error {
            paykit::keycloak::KeycloakError::Duplicate => Error::DuplicateEmail,
            other => Error::Upstream(anyhow::Error::new(other)),
        }
    }
}

/// The orchestrator's answer: its problem when it refused (4xx), an error otherwise.
pub fn ledger_refusal(answer: &crate::orchestrator::Answer) -> Error {
    if (400..500).contains(&answer.status) {
        if let Ok(body) = serde_json::from_value::<ProblemBody>(answer.body.clone()) {
            let status =
                StatusCode::from_u16(answer.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
            let slug = body
                .type_uri
                .rsplit('/')
                .next()
                .unwrap_or("ledger")
                .to_string();
            let mut problem = Problem::new(status, &slug, &body.title);
            problem.type_uri = body.type_uri;
            return Error::Ledger(match body.detail {
                Some(detail) => problem.with_detail(detail),
                None => problem,
            });
        }
    }
    Error::Upstream(anyhow::anyhow!(
        "the orchestrator answered {}: {}",
        answer.status,
        answer.body
    ))
}

#[derive(serde::Deserialize)]
struct ProblemBody {
    #[serde(rename = "type")]
    type_uri: String,
    title: String,
    detail: Option<String>,
}
