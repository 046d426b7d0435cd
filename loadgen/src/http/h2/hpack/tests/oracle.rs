//! Our codec against an independent one, httlib-hpack (and its Huffman
//! code, httlib-huffman, built from its own tables): Huffman strings both
//! ways, header lists its encoder made (every representation, Huffman or
//! not, dynamic table references and size updates) decoded by us, and our
//! request blocks decoded by it.

use httlib_huffman::DecoderSpeed;
use proptest::prelude::*;

use super::super::table::STATIC;
use super::super::{FixedRequest, RequestEncoder, encode_literal, huffman};
use super::*;

fn oracle_huffman_encode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    httlib_huffman::encode(s, &mut out).unwrap();
    out
}

fn oracle_huffman_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for speed in DecoderSpeed::known() {
        out.clear();
        httlib_huffman::decode(s, &mut out, speed).unwrap();
    }
    out
}

fn our_huffman_encode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    huffman::encode(s, &mut out);
    out
}

fn our_huffman_decode(s: &[u8]) -> Result<Vec<u8>, HpackError> {
    let mut out = Vec::new();
    huffman::decode(s, |b| out.push(b))?;
    Ok(out)
}

#[test]
fn huffman_code_is_canonical_and_complete() {
    // Complete: the Kraft sum of the 257 codes is exactly 1 (in units of
    // 2^-30), so every bit string starts with a code.
    let kraft: u64 = huffman::CODES
        .iter()
        .map(|&(_, len)| 1u64 << (30 - len))
        .sum();
    assert_eq!(kraft, 1 << 30);
    // Canonical: sorted by (length, symbol), each code is the previous
    // plus one, shifted to the new length.
    let mut order: Vec<usize> = (0..257).collect();
    order.sort_by_key(|&s| (huffman::CODES[s].1, s));
    let mut code = 0u32;
    let mut len = huffman::CODES[order[0]].1;
    assert_eq!(huffman::CODES[order[0]].0, 0);
    for &s in &order[1..] {
        let (c, l) = huffman::CODES[s];
        code = (code + 1) << (l - len);
        len = l;
        assert_eq!(c, code, "symbol {s}");
    }
    // EOS is 30 ones.
    assert_eq!(huffman::CODES[256], (0x3fff_ffff, 30));
}

#[test]
fn huffman_every_byte_against_oracle() {
    let mut strings: Vec<Vec<u8>> = Vec::new();
    for b in 0..=255u8 {
        // Runs of 1 to 8 of the same byte end in every padding length.
        for n in 1..=8 {
            strings.push(vec![b; n]);
        }
    }
    strings.push((0..=255).collect());
    strings.push((0..=255).rev().collect());
    strings.push(Vec::new());
    for s in &strings {
        let ours = our_huffman_encode(s);
        assert_eq!(ours, oracle_huffman_encode(s), "encoding {s:?}");
        assert_eq!(
            oracle_huffman_decode(&ours),
            *s,
            "oracle decoding ours of {s:?}"
        );
        assert_eq!(our_huffman_decode(&ours).unwrap(), *s, "decoding {s:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn huffman_random_strings_against_oracle(s in proptest::collection::vec(any::<u8>(), 0..64)) {
        let theirs = oracle_huffman_encode(&s);
        prop_assert_eq!(our_huffman_decode(&theirs).unwrap(), s.clone());
        prop_assert_eq!(oracle_huffman_decode(&our_huffman_encode(&s)), s);
    }
}

/// One field as the oracle's encoder is told to send it: httlib-hpack's
/// flags (1 Huffman name, 2 Huffman value, 4 with indexing, 8 never
/// indexed, 16 best format, i.e. indexed when the table has it).
type OracleField = (Vec<u8>, Vec<u8>, u8);

/// Names and values from small pools, so that fields repeat and the
/// oracle's encoder refers to its dynamic table; some values are random
/// bytes, none of which HPACK treats specially.
fn field() -> impl Strategy<Value = OracleField> {
    let name = prop_oneof![
        (0..STATIC.len()).prop_map(|i| STATIC[i].0.to_vec()),
        prop::sample::select(vec!["x-a", "x-request-id", "grpc-status", "set-cookie"])
            .prop_map(|s| s.as_bytes().to_vec()),
    ];
    let value = prop_oneof![
        (0..STATIC.len()).prop_map(|i| STATIC[i].1.to_vec()),
        prop::sample::select(vec![
            "",
            "0",
            "200",
            "nginx/1.22.1",
            "text/html; charset=utf-8"
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..48),
    ];
    (name, value, 0u8..32)
}

/// A block as the oracle is told to encode it: a size update, then fields.
type OracleBlock = (Option<usize>, Vec<OracleField>);

/// Blocks of one connection, with the table size limit we allow: each may
/// start with a size update (up to the limit), then fields.
fn connection() -> impl Strategy<Value = (usize, Vec<OracleBlock>)> {
    prop_oneof![0usize..400, Just(4096usize)].prop_flat_map(|limit| {
        let block = (
            proptest::option::weighted(0.2, 0..=limit),
            proptest::collection::vec(field(), 0..12),
        );
        (Just(limit), proptest::collection::vec(block, 1..8))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// What the oracle encodes, we decode to the same list, block after
    /// block on one connection, through evictions and size updates.
    #[test]
    fn oracle_encoded_blocks_decode((limit, blocks) in connection()) {
        let mut enc = httlib_hpack::Encoder::with_dynamic_size(limit as u32);
        let mut dec = Decoder::new(limit, 1 << 20);
        for (update, fields) in blocks {
            let mut block = Vec::new();
            if let Some(n) = update {
                enc.update_max_dynamic_size(n as u32, &mut block).unwrap();
            }
            for f in &fields {
                enc.encode(f.clone(), &mut block).unwrap();
            }
            let (got, decoded) = decode_all(&mut dec, &block).unwrap();
            let want: Fields = fields.iter().map(|(n, v, _)| (n.clone(), v.clone())).collect();
            prop_assert_eq!(got, want);
            prop_assert!(dec.table_size() <= dec.max_table_size());
            if let Some(n) = update {
                prop_assert_eq!(dec.max_table_size(), n);
            }
            let statuses: Vec<&[u8]> = fields
                .iter()
                .filter(|(n, _, _)| n == b":status")
                .map(|(_, v, _)| &v[..])
                .collect();
            let want_status = match statuses[..] {
                [v] if v.len() == 3 && v.iter().all(u8::is_ascii_digit) => {
                    std::str::from_utf8(v).unwrap().parse().ok()
                }
                _ => None,
            };
            prop_assert_eq!(decoded.status, want_status);
        }
    }
}

/// The oracle's decoder, playing the server: the fields of one block.
fn oracle_decode(dec: &mut httlib_hpack::Decoder<'_>, block: &[u8]) -> Fields {
    let mut buf = block.to_vec();
    let mut out = Vec::new();
    dec.decode(&mut buf, &mut out).unwrap();
    out.into_iter().map(|(n, v, _)| (n, v)).collect()
}

/// A request's fields, lowercase names, some in the static table.
fn request() -> impl Strategy<Value = Fields> {
    let extra = (
        prop::sample::select(vec![
            "accept",
            "user-agent",
            "x-api-key",
            "cookie",
            "authorization",
        ]),
        proptest::collection::vec(b' '..=b'~', 0..80),
    )
        .prop_map(|(n, v)| (n.as_bytes().to_vec(), v));
    (
        prop::sample::select(vec!["GET", "POST", "HEAD"]),
        prop::sample::select(vec!["http", "https"]),
        prop::sample::select(vec!["/", "/index.html", "/api/v1/items?id=42"]),
        proptest::collection::vec(extra, 0..6),
    )
        .prop_map(|(m, s, p, extra)| {
            let mut f = vec![
                (b":method".to_vec(), m.as_bytes().to_vec()),
                (b":scheme".to_vec(), s.as_bytes().to_vec()),
                (b":authority".to_vec(), b"127.0.0.1:8080".to_vec()),
                (b":path".to_vec(), p.as_bytes().to_vec()),
            ];
            f.extend(extra);
            f
        })
}

fn pairs(f: &Fields) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
    f.iter().map(|(n, v)| (&n[..], &v[..]))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A connection's requests as the server decodes them, with both the
    /// oracle and our decoder as the server: a fixed request (first, then
    /// repeats) interleaved with templated ones, a second fixed request
    /// that must not use the table, and the server lowering its table size
    /// part way (sometimes below what the fixed request needs).
    #[test]
    fn our_request_blocks_decode(
        fixed in request(),
        other_fixed in request(),
        templated in proptest::collection::vec(request(), 1..4),
        order in proptest::collection::vec(0u8..3, 1..16),
        shrink in proptest::option::of((0usize..16, 0usize..600)),
    ) {
        let req = FixedRequest::new(pairs(&fixed));
        let other = FixedRequest::new(pairs(&other_fixed));
        let mut conn = RequestEncoder::new();
        let mut theirs = httlib_hpack::Decoder::with_dynamic_size(4096);
        let mut ours = Decoder::new(4096, 1 << 20);
        for (k, &which) in order.iter().enumerate() {
            if let Some((at, size)) = shrink
                && at == k
            {
                conn.set_peer_table_size(size);
                theirs.set_max_dynamic_size(size as u32);
            }
            let mut block = Vec::new();
            let want = match which {
                0 => {
                    conn.encode_fixed(&req, &mut block);
                    &fixed
                }
                1 => {
                    conn.encode_fixed(&other, &mut block);
                    &other_fixed
                }
                _ => {
                    let t = &templated[k % templated.len()];
                    conn.encode_literal(pairs(t), &mut block);
                    t
                }
            };
            prop_assert_eq!(&oracle_decode(&mut theirs, &block), want);
            let (got, _) = decode_all(&mut ours, &block).unwrap();
            prop_assert_eq!(&got, want);
            // The server's table shrank when we said so, not later.
            prop_assert_eq!(ours.max_table_size(), conn.table_size());
        }
    }
}

#[test]
fn literal_encoding_decodes_in_the_oracle() {
    let fields: Fields = vec![
        (b":method".to_vec(), b"GET".to_vec()),
        (b":path".to_vec(), b"/a".to_vec()),
        (b"x-custom".to_vec(), vec![0, 1, 0xff]),
        (b"accept-encoding".to_vec(), b"gzip, deflate".to_vec()),
    ];
    let mut block = Vec::new();
    encode_literal(pairs(&fields), &mut block);
    let mut theirs = httlib_hpack::Decoder::with_dynamic_size(4096);
    assert_eq!(oracle_decode(&mut theirs, &block), fields);
}
