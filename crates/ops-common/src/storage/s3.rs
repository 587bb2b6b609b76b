//! The S3 store, through `aws-sdk-s3`, for AWS and S3-compatible stores.
//!
//! The SDK's own retries are off and its request checksums are sent only where an operation requires
//! them: its default CRC32 on every put switches streaming bodies to `aws-chunked` encoding, which
//! several S3-compatible stores reject or store verbatim. Instead every body carries a Content-MD5,
//! which every S3 implementation checks (a mismatch is `400 BadDigest`), and the returned ETag is
//! compared with it. Retries and timeouts are this module's, so that their bounds are the settings'
//! and every failure is classified the same way as the local store's.

use std::time::SystemTime;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use base64::Engine as _;
use bytes::Bytes;
use md5::{Digest as _, Md5};

use super::{
    AttemptError, ByteRange, ObjectMeta, ObjectReader, ObjectStore, PutBody, PutReceipt,
    RetryPolicy, Sha256Digest, StoreOptions, read_chunk, sha256_reader, validate_key,
    validate_prefix, with_retry,
};
use crate::error::{Error, Result, StorageErrorKind};

/// User-metadata key holding an object's SHA-256 (`x-amz-meta-sha256`).
const SHA256_METADATA: &str = "sha256";

/// A bucket (and key prefix) in an S3-compatible store.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    url: String,
    options: StoreOptions,
}

/// Classifies an SDK failure: 404 is not-found (except a missing bucket, which is a configuration
/// error and must never pass for a missing object), 408/429/5xx and network failures are
/// transient, the rest permanent.
fn classify<E>(err: &SdkError<E, HttpResponse>) -> AttemptError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("");
            let message = service.err().message().unwrap_or("");
            let status = service.raw().status().as_u16();
            let text = format!(
                "{} (HTTP {status}) {message}",
                if code.is_empty() { "error" } else { code }
            )
            .trim_end()
            .to_owned();
            match (status, code) {
                (404, "NoSuchBucket") => AttemptError::permanent(text),
                (404, _) => AttemptError::not_found(),
                (408 | 429 | 500..=599, _)
                | (_, "SlowDown" | "RequestTimeout" | "InternalError" | "BadDigest") => {
                    AttemptError::transient(text)
                }
                _ => AttemptError::permanent(text),
            }
        }
        SdkError::DispatchFailure(failure) if failure.is_user() => {
            AttemptError::permanent(crate::error::one_line(err))
        }
        SdkError::ConstructionFailure(_) => AttemptError::permanent(crate::error::one_line(err)),
        _ => AttemptError::transient(crate::error::one_line(err)),
    }
}

/// `parts` one after the other, in one buffer (a single part as it is).
fn joined(parts: &[Bytes]) -> Bytes {
    if let [single] = parts {
        return single.clone();
    }
    let mut whole = Vec::with_capacity(parts.iter().map(Bytes::len).sum());
    for part in parts {
        whole.extend_from_slice(part);
    }
    Bytes::from(whole)
}

fn md5_base64(data: &[u8]) -> (String, String) {
    let digest = Md5::digest(data);
    (
        base64::engine::general_purpose::STANDARD.encode(digest),
        hex::encode(digest),
    )
}

/// Checks an ETag against the MD5 sent, when the ETag is a plain MD5 (it is not for encrypted or
/// multipart objects on some stores, and then the server's Content-MD5 check is what we rely on).
fn check_etag(etag: Option<&str>, md5_hex: &str) -> std::result::Result<(), AttemptError> {
    let Some(etag) = etag.map(|e| e.trim_matches('"')) else {
        return Ok(());
    };
    if etag.len() == 32
        && etag.bytes().all(|b| b.is_ascii_hexdigit())
        && !etag.eq_ignore_ascii_case(md5_hex)
    {
        return Err(AttemptError::transient(format!(
            "stored ETag {etag} does not match the MD5 sent ({md5_hex})"
        )));
    }
    Ok(())
}

fn to_system_time(t: Option<&aws_sdk_s3::primitives::DateTime>) -> Option<SystemTime> {
    t.and_then(|t| SystemTime::try_from(*t).ok())
}

fn metadata_sha256(
    metadata: Option<&std::collections::HashMap<String, String>>,
) -> Option<Sha256Digest> {
    metadata?
        .get(SHA256_METADATA)
        .and_then(|v| Sha256Digest::from_hex(v).ok())
}

/// Where the parts of a multipart upload come from.
enum PartSource {
    Bytes(Bytes, usize),
    File(std::fs::File),
    /// A stream, with a first part already read to decide between a single and a multipart put.
    Stream(Option<Bytes>, Option<Box<dyn std::io::Read + Send>>),
}

impl PartSource {
    /// The next part, or `None` at the end.
    async fn next(&mut self, part_size: u64) -> std::io::Result<Option<Bytes>> {
        let chunk = match self {
            Self::Bytes(bytes, offset) => {
                let end =
                    (*offset + usize::try_from(part_size).unwrap_or(usize::MAX)).min(bytes.len());
                let chunk = bytes.slice(*offset..end);
                *offset = end;
                chunk
            }
            Self::File(file) => {
                let reader: Box<dyn std::io::Read + Send> = Box::new(file.try_clone()?);
                Bytes::from(read_chunk(reader, part_size).await?.1)
            }
            Self::Stream(pending @ Some(_), _) => pending.take().expect("matched Some"),
            Self::Stream(None, slot) => {
                let reader = slot.take().expect("stream present between parts");
                let (reader, chunk) = read_chunk(reader, part_size).await?;
                *slot = Some(reader);
                Bytes::from(chunk)
            }
        };
        Ok((!chunk.is_empty()).then_some(chunk))
    }
}

impl S3Store {
    /// A store for `bucket` under `prefix`.
    ///
    /// # Errors
    /// When the access key or the secret key is missing.
    pub fn new(bucket: &str, prefix: &str, options: &StoreOptions) -> Result<Self> {
        let s3 = &options.s3;
        let missing = |name: &str| Error::Setting {
            name: name.to_owned(),
            origin: String::new(),
            message: "not set; an S3 store needs static credentials".to_owned(),
        };
        let access_key = s3
            .access_key_id
            .clone()
            .ok_or_else(|| missing("AWS_ACCESS_KEY_ID"))?;
        let secret_key = s3
            .secret_access_key
            .clone()
            .ok_or_else(|| missing("AWS_SECRET_ACCESS_KEY"))?;
        let credentials = Credentials::new(
            access_key,
            secret_key,
            s3.session_token.clone(),
            None,
            "ops-settings",
        );
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(s3.region.clone()))
            .credentials_provider(credentials)
            .force_path_style(s3.force_path_style)
            .http_client(http_client)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(options.retry.connect_timeout)
                    .operation_attempt_timeout(options.retry.attempt_timeout)
                    .build(),
            )
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &s3.endpoint {
            config = config.endpoint_url(endpoint);
        }
        let prefix = prefix.trim_matches('/').to_owned();
        let url = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        Ok(Self {
            client: Client::from_conf(config.build()),
            bucket: bucket.to_owned(),
            prefix,
            url,
            options: options.clone(),
        })
    }

    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    fn policy(&self) -> &RetryPolicy {
        &self.options.retry
    }

    fn key_error(&self, op: &'static str, key: &str, message: String) -> Error {
        Error::Storage {
            op,
            key: key.to_owned(),
            store: self.url.clone(),
            kind: StorageErrorKind::Permanent,
            message,
        }
    }

    /// Bytes in memory: one put, or a multipart upload above the threshold.
    async fn put_bytes(&self, key: &str, data: Bytes) -> Result<PutReceipt> {
        if data.len() as u64 <= self.options.multipart_threshold {
            return self.put_single(key, data).await;
        }
        let sha = Sha256Digest::of(&data);
        self.put_multipart(key, PartSource::Bytes(data, 0), Some(sha))
            .await
    }

    async fn put_single(&self, key: &str, data: Bytes) -> Result<PutReceipt> {
        let (md5_b64, md5_hex) = md5_base64(&data);
        let sha256 = Sha256Digest::of(&data);
        let full_key = self.full_key(key);
        with_retry(self.policy(), "put", key, &self.url, || async {
            let out = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&full_key)
                .content_md5(&md5_b64)
                .metadata(SHA256_METADATA, sha256.to_hex())
                .body(ByteStream::from(data.clone()))
                .send()
                .await
                .map_err(|e| classify(&e))?;
            check_etag(out.e_tag(), &md5_hex)
        })
        .await?;
        Ok(PutReceipt {
            size: data.len() as u64,
        })
    }

    /// Uploads parts (several at a time) and completes the upload; on any failure the upload is
    /// aborted, so nothing becomes visible and no parts are left behind.
    async fn put_multipart(
        &self,
        key: &str,
        mut source: PartSource,
        sha256: Option<Sha256Digest>,
    ) -> Result<PutReceipt> {
        let full_key = self.full_key(key);
        let upload_id = with_retry(self.policy(), "put", key, &self.url, || async {
            let mut request = self
                .client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(&full_key);
            if let Some(sha) = sha256 {
                request = request.metadata(SHA256_METADATA, sha.to_hex());
            }
            let out = request.send().await.map_err(|e| classify(&e))?;
            out.upload_id()
                .map(str::to_owned)
                .ok_or_else(|| AttemptError::permanent("no upload id in the response"))
        })
        .await?;
        let result = self
            .upload_parts(key, &full_key, &upload_id, &mut source)
            .await;
        let outcome = match result {
            Ok((parts, receipt)) => {
                let completed = CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build();
                with_retry(self.policy(), "put", key, &self.url, || async {
                    self.client
                        .complete_multipart_upload()
                        .bucket(&self.bucket)
                        .key(&full_key)
                        .upload_id(&upload_id)
                        .multipart_upload(completed.clone())
                        .send()
                        .await
                        .map_err(|e| classify(&e))
                })
                .await
                .map(|_| receipt)
            }
            Err(e) => Err(e),
        };
        if outcome.is_err() {
            let abort = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&full_key)
                .upload_id(&upload_id);
            if let Err(e) = tokio::time::timeout(self.policy().attempt_timeout, abort.send()).await
            {
                tracing::warn!(key, "could not abort the multipart upload {upload_id}: {e}");
            }
        }
        outcome
    }

    async fn upload_parts(
        &self,
        key: &str,
        full_key: &str,
        upload_id: &str,
        source: &mut PartSource,
    ) -> Result<(Vec<CompletedPart>, PutReceipt)> {
        let mut size = 0u64;
        let mut in_flight = tokio::task::JoinSet::new();
        let mut parts = Vec::new();
        let mut part_number = 0i32;
        loop {
            let chunk = source
                .next(self.options.part_size)
                .await
                .map_err(|e| self.key_error("put", key, format!("reading the content: {e}")))?;
            let Some(chunk) = chunk else { break };
            size += chunk.len() as u64;
            part_number += 1;
            while in_flight.len() >= self.options.part_concurrency.max(1) {
                parts.push(
                    in_flight
                        .join_next()
                        .await
                        .expect("non-empty")
                        .expect("part upload task panicked")?,
                );
            }
            let this = self.clone();
            let (key, full_key, upload_id) =
                (key.to_owned(), full_key.to_owned(), upload_id.to_owned());
            in_flight.spawn(async move {
                this.upload_part(&key, &full_key, &upload_id, part_number, chunk)
                    .await
            });
        }
        while let Some(done) = in_flight.join_next().await {
            parts.push(done.expect("part upload task panicked")?);
        }
        parts.sort_by_key(CompletedPart::part_number);
        Ok((parts, PutReceipt { size }))
    }

    async fn upload_part(
        &self,
        key: &str,
        full_key: &str,
        upload_id: &str,
        part_number: i32,
        chunk: Bytes,
    ) -> Result<CompletedPart> {
        let (md5_b64, md5_hex) = md5_base64(&chunk);
        with_retry(self.policy(), "put", key, &self.url, || async {
            let out = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(full_key)
                .upload_id(upload_id)
                .part_number(part_number)
                .content_md5(&md5_b64)
                .body(ByteStream::from(chunk.clone()))
                .send()
                .await
                .map_err(|e| classify(&e))?;
            check_etag(out.e_tag(), &md5_hex)?;
            Ok(CompletedPart::builder()
                .part_number(part_number)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .build())
        })
        .await
    }
}

#[async_trait::async_trait]
impl ObjectStore for S3Store {
    fn url(&self) -> String {
        self.url.clone()
    }

    async fn put(&self, key: &str, body: PutBody) -> Result<PutReceipt> {
        validate_key(key).map_err(|m| self.key_error("put", key, m))?;
        let threshold = self.options.multipart_threshold;
        match body {
            PutBody::Bytes(data) => self.put_bytes(key, data).await,
            PutBody::Parts(parts) => self.put_bytes(key, joined(&parts)).await,
            PutBody::File(path) => {
                let io_error = |e: std::io::Error| Error::io(&path, e);
                let size = tokio::fs::metadata(&path).await.map_err(io_error)?.len();
                if size <= threshold {
                    let data = tokio::fs::read(&path).await.map_err(io_error)?;
                    return self.put_single(key, Bytes::from(data)).await;
                }
                // The digest goes into the metadata, which is sent first: hash the file in a first
                // pass (the second pass then mostly reads the page cache).
                let hash_path = path.clone();
                let sha = tokio::task::spawn_blocking(move || {
                    sha256_reader(&mut std::fs::File::open(&hash_path)?)
                })
                .await
                .map_err(|e| io_error(std::io::Error::other(e)))?
                .map_err(io_error)?;
                let file = std::fs::File::open(&path).map_err(io_error)?;
                self.put_multipart(key, PartSource::File(file), Some(sha))
                    .await
            }
            PutBody::Stream(reader) => {
                // Read one part; a stream that ends within it is a single put with a known digest.
                let (reader, first) = read_chunk(reader, self.options.part_size)
                    .await
                    .map_err(|e| self.key_error("put", key, format!("reading the content: {e}")))?;
                if (first.len() as u64) < self.options.part_size {
                    return self.put_single(key, Bytes::from(first)).await;
                }
                let source = PartSource::Stream(Some(Bytes::from(first)), Some(reader));
                self.put_multipart(key, source, None).await
            }
        }
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<ObjectReader> {
        validate_key(key).map_err(|m| self.key_error("get", key, m))?;
        let header = match range {
            None => None,
            Some(ByteRange {
                start,
                end: Some(end),
            }) if end <= start => {
                return Ok(Box::pin(tokio::io::empty()));
            }
            Some(ByteRange {
                start,
                end: Some(end),
            }) => Some(format!("bytes={start}-{}", end - 1)),
            Some(ByteRange { start, end: None }) => Some(format!("bytes={start}-")),
        };
        let full_key = self.full_key(key);
        let out = with_retry(self.policy(), "get", key, &self.url, || async {
            self.client
                .get_object()
                .bucket(&self.bucket)
                .key(&full_key)
                .set_range(header.clone())
                .send()
                .await
                .map_err(|e| classify(&e))
        })
        .await?;
        Ok(Box::pin(out.body.into_async_read()))
    }

    async fn get_bytes(&self, key: &str) -> Result<Bytes> {
        validate_key(key).map_err(|m| self.key_error("get", key, m))?;
        let full_key = self.full_key(key);
        let (data, recorded) = with_retry(self.policy(), "get", key, &self.url, || async {
            let out = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&full_key)
                .send()
                .await
                .map_err(|e| classify(&e))?;
            let recorded = metadata_sha256(out.metadata());
            let data = out
                .body
                .collect()
                .await
                .map_err(|e| AttemptError::transient(e.to_string()))?
                .into_bytes();
            Ok((data, recorded))
        })
        .await?;
        if let Some(expected) = recorded {
            let actual = Sha256Digest::of(&data);
            if actual != expected {
                return Err(Error::Integrity {
                    what: self.describe(key),
                    expected: expected.to_hex(),
                    actual: actual.to_hex(),
                });
            }
        }
        Ok(data)
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        validate_key(key).map_err(|m| self.key_error("head", key, m))?;
        let full_key = self.full_key(key);
        let out = with_retry(self.policy(), "head", key, &self.url, || async {
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(&full_key)
                .send()
                .await
                .map_err(|e| classify(&e))
        })
        .await?;
        Ok(ObjectMeta {
            key: key.to_owned(),
            size: out
                .content_length()
                .and_then(|l| u64::try_from(l).ok())
                .unwrap_or(0),
            last_modified: to_system_time(out.last_modified()),
            sha256: metadata_sha256(out.metadata()),
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        validate_prefix(prefix).map_err(|m| self.key_error("list", prefix, m))?;
        let full_prefix = if self.prefix.is_empty() {
            prefix.to_owned()
        } else {
            format!("{}/{prefix}", self.prefix)
        };
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = with_retry(self.policy(), "list", prefix, &self.url, || async {
                self.client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(&full_prefix)
                    .max_keys(self.options.list_page_size)
                    .set_continuation_token(token.clone())
                    .send()
                    .await
                    .map_err(|e| classify(&e))
            })
            .await?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                out.push(ObjectMeta {
                    key: key.get(strip..).unwrap_or_default().to_owned(),
                    size: object
                        .size()
                        .and_then(|s| u64::try_from(s).ok())
                        .unwrap_or(0),
                    last_modified: to_system_time(object.last_modified()),
                    sha256: None,
                });
            }
            token = page.next_continuation_token().map(str::to_owned);
            if token.is_none() || page.is_truncated() != Some(true) {
                break;
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        for key in keys {
            validate_key(key).map_err(|m| self.key_error("delete", key, m))?;
        }
        // DeleteObjects takes at most 1,000 keys per request.
        for batch in keys.chunks(1000) {
            let objects = batch
                .iter()
                .map(|k| ObjectIdentifier::builder().key(self.full_key(k)).build())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| self.key_error("delete", &batch[0], e.to_string()))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| self.key_error("delete", &batch[0], e.to_string()))?;
            let out = with_retry(self.policy(), "delete", &batch[0], &self.url, || async {
                self.client
                    .delete_objects()
                    .bucket(&self.bucket)
                    .delete(delete.clone())
                    .send()
                    .await
                    .map_err(|e| classify(&e))
            })
            .await?;
            if let Some(failed) = out.errors().first() {
                return Err(self.key_error(
                    "delete",
                    failed.key().unwrap_or_default(),
                    format!(
                        "{} of {} deletions failed; first: {} {}",
                        out.errors().len(),
                        batch.len(),
                        failed.code().unwrap_or_default(),
                        failed.message().unwrap_or_default()
                    ),
                ));
            }
        }
        Ok(())
    }
}
