//! A fault-injecting TCP proxy on 127.0.0.1, in front of a real server.
//!
//! Faults apply per connection, chosen when the connection is accepted, and can be changed while the
//! proxy runs. They model what the network and an S3 provider do to a client: refuse to answer,
//! answer 503, reset a connection half-way, add latency.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// What the proxy does to the next connections.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Forward everything.
    None,
    /// Forward everything, and keep the head (request line and headers) of every HTTP request
    /// (see [`FaultProxy::recorded`]).
    Record,
    /// Forward the first `bytes` bytes from the client, then close both sides.
    CutAfter(u64),
    /// Accept, read and discard, never answer.
    Blackhole,
    /// Read the request head, answer `503 Slow Down` and close.
    ServiceUnavailable,
    /// Per connection, at random: with `error` probability answer 503, with `reset` probability
    /// cut after a random number of bytes, otherwise forward after up to `max_delay`.
    Random {
        /// Probability of a 503.
        error: f64,
        /// Probability of a connection reset.
        reset: f64,
        /// Most latency added before forwarding.
        max_delay: Duration,
    },
}

/// A running proxy; stopped when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    recorded: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (a port on 127.0.0.1).
    ///
    /// # Panics
    /// If it cannot bind.
    pub fn start(upstream: u16, fault: Fault) -> Self {
        let fault = Arc::new(Mutex::new(fault));
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let record_into = recorded.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let shared = fault.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("proxy runtime");
            runtime.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("binding the proxy");
                ready_tx
                    .send(listener.local_addr().expect("address"))
                    .expect("reporting the address");
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((client, _)) = accepted else { continue };
                            let fault = shared.lock().expect("fault lock").clone();
                            tokio::spawn(handle(client, upstream, fault, record_into.clone()));
                        }
                        _ = &mut stop_rx => break,
                    }
                }
            });
            runtime.shutdown_background();
        });
        let addr = ready_rx.recv().expect("proxy did not start");
        Self {
            addr,
            fault,
            recorded,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Changes the fault for connections accepted from now on.
    ///
    /// # Panics
    /// If the lock is poisoned.
    pub fn set(&self, fault: Fault) {
        *self.fault.lock().expect("fault lock") = fault;
    }

    /// The head of every HTTP request made under [`Fault::Record`], in order.
    ///
    /// # Panics
    /// If the lock is poisoned.
    pub fn recorded(&self) -> Vec<Vec<u8>> {
        self.recorded.lock().expect("record lock").clone()
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn handle(
    mut client: TcpStream,
    upstream: u16,
    fault: Fault,
    recorded: Arc<Mutex<Vec<Vec<u8>>>>,
) {
    let fault = match fault {
        Fault::Random {
            error,
            reset,
            max_delay,
        } => {
            let roll: f64 = rand::random();
            if roll < error {
                Fault::ServiceUnavailable
            } else if roll < error + reset {
                Fault::CutAfter(rand::random_range(0..256 * 1024))
            } else {
                tokio::time::sleep(max_delay.mul_f64(rand::random())).await;
                Fault::None
            }
        }
        other => other,
    };
    match fault {
        Fault::Blackhole => {
            let mut buf = vec![0u8; 64 * 1024];
            while matches!(client.read(&mut buf).await, Ok(n) if n > 0) {}
            // Hold the connection open until the client gives up.
            std::future::pending::<()>().await;
        }
        Fault::ServiceUnavailable => {
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match client.read(&mut buf).await {
                    Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                    _ => return,
                }
            }
            let body =
                "<Error><Code>SlowDown</Code><Message>injected by FaultProxy</Message></Error>";
            let response = format!(
                "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.write_all(response.as_bytes()).await;
        }
        Fault::CutAfter(limit) => {
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                return;
            };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            let upload = async {
                let mut sent = 0u64;
                let mut buf = vec![0u8; 16 * 1024];
                while sent < limit {
                    let Ok(n) = client_read.read(&mut buf).await else {
                        break;
                    };
                    if n == 0 {
                        break;
                    }
                    let n = n.min(usize::try_from(limit - sent).unwrap_or(usize::MAX));
                    if server_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    sent += n as u64;
                }
            };
            let download = tokio::io::copy(&mut server_read, &mut client_write);
            // Whichever ends first (the cut, or the server closing), drop both connections.
            tokio::select! {
                () = upload => {}
                _ = download => {}
            }
        }
        Fault::Record => record(client, upstream, &recorded).await,
        Fault::None | Fault::Random { .. } => {
            let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        }
    }
}

/// Forwards a connection, keeping the head of every request the client sends.
async fn record(client: TcpStream, upstream: u16, recorded: &Mutex<Vec<Vec<u8>>>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upload = async {
        let mut heads = HeadParser::default();
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = client_read.read(&mut buf).await {
            if n == 0 || server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            for head in heads.feed(&buf[..n]) {
                recorded.lock().expect("record lock").push(head);
            }
        }
    };
    let download = tokio::io::copy(&mut server_read, &mut client_write);
    tokio::select! {
        () = upload => {}
        _ = download => {}
    }
}

/// Splits a client's byte stream into HTTP request heads, skipping bodies by their Content-Length.
/// A chunked body cannot be skipped this way: its head is kept and the rest of the stream ignored.
#[derive(Default)]
struct HeadParser {
    pending: Vec<u8>,
    body_left: usize,
    lost: bool,
}

impl HeadParser {
    fn feed(&mut self, mut data: &[u8]) -> Vec<Vec<u8>> {
        let mut heads = Vec::new();
        while !self.lost && !data.is_empty() {
            if self.body_left > 0 {
                let skip = self.body_left.min(data.len());
                self.body_left -= skip;
                data = &data[skip..];
                continue;
            }
            self.pending.extend_from_slice(data);
            data = &[];
            while let Some(end) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.pending.drain(..end + 4).collect();
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let length = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if text.contains("transfer-encoding: chunked") {
                    self.lost = true;
                }
                heads.push(head);
                let skip = length.min(self.pending.len());
                self.pending.drain(..skip);
                self.body_left = length - skip;
                if self.body_left > 0 || self.lost {
                    break;
                }
            }
        }
        heads
    }
}
