//! The service's one error type. Client errors become their problem type; anything else is
//! logged with its cause and answered with a generic 500.

use axum::response::{IntoResponse, Response};
use paykit::problem::Problem;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::Database(cause) => {
                tracing::error!(error = %cause, "database error");
                Problem::internal().into_response()
            }
            Error::Unexpected(cause) => {
                tracing::error!(error = ?cause, "unexpected error");
                Problem::internal().into_response()
            }
        }
    }
}
