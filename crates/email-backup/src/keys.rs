//! The first key of a new repository, with restic's scrypt parameters.
//!
//! A repository's master key is stored encrypted under a key derived from the password with scrypt
//! (`keys/<id>`, restic's design document, "Keys, Encryption and MAC"), and every command derives it
//! again when it opens the repository. `rustic_core` writes its keys with scrypt's recommended
//! parameters (N = 2^17, r = 8, p = 1): 128 MiB of memory on every open, the largest part of a
//! backup's peak. restic 0.14 calibrates to N = 2^15, r = 8, p = 2 on these machines (32 MiB).
//! `init` therefore writes the key again with restic's parameters and removes `rustic_core`'s; keys
//! of existing repositories (a restic repository switching over) are used as they are.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ops_common::storage::{ObjectStore, PutBody};
use rand::RngExt as _;
use rustic_core::repofile::MasterKey;
use sha2::{Digest as _, Sha256};

use crate::crypto::RepoKey;
use crate::error::Result;

/// restic 0.14's parameters on a machine like ours: log2 N, r, p.
const LOG_N: u8 = 15;
const R: u32 = 8;
const P: u32 = 2;

/// A key file, restic's JSON, encrypting `master` under `password`.
///
/// # Panics
/// Never: the parameters and the output length are constants scrypt accepts.
pub fn key_file(master: &MasterKey, password: &str) -> Vec<u8> {
    let params = scrypt::Params::new(LOG_N, R, P, 64).expect("valid scrypt parameters");
    let mut salt = [0u8; 64];
    rand::rng().fill(&mut salt[..]);
    let mut derived = [0u8; 64];
    scrypt::scrypt(password.as_bytes(), &salt, &params, &mut derived)
        .expect("64 bytes is a valid scrypt output length");
    let sealed = RepoKey::from_bytes(&derived)
        .encrypt(&serde_json::to_vec(master).expect("a master key serializes"));
    let uid = rustix::process::getuid().as_raw();
    let file = serde_json::json!({
        "created": rustic_core::jiff::Timestamp::now().to_string(),
        "username": crate::lock::username(uid),
        "hostname": crate::settings::hostname_of_machine(),
        "kdf": "scrypt",
        "N": 1u32 << LOG_N,
        "r": R,
        "p": P,
        "salt": STANDARD.encode(salt),
        "data": STANDARD.encode(sealed),
    });
    serde_json::to_vec(&file).expect("a key file serializes")
}

/// Writes a key file with restic's parameters for `master`, then removes every other key (the one
/// `rustic_core`'s `init` wrote a moment before). The new key is written first, so the repository
/// always has a key.
///
/// # Errors
/// The store.
pub async fn replace_with_restic_params(
    store: &dyn ObjectStore,
    master: &MasterKey,
    password: &str,
) -> Result<()> {
    let file = key_file(master, password);
    let ours = format!("keys/{}", hex::encode(Sha256::digest(&file)));
    store.put(&ours, PutBody::from(file)).await?;
    for meta in store.list("keys/").await? {
        if meta.key != ours {
            store.delete(&meta.key).await?;
        }
    }
    Ok(())
}
