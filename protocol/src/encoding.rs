//! The one place where attrib bytes are made and read: a single fixed bincode 2.0.1
//! configuration, bounded decoding, and a canonical-form check.
//!
//! Configuration: little endian, variable-length integers (bincode's `standard()`), and a hard
//! decode limit of [`MAX_RECORD_BYTES`](crate::limits::MAX_RECORD_BYTES). The limit makes every
//! length prefix a claim against a budget: a hostile prefix saying "4 GiB follow" fails with
//! [`EncodingError::Malformed`] before anything is allocated.
//!
//! Canonical form: a value decodes only if re-encoding it gives back exactly the input bytes, so
//! one logical value has one byte string (and so one id). This rejects, for example, a varint
//! written in a longer form than needed.

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use bincode::{Decode, Encode};

use crate::limits::MAX_RECORD_BYTES;

type Config = Configuration<LittleEndian, Varint, Limit<MAX_RECORD_BYTES>>;

const CONFIG: Config = bincode::config::standard().with_limit::<MAX_RECORD_BYTES>();

/// Largest encoded pair of records (a fork proof): two records and their length prefixes.
pub const MAX_PAIR_BYTES: usize = 2 * MAX_RECORD_BYTES + 16;

const PAIR_CONFIG: Configuration<LittleEndian, Varint, Limit<MAX_PAIR_BYTES>> =
    bincode::config::standard().with_limit::<MAX_PAIR_BYTES>();

/// Largest peer-to-peer message (a fetch request or a batch of records): 4 MiB.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

const MESSAGE_CONFIG: Configuration<LittleEndian, Varint, Limit<MAX_MESSAGE_BYTES>> =
    bincode::config::standard().with_limit::<MAX_MESSAGE_BYTES>();

/// Encodes a peer-to-peer message.
pub fn message_to_vec<T: Encode>(value: &T) -> Vec<u8> {
    bincode::encode_to_vec(value, MESSAGE_CONFIG).unwrap_or_default()
}

/// Decodes a peer-to-peer message: bounded by [`MAX_MESSAGE_BYTES`], exact, canonical.
pub fn message_from_slice<T: Decode<()> + Encode>(bytes: &[u8]) -> Result<T, EncodingError> {
    let (value, read): (T, usize) = bincode::decode_from_slice(bytes, MESSAGE_CONFIG)
        .map_err(|e| EncodingError::Malformed(e.to_string()))?;
    if read != bytes.len() {
        return Err(EncodingError::TrailingBytes {
            trailing: bytes.len() - read,
        });
    }
    if message_to_vec(&value) != bytes {
        return Err(EncodingError::NonCanonical);
    }
    Ok(value)
}

/// Encodes two byte strings (e.g. the two records of a fork proof).
pub fn pair_to_vec(a: &[u8], b: &[u8]) -> Vec<u8> {
    bincode::encode_to_vec((a, b), PAIR_CONFIG).unwrap_or_default()
}

/// Decodes two byte strings written by [`pair_to_vec`]: bounded, exact, canonical.
pub fn pair_from_slice(bytes: &[u8]) -> Result<(Vec<u8>, Vec<u8>), EncodingError> {
    let (pair, read): ((Vec<u8>, Vec<u8>), usize) = bincode::decode_from_slice(bytes, PAIR_CONFIG)
        .map_err(|e| EncodingError::Malformed(e.to_string()))?;
    if read != bytes.len() {
        return Err(EncodingError::TrailingBytes {
            trailing: bytes.len() - read,
        });
    }
    if pair_to_vec(&pair.0, &pair.1) != bytes {
        return Err(EncodingError::NonCanonical);
    }
    Ok(pair)
}

/// What went wrong turning bytes into a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodingError {
    /// The bytes are not a valid encoding (truncated, bad tag, bad UTF-8, length prefix over the
    /// decode budget, ...).
    #[error("malformed encoding: {0}")]
    Malformed(String),
    /// The value decoded but bytes were left over.
    #[error("{trailing} trailing byte(s) after the encoded value")]
    TrailingBytes {
        /// How many bytes were left.
        trailing: usize,
    },
    /// The value decoded but is not in canonical form (re-encoding differs).
    #[error("non-canonical encoding (re-encoding the decoded value gives different bytes)")]
    NonCanonical,
}

/// Encodes a value with the one attrib configuration.
pub fn to_vec<T: Encode>(value: &T) -> Vec<u8> {
    // Encoding into a Vec cannot fail for our types: no I/O, and the size limit applies to decoding.
    bincode::encode_to_vec(value, CONFIG).unwrap_or_default()
}

/// Appends the encoding of a value to `out`.
pub fn append<T: Encode>(value: &T, out: &mut Vec<u8>) {
    out.extend_from_slice(&to_vec(value));
}

/// Decodes exactly one value from `bytes`: bounded, no trailing bytes, canonical form only.
pub fn from_slice<T: Decode<()> + Encode>(bytes: &[u8]) -> Result<T, EncodingError> {
    let (value, read): (T, usize) = bincode::decode_from_slice(bytes, CONFIG)
        .map_err(|e| EncodingError::Malformed(e.to_string()))?;
    if read != bytes.len() {
        return Err(EncodingError::TrailingBytes {
            trailing: bytes.len() - read,
        });
    }
    if to_vec(&value) != bytes {
        return Err(EncodingError::NonCanonical);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_length_prefix_is_refused_without_allocating() {
        // A Vec<u8> length prefix claiming u64::MAX bytes (varint tag 253 + 8 bytes).
        let mut bytes = vec![253u8];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        let err = from_slice::<Vec<u8>>(&bytes).unwrap_err();
        assert!(matches!(err, EncodingError::Malformed(_)), "{err}");
    }

    #[test]
    fn long_form_varint_is_non_canonical() {
        // 5 written as a u16 varint (tag 251) instead of a single byte.
        let err = from_slice::<u64>(&[251, 5, 0]).unwrap_err();
        assert_eq!(err, EncodingError::NonCanonical);
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let err = from_slice::<u8>(&[1, 2]).unwrap_err();
        assert_eq!(err, EncodingError::TrailingBytes { trailing: 1 });
    }
}
