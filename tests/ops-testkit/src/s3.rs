//! An in-process S3 server: s3s-fs on 127.0.0.1, with authentication on.
//!
//! s3s-fs is the one test server found to check Content-MD5 and checksums and to honour conditional
//! requests (see the project's notes); it stores objects as files under its root, `<root>/<bucket>/<key>`,
//! which lets tests corrupt a stored object on purpose.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::sync::oneshot;

use crate::TempDir;

/// The access key the server accepts.
pub const S3_ACCESS_KEY: &str = "ops-test-access";
/// The secret key the server accepts.
pub const S3_SECRET_KEY: &str = "ops-test-secret-key-not-a-real-one";

/// Access checks as s3s's default (signed requests only), plus one repair: s3s-fs 0.14 takes an
/// empty `delimiter=` (which minio-go, hence restic, sends for a recursive listing) as a delimiter
/// that matches everywhere and lists nothing, where S3 takes it as no delimiter.
struct EmptyDelimiterIsNone;

#[async_trait::async_trait]
impl s3s::access::S3Access for EmptyDelimiterIsNone {
    async fn list_objects(
        &self,
        req: &mut s3s::S3Request<s3s::dto::ListObjectsInput>,
    ) -> s3s::S3Result<()> {
        if req.input.delimiter.as_deref() == Some("") {
            req.input.delimiter = None;
        }
        Ok(())
    }

    async fn list_objects_v2(
        &self,
        req: &mut s3s::S3Request<s3s::dto::ListObjectsV2Input>,
    ) -> s3s::S3Result<()> {
        if req.input.delimiter.as_deref() == Some("") {
            req.input.delimiter = None;
        }
        Ok(())
    }
}

/// A running (or stopped) S3 server.
pub struct S3Server {
    root: TempDir,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    buckets: AtomicU32,
}

impl S3Server {
    /// Starts a server on a free port with an empty root.
    ///
    /// # Panics
    /// If the server cannot start.
    pub fn start() -> Self {
        let root = TempDir::new("s3");
        let mut server = Self {
            root,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stop: None,
            thread: None,
            buckets: AtomicU32::new(0),
        };
        server.serve();
        server
    }

    fn serve(&mut self) {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let root = self.root.path().to_path_buf();
        let addr = self.addr;
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("S3 server runtime");
            runtime.block_on(async move {
                let fs = s3s_fs::FileSystem::new(&root).expect("s3s-fs root");
                let mut builder = s3s::service::S3ServiceBuilder::new(fs);
                builder.set_auth(s3s::auth::SimpleAuth::from_single(S3_ACCESS_KEY, S3_SECRET_KEY));
                builder.set_access(EmptyDelimiterIsNone);
                let service = builder.build();
                let listener = tokio::net::TcpListener::bind(addr).await.expect("binding the S3 server");
                ready_tx.send(listener.local_addr().expect("address")).expect("reporting the address");
                let http = ConnBuilder::new(TokioExecutor::new());
                let mut stop_rx = stop_rx;
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((socket, _)) = accepted else { continue };
                            let conn = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                            tokio::spawn(async move { let _ = conn.await; });
                        }
                        _ = &mut stop_rx => break,
                    }
                }
            });
            // Dropping the runtime drops every connection task: clients see their connections close.
            runtime.shutdown_background();
        });
        self.addr = ready_rx.recv().expect("S3 server did not start");
        self.stop = Some(stop_tx);
        self.thread = Some(thread);
    }

    /// Stops the server: the port closes and open connections are dropped.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Starts the server again on the same port, with the same objects.
    pub fn restart(&mut self) {
        self.stop();
        self.serve();
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Creates a new, empty bucket and returns its name.
    ///
    /// # Panics
    /// If the directory cannot be made.
    pub fn bucket(&self) -> String {
        let name = format!(
            "test-{}-{}",
            std::process::id(),
            self.buckets.fetch_add(1, Ordering::SeqCst)
        );
        self.root.subdir(&name);
        name
    }

    /// Where the server stores an object: to corrupt or remove it behind the server's back.
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.path().join(bucket).join(key)
    }

    /// The server's root directory.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The settings a tool needs to reach this server (as environment variables).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".to_owned(), S3_ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), S3_SECRET_KEY.to_owned()),
            ("AWS_ENDPOINT".to_owned(), self.endpoint()),
            ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
