//! The one place where errors become HTTP responses. Every failure, from any layer,
//! leaves the server in the same shape:
//! `{"error":{"code","message","details"},"detail":"<message>"}`.
//! The official SDK reads `error.message`; the Go CLI reads `detail`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::domain::{Error, ErrorKind};

/// Seconds a shedding server asks clients to wait.
const RETRY_AFTER_SECONDS: &str = "1";

pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        ApiError(error)
    }
}

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Malformed => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Error {
            kind,
            code,
            message,
            details,
        } = self.0;
        if kind == ErrorKind::Internal {
            tracing::error!("internal error: {message}");
        }
        let mut response =
            (status_of(kind), Json(envelope(code, &message, details))).into_response();
        if kind == ErrorKind::Overloaded {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        response
    }
}

/// The body every error has: `error` for the SDK, `detail` for the Go CLI.
pub fn envelope(code: &str, message: &str, details: Value) -> Value {
    json!({
        "error": { "code": code, "message": message, "details": details },
        "detail": message,
    })
}

pub type ApiResult<T> = Result<T, ApiError>;
