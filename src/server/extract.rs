//! Request extractors that fail with the uniform error shape instead of axum's
//! plain-text rejections.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;
use crate::domain::request::check_idempotency_key;
use crate::domain::{Error, ErrorKind, Principal};
use crate::engine::decisions::Via;
use crate::store::IdempotencyClaim;

/// Request bodies above this are refused with 413.
pub const BODY_LIMIT_BYTES: usize = 128 * 1024;

/// The authenticated principal behind `x-api-key` or `Authorization: Bearer`.
pub struct Caller(pub Principal);

fn header_text<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let api_key = header_text(parts, "x-api-key").map(str::to_string);
        let bearer = header_text(parts, "authorization").and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .map(|key| key.trim().to_string())
        });
        if api_key.is_none() && bearer.is_none() {
            return Err(Error::unauthorized(
                "an API key is required: send `x-api-key: KEY` or `Authorization: Bearer KEY`",
            )
            .into());
        }
        // Some clients send an unrelated actor token as the bearer next to a valid
        // x-api-key (and the reverse), so either valid key is enough.
        let mut last_error = None;
        for candidate in [api_key, bearer].into_iter().flatten() {
            match state.engine.authenticate(&candidate).await {
                Ok(principal) => {
                    let key_hash = crate::engine::keys::hash_secret(&candidate);
                    parts.extensions.insert(AuthenticatedKey(key_hash));
                    return Ok(Caller(principal));
                }
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error
            .unwrap_or_else(|| Error::unauthorized("the API key is not valid"))
            .into())
    }
}

/// A JSON object body, parsed with a clear error for every way it can be wrong.
pub struct JsonBody(pub Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Error::new(
                        ErrorKind::TooLarge,
                        "body_too_large",
                        format!(
                            "the request body is larger than {} KiB",
                            BODY_LIMIT_BYTES / 1024
                        ),
                    )
                } else {
                    Error::malformed(format!("could not read the request body: {rejection}"))
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::malformed("the request body is empty; send a JSON object").into());
        }
        let value: Value = serde_json::from_slice(&bytes).map_err(|err| {
            Error::malformed(format!("the request body is not valid JSON: {err}"))
        })?;
        if !value.is_object() {
            return Err(Error::malformed("the request body must be a JSON object").into());
        }
        // serde_json refuses a raw control character in a string, so a NUL can
        // only come escaped: most bodies are let through by this one scan.
        let may_hold_nul = bytes.windows(6).any(|six| six == br"\u0000");
        if may_hold_nul && let Some(place) = nul_in(&value, "") {
            return Err(Error::malformed(format!(
                "text in the request body may not contain the NUL character (\\u0000), which \
                 the database cannot store: found {place}"
            ))
            .into());
        }
        Ok(JsonBody(value))
    }
}

/// Where a NUL character is in `value`, as a JSON pointer under `at` to the
/// string (or the key) holding it. PostgreSQL stores no NUL in text, and a
/// write that tried would fail its whole batch, other callers' writes with it,
/// so none gets in on either backend.
fn nul_in(value: &Value, at: &str) -> Option<String> {
    match value {
        Value::String(text) if text.contains('\0') => Some(format!("at `{at}`")),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, item)| nul_in(item, &format!("{at}/{index}"))),
        Value::Object(fields) => fields.iter().find_map(|(key, field)| {
            // As a JSON pointer names it, with the NUL itself shown as JSON writes it.
            let place = format!(
                "{at}/{}",
                key.replace('~', "~0")
                    .replace('/', "~1")
                    .replace('\0', "\\u0000")
            );
            if key.contains('\0') {
                Some(format!("in the key at `{place}`"))
            } else {
                nul_in(field, &place)
            }
        }),
        _ => None,
    }
}

/// The NUL character, percent-encoded, which decodes into a path or a query
/// and which the database cannot store (see [`nul_in`]).
fn refuse_encoded_nul(part: &str, text: &str) -> Result<(), ApiError> {
    if text.contains("%00") {
        return Err(ApiError(Error::malformed(format!(
            "the {part} may not contain %00 (the NUL character)"
        ))));
    }
    Ok(())
}

/// The query string, decoded, with typed accessors that explain bad values.
pub struct Query(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        refuse_encoded_nul("query string", parts.uri.query().unwrap_or_default())?;
        let pairs = parts
            .uri
            .query()
            .map(|query| {
                url::form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        Ok(Query(pairs))
    }
}

impl Query {
    pub fn text(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    pub fn unsigned(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.text(name)
            .map(|value| position(&format!("query parameter `{name}`"), value))
            .transpose()
    }
}

/// A stream position or count: a non-negative integer that fits the database
/// (at most `i64::MAX`), so it can never wrap around in a query.
pub fn position(what: &str, text: &str) -> Result<u64, ApiError> {
    text.parse::<u64>()
        .ok()
        .filter(|value| i64::try_from(*value).is_ok())
        .ok_or_else(|| {
            ApiError(Error::malformed(format!(
                "{what} must be an integer from 0 to {}, got `{text}`",
                i64::MAX
            )))
        })
}

/// Path parameters, with malformed ones (say, invalid UTF-8) reported in the
/// uniform error shape rather than axum's plain text.
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        refuse_encoded_nul("path", parts.uri.path())?;
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| PathParams(value))
            .map_err(|rejection| ApiError(Error::malformed(rejection.body_text())))
    }
}

/// The key a request authenticated with (its hash), for streams that must end
/// when that key is revoked.
#[derive(Debug, Clone)]
pub struct AuthenticatedKey(pub String);

/// Facts about the request that writes need: the `Idempotency-Key`, which of our
/// clients sent it, and the endpoint it hit.
struct WriteContext {
    idempotency_key: Option<String>,
    via: Via,
    endpoint: String,
    query: String,
}

impl<S: Send + Sync> FromRequestParts<S> for WriteContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        // A key that was sent but cannot be used is refused rather than
        // ignored: ignoring it would give up the protection against duplicates
        // the client asked for. Bytes beyond ASCII read as no text, so as empty.
        let idempotency_key = match parts.headers.get("idempotency-key") {
            None => None,
            Some(value) => {
                let key = value.to_str().unwrap_or_default().trim();
                check_idempotency_key(key)?;
                Some(key.to_string())
            }
        };
        Ok(WriteContext {
            idempotency_key,
            via: Via::from_header(header_text(parts, "x-signoff-via")),
            endpoint: format!("{} {}", parts.method, parts.uri.path()),
            query: parts.uri.query().unwrap_or_default().to_string(),
        })
    }
}

impl WriteContext {
    // The request hash below relies on `Value::to_string` sorting object keys, which
    // serde_json does unless a dependency enables its `preserve_order` feature; the
    // test `request_hashes_ignore_key_order` fails if one ever does.
    /// The idempotency claim for this request, if the client sent a key. The request
    /// hash covers the canonical JSON body (object keys sorted) and the query string.
    fn claim(&self, caller: &Principal, body: &Value) -> Option<IdempotencyClaim> {
        let key = self.idempotency_key.clone()?;
        let mut hasher = Sha256::new();
        hasher.update(body.to_string().as_bytes());
        hasher.update(b"\n");
        hasher.update(self.query.as_bytes());
        Some(IdempotencyClaim {
            principal: caller.identity.clone(),
            endpoint: self.endpoint.clone(),
            key,
            request_hash: hex::encode(hasher.finalize()),
        })
    }
}

/// Everything an authenticated write needs: who is calling, the JSON body, the
/// idempotency claim (when an `Idempotency-Key` was sent) and which client it was.
/// The key is checked before the body is read, so a caller without a valid key
/// learns nothing about its body.
pub struct Write {
    pub caller: Principal,
    pub body: Value,
    pub claim: Option<IdempotencyClaim>,
    pub via: Via,
}

impl FromRequest<AppState> for Write {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = request.into_parts();
        let Caller(caller) = Caller::from_request_parts(&mut parts, state).await?;
        let context = WriteContext::from_request_parts(&mut parts, state).await?;
        let JsonBody(body) =
            JsonBody::from_request(Request::from_parts(parts, body), state).await?;
        let claim = context.claim(&caller, &body);
        Ok(Write {
            caller,
            body,
            claim,
            via: context.via,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn request_hashes_ignore_key_order() {
        let one: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":{"d":2,"c":3}}"#).unwrap();
        assert_eq!(one.to_string(), r#"{"a":{"c":3,"d":2},"b":1}"#);
        assert_eq!(one, json!({"a": {"c": 3, "d": 2}, "b": 1}));
    }
}
