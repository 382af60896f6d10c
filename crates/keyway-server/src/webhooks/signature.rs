//! Webhook secrets and signatures in the Svix scheme, which Seam's `@seamapi/webhook` verifies.
//!
//! A secret is `whsec_` followed by the base64 of a random key. A message is signed as
//! `v1,` + base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")). A secret
//! never prints: `Debug` redacts it and there is no `Display`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const PREFIX: &str = "whsec_";
/// Bytes of a generated key (Svix requires at least 24).
const KEY_BYTES: usize = 32;

/// The signing key of a webhook.
#[derive(Clone)]
pub struct WebhookSecret {
    key: Vec<u8>,
    /// HMAC-SHA256 keyed with `key`, cloned for each message.
    mac: Hmac<Sha256>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a webhook secret is `whsec_` followed by base64")]
pub struct InvalidSecret;

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl WebhookSecret {
    /// A new random secret (from the operating system's CSPRNG via `rand`'s thread RNG).
    pub fn generate() -> Result<Self, InvalidSecret> {
        let mut key = vec![0u8; KEY_BYTES];
        rand::thread_rng().fill_bytes(&mut key);
        WebhookSecret::from_key(key)
    }

    fn from_key(key: Vec<u8>) -> Result<Self, InvalidSecret> {
        if key.is_empty() {
            return Err(InvalidSecret);
        }
        let mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| InvalidSecret)?;
        Ok(WebhookSecret { key, mac })
    }

    /// Reads a stored `whsec_…` secret.
    pub fn parse(text: &str) -> Result<Self, InvalidSecret> {
        let encoded = text.strip_prefix(PREFIX).ok_or(InvalidSecret)?;
        let key = STANDARD.decode(encoded).map_err(|_| InvalidSecret)?;
        WebhookSecret::from_key(key)
    }

    /// The `whsec_…` text handed to the webhook's owner (and stored).
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.key))
    }

    /// The `webhook-signature` header value for one message.
    pub fn sign(&self, message_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(message_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of Svix's documentation ("Verifying webhooks manually").
    #[test]
    fn matches_the_svix_reference_example() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid");
        let signature = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn generated_secrets_round_trip_and_never_print() {
        let secret = WebhookSecret::generate().expect("random key");
        let text = secret.expose();
        assert!(text.starts_with("whsec_"));
        let again = WebhookSecret::parse(&text).expect("valid");
        assert_eq!(again.key.len(), KEY_BYTES);
        assert_eq!(again.sign("m", 1, b"x"), secret.sign("m", 1, b"x"));
        assert!(!format!("{secret:?}").contains(&text[6..]));
    }

    #[test]
    fn rejects_foreign_secrets() {
        assert_eq!(WebhookSecret::parse("abc").unwrap_err(), InvalidSecret);
        assert_eq!(
            WebhookSecret::parse("whsec_***").unwrap_err(),
            InvalidSecret
        );
        assert_eq!(WebhookSecret::parse("whsec_").unwrap_err(), InvalidSecret);
    }
}
