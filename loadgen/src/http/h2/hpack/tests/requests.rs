//! The request side: literal and fixed encodings byte for byte, the per
//! connection protocol, and the HTTP/1.1 head → HTTP/2 fields translation.

use super::super::{FieldsError, FixedRequest, RequestEncoder, RequestFields, encode_literal};
use super::*;
use crate::http::RequestSpec;

const FIELDS: [(&[u8], &[u8]); 5] = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":authority", b"h"),
    (b":path", b"/x"),
    (b"x-a", b"1"),
];

#[test]
fn literal_encoding_bytes() {
    let mut out = Vec::new();
    encode_literal(FIELDS, &mut out);
    assert_eq!(out, hex("82 86 0101 68 0402 2f78 0003 782d 6101 31"));
    // A static name at index 15 or above takes a second byte.
    out.clear();
    encode_literal([(&b"user-agent"[..], &b"lg"[..])], &mut out);
    assert_eq!(out, hex("0f2b 026c 67"));
    let mut dec = Decoder::new(4096, 1 << 20);
    assert_eq!(
        lines(&decode_all(&mut dec, &out).unwrap().0),
        ["user-agent: lg"]
    );
    assert_eq!(dec.table_len(), 0);
}

#[test]
fn fixed_request_blocks() {
    let req = FixedRequest::new(FIELDS);
    assert_eq!(
        req.first(),
        &hex("82 86 4101 68 4402 2f78 4003 782d 6101 31")[..]
    );
    // :authority, :path, x-a went in in that order: 64, 63, 62.
    assert_eq!(req.repeat(), &hex("82 86 c0 bf be")[..]);
    assert_eq!(
        req.table_need(),
        (32 + 10 + 1) + (32 + 5 + 2) + (32 + 3 + 1)
    );
    let mut lit = Vec::new();
    encode_literal(FIELDS, &mut lit);
    assert_eq!(req.literal(), &lit[..]);
    // The server's view: the same list from first, then from repeat.
    let mut dec = Decoder::new(4096, 1 << 20);
    let want: Vec<String> = FIELDS
        .iter()
        .map(|(n, v)| {
            format!(
                "{}: {}",
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(v)
            )
        })
        .collect();
    for block in [req.first(), req.repeat(), req.repeat()] {
        assert_eq!(lines(&decode_all(&mut dec, block).unwrap().0), want);
    }
    assert_eq!(dec.table_len(), 3);
}

#[test]
fn request_encoder_protocol() {
    let req = FixedRequest::new(FIELDS);
    let other = FixedRequest::new([(&b":method"[..], &b"GET"[..]), (b"x-b", b"2")]);
    let mut conn = RequestEncoder::new();
    let next = |conn: &mut RequestEncoder, r: &FixedRequest| {
        let mut out = Vec::new();
        conn.encode_fixed(r, &mut out);
        out
    };
    assert_eq!(next(&mut conn, &req), req.first());
    assert_eq!(next(&mut conn, &req), req.repeat());
    // Another fixed request may not insert: the table is req's.
    assert_eq!(next(&mut conn, &other), other.literal());
    // Templated requests never insert.
    let mut out = Vec::new();
    conn.encode_literal(FIELDS, &mut out);
    assert_eq!(out, req.literal());
    // A larger server table changes nothing.
    conn.set_peer_table_size(65536);
    assert_eq!(next(&mut conn, &req), req.repeat());
    // Smaller, but req's entries still fit: a size update, then repeat.
    conn.set_peer_table_size(200);
    let mut want = hex("3fa9 01");
    want.extend_from_slice(req.repeat());
    assert_eq!(next(&mut conn, &req), want);
    assert_eq!(next(&mut conn, &req), req.repeat());
    // Two changes before the next block: the smallest is signalled; req's
    // entries no longer fit, so literals from now on.
    conn.set_peer_table_size(150);
    conn.set_peer_table_size(100);
    assert_eq!(conn.table_size(), 100);
    let mut want = hex("3f45");
    want.extend_from_slice(req.literal());
    assert_eq!(next(&mut conn, &req), want);
    assert_eq!(next(&mut conn, &req), req.literal());
    // The table is free again: a request that fits may fill it.
    assert!(other.table_need() <= 100);
    assert_eq!(next(&mut conn, &other), other.first());
    assert_eq!(next(&mut conn, &other), other.repeat());
    // A request entirely in the static table needs no table at all.
    let all_static = FixedRequest::new([(&b":method"[..], &b"GET"[..]), (b":path", b"/")]);
    assert_eq!(all_static.table_need(), 0);
    assert_eq!(next(&mut conn, &all_static), hex("8284"));
}

#[test]
fn fixed_request_too_big_for_the_table_goes_literal() {
    let big = vec![b'v'; 5000];
    let req = FixedRequest::new([(&b":method"[..], &b"GET"[..]), (b"cookie", &big[..])]);
    let mut conn = RequestEncoder::new();
    for _ in 0..3 {
        let mut out = Vec::new();
        conn.encode_fixed(&req, &mut out);
        assert_eq!(out, req.literal());
    }
}

fn fields_of(head: &[u8], scheme: &[u8]) -> Result<(Vec<String>, usize), FieldsError> {
    let mut f = RequestFields::new();
    let n = f.from_http1(head, scheme)?;
    let lines = f
        .iter()
        .map(|(n, v)| {
            format!(
                "{}: {}",
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(v)
            )
        })
        .collect();
    Ok((lines, n))
}

#[test]
fn fields_from_a_rendered_request() {
    let mut spec = RequestSpec::get("127.0.0.1:8080", "/api?id=1");
    spec.method = "POST".into();
    spec.headers = vec![
        ("Accept".into(), "application/json".into()),
        ("X-Trace-ID".into(), "Ab1".into()),
    ];
    spec.body = b"hello".to_vec();
    let bytes = spec.to_bytes().unwrap();
    let (lines, n) = fields_of(&bytes, b"https").unwrap();
    assert_eq!(
        lines,
        [
            ":method: POST",
            ":scheme: https",
            ":authority: 127.0.0.1:8080",
            ":path: /api?id=1",
            "accept: application/json",
            "x-trace-id: Ab1",
            "content-length: 5",
        ]
    );
    assert_eq!(&bytes[n..], b"hello");
}

#[test]
fn fields_drop_connection_specific_headers() {
    let head = b"GET / HTTP/1.1\r\nhost: a.example\r\nConnection: keep-alive, X-Hop\r\n\
        Keep-Alive: 5\r\nProxy-Connection: x\r\nTransfer-Encoding: chunked\r\nUpgrade: h2c\r\n\
        X-Hop: 1\r\nTE: gzip\r\nX-Keep: 2\r\n\r\n";
    let (lines, _) = fields_of(head, b"http").unwrap();
    assert_eq!(
        lines,
        [
            ":method: GET",
            ":scheme: http",
            ":authority: a.example",
            ":path: /",
            "x-keep: 2",
        ]
    );
    let (lines, _) = fields_of(b"GET / HTTP/1.1\r\nTE:  Trailers \r\n\r\n", b"http").unwrap();
    assert_eq!(
        lines,
        [":method: GET", ":scheme: http", ":path: /", "te: Trailers"]
    );
}

#[test]
fn fields_errors() {
    assert_eq!(
        fields_of(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", b"http"),
        Err(FieldsError::TwoHosts)
    );
    assert_eq!(
        fields_of(b"GET / HTTP/1.1\r\nHost: a\r\n", b"http"),
        Err(FieldsError::Incomplete)
    );
    assert!(matches!(
        fields_of(b"GET / HTTP/1.1\r\nBad Name: a\r\n\r\n", b"http"),
        Err(FieldsError::Parse(_))
    ));
    let mut head = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..129 {
        head.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    assert_eq!(
        fields_of(&head, b"http"),
        Err(FieldsError::Parse(httparse::Error::TooManyHeaders))
    );
}

#[test]
fn fields_reuse_their_buffer() {
    let mut f = RequestFields::new();
    f.from_http1(
        b"GET /a HTTP/1.1\r\nHost: h\r\nX-Long: 0123456789\r\n\r\n",
        b"http",
    )
    .unwrap();
    assert_eq!(f.len(), 5);
    f.from_http1(b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n", b"http")
        .unwrap();
    assert_eq!(f.len(), 4);
    assert_eq!(f.iter().last(), Some((&b":path"[..], &b"/b"[..])));
}

#[test]
fn static_lookup_agrees_with_a_search_of_the_table() {
    use super::super::table::{STATIC, static_lookup};
    let brute = |name: &[u8], value: &[u8]| {
        let by_name = STATIC.iter().position(|&(n, _)| n == name)? + 1;
        let full = STATIC
            .iter()
            .position(|&(n, v)| n == name && v == value)
            .map(|i| i + 1);
        Some((by_name, full))
    };
    let mut names: Vec<Vec<u8>> = STATIC.iter().map(|(n, _)| n.to_vec()).collect();
    // Same lengths and ends as static names, but not them; and oddities.
    names.extend(
        [
            "dare",
            "eTag",
            "x-refresh",
            "refrEsh",
            ":statuz",
            "",
            "a",
            "accept-encodinG",
            "access-control-allow-origin-x",
        ]
        .map(|s| s.as_bytes().to_vec()),
    );
    for name in &names {
        for value in STATIC.iter().map(|(_, v)| *v).chain([&b"other"[..]]) {
            assert_eq!(
                static_lookup(name, value),
                brute(name, value),
                "{:?} {:?}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(value)
            );
        }
    }
}

#[test]
fn short_compares_agree_with_eq() {
    let base: Vec<u8> = (0..40).map(|i| b'a' + i % 26).collect();
    for n in 0..40 {
        let a = &base[..n];
        assert!(super::super::eq_bytes(a, a));
        assert!(!super::super::eq_bytes(a, &base[..n + 1]));
        for k in 0..n {
            let mut b = a.to_vec();
            b[k] ^= 0x20;
            assert!(!super::super::eq_bytes(a, &b), "length {n}, byte {k}");
        }
    }
}
