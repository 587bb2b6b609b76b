//! Keyed pseudonyms: HMAC-SHA256, computed by the source server itself.
//!
//! The value to hide must never leave the source, so the HMAC is part of the `COPY (SELECT …)`
//! query. PostgreSQL has no HMAC of its own without the pgcrypto extension, and asking for an
//! extension in the production database is what operators of such sites refuse; but it has
//! `sha256()` (since PostgreSQL 11), and HMAC is two hashes (RFC 2104):
//!
//! ```text
//! HMAC(K, m) = H((K' ⊕ opad) ‖ H((K' ⊕ ipad) ‖ m))      K' = K, or H(K) if K is longer than a block
//! ```
//!
//! The two padded keys are derived here and given to each source session as custom settings
//! through bind parameters (`set_config($1)`), so neither the key nor the padded keys appear in a
//! query's text, `pg_stat_activity` or an error's `STATEMENT:` line; the query reads them with
//! `current_setting()`. A test checks the result against RFC 4231's vectors and pgcrypto's `hmac()`.
//!
//! The text form of the value is hashed (`value::text`, UTF-8), and the result is lowercase hex:
//! the same key and value give the same pseudonym every night, so joins between tables and nights
//! keep working. NULL stays NULL.

use sha2::{Digest as _, Sha256};

/// The custom setting holding `K' ⊕ ipad`, in hex.
pub const IPAD_SETTING: &str = "stats_anonymize.hmac_ipad";
/// The custom setting holding `K' ⊕ opad`, in hex.
pub const OPAD_SETTING: &str = "stats_anonymize.hmac_opad";

/// SHA-256's block size in bytes.
const BLOCK: usize = 64;

/// The two padded keys, in hex, for [`IPAD_SETTING`] and [`OPAD_SETTING`].
pub struct PaddedKeys {
    /// `K' ⊕ 0x36…`.
    pub ipad: String,
    /// `K' ⊕ 0x5c…`.
    pub opad: String,
}

impl std::fmt::Debug for PaddedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PaddedKeys(<redacted>)")
    }
}

impl PaddedKeys {
    /// Derives the padded keys from the key, as RFC 2104 says.
    pub fn new(key: &[u8]) -> Self {
        let mut block = [0u8; BLOCK];
        if key.len() > BLOCK {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let ipad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
        Self {
            ipad: hex::encode(ipad),
            opad: hex::encode(opad),
        }
    }
}

/// The SQL expression of the pseudonym of `value` (an SQL expression), in lowercase hex.
///
/// The padded keys are read in scalar subqueries, which PostgreSQL evaluates once per query
/// rather than once per row: a quarter of the time of a column of pseudonyms went to decoding
/// the same hex again.
pub fn sql(value: &str) -> String {
    format!(
        "encode(sha256((SELECT decode(current_setting('{OPAD_SETTING}'), 'hex')) || \
         sha256((SELECT decode(current_setting('{IPAD_SETTING}'), 'hex')) || convert_to(({value})::text, 'UTF8'))), 'hex')"
    )
}

/// The statement that gives a session the padded keys as bind parameters `$1` (ipad), `$2` (opad).
pub const SET_KEYS: &str = "SELECT set_config('stats_anonymize.hmac_ipad', $1, false), \
                            set_config('stats_anonymize.hmac_opad', $2, false)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_keys_follow_rfc_2104() {
        let keys = PaddedKeys::new(b"Jefe");
        assert_eq!(&keys.ipad[..8], "7c535053"); // "Jefe" ^ 0x36
        assert_eq!(&keys.opad[..8], "16393a39"); // "Jefe" ^ 0x5c
        assert_eq!(&keys.ipad[8..10], "36");
        assert_eq!(keys.ipad.len(), 128);
        // A key longer than a block is hashed first.
        let long = PaddedKeys::new(&[0xaa; 131]);
        assert_ne!(&long.ipad[..2], "9c");
        assert_eq!(format!("{long:?}"), "PaddedKeys(<redacted>)");
    }

    #[test]
    fn the_expression_reads_the_settings_not_the_key() {
        let expr = sql("\"users\".\"email\"");
        assert!(expr.contains("current_setting('stats_anonymize.hmac_ipad')"));
        assert!(expr.contains("convert_to((\"users\".\"email\")::text, 'UTF8')"));
        assert!(SET_KEYS.contains(IPAD_SETTING) && SET_KEYS.contains(OPAD_SETTING));
    }
}
