//! Sealing credentials at rest with XChaCha20-Poly1305.
//!
//! Every credential the connector keeps in KV goes through [`seal`]: tokens never reach the
//! store in plain text. The KV key is the associated data, so a sealed value copied to another
//! key does not open. Nonces are a parameter (the caller draws them from the host's random
//! source) because the core has no randomness of its own.

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// Prefix of every sealed value: format name and version, so a future format can coexist.
const HEADER: &[u8; 4] = b"mls1";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Why keys could not be loaded or a value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// `encryption_key` is absent or empty.
    #[error(
        "encryption_key is not set: generate one with `openssl rand -base64 32` and set SPIN_VARIABLE_ENCRYPTION_KEY"
    )]
    MissingKey,
    /// A key variable does not hold 32 base64-encoded bytes. The value is never echoed.
    #[error(
        "{variable} is malformed ({reason}): it must be 32 random bytes in base64, e.g. from `openssl rand -base64 32`"
    )]
    MalformedKey {
        /// Which variable (`encryption_key` or `encryption_key_previous`).
        variable: &'static str,
        /// What is wrong with it, without its value.
        reason: String,
    },
    /// Neither key opens the value (or it was moved to another KV key).
    #[error(
        "cannot decrypt stored credentials: encryption_key differs from the key they were sealed with \
         (set encryption_key_previous during a rotation)"
    )]
    CannotDecrypt,
    /// The stored bytes are not a sealed value at all.
    #[error(
        "stored credentials are not in the sealed format (unknown header or truncated): delete that key and \
         re-authorize at /oauth/quickbooks/connect"
    )]
    NotSealed,
}

/// A 32-byte key.
#[derive(Clone)]
struct Key([u8; 32]);

/// The current key and, during a rotation, the previous one.
#[derive(Clone)]
pub struct Keyring {
    current: Key,
    previous: Option<Key>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &"[redacted]")
            .field("previous", &self.previous.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

fn decode_key(variable: &'static str, text: &str) -> Result<Key, CryptoError> {
    let engine = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let bytes = engine
        .decode(text.trim())
        .map_err(|e| CryptoError::MalformedKey {
            variable,
            reason: match e {
                base64::DecodeError::InvalidByte(offset, _) => {
                    format!("invalid base64 character at offset {offset}")
                }
                base64::DecodeError::InvalidLength(_) => "invalid base64 length".into(),
                _ => "not standard base64".into(),
            },
        })?;
    let key: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::MalformedKey {
            variable,
            reason: format!("decodes to {} bytes, expected 32", bytes.len()),
        })?;
    Ok(Key(key))
}

impl Keyring {
    /// Loads keys from the `encryption_key` / `encryption_key_previous` variable values.
    /// Empty strings count as unset (Spin's default for an optional variable).
    pub fn from_config(
        current_b64: Option<&str>,
        previous_b64: Option<&str>,
    ) -> Result<Keyring, CryptoError> {
        let current = match current_b64.map(str::trim) {
            None | Some("") => return Err(CryptoError::MissingKey),
            Some(text) => decode_key("encryption_key", text)?,
        };
        let previous = match previous_b64.map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(decode_key("encryption_key_previous", text)?),
        };
        Ok(Keyring { current, previous })
    }

    /// A keyring from raw key bytes (tests, tools).
    pub fn from_bytes(current: [u8; 32], previous: Option<[u8; 32]>) -> Keyring {
        Keyring {
            current: Key(current),
            previous: previous.map(Key),
        }
    }
}

/// A successfully opened value.
pub struct Opened {
    /// The plain bytes.
    pub plaintext: Vec<u8>,
    /// Opened with the previous key: re-seal under the current one and write it back.
    pub needs_reseal: bool,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("plaintext", &"[redacted]")
            .field("needs_reseal", &self.needs_reseal)
            .finish()
    }
}

fn aad_bytes(aad: &str) -> Vec<u8> {
    // The header is authenticated too, so a value cannot be relabelled as another version.
    let mut v = HEADER.to_vec();
    v.extend_from_slice(aad.as_bytes());
    v
}

/// Seals `plaintext` under the current key, bound to `aad` (the KV key it will be stored at).
///
/// Layout: `b"mls1" || nonce (24) || ciphertext || tag (16)`. `nonce` must be fresh random
/// bytes for every call; 24-byte nonces make random collisions negligible.
pub fn seal(keyring: &Keyring, aad: &str, nonce: [u8; NONCE_LEN], plaintext: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new((&keyring.current.0).into());
    let aad = aad_bytes(aad);
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        // XChaCha20-Poly1305 only fails for messages beyond 256 GiB, which never reach here.
        .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory credentials");
    let mut out = Vec::with_capacity(HEADER.len() + NONCE_LEN + ciphertext.len());
    out.extend_from_slice(HEADER);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    out
}

/// Opens a value sealed by [`seal`] at the same `aad`, trying the current key, then the previous.
pub fn open(keyring: &Keyring, aad: &str, sealed: &[u8]) -> Result<Opened, CryptoError> {
    if sealed.len() < HEADER.len() + NONCE_LEN + TAG_LEN || !sealed.starts_with(HEADER) {
        return Err(CryptoError::NotSealed);
    }
    let (nonce, ciphertext) = sealed[HEADER.len()..].split_at(NONCE_LEN);
    let aad = aad_bytes(aad);
    let try_key = |key: &Key| {
        XChaCha20Poly1305::new((&key.0).into())
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .ok()
    };
    if let Some(plaintext) = try_key(&keyring.current) {
        return Ok(Opened {
            plaintext,
            needs_reseal: false,
        });
    }
    if let Some(plaintext) = keyring.previous.as_ref().and_then(try_key) {
        return Ok(Opened {
            plaintext,
            needs_reseal: true,
        });
    }
    Err(CryptoError::CannotDecrypt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

    const K1: [u8; 32] = [7; 32];
    const K2: [u8; 32] = [9; 32];
    const NONCE: [u8; 24] = [1; 24];

    #[test]
    fn sealed_values_open_with_the_same_key_and_aad() {
        let ring = Keyring::from_bytes(K1, None);
        let sealed = seal(&ring, "qbo/tokens", NONCE, b"refresh-token-value");
        assert!(sealed.starts_with(b"mls1"));
        assert!(
            !sealed.windows(7).any(|w| w == b"refresh"),
            "plaintext must not be visible"
        );
        let opened = open(&ring, "qbo/tokens", &sealed).unwrap();
        assert_eq!(opened.plaintext, b"refresh-token-value");
        assert!(!opened.needs_reseal);
        assert!(!format!("{opened:?}").contains("refresh"));
    }

    #[test]
    fn a_value_moved_to_another_key_does_not_open() {
        let ring = Keyring::from_bytes(K1, None);
        let sealed = seal(&ring, "qbo/tokens", NONCE, b"x");
        assert_eq!(
            open(&ring, "qbo/other", &sealed).unwrap_err(),
            CryptoError::CannotDecrypt
        );
    }

    #[test]
    fn wrong_key_gives_the_rotation_hint() {
        let sealed = seal(&Keyring::from_bytes(K1, None), "k", NONCE, b"x");
        let err = open(&Keyring::from_bytes(K2, None), "k", &sealed).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot decrypt stored credentials: encryption_key differs from the key they were sealed with \
             (set encryption_key_previous during a rotation)"
        );
    }

    #[test]
    fn values_sealed_under_the_previous_key_open_and_ask_for_a_reseal() {
        let old = seal(&Keyring::from_bytes(K1, None), "k", NONCE, b"secret");
        let rotated = Keyring::from_bytes(K2, Some(K1));
        let opened = open(&rotated, "k", &old).unwrap();
        assert_eq!(opened.plaintext, b"secret");
        assert!(opened.needs_reseal);
        let resealed = seal(&rotated, "k", [2; 24], &opened.plaintext);
        assert!(!open(&rotated, "k", &resealed).unwrap().needs_reseal);
        assert!(
            !open(&Keyring::from_bytes(K2, None), "k", &resealed)
                .unwrap()
                .needs_reseal
        );
    }

    #[test]
    fn tampering_or_truncation_is_detected() {
        let ring = Keyring::from_bytes(K1, None);
        let mut sealed = seal(&ring, "k", NONCE, b"secret");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(
            open(&ring, "k", &sealed).unwrap_err(),
            CryptoError::CannotDecrypt
        );
        assert_eq!(
            open(&ring, "k", b"mls1short").unwrap_err(),
            CryptoError::NotSealed
        );
        assert_eq!(
            open(&ring, "k", br#"{"access_token":"plain json"}"#).unwrap_err(),
            CryptoError::NotSealed
        );
    }

    #[test]
    fn keys_load_from_base64_with_or_without_padding() {
        let padded = STANDARD.encode(K1);
        let unpadded = STANDARD_NO_PAD.encode(K2);
        let ring = Keyring::from_config(Some(&format!(" {padded}\n")), Some(&unpadded)).unwrap();
        let sealed = seal(&Keyring::from_bytes(K2, None), "k", NONCE, b"v");
        assert!(open(&ring, "k", &sealed).unwrap().needs_reseal);
        assert!(
            Keyring::from_config(Some(&padded), Some(""))
                .unwrap()
                .previous
                .is_none()
        );
    }

    #[test]
    fn missing_key_explains_how_to_make_one() {
        for missing in [None, Some(""), Some("  ")] {
            let err = Keyring::from_config(missing, None).unwrap_err();
            assert_eq!(
                err.to_string(),
                "encryption_key is not set: generate one with `openssl rand -base64 32` and set \
                 SPIN_VARIABLE_ENCRYPTION_KEY"
            );
        }
    }

    #[test]
    fn malformed_keys_are_named_without_echoing_the_value() {
        let short = STANDARD.encode([1u8; 16]);
        let err = Keyring::from_config(Some(&short), None).unwrap_err();
        assert!(err.to_string().contains("decodes to 16 bytes, expected 32"));
        assert!(!err.to_string().contains(&short));
        let err =
            Keyring::from_config(Some(&STANDARD.encode(K1)), Some("not*base64!")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("encryption_key_previous is malformed")
        );
        assert!(!err.to_string().contains("not*base64!"));
        assert!(!format!("{:?}", Keyring::from_bytes(K1, Some(K2))).contains('7'));
    }
}
