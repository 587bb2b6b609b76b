//! The archive's layout in the object store, and the envelope every stored object is wrapped in.
//!
//! ```text
//! <prefix>/archive.json                       which cluster the archive belongs to
//! <prefix>/wal/<file name>                    WAL segments, history, .backup and .partial files
//! <prefix>/chunks/<aa>/<sha256>               backup data, 1 MiB pieces of files, by content
//! <prefix>/backups/<name>/manifest            every file of a backup and its chunks
//! <prefix>/backups/<name>/backup_label        as pg_backup_stop returned it
//! <prefix>/backups/<name>/tablespace_map      as pg_backup_stop returned it
//! <prefix>/backups/<name>/backup.json         written last: a backup without it does not exist
//! ```
//!
//! Every object except `archive.json` and `backup.json` is an *envelope*: a magic line, a JSON
//! header saying how the payload was compressed, the size of the original bytes and their
//! SHA-256 (for a pushed WAL file: the SHA-256 of the payload as stored and an XXH3-128 of the
//! original bytes), then the payload. The envelope makes every object self-checking on any store
//! (the local store keeps no metadata), so a corrupt object is detected before PostgreSQL ever
//! sees it: PostgreSQL takes a bad record in the middle of a segment for the end of WAL and would
//! silently stop recovery there.

use std::io::{Read, Write};
use std::str::FromStr;

use ops_common::fsutil::{self, PageBuffer};
use ops_common::storage::Sha256Digest;
use serde::{Deserialize, Serialize};

/// First bytes of every envelope.
pub const MAGIC: &[u8; 8] = b"WALARC1\n";

/// The zstd level: fast, as for WAL the archive must keep up with the server.
pub const ZSTD_LEVEL: i32 = 1;

/// Key of the archive's identity record.
pub const ARCHIVE_KEY: &str = "archive.json";

/// How a payload is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd at [`ZSTD_LEVEL`], with its frame checksum.
    Zstd,
    /// LZ4 frames with their content checksum (fastest, larger).
    Lz4,
    /// Stored as is.
    None,
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "zstd" => Ok(Self::Zstd),
            "lz4" => Ok(Self::Lz4),
            "none" => Ok(Self::None),
            _ => Err("expected zstd, lz4 or none".to_owned()),
        }
    }
}

/// The header of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Header {
    /// The payload is an age-encrypted inner envelope (see `crate::codec`).
    Encrypted {
        /// Always `age`.
        encryption: String,
        /// The content's keyed identity (HMAC-SHA256), so that duplicates can be recognised
        /// without decrypting and without revealing a hash of the content.
        id: Sha256Digest,
    },
    /// The payload is the compressed content.
    Plain {
        /// How the payload is compressed.
        compression: Compression,
        /// Size of the original bytes.
        size: u64,
        /// SHA-256 of the original bytes.
        sha256: Sha256Digest,
    },
    /// The payload is the compressed content, checked as stored by a SHA-256 and as content by
    /// XXH3-128: what `push` writes without encryption. Hashing the compressed bytes (a 16 MiB
    /// segment of ordinary WAL compresses to 1–3 MiB) with SHA-256, and the content with a hash
    /// a quarter of its cost, took a fifth off a push's time. The content hash is what catches
    /// frames put back in the wrong order, which every frame's own checksum would let through.
    PlainPayload {
        /// How the payload is compressed.
        compression: Compression,
        /// Size of the original bytes.
        size: u64,
        /// SHA-256 of the payload, the bytes after the header.
        payload_sha256: Sha256Digest,
        /// XXH3-128 of the original bytes, as 32 hex digits.
        content_xxh3: String,
    },
}

/// Why an envelope could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Not an envelope, or a damaged header.
    #[error("not a wal-archive object ({0})")]
    Malformed(String),
    /// The payload does not decompress.
    #[error("payload does not decompress: {0}")]
    Decompress(String),
    /// The object is encrypted and no key to open it was given.
    #[error(
        "encrypted with age: set WAL_ARCHIVE_AGE_IDENTITY_FILE or WAL_ARCHIVE_PASSPHRASE to read it"
    )]
    NoKey,
    /// Decryption failed: a wrong key or damaged data.
    #[error("cannot decrypt: {0}")]
    Decrypt(String),
    /// The content does not match the header.
    #[error("content does not match its checksum (expected {expected}, got {actual})")]
    Mismatch {
        /// From the header.
        expected: String,
        /// Of what was decoded.
        actual: String,
    },
}

/// Starts an envelope: magic, header length, header.
///
/// # Panics
/// Never: a header always serializes and is small.
pub fn envelope_start(header: &Header, capacity: usize) -> Vec<u8> {
    let header_json = serde_json::to_vec(header).expect("header serializes");
    let mut out = Vec::with_capacity(capacity + header_json.len() + 12);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(
        &u32::try_from(header_json.len())
            .expect("small header")
            .to_le_bytes(),
    );
    out.extend_from_slice(&header_json);
    out
}

/// Wraps `data` in an envelope, compressing it.
pub fn seal(data: &[u8], compression: Compression) -> Vec<u8> {
    let (sha256, payload) = hash_while_compressing(data, compression, Sha256Digest::of);
    seal_compressed(sha256, data.len(), compression, &payload)
}

/// Like [`seal`], with the digest already computed.
pub fn seal_with_digest(data: &[u8], sha256: Sha256Digest, compression: Compression) -> Vec<u8> {
    seal_compressed(
        sha256,
        data.len(),
        compression,
        &compress(data, compression),
    )
}

/// The envelope of content of `size` bytes and digest `sha256`, compressed into `payload`.
pub fn seal_compressed(
    sha256: Sha256Digest,
    size: usize,
    compression: Compression,
    payload: &[u8],
) -> Vec<u8> {
    let header = Header::Plain {
        compression,
        size: size as u64,
        sha256,
    };
    envelope(&header, payload)
}

/// The envelope of `payload` under `header`.
fn envelope(header: &Header, payload: &[u8]) -> Vec<u8> {
    let mut out = envelope_start(header, payload.len());
    out.extend_from_slice(payload);
    out
}

/// XXH3-128 of content as it arrives, for [`Header::PlainPayload`].
#[derive(Default)]
pub struct ContentHash(twox_hash::XxHash3_128);

impl ContentHash {
    /// Adds the next bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    /// The hash so far, as [`Header::PlainPayload`] records it.
    pub fn hex(&self) -> String {
        format!("{:032x}", self.0.finish_128())
    }

    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> String {
        let mut hash = Self::default();
        hash.update(bytes);
        hash.hex()
    }
}

/// The envelope of content of `size` bytes whose XXH3-128 is `content`, compressed into
/// `payload` ([`Header::PlainPayload`]), and the payload's SHA-256, its identity.
pub fn seal_payload(
    size: u64,
    content: &ContentHash,
    compression: Compression,
    payload: &[u8],
) -> (Sha256Digest, Vec<u8>) {
    let payload_sha256 = Sha256Digest::of(payload);
    let header = Header::PlainPayload {
        compression,
        size,
        payload_sha256,
        content_xxh3: content.hex(),
    };
    (payload_sha256, envelope(&header, payload))
}

/// Runs `hash` on another thread while compressing `data`, for content already in memory (a
/// pushed file is read in pieces instead, by [`compress_stream`]). Small contents are not worth a
/// thread.
pub fn hash_while_compressing<T: Send>(
    data: &[u8],
    compression: Compression,
    hash: impl FnOnce(&[u8]) -> T + Send,
) -> (T, Vec<u8>) {
    const WORTH_A_THREAD: usize = 256 << 10;
    if data.len() < WORTH_A_THREAD {
        return (hash(data), compress(data, compression));
    }
    std::thread::scope(|scope| {
        let hashing = scope.spawn(|| hash(data));
        let payload = compress(data, compression);
        let digest = hashing
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (digest, payload)
    })
}

/// Size of the pieces [`compress_stream`] reads and compresses.
const PIECE: usize = 1 << 20;

/// Reads `reader` to its end, which must be `size` bytes, and returns it compressed, each 1 MiB
/// piece into its own frame, while `hash` sees every piece in order.
///
/// A 16 MiB segment read whole into a fresh buffer costs a page fault per 4 KiB and a slow copy
/// ([`PageBuffer`] says why) before any work can start, and compressing it in one frame keeps
/// one core busy while the other idles once hashing is done. Here one thread reads and hashes
/// pieces into a few reused, page-aligned buffers while two others compress them as they come.
/// Concatenated frames are one content to every zstd and LZ4 decoder, and at 1 MiB a piece is
/// twice zstd's level-1 window, so little is lost at the seams (0.1% on WAL).
///
/// # Errors
/// When reading fails, or the reader holds more or less than `size` bytes (a file that changed
/// while it was read).
///
/// # Panics
/// Never in practice: compressing into memory cannot fail.
pub fn compress_stream<R: Read + Send>(
    mut reader: R,
    size: u64,
    compression: Compression,
    mut hash: impl FnMut(&[u8]) + Send,
) -> std::io::Result<Vec<u8>> {
    use std::sync::mpsc::{channel, sync_channel};
    // Two compressors and the reader keep two cores busy: the reader's copying and hashing take
    // about half as long as compressing.
    const COMPRESSORS: usize = 2;
    const BUFFERS: usize = COMPRESSORS + 2;
    let (full_tx, full_rx) = sync_channel::<(usize, PageBuffer, usize)>(BUFFERS);
    let full_rx = std::sync::Mutex::new(full_rx);
    let (free_tx, free_rx) = sync_channel::<PageBuffer>(BUFFERS);
    for _ in 0..BUFFERS {
        free_tx
            .send(PageBuffer::zeroed(PIECE))
            .expect("room for every buffer");
    }
    let (frame_tx, frame_rx) = channel::<(usize, Vec<u8>)>();
    let compress_pieces = || {
        loop {
            let next = full_rx.lock().map(|rx| rx.recv());
            let Ok(Ok((index, piece, filled))) = next else {
                break;
            };
            let frame = compress(&piece[..filled], compression);
            // The reader may have stopped early and gone: the buffer is then simply dropped.
            let _ = free_tx.send(piece);
            let _ = frame_tx.send((index, frame));
        }
    };
    let total = std::thread::scope(|scope| {
        let reading = scope.spawn(move || -> std::io::Result<u64> {
            let mut total = 0u64;
            for index in 0.. {
                let Ok(mut buffer) = free_rx.recv() else {
                    break;
                };
                let filled = fsutil::read_full(&mut reader, &mut buffer)?;
                total += filled as u64;
                // Nothing beyond the promised size reaches the hash or a compressor.
                if filled == 0 || total > size {
                    break;
                }
                hash(&buffer[..filled]);
                if full_tx.send((index, buffer, filled)).is_err() {
                    break;
                }
            }
            Ok(total)
        });
        let helper = scope.spawn(compress_pieces);
        compress_pieces();
        helper
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        reading
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })?;
    if total != size {
        return Err(std::io::Error::other(format!(
            "changed while it was read: {} bytes, expected {size}",
            if total > size {
                "more than".to_owned()
            } else {
                total.to_string()
            }
        )));
    }
    let mut frames: Vec<_> = frame_rx.try_iter().collect();
    if frames.is_empty() {
        // Empty content is still one (empty) frame, as `compress` makes it.
        return Ok(compress(&[], compression));
    }
    frames.sort_unstable_by_key(|(index, _)| *index);
    let mut payload = Vec::with_capacity(frames.iter().map(|(_, frame)| frame.len()).sum());
    for (_, frame) in frames {
        payload.extend_from_slice(&frame);
    }
    Ok(payload)
}

thread_local! {
    /// Each thread's zstd context: a backup compresses thousands of 1 MiB chunks, and a new
    /// context for each allocated and cleared its tables every time.
    static ZSTD: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// A zstd context at [`ZSTD_LEVEL`] that adds its content checksum to every frame.
fn zstd_compressor() -> zstd::bulk::Compressor<'static> {
    let mut compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("zstd context");
    compressor
        .set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
        .expect("zstd option");
    compressor
}

/// `data` compressed into one frame with its content checksum. zstd compresses in one call: its
/// streaming interface copies the input into its window and takes a slower path at the seams.
///
/// # Panics
/// Never in practice: compressing into memory cannot fail.
fn compress(data: &[u8], compression: Compression) -> Vec<u8> {
    match compression {
        Compression::None => data.to_vec(),
        Compression::Zstd => ZSTD.with_borrow_mut(|compressor| {
            compressor
                .get_or_insert_with(zstd_compressor)
                .compress(data)
                .expect("compressing into memory")
        }),
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new().content_checksum(true);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            encoder.write_all(data).expect("compressing into memory");
            encoder.finish().expect("compressing into memory")
        }
    }
}

/// Reads an envelope's header, from at least its first bytes; returns the header and where the
/// payload starts.
///
/// # Errors
/// When the bytes are not an envelope.
///
/// # Panics
/// Never: lengths are checked before slicing.
pub fn read_header(bytes: &[u8]) -> Result<(Header, usize), EnvelopeError> {
    let malformed = |m: &str| EnvelopeError::Malformed(m.to_owned());
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(malformed("bad magic"));
    }
    let len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
    if len > 4096 || bytes.len() < 12 + len {
        return Err(malformed("bad header length"));
    }
    let header: Header = serde_json::from_slice(&bytes[12..12 + len])
        .map_err(|e| EnvelopeError::Malformed(format!("header: {e}")))?;
    Ok((header, 12 + len))
}

/// Opens a plain envelope: decompresses the payload and checks its size and SHA-256.
///
/// # Errors
/// When the envelope is malformed, encrypted, does not decompress, or does not match its checksum.
pub fn open(bytes: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let (header, start) = read_header(bytes)?;
    let payload = &bytes[start..];
    match header {
        Header::Encrypted { .. } => Err(EnvelopeError::NoKey),
        Header::Plain {
            compression,
            size,
            sha256,
        } => {
            let data = decompress(payload, compression, size)?;
            check_content(&data, size, sha256)?;
            Ok(data)
        }
        Header::PlainPayload {
            compression,
            size,
            payload_sha256,
            content_xxh3,
        } => {
            let actual = Sha256Digest::of(payload);
            if actual != payload_sha256 {
                return Err(EnvelopeError::Mismatch {
                    expected: format!("payload sha256 {payload_sha256}"),
                    actual: format!("payload sha256 {actual}"),
                });
            }
            let data = decompress(payload, compression, size)?;
            let actual = ContentHash::of(&data);
            if data.len() as u64 != size || actual != content_xxh3 {
                return Err(EnvelopeError::Mismatch {
                    expected: format!("{size} bytes, xxh3 {content_xxh3}"),
                    actual: format!("{} bytes, xxh3 {actual}", data.len()),
                });
            }
            Ok(data)
        }
    }
}

/// Decompresses `payload`, which holds content of `size` bytes (by its header).
fn decompress(
    payload: &[u8],
    compression: Compression,
    size: u64,
) -> Result<Vec<u8>, EnvelopeError> {
    // Never allocate more than the header claims plus one byte: a damaged size must not exhaust memory.
    let limit = size.saturating_add(1);
    let mut data = Vec::with_capacity(usize::try_from(size.min(64 << 20)).unwrap_or(0));
    let decompressed = match compression {
        Compression::None => {
            data.extend_from_slice(payload);
            Ok(())
        }
        Compression::Zstd => zstd::Decoder::new(payload)
            .and_then(|d| d.take(limit).read_to_end(&mut data))
            .map(drop),
        Compression::Lz4 => open_lz4_frames(payload, limit, &mut data),
    };
    decompressed.map_err(|e| EnvelopeError::Decompress(e.to_string()))?;
    Ok(data)
}

/// Decompresses concatenated LZ4 frames (a pushed file has one per piece), at most `limit` bytes
/// in all. `lz4_flex`'s decoder ends at the end of a frame; it reads only what its frame holds, so
/// the next one starts where it stopped.
fn open_lz4_frames(mut payload: &[u8], limit: u64, data: &mut Vec<u8>) -> std::io::Result<()> {
    while !payload.is_empty() && (data.len() as u64) < limit {
        let room = limit - data.len() as u64;
        lz4_flex::frame::FrameDecoder::new(&mut payload)
            .take(room)
            .read_to_end(data)?;
    }
    Ok(())
}

/// Checks opened content against the size and SHA-256 its header records.
fn check_content(data: &[u8], size: u64, sha256: Sha256Digest) -> Result<(), EnvelopeError> {
    let actual = Sha256Digest::of(data);
    if data.len() as u64 != size || actual != sha256 {
        return Err(EnvelopeError::Mismatch {
            expected: format!("{size} bytes, sha256 {sha256}"),
            actual: format!("{} bytes, sha256 {actual}", data.len()),
        });
    }
    Ok(())
}

/// What opening many objects in a row reuses (a restore's chunks): one zstd context and one output
/// buffer. Opening each with [`open`] creates a streaming decoder with its own window and a fresh
/// buffer: page faults and zeroing that took more of a restore's CPU than decompressing did.
pub struct Scratch {
    zstd: zstd::bulk::Decompressor<'static>,
    data: Vec<u8>,
}

impl Scratch {
    /// Empty; grows to the largest content opened.
    ///
    /// # Panics
    /// When zstd cannot allocate a context.
    #[must_use]
    pub fn new() -> Self {
        Self {
            zstd: zstd::bulk::Decompressor::new().expect("a zstd decompression context"),
            data: Vec::new(),
        }
    }

    /// Keeps `data` as the last content opened.
    pub fn hold(&mut self, data: Vec<u8>) -> &[u8] {
        self.data = data;
        &self.data
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

/// The largest content [`open_into`] decompresses in one call: it needs the room up front, so a
/// damaged header's size must not decide an allocation. Chunks are 1 MiB.
const ONE_SHOT_LIMIT: u64 = 64 << 20;

/// [`open`], reusing `scratch`: the content stays in it until the next call.
///
/// # Errors
/// As [`open`].
pub fn open_into<'s>(bytes: &[u8], scratch: &'s mut Scratch) -> Result<&'s [u8], EnvelopeError> {
    let (header, start) = read_header(bytes)?;
    let Header::Plain {
        compression: Compression::Zstd,
        size,
        sha256,
    } = header
    else {
        return open(bytes).map(|data| scratch.hold(data));
    };
    let Some(room) = usize::try_from(size)
        .ok()
        .filter(|_| size <= ONE_SHOT_LIMIT)
    else {
        return open(bytes).map(|data| scratch.hold(data));
    };
    scratch.data.clear();
    scratch.data.reserve(room);
    // A payload that holds more than the header says does not fit, and fails here.
    scratch
        .zstd
        .decompress_to_buffer(&bytes[start..], &mut scratch.data)
        .map_err(|e| EnvelopeError::Decompress(e.to_string()))?;
    check_content(&scratch.data, size, sha256)?;
    Ok(&scratch.data)
}

/// The identity of an archive: the cluster it belongs to. Written by the first push or backup;
/// every later one checks it, so that another cluster's WAL never lands in this archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveInfo {
    /// The cluster's system identifier (from `pg_control`), as a decimal string like PostgreSQL shows it.
    pub system_identifier: String,
    /// PostgreSQL major version.
    pub pg_version: u32,
    /// WAL segment size in bytes.
    pub wal_segment_size: u64,
    /// `age:<fingerprint>` when objects are encrypted (the fingerprint names the keys, not them);
    /// absent when they are not. Mixing the two in one archive is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
}

/// Key of a WAL file.
pub fn wal_key(file_name: &str) -> String {
    format!("wal/{file_name}")
}

/// Key of a chunk.
pub fn chunk_key(sha256: &Sha256Digest) -> String {
    let hex = sha256.to_hex();
    format!("chunks/{}/{hex}", &hex[..2])
}

/// Key of an object of a backup.
pub fn backup_key(name: &str, object: &str) -> String {
    format!("backups/{name}/{object}")
}

/// The completion marker's name within a backup.
pub const BACKUP_MARKER: &str = "backup.json";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_with_every_compression() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for compression in [Compression::Zstd, Compression::Lz4, Compression::None] {
            let sealed = seal(&data, compression);
            assert!(
                matches!(read_header(&sealed).unwrap().0, Header::Plain { compression: c, .. } if c == compression)
            );
            assert_eq!(open(&sealed).unwrap(), data);
        }
        assert!(seal(&data, Compression::Zstd).len() < data.len() / 2);
        assert_eq!(open(&seal(b"", Compression::Zstd)).unwrap(), b"");
    }

    #[test]
    fn damage_is_detected_anywhere() {
        let data = vec![42u8; 10_000];
        for compression in [Compression::Zstd, Compression::Lz4, Compression::None] {
            let sealed = seal(&data, compression);
            let (_, start) = read_header(&sealed).unwrap();
            for position in [0, 9, start + 1, sealed.len() - 1] {
                let mut damaged = sealed.clone();
                damaged[position] ^= 0x40;
                assert!(open(&damaged).is_err(), "{compression:?} byte {position}");
            }
            assert!(
                open(&sealed[..sealed.len() - 1]).is_err(),
                "{compression:?} truncated"
            );
        }
    }

    #[test]
    fn open_into_reuses_its_scratch_and_catches_what_open_catches() {
        let mut scratch = Scratch::new();
        for (n, compression) in [Compression::Zstd, Compression::Lz4, Compression::None]
            .into_iter()
            .enumerate()
        {
            let data = vec![u8::try_from(n).unwrap(); 300_000 - n * 1000];
            let sealed = seal(&data, compression);
            assert_eq!(open_into(&sealed, &mut scratch).unwrap(), data);
            let mut damaged = sealed.clone();
            *damaged.last_mut().unwrap() ^= 0x40;
            assert!(
                open_into(&damaged, &mut scratch).is_err(),
                "{compression:?}"
            );
        }
        // A header that claims less than the payload holds: the content does not fit, and is
        // refused rather than truncated or grown into.
        let data = vec![7u8; 100_000];
        let (sha256, payload) = hash_while_compressing(&data, Compression::Zstd, Sha256Digest::of);
        let lying = seal_compressed(sha256, data.len() - 1, Compression::Zstd, &payload);
        assert!(open_into(&lying, &mut scratch).is_err());
        let honest = seal_compressed(sha256, data.len(), Compression::Zstd, &payload);
        assert_eq!(open_into(&honest, &mut scratch).unwrap(), data);
    }

    #[test]
    fn streamed_content_opens_like_sealed_content() {
        // Several pieces and a short last one, and nothing, with every compression.
        let long: Vec<u8> = (0..5 * PIECE / 2)
            .map(|i| u8::try_from((i / 7) % 251).unwrap())
            .collect();
        for (data, compression) in [Compression::Zstd, Compression::Lz4, Compression::None]
            .into_iter()
            .flat_map(|c| [(long.clone(), c), (Vec::new(), c)])
        {
            let mut hashed = Vec::new();
            let payload = compress_stream(&data[..], data.len() as u64, compression, |piece| {
                hashed.extend_from_slice(piece);
            })
            .unwrap();
            assert_eq!(
                hashed, data,
                "{compression:?}: the hash sees everything, in order"
            );
            let sealed =
                seal_compressed(Sha256Digest::of(&data), data.len(), compression, &payload);
            assert_eq!(open(&sealed).unwrap(), data, "{compression:?}");
            assert_eq!(open_into(&sealed, &mut Scratch::new()).unwrap(), data);
        }
    }

    #[test]
    fn payload_checked_envelopes_open_and_catch_damage_to_payload_or_content() {
        let data: Vec<u8> = (0..3 * PIECE / 2)
            .map(|i| u8::try_from((i / 5) % 253).unwrap())
            .collect();
        let mut content = ContentHash::default();
        content.update(&data);
        let mut scratch = Scratch::new();
        for compression in [Compression::Zstd, Compression::Lz4, Compression::None] {
            let mut streamed = ContentHash::default();
            let payload = compress_stream(&data[..], data.len() as u64, compression, |piece| {
                streamed.update(piece);
            })
            .unwrap();
            assert_eq!(streamed.hex(), content.hex(), "{compression:?}");
            let (id, sealed) = seal_payload(data.len() as u64, &content, compression, &payload);
            assert_eq!(id, Sha256Digest::of(&payload), "{compression:?}");
            let (header, start) = read_header(&sealed).unwrap();
            assert!(
                matches!(header, Header::PlainPayload { .. }),
                "{compression:?}"
            );
            assert_eq!(open(&sealed).unwrap(), data, "{compression:?}");
            assert_eq!(open_into(&sealed, &mut scratch).unwrap(), data);
            for position in [start, start + payload.len() / 2, sealed.len() - 1] {
                let mut damaged = sealed.clone();
                damaged[position] ^= 0x08;
                assert!(
                    matches!(open(&damaged), Err(EnvelopeError::Mismatch { .. })),
                    "{compression:?} byte {position}"
                );
            }
            // A header whose size is not the content's: refused even with the right payload.
            let (_, lying) = seal_payload(data.len() as u64 - 1, &content, compression, &payload);
            assert!(open(&lying).is_err(), "{compression:?}");
        }
        // Damage done before the payload was hashed (as a faulty compressor or memory would do)
        // is caught as the content is checked: a damaged frame, and sound frames put together in
        // the wrong order, which their own checksums cannot tell.
        let mut frames =
            compress_stream(&data[..], data.len() as u64, Compression::Zstd, |_| {}).unwrap();
        let last = frames.len() - 1;
        frames[last] ^= 0x01;
        let (_, sealed) = seal_payload(data.len() as u64, &content, Compression::Zstd, &frames);
        assert!(matches!(open(&sealed), Err(EnvelopeError::Decompress(_))));
        let (first, second) = (&data[..PIECE / 2], &data[PIECE..PIECE + PIECE / 2]);
        let mut in_order = ContentHash::default();
        in_order.update(first);
        in_order.update(second);
        for compression in [Compression::Zstd, Compression::Lz4] {
            let swapped = [compress(second, compression), compress(first, compression)].concat();
            let (_, sealed) = seal_payload(PIECE as u64, &in_order, compression, &swapped);
            assert!(
                matches!(open(&sealed), Err(EnvelopeError::Mismatch { .. })),
                "{compression:?}"
            );
        }
    }

    #[test]
    fn a_stream_of_another_size_than_promised_is_refused() {
        let data = vec![1u8; PIECE + 10];
        for promised in [data.len() as u64 - 1, data.len() as u64 + 1, 0] {
            let error =
                compress_stream(&data[..], promised, Compression::Zstd, |_| {}).unwrap_err();
            assert!(
                error.to_string().contains("changed while it was read"),
                "{error}"
            );
        }
    }

    #[test]
    fn compression_names_parse() {
        assert_eq!("zstd".parse::<Compression>().unwrap(), Compression::Zstd);
        assert!("brotli".parse::<Compression>().is_err());
    }
}
