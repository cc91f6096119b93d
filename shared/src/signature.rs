//! Detached module signatures: who vouched for a module, checked before anything compiles it.
//!
//! A signature is ECDSA over NIST P-256 with SHA-256 of the module's bytes (WebCrypto's
//! `{name: "ECDSA", hash: "SHA-256"}`, JOSE's `ES256`), kept beside the module, never in it:
//! the module's bytes and sha256 do not change when it is signed. It travels as a small JSON
//! document, [`DetachedSignature`]: as the MLflow artifact `model.wasm.sig` beside
//! `model.wasm`, and in the `wasmops-signature` header of a push deploy (the same JSON).
//!
//! Keys are named by [`key_id`]: the first 16 hex digits of the sha256 of the public key's
//! SubjectPublicKeyInfo (DER), so a device with several trusted keys (rotation) knows which one
//! to use, and a refusal can name the key that signed.
//!
//! Why P-256 and not Ed25519: every browser's WebCrypto has had ECDSA P-256 with
//! non-extractable keys for a decade; Ed25519 arrived in Chromium only in 2025. One algorithm
//! everywhere, so a key made in any tab is trusted by every device.

use std::fmt;

use base64::Engine as _;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};
use serde::{Deserialize, Serialize};

use crate::digest::content_hash;
use crate::quote::bounded as quoted;

/// The `format` of every signature document this version writes and reads.
pub const FORMAT: &str = "wasmops-signature/1";
/// The only algorithm: ECDSA P-256 over SHA-256 of the module's bytes, signature `r || s`.
pub const ALGORITHM: &str = "ECDSA-P256-SHA256";
/// The artifact name beside `model.wasm` in MLflow.
pub const ARTIFACT: &str = "model.wasm.sig";
/// The HTTP header a push deploy carries the signature document in.
pub const HEADER: &str = "wasmops-signature";

/// A detached signature: the JSON document that travels with a module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachedSignature {
    pub format: String,
    pub algorithm: String,
    /// [`key_id`] of the public key that verifies it.
    pub key_id: String,
    /// sha256 of the module signed (hex): lets a mismatch be named before any crypto.
    pub module_sha256: String,
    /// `r || s`, 64 bytes, standard base64 (what WebCrypto's `sign` returns, encoded).
    pub signature: String,
}

/// Why a module's signature was not accepted. Every message says what and which key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the module is unsigned, and this device runs only modules signed by a trusted key")]
    Unsigned,
    #[error("the signature is malformed: {0}")]
    Malformed(String),
    #[error("the signature is for module {expected}, not this one ({actual})")]
    OtherModule { expected: String, actual: String },
    #[error("the module is signed by key {0}, which this device does not trust")]
    UntrustedKey(String),
    #[error("the signature does not verify with trusted key {0}: the module or its signature was altered")]
    Invalid(String),
}

/// A key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {reason}")]
pub struct KeyError {
    pub source_name: String,
    pub reason: String,
}

impl DetachedSignature {
    /// The document for a raw `r || s` signature made elsewhere (WebCrypto in the dashboard).
    pub fn from_raw(key_id: &str, module: &[u8], raw: &[u8]) -> DetachedSignature {
        DetachedSignature {
            format: FORMAT.into(),
            algorithm: ALGORITHM.into(),
            key_id: key_id.into(),
            module_sha256: content_hash(module),
            signature: base64::engine::general_purpose::STANDARD.encode(raw),
        }
    }

    /// The compact JSON (one line, ASCII): the artifact's bytes and the header's value.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain strings serialize")
    }

    /// Reads a signature document, checking its shape (not yet the signature).
    pub fn parse(text: &str) -> Result<DetachedSignature, SignatureError> {
        if text.len() > 4096 {
            return Err(SignatureError::Malformed(format!(
                "{} bytes, more than a signature document's 4096",
                text.len()
            )));
        }
        let sig: DetachedSignature = serde_json::from_str(text)
            .map_err(|e| SignatureError::Malformed(format!("not a signature document ({e})")))?;
        if sig.format != FORMAT {
            return Err(SignatureError::Malformed(format!(
                "format {} is not {FORMAT}",
                quoted(&sig.format)
            )));
        }
        if sig.algorithm != ALGORITHM {
            return Err(SignatureError::Malformed(format!(
                "algorithm {} is not {ALGORITHM}",
                quoted(&sig.algorithm)
            )));
        }
        sig.raw()?;
        Ok(sig)
    }

    fn raw(&self) -> Result<Signature, SignatureError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.signature.as_bytes())
            .map_err(|_| SignatureError::Malformed("the signature is not base64".into()))?;
        Signature::from_slice(&bytes).map_err(|_| {
            SignatureError::Malformed(format!(
                "the signature has {} bytes; ECDSA P-256 gives 64 (r || s)",
                bytes.len()
            ))
        })
    }
}

/// The id of a public key: the first 16 hex digits of sha256(SubjectPublicKeyInfo DER).
pub fn key_id(spki_der: &[u8]) -> String {
    content_hash(spki_der)[..16].to_string()
}

fn id_of(key: &VerifyingKey) -> String {
    let der = key.to_public_key_der().expect("a P-256 key encodes");
    key_id(der.as_bytes())
}

/// One public key a device trusts, with where it came from.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub id: String,
    pub source: String,
    key: VerifyingKey,
}

/// The keys a device trusts (several, so keys can be rotated).
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<TrustedKey>,
}

impl TrustedKeys {
    /// Reads public keys from PEM texts (`-----BEGIN PUBLIC KEY-----`, P-256), each named by
    /// where it came from (a file name) for errors and logs.
    pub fn from_pems<'a>(
        pems: impl IntoIterator<Item = (String, &'a str)>,
    ) -> Result<TrustedKeys, KeyError> {
        let mut keys: Vec<TrustedKey> = Vec::new();
        for (source, pem) in pems {
            let key = VerifyingKey::from_public_key_pem(pem.trim()).map_err(|e| KeyError {
                source_name: source.clone(),
                reason: format!(
                    "not a P-256 public key in PEM (`-----BEGIN PUBLIC KEY-----`): {e}"
                ),
            })?;
            let id = id_of(&key);
            if keys.iter().all(|k| k.id != id) {
                keys.push(TrustedKey { id, source, key });
            }
        }
        Ok(TrustedKeys { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    /// Checks a module against its detached signature (the document's text, if any): the
    /// document's shape, that it names this module, that its key is trusted, and the ECDSA
    /// verification itself. Returns the key that verified it.
    pub fn verify(
        &self,
        module: &[u8],
        signature: Option<&str>,
    ) -> Result<&TrustedKey, SignatureError> {
        let text = signature.ok_or(SignatureError::Unsigned)?;
        let sig = DetachedSignature::parse(text)?;
        let actual = content_hash(module);
        if !sig.module_sha256.eq_ignore_ascii_case(&actual) {
            return Err(SignatureError::OtherModule {
                expected: quoted(&sig.module_sha256),
                actual,
            });
        }
        let key = self
            .keys
            .iter()
            .find(|k| k.id == sig.key_id)
            .ok_or_else(|| SignatureError::UntrustedKey(quoted(&sig.key_id)))?;
        let raw = sig.raw()?;
        // ECDSA signatures are malleable ((r, s) and (r, n - s) both verify); WebCrypto may
        // return either, so accept both forms.
        let raw = raw.normalize_s().unwrap_or(raw);
        key.key
            .verify(module, &raw)
            .map_err(|_| SignatureError::Invalid(key.id.clone()))?;
        Ok(key)
    }
}

impl fmt::Display for TrustedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<String> = self
            .keys
            .iter()
            .map(|k| format!("{} ({})", k.id, k.source))
            .collect();
        write!(f, "{}", ids.join(", "))
    }
}

/// A private key that signs modules (the headless CLI's, read from a PEM file).
pub struct ModuleSigner {
    key: SigningKey,
    id: String,
}

impl ModuleSigner {
    /// Reads a P-256 private key in PEM: PKCS#8 (`BEGIN PRIVATE KEY`, `openssl genpkey`) or
    /// SEC1 (`BEGIN EC PRIVATE KEY`, `openssl ecparam -genkey`).
    pub fn from_pem(source: &str, pem: &str) -> Result<ModuleSigner, KeyError> {
        let pem = pem.trim();
        let key = SigningKey::from_pkcs8_pem(pem)
            .or_else(|_| p256::SecretKey::from_sec1_pem(pem).map(SigningKey::from))
            .map_err(|_| KeyError {
                source_name: source.into(),
                reason: "not a P-256 private key in PEM (PKCS#8 `BEGIN PRIVATE KEY` or SEC1 `BEGIN EC PRIVATE KEY`)".into(),
            })?;
        let id = id_of(key.verifying_key());
        Ok(ModuleSigner { key, id })
    }

    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// The public key as PEM, for a device's `--trusted-keys` directory.
    pub fn public_key_pem(&self) -> String {
        self.key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("a P-256 key encodes")
    }

    pub fn sign(&self, module: &[u8]) -> DetachedSignature {
        let sig: Signature = self.key.sign(module);
        DetachedSignature::from_raw(&self.id, module, &sig.to_bytes())
    }
}

/// PEM text of a public key given as SubjectPublicKeyInfo DER (what WebCrypto exports as
/// `spki`), checking that it is a P-256 key.
pub fn spki_to_pem(spki_der: &[u8]) -> Result<String, KeyError> {
    let key = VerifyingKey::from_public_key_der(spki_der).map_err(|e| KeyError {
        source_name: "public key".into(),
        reason: format!("not a P-256 SubjectPublicKeyInfo: {e}"),
    })?;
    Ok(key
        .to_public_key_pem(LineEnding::LF)
        .expect("a P-256 key encodes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fixed test keys: scalars 7 and 9.
    fn signer() -> ModuleSigner {
        let sk = SigningKey::from_slice(&[7u8; 32]).unwrap();
        ModuleSigner {
            id: id_of(sk.verifying_key()),
            key: sk,
        }
    }

    fn trusted(s: &ModuleSigner) -> TrustedKeys {
        TrustedKeys::from_pems([("test.pem".to_string(), s.public_key_pem().as_str())]).unwrap()
    }

    #[test]
    fn a_signed_module_verifies_and_names_its_key() {
        let s = signer();
        let module = b"\0asm\x01\0\0\0 pretend";
        let doc = s.sign(module).to_json();
        let keys = trusted(&s);
        assert_eq!(keys.verify(module, Some(&doc)).unwrap().id, s.key_id());
    }

    #[test]
    fn every_way_to_fail_says_which() {
        let s = signer();
        let keys = trusted(&s);
        let module = b"module one".to_vec();
        let doc = s.sign(&module);
        assert_eq!(
            keys.verify(&module, None).unwrap_err(),
            SignatureError::Unsigned
        );
        assert!(matches!(
            keys.verify(b"module two", Some(&doc.to_json())),
            Err(SignatureError::OtherModule { .. })
        ));
        // Same hash claimed, but the bytes signed differ: the ECDSA check itself fails.
        let mut forged = s.sign(b"module two");
        forged.module_sha256 = content_hash(&module);
        assert_eq!(
            keys.verify(&module, Some(&forged.to_json())).unwrap_err(),
            SignatureError::Invalid(s.key_id().into())
        );
        let other = ModuleSigner {
            key: SigningKey::from_slice(&[9u8; 32]).unwrap(),
            id: String::new(),
        };
        let other = ModuleSigner {
            id: id_of(other.key.verifying_key()),
            ..other
        };
        let by_other = other.sign(&module).to_json();
        assert!(
            matches!(keys.verify(&module, Some(&by_other)), Err(SignatureError::UntrustedKey(id)) if id.contains(other.key_id()))
        );
        assert!(matches!(
            keys.verify(&module, Some("{}")),
            Err(SignatureError::Malformed(_))
        ));
        let mut short = doc.clone();
        short.signature = "AAAA".into();
        assert!(
            matches!(keys.verify(&module, Some(&short.to_json())), Err(SignatureError::Malformed(m)) if m.contains("64"))
        );
    }

    #[test]
    fn high_s_signatures_from_webcrypto_are_accepted() {
        let s = signer();
        let module = b"high s";
        let sig: Signature = s.key.sign(module);
        let (r, sv) = sig.split_scalars();
        let flipped = Signature::from_scalars(r, -*sv).unwrap();
        let doc = DetachedSignature::from_raw(s.key_id(), module, &flipped.to_bytes());
        trusted(&s).verify(module, Some(&doc.to_json())).unwrap();
    }

    #[test]
    fn pem_forms_round_trip_and_bad_pems_are_named() {
        let s = signer();
        let sec1 = p256::SecretKey::from_slice(&[7u8; 32])
            .unwrap()
            .to_sec1_pem(LineEnding::LF)
            .unwrap();
        assert_eq!(
            ModuleSigner::from_pem("k.pem", &sec1).unwrap().key_id(),
            s.key_id()
        );
        let der = s.key.verifying_key().to_public_key_der().unwrap();
        assert_eq!(spki_to_pem(der.as_bytes()).unwrap(), s.public_key_pem());
        let err = TrustedKeys::from_pems([("bad.pem".to_string(), "hello")]).unwrap_err();
        assert_eq!(err.source_name, "bad.pem");
        assert!(ModuleSigner::from_pem("k.pem", "nope").is_err());
    }
}
