//! How content becomes stored objects: compressed, then optionally encrypted with age.
//!
//! Without encryption an object is a plain envelope ([`crate::archive`]) and a content's identity
//! is its SHA-256 (a pushed WAL file's: that of its compressed payload). With encryption the plain
//! envelope is encrypted with age (compress, then encrypt) and wrapped in an outer envelope whose
//! header carries only a keyed identity, HMAC-SHA256 of the content: duplicates are still
//! recognised (a re-pushed segment, a chunk an earlier backup stored) without decrypting and
//! without revealing a plain hash of the content to whoever reads the bucket.
//!
//! Two ways to encrypt:
//! - **X25519 recipients** (`WAL_ARCHIVE_AGE_RECIPIENTS`, `age1…`): the database server holds only
//!   public keys, so it can archive but cannot read the archive; the private key
//!   (`WAL_ARCHIVE_AGE_IDENTITY_FILE`) is needed only to restore, verify or drill. The identity key
//!   is derived from the recipients, so anyone holding the public keys *and* the bucket could test a
//!   guess of some content; the bucket alone reveals nothing.
//! - **A passphrase** (`WAL_ARCHIVE_PASSPHRASE`), age's scrypt mode: every object is a standard age
//!   passphrase file (`age -d` opens it). scrypt runs once per object (work factor 2^15, some tens of
//!   milliseconds), which makes passphrase mode slow for large base backups: prefer keys.

use std::str::FromStr;

use age::secrecy::SecretString;
use hmac::{KeyInit as _, Mac as _};
use ops_common::settings::Settings;
use ops_common::storage::Sha256Digest;
use sha2::{Digest as _, Sha256};

use crate::archive::{self, Compression, EnvelopeError, Header};
use crate::error::{Error, Result};
use crate::settings::{
    WAL_ARCHIVE_AGE_IDENTITY_FILE, WAL_ARCHIVE_AGE_RECIPIENTS, WAL_ARCHIVE_PASSPHRASE,
};

/// scrypt work factor (log2 N) for passphrase mode: per object, so kept modest.
const PASSPHRASE_LOG_N: u8 = 15;

/// Compression and encryption settings, applied to everything stored.
#[derive(Clone)]
pub struct Codec {
    compression: Compression,
    age: Option<std::sync::Arc<AgeKeys>>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("compression", &self.compression)
            .field("encrypted", &self.age.is_some())
            .finish()
    }
}

struct AgeKeys {
    recipients: Vec<age::x25519::Recipient>,
    identities: Vec<age::x25519::Identity>,
    passphrase: Option<SecretString>,
    id_key: [u8; 32],
}

impl AgeKeys {
    /// The keyed hash that gives content its identity.
    fn mac(&self) -> hmac::Hmac<Sha256> {
        hmac::Hmac::<Sha256>::new_from_slice(&self.id_key).expect("HMAC takes keys of any length")
    }
}

/// The hashes sealing takes of content as it arrives.
struct Hashes {
    sha256: Sha256,
    /// With encryption: the identity (HMAC-SHA256 under the archive's identity key).
    mac: Option<hmac::Hmac<Sha256>>,
}

impl Hashes {
    fn update(&mut self, piece: &[u8]) {
        self.sha256.update(piece);
        if let Some(mac) = &mut self.mac {
            mac.update(piece);
        }
    }
}

impl Codec {
    /// Compression only.
    pub fn plain(compression: Compression) -> Self {
        Self {
            compression,
            age: None,
        }
    }

    /// From the settings: compression, and encryption if recipients, an identity file or a
    /// passphrase is set.
    ///
    /// # Errors
    /// When a key does not parse, the identity file cannot be read, or both modes are set.
    pub fn from_settings(settings: &Settings, compression: Compression) -> Result<Self> {
        let recipients_text = settings.get(&WAL_ARCHIVE_AGE_RECIPIENTS);
        let identity_file = settings.get(&WAL_ARCHIVE_AGE_IDENTITY_FILE);
        let passphrase = settings.get(&WAL_ARCHIVE_PASSPHRASE);
        if passphrase.is_some() && (recipients_text.is_some() || identity_file.is_some()) {
            return Err(settings
                .invalid(
                    &WAL_ARCHIVE_PASSPHRASE,
                    "use either a passphrase or age keys, not both",
                )
                .into());
        }
        if let Some(passphrase) = passphrase {
            let id_key = passphrase_id_key(passphrase);
            let keys = AgeKeys {
                recipients: Vec::new(),
                identities: Vec::new(),
                passphrase: Some(SecretString::from(passphrase.to_owned())),
                id_key,
            };
            return Ok(Self {
                compression,
                age: Some(std::sync::Arc::new(keys)),
            });
        }
        let mut identities = Vec::new();
        if let Some(path) = identity_file {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            for (n, line) in text.lines().enumerate().map(|(n, l)| (n + 1, l.trim())) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                identities.push(age::x25519::Identity::from_str(line).map_err(|e| {
                    settings.invalid(
                        &WAL_ARCHIVE_AGE_IDENTITY_FILE,
                        format!("line {n} is not an age X25519 secret key: {e}"),
                    )
                })?);
            }
            if identities.is_empty() {
                return Err(settings
                    .invalid(
                        &WAL_ARCHIVE_AGE_IDENTITY_FILE,
                        "holds no AGE-SECRET-KEY-1… line",
                    )
                    .into());
            }
        }
        let mut recipients = Vec::new();
        for text in recipients_text
            .unwrap_or_default()
            .split([',', ' ', '\n'])
            .filter(|t| !t.is_empty())
        {
            recipients.push(age::x25519::Recipient::from_str(text).map_err(|e| {
                settings.invalid(
                    &WAL_ARCHIVE_AGE_RECIPIENTS,
                    format!("{text:?} is not an age X25519 recipient: {e}"),
                )
            })?);
        }
        if recipients.is_empty() {
            // An identity alone encrypts to its own public key.
            recipients = identities
                .iter()
                .map(age::x25519::Identity::to_public)
                .collect();
        }
        if recipients.is_empty() {
            return Ok(Self::plain(compression));
        }
        let id_key = recipients_id_key(&recipients);
        Ok(Self {
            compression,
            age: Some(std::sync::Arc::new(AgeKeys {
                recipients,
                identities,
                passphrase: None,
                id_key,
            })),
        })
    }

    /// Whether encrypted objects can be opened with these settings (a passphrase or private keys;
    /// public keys alone can only write).
    pub fn can_decrypt(&self) -> bool {
        self.age
            .as_ref()
            .is_none_or(|keys| keys.passphrase.is_some() || !keys.identities.is_empty())
    }

    /// What `archive.json` records about encryption: `age:` and a fingerprint of the identity key.
    pub fn fingerprint(&self) -> Option<String> {
        self.age
            .as_ref()
            .map(|keys| format!("age:{}", &hex::encode(Sha256::digest(keys.id_key))[..16]))
    }

    /// The identity of a content: its SHA-256, or with encryption its keyed HMAC-SHA256.
    ///
    /// # Panics
    /// Never: HMAC takes keys of any length.
    pub fn id(&self, data: &[u8]) -> Sha256Digest {
        match &self.age {
            None => Sha256Digest::of(data),
            Some(keys) => {
                let mut mac = keys.mac();
                mac.update(data);
                Sha256Digest(mac.finalize().into_bytes().into())
            }
        }
    }

    /// Seals content whose identity is already known.
    pub fn seal_with_id(&self, data: &[u8], id: Sha256Digest) -> Vec<u8> {
        match &self.age {
            None => archive::seal_with_digest(data, id, self.compression),
            Some(keys) => Self::encrypt(keys, id, &archive::seal(data, self.compression)),
        }
    }

    /// Seals content, returning its identity and the object's bytes. The content is hashed while
    /// it is compressed (see [`archive::hash_while_compressing`]).
    pub fn seal(&self, data: &[u8]) -> (Sha256Digest, Vec<u8>) {
        let (hashes, payload) = archive::hash_while_compressing(data, self.compression, |data| {
            let mut hashes = self.hashes();
            hashes.update(data);
            hashes
        });
        self.wrap(hashes, data.len(), &payload)
    }

    /// The object for what `reader` holds, `size` bytes, read in pieces (see
    /// [`archive::compress_stream`]) rather than whole, and its identity. Without encryption the
    /// identity is the payload's SHA-256 ([`Header::PlainPayload`]), which differs from the one
    /// an earlier push stored if the compression changed in between: compare contents then
    /// ([`Codec::open`]) before calling two objects different.
    ///
    /// # Errors
    /// When reading fails or the reader does not hold `size` bytes.
    pub fn seal_reader(
        &self,
        reader: impl std::io::Read + Send,
        size: u64,
    ) -> std::io::Result<(Sha256Digest, Vec<u8>)> {
        if self.age.is_none() {
            let mut content = archive::ContentHash::default();
            let payload = archive::compress_stream(reader, size, self.compression, |piece| {
                content.update(piece);
            })?;
            return Ok(archive::seal_payload(
                size,
                &content,
                self.compression,
                &payload,
            ));
        }
        let size_usize = usize::try_from(size).map_err(std::io::Error::other)?;
        let mut hashes = self.hashes();
        let payload = archive::compress_stream(reader, size, self.compression, |piece| {
            hashes.update(piece);
        })?;
        Ok(self.wrap(hashes, size_usize, &payload))
    }

    /// What sealing content hashes as it arrives: its SHA-256, and with encryption its identity.
    fn hashes(&self) -> Hashes {
        Hashes {
            sha256: Sha256::new(),
            mac: self.age.as_ref().map(|keys| keys.mac()),
        }
    }

    /// The object for content of `size` bytes, hashed into `hashes` and compressed into `payload`,
    /// and its identity.
    fn wrap(&self, hashes: Hashes, size: usize, payload: &[u8]) -> (Sha256Digest, Vec<u8>) {
        let sha256 = Sha256Digest(hashes.sha256.finalize().into());
        let plain = archive::seal_compressed(sha256, size, self.compression, payload);
        match (&self.age, hashes.mac) {
            (Some(keys), Some(mac)) => {
                let id = Sha256Digest(mac.finalize().into_bytes().into());
                (id, Self::encrypt(keys, id, &plain))
            }
            _ => (sha256, plain),
        }
    }

    /// The encrypted envelope of `inner` (a plain envelope), under identity `id`.
    ///
    /// # Panics
    /// Never in practice: encrypting into memory cannot fail.
    fn encrypt(keys: &AgeKeys, id: Sha256Digest, inner: &[u8]) -> Vec<u8> {
        let header = Header::Encrypted {
            encryption: "age".to_owned(),
            id,
        };
        let mut out = archive::envelope_start(&header, inner.len() + 256);
        let encryptor = if let Some(passphrase) = &keys.passphrase {
            let mut recipient = age::scrypt::Recipient::new(passphrase.clone());
            recipient.set_work_factor(PASSPHRASE_LOG_N);
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
        } else {
            age::Encryptor::with_recipients(
                keys.recipients.iter().map(|r| r as &dyn age::Recipient),
            )
        }
        .expect("recipients are valid");
        let mut writer = encryptor
            .wrap_output(&mut out)
            .expect("writing into memory");
        std::io::Write::write_all(&mut writer, inner).expect("writing into memory");
        writer.finish().expect("writing into memory");
        out
    }

    /// Opens an object that must hold the content whose identity is `expected` (a chunk named by
    /// it, a file its manifest lists). [`Codec::open`] checks the content against the identity in
    /// the object's header, so comparing that identity is enough: no second hash of the content.
    ///
    /// # Errors
    /// As [`Codec::open`], and when the object holds another content.
    pub fn open_expecting(
        &self,
        bytes: &[u8],
        expected: &Sha256Digest,
    ) -> std::result::Result<Vec<u8>, EnvelopeError> {
        Self::header_expecting(bytes, expected)?;
        self.open(bytes)
    }

    /// [`Codec::open_expecting`], reusing `scratch` (see [`archive::Scratch`]).
    ///
    /// # Errors
    /// As [`Codec::open_expecting`].
    pub fn open_expecting_into<'s>(
        &self,
        bytes: &[u8],
        expected: &Sha256Digest,
        scratch: &'s mut archive::Scratch,
    ) -> std::result::Result<&'s [u8], EnvelopeError> {
        match Self::header_expecting(bytes, expected)? {
            Header::Plain { .. } | Header::PlainPayload { .. } => {
                archive::open_into(bytes, scratch)
            }
            Header::Encrypted { .. } => self.open(bytes).map(|data| scratch.hold(data)),
        }
    }

    /// Opens an object: decrypts if needed, decompresses, and checks the content against the
    /// envelope's checksum (and, when encrypted, against its identity).
    ///
    /// # Errors
    /// When the object is malformed, damaged, or encrypted with other keys.
    pub fn open(&self, bytes: &[u8]) -> std::result::Result<Vec<u8>, EnvelopeError> {
        let (header, start) = archive::read_header(bytes)?;
        let Header::Encrypted { id, .. } = header else {
            return archive::open(bytes);
        };
        let Some(keys) = &self.age else {
            return Err(EnvelopeError::NoKey);
        };
        let decryptor = age::Decryptor::new_buffered(&bytes[start..])
            .map_err(|e| EnvelopeError::Decrypt(e.to_string()))?;
        let reader = if let Some(passphrase) = &keys.passphrase {
            let mut identity = age::scrypt::Identity::new(passphrase.clone());
            identity.set_max_work_factor(PASSPHRASE_LOG_N);
            decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity))
        } else {
            if keys.identities.is_empty() {
                return Err(EnvelopeError::NoKey);
            }
            decryptor.decrypt(keys.identities.iter().map(|i| i as &dyn age::Identity))
        };
        let mut inner = Vec::new();
        std::io::Read::read_to_end(
            &mut reader.map_err(|e| EnvelopeError::Decrypt(e.to_string()))?,
            &mut inner,
        )
        .map_err(|e| EnvelopeError::Decrypt(e.to_string()))?;
        let data = archive::open(&inner)?;
        if self.id(&data) != id {
            return Err(EnvelopeError::Mismatch {
                expected: format!("id {id}"),
                actual: format!("id {}", self.id(&data)),
            });
        }
        Ok(data)
    }

    /// The object's header, when it names `expected` as its content's identity.
    fn header_expecting(
        bytes: &[u8],
        expected: &Sha256Digest,
    ) -> std::result::Result<Header, EnvelopeError> {
        let (header, _) = archive::read_header(bytes)?;
        let (stored, _) = Self::stored_id(&header);
        if stored != *expected {
            return Err(EnvelopeError::Mismatch {
                expected: format!("id {expected}"),
                actual: format!("id {stored}"),
            });
        }
        Ok(header)
    }

    /// The identity recorded in a stored object's header, and its size when the header says.
    pub fn stored_id(header: &Header) -> (Sha256Digest, Option<u64>) {
        match header {
            Header::Encrypted { id, .. } => (*id, None),
            Header::Plain { size, sha256, .. } => (*sha256, Some(*size)),
            Header::PlainPayload {
                size,
                payload_sha256,
                ..
            } => (*payload_sha256, Some(*size)),
        }
    }
}

/// The identity key for recipient mode: derived from the sorted public keys.
fn recipients_id_key(recipients: &[age::x25519::Recipient]) -> [u8; 32] {
    let mut names: Vec<String> = recipients.iter().map(ToString::to_string).collect();
    names.sort();
    let mut hasher = Sha256::new();
    hasher.update(b"wal-archive content id v1\0");
    hasher.update(names.join("\n").as_bytes());
    hasher.finalize().into()
}

/// The identity key for passphrase mode: scrypt, so the key is as slow to guess as the passphrase.
fn passphrase_id_key(passphrase: &str) -> [u8; 32] {
    let params = scrypt::Params::new(PASSPHRASE_LOG_N, 8, 1, 32).expect("valid scrypt parameters");
    let mut key = [0u8; 32];
    scrypt::scrypt(
        passphrase.as_bytes(),
        b"wal-archive content id v1",
        &params,
        &mut key,
    )
    .expect("valid output length");
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed() -> (Codec, Codec) {
        let identity = age::x25519::Identity::generate();
        let recipient = identity.to_public();
        let id_key = recipients_id_key(std::slice::from_ref(&recipient));
        let writer = AgeKeys {
            recipients: vec![recipient.clone()],
            identities: Vec::new(),
            passphrase: None,
            id_key,
        };
        let reader = AgeKeys {
            recipients: vec![recipient],
            identities: vec![identity],
            passphrase: None,
            id_key,
        };
        (
            Codec {
                compression: Compression::Zstd,
                age: Some(std::sync::Arc::new(writer)),
            },
            Codec {
                compression: Compression::Zstd,
                age: Some(std::sync::Arc::new(reader)),
            },
        )
    }

    #[test]
    fn an_object_under_another_name_is_refused_without_hashing_twice() {
        let (_, reader) = keyed();
        for codec in [Codec::plain(Compression::Zstd), reader] {
            // Large enough to be hashed on its own thread.
            let content = b"one chunk of a data file".repeat(20_000);
            let (id, sealed) = codec.seal(&content);
            assert_eq!(id, codec.id(&content));
            assert_eq!(codec.open_expecting(&sealed, &id).unwrap(), content);
            let mut scratch = archive::Scratch::new();
            assert_eq!(
                codec
                    .open_expecting_into(&sealed, &id, &mut scratch)
                    .unwrap(),
                content
            );
            let (other, _) = codec.seal(b"another chunk");
            assert!(matches!(
                codec.open_expecting(&sealed, &other),
                Err(EnvelopeError::Mismatch { .. })
            ));
        }
    }

    #[test]
    fn a_pushed_file_is_identified_by_its_payload_without_encryption_and_by_its_content_with() {
        let content = b"a WAL record, many times over ".repeat(100_000);
        let size = content.len() as u64;
        let plain = Codec::plain(Compression::Zstd);
        let (id, sealed) = plain.seal_reader(&content[..], size).unwrap();
        let (header, start) = archive::read_header(&sealed).unwrap();
        assert!(matches!(header, Header::PlainPayload { .. }));
        assert_eq!(id, Sha256Digest::of(&sealed[start..]));
        assert_eq!(Codec::stored_id(&header), (id, Some(size)));
        assert_eq!(plain.open(&sealed).unwrap(), content);
        // Another compression, another identity, the same content: push compares contents then.
        let (lz4_id, lz4_sealed) = Codec::plain(Compression::Lz4)
            .seal_reader(&content[..], size)
            .unwrap();
        assert_ne!(lz4_id, id);
        assert_eq!(plain.open(&lz4_sealed).unwrap(), content);

        let (writer, reader) = keyed();
        let (keyed_id, keyed_sealed) = writer.seal_reader(&content[..], size).unwrap();
        assert_eq!(keyed_id, writer.id(&content));
        assert_eq!(reader.open(&keyed_sealed).unwrap(), content);
    }

    #[test]
    fn public_key_holders_write_what_only_identity_holders_read() {
        let (writer, reader) = keyed();
        let secret = b"INSERT INTO users VALUES ('alice@example.org')".repeat(100);
        let (id, sealed) = writer.seal(&secret);
        assert_eq!(id, reader.id(&secret));
        assert_ne!(
            id,
            Sha256Digest::of(&secret),
            "no plain hash of the content is stored"
        );
        assert!(
            !sealed.windows(8).any(|w| w == b"alice@ex"),
            "no plaintext in the object"
        );
        assert!(matches!(writer.open(&sealed), Err(EnvelopeError::NoKey)));
        assert_eq!(reader.open(&sealed).unwrap(), secret);
        assert!(matches!(
            Codec::plain(Compression::Zstd).open(&sealed),
            Err(EnvelopeError::NoKey)
        ));
        let mut damaged = sealed.clone();
        let last = damaged.len() - 5;
        damaged[last] ^= 1;
        assert!(reader.open(&damaged).is_err());
        let (_, other_reader) = keyed();
        assert!(matches!(
            other_reader.open(&sealed),
            Err(EnvelopeError::Decrypt(_))
        ));
    }

    #[test]
    fn passphrase_objects_round_trip_and_plain_objects_still_open() {
        let codec = Codec {
            compression: Compression::Lz4,
            age: Some(std::sync::Arc::new(AgeKeys {
                recipients: Vec::new(),
                identities: Vec::new(),
                passphrase: Some(SecretString::from("correct horse".to_owned())),
                id_key: passphrase_id_key("correct horse"),
            })),
        };
        let (_, sealed) = codec.seal(b"payload");
        assert_eq!(codec.open(&sealed).unwrap(), b"payload");
        let plain = archive::seal(b"plain", Compression::Zstd);
        assert_eq!(codec.open(&plain).unwrap(), b"plain");
    }
}
