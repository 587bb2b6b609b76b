//! restic's authenticated encryption (AES-256-CTR with Poly1305-AES), with the repository's master
//! key, for what email-backup reads and writes without going through `rustic_core`: lock files and
//! blobs read straight from pack ranges by the bounded restore.
//!
//! Format (restic's design document, "Encryption"): a 16-byte random nonce, the ciphertext, and a
//! 16-byte MAC. Unpacked JSON files in format-2 repositories may be compressed: after decryption,
//! a first byte of `2` means zstd-compressed JSON follows.

use aes256ctr_poly1305aes::Aes256CtrPoly1305Aes;
use aes256ctr_poly1305aes::aead::{Aead as _, AeadInPlace as _};
use rand::RngExt as _;
use rustic_core::repofile::MasterKey;

/// The repository's key, ready to encrypt and decrypt.
#[derive(Clone)]
pub struct RepoKey {
    cipher: Aes256CtrPoly1305Aes,
}

impl std::fmt::Debug for RepoKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RepoKey(<secret>)")
    }
}

/// Decryption failed: the data was changed or is not from this repository.
#[derive(Debug, thiserror::Error)]
#[error("MAC check failed (the data is damaged, or from another repository)")]
pub struct MacError;

impl RepoKey {
    /// From `rustic_core`'s master key.
    ///
    /// # Panics
    /// If the master key's parts have the wrong lengths (`rustic_core` checked them when it opened
    /// the repository).
    pub fn new(master: &MasterKey) -> Self {
        let mut key = aes256ctr_poly1305aes::Key::default();
        key[0..32].copy_from_slice(&master.encrypt);
        key[32..48].copy_from_slice(&master.mac.k);
        key[48..64].copy_from_slice(&master.mac.r);
        Self {
            cipher: Aes256CtrPoly1305Aes::new(&key),
        }
    }

    /// From 64 raw bytes in restic's order: AES-256 key, Poly1305 `k`, Poly1305 `r` (the layout of
    /// a key derived from a password by scrypt).
    pub fn from_bytes(bytes: &[u8; 64]) -> Self {
        let mut key = aes256ctr_poly1305aes::Key::default();
        key.copy_from_slice(bytes);
        Self {
            cipher: Aes256CtrPoly1305Aes::new(&key),
        }
    }

    /// Encrypts: nonce, ciphertext, MAC.
    ///
    /// # Panics
    /// Never: encryption in memory has no failure mode (the cipher reports only oversized input,
    /// above 64 GiB).
    pub fn encrypt(&self, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 16];
        rand::rng().fill(&mut nonce[..]);
        let mut out = Vec::with_capacity(plain.len() + 32);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .cipher
            .encrypt_in_place_detached(&nonce.into(), &[], &mut out[16..])
            .expect("encryption in memory cannot fail");
        out.extend_from_slice(&tag);
        out
    }

    /// Checks the MAC and decrypts.
    ///
    /// # Errors
    /// When the data is too short or its MAC does not match.
    pub fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, MacError> {
        if data.len() < 32 {
            return Err(MacError);
        }
        let nonce =
            aes256ctr_poly1305aes::aead::Nonce::<Aes256CtrPoly1305Aes>::from_slice(&data[..16]);
        self.cipher
            .decrypt(nonce, &data[16..])
            .map_err(|_| MacError)
    }

    /// Decrypts an unpacked file (lock, snapshot, index), decompressing it when it is compressed.
    ///
    /// # Errors
    /// When the MAC does not match or the content does not decompress.
    pub fn decrypt_unpacked(&self, data: &[u8]) -> Result<Vec<u8>, MacError> {
        let plain = self.decrypt(data)?;
        if plain.first() == Some(&2) {
            return zstd::stream::decode_all(&plain[1..]).map_err(|_| MacError);
        }
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RepoKey {
        let master: MasterKey = serde_json::from_value(serde_json::json!({
            "mac": {"k": "AAAAAAAAAAAAAAAAAAAAAA==", "r": "AQEBAQEBAQEBAQEBAQEBAQ=="},
            "encrypt": "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
        }))
        .unwrap();
        RepoKey::new(&master)
    }

    #[test]
    fn round_trip_and_tamper_detection() {
        let key = key();
        let sealed = key.encrypt(b"{\"time\":1}");
        assert_eq!(sealed.len(), 10 + 32);
        assert_eq!(key.decrypt(&sealed).unwrap(), b"{\"time\":1}");
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(key.decrypt(&bad).is_err());
        assert!(key.decrypt(&sealed[..20]).is_err());
    }

    #[test]
    fn compressed_unpacked_files_are_decompressed() {
        let key = key();
        let mut plain = vec![2u8];
        plain.extend(zstd::encode_all(&b"{\"a\":1}"[..], 3).unwrap());
        assert_eq!(
            key.decrypt_unpacked(&key.encrypt(&plain)).unwrap(),
            b"{\"a\":1}"
        );
        assert_eq!(key.decrypt_unpacked(&key.encrypt(b"[]")).unwrap(), b"[]");
    }
}
