//! quinn-proto driven as the shard core will drive it (design note §1,
//! "Ownership in the core"): one client `Endpoint`, connections fed
//! datagrams and timeouts on a fake clock, `poll_transmit` pulled until it
//! has nothing, our HTTP/3 framing on the streams. The server is a
//! quinn-proto server `Endpoint` in the same process whose HTTP/3 side is
//! an independent implementation (shiguredo_http3's frames and QPACK), so
//! both ends of every byte we frame are checked by someone else's code.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use quinn_proto::crypto::rustls::QuicServerConfig;
use quinn_proto::{
    ConnectionHandle, DatagramEvent, Dir, Endpoint, EndpointConfig, Event, ServerConfig,
    StreamEvent, StreamId, Transmit,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use shiguredo_http3 as sh;

use super::qpack::{self, Decoder};
use super::*;
use crate::tls::{TlsInputs, client_config};

const CLIENT: &str = "127.0.0.1:40000";
const SERVER: &str = "127.0.0.1:4433";
const AUTHORITY: &[u8] = b"localhost:4433";
const BODY: &[u8] = b"hello";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The datagrams in flight each way, and the loss: every `drop_every`-th
/// datagram sent (either way) is lost.
struct Net {
    to_server: VecDeque<Vec<u8>>,
    to_client: VecDeque<Vec<u8>>,
    sent: u64,
    dropped: u64,
    drop_every: Option<u64>,
    /// Datagrams per transmit with more than one (GSO batches).
    batched: u64,
}

impl Net {
    /// Splits a transmit into its datagrams (all but the last are
    /// `segment_size` long), as the kernel does for UDP_SEGMENT.
    fn send(&mut self, server_bound: bool, t: &Transmit, buf: &[u8]) {
        let seg = t.segment_size.unwrap_or(t.size);
        if t.size > seg {
            self.batched += 1;
        }
        for d in buf[..t.size].chunks(seg) {
            self.sent += 1;
            if self.drop_every.is_some_and(|n| self.sent.is_multiple_of(n)) {
                self.dropped += 1;
                continue;
            }
            let q = if server_bound {
                &mut self.to_server
            } else {
                &mut self.to_client
            };
            q.push_back(d.to_vec());
        }
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

/// One server connection: its request streams' bytes so far, and what it
/// served.
struct ServerConn {
    conn: quinn_proto::Connection,
    requests: HashMap<StreamId, Vec<u8>>,
    uni: HashMap<StreamId, Vec<u8>>,
    control_open: bool,
    served: u64,
    /// Requests read before the handshake completed: sent in 0-RTT.
    early: u64,
}

struct Server {
    ep: Endpoint,
    conns: HashMap<ConnectionHandle, ServerConn>,
}

fn server_config(early_data: bool) -> Arc<ServerConfig> {
    let certs = CertificateDer::pem_slice_iter(include_bytes!("testdata/cert.pem"))
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(include_bytes!("testdata/key.pem")).unwrap();
    let mut tls =
        rustls::ServerConfig::builder_with_provider(Arc::new(crate::tls::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.max_early_data_size = if early_data { u32::MAX } else { 0 };
    let quic = QuicServerConfig::try_from(tls).unwrap();
    Arc::new(ServerConfig::with_crypto(Arc::new(quic)))
}

impl Server {
    fn new(early_data: bool) -> Self {
        Server {
            ep: Endpoint::new(
                Arc::new(EndpointConfig::default()),
                Some(server_config(early_data)),
                true,
                None,
            ),
            conns: HashMap::new(),
        }
    }

    fn served(&self) -> u64 {
        self.conns.values().map(|c| c.served).sum()
    }

    fn early(&self) -> u64 {
        self.conns.values().map(|c| c.early).sum()
    }

    fn datagram(&mut self, now: Instant, d: Vec<u8>, net: &mut Net) {
        let mut buf = Vec::new();
        let ev = self.ep.handle(
            now,
            addr(CLIENT),
            None,
            None,
            BytesMut::from(&d[..]),
            &mut buf,
        );
        match ev {
            Some(DatagramEvent::NewConnection(incoming)) => {
                match self.ep.accept(incoming, now, &mut buf, None) {
                    Ok((ch, conn)) => {
                        self.conns.insert(
                            ch,
                            ServerConn {
                                conn,
                                requests: HashMap::new(),
                                uni: HashMap::new(),
                                control_open: false,
                                served: 0,
                                early: 0,
                            },
                        );
                    }
                    Err(e) => {
                        if let Some(t) = e.response {
                            net.send(false, &t, &buf);
                        }
                    }
                }
            }
            Some(DatagramEvent::ConnectionEvent(ch, ev)) => {
                if let Some(c) = self.conns.get_mut(&ch) {
                    c.conn.handle_event(ev);
                }
            }
            Some(DatagramEvent::Response(t)) => net.send(false, &t, &buf),
            None => {}
        }
    }

    /// Endpoint events, the application's streams, transmits. True if
    /// anything happened.
    fn work(&mut self, now: Instant, net: &mut Net) -> bool {
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
                if let Event::ConnectionLost { reason } = ev {
                    panic!("server lost a connection: {reason}");
                }
            }
            if !c.control_open
                && let Some(id) = c.conn.streams().open(Dir::Uni)
            {
                // Type 0, SETTINGS (shiguredo's, with its grease setting).
                let mut bytes = vec![0x00];
                bytes.extend(sh_frame(&sh::Frame::Settings(
                    sh::SettingsPayload::from_settings(&sh::Settings::new()),
                )));
                c.conn.send_stream(id).write(&bytes).unwrap();
                c.control_open = true;
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
            let ids: Vec<StreamId> = c.requests.keys().copied().collect();
            for id in ids {
                let mut buf = std::mem::take(c.requests.get_mut(&id).unwrap());
                if read_stream(&mut c.conn, id, &mut buf) {
                    c.requests.remove(&id);
                    if c.conn.is_handshaking() {
                        c.early += 1;
                    }
                    serve(&mut c.conn, id, &buf);
                    c.served += 1;
                    busy = true;
                } else {
                    c.requests.insert(id, buf);
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
                    assert_eq!(s.max_field_section_size.map(|v| v.get()), Some(16384));
                    assert_eq!(s.qpack_max_table_capacity, None);
                }
            }
            let mut buf = Vec::new();
            while let Some(t) = c.conn.poll_transmit(now, 10, &mut buf) {
                net.send(false, &t, &buf);
                buf.clear();
                busy = true;
            }
        }
        busy
    }
}

/// Checks the request (an independent QPACK decoder) and answers 200 with
/// a 5-byte body.
fn serve(conn: &mut quinn_proto::Connection, id: StreamId, request: &[u8]) {
    let (frame, used) = sh::frame::decode_frame(request).unwrap();
    assert_eq!(used, request.len(), "the request is one HEADERS frame");
    let sh::Frame::Headers(h) = frame else {
        panic!("request starts with {frame:?}");
    };
    let fields = sh::QpackDecoder::new()
        .decode(h.encoded_field_section())
        .unwrap();
    let fields: Vec<(&[u8], &[u8])> = fields.iter().map(|f| (f.name(), f.value())).collect();
    assert_eq!(
        fields,
        [
            (&b":method"[..], &b"GET"[..]),
            (b":scheme", b"https"),
            (b":authority", AUTHORITY),
            (b":path", b"/"),
        ]
    );
    let headers = [
        sh::Header::new(":status", "200").unwrap(),
        sh::Header::new("content-length", "5").unwrap(),
    ];
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
}

/// The client: what the shard core will hold per connection, in the
/// shape step 3 gives it.
struct Client {
    ep: Endpoint,
    config: quinn_proto::ClientConfig,
    conn: Option<(ConnectionHandle, quinn_proto::Connection)>,
    /// The request's HEADERS frame, shared by every stream.
    request: Bytes,
    /// Requests to make on this connection, and answered so far.
    want: usize,
    statuses: Vec<u16>,
    body: usize,
    responses: HashMap<StreamId, ResponseReader>,
    uni: HashMap<StreamId, UniStream>,
    peer: PeerStreams,
    qpack: Decoder,
    /// Requests went out with the handshake (0-RTT), before `Connected`.
    sent_early: bool,
    connected: bool,
}

impl Client {
    fn new() -> Self {
        let tls = client_config(TlsInputs {
            host: "localhost".into(),
            system_roots: Vec::new(),
            extra_roots: Vec::new(),
            insecure: true,
            client_auth: None,
            version: None,
            ciphers: Vec::new(),
            resume: true,
            http2: false,
        })
        .unwrap();
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
            statuses: Vec::new(),
            body: 0,
            responses: HashMap::new(),
            uni: HashMap::new(),
            peer: PeerStreams::new(),
            qpack: Decoder::new(16384),
            sent_early: false,
            connected: false,
        }
    }

    fn done(&self) -> bool {
        self.statuses.len() == self.want
    }

    /// A new connection that will make `n` requests: at once, in 0-RTT,
    /// when the session store has a ticket for the server.
    fn connect(&mut self, now: Instant, n: usize) {
        let (ch, conn) = self
            .ep
            .connect(now, self.config.clone(), addr(SERVER), "localhost")
            .unwrap();
        self.conn = Some((ch, conn));
        self.want = n;
        self.statuses.clear();
        self.body = 0;
        self.responses.clear();
        self.uni.clear();
        self.peer = PeerStreams::new();
        self.connected = false;
        self.sent_early = self.conn.as_ref().unwrap().1.has_0rtt();
        if self.sent_early {
            self.open_streams();
        }
    }

    /// Our control stream, then one request stream per request not yet
    /// answered.
    fn open_streams(&mut self) {
        let (_, conn) = self.conn.as_mut().unwrap();
        let control = conn.streams().open(Dir::Uni).unwrap();
        let bytes = client_control_stream(16384);
        conn.send_stream(control).write(&bytes).unwrap();
        for _ in self.statuses.len()..self.want {
            let id = conn
                .streams()
                .open(Dir::Bi)
                .expect("under the stream limit");
            let mut s = conn.send_stream(id);
            let w = s.write_chunks(&mut [self.request.clone()]).unwrap();
            assert_eq!(w.bytes, self.request.len());
            s.finish().unwrap();
            self.responses.insert(id, ResponseReader::new(16384));
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
                    conn.handle_event(ev);
                }
            }
            Some(DatagramEvent::Response(t)) => net.send(true, &t, &buf),
            Some(DatagramEvent::NewConnection(_)) => panic!("a client accepts no connection"),
            None => {}
        }
    }

    fn work(&mut self, now: Instant, net: &mut Net) -> bool {
        let Some((ch, conn)) = self.conn.as_mut() else {
            return false;
        };
        let mut busy = false;
        while let Some(ev) = conn.poll_endpoint_events() {
            busy = true;
            if let Some(ev) = self.ep.handle_event(*ch, ev) {
                conn.handle_event(ev);
            }
        }
        let mut readable = Vec::new();
        let mut reissue = false;
        while let Some(ev) = conn.poll() {
            busy = true;
            match ev {
                Event::Connected => {
                    self.connected = true;
                    // Rejected 0-RTT: quinn dropped every stream we opened
                    // (the control stream too). The requests were never
                    // seen: they go out again.
                    reissue = !self.sent_early || !conn.accepted_0rtt();
                }
                Event::ConnectionLost { reason } => panic!("client lost the connection: {reason}"),
                Event::Stream(StreamEvent::Readable { id }) => readable.push(id),
                Event::Stream(StreamEvent::Opened { dir: Dir::Uni }) => {
                    while let Some(id) = conn.streams().accept(Dir::Uni) {
                        self.uni.insert(id, UniStream::new());
                        readable.push(id);
                    }
                }
                _ => {}
            }
        }
        if reissue {
            self.responses.clear();
            self.open_streams();
        }
        let (_, conn) = self.conn.as_mut().unwrap();
        for id in readable {
            let mut bytes = Vec::new();
            let fin = read_stream(conn, id, &mut bytes);
            if let Some(u) = self.uni.get_mut(&id) {
                assert_eq!(
                    u.on_data(&bytes, &mut self.peer),
                    Ok(UniStreamAction::Continue)
                );
                assert!(!fin || u.on_end().is_ok(), "a critical stream closed");
            } else if let Some(r) = self.responses.get_mut(&id) {
                let (statuses, body) = (&mut self.statuses, &mut self.body);
                r.on_data(
                    &bytes,
                    &mut self.qpack,
                    |e| match e {
                        ResponseEvent::Head { status } => statuses.push(status),
                        ResponseEvent::Body(n) => *body += n,
                        other => panic!("{other:?}"),
                    },
                    |_, _| {},
                )
                .unwrap();
                if fin {
                    r.on_finish().unwrap();
                    self.responses.remove(&id);
                }
            }
        }
        let mut buf = Vec::new();
        while let Some(t) = conn.poll_transmit(now, 10, &mut buf) {
            net.send(true, &t, &buf);
            buf.clear();
            busy = true;
        }
        busy
    }

    fn conn(&self) -> &quinn_proto::Connection {
        &self.conn.as_ref().unwrap().1
    }
}

struct World {
    epoch: Instant,
    now: Instant,
    net: Net,
    client: Client,
    server: Server,
}

impl World {
    fn new(drop_every: Option<u64>) -> Self {
        let epoch = Instant::now();
        World {
            epoch,
            now: epoch,
            net: Net {
                to_server: VecDeque::new(),
                to_client: VecDeque::new(),
                sent: 0,
                dropped: 0,
                drop_every,
                batched: 0,
            },
            client: Client::new(),
            server: Server::new(true),
        }
    }

    /// Runs until the client's requests are all answered; the clock moves
    /// only when nothing is left to do but wait for a timer.
    fn step(&mut self) -> bool {
        let mut busy = self.client.work(self.now, &mut self.net);
        busy |= self.server.work(self.now, &mut self.net);
        while let Some(d) = self.net.to_server.pop_front() {
            self.server.datagram(self.now, d, &mut self.net);
            busy = true;
        }
        while let Some(d) = self.net.to_client.pop_front() {
            self.client.datagram(self.now, d, &mut self.net);
            busy = true;
        }
        busy
    }

    fn run(&mut self) {
        for _ in 0..100_000 {
            if self.client.done() {
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
        let (_, conn) = self.client.conn.as_mut().unwrap();
        let next = self
            .server
            .conns
            .values_mut()
            .filter_map(|c| c.conn.poll_timeout())
            .chain(conn.poll_timeout())
            .min()
            .expect("stalled with no timer");
        assert!(
            next - self.epoch < Duration::from_secs(10),
            "no progress for 10 s of fake time"
        );
        self.now = self.now.max(next);
        conn.handle_timeout(self.now);
        for c in self.server.conns.values_mut() {
            c.conn.handle_timeout(self.now);
        }
    }

    fn get(&mut self, n: usize) {
        self.client.connect(self.now, n);
        self.run();
        assert_eq!(self.client.statuses, vec![200; n]);
        assert_eq!(self.client.body, n * BODY.len());
        assert!(self.client.responses.is_empty());
        assert!(
            self.client.peer.settings().is_some(),
            "server SETTINGS read"
        );
    }
}

#[test]
fn handshake_and_gets_over_quinn_with_loss_and_0rtt() {
    for drop_every in [None, Some(7)] {
        let mut w = World::new(drop_every);
        w.get(1);
        assert!(!w.client.sent_early, "no ticket yet: a full handshake");
        w.get(16);
        assert_eq!(w.server.served(), 17);
        // Resumed connections (new ones on the same client config): the
        // requests go out in 0-RTT with the handshake and the server reads
        // them before it completes.
        w.get(16);
        assert!(w.client.sent_early && w.client.conn().accepted_0rtt());
        assert_eq!(w.server.served(), 33);
        assert!(w.server.early() >= 1, "no request arrived in 0-RTT");
        if let Some(n) = drop_every {
            assert!(w.net.dropped >= w.net.sent / n - 1 && w.net.dropped > 0);
            assert!(w.client.conn().stats().path.lost_packets > 0);
        }
        // A server that will not take early data (a restarted one: it does
        // not know the ticket): quinn drops every stream we opened, and
        // the requests are made again after the handshake, once each.
        w.server = Server::new(false);
        w.get(16);
        assert!(w.client.sent_early, "drop {drop_every:?}: no 0-RTT attempt");
        assert!(!w.client.conn().accepted_0rtt(), "drop {drop_every:?}");
        assert_eq!(w.server.served(), 16);
        assert_eq!(w.server.early(), 0);
    }
}
