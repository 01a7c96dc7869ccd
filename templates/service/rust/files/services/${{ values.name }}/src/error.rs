//! The service's one error type. Client errors become RFC 9457 problems; a database error is
//! logged with its cause and answered with a generic 500 (never echoed).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use paykit::problem::Problem;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let problem = match self {
            Error::NotFound(what) => Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found")
                .with_detail(format!("{what} does not exist.")),
            Error::Invalid(detail) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid request",
            )
            .with_detail(detail),
            Error::Database(cause) => {
                tracing::error!(error = %cause, "database error");
                Problem::internal()
            }
        };
        problem.into_response()
    }
}
