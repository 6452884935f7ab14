//! API keys: generated here, shown once, stored only as SHA-256 hashes.

use sha2::{Digest, Sha256};

use crate::domain::{Error, Result};

/// The visible start of every key, so leaked keys are easy to grep for.
pub const KEY_PREFIX: &str = "so_";

fn random_hex(bytes: usize) -> Result<String> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer)
        .map_err(|err| Error::internal(format!("no randomness available: {err}")))?;
    Ok(hex::encode(buffer))
}

/// A new secret key: 256 random bits.
pub fn generate_secret() -> Result<String> {
    Ok(format!("{KEY_PREFIX}{}", random_hex(32)?))
}

/// A public identifier for listing and revoking a key.
pub fn generate_key_id() -> Result<String> {
    Ok(format!("key_{}", random_hex(8)?))
}

/// Keys carry 256 bits of entropy, so a fast hash is enough: there is nothing to
/// brute-force that a slow hash would protect.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Enough of the key to recognise it, never enough to use it.
pub fn display_prefix(secret: &str) -> String {
    secret.chars().take(KEY_PREFIX.len() + 6).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_distinct() {
        let a = generate_secret().unwrap();
        let b = generate_secret().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), KEY_PREFIX.len() + 64);
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(hash_secret(&a), hash_secret(&a));
        assert_ne!(hash_secret(&a), hash_secret(&b));
        assert!(!hash_secret(&a).contains(&a[3..]));
        assert_eq!(display_prefix(&a).len(), 9);
    }
}
