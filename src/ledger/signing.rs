//! Ledger signatures (SPEC §2 "Signing"): with `GATEKEEPER_SIGNING_KEY` (an Ed25519 secret key,
//! 64 hex digits) gatekeeper appends a `signature` line after every contract event and every step
//! end. A signature line signs its own `prev` — the sha256 of the line before it — so through the
//! chain it covers the whole journal up to that point. `trust.keys` lists the public keys `verify`
//! and `ci` accept; `ci.require_signed` makes signatures mandatory. Pure apart from key generation.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::exit::Refusal;

/// A signing key, loaded from the environment. Its `Debug` never shows the secret.
pub struct Signer {
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("public", &self.public_hex())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Parses a secret key (64 hex digits).
    ///
    /// # Errors
    /// A usage refusal that never repeats the value.
    pub fn from_hex(secret: &str) -> Result<Signer, Refusal> {
        let bytes = hex::decode(secret.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                Refusal::usage(
                    "`GATEKEEPER_SIGNING_KEY` is not an Ed25519 secret key (64 hex digits)",
                )
                .hint("generate one with `gatekeeper keygen`")
            })?;
        Ok(Signer {
            key: SigningKey::from_bytes(&bytes),
        })
    }

    /// A new random key.
    ///
    /// # Errors
    /// When the operating system has no randomness to give.
    pub fn generate() -> anyhow::Result<Signer> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| anyhow::anyhow!("no randomness from the operating system: {e}"))?;
        Ok(Signer {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// The secret key as hex (only `keygen` prints it).
    #[must_use]
    pub fn secret_hex(&self) -> String {
        hex::encode(self.key.to_bytes())
    }

    /// The public key as hex.
    #[must_use]
    pub fn public_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    /// Signs the hex sha256 of a journal line.
    #[must_use]
    pub fn sign(&self, line_hash_hex: &str) -> String {
        hex::encode(self.key.sign(line_hash_hex.as_bytes()).to_bytes())
    }
}

/// Checks a signature made by [`Signer::sign`].
#[must_use]
pub fn verify(public_hex: &str, line_hash_hex: &str, signature_hex: &str) -> bool {
    let Some(key) = hex::decode(public_hex)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
    else {
        return false;
    };
    let Some(sig) = hex::decode(signature_hex)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
    else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&key) else {
        return false;
    };
    key.verify_strict(line_hash_hex.as_bytes(), &Signature::from_bytes(&sig))
        .is_ok()
}

/// What signatures `verify` and `ci` demand.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Accepted public keys (hex). Empty: any valid signature is reported but none is trusted.
    pub trusted: Vec<String>,
    /// Every contract event and the journal's last line must carry a trusted signature.
    pub required: bool,
}

impl Policy {
    /// True when the key is trusted.
    #[must_use]
    pub fn trusts(&self, public_hex: &str) -> bool {
        self.trusted
            .iter()
            .any(|k| k.eq_ignore_ascii_case(public_hex))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let s = Signer::generate().unwrap();
        let sig = s.sign("abc");
        assert!(verify(&s.public_hex(), "abc", &sig));
        assert!(!verify(&s.public_hex(), "abd", &sig));
        let other = Signer::generate().unwrap();
        assert!(!verify(&other.public_hex(), "abc", &sig));
        assert!(!verify("zz", "abc", &sig));
        let round = Signer::from_hex(&s.secret_hex()).unwrap();
        assert_eq!(round.public_hex(), s.public_hex());
        assert!(!format!("{s:?}").contains(&s.secret_hex()));
        assert!(Signer::from_hex("nothex").is_err());
    }
}
