//! The codec against RFC 9204's examples and an independent implementation
//! (shiguredo_http3: its encoder's output we must decode, and our output it
//! must decode), and malformed input against the error codes it must earn.

use shiguredo_http3 as sh;

use super::qpack::{self, Decoder};
use super::*;
use crate::http::h2::hpack::Value;

fn sh_frame(frame: &sh::Frame) -> Vec<u8> {
    let mut buf = vec![0; 1 << 16];
    let n = sh::frame::encode_frame(&mut buf, frame).unwrap();
    buf.truncate(n);
    buf
}

fn sh_section(fields: &[(&str, &str)], huffman: bool) -> Vec<u8> {
    let headers: Vec<sh::Header> = fields
        .iter()
        .map(|(n, v)| sh::Header::new(n, v).unwrap())
        .collect();
    let mut enc = sh::QpackEncoder::new().use_huffman(huffman);
    let mut buf = vec![0; 1 << 16];
    let n = enc.encode(&mut buf, &headers, 0).unwrap();
    buf.truncate(n);
    buf
}

/// Decodes `section`, Huffman values decoded, as owned strings.
type Fields = Vec<(String, String)>;

fn decode(section: &[u8]) -> Result<(Option<u16>, Fields), H3Error> {
    let mut fields = Vec::new();
    let d = Decoder::new(16 << 10).decode(section, |n, v| {
        let mut buf = Vec::new();
        let v = v.bytes(&mut buf).unwrap();
        fields.push((
            String::from_utf8_lossy(n).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        ));
    })?;
    Ok((d.status, fields))
}

fn owned(fields: &[(&str, &str)]) -> Fields {
    fields
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn static_table_is_rfc9204s() {
    let ours = qpack::static_table();
    assert_eq!(ours.len(), sh::qpack::STATIC_TABLE_LEN);
    for (i, h) in sh::qpack::STATIC_TABLE.iter().enumerate() {
        assert_eq!((h.name(), h.value()), ours[i], "entry {i}");
    }
}

#[test]
fn rfc9204_appendix_b1_section_decodes() {
    // B.1: Required Insert Count 0, Base 0, ":path" (static 1) with the
    // literal value "/index.html".
    let section = [
        0x00, 0x00, 0x51, 0x0b, 0x2f, 0x69, 0x6e, 0x64, 0x65, 0x78, 0x2e, 0x68, 0x74, 0x6d, 0x6c,
    ];
    assert_eq!(
        decode(&section).unwrap(),
        (None, owned(&[(":path", "/index.html")]))
    );
}

const RESPONSE: &[(&str, &str)] = &[
    (":status", "200"),
    ("content-type", "text/plain"),
    ("content-length", "5"),
    ("server", "Caddy"),
    ("date", "Sun, 06 Dec 2026 17:00:00 GMT"),
    ("x-made-up", "Quite a Long Value, with Punctuation!"),
    ("alt-svc", "h3=\":443\"; ma=2592000"),
];

#[test]
fn sections_from_an_independent_encoder_decode() {
    for huffman in [false, true] {
        for status in ["200", "404", "418", "103", "999"] {
            let mut fields = RESPONSE.to_vec();
            fields[0].1 = status;
            let section = sh_section(&fields, huffman);
            let (got_status, got) = decode(&section).unwrap();
            assert_eq!(got, owned(&fields), "huffman {huffman}");
            assert_eq!(got_status, Some(status.parse().unwrap()));
        }
    }
}

#[test]
fn our_request_sections_decode_independently_and_are_byte_exact() {
    let fields: &[(&[u8], &[u8])] = &[
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"localhost:18443"),
        (b":path", b"/"),
        (b"user-agent", b"loadgen"),
        (b"x-custom", b"1"),
        (b":method", b"PATCH"),
    ];
    let mut section = Vec::new();
    qpack::encode_fields(fields.iter().copied(), &mut section);
    let decoded = sh::QpackDecoder::new().decode(&section).unwrap();
    let back: Vec<(&[u8], &[u8])> = decoded.iter().map(|h| (h.name(), h.value())).collect();
    assert_eq!(back, fields);
    // Hand-checked: 0xd1 = indexed static 17 (:method GET), 0xd7 = 23
    // (:scheme https), 0x50 = literal with static name 0 (:authority),
    // 0xc1 = 1 (:path /), 0x5f 0x50 = name 15 + 80 = 95 (user-agent),
    // 0x27 0x01 = a literal name of 7 + 1 bytes (3-bit prefix), 0x5f 0x00 =
    // name 15 (:method) with the value PATCH.
    let mut want = vec![0x00, 0x00, 0xd1, 0xd7, 0x50, 0x0f];
    want.extend_from_slice(b"localhost:18443");
    want.push(0xc1);
    want.extend_from_slice(&[0x5f, 0x50, 0x07]);
    want.extend_from_slice(b"loadgen");
    want.extend_from_slice(&[0x27, 0x01]);
    want.extend_from_slice(b"x-custom");
    want.extend_from_slice(&[0x01, b'1', 0x5f, 0x00, 0x05]);
    want.extend_from_slice(b"PATCH");
    assert_eq!(section, want);
    // The frame is HEADERS, its length, the section.
    let frame = qpack::fixed_request_frame(fields.iter().copied());
    assert_eq!(&frame[..2], &[0x01, section.len() as u8]);
    assert_eq!(&frame[2..], &section[..]);
}

#[test]
fn malformed_sections_earn_their_codes() {
    let decomp = code::QPACK_DECOMPRESSION_FAILED;
    for (section, want) in [
        // Required Insert Count 1: a table we set to 0 bytes.
        (&[0x01, 0x00, 0xd1][..], decomp),
        // Indexed field line in the dynamic table (T = 0).
        (&[0x00, 0x00, 0x80], decomp),
        // Literal with a dynamic name reference.
        (&[0x00, 0x00, 0x40, 0x01, b'x'], decomp),
        // Post-base forms.
        (&[0x00, 0x00, 0x10], decomp),
        (&[0x00, 0x00, 0x00, 0x01, b'x'], decomp),
        // Static index 99 (the table ends at 98): 0xff = 63 + 36.
        (&[0x00, 0x00, 0xff, 0x24], decomp),
        // Cut inside a field line, and inside the prefix.
        (&[0x00, 0x00, 0x51, 0x05, b'a'], decomp),
        (&[0x00], decomp),
        (&[], decomp),
        // A Huffman-coded value whose padding is not all ones.
        (&[0x00, 0x00, 0x51, 0x81, 0x00], decomp),
    ] {
        let mut d = Decoder::new(1024);
        let got = match d.decode(section, |_, _| {}) {
            Ok(_) => 0,
            Err(e) => e.code(),
        };
        if section == [0x00, 0x00, 0x51, 0x81, 0x00] {
            // Values stay coded until asked for; asking finds the fault.
            assert_eq!(got, 0);
            let mut v = None;
            d.decode(section, |_, val| v = Some(val.wire().to_vec()))
                .unwrap();
            let e = H3Error::from(
                Value::Huffman(&v.unwrap())
                    .decode_into(&mut Vec::new())
                    .unwrap_err(),
            );
            assert_eq!(e.code(), want);
            continue;
        }
        assert_eq!(got, want, "{section:02x?}");
    }
    // Over our field section limit, counted as HTTP/3 does (+32 a field).
    let big = sh_section(&[("x-a", &"v".repeat(100))], false);
    let e = Decoder::new(100).decode(&big, |_, _| {}).unwrap_err();
    assert_eq!(e.code(), code::H3_EXCESSIVE_LOAD);
    assert!(e.is_stream_error());
    assert!(Decoder::new(135).decode(&big, |_, _| {}).is_ok());
    let coded_name = sh_section(&[(&"n".repeat(90), "v")], true);
    let e = Decoder::new(100)
        .decode(&coded_name, |_, _| {})
        .unwrap_err();
    assert_eq!(e.code(), code::H3_EXCESSIVE_LOAD);
}

/// What a reader gave, owned, for comparing reads cut differently.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Headers(Vec<u8>),
    Data(usize),
    Settings(Vec<u8>),
    Goaway(u64),
}

/// Feeds `bytes` in pieces of `cut` bytes; DATA pieces are summed per frame
/// boundary-free run so that any cut gives the same list.
fn read(kind: StreamKind, bytes: &[u8], cut: usize) -> Result<Vec<Got>, H3Error> {
    let mut r = FrameReader::new(kind, 1024);
    let mut out: Vec<Got> = Vec::new();
    for mut piece in bytes.chunks(cut) {
        while let Some(f) = r.next(&mut piece)? {
            let g = match f {
                Frame::Headers(h) => Got::Headers(h.to_vec()),
                Frame::Data(d) => Got::Data(d.len()),
                Frame::Settings(s) => Got::Settings(s.to_vec()),
                Frame::Goaway(id) => Got::Goaway(id),
            };
            match (out.last_mut(), g) {
                (Some(Got::Data(n)), Got::Data(m)) if m > 0 && *n > 0 => *n += m,
                (_, g) => out.push(g),
            }
        }
        assert!(piece.is_empty(), "the reader left input unread");
    }
    r.finish()?;
    Ok(out)
}

#[test]
fn frames_read_the_same_whole_and_byte_by_byte() {
    let section = sh_section(RESPONSE, true);
    let mut stream = sh_frame(&sh::Frame::Headers(sh::HeadersPayload::new(
        section.clone(),
    )));
    // A grease frame (0x21) and an unknown one with a payload are skipped.
    stream.extend_from_slice(&[0x21, 0x03, 1, 2, 3, 0x40, 0xff, 0x00]);
    stream.extend(sh_frame(&sh::Frame::Data(sh::DataPayload::new(vec![
        7;
        3000
    ]))));
    stream.extend(sh_frame(&sh::Frame::Data(sh::DataPayload::new(Vec::new()))));
    stream.extend(sh_frame(&sh::Frame::Headers(sh::HeadersPayload::new(
        sh_section(&[("grpc-status", "0")], false),
    ))));
    let whole = read(StreamKind::Request, &stream, stream.len()).unwrap();
    assert_eq!(whole[0], Got::Headers(section));
    assert_eq!(whole[1], Got::Data(3000));
    assert_eq!(whole[2], Got::Data(0));
    assert_eq!(whole.len(), 4);
    for cut in [1, 2, 3, 7, 100, 1500] {
        assert_eq!(
            read(StreamKind::Request, &stream, cut).unwrap(),
            whole,
            "cut {cut}"
        );
    }
    // Control stream: SETTINGS (with shiguredo's grease setting), GOAWAY.
    let settings = sh::SettingsPayload::from_settings(
        &sh::Settings::new().max_field_section_size(sh::VarInt::from_static(8192)),
    );
    let mut control = sh_frame(&sh::Frame::Settings(settings));
    control.extend(sh_frame(&sh::Frame::Goaway(sh::GoawayPayload::new(
        sh::VarInt::from_static(1 << 20),
    ))));
    for cut in [1, 5, control.len()] {
        let got = read(StreamKind::Control, &control, cut).unwrap();
        assert!(matches!(got[0], Got::Settings(_)));
        assert_eq!(got[1], Got::Goaway(1 << 20));
    }
}

#[test]
fn misplaced_and_malformed_frames_earn_their_codes() {
    use code::*;
    let data = sh_frame(&sh::Frame::Data(sh::DataPayload::new(vec![1])));
    let settings = [0x04, 0x00];
    for (kind, bytes, want) in [
        // HTTP/2's frame types, anywhere.
        (StreamKind::Request, &[0x06, 0x00][..], H3_FRAME_UNEXPECTED),
        (
            StreamKind::Control,
            &[0x04, 0x00, 0x09, 0x00],
            H3_FRAME_UNEXPECTED,
        ),
        // Control frames on a request stream, request frames on control.
        (StreamKind::Request, &settings, H3_FRAME_UNEXPECTED),
        (
            StreamKind::Request,
            &[0x07, 0x01, 0x00],
            H3_FRAME_UNEXPECTED,
        ),
        (
            StreamKind::Control,
            &[0x04, 0x00, 0x00, 0x00],
            H3_FRAME_UNEXPECTED,
        ),
        (
            StreamKind::Control,
            &[0x04, 0x00, 0x0d, 0x01, 0x00],
            H3_FRAME_UNEXPECTED,
        ),
        // Push, which we never allowed.
        (StreamKind::Request, &[0x05, 0x01, 0x00], H3_ID_ERROR),
        (
            StreamKind::Control,
            &[0x04, 0x00, 0x03, 0x01, 0x00],
            H3_ID_ERROR,
        ),
        // The control stream must start with SETTINGS, once.
        (
            StreamKind::Control,
            &[0x07, 0x01, 0x00],
            H3_MISSING_SETTINGS,
        ),
        (
            StreamKind::Control,
            &[0x21, 0x00, 0x04, 0x00],
            H3_MISSING_SETTINGS,
        ),
        (
            StreamKind::Control,
            &[0x04, 0x00, 0x04, 0x00],
            H3_FRAME_UNEXPECTED,
        ),
        // GOAWAY must hold exactly one varint.
        (
            StreamKind::Control,
            &[0x04, 0x00, 0x07, 0x02, 0x00, 0x00],
            H3_FRAME_ERROR,
        ),
        (
            StreamKind::Control,
            &[0x04, 0x00, 0x07, 0x01, 0x40],
            H3_FRAME_ERROR,
        ),
        // A stream that ends inside a frame, or inside a frame header.
        (StreamKind::Request, &data[..data.len() - 1], H3_FRAME_ERROR),
        (StreamKind::Request, &[0x01], H3_FRAME_ERROR),
        // HEADERS above our limit (1024 + a few bytes), before any arrives.
        (StreamKind::Request, &[0x01, 0x48, 0x00], H3_EXCESSIVE_LOAD),
    ] {
        for cut in [1, bytes.len().max(1)] {
            let got = read(kind, bytes, cut).map_err(|e| e.code());
            assert_eq!(got, Err(want), "{kind:?} {bytes:02x?} cut {cut}");
        }
    }
}

#[test]
fn server_unidirectional_streams() {
    use code::*;
    let feed = |bytes: &[u8]| -> Result<(UniStream, PeerStreams), H3Error> {
        let mut peer = PeerStreams::new();
        let mut s = UniStream::new();
        for b in bytes.chunks(1) {
            s.on_data(b, &mut peer)?;
        }
        Ok((s, peer))
    };
    let control = client_control_stream(16384);
    // Type 0, SETTINGS of 5 bytes: MAX_FIELD_SECTION_SIZE (6) = 16384 (a
    // 4-byte varint).
    assert_eq!(control, [0x00, 0x04, 0x05, 0x06, 0x80, 0x00, 0x40, 0x00]);
    // Our own control stream parses as the server would read it.
    let (s, mut peer) = feed(&control).unwrap();
    let want = PeerSettings {
        max_field_section_size: Some(16384),
        ..PeerSettings::default()
    };
    assert_eq!(peer.settings(), Some(&want));
    assert_eq!(
        s.on_end().map_err(|e| e.code()),
        Err(H3_CLOSED_CRITICAL_STREAM)
    );
    assert_eq!(peer.take_goaway(), None);
    // GOAWAY: lowered is fine, raised or not a request stream is not.
    let mut s = UniStream::new();
    let mut p = PeerStreams::new();
    s.on_data(&[0x00, 0x04, 0x00, 0x07, 0x01, 0x08], &mut p)
        .unwrap();
    assert_eq!(p.take_goaway(), Some(8));
    assert_eq!(p.take_goaway(), None);
    s.on_data(&[0x07, 0x01, 0x04], &mut p).unwrap();
    assert_eq!((p.goaway(), p.take_goaway()), (Some(4), Some(4)));
    let e = s.on_data(&[0x07, 0x01, 0x08], &mut p).unwrap_err();
    assert_eq!(e.code(), H3_ID_ERROR);
    let e = feed(&[0x00, 0x04, 0x00, 0x07, 0x01, 0x01]).unwrap_err();
    assert_eq!(e.code(), H3_ID_ERROR);
    // Settings: twice the same, or an HTTP/2 one.
    let e = feed(&[0x00, 0x04, 0x04, 0x06, 0x01, 0x06, 0x02]).unwrap_err();
    assert_eq!(e.code(), H3_SETTINGS_ERROR);
    let e = feed(&[0x00, 0x04, 0x02, 0x04, 0x00]).unwrap_err();
    assert_eq!(e.code(), H3_SETTINGS_ERROR);
    let e = feed(&[0x00, 0x04, 0x03, 0x06, 0x01, 0x07]).unwrap_err();
    assert_eq!(e.code(), H3_FRAME_ERROR);
    // A second control stream.
    let mut peer = PeerStreams::new();
    UniStream::new().on_data(&[0x00], &mut peer).unwrap();
    let e = UniStream::new().on_data(&[0x00], &mut peer).unwrap_err();
    assert_eq!(e.code(), H3_STREAM_CREATION_ERROR);
    // QPACK encoder: capacity 0 is all it may say.
    let (s, _) = feed(&[0x02, 0x20, 0x20]).unwrap();
    assert_eq!(
        s.on_end().map_err(|e| e.code()),
        Err(H3_CLOSED_CRITICAL_STREAM)
    );
    for insert in [&[0x02, 0x21][..], &[0x02, 0xc1, 0x01, b'x'], &[0x02, 0x00]] {
        assert_eq!(feed(insert).unwrap_err().code(), QPACK_ENCODER_STREAM_ERROR);
    }
    // QPACK decoder stream: read and dropped.
    assert!(feed(&[0x03, 0x81, 0x40, 0x01]).is_ok());
    // Push, and a grease type (0x21 + 0x1f = 0x40 as a 2-byte varint).
    assert_eq!(feed(&[0x01]).unwrap_err().code(), H3_ID_ERROR);
    let mut p = PeerStreams::new();
    let mut s = UniStream::new();
    assert_eq!(
        s.on_data(&[0x40], &mut p).unwrap(),
        UniStreamAction::Continue
    );
    assert_eq!(
        s.on_data(&[0x40, 1, 2, 3], &mut p).unwrap(),
        UniStreamAction::StopSending(H3_STREAM_CREATION_ERROR)
    );
    assert_eq!(
        s.on_data(&[9, 9], &mut p).unwrap(),
        UniStreamAction::Continue
    );
    assert!(s.on_end().is_ok());
}

fn response_events(bytes: &[u8], cut: usize) -> Result<Vec<ResponseEvent>, H3Error> {
    let mut r = ResponseReader::new(4096);
    let mut q = Decoder::new(4096);
    let mut events = Vec::new();
    for piece in bytes.chunks(cut) {
        r.on_data(piece, &mut q, |e| events.push(e), |_, _| {})?;
    }
    r.on_finish()?;
    // Body pieces depend on the cut; their sum does not.
    let mut merged: Vec<ResponseEvent> = Vec::new();
    for e in events {
        match (merged.last_mut(), e) {
            (Some(ResponseEvent::Body(n)), ResponseEvent::Body(m)) => *n += m,
            (_, e) => merged.push(e),
        }
    }
    Ok(merged)
}

fn headers(fields: &[(&str, &str)]) -> Vec<u8> {
    sh_frame(&sh::Frame::Headers(sh::HeadersPayload::new(sh_section(
        fields, true,
    ))))
}

/// A HEADERS frame the independent encoder refuses to make.
fn ours(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    qpack::request_frame(fields.iter().copied(), &mut out);
    out
}

#[test]
fn responses_read_in_order_and_out_of_order_is_refused() {
    use ResponseEvent::*;
    let mut stream = headers(&[(":status", "103"), ("link", "</a>")]);
    stream.extend(headers(RESPONSE));
    stream.extend(sh_frame(&sh::Frame::Data(sh::DataPayload::new(vec![
        1;
        700
    ]))));
    stream.extend(sh_frame(&sh::Frame::Data(sh::DataPayload::new(vec![1; 5]))));
    stream.extend(headers(&[("grpc-status", "0")]));
    let want = vec![
        Informational(103),
        Head { status: 200 },
        Body(705),
        Trailers,
    ];
    for cut in [1, 3, stream.len()] {
        assert_eq!(response_events(&stream, cut).unwrap(), want);
    }
    let data = sh_frame(&sh::Frame::Data(sh::DataPayload::new(vec![1; 5])));
    let head = headers(RESPONSE);
    let cat = |parts: &[&[u8]]| parts.concat();
    for (bytes, want) in [
        (data.clone(), code::H3_FRAME_UNEXPECTED),
        (
            cat(&[&head, &headers(&[("a", "b")]), &data]),
            code::H3_FRAME_UNEXPECTED,
        ),
        (
            cat(&[&head, &headers(&[("a", "b")]), &head]),
            code::H3_FRAME_UNEXPECTED,
        ),
        (Vec::new(), code::H3_REQUEST_INCOMPLETE),
        (headers(&[(":status", "103")]), code::H3_REQUEST_INCOMPLETE),
        (headers(&[("server", "x")]), code::H3_MESSAGE_ERROR),
        (ours(&[(b":status", b"20")]), code::H3_MESSAGE_ERROR),
        (ours(&[(b":status", b"101")]), code::H3_MESSAGE_ERROR),
        (
            cat(&[&head, &headers(&[(":status", "200")])]),
            code::H3_MESSAGE_ERROR,
        ),
    ] {
        let got = response_events(&bytes, 2).map_err(|e| e.code());
        assert_eq!(got, Err(want), "{bytes:02x?}");
    }
    // A reader is reused across streams.
    let mut r = ResponseReader::new(4096);
    let mut q = Decoder::new(4096);
    r.on_data(&head[..3], &mut q, |_| {}, |_, _| {}).unwrap();
    r.reset();
    let mut events = Vec::new();
    r.on_data(&head, &mut q, |e| events.push(e), |_, _| {})
        .unwrap();
    assert!(r.has_head() && r.on_finish().is_ok());
    assert_eq!(events, [Head { status: 200 }]);
}
