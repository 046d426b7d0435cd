//! The world of the QUIC tests: datagrams in queues with loss, a server
//! endpoint that speaks HTTP/3 with shiguredo_http3's codec, and a client
//! that drives [`Connection`] as the shard core will.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use quinn_proto::crypto::rustls::QuicServerConfig;
use quinn_proto::{
    ConnectionHandle, DatagramEvent, Dir, Endpoint, EndpointConfig, ServerConfig, StreamId,
    Transmit, VarInt,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use shiguredo_http3 as sh;

use crate::http::h3::{ALPN, Connection, Event, H3Error, qpack};
use crate::tls::{TlsInputs, client_config};

pub const CLIENT: &str = "127.0.0.1:40000";
pub const SERVER: &str = "127.0.0.1:4433";
/// `:authority` is `localhost:` and the port.
pub const AUTHORITY: &[u8] = b"localhost:";
pub const BODY: &[u8] = b"hello";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The datagrams in flight each way, with the client address each comes
/// from or goes to, and the loss: every `drop_every`-th datagram sent
/// (either way, or only the client's: see [`Net::losing_client_datagrams`])
/// is lost.
pub struct Net {
    to_server: VecDeque<(SocketAddr, Vec<u8>)>,
    to_client: VecDeque<(SocketAddr, Vec<u8>)>,
    pub sent: u64,
    pub dropped: u64,
    drop_every: Option<u64>,
    /// Only the client's datagrams are counted toward the loss.
    client_only: bool,
    client_sent: u64,
}

impl Net {
    pub fn new(drop_every: Option<u64>) -> Net {
        Net {
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
            sent: 0,
            dropped: 0,
            drop_every,
            client_only: false,
            client_sent: 0,
        }
    }

    /// Every `n`-th datagram the client sends is lost, and none of the
    /// server's: the client's own loss count is then certain to move,
    /// whatever order the server answers its connections in.
    pub fn losing_client_datagrams(n: u64) -> Net {
        Net {
            client_only: true,
            ..Net::new(Some(n))
        }
    }

    /// One datagram, unless it is the one to lose.
    fn carry(&mut self, server_bound: bool, client: SocketAddr, d: &[u8]) {
        self.sent += 1;
        self.client_sent += u64::from(server_bound);
        let counted = if self.client_only {
            server_bound.then_some(self.client_sent)
        } else {
            Some(self.sent)
        };
        if let (Some(n), Some(k)) = (self.drop_every, counted)
            && k.is_multiple_of(n)
        {
            self.dropped += 1;
            return;
        }
        let q = if server_bound {
            &mut self.to_server
        } else {
            &mut self.to_client
        };
        q.push_back((client, d.to_vec()));
    }

    /// A datagram from the client at `from` to the server.
    pub fn send_from(&mut self, from: SocketAddr, d: &[u8]) {
        self.carry(true, from, d);
    }

    /// Splits a transmit into its datagrams (all but the last are
    /// `segment_size` long), as the kernel does for UDP_SEGMENT; from the
    /// client at `from`, or (None) from the server to its destination.
    fn send(&mut self, from: Option<SocketAddr>, t: &Transmit, buf: &[u8]) {
        let seg = t.segment_size.unwrap_or(t.size);
        for d in buf[..t.size].chunks(seg) {
            match from {
                Some(a) => self.carry(true, a, d),
                None => self.carry(false, t.destination, d),
            }
        }
    }

    /// The next datagram for the server, and the client it comes from.
    pub fn pop_to_server(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.to_server.pop_front()
    }

    /// The next datagram for a client, and that client's address.
    pub fn pop_to_client(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.to_client.pop_front()
    }
}

/// Reads what a stream has; true at its end.
fn read_stream(conn: &mut quinn_proto::Connection, id: StreamId, out: &mut Vec<u8>) -> bool {
    let mut s = conn.recv_stream(id);
    let Ok(mut chunks) = s.read(true) else {
        return false;
    };
    let fin = loop {
        match chunks.next(usize::MAX) {
            Ok(Some(c)) => out.extend_from_slice(&c.bytes),
            Ok(None) => break true,
            Err(quinn_proto::ReadError::Blocked) => break false,
            Err(e) => panic!("stream {id}: {e}"),
        }
    };
    let _ = chunks.finalize();
    fin
}

fn sh_frame(frame: &sh::Frame) -> Vec<u8> {
    let mut buf = vec![0; 1 << 16];
    let n = sh::frame::encode_frame(&mut buf, frame).unwrap();
    buf.truncate(n);
    buf
}

/// How the server misbehaves (one way at a time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    /// Resets every `n`-th request stream it reads with `code` instead of
    /// answering.
    ResetEvery {
        n: u64,
        code: u64,
    },
    /// After answering `n` requests on a connection, sends GOAWAY naming
    /// the next request stream and answers none from there.
    GoawayAfter(u64),
    /// Answers without `:status`.
    NoStatus,
    /// Reads every `n`-th request stream and never answers it.
    SilentEvery(u64),
    /// Sends a DATA frame on its control stream.
    DataOnControl,
    /// Gives each request stream this much flow-control credit at a time
    /// (QUIC's initial_max_stream_data and the window after it).
    StreamWindow(u32),
    /// Allows this many request streams open at once (MAX_STREAMS).
    MaxStreams(u32),
    /// Speaks only QUIC draft 29, not version 1: a version 1 Initial gets
    /// version negotiation.
    Draft29Only,
    /// Answers a client's first Initial with a Retry (address validation),
    /// unless a NEW_TOKEN it gave validates the address already.
    Retry,
    /// Offers only this ALPN protocol (not `h3`): rustls refuses our
    /// handshake with the no_application_protocol alert.
    OnlyAlpn(&'static [u8]),
}

/// One server connection: its request streams' bytes so far, and what it
/// did.
pub struct ServerConn {
    pub conn: quinn_proto::Connection,
    requests: HashMap<StreamId, Vec<u8>>,
    uni: HashMap<StreamId, Vec<u8>>,
    control: Option<StreamId>,
    pub served: u64,
    /// Request streams read whole, answered or not.
    seen: u64,
    pub resets: u64,
    /// Requests read and never answered.
    pub silenced: u64,
    /// The GOAWAY it sent: streams from this id on are not answered.
    goaway: Option<u64>,
    /// Requests read before the handshake completed: sent in 0-RTT.
    pub early: u64,
    /// Request body bytes read (DATA frames after the HEADERS).
    pub body: u64,
    pub lost: Option<quinn_proto::ConnectionError>,
}

pub struct Server {
    ep: Endpoint,
    pub conns: HashMap<ConnectionHandle, ServerConn>,
    pub behaviour: Behaviour,
    /// Retry packets sent.
    pub retries: u64,
}

fn server_config(early_data: bool, behaviour: Behaviour) -> Arc<ServerConfig> {
    let certs = CertificateDer::pem_slice_iter(include_bytes!("../testdata/cert.pem"))
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(include_bytes!("../testdata/key.pem")).unwrap();
    let mut tls =
        rustls::ServerConfig::builder_with_provider(Arc::new(crate::tls::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
    tls.alpn_protocols = match behaviour {
        Behaviour::OnlyAlpn(other) => vec![other.to_vec()],
        _ => vec![ALPN.to_vec()],
    };
    tls.max_early_data_size = if early_data { u32::MAX } else { 0 };
    let quic = QuicServerConfig::try_from(tls).unwrap();
    let mut config = ServerConfig::with_crypto(Arc::new(quic));
    let mut t = quinn_proto::TransportConfig::default();
    match behaviour {
        Behaviour::StreamWindow(n) => {
            t.stream_receive_window(VarInt::from_u32(n));
        }
        Behaviour::MaxStreams(n) => {
            t.max_concurrent_bidi_streams(VarInt::from_u32(n));
        }
        _ => {}
    }
    config.transport_config(Arc::new(t));
    Arc::new(config)
}

impl Server {
    pub fn new(early_data: bool, behaviour: Behaviour) -> Self {
        Server {
            ep: Endpoint::new(
                Arc::new({
                    let mut c = EndpointConfig::default();
                    if behaviour == Behaviour::Draft29Only {
                        c.supported_versions(vec![0xff00_001d]);
                    }
                    c
                }),
                Some(server_config(early_data, behaviour)),
                true,
                None,
            ),
            conns: HashMap::new(),
            behaviour,
            retries: 0,
        }
    }

    pub fn served(&self) -> u64 {
        self.conns.values().map(|c| c.served).sum()
    }

    pub fn silenced(&self) -> u64 {
        self.conns.values().map(|c| c.silenced).sum()
    }

    pub fn resets(&self) -> u64 {
        self.conns.values().map(|c| c.resets).sum()
    }

    pub fn early(&self) -> u64 {
        self.conns.values().map(|c| c.early).sum()
    }

    /// When the first of the server's connections wants a timeout.
    pub fn next_timeout(&mut self) -> Option<Instant> {
        self.conns
            .values_mut()
            .filter_map(|c| c.conn.poll_timeout())
            .min()
    }

    pub fn handle_timeouts(&mut self, now: Instant) {
        for c in self.conns.values_mut() {
            c.conn.handle_timeout(now);
        }
    }

    /// A datagram from the client at `from`.
    pub fn datagram(&mut self, now: Instant, from: SocketAddr, d: Vec<u8>, net: &mut Net) {
        let mut buf = Vec::new();
        let ev = self
            .ep
            .handle(now, from, None, None, BytesMut::from(&d[..]), &mut buf);
        match ev {
            Some(DatagramEvent::NewConnection(incoming))
                if self.behaviour == Behaviour::Retry && !incoming.remote_address_validated() =>
            {
                if let Ok(t) = self.ep.retry(incoming, &mut buf) {
                    net.send(None, &t, &buf);
                    self.retries += 1;
                }
            }
            Some(DatagramEvent::NewConnection(incoming)) => {
                match self.ep.accept(incoming, now, &mut buf, None) {
                    Ok((ch, conn)) => {
                        self.conns.insert(
                            ch,
                            ServerConn {
                                conn,
                                requests: HashMap::new(),
                                uni: HashMap::new(),
                                control: None,
                                served: 0,
                                seen: 0,
                                resets: 0,
                                silenced: 0,
                                goaway: None,
                                early: 0,
                                body: 0,
                                lost: None,
                            },
                        );
                    }
                    Err(e) => {
                        if let Some(t) = e.response {
                            net.send(None, &t, &buf);
                        }
                    }
                }
            }
            Some(DatagramEvent::ConnectionEvent(ch, ev)) => {
                if let Some(c) = self.conns.get_mut(&ch) {
                    c.conn.handle_event(ev);
                }
            }
            Some(DatagramEvent::Response(t)) => net.send(None, &t, &buf),
            None => {}
        }
    }

    /// Endpoint events, the application's streams, transmits. True if
    /// anything happened.
    /// Endpoint events, the application's streams, transmits. True if
    /// anything happened.
    pub fn work(&mut self, now: Instant, net: &mut Net) -> bool {
        let mut busy = false;
        for (&ch, c) in self.conns.iter_mut() {
            while let Some(ev) = c.conn.poll_endpoint_events() {
                busy = true;
                if let Some(ev) = self.ep.handle_event(ch, ev) {
                    c.conn.handle_event(ev);
                }
            }
            while let Some(ev) = c.conn.poll() {
                busy = true;
                if let quinn_proto::Event::ConnectionLost { reason } = ev {
                    c.lost = Some(reason);
                }
            }
            if c.lost.is_some() {
                continue;
            }
            if c.control.is_none()
                && let Some(id) = c.conn.streams().open(Dir::Uni)
            {
                // Type 0, SETTINGS (shiguredo's, with its grease setting).
                let mut bytes = vec![0x00];
                bytes.extend(sh_frame(&sh::Frame::Settings(
                    sh::SettingsPayload::from_settings(&sh::Settings::new()),
                )));
                if self.behaviour == Behaviour::DataOnControl {
                    bytes.extend(sh_frame(&sh::Frame::Data(sh::DataPayload::new(vec![1]))));
                }
                c.conn.send_stream(id).write(&bytes).unwrap();
                c.control = Some(id);
            }
            for dir in [Dir::Bi, Dir::Uni] {
                while let Some(id) = c.conn.streams().accept(dir) {
                    busy = true;
                    match dir {
                        Dir::Bi => c.requests.insert(id, Vec::new()),
                        Dir::Uni => c.uni.insert(id, Vec::new()),
                    };
                }
            }
            // In stream order, so that a GOAWAY after n answers means the
            // first n streams.
            let mut ids: Vec<StreamId> = c.requests.keys().copied().collect();
            ids.sort_by_key(|&id| u64::from(id));
            for id in ids {
                let mut buf = std::mem::take(c.requests.get_mut(&id).unwrap());
                if !read_stream(&mut c.conn, id, &mut buf) {
                    c.requests.insert(id, buf);
                    continue;
                }
                c.requests.remove(&id);
                busy = true;
                c.seen += 1;
                if c.conn.is_handshaking() {
                    c.early += 1;
                }
                match self.behaviour {
                    Behaviour::ResetEvery { n, code } if c.seen.is_multiple_of(n) => {
                        c.conn
                            .send_stream(id)
                            .reset(VarInt::from_u64(code).unwrap())
                            .unwrap();
                        c.resets += 1;
                        continue;
                    }
                    Behaviour::GoawayAfter(_) if c.goaway.is_some_and(|g| u64::from(id) >= g) => {
                        continue;
                    }
                    Behaviour::SilentEvery(n) if c.seen.is_multiple_of(n) => {
                        c.silenced += 1;
                        continue;
                    }
                    _ => {}
                }
                c.body += serve(&mut c.conn, id, &buf, self.behaviour == Behaviour::NoStatus);
                c.served += 1;
                if let Behaviour::GoawayAfter(n) = self.behaviour
                    && c.served == n
                    && c.goaway.is_none()
                {
                    let next = u64::from(id) + 4;
                    c.goaway = Some(next);
                    let frame = sh_frame(&sh::Frame::Goaway(sh::GoawayPayload::new(
                        sh::VarInt::new(next).unwrap(),
                    )));
                    let control = c.control.expect("the control stream is open");
                    c.conn.send_stream(control).write(&frame).unwrap();
                }
            }
            for (&id, buf) in c.uni.iter_mut() {
                read_stream(&mut c.conn, id, buf);
                // The client's control stream: type 0, then its SETTINGS.
                if buf.len() > 1 {
                    assert_eq!(buf[0], 0x00, "the client's only uni stream is control");
                    let (frame, _) = sh::frame::decode_frame(&buf[1..]).unwrap();
                    let sh::Frame::Settings(s) = frame else {
                        panic!("control stream starts with {frame:?}");
                    };
                    let s = sh::Settings::from_payload(&s);
                    // The client's limit: the harness's client says 16384,
                    // the core --max-header-bytes.
                    assert!(s.max_field_section_size.is_some_and(|v| v.get() >= 16384));
                    assert_eq!(s.qpack_max_table_capacity, None);
                }
            }
            let mut buf = Vec::new();
            while let Some(t) = c.conn.poll_transmit(now, 10, &mut buf) {
                net.send(None, &t, &buf);
                buf.clear();
                busy = true;
            }
        }
        busy
    }
}

/// Checks the request (an independent QPACK decoder) and answers 200 with
/// a 5-byte body; returns the request body's length (its DATA frames).
fn serve(conn: &mut quinn_proto::Connection, id: StreamId, request: &[u8], no_status: bool) -> u64 {
    let (frame, mut used) = sh::frame::decode_frame(request).unwrap();
    let sh::Frame::Headers(h) = frame else {
        panic!("request starts with {frame:?}");
    };
    let mut body = 0;
    while used < request.len() {
        let (frame, n) = sh::frame::decode_frame(&request[used..]).unwrap();
        let sh::Frame::Data(d) = frame else {
            panic!("a request frame after HEADERS: {frame:?}");
        };
        body += d.data().len() as u64;
        used += n;
    }
    let fields = sh::QpackDecoder::new()
        .decode(h.encoded_field_section())
        .unwrap();
    let fields: Vec<(&[u8], &[u8])> = fields.iter().map(|f| (f.name(), f.value())).collect();
    let method = if body > 0 { &b"POST"[..] } else { b"GET" };
    assert_eq!(
        [fields[0], fields[1], fields[3]],
        [
            (&b":method"[..], method),
            (b":scheme", b"https"),
            (b":path", b"/"),
        ]
    );
    assert_eq!(fields[2].0, b":authority");
    assert!(fields[2].1.starts_with(AUTHORITY), "{:?}", fields[2]);
    let mut headers = vec![
        sh::Header::new(":status", "200").unwrap(),
        sh::Header::new("content-length", "5").unwrap(),
    ];
    if no_status {
        headers.remove(0);
    }
    let mut section = vec![0; 256];
    let n = sh::QpackEncoder::new()
        .encode(&mut section, &headers, 0)
        .unwrap();
    section.truncate(n);
    let mut out = sh_frame(&sh::Frame::Headers(sh::HeadersPayload::new(section)));
    out.extend(sh_frame(&sh::Frame::Data(sh::DataPayload::new(
        BODY.to_vec(),
    ))));
    let mut s = conn.send_stream(id);
    assert_eq!(s.write(&out).unwrap(), out.len());
    s.finish().unwrap();
    body
}

/// The client: one connection at a time, driven as the shard core will
/// drive its connections.
pub struct Client {
    ep: Endpoint,
    config: quinn_proto::ClientConfig,
    pub conn: Option<(ConnectionHandle, Connection)>,
    /// The request's HEADERS frame, shared by every stream.
    request: Bytes,
    /// Requests to make on this connection, and made so far (a slot
    /// whose response completed takes the next, as the core's `fill`).
    want: usize,
    issued: usize,
    /// Slots whose request waits for a stream.
    queue: Vec<u32>,
    pub statuses: Vec<u16>,
    pub body: u64,
    pub first_bytes: usize,
    /// Events other than the usual ones, in order.
    pub log: Vec<Event>,
    /// `Connected`'s 0-RTT outcome.
    pub zero_rtt: Option<Option<bool>>,
    pub error: Option<H3Error>,
}

impl Client {
    fn new() -> Self {
        let tls = client_config(TlsInputs::insecure_for("localhost")).unwrap();
        let mut fields = crate::http::h2::hpack::RequestFields::new();
        fields
            .from_http1(b"GET / HTTP/1.1\r\nHost: localhost:4433\r\n\r\n", b"https")
            .unwrap();
        Client {
            ep: Endpoint::new(Arc::new(EndpointConfig::default()), None, true, None),
            config: tls.for_shard_quic().unwrap(),
            conn: None,
            request: qpack::fixed_request_frame(fields.iter()),
            want: 0,
            issued: 0,
            queue: Vec::new(),
            statuses: Vec::new(),
            body: 0,
            first_bytes: 0,
            log: Vec::new(),
            zero_rtt: None,
            error: None,
        }
    }

    /// Requests that failed (reset or malformed).
    pub fn failed(&self) -> usize {
        self.log
            .iter()
            .filter(|e| matches!(e, Event::Reset { .. } | Event::Malformed { .. }))
            .count()
    }

    pub fn unprocessed(&self) -> usize {
        self.log
            .iter()
            .filter(|e| matches!(e, Event::Unprocessed { .. }))
            .count()
    }

    /// Nothing more will happen on this connection: every request answered
    /// or failed, or left over after a GOAWAY, or the connection failed.
    fn settled(&self) -> bool {
        let draining = self.conn.as_ref().is_some_and(|(_, c)| c.is_draining());
        let stuck = if draining { self.queue.len() } else { 0 };
        self.error.is_some() || self.statuses.len() + self.failed() + stuck == self.want
    }

    /// A new connection for `n` requests (slots `0..n`): at once, in
    /// 0-RTT, when the session store has a ticket for the server.
    fn connect(&mut self, now: Instant, n: usize) {
        self.connect_load(now, n, n);
    }

    /// A new connection with `depth` streams at a time that makes `total`
    /// requests.
    fn connect_load(&mut self, now: Instant, depth: usize, total: usize) {
        let n = depth;
        let (ch, quic) = self
            .ep
            .connect(now, self.config.clone(), addr(SERVER), "localhost")
            .unwrap();
        self.conn = Some((ch, Connection::new(quic, n, 16384)));
        self.want = total;
        self.issued = n;
        self.queue = (0..n as u32).rev().collect();
        self.statuses.clear();
        self.body = 0;
        self.first_bytes = 0;
        self.log.clear();
        self.zero_rtt = None;
        self.error = None;
        self.open();
    }

    /// Puts queued requests on streams while the server allows.
    fn open(&mut self) {
        let Some((_, conn)) = self.conn.as_mut() else {
            return;
        };
        while let Some(&slot) = self.queue.last() {
            if !conn.open_stream(slot, &self.request) {
                break;
            }
            self.queue.pop();
        }
    }

    fn datagram(&mut self, now: Instant, d: Vec<u8>, net: &mut Net) {
        let mut buf = Vec::new();
        match self.ep.handle(
            now,
            addr(SERVER),
            None,
            None,
            BytesMut::from(&d[..]),
            &mut buf,
        ) {
            Some(DatagramEvent::ConnectionEvent(ch, ev)) => {
                let (c, conn) = self.conn.as_mut().unwrap();
                if *c == ch {
                    conn.quic_mut().handle_event(ev);
                }
            }
            Some(DatagramEvent::Response(t)) => net.send(Some(addr(CLIENT)), &t, &buf),
            Some(DatagramEvent::NewConnection(_)) => panic!("a client accepts no connection"),
            None => {}
        }
    }

    fn work(&mut self, now: Instant, net: &mut Net) -> bool {
        let Some((ch, conn)) = self.conn.as_mut() else {
            return false;
        };
        let mut busy = false;
        while let Some(ev) = conn.quic_mut().poll_endpoint_events() {
            busy = true;
            if let Some(ev) = self.ep.handle_event(*ch, ev) {
                conn.quic_mut().handle_event(ev);
            }
        }
        let mut events = Vec::new();
        if let Err(e) = conn.poll(now, &mut events) {
            self.error = Some(e);
        }
        for e in events {
            busy = true;
            match e {
                Event::Connected { zero_rtt } => self.zero_rtt = Some(zero_rtt),
                Event::Complete { slot, status, body } => {
                    self.statuses.push(status);
                    self.body += body;
                    if self.issued < self.want {
                        self.issued += 1;
                        self.queue.push(slot);
                    }
                }
                Event::FirstByte { .. } => self.first_bytes += 1,
                Event::Available => {}
                Event::Unprocessed { slot } => {
                    self.queue.push(slot);
                    self.log.push(e);
                }
                e => self.log.push(e),
            }
        }
        self.open();
        let (_, conn) = self.conn.as_mut().unwrap();
        let mut buf = Vec::new();
        while let Some(t) = conn.quic_mut().poll_transmit(now, 10, &mut buf) {
            net.send(Some(addr(CLIENT)), &t, &buf);
            buf.clear();
            busy = true;
        }
        busy
    }

    pub fn quic(&self) -> &quinn_proto::Connection {
        self.conn.as_ref().unwrap().1.quic()
    }
}

pub struct World {
    epoch: Instant,
    now: Instant,
    /// Real time spent in the client's work (for the CPU probe).
    pub client_time: Duration,
    pub net: Net,
    pub client: Client,
    pub server: Server,
}

impl World {
    pub fn new(drop_every: Option<u64>, behaviour: Behaviour) -> Self {
        let epoch = Instant::now();
        World {
            epoch,
            now: epoch,
            client_time: Duration::ZERO,
            net: Net::new(drop_every),
            client: Client::new(),
            server: Server::new(true, behaviour),
        }
    }

    fn step(&mut self) -> bool {
        let t = Instant::now();
        let mut busy = self.client.work(self.now, &mut self.net);
        self.client_time += t.elapsed();
        busy |= self.server.work(self.now, &mut self.net);
        while let Some((from, d)) = self.net.pop_to_server() {
            self.server.datagram(self.now, from, d, &mut self.net);
            busy = true;
        }
        let t = Instant::now();
        while let Some((_, d)) = self.net.pop_to_client() {
            self.client.datagram(self.now, d, &mut self.net);
            busy = true;
        }
        self.client_time += t.elapsed();
        busy
    }

    /// Runs until the client's connection is settled; the clock moves only
    /// when nothing is left to do but wait for a timer.
    fn run(&mut self) {
        for _ in 0..100_000 {
            if self.client.settled() {
                // What is in flight still lands (the session tickets come
                // after the server's handshake completes, which may be
                // after the answers to 0-RTT requests).
                while self.step() {}
                return;
            }
            if !self.step() {
                self.wait();
            }
        }
        panic!("did not finish in 100000 steps");
    }

    /// Nothing to do but wait: the clock jumps to the first timer.
    fn wait(&mut self) {
        let server = self.server.next_timeout();
        let (_, conn) = self.client.conn.as_mut().unwrap();
        let next = server
            .into_iter()
            .chain(conn.quic_mut().poll_timeout())
            .min()
            .expect("stalled with no timer");
        assert!(
            next - self.epoch < Duration::from_secs(10),
            "no progress for 10 s of fake time"
        );
        self.now = self.now.max(next);
        conn.quic_mut().handle_timeout(self.now);
        self.server.handle_timeouts(self.now);
    }

    /// A new connection makes `n` requests and runs until it settles.
    pub fn connect_and_run(&mut self, n: usize) {
        self.client.connect(self.now, n);
        self.run();
    }

    /// `total` GETs on a new connection, `depth` at a time; the real time
    /// the client spent per request.
    pub fn load(&mut self, depth: usize, total: usize) -> Duration {
        self.client.connect_load(self.now, depth, total);
        self.client_time = Duration::ZERO;
        self.run();
        assert_eq!(self.client.error, None);
        assert_eq!(self.client.statuses, vec![200; total]);
        self.client_time / total as u32
    }

    /// `n` GETs on a new connection, all answered.
    pub fn get(&mut self, n: usize) {
        self.connect_and_run(n);
        assert_eq!(self.client.error, None);
        assert_eq!(self.client.statuses, vec![200; n]);
        assert_eq!(self.client.body, (n * BODY.len()) as u64);
        assert!(self.client.first_bytes >= n);
        let (_, conn) = self.client.conn.as_ref().unwrap();
        assert_eq!(conn.held(), 0);
    }
}
