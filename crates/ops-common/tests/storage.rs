//! The storage suite: the same cases on the local store and on a real S3 server (s3s-fs on
//! 127.0.0.1), through the `ObjectStore` trait the tools use.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ops_common::StorageErrorKind;
use ops_common::storage::{
    ByteRange, LocalStore, ObjectStore, PutBody, RetryPolicy, S3Options, S3Store, Sha256Digest,
    StoreOptions,
};
use ops_testkit::{Fault, FaultProxy, S3_ACCESS_KEY, S3_SECRET_KEY, S3Server, TempDir};

/// A place to open stores on, and to reach behind them to damage what they stored.
trait Backend {
    fn store(&self, options: StoreOptions) -> Arc<dyn ObjectStore>;
    /// The file holding an object's bytes.
    fn stored_file(&self, key: &str) -> PathBuf;
}

struct Local {
    dir: TempDir,
}

impl Local {
    fn new() -> Self {
        Self {
            dir: TempDir::new("store"),
        }
    }
}

impl Backend for Local {
    fn store(&self, options: StoreOptions) -> Arc<dyn ObjectStore> {
        Arc::new(LocalStore::new(self.dir.path().join("root"), options.retry))
    }

    fn stored_file(&self, key: &str) -> PathBuf {
        self.dir.path().join("root").join(key)
    }
}

struct S3 {
    server: S3Server,
    bucket: String,
}

const S3_PREFIX: &str = "site/backups";

impl S3 {
    fn new() -> Self {
        let server = S3Server::start();
        let bucket = server.bucket();
        Self { server, bucket }
    }

    fn options_for(endpoint: String, mut options: StoreOptions) -> StoreOptions {
        options.s3 = S3Options {
            access_key_id: Some(S3_ACCESS_KEY.to_owned()),
            secret_access_key: Some(S3_SECRET_KEY.to_owned()),
            session_token: None,
            region: "us-east-1".to_owned(),
            endpoint: Some(endpoint),
            force_path_style: true,
        };
        options
    }

    fn store_at(endpoint: String, bucket: &str, options: StoreOptions) -> Arc<dyn ObjectStore> {
        Arc::new(S3Store::new(bucket, S3_PREFIX, &Self::options_for(endpoint, options)).unwrap())
    }
}

impl Backend for S3 {
    fn store(&self, options: StoreOptions) -> Arc<dyn ObjectStore> {
        Self::store_at(self.server.endpoint(), &self.bucket, options)
    }

    fn stored_file(&self, key: &str) -> PathBuf {
        self.server
            .object_path(&self.bucket, &format!("{S3_PREFIX}/{key}"))
    }
}

/// Small parts so that multipart uploads happen with a few MiB (S3's minimum part is 5 MiB).
fn small_parts() -> StoreOptions {
    StoreOptions {
        multipart_threshold: 6 << 20,
        part_size: 5 << 20,
        ..StoreOptions::default()
    }
}

/// Deterministic pseudo-random bytes.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24).to_le_bytes()[0]
        })
        .collect()
}

fn kind(err: &ops_common::Error) -> Option<StorageErrorKind> {
    err.storage_kind()
}

async fn round_trip(backend: &dyn Backend) {
    let store = backend.store(StoreOptions::default());
    let content = data(100_000, 1);
    let receipt = store
        .put(
            "wal/000000010000000000000001",
            PutBody::from(content.clone()),
        )
        .await
        .unwrap();
    assert_eq!(receipt.size, 100_000);
    assert_eq!(
        store
            .get_bytes("wal/000000010000000000000001")
            .await
            .unwrap(),
        content
    );
    let meta = store.head("wal/000000010000000000000001").await.unwrap();
    assert_eq!(meta.size, 100_000);
    assert!(meta.last_modified.is_some());

    // A file body and a streaming read.
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), &content[..5000]).unwrap();
    store
        .put("files/a", PutBody::File(tmp.path().to_path_buf()))
        .await
        .unwrap();
    let reader = store.get("files/a", None).await.unwrap();
    assert_eq!(
        ops_common::storage::read_to_end(&*store, "files/a", reader)
            .await
            .unwrap(),
        &content[..5000]
    );

    // Replacing an object.
    store
        .put("files/a", PutBody::from(b"second".to_vec()))
        .await
        .unwrap();
    assert_eq!(store.get_bytes("files/a").await.unwrap(), &b"second"[..]);

    // Empty objects are objects.
    store
        .put("files/empty", PutBody::from(Vec::new()))
        .await
        .unwrap();
    assert_eq!(store.head("files/empty").await.unwrap().size, 0);
    assert!(store.get_bytes("files/empty").await.unwrap().is_empty());

    // Pieces are stored one after the other: small ones, an empty one, one larger than the local
    // store's write buffer.
    let parts = [0..10, 10..10, 10..90_000, 90_000..100_000]
        .map(|range| Bytes::copy_from_slice(&content[range]))
        .to_vec();
    let receipt = store
        .put("files/parts", PutBody::Parts(parts))
        .await
        .unwrap();
    assert_eq!(receipt.size, 100_000);
    assert_eq!(store.get_bytes("files/parts").await.unwrap(), content);

    // Missing objects are "not found", never anything else.
    for err in [
        store.get_bytes("files/missing").await.unwrap_err(),
        store.head("files/missing").await.unwrap_err(),
    ] {
        assert_eq!(kind(&err), Some(StorageErrorKind::NotFound), "{err}");
    }
    assert!(
        store
            .get("files/missing", None)
            .await
            .err()
            .expect("missing")
            .is_not_found()
    );
    assert!(!store.exists("files/missing").await.unwrap());
    assert!(store.exists("files/a").await.unwrap());

    // Invalid keys are refused before any request.
    for bad in ["", "/abs", "a/../b", "a//b", ".tmp/x"] {
        assert_eq!(
            kind(&store.put(bad, PutBody::from(vec![1])).await.unwrap_err()),
            Some(StorageErrorKind::Permanent)
        );
    }
}

async fn ranges(backend: &dyn Backend) {
    let store = backend.store(StoreOptions::default());
    let content = data(10_000, 2);
    store
        .put("r/obj", PutBody::from(content.clone()))
        .await
        .unwrap();
    let read = |range| {
        let store = store.clone();
        async move {
            let reader = store.get("r/obj", Some(range)).await?;
            ops_common::storage::read_to_end(&*store, "r/obj", reader).await
        }
    };
    assert_eq!(
        read(ByteRange::new(10, 20)).await.unwrap(),
        &content[10..20]
    );
    assert_eq!(read(ByteRange::new(0, 1)).await.unwrap(), &content[..1]);
    assert_eq!(
        read(ByteRange::from(9_990)).await.unwrap(),
        &content[9_990..]
    );
    assert_eq!(
        read(ByteRange::new(9_000, 20_000)).await.unwrap(),
        &content[9_000..],
        "an end past the object is clipped"
    );
    assert!(read(ByteRange::new(5, 5)).await.unwrap().is_empty());
    let err = read(ByteRange::from(20_000)).await.unwrap_err();
    assert_eq!(kind(&err), Some(StorageErrorKind::Permanent), "{err}");
}

async fn pagination(backend: &dyn Backend) {
    let store = backend.store(StoreOptions::default());
    let mut tasks = tokio::task::JoinSet::new();
    let keys: Vec<String> = (0..1_005).map(|i| format!("many/{i:05}")).collect();
    for chunk in keys.chunks(64) {
        let (store, chunk) = (store.clone(), chunk.to_vec());
        tasks.spawn(async move {
            for key in chunk {
                store
                    .put(&key, PutBody::from(key.as_bytes().to_vec()))
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    store.put("other/x", PutBody::from(vec![1])).await.unwrap();

    let listed = store.list("many/").await.unwrap();
    assert_eq!(
        listed.iter().map(|m| m.key.clone()).collect::<Vec<_>>(),
        keys,
        "all 1,005 keys, sorted, prefix-relative"
    );
    assert!(listed.iter().all(|m| m.size == 10));
    assert_eq!(
        store.list("many/0001").await.unwrap().len(),
        10,
        "a prefix that ends mid-name"
    );
    assert_eq!(store.list("").await.unwrap().len(), 1_006);
    assert!(store.list("nothing/").await.unwrap().is_empty());

    // Small pages give the same answer.
    let small_pages = backend.store(StoreOptions {
        list_page_size: 7,
        ..StoreOptions::default()
    });
    assert_eq!(small_pages.list("many/").await.unwrap().len(), 1_005);

    // Batch delete past S3's 1,000-key limit, with keys that do not exist.
    let mut doomed = keys.clone();
    doomed.push("many/never-existed".to_owned());
    store.delete_many(&doomed).await.unwrap();
    assert!(store.list("many/").await.unwrap().is_empty());
    assert_eq!(store.list("").await.unwrap().len(), 1);
    store.delete("other/x").await.unwrap();
    assert!(store.list("").await.unwrap().is_empty());
}

async fn multipart(backend: &dyn Backend) {
    let store = backend.store(small_parts());
    let content = data(13 << 20, 3);
    // Parts are gathered, then go above the multipart threshold like any body.
    let halves = content.split_at(5 << 20);
    let parts = vec![
        Bytes::copy_from_slice(halves.0),
        Bytes::copy_from_slice(halves.1),
    ];
    for (key, body) in [
        ("big/bytes", PutBody::from(content.clone())),
        ("big/parts", PutBody::Parts(parts)),
    ] {
        store.put(key, body).await.unwrap();
        assert_eq!(
            store
                .get_verified(key, &Sha256Digest::of(&content))
                .await
                .unwrap(),
            content
        );
        assert_eq!(store.head(key).await.unwrap().size, 13 << 20);
    }

    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), &content).unwrap();
    let receipt = store
        .put("big/file", PutBody::File(tmp.path().to_path_buf()))
        .await
        .unwrap();
    assert_eq!(receipt.size, 13 << 20);
    assert_eq!(store.get_bytes("big/file").await.unwrap(), content);

    let receipt = store
        .put(
            "big/stream",
            PutBody::Stream(Box::new(std::io::Cursor::new(content.clone()))),
        )
        .await
        .unwrap();
    assert_eq!(receipt.size, 13 << 20);
    assert_eq!(
        store
            .get_verified("big/stream", &Sha256Digest::of(&content))
            .await
            .unwrap(),
        content
    );
    // A stream shorter than a part is a single put.
    store
        .put(
            "big/short-stream",
            PutBody::Stream(Box::new(std::io::Cursor::new(b"short".to_vec()))),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get_bytes("big/short-stream").await.unwrap(),
        &b"short"[..]
    );
}

async fn corruption_detected(backend: &dyn Backend) {
    let store = backend.store(StoreOptions::default());
    let content = data(50_000, 4);
    store
        .put("c/obj", PutBody::from(content.clone()))
        .await
        .unwrap();
    let path = backend.stored_file("c/obj");
    let mut stored = std::fs::read(&path).unwrap();
    stored[1234] ^= 0x01;
    std::fs::write(&path, stored).unwrap();
    let err = store
        .get_verified("c/obj", &Sha256Digest::of(&content))
        .await
        .unwrap_err();
    assert!(matches!(err, ops_common::Error::Integrity { .. }), "{err}");
    assert_eq!(err.exit_code(), ops_common::exit::INTEGRITY);
}

/// A reader that yields `good` bytes and then fails, like a source file on a dying disk.
struct FailingReader {
    remaining: usize,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 {
            return Err(std::io::Error::other("the disk went away"));
        }
        let n = buf.len().min(self.remaining);
        buf[..n].fill(7);
        self.remaining -= n;
        Ok(n)
    }
}

async fn interrupted_put_leaves_nothing(backend: &dyn Backend) {
    let store = backend.store(small_parts());
    for (key, good) in [("i/multipart", 12 << 20), ("i/single", 1000)] {
        let err = store
            .put(
                key,
                PutBody::Stream(Box::new(FailingReader { remaining: good })),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("the disk went away"), "{err}");
        assert!(
            store.head(key).await.unwrap_err().is_not_found(),
            "{key} must not be visible"
        );
    }
    assert!(store.list("").await.unwrap().is_empty());
    assert!(!backend.stored_file("i/multipart").exists());
}

macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod local {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(&super::Local::new()).await; })*
        }
        mod s3 {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(&super::S3::new()).await; })*
        }
    };
}

on_both_backends!(
    round_trip,
    ranges,
    pagination,
    multipart,
    corruption_detected,
    interrupted_put_leaves_nothing
);

#[tokio::test]
async fn local_store_leaves_no_staged_files_after_a_failed_put() {
    let local = Local::new();
    let store = local.store(StoreOptions::default());
    store
        .put("ok/x", PutBody::from(vec![1, 2, 3]))
        .await
        .unwrap();
    store
        .put(
            "bad/x",
            PutBody::Stream(Box::new(FailingReader { remaining: 3 << 20 })),
        )
        .await
        .unwrap_err();
    // Staged files are dot-files beside their key: none is left, and no object for the failed put.
    let mut left = Vec::new();
    let mut dirs = vec![local.dir.path().join("root")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                left.push(path);
            }
        }
    }
    assert_eq!(left, vec![local.dir.path().join("root/ok/x")]);
}

#[tokio::test]
async fn local_store_objects_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt as _;
    let local = Local::new();
    let store = local.store(StoreOptions::default());
    // Under the usual umask of 022 the defaults would be 0644 and 0755: readable by every user.
    store
        .put("backups/b1/chunk", PutBody::from(vec![7; 100]))
        .await
        .unwrap();
    let mode = |path: &str| {
        std::fs::metadata(local.dir.path().join(path))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("root/backups/b1/chunk"), 0o600);
    assert_eq!(mode("root/backups/b1"), 0o700);
    assert_eq!(mode("root/backups"), 0o700);
    assert_eq!(mode("root"), 0o700);
}

#[tokio::test]
async fn s3_object_carries_its_sha256_and_a_corrupt_one_fails_a_plain_read() {
    let s3 = S3::new();
    let store = s3.store(StoreOptions::default());
    let content = data(2000, 5);
    store
        .put("m/obj", PutBody::from(content.clone()))
        .await
        .unwrap();
    assert_eq!(
        store.head("m/obj").await.unwrap().sha256,
        Some(Sha256Digest::of(&content))
    );
    let path = s3.stored_file("m/obj");
    let mut stored = std::fs::read(&path).unwrap();
    stored[0] ^= 0xff;
    std::fs::write(&path, stored).unwrap();
    assert!(matches!(
        store.get_bytes("m/obj").await.unwrap_err(),
        ops_common::Error::Integrity { .. }
    ));
}

fn quick_failure() -> StoreOptions {
    StoreOptions {
        retry: RetryPolicy {
            retries: 2,
            attempt_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
        },
        ..small_parts()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_stopped_server_fails_fast_and_transient_then_recovers() {
    let mut s3 = S3::new();
    let store = s3.store(quick_failure());
    store.put("s/x", PutBody::from(vec![1])).await.unwrap();
    s3.server.stop();
    let started = Instant::now();
    let err = store.head("s/x").await.unwrap_err();
    assert_eq!(kind(&err), Some(StorageErrorKind::Transient), "{err}");
    assert_eq!(err.exit_code(), ops_common::exit::STORAGE_UNAVAILABLE);
    assert!(
        err.to_string().contains("gave up after 3 attempts"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    s3.server.restart();
    assert_eq!(store.get_bytes("s/x").await.unwrap(), &[1u8][..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_server_that_never_answers_times_out() {
    let s3 = S3::new();
    let proxy = FaultProxy::start(s3.server.port(), Fault::Blackhole);
    let store = S3::store_at(proxy.endpoint(), &s3.bucket, quick_failure());
    let started = Instant::now();
    let err = store
        .put("b/x", PutBody::from(vec![1; 1000]))
        .await
        .unwrap_err();
    assert_eq!(kind(&err), Some(StorageErrorKind::Transient), "{err}");
    // Three attempts of at most 2 s each, plus short backoffs.
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_connection_cut_mid_upload_leaves_nothing_and_503_is_retried() {
    let s3 = S3::new();
    let direct = s3.store(StoreOptions::default());
    let proxy = FaultProxy::start(s3.server.port(), Fault::CutAfter(64 * 1024));
    let through_proxy = S3::store_at(proxy.endpoint(), &s3.bucket, quick_failure());

    for (key, size) in [("cut/single", 1 << 20), ("cut/multipart", 11 << 20)] {
        let err = through_proxy
            .put(key, PutBody::from(data(size, 6)))
            .await
            .unwrap_err();
        assert_eq!(kind(&err), Some(StorageErrorKind::Transient), "{err}");
        assert!(
            direct.head(key).await.unwrap_err().is_not_found(),
            "{key} must not be visible"
        );
    }

    // Throttling answers are retried, then reported as transient. (A new client, so that no pooled
    // connection from before the switch carries the request.)
    proxy.set(Fault::ServiceUnavailable);
    let through_proxy = S3::store_at(proxy.endpoint(), &s3.bucket, quick_failure());
    let err = through_proxy.get_bytes("cut/single").await.unwrap_err();
    assert_eq!(kind(&err), Some(StorageErrorKind::Transient), "{err}");
    assert!(err.to_string().contains("SlowDown"), "{err}");
    proxy.set(Fault::None);
    through_proxy
        .put("cut/single", PutBody::from(vec![9; 10]))
        .await
        .unwrap();
    assert_eq!(
        direct
            .get_verified("cut/single", &Sha256Digest::of(&[9; 10]))
            .await
            .unwrap(),
        Bytes::from(vec![9; 10])
    );
}

#[tokio::test]
async fn s3_configuration_errors_are_permanent_and_never_not_found() {
    let s3 = S3::new();
    // (s3s-fs answers a GET in a missing bucket with NoSuchKey where AWS says NoSuchBucket, and
    // accepts a put; its listing answers NoSuchBucket, as AWS does.)
    let missing_bucket = S3::store_at(
        s3.server.endpoint(),
        "no-such-bucket",
        StoreOptions::default(),
    );
    let err = missing_bucket.list("").await.unwrap_err();
    assert_eq!(
        kind(&err),
        Some(StorageErrorKind::Permanent),
        "a missing bucket must not pass for a missing object: {err}"
    );
    assert!(err.to_string().contains("NoSuchBucket"), "{err}");

    let mut options = S3::options_for(s3.server.endpoint(), StoreOptions::default());
    options.s3.secret_access_key = Some("sekrit-XYZ-987".to_owned());
    let wrong_key = S3Store::new(&s3.bucket, "", &options).unwrap();
    let err = wrong_key
        .put("x", PutBody::from(vec![1]))
        .await
        .unwrap_err();
    assert_eq!(kind(&err), Some(StorageErrorKind::Permanent), "{err}");
    assert!(
        !err.to_string().contains("sekrit-XYZ-987"),
        "the secret must not appear in errors: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_puts_carry_content_md5_and_no_aws_chunked_trailer() {
    // Recent aws-sdk-s3 versions add CRC checksums by default and, for streaming bodies over plain
    // HTTP, switch to aws-chunked encoding with a trailer, which several S3-compatible stores
    // reject or store verbatim. The store must send a plain body with a Content-MD5 instead.
    let s3 = S3::new();
    let proxy = FaultProxy::start(s3.server.port(), Fault::Record);
    let store = S3::store_at(proxy.endpoint(), &s3.bucket, small_parts());
    store
        .put("h/single", PutBody::from(data(100_000, 7)))
        .await
        .unwrap();
    store
        .put("h/multi", PutBody::from(data(11 << 20, 8)))
        .await
        .unwrap();
    store
        .put(
            "h/stream",
            PutBody::Stream(Box::new(std::io::Cursor::new(data(2000, 9)))),
        )
        .await
        .unwrap();
    let sent: Vec<String> = proxy
        .recorded()
        .iter()
        .map(|b| String::from_utf8_lossy(b).to_lowercase())
        .collect();
    let requests = sent.join("\n");
    assert!(
        requests.matches("content-md5:").count() >= 4,
        "every body carries a Content-MD5:\n{requests}"
    );
    for forbidden in [
        "aws-chunked",
        "x-amz-trailer",
        "streaming-unsigned-payload-trailer",
        "x-amz-checksum-crc32",
    ] {
        assert!(
            !requests.contains(forbidden),
            "{forbidden} sent:\n{requests}"
        );
    }
}
