//! The connection against a scripted server: frames built by hand, fed in
//! whole and byte by byte, and what the client answers.

use super::*;
use crate::http::h2::hpack::RequestFields;

const LOCAL: Settings = Settings {
    streams: 4,
    stream_window: (1 << 30) - 1,
    conn_window: (1 << 30) - 1,
    max_header_list: 64 * 1024,
};

/// `:status: 200` as HPACK's static entry 8.
const STATUS_200: &[u8] = &[0x88];

fn block_status(code: &str) -> Vec<u8> {
    // Literal without indexing, name = static index 8 (:status).
    let mut b = vec![0x08, code.len() as u8];
    b.extend_from_slice(code.as_bytes());
    b
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::write_header(&mut out, payload.len(), kind, flags, stream);
    out.extend_from_slice(payload);
    out
}

fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::settings(&mut out, pairs);
    out
}

struct Client {
    conn: Connection,
    st: H2Stats,
    fields: RequestFields,
}

impl Client {
    fn new(local: Settings) -> Client {
        let mut conn = Connection::new(local);
        let mut st = H2Stats::default();
        conn.start(&mut st);
        let mut fields = RequestFields::new();
        fields
            .from_http1(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", b"http")
            .unwrap();
        Client { conn, st, fields }
    }

    /// Started, and the server's empty SETTINGS read.
    fn ready() -> Client {
        let mut c = Client::new(LOCAL);
        assert_eq!(c.feed(&settings(&[])), Ok(vec![Event::Settings]));
        c.output();
        c
    }

    fn open(&mut self, slot: u32, body: &[u8]) {
        let head = Head::Fields(&self.fields);
        self.conn
            .open_stream(slot, head, body, &mut self.st)
            .unwrap();
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Event>, ConnError> {
        let mut ev = Vec::new();
        self.conn.read(bytes, &mut ev, &mut self.st).map(|()| ev)
    }

    /// The same bytes one at a time: the same events, the same output.
    fn feed_bytewise(&mut self, bytes: &[u8]) -> Result<Vec<Event>, ConnError> {
        let mut ev = Vec::new();
        for b in bytes {
            self.conn
                .read(std::slice::from_ref(b), &mut ev, &mut self.st)?;
        }
        Ok(ev)
    }

    fn output(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.conn.take_output(&mut out);
        out
    }

    /// The frames the client wrote, as (kind, flags, stream, payload).
    fn frames(&mut self) -> Vec<(u8, u8, u32, Vec<u8>)> {
        parse_frames(&self.output())
    }
}

fn parse_frames(mut b: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut v = Vec::new();
    if b.starts_with(frame::PREFACE) {
        b = &b[frame::PREFACE.len()..];
    }
    while !b.is_empty() {
        let h = Header::parse(b[..9].try_into().unwrap());
        let end = 9 + h.len as usize;
        v.push((h.kind, h.flags, h.stream, b[9..end].to_vec()));
        b = &b[end..];
    }
    v
}

#[test]
fn it_starts_with_the_preface_settings_and_a_wide_window() {
    let mut c = Client::new(LOCAL);
    let out = c.output();
    assert!(out.starts_with(frame::PREFACE));
    let f = parse_frames(&out);
    assert_eq!(f.len(), 2);
    assert_eq!((f[0].0, f[0].2), (frame::SETTINGS, 0));
    assert_eq!(
        f[0].3,
        [
            0, 2, 0, 0, 0, 0, // ENABLE_PUSH 0
            0, 4, 0x3f, 0xff, 0xff, 0xff, // INITIAL_WINDOW_SIZE 2^30-1
            0, 6, 0, 1, 0, 0, // MAX_HEADER_LIST_SIZE 64 KiB
        ]
    );
    assert_eq!(f[1].0, frame::WINDOW_UPDATE);
    let inc = u32::from_be_bytes(f[1].3[..].try_into().unwrap());
    assert_eq!(inc, (1 << 30) - 1 - 65_535);
    assert_eq!(c.st.frames_out, 2);
}

#[test]
fn a_response_completes_its_slot_whole_or_byte_by_byte() {
    for bytewise in [false, true] {
        let mut c = Client::new(LOCAL);
        c.output();
        c.open(2, b"");
        let f = c.frames();
        assert_eq!(f.len(), 1);
        let (kind, flags, id, _) = &f[0];
        assert_eq!(*kind, frame::HEADERS);
        assert_eq!(*flags, frame::END_HEADERS | frame::END_STREAM);
        assert_eq!((id >> 1) % 4, 2, "stream {id} is slot 2's");
        let mut server = settings(&[(frame::SETTINGS_MAX_CONCURRENT_STREAMS, 100)]);
        server.extend(frame(frame::HEADERS, frame::END_HEADERS, *id, STATUS_200));
        server.extend(frame(frame::DATA, 0, *id, b"hel"));
        server.extend(frame(frame::DATA, frame::END_STREAM, *id, b"lo"));
        let ev = if bytewise {
            c.feed_bytewise(&server)
        } else {
            c.feed(&server)
        };
        assert_eq!(
            ev.unwrap(),
            [
                Event::Settings,
                Event::FirstByte { slot: 2 },
                Event::Complete {
                    slot: 2,
                    status: 200,
                    grpc: None,
                }
            ]
        );
        let f = c.frames();
        assert_eq!((f[0].0, f[0].1), (frame::SETTINGS, frame::ACK));
        assert_eq!(c.conn.open_streams(), 0);
        assert_eq!(c.conn.capacity(), 4);
        assert_eq!(c.st.frames_in, 4);
    }
}

#[test]
fn stream_ids_rise_and_name_their_slot() {
    let mut last = 0;
    for slot in [0, 3, 1, 1, 2, 0] {
        let id = next_id(last, slot, 4).unwrap();
        assert!(id > last && id % 2 == 1, "{id} after {last}");
        assert_eq!((id >> 1) % 4, slot);
        assert!(id - last <= 8, "at most one lap skipped");
        last = id;
    }
    assert_eq!(next_id(0, 0, 1), Some(1));
    assert_eq!(next_id(1, 0, 1), Some(3));
    assert_eq!(next_id(frame::MAX_WINDOW, 0, 1), None);
    assert_eq!(
        next_id(frame::MAX_WINDOW - 2, 0, 1),
        Some(frame::MAX_WINDOW)
    );
    // The last id given out ends the connection's streams.
    let mut c = Client::ready();
    c.conn.last_id = frame::MAX_WINDOW;
    let head = Head::Fields(&c.fields);
    assert_eq!(c.conn.open_stream(0, head, b"", &mut c.st), Err(Exhausted));
    assert_eq!(c.conn.capacity(), 0);
    assert!(c.conn.is_draining());
}

#[test]
fn goaway_returns_the_streams_it_did_not_take() {
    let mut c = Client::ready();
    for slot in 0..3 {
        c.open(slot, b"");
    }
    let ids: Vec<u32> = c.frames().iter().map(|f| f.2).collect();
    let mut goaway = Vec::new();
    frame::goaway(&mut goaway, ids[0], frame::NO_ERROR);
    let ev = c.feed(&goaway).unwrap();
    assert_eq!(
        ev,
        [
            Event::Unprocessed { slot: 1 },
            Event::Unprocessed { slot: 2 },
            Event::GoAway { code: 0 }
        ]
    );
    assert_eq!(c.conn.capacity(), 0);
    assert_eq!(c.conn.open_streams(), 1);
    assert_eq!(c.st.goaways, 1);
    // The stream below the last id still completes.
    let ev = c
        .feed(&frame(
            frame::HEADERS,
            frame::END_HEADERS | frame::END_STREAM,
            ids[0],
            STATUS_200,
        ))
        .unwrap();
    assert_eq!(
        ev[1],
        Event::Complete {
            slot: 0,
            status: 200,
            grpc: None,
        }
    );
}

#[test]
fn resets_are_refused_or_failures_and_counted() {
    let mut c = Client::ready();
    c.open(0, b"");
    c.open(1, b"");
    let ids: Vec<u32> = c.frames().iter().map(|f| f.2).collect();
    let mut server = frame(
        frame::RST_STREAM,
        0,
        ids[0],
        &frame::REFUSED_STREAM.to_be_bytes(),
    );
    server.extend(frame(
        frame::RST_STREAM,
        0,
        ids[1],
        &frame::INTERNAL_ERROR.to_be_bytes(),
    ));
    // A reset of a stream already gone is ignored.
    server.extend(frame(
        frame::RST_STREAM,
        0,
        ids[1],
        &frame::CANCEL.to_be_bytes(),
    ));
    let ev = c.feed(&server).unwrap();
    assert_eq!(
        ev,
        [
            Event::Unprocessed { slot: 0 },
            Event::Reset {
                slot: 1,
                code: frame::INTERNAL_ERROR
            }
        ]
    );
    assert_eq!(
        c.st.resets().collect::<Vec<_>>(),
        [("INTERNAL_ERROR", 1), ("REFUSED_STREAM", 1)]
    );
}

#[test]
fn pings_are_answered_with_their_payload() {
    let mut c = Client::ready();
    let mut server = Vec::new();
    frame::ping(&mut server, false, b"abcdefgh");
    frame::ping(&mut server, true, b"ignored!");
    assert_eq!(c.feed(&server).unwrap(), []);
    let f = c.frames();
    assert_eq!(f, [(frame::PING, frame::ACK, 0, b"abcdefgh".to_vec())]);
    assert_eq!(c.st.pings, 1);
}

#[test]
fn trailers_informational_heads_padding_and_continuations() {
    let mut c = Client::ready();
    c.open(0, b"");
    let id = c.frames()[0].2;
    let mut server = Vec::new();
    // 103 Early Hints, padded, with a priority.
    let mut p = vec![2];
    p.extend_from_slice(&[0, 0, 0, 0, 16]);
    p.extend(block_status("103"));
    p.extend_from_slice(&[0, 0]);
    server.extend(frame(
        frame::HEADERS,
        frame::END_HEADERS | frame::PADDED | frame::PRIORITY_FLAG,
        id,
        &p,
    ));
    // The final head split over a HEADERS and two CONTINUATIONs.
    let head = block_status("201");
    server.extend(frame(frame::HEADERS, 0, id, &head[..1]));
    server.extend(frame(frame::CONTINUATION, 0, id, &head[1..3]));
    server.extend(frame(
        frame::CONTINUATION,
        frame::END_HEADERS,
        id,
        &head[3..],
    ));
    // A padded DATA: 3 bytes of body, 4 of padding.
    server.extend(frame(
        frame::DATA,
        frame::PADDED,
        id,
        &[4, b'a', b'b', b'c', 0, 0, 0, 0],
    ));
    // An unknown frame type, ignored.
    server.extend(frame(0xfa, 0, id, b"??"));
    // Trailers (a literal field "grpc-status: 0") end the stream.
    let trailers = [
        0x00, 11, b'g', b'r', b'p', b'c', b'-', b's', b't', b'a', b't', b'u', b's', 1, b'0',
    ];
    server.extend(frame(
        frame::HEADERS,
        frame::END_HEADERS | frame::END_STREAM,
        id,
        &trailers,
    ));
    for bytewise in [false, true] {
        let mut c2 = Client::ready();
        c2.open(0, b"");
        c2.output();
        let ev = if bytewise {
            c2.feed_bytewise(&server)
        } else {
            c2.feed(&server)
        };
        assert_eq!(
            ev.unwrap(),
            [
                Event::FirstByte { slot: 0 },
                Event::Complete {
                    slot: 0,
                    status: 201,
                    grpc: Some(0),
                }
            ],
            "bytewise {bytewise}"
        );
        assert_eq!(c2.output(), b"", "nothing to answer");
    }
}

#[test]
fn malformed_responses_reset_their_stream_only() {
    // DATA before any head; END_STREAM on a 1xx; a 101; trailers without
    // END_STREAM: each resets its stream and leaves the connection up.
    let cases: [&dyn Fn(u32) -> Vec<u8>; 4] = [
        &|id| frame(frame::DATA, frame::END_STREAM, id, b"x"),
        &|id| {
            frame(
                frame::HEADERS,
                frame::END_HEADERS | frame::END_STREAM,
                id,
                &block_status("100"),
            )
        },
        &|id| frame(frame::HEADERS, frame::END_HEADERS, id, &block_status("101")),
        &|id| {
            let mut b = frame(frame::HEADERS, frame::END_HEADERS, id, STATUS_200);
            b.extend(frame(
                frame::HEADERS,
                frame::END_HEADERS,
                id,
                &[0x00, 1, b'x', 1, b'y'],
            ));
            b
        },
    ];
    for (k, case) in cases.iter().enumerate() {
        let mut c = Client::ready();
        c.open(1, b"");
        let id = c.frames()[0].2;
        let ev = c.feed(&case(id)).unwrap();
        assert_eq!(ev.last(), Some(&Event::Malformed { slot: 1 }), "case {k}");
        let f = c.frames();
        assert_eq!(f[0].0, frame::RST_STREAM, "case {k}");
        assert_eq!(f[0].3, frame::PROTOCOL_ERROR.to_be_bytes(), "case {k}");
        assert_eq!(c.conn.open_streams(), 0);
    }
}

#[test]
fn connection_errors_name_what_broke() {
    let big = vec![0; frame::DEFAULT_MAX_FRAME as usize + 1];
    let cases: Vec<(Vec<u8>, u32)> = vec![
        (
            b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
            frame::PROTOCOL_ERROR,
        ),
        (frame(frame::PING, 0, 0, b"12345678"), frame::PROTOCOL_ERROR),
        (
            frame(frame::SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0]),
            frame::FLOW_CONTROL_ERROR,
        ),
        (
            frame(frame::SETTINGS, 0, 0, &[0, 5, 0, 0, 0, 1]),
            frame::PROTOCOL_ERROR,
        ),
        (
            frame(frame::SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 1]),
            frame::PROTOCOL_ERROR,
        ),
        (
            frame(frame::SETTINGS, 0, 0, &[0, 2, 0]),
            frame::FRAME_SIZE_ERROR,
        ),
        (frame(frame::SETTINGS, 0, 1, &[]), frame::PROTOCOL_ERROR),
    ];
    for (k, (bytes, code)) in cases.into_iter().enumerate() {
        let mut c = Client::new(LOCAL);
        let e = c.feed(&bytes).unwrap_err();
        assert_eq!(e.code(), code, "case {k}: {e}");
    }
    let after_settings: Vec<(Vec<u8>, u32)> = vec![
        (frame(frame::DATA, 0, 0, b"x"), frame::PROTOCOL_ERROR),
        (frame(frame::DATA, 0, 1, &big), frame::FRAME_SIZE_ERROR),
        (
            frame(frame::HEADERS, frame::END_HEADERS, 3, STATUS_200),
            frame::PROTOCOL_ERROR,
        ),
        (
            frame(frame::HEADERS, frame::END_HEADERS, 2, STATUS_200),
            frame::PROTOCOL_ERROR,
        ),
        (
            frame(
                frame::PUSH_PROMISE,
                frame::END_HEADERS,
                1,
                &[0, 0, 0, 2, 0x88],
            ),
            frame::PROTOCOL_ERROR,
        ),
        (
            frame(frame::CONTINUATION, frame::END_HEADERS, 1, STATUS_200),
            frame::PROTOCOL_ERROR,
        ),
        (
            frame(frame::WINDOW_UPDATE, 0, 0, &[0, 0, 0, 0]),
            frame::PROTOCOL_ERROR,
        ),
        (
            frame(frame::WINDOW_UPDATE, 0, 0, &[0x7f, 0xff, 0xff, 0xff]),
            frame::FLOW_CONTROL_ERROR,
        ),
        (
            frame(frame::WINDOW_UPDATE, 0, 0, &[0, 1]),
            frame::FRAME_SIZE_ERROR,
        ),
        (
            frame(frame::RST_STREAM, 0, 0, &[0, 0, 0, 1]),
            frame::PROTOCOL_ERROR,
        ),
        (
            frame(frame::RST_STREAM, 0, 1, &[0, 1]),
            frame::FRAME_SIZE_ERROR,
        ),
        (
            frame(frame::GOAWAY, 0, 0, &[0, 0, 0]),
            frame::FRAME_SIZE_ERROR,
        ),
        (
            frame(frame::PRIORITY, 0, 1, &[0, 0]),
            frame::FRAME_SIZE_ERROR,
        ),
        (
            frame(
                frame::HEADERS,
                frame::END_HEADERS,
                1,
                &[0xff, 0xff, 0xff, 0xff, 0x0f],
            ),
            frame::COMPRESSION_ERROR,
        ),
        (
            frame(frame::DATA, frame::PADDED, 1, &[1]),
            frame::PROTOCOL_ERROR,
        ),
    ];
    for (k, (bytes, code)) in after_settings.into_iter().enumerate() {
        let mut c = Client::ready();
        c.open(0, b"");
        c.output();
        let e = c.feed(&bytes).unwrap_err();
        assert_eq!(e.code(), code, "case {k}: {e}");
    }
    // A header block interrupted by another frame.
    let mut c = Client::ready();
    c.open(0, b"");
    let id = c.frames()[0].2;
    let mut b = frame(frame::HEADERS, 0, id, &[0x08]);
    frame::ping(&mut b, false, b"12345678");
    assert_eq!(c.feed(&b).unwrap_err().code(), frame::PROTOCOL_ERROR);
}

#[test]
fn hpack_bombs_and_endless_continuations_are_refused() {
    let local = Settings {
        max_header_list: 4096,
        ..LOCAL
    };
    let mut c = Client::new(local);
    c.feed(&settings(&[])).unwrap();
    c.output();
    c.open(0, b"");
    let id = c.frames()[0].2;
    // One 1000-byte entry put in the table, then referred to 100 times.
    let mut block = vec![0x88, 0x40, 1, b'x', 0x7f, 0x81, 0x07];
    block.extend(std::iter::repeat_n(b'v', 1000));
    block.extend(std::iter::repeat_n(0xbe, 100));
    let e = c
        .feed(&frame(frame::HEADERS, frame::END_HEADERS, id, &block))
        .unwrap_err();
    assert_eq!(e.code(), frame::COMPRESSION_ERROR, "{e}");
    // CONTINUATIONs that never end are cut off long before memory is.
    let mut c = Client::new(local);
    c.feed(&settings(&[])).unwrap();
    c.output();
    c.open(0, b"");
    c.feed(&frame(frame::HEADERS, 0, id, &[0x88])).unwrap();
    let piece = frame(frame::CONTINUATION, 0, id, &[0x40; 16_000]);
    let mut err = None;
    for _ in 0..100 {
        if let Err(e) = c.feed(&piece) {
            err = Some(e);
            break;
        }
    }
    assert_eq!(err, Some(ConnError::HeaderList));
    assert!(c.conn.block.len() < 64 * 1024);
}

#[test]
fn bodies_wait_for_windows_and_frame_size() {
    let mut c = Client::new(LOCAL);
    c.output();
    // A 10-byte stream window; the frame size stays 16 KiB.
    c.feed(&settings(&[(frame::SETTINGS_INITIAL_WINDOW_SIZE, 10)]))
        .unwrap();
    c.output();
    let body: Vec<u8> = (0..25).collect();
    c.open(0, &body);
    let f = c.frames();
    assert_eq!(f.len(), 2);
    assert_eq!((f[0].0, f[0].1), (frame::HEADERS, frame::END_HEADERS));
    assert_eq!((f[1].0, f[1].1, f[1].3.len()), (frame::DATA, 0, 10));
    assert_eq!(c.st.window_stalls, 1);
    let id = f[0].2;
    // The stream's window opens by 8, then the setting rises by 100.
    c.feed(&frame(frame::WINDOW_UPDATE, 0, id, &8u32.to_be_bytes()))
        .unwrap();
    let f = c.frames();
    assert_eq!((f[0].0, f[0].3.len()), (frame::DATA, 8));
    c.feed(&settings(&[(frame::SETTINGS_INITIAL_WINDOW_SIZE, 110)]))
        .unwrap();
    let f = c.frames();
    assert_eq!((f[0].0, f[0].1), (frame::SETTINGS, frame::ACK));
    assert_eq!((f[1].0, f[1].1), (frame::DATA, frame::END_STREAM));
    assert_eq!(f[1].3, body[18..]);
    // The connection window holds bodies back as well: 65535 in all.
    let mut c = Client::ready();
    let big = vec![7u8; 70_000];
    c.open(0, &big);
    let sent: usize = c
        .frames()
        .iter()
        .filter(|f| f.0 == frame::DATA)
        .map(|f| {
            assert!(f.3.len() <= frame::DEFAULT_MAX_FRAME as usize);
            f.3.len()
        })
        .sum();
    assert_eq!(sent, 65_535);
    c.feed(&frame(frame::WINDOW_UPDATE, 0, 0, &10_000u32.to_be_bytes()))
        .unwrap();
    assert_eq!(c.frames(), [], "the stream's own window is shut too");
    let id = 1;
    c.feed(&frame(
        frame::WINDOW_UPDATE,
        0,
        id,
        &10_000u32.to_be_bytes(),
    ))
    .unwrap();
    let f = c.frames();
    assert_eq!(f.len(), 1);
    assert_eq!((f[0].1, f[0].3.len()), (frame::END_STREAM, 70_000 - 65_535));
}

#[test]
fn received_data_is_given_back_in_window_updates() {
    let local = Settings {
        streams: 1,
        stream_window: 1000,
        conn_window: 65_535,
        max_header_list: 4096,
    };
    let mut c = Client::new(local);
    c.feed(&settings(&[])).unwrap();
    c.output();
    c.open(0, b"");
    let id = c.frames()[0].2;
    c.feed(&frame(frame::HEADERS, frame::END_HEADERS, id, STATUS_200))
        .unwrap();
    for _ in 0..3 {
        c.feed(&frame(frame::DATA, 0, id, &[0; 400])).unwrap();
    }
    let f = c.frames();
    // Every 500 bytes of the stream's 1000, and the connection at 32767.
    let updates: Vec<(u32, u32)> = f
        .iter()
        .filter(|f| f.0 == frame::WINDOW_UPDATE)
        .map(|f| (f.2, u32::from_be_bytes(f.3[..].try_into().unwrap())))
        .collect();
    assert_eq!(updates, [(id, 800)]);
    // More than the stream's window without an update is refused.
    let e = c.feed(&frame(frame::DATA, 0, id, &[0; 1001])).unwrap_err();
    assert_eq!(e.code(), frame::FLOW_CONTROL_ERROR);
}

#[test]
fn a_cancelled_stream_is_reset_and_forgotten() {
    let mut c = Client::ready();
    c.open(0, b"");
    let id = c.frames()[0].2;
    c.conn.cancel(0, &mut c.st);
    assert_eq!(
        c.frames(),
        [(
            frame::RST_STREAM,
            0,
            id,
            frame::CANCEL.to_be_bytes().to_vec()
        )]
    );
    let mut late = frame(frame::HEADERS, frame::END_HEADERS, id, STATUS_200);
    late.extend(frame(frame::DATA, frame::END_STREAM, id, b"late"));
    assert_eq!(c.feed(&late).unwrap(), []);
    assert_eq!(c.conn.open_streams(), 0);
}

#[test]
fn a_stream_limit_caps_the_capacity() {
    let mut c = Client::new(LOCAL);
    assert_eq!(c.conn.capacity(), 4);
    c.feed(&settings(&[(frame::SETTINGS_MAX_CONCURRENT_STREAMS, 2)]))
        .unwrap();
    assert_eq!(c.conn.capacity(), 2);
    assert_eq!(c.conn.peer_max_streams(), Some(2));
    assert_eq!(c.st.max_concurrent_streams, Some(2));
    let mut many = Client::new(Settings {
        streams: 500,
        ..LOCAL
    });
    assert_eq!(
        many.conn.capacity(),
        100,
        "at most 100 before the server says"
    );
    many.feed(&settings(&[])).unwrap();
    assert_eq!(many.conn.capacity(), 500);
}

#[test]
fn reset_forgets_the_old_connection() {
    let mut c = Client::ready();
    c.open(0, b"abc");
    c.conn.reset();
    assert_eq!(c.conn.open_streams(), 0);
    assert_eq!(c.conn.capacity(), 4);
    // The new connection must see SETTINGS first again.
    assert!(c.feed(&frame(frame::PING, 0, 0, b"12345678")).is_err());
}

/// The connection's window goes to held-back bodies oldest first, and a new
/// body waits behind them: a stream refilled again and again on one slot
/// must not starve an older one on another (seen against a server that
/// opens its connection window 4 KiB a millisecond: one stream timed out).
#[test]
fn held_back_bodies_go_oldest_first() {
    let mut c = Client::ready();
    let body = vec![1u8; 40_000];
    c.open(0, &body);
    c.open(1, &body);
    let sent = |f: &[(u8, u8, u32, Vec<u8>)], id: u32| -> usize {
        f.iter()
            .filter(|f| f.0 == frame::DATA && f.2 == id)
            .map(|f| f.3.len())
            .sum()
    };
    let f = c.frames();
    let heads: Vec<u32> = f
        .iter()
        .filter(|f| f.0 == frame::HEADERS)
        .map(|f| f.2)
        .collect();
    let (a, b) = (heads[0], heads[1]);
    assert_eq!(sent(&f, a), 40_000);
    assert_eq!(sent(&f, b), 65_535 - 40_000, "the rest of the window");
    // The first completes and its slot (0, before the older stream's 1)
    // opens a new stream: its body waits behind the older one's rest.
    c.feed(&frame(
        frame::HEADERS,
        frame::END_HEADERS | frame::END_STREAM,
        a,
        STATUS_200,
    ))
    .unwrap();
    c.open(0, &body);
    let f = c.frames();
    let d = f.iter().find(|f| f.0 == frame::HEADERS).unwrap().2;
    assert_eq!(sent(&f, d), 0);
    c.feed(&frame(frame::WINDOW_UPDATE, 0, 0, &10_000u32.to_be_bytes()))
        .unwrap();
    let f = c.frames();
    assert_eq!(sent(&f, b), 10_000, "the older stream first");
    assert_eq!(sent(&f, d), 0);
    c.feed(&frame(frame::WINDOW_UPDATE, 0, 0, &20_000u32.to_be_bytes()))
        .unwrap();
    let f = c.frames();
    assert_eq!(sent(&f, b), 40_000 - 25_535 - 10_000);
    assert_eq!(sent(&f, d), 20_000 - (40_000 - 25_535 - 10_000));
    assert_eq!(c.st.window_stalls, 2);
}

/// A server that gives each stream `window` bytes and gives back at most
/// `update` a tick (a stream's, or with `conn`, the connection's), against
/// a client that keeps two streams of 20 000-byte bodies going: every
/// request finishes, none waits more than a bounded number of ticks.
#[test]
fn slow_windows_never_strand_a_stream() {
    for (window, update, conn) in [
        (1000u32, 1000u32, false),
        (65_535, 4096, true),
        (16, 4096, false),
    ] {
        let mut c = Client::new(LOCAL);
        let mut st_settings = vec![];
        if window != frame::DEFAULT_WINDOW {
            st_settings.push((frame::SETTINGS_INITIAL_WINDOW_SIZE, window));
        }
        let body = vec![5u8; 20_000];
        // Server state: per stream id, bytes received and not given back.
        let mut owed: std::collections::BTreeMap<u32, (u64, u64)> = Default::default();
        let mut conn_owed = 0u64;
        let mut done = 0;
        let mut opened = 0;
        let mut server = settings(&st_settings);
        let mut slots_free = vec![0u32, 1];
        let mut started_at: std::collections::BTreeMap<u32, u32> = Default::default();
        for tick in 0..200_000u32 {
            while let Some(slot) = slots_free.pop() {
                if opened < 40 {
                    c.open(slot, &body);
                    opened += 1;
                }
            }
            let ev = c.feed(&std::mem::take(&mut server)).unwrap();
            for e in ev {
                if let Event::Complete { slot, .. } = e {
                    slots_free.push(slot);
                    done += 1;
                }
            }
            for (kind, flags, id, payload) in c.frames() {
                if kind == frame::HEADERS {
                    owed.insert(id, (0, 0));
                    started_at.insert(id, tick);
                }
                if kind == frame::DATA {
                    let e = owed.get_mut(&id).unwrap();
                    e.0 += payload.len() as u64;
                    e.1 += payload.len() as u64;
                    conn_owed += payload.len() as u64;
                    if flags & frame::END_STREAM != 0 {
                        assert!(e.1 == 20_000);
                        server.extend(frame(
                            frame::HEADERS,
                            frame::END_HEADERS | frame::END_STREAM,
                            id,
                            STATUS_200,
                        ));
                        let took = tick - started_at[&id];
                        // Two streams share the rate: 20 000 bytes at
                        // `window` (or `update`) a tick, twice, and slack.
                        let bound = 2 * 20_000 / window.min(update) + 10;
                        assert!(
                            took <= bound,
                            "stream {id} took {took} ticks, over {bound} ({window}, {update}, {conn})"
                        );
                        owed.remove(&id);
                    }
                }
            }
            // Credit, as the test server does, once a tick.
            let give = if conn {
                conn_owed.min(update as u64)
            } else {
                conn_owed
            };
            if give > 0 {
                server.extend(frame(
                    frame::WINDOW_UPDATE,
                    0,
                    0,
                    &(give as u32).to_be_bytes(),
                ));
                conn_owed -= give;
            }
            for (&id, e) in owed.iter_mut() {
                let give = if conn { e.0 } else { e.0.min(update as u64) };
                if give > 0 {
                    server.extend(frame(
                        frame::WINDOW_UPDATE,
                        0,
                        id,
                        &(give as u32).to_be_bytes(),
                    ));
                    e.0 -= give;
                }
            }
            if done == 40 {
                break;
            }
        }
        assert_eq!(done, 40, "({window}, {update}, {conn})");
    }
}

/// A literal field without indexing, its name and value as they are.
fn literal(name: &str, value: &str) -> Vec<u8> {
    let mut b = vec![0x00, name.len() as u8];
    b.extend_from_slice(name.as_bytes());
    b.push(value.len() as u8);
    b.extend_from_slice(value.as_bytes());
    b
}

#[test]
fn grpc_status_comes_from_the_trailers_or_a_trailers_only_head() {
    for bytewise in [false, true] {
        let mut c = Client::ready();
        c.open(0, b"");
        c.open(1, b"");
        let ids: Vec<u32> = c.frames().iter().map(|f| f.2).collect();
        let mut server = frame(frame::HEADERS, frame::END_HEADERS, ids[0], STATUS_200);
        server.extend(frame(frame::DATA, 0, ids[0], &[0, 0, 0, 0, 0]));
        let mut trailers = literal("grpc-status", "3");
        trailers.extend(literal("grpc-message", "bad"));
        server.extend(frame(
            frame::HEADERS,
            frame::END_HEADERS | frame::END_STREAM,
            ids[0],
            &trailers,
        ));
        // Trailers-Only: the status in the one header block.
        let mut only = STATUS_200.to_vec();
        only.extend(literal("grpc-status", "12"));
        server.extend(frame(
            frame::HEADERS,
            frame::END_HEADERS | frame::END_STREAM,
            ids[1],
            &only,
        ));
        let ev = if bytewise {
            c.feed_bytewise(&server)
        } else {
            c.feed(&server)
        };
        let done: Vec<Event> = ev
            .unwrap()
            .into_iter()
            .filter(|e| matches!(e, Event::Complete { .. }))
            .collect();
        assert_eq!(
            done,
            [
                Event::Complete {
                    slot: 0,
                    status: 200,
                    grpc: Some(3)
                },
                Event::Complete {
                    slot: 1,
                    status: 200,
                    grpc: Some(12)
                }
            ],
            "bytewise {bytewise}"
        );
    }
    // A stream that reuses a slot starts without the last one's status.
    let mut c = Client::ready();
    c.open(0, b"");
    let id = c.frames()[0].2;
    let mut only = STATUS_200.to_vec();
    only.extend(literal("grpc-status", "5"));
    c.feed(&frame(
        frame::HEADERS,
        frame::END_HEADERS | frame::END_STREAM,
        id,
        &only,
    ))
    .unwrap();
    c.open(0, b"");
    let id = c.frames()[0].2;
    let ev = c
        .feed(&frame(
            frame::HEADERS,
            frame::END_HEADERS | frame::END_STREAM,
            id,
            STATUS_200,
        ))
        .unwrap();
    assert_eq!(
        ev[1],
        Event::Complete {
            slot: 0,
            status: 200,
            grpc: None
        }
    );
}

#[test]
fn kept_bodies_leave_out_padding_and_start_empty_per_stream() {
    for bytewise in [false, true] {
        let mut c = Client::ready();
        c.conn.keep_bodies();
        c.open(0, b"");
        let id = c.frames()[0].2;
        let mut server = frame(frame::HEADERS, frame::END_HEADERS, id, STATUS_200);
        server.extend(frame(frame::DATA, 0, id, b"hel"));
        // Padded: pad length 3, "lo", then 3 bytes of padding.
        server.extend(frame(
            frame::DATA,
            frame::PADDED | frame::END_STREAM,
            id,
            &[3, b'l', b'o', 0, 0, 0],
        ));
        let ev = if bytewise {
            c.feed_bytewise(&server)
        } else {
            c.feed(&server)
        };
        assert!(matches!(ev.unwrap().last(), Some(Event::Complete { .. })));
        assert_eq!(c.conn.take_body(0), b"hello", "bytewise {bytewise}");
        c.open(0, b"");
        assert_eq!(c.conn.take_body(0), b"", "a new stream starts empty");
    }
    // Not asked for: nothing is kept.
    let mut c = Client::ready();
    c.open(0, b"");
    let id = c.frames()[0].2;
    let mut server = frame(frame::HEADERS, frame::END_HEADERS, id, STATUS_200);
    server.extend(frame(frame::DATA, frame::END_STREAM, id, b"x"));
    c.feed(&server).unwrap();
    assert_eq!(c.conn.take_body(0), b"");
}
