//! A generic webhook: the notification as JSON, signed so the receiver can tell
//! it came from this server: `X-Signoff-Signature: sha256=HEX(HMAC-SHA256(secret, body))`.
//! The body carries a `delivery` object (outbox id, attempt, send time) under the
//! signature, so a receiver can drop repeats (delivery is at least once) and
//! refuse stale replays.

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;

use crate::domain::Timestamp;

/// The signature header's value for `body`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Which send this is: the same notification keeps its id across retries.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub attempt: u32,
    pub sent_at: Timestamp,
}

pub async fn send(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    message: &Value,
    delivery: &Delivery,
) -> Result<(), String> {
    let mut signed = message.clone();
    signed["delivery"] = serde_json::to_value(delivery).map_err(|err| err.to_string())?;
    let body = serde_json::to_vec(&signed).map_err(|err| err.to_string())?;
    let event = super::text_field(message, "event").to_string();
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-signoff-event", event)
        .header("x-signoff-delivery", delivery.id.to_string())
        .header("x-signoff-signature", signature(secret, &body))
        .body(body)
        .send()
        .await
        .map_err(super::describe_http_error)?;
    super::check_status(response).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_a_known_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
