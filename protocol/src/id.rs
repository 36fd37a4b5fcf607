//! Fixed-size identifiers: record ids, network ids, member keys, artefact digests, state codes.
//! All 32-byte values show as lowercase hex, in `Display`, `FromStr` and JSON alike.

use std::fmt;
use std::str::FromStr;

use bincode::{Decode, Encode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A 32-byte value was written wrong (not 64 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be 64 hex digits (32 bytes), got {got:?}")]
pub struct ParseHexError {
    what: &'static str,
    got: String,
}

macro_rules! hex32 {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
            /// Lowercase hex, 64 digits.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            /// The first 12 hex digits, for people.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..6])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = ParseHexError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s.trim(), &mut out).map_err(|_| ParseHexError {
                    what: $what,
                    got: s.chars().take(80).collect(),
                })?;
                Ok(Self(out))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex32!(
    /// The id of a record: SHA-256 of its complete signed encoding (see [`crate::Record`]).
    /// Two records have the same id exactly when they have the same bytes.
    RecordId,
    "a record id"
);
hex32!(
    /// The id of a network: SHA-256 over `attrib/network/v1` and the canonical encoding of the
    /// genesis roster. Signatures cover it, so a record signed for one network never verifies
    /// on another.
    NetworkId,
    "a network id"
);
hex32!(
    /// A member state's record-signing public key (ed25519, compressed point).
    MemberKey,
    "a member key"
);
hex32!(
    /// The SHA-256 digest of an evidence artefact. attrib carries hashes, never artefacts.
    Sha256Digest,
    "a SHA-256 digest"
);

impl Sha256Digest {
    /// Hashes bytes with SHA-256.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }
}

impl RecordId {
    /// The id of the given complete record encoding.
    pub fn of_encoding(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }
}

/// A state code: ISO 3166-1 alpha-3, three ASCII capital letters (`FRA`, `USA`, ...).
///
/// The type cannot hold anything else: decoding, parsing and deserializing all check.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode)]
pub struct StateCode([u8; 3]);

/// A state code was not three capital letters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state code must be three capital letters (ISO 3166-1 alpha-3, e.g. FRA), got {0:?}")]
pub struct ParseStateCodeError(String);

impl StateCode {
    /// Makes a state code from three bytes, if they are capital ASCII letters.
    pub fn from_bytes(b: [u8; 3]) -> Option<Self> {
        b.iter().all(u8::is_ascii_uppercase).then_some(Self(b))
    }
    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Invariant: always ASCII capitals.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl<Context> Decode<Context> for StateCode {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let raw = <[u8; 3]>::decode(decoder)?;
        Self::from_bytes(raw).ok_or(bincode::error::DecodeError::Other(
            "state code is not three capital letters",
        ))
    }
}
bincode::impl_borrow_decode!(StateCode);

impl FromStr for StateCode {
    type Err = ParseStateCodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() == 3
            && let Some(code) = Self::from_bytes([b[0], b[1], b[2]])
        {
            return Ok(code);
        }
        Err(ParseStateCodeError(s.chars().take(20).collect()))
    }
}

impl fmt::Display for StateCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for StateCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for StateCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for StateCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_codes_are_three_capitals() {
        assert_eq!(
            "FRA".parse::<StateCode>().map(|c| c.to_string()),
            Ok("FRA".into())
        );
        for bad in ["fra", "FR", "FRAN", "F1A", "", "ÉTA"] {
            assert!(bad.parse::<StateCode>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn record_id_hex_round_trip() {
        let id = RecordId::of_encoding(b"x");
        assert_eq!(id.to_hex().parse::<RecordId>(), Ok(id));
        assert!("abc".parse::<RecordId>().is_err());
    }
}
