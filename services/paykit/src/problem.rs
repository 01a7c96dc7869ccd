//! RFC 9457 problem details (`application/problem+json`).
//!
//! `type` is a stable URI that clients may match on; `title` is the same for every instance of a
//! type; `detail` explains this occurrence. 5xx problems never carry internal detail: the cause is
//! logged and the client gets a generic sentence.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const CONTENT_TYPE: &str = "application/problem+json";
/// Problem types live under this base, one path segment per type (`.../insufficient-funds`).
pub const TYPE_BASE: &str = "https://paytool.local.test/problems/";

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// RFC 9457 extension members (e.g. the id of the payment a refusal is about).
    #[serde(flatten)]
    pub extensions: std::collections::BTreeMap<String, serde_json::Value>,
}

impl Problem {
    /// `slug` names the type (`"validation"`, `"not-found"`); see [`TYPE_BASE`].
    pub fn new(status: StatusCode, slug: &str, title: &str) -> Self {
        Self {
            type_uri: format!("{TYPE_BASE}{slug}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: None,
            extensions: std::collections::BTreeMap::new(),
        }
    }

    pub fn with_extension(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extensions.insert(name.to_string(), value.into());
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
        )
        .with_detail("Something went wrong on our side; it has been logged.")
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(&self)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        response
    }
}

/// A JSON body whose rejections are problems: 400 for malformed JSON or a field of the wrong
/// shape, 415 for a missing `Content-Type: application/json`, 413 for an oversized body.
pub struct JsonBody<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::JsonRejection;
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(JsonBody(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            )
            .with_detail("Send the body as JSON with Content-Type: application/json.")),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload-too-large",
                    "Payload too large",
                )
                .with_detail("The request body is larger than this API accepts."))
            }
            Err(rejection) => Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed-request",
                "Malformed request",
            )
            .with_detail(rejection.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_problem_is_served_as_problem_json_with_its_status() {
        let response = Problem::new(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient-funds",
            "Insufficient funds",
        )
        .with_detail("The wallet holds 100 JPY; the payment needs 500 JPY.")
        .into_response();
        assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
        assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .expect("body");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            json["type"],
            "https://paytool.local.test/problems/insufficient-funds"
        );
        assert_eq!(json["status"], 402);
        assert_eq!(json["title"], "Insufficient funds");
    }

    #[test]
    fn an_internal_problem_says_nothing_about_the_cause() {
        let problem = Problem::internal();
        assert_eq!(problem.status, 500);
        assert!(!problem
            .detail
            .unwrap_or_default()
            .to_lowercase()
            .contains("sql"));
    }
}
