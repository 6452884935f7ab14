//! The one error type every layer speaks. The server maps `ErrorKind` to an HTTP
//! status in exactly one place (`server/error.rs`); everything else only decides
//! which kind of failure happened and says why in `message`.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request could not be read at all: bad JSON, not an object, bad query string.
    Malformed,
    /// No key, or a key we do not know.
    Unauthorized,
    /// A known principal that may not do this.
    Forbidden,
    NotFound,
    /// The request is valid but collides with the current state (already decided, terminal,
    /// idempotency key reused with another body).
    Conflict,
    /// Valid JSON that breaks a rule (bad outcome, missing comment, schema failure).
    Invalid,
    TooLarge,
    /// The server is shedding load; the caller should retry after a moment.
    Overloaded,
    Internal,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    /// A stable snake_case code that clients may branch on.
    pub code: &'static str,
    pub message: String,
    pub details: Value,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            message: message.into(),
            details: Value::Object(Default::default()),
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Malformed, "malformed_request", message)
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, code, message)
    }

    /// A field-level validation failure; `field` is a JSON path such as `human_task.title`.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::invalid("invalid_field", format!("{field}: {}", message.into()))
            .with_details(serde_json::json!({ "field": field }))
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            "not_found",
            format!("{what} {id} not found"),
        )
        .with_details(serde_json::json!({ "id": id }))
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, "forbidden", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, "unauthorized", message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, "internal_error", message)
    }
}
