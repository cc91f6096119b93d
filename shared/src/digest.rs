//! Content addresses: every dataset version and every module is named by the SHA-256 of its
//! canonical bytes.

use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256 of `bytes`.
pub fn content_hash(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// A content hash checked once: exactly 64 lowercase hex digits. The device names stored
/// modules by it and builds no file path from anything else a request sends.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(String);

/// Text that is not a content hash (shown bounded: it may come from a request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} is not a content hash (64 lowercase hex digits)", crate::quote::bounded(.0))]
pub struct BadHash(pub String);

impl ContentHash {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> ContentHash {
        ContentHash(content_hash(bytes))
    }

    /// Checks `text`: 64 lowercase hex digits, nothing else.
    pub fn parse(text: &str) -> Result<ContentHash, BadHash> {
        let valid = text.len() == 64
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if valid {
            Ok(ContentHash(text.to_string()))
        } else {
            Err(BadHash(text.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ContentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<ContentHash> for String {
    fn from(h: ContentHash) -> String {
        h.0
    }
}

/// A short form for display (first 12 hex digits).
pub fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_content_hash_is_64_lowercase_hex_digits() {
        let h = ContentHash::of(b"abc");
        assert_eq!(ContentHash::parse(h.as_str()), Ok(h.clone()));
        for bad in [
            "",
            "abc",
            &h.as_str().to_uppercase(),
            &format!("{}0", h),
            "../../../../etc/passwd",
            &"g".repeat(64),
            &"é".repeat(32),
        ] {
            assert!(ContentHash::parse(bad).is_err(), "{bad:?}");
        }
        let e = ContentHash::parse(&"x".repeat(1000)).unwrap_err();
        assert!(e.to_string().len() < 150, "{e}");
    }

    #[test]
    fn known_vector() {
        assert_eq!(
            super::content_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
