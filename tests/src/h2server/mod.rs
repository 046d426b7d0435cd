//! A raw HTTP/2 server for tests: plain std threads and sockets, h2c with
//! prior knowledge or TLS with ALPN h2. It serves requests correctly
//! (SETTINGS and their ACKs, HEADERS/CONTINUATION and DATA in with flow
//! control and WINDOW_UPDATEs, HEADERS and DATA out within the client's
//! windows and frame size), records what the client did, and can be told
//! to misbehave in one way ([`Behaviour`]).
//!
//! One thread accepts, one thread serves each connection; every socket
//! read has a short timeout, and every thread ends when the server is
//! dropped.

mod conn;
pub mod frame;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::pki::Pki;

/// The one way a server misbehaves (or how it answers, for the legal but
/// unusual cases). Everything else about it stays correct.
#[derive(Debug, Clone, Default)]
pub enum Behaviour {
    /// Serve every request.
    #[default]
    Normal,
    /// After the `streams`-th request stream on a connection, send
    /// GOAWAY(`code`) whose last-stream-id is that stream's id, and ignore
    /// streams above it. `abrupt: false`: answer every stream up to it,
    /// then close (FIN, and wait up to 1 s for the client's close).
    /// `abrupt: true`: close right after the GOAWAY, leaving that stream
    /// (and any other not yet answered) without a response.
    GoawayAfter {
        streams: u32,
        code: u32,
        abrupt: bool,
    },
    /// Answer every `every`-th request stream of the whole server (the
    /// 1st is number 1) with RST_STREAM(`code`) as soon as its HEADERS
    /// arrive, and nothing else. `frame::REFUSED_STREAM` is the one a
    /// client should retry.
    ResetEvery { every: u64, code: u32 },
    /// Advertise SETTINGS_MAX_CONCURRENT_STREAMS = n and refuse
    /// (RST_STREAM(REFUSED_STREAM)) a stream over it. It counts as a
    /// client violation only once the client had ACKed those settings.
    /// With a [`H2Options::response_delay`] streams pile up to the limit.
    MaxConcurrentStreams(u32),
    /// SETTINGS_INITIAL_WINDOW_SIZE = `window` (e.g. 16): request bodies
    /// stall on each stream's window. Credit for the bytes received comes
    /// back in one WINDOW_UPDATE per stream every `every`, at most
    /// `update` bytes each; the connection's credit comes back at once.
    /// A client may send up to 65,535 bytes on the streams it opens
    /// before it has these SETTINGS (it ACKs them once applied): the
    /// stalls are on the streams after that, and beyond 64 KiB.
    SlowStreamWindow {
        window: u32,
        update: u32,
        every: Duration,
    },
    /// The connection window (65,535 bytes, which SETTINGS cannot shrink)
    /// is given back `update` bytes every `every`; streams get 1 MiB
    /// windows and their credit back at once, so request bodies stall on
    /// the connection.
    SlowConnWindow { update: u32, every: Duration },
    /// Never writes a byte: no SETTINGS, no ACK, no response. It still
    /// reads and records.
    NoSettings,
    /// SETTINGS, ACKs and PING answers, but no response and no reset to
    /// any request.
    SilentAfterSettings,
    /// Every response's header block is at least `bytes` long (many
    /// `x-huge-N` fields of 1,000 bytes), in a HEADERS frame and as many
    /// CONTINUATION frames as the client's max frame size requires.
    HugeHeaders { bytes: usize },
    /// Every response's header block inserts one `x-bomb` field of
    /// `value_len` bytes into the client's HPACK dynamic table, then
    /// refers to it `refs` times (one byte each): a small block that
    /// decodes to `refs * (value_len + 6)` bytes of header list. The
    /// entry must fit the client's table (`value_len + 38` bytes within
    /// its SETTINGS_HEADER_TABLE_SIZE, 4,096 unless it said otherwise),
    /// or the references are invalid: a compression error instead.
    HpackBomb { value_len: usize, refs: usize },
    /// A frame that breaks the rules (or, for
    /// [`Malformed::UnknownFrameTypes`], that a client must ignore).
    Malformed(Malformed),
    /// `count` PINGs to every new connection, right after SETTINGS (in
    /// batches between reads), each with its number as payload; the ACKs
    /// that come back with a payload we sent are counted. Responses wait
    /// until every PING of their connection has been acknowledged.
    PingFlood { count: u64 },
    /// Every response ends with a trailer HEADERS frame (END_STREAM):
    /// `x-trailer: done`, `x-body-bytes: N`.
    Trailers,
    /// A request with `content-type: application/grpc` is answered as a
    /// gRPC server answers a unary call: 200, `content-type:
    /// application/grpc`, the body as one framed message, and trailers
    /// with `grpc-status` 3 (INVALID_ARGUMENT) when the path ends in
    /// `/Fail`, else 0. Any other request is answered as usual.
    Grpc,
    /// HEADERS with the PADDED and PRIORITY flags and DATA with the
    /// PADDED flag, `pad` bytes of padding each.
    Padded { pad: u8 },
    /// The body in DATA frames of `chunk` bytes, then an empty DATA frame
    /// with END_STREAM.
    SplitData { chunk: usize },
    /// An informational response (`status`, 100–199) before the final
    /// one, as its own HEADERS frame.
    Informational { status: u16 },
}

/// How [`Behaviour::Malformed`] breaks the rules. The frame goes out in
/// place of a response (before it, for `UnknownFrameTypes`), on every
/// request.
#[derive(Debug, Clone)]
pub enum Malformed {
    /// A PING with 6 bytes of payload (it must have 8): FRAME_SIZE_ERROR.
    BadPingLength,
    /// A WINDOW_UPDATE with 3 bytes of payload (it must have 4).
    BadWindowUpdateLength,
    /// A DATA frame on stream 0: PROTOCOL_ERROR.
    DataOnStreamZero,
    /// Frames of unassigned types (0xfa on stream 0 and on the request's
    /// stream) before a normal response: a client must ignore them.
    UnknownFrameTypes,
    /// A valid HEADERS, then a DATA frame one byte over the client's
    /// SETTINGS_MAX_FRAME_SIZE: FRAME_SIZE_ERROR.
    OversizedFrame,
    /// A HEADERS frame on stream 2 (even: the server's, never opened by
    /// a PUSH_PROMISE): PROTOCOL_ERROR.
    HeadersOnEvenStream,
    /// A header block indexing entry 200 of an empty dynamic table:
    /// COMPRESSION_ERROR.
    InvalidHpack,
    /// A WINDOW_UPDATE that takes the connection's window past 2^31-1:
    /// FLOW_CONTROL_ERROR.
    WindowOverflow,
    /// A PUSH_PROMISE, which a client that sent SETTINGS_ENABLE_PUSH=0
    /// must treat as PROTOCOL_ERROR.
    PushPromise,
    /// A CONTINUATION with no HEADERS before it: PROTOCOL_ERROR.
    ContinuationWithoutHeaders,
    /// Any frame: `stream` None means the request's stream.
    Raw {
        kind: u8,
        flags: u8,
        stream: Option<u32>,
        payload: Vec<u8>,
    },
}

/// What the server is and does.
#[derive(Debug, Clone)]
pub struct H2Options {
    pub behaviour: Behaviour,
    /// Every response's `:status` (default 200).
    pub status: u16,
    /// Every response's body (default `hello`), sent with a
    /// content-length.
    pub body: Vec<u8>,
    /// Each response waits this long after its request is complete (so
    /// that streams pile up on a connection); the connection goes on
    /// reading meanwhile.
    pub response_delay: Duration,
    /// TLS with this certificate and key; None: h2c with prior knowledge.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The ALPN protocols offered over TLS (default `h2` only).
    pub alpn: Vec<Vec<u8>>,
}

impl Default for H2Options {
    fn default() -> Self {
        H2Options {
            behaviour: Behaviour::Normal,
            status: 200,
            body: b"hello".to_vec(),
            response_delay: Duration::ZERO,
            tls: None,
            alpn: vec![b"h2".to_vec()],
        }
    }
}

impl H2Options {
    pub fn behaviour(mut self, b: Behaviour) -> Self {
        self.behaviour = b;
        self
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn response_delay(mut self, d: Duration) -> Self {
        self.response_delay = d;
        self
    }

    /// TLS with `pki`'s server certificate (localhost, 127.0.0.1).
    pub fn tls(mut self, pki: &Pki) -> Self {
        self.tls = Some((pki.server_cert.clone(), pki.server_key.clone()));
        self
    }

    pub fn alpn(mut self, protocols: &[&str]) -> Self {
        self.alpn = protocols.iter().map(|p| p.as_bytes().to_vec()).collect();
        self
    }

    pub fn start(self) -> H2Server {
        H2Server::start(self)
    }
}

/// A request stream the client opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestSeen {
    /// The connection's number (from 1, in accept order).
    pub conn: u64,
    pub stream: u32,
    pub method: String,
    pub path: String,
    pub scheme: String,
    pub authority: String,
    /// The regular header fields, in order, as decoded.
    pub headers: Vec<(String, String)>,
    /// Trailer fields, if the client sent a trailer HEADERS frame.
    pub trailers: Vec<(String, String)>,
    /// Request body bytes received (DATA payload, less padding).
    pub body_len: u64,
    /// The client ended the stream (END_STREAM).
    pub complete: bool,
    /// The server sent its whole response.
    pub responded: bool,
    /// The server reset the stream with this code.
    pub reset_by_server: Option<u32>,
    /// The client reset the stream with this code.
    pub reset_by_client: Option<u32>,
}

impl RequestSeen {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find_map(|(n, v)| (n == name).then_some(v.as_str()))
    }
}

/// Everything the server saw and did, over all connections.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// Connections accepted (TCP; over TLS also those whose handshake
    /// failed).
    pub connections: u64,
    /// Bytes written to clients (before TLS).
    pub bytes_sent: u64,
    /// Connections whose first 24 bytes were not the HTTP/2 preface.
    pub bad_prefaces: u64,
    /// TLS handshakes that failed (no common ALPN protocol, for one).
    pub tls_failures: u64,
    /// Request streams, in the order their HEADERS arrived.
    pub requests: Vec<RequestSeen>,
    /// Whole responses sent (END_STREAM written).
    pub responses: u64,
    /// Streams above a GOAWAY's last-stream-id, which the server ignored.
    pub ignored_streams: u64,
    /// Each SETTINGS frame the client sent (not ACKs): (id, value) pairs.
    pub client_settings: Vec<Vec<(u16, u32)>>,
    /// ACKs of our SETTINGS.
    pub settings_acks: u64,
    /// PINGs the client sent (not ACKs).
    pub client_pings: u64,
    /// PINGs we sent, and the ACKs that came back with their payloads.
    pub pings_sent: u64,
    pub ping_acks: u64,
    /// (last-stream-id, code) of each GOAWAY we sent, and of each the
    /// client sent.
    pub goaways_sent: Vec<(u32, u32)>,
    pub goaways_received: Vec<(u32, u32)>,
    /// (stream, code) of each RST_STREAM we sent, and of each the client
    /// sent.
    pub resets_sent: Vec<(u32, u32)>,
    pub resets_received: Vec<(u32, u32)>,
    /// WINDOW_UPDATEs the client sent, and we sent.
    pub window_updates_received: u64,
    pub window_updates_sent: u64,
    /// Times a response had DATA to send and the client's window (stream
    /// or connection) was shut.
    pub window_waits: u64,
    /// Request body bytes (DATA payloads with padding) received.
    pub data_bytes_received: u64,
    /// The most streams open at once on one connection.
    pub max_open_streams: u64,
    /// Frames received (all types).
    pub frames_received: u64,
    /// Times the behaviour was carried out: malformed frames, huge or
    /// bomb header blocks, informational responses, trailers written.
    pub mischief: u64,
    /// CONTINUATION frames written.
    pub continuations_sent: u64,
    /// What the client did against RFC 9113, one line each.
    pub violations: Vec<String>,
}

/// The state shared by the accept thread, the connection threads and the
/// test.
struct Shared {
    opts: H2Options,
    stop: AtomicBool,
    record: Mutex<Record>,
    /// Request streams over all connections (for ResetEvery).
    streams: AtomicU64,
    /// Connections being served now.
    active: AtomicU64,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Shared {
    fn record<R>(&self, f: impl FnOnce(&mut Record) -> R) -> R {
        let mut r = self.record.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut r)
    }
}

/// A running server; dropping it stops every thread.
pub struct H2Server {
    pub port: u16,
    shared: Arc<Shared>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: Option<JoinHandle<()>>,
}

impl H2Server {
    /// h2c (prior knowledge), `behaviour`, the default response.
    pub fn plain(behaviour: Behaviour) -> H2Server {
        H2Options::default().behaviour(behaviour).start()
    }

    /// TLS with ALPN h2, `behaviour`, the default response.
    pub fn tls(pki: &Pki, behaviour: Behaviour) -> H2Server {
        H2Options::default().behaviour(behaviour).tls(pki).start()
    }

    pub fn start(opts: H2Options) -> H2Server {
        let tls = opts
            .tls
            .as_ref()
            .map(|(cert, key)| tls_config(cert, key, &opts.alpn));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let shared = Arc::new(Shared {
            opts,
            stop: AtomicBool::new(false),
            record: Mutex::new(Record::default()),
            streams: AtomicU64::new(0),
            active: AtomicU64::new(0),
            tls,
        });
        let threads = Arc::new(Mutex::new(Vec::new()));
        let (s, t) = (shared.clone(), threads.clone());
        let accept = std::thread::spawn(move || accept_loop(&listener, &s, &t));
        H2Server {
            port,
            shared,
            threads,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT{path}`, or `https://localhost:PORT{path}`
    /// over TLS.
    pub fn url(&self, path: &str) -> String {
        if self.shared.tls.is_some() {
            format!("https://localhost:{}{path}", self.port)
        } else {
            format!("http://127.0.0.1:{}{path}", self.port)
        }
    }

    /// A snapshot of what happened so far.
    pub fn record(&self) -> Record {
        self.shared.record(|r| r.clone())
    }

    /// The record once every connection has ended (the client closed
    /// them, or the server did), waiting up to `timeout`: what a client
    /// did just before it exited is then in it.
    pub fn record_when_idle(&self, timeout: Duration) -> Record {
        let deadline = Instant::now() + timeout;
        while self.shared.active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.record()
    }

    /// Connections being served now.
    pub fn active_connections(&self) -> u64 {
        self.shared.active.load(Ordering::SeqCst)
    }
}

impl Drop for H2Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, threads: &Mutex<Vec<JoinHandle<()>>>) {
    let mut n = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                n += 1;
                shared.record(|r| r.connections += 1);
                shared.active.fetch_add(1, Ordering::SeqCst);
                let s = shared.clone();
                let t = std::thread::spawn(move || {
                    serve(stream, n, &s);
                    s.active.fetch_sub(1, Ordering::SeqCst);
                });
                let mut threads = threads.lock().unwrap_or_else(|e| e.into_inner());
                threads.retain(|t| !t.is_finished());
                threads.push(t);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// How long one socket read waits before the connection looks at its
/// timers and the stop flag again.
const READ_TICK: Duration = Duration::from_millis(5);
/// A write that cannot go on for this long ends the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

fn serve(stream: TcpStream, n: u64, shared: &Shared) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(READ_TICK));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let tcp = match stream.try_clone() {
        Ok(t) => t,
        Err(_) => return,
    };
    match &shared.tls {
        None => conn::Conn::new(n, shared, stream, tcp).run(),
        Some(config) => {
            let Ok(tls) = rustls::ServerConnection::new(config.clone()) else {
                return;
            };
            let mut io = rustls::StreamOwned::new(tls, stream);
            if !handshake(&mut io, shared) {
                shared.record(|r| r.tls_failures += 1);
                return;
            }
            conn::Conn::new(n, shared, io, tcp).run();
        }
    }
}

/// Completes the TLS handshake within 5 s (and before the server stops).
fn handshake(
    io: &mut rustls::StreamOwned<rustls::ServerConnection, TcpStream>,
    shared: &Shared,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while io.conn.is_handshaking() {
        if shared.stop.load(Ordering::SeqCst) || Instant::now() > deadline {
            return false;
        }
        match io.conn.complete_io(&mut io.sock) {
            Ok(_) => {}
            Err(e) if conn::is_timeout(&e) => {}
            Err(_) => return false,
        }
    }
    true
}

fn tls_config(cert: &Path, key: &Path, alpn: &[Vec<u8>]) -> Arc<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap_or_else(|e| panic!("{}: {e}", cert.display()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", cert.display()));
    let key =
        PrivateKeyDer::from_pem_file(key).unwrap_or_else(|e| panic!("{}: {e}", key.display()));
    // ring explicitly: a build with another provider enabled too has no
    // process default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server certificate");
    config.alpn_protocols = alpn.to_vec();
    Arc::new(config)
}
