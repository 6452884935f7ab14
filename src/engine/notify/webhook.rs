//! A generic webhook: the notification as JSON, signed so the receiver can tell
//! it came from this server: `X-Signoff-Signature: sha256=HEX(HMAC-SHA256(secret, body))`.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// The signature header's value for `body`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub async fn send(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    message: &Value,
) -> Result<(), String> {
    let body = serde_json::to_vec(message).map_err(|err| err.to_string())?;
    let event = super::text_field(message, "event").to_string();
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-signoff-event", event)
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
