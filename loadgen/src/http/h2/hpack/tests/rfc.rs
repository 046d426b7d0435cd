//! RFC 7541 Appendix C, every example: integers (C.1), single fields
//! (C.2), requests without and with Huffman coding on one connection (C.3,
//! C.4), and responses with a 256-byte table that evicts (C.5, C.6).

use super::super::{Reader, Value, encode_int, huffman};
use super::*;

#[test]
fn c1_integers() {
    for (value, prefix, wire) in [
        (10usize, 5, &[0x0a][..]),
        (1337, 5, &[0x1f, 0x9a, 0x0a][..]),
        (42, 8, &[0x2a][..]),
    ] {
        let mut out = Vec::new();
        encode_int(value, prefix, 0, &mut out);
        assert_eq!(out, wire);
        let mut r = Reader::new(wire);
        assert_eq!(r.int(prefix).unwrap(), value);
        assert_eq!(r.pos, wire.len());
    }
    // The flag bits above the prefix are not part of the value.
    let mut r = Reader::new(&[0xea]);
    assert_eq!(r.int(5).unwrap(), 10);
}

/// One field into a fresh 4096-byte table.
fn single(block: &str) -> (Vec<String>, Vec<String>) {
    let mut dec = Decoder::new(4096, 1 << 20);
    let (fields, _) = decode_all(&mut dec, &hex(block)).unwrap();
    (lines(&fields), table(&dec))
}

#[test]
fn c2_field_representations() {
    // C.2.1: literal with indexing, new name.
    let (f, t) = single("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
    assert_eq!(f, ["custom-key: custom-header"]);
    assert_eq!(t, ["custom-key: custom-header"]);
    // C.2.2: literal without indexing, indexed name.
    let (f, t) = single("040c 2f73 616d 706c 652f 7061 7468");
    assert_eq!(f, [":path: /sample/path"]);
    assert!(t.is_empty());
    // C.2.3: never indexed, new name.
    let (f, t) = single("1008 7061 7373 776f 7264 0673 6563 7265 74");
    assert_eq!(f, ["password: secret"]);
    assert!(t.is_empty());
    // C.2.4: indexed.
    let (f, t) = single("82");
    assert_eq!(f, [":method: GET"]);
    assert!(t.is_empty());
}

/// Decodes the blocks in order on one decoder, checking each list, table
/// and table size against the RFC.
fn sequence(table_size: usize, steps: &[(&str, &[&str], &[&str], usize)]) {
    let mut dec = Decoder::new(table_size, 1 << 20);
    for (i, (block, want_fields, want_table, want_size)) in steps.iter().enumerate() {
        let (fields, decoded) = decode_all(&mut dec, &hex(block)).unwrap();
        assert_eq!(lines(&fields), *want_fields, "step {i}");
        assert_eq!(table(&dec), *want_table, "step {i}");
        assert_eq!(dec.table_size(), *want_size, "step {i}");
        assert_eq!(decoded.fields, want_fields.len());
    }
}

const REQ1: &[&str] = &[
    ":method: GET",
    ":scheme: http",
    ":path: /",
    ":authority: www.example.com",
];
const REQ2: &[&str] = &[
    ":method: GET",
    ":scheme: http",
    ":path: /",
    ":authority: www.example.com",
    "cache-control: no-cache",
];
const REQ3: &[&str] = &[
    ":method: GET",
    ":scheme: https",
    ":path: /index.html",
    ":authority: www.example.com",
    "custom-key: custom-value",
];
const REQ_T1: &[&str] = &[":authority: www.example.com"];
const REQ_T2: &[&str] = &["cache-control: no-cache", ":authority: www.example.com"];
const REQ_T3: &[&str] = &[
    "custom-key: custom-value",
    "cache-control: no-cache",
    ":authority: www.example.com",
];

#[test]
fn c3_requests_without_huffman() {
    sequence(
        4096,
        &[
            (
                "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                REQ1,
                REQ_T1,
                57,
            ),
            ("8286 84be 5808 6e6f 2d63 6163 6865", REQ2, REQ_T2, 110),
            (
                "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
                REQ3,
                REQ_T3,
                164,
            ),
        ],
    );
}

#[test]
fn c4_requests_with_huffman() {
    sequence(
        4096,
        &[
            (
                "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
                REQ1,
                REQ_T1,
                57,
            ),
            ("8286 84be 5886 a8eb 1064 9cbf", REQ2, REQ_T2, 110),
            (
                "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
                REQ3,
                REQ_T3,
                164,
            ),
        ],
    );
}

const RESP1: &[&str] = &[
    ":status: 302",
    "cache-control: private",
    "date: Mon, 21 Oct 2013 20:13:21 GMT",
    "location: https://www.example.com",
];
const RESP2: &[&str] = &[
    ":status: 307",
    "cache-control: private",
    "date: Mon, 21 Oct 2013 20:13:21 GMT",
    "location: https://www.example.com",
];
const RESP3: &[&str] = &[
    ":status: 200",
    "cache-control: private",
    "date: Mon, 21 Oct 2013 20:13:22 GMT",
    "location: https://www.example.com",
    "content-encoding: gzip",
    "set-cookie: foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
];
const RESP_T1: &[&str] = &[
    "location: https://www.example.com",
    "date: Mon, 21 Oct 2013 20:13:21 GMT",
    "cache-control: private",
    ":status: 302",
];
const RESP_T2: &[&str] = &[
    ":status: 307",
    "location: https://www.example.com",
    "date: Mon, 21 Oct 2013 20:13:21 GMT",
    "cache-control: private",
];
const RESP_T3: &[&str] = &[
    "set-cookie: foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
    "content-encoding: gzip",
    "date: Mon, 21 Oct 2013 20:13:22 GMT",
];

#[test]
fn c5_responses_without_huffman_evicting() {
    sequence(
        256,
        &[
            (
                "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
                 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
                 6c65 2e63 6f6d",
                RESP1,
                RESP_T1,
                222,
            ),
            ("4803 3330 37c1 c0bf", RESP2, RESP_T2, 222),
            (
                "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
                 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
                 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
                 3d31",
                RESP3,
                RESP_T3,
                215,
            ),
        ],
    );
}

#[test]
fn c6_responses_with_huffman_evicting() {
    sequence(
        256,
        &[
            (
                "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
                 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
                RESP1,
                RESP_T1,
                222,
            ),
            ("4883 640e ffc1 c0bf", RESP2, RESP_T2, 222),
            (
                "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
                 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
                 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
                RESP3,
                RESP_T3,
                215,
            ),
        ],
    );
}

#[test]
fn status_comes_out_of_every_representation() {
    let status = |block: &str| {
        let mut dec = Decoder::new(4096, 1 << 20);
        dec.decode(&hex(block), |_, _| {}).unwrap().status
    };
    // C.6.1's Huffman-coded 302 with indexing, C.5.1's raw one.
    assert_eq!(status("4882 6402"), Some(302));
    assert_eq!(status("4803 3330 32"), Some(302));
    // Indexed 200 and 404, literal without indexing and never indexed.
    assert_eq!(status("88"), Some(200));
    assert_eq!(status("8d"), Some(404));
    assert_eq!(status("0803 3530 33"), Some(503));
    assert_eq!(status("1882 6402"), Some(302));
    // A literal name ":status", Huffman-coded (as a client could send it).
    let mut block = vec![0x00, 0x80];
    let mut name = Vec::new();
    huffman::encode(b":status", &mut name);
    block[1] |= name.len() as u8;
    block.extend_from_slice(&name);
    block.extend_from_slice(&[0x03, b'2', b'0', b'4']);
    let mut dec = Decoder::new(4096, 1 << 20);
    assert_eq!(dec.decode(&block, |_, _| {}).unwrap().status, Some(204));
    // Absent, twice, not three digits: none.
    assert_eq!(status("5a04 677a 6970"), None);
    assert_eq!(status("8888"), None);
    assert_eq!(status("0802 3230"), None);
    assert_eq!(status("0804 3230 3030"), None);
    assert_eq!(status("0803 3230 78"), None);
}

#[test]
fn unindexed_huffman_values_are_left_coded() {
    // C.6.1's date value, sent without indexing: it reaches the callback
    // still coded, and decodes on demand.
    let block = hex("0f12 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff");
    let mut dec = Decoder::new(4096, 1 << 20);
    let mut seen = Vec::new();
    let decoded = dec
        .decode(&block, |name, value| {
            assert_eq!(name, b"date");
            assert!(value.is_huffman());
            assert_eq!(value.wire().len(), 22);
            let mut buf = Vec::new();
            seen = value.bytes(&mut buf).unwrap().to_vec();
        })
        .unwrap();
    assert_eq!(seen, b"Mon, 21 Oct 2013 20:13:21 GMT");
    // Counted at wire length: 32 + "date" + 22.
    assert_eq!(decoded.list_size, 32 + 4 + 22);
    assert_eq!(dec.table_len(), 0);
    assert_eq!(Value::Plain(b"x").bytes(&mut Vec::new()).unwrap(), b"x");
}
