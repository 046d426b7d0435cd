//! Malformed blocks: each error, where it is found, and no panic on any
//! input.

use proptest::prelude::*;

use super::super::{Value, huffman};
use super::*;

fn err(limit: usize, block: &str) -> HpackError {
    let mut dec = Decoder::new(limit, 1 << 20);
    decode_all(&mut dec, &hex(block)).unwrap_err()
}

#[test]
fn bad_index() {
    // Indexed 0, and one past an empty dynamic table.
    assert_eq!(err(4096, "80"), HpackError::BadIndex(0));
    assert_eq!(err(4096, "be"), HpackError::BadIndex(62));
    // A literal's name index past the table.
    assert_eq!(err(4096, "7f10 0161"), HpackError::BadIndex(79));
    assert_eq!(err(4096, "0f30 0161"), HpackError::BadIndex(63));
    // Past the dynamic table once it has one entry.
    let mut dec = Decoder::new(4096, 1 << 20);
    dec.decode(&hex("4001 6101 62"), |_, _| {}).unwrap();
    assert!(dec.decode(&hex("be"), |_, _| {}).is_ok());
    assert_eq!(
        dec.decode(&hex("bf"), |_, _| {}),
        Err(HpackError::BadIndex(63))
    );
}

#[test]
fn integer_overflow() {
    // Above u32::MAX: 127 + 268435455 + 15 << 28.
    assert_eq!(err(4096, "ffff ffff ff0f"), HpackError::IntegerOverflow);
    // More than 5 continuation bytes, even of zeros.
    assert_eq!(err(4096, "ff80 8080 8080 00"), HpackError::IntegerOverflow);
    // The largest that fits: an index, so a bad one, not an overflow.
    assert_eq!(
        err(4096, "ff80 ffff ff0f"),
        HpackError::BadIndex(127 + 128 * (127 + 128 * (127 + 128 * 127)) + (15 << 28))
    );
    // A string length that overflows.
    assert_eq!(err(4096, "40ff ffff ffff 0f"), HpackError::IntegerOverflow);
}

#[test]
fn size_updates() {
    let mut dec = Decoder::new(4096, 1 << 20);
    // Up to the limit is fine, twice at the start too (RFC 7541 §4.2).
    dec.decode(&hex("20 3fe1 1f 82"), |_, _| {}).unwrap();
    assert_eq!(dec.max_table_size(), 4096);
    assert_eq!(
        err(4096, "3fe2 1f"),
        HpackError::SizeUpdateTooLarge {
            size: 4097,
            limit: 4096
        }
    );
    assert_eq!(
        err(100, "3f46"),
        HpackError::SizeUpdateTooLarge {
            size: 101,
            limit: 100
        }
    );
    assert_eq!(err(4096, "82 20"), HpackError::SizeUpdateNotAtStart);
    // An update evicts: two entries, then a size that holds one.
    dec.decode(&hex("4001 6101 62 4001 6301 64"), |_, _| {})
        .unwrap();
    assert_eq!(dec.table_size(), 68);
    dec.decode(&hex("3f03"), |_, _| {}).unwrap();
    assert_eq!((dec.table_len(), dec.table_size()), (1, 34));
    assert_eq!(dec.table_entry(1), Some((&b"c"[..], &b"d"[..])));
    // A table of 0 holds nothing: the entry goes by, the table stays empty.
    dec.decode(&hex("20 4001 6501 66"), |_, _| {}).unwrap();
    assert_eq!(dec.table_len(), 0);
}

#[test]
fn an_entry_larger_than_the_table_empties_it() {
    // RFC 7541 §4.4: not an error; the table ends up empty, so what was
    // at index 62 is gone.
    let mut dec = Decoder::new(100, 1 << 20);
    dec.decode(&hex("4001 6101 62 4001 6301 64"), |_, _| {})
        .unwrap();
    assert_eq!(dec.table_len(), 2);
    let mut big = hex("4001 65");
    super::super::encode_raw_string(&[b'f'; 68], &mut big);
    let (fields, _) = decode_all(&mut dec, &big).unwrap();
    assert_eq!(fields, [(b"e".to_vec(), vec![b'f'; 68])]);
    assert_eq!((dec.table_len(), dec.table_size()), (0, 0));
    assert_eq!(
        dec.decode(&hex("be"), |_, _| {}),
        Err(HpackError::BadIndex(62))
    );
    // One byte less fits, evicting both.
    dec.decode(&hex("4001 6101 62 4001 6301 64"), |_, _| {})
        .unwrap();
    big[3] -= 1;
    big.pop();
    decode_all(&mut dec, &big).unwrap();
    assert_eq!((dec.table_len(), dec.table_size()), (1, 100));
}

#[test]
fn huffman_errors() {
    // 30 ones is EOS, in a value with indexing (decoded at once).
    assert_eq!(err(4096, "4001 6184 ffff ffff"), HpackError::HuffmanEos);
    // '0' (00000) then 3 zero bits of padding; then 8 bits of ones.
    assert_eq!(err(4096, "4001 6181 00"), HpackError::HuffmanPadding);
    assert_eq!(err(4096, "4001 6181 ff"), HpackError::HuffmanPadding);
    // Names are decoded even without indexing.
    assert_eq!(err(4096, "0081 ff01 61"), HpackError::HuffmanPadding);
    // Values without indexing are checked when decoded.
    let mut dec = Decoder::new(4096, 1 << 20);
    let mut seen = None;
    dec.decode(&hex("0001 6184 ffff ffff"), |_, v| {
        seen = Some(v.decode_into(&mut Vec::new()))
    })
    .unwrap();
    assert_eq!(seen, Some(Err(HpackError::HuffmanEos)));
    assert_eq!(
        Value::Huffman(&[0x00]).decode_into(&mut Vec::new()),
        Err(HpackError::HuffmanPadding)
    );
    // 7 bits of ones is the longest padding allowed; EOS inside a string
    // is refused wherever it is.
    assert_eq!(our(&[0x07]), Ok(b"0".to_vec()));
    assert_eq!(our(&[0x0f, 0xff]), Err(HpackError::HuffmanPadding));
    let mut with_eos = Vec::new();
    huffman::encode(b"a", &mut with_eos);
    with_eos.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    assert_eq!(our(&with_eos), Err(HpackError::HuffmanEos));
}

fn our(s: &[u8]) -> Result<Vec<u8>, HpackError> {
    let mut out = Vec::new();
    huffman::decode(s, |b| out.push(b))?;
    Ok(out)
}

#[test]
fn truncated() {
    for block in [
        "ff", "41", "4185", "400a 63", "4001 61", "0f", "3f", "0085 ff",
    ] {
        assert_eq!(err(4096, block), HpackError::Truncated, "{block}");
    }
}

#[test]
fn header_list_too_large() {
    // One 4000-byte entry, then references to it: 5 bytes of block would
    // be 20 KB of list. The limit stops it at the field that crosses.
    let mut first = vec![0x40, 0x01, b'a'];
    super::super::encode_raw_string(&[b'v'; 3999], &mut first);
    let mut dec = Decoder::new(4096, 16 * 1024);
    let d = dec.decode(&first, |_, _| {}).unwrap();
    assert_eq!(d.list_size, 32 + 4000);
    let mut fields = 0;
    assert_eq!(
        dec.decode(&[0xbe; 5], |_, _| fields += 1),
        Err(HpackError::HeaderListTooLarge { limit: 16 * 1024 })
    );
    assert_eq!(fields, 4, "the crossing field never reached the callback");
    // Exactly at the limit passes.
    let mut dec = Decoder::new(4096, 32 + 4000);
    dec.decode(&first, |_, _| {}).unwrap();
    assert!(dec.decode(&[0xbe], |_, _| {}).is_ok());
    assert!(dec.decode(&[0xbe, 0x82], |_, _| {}).is_err());
}

/// A Huffman-coded string literal.
fn coded_literal(s: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    super::super::huffman::encode(s, &mut wire);
    let mut out = Vec::new();
    super::super::encode_int(wire.len(), 7, 0x80, &mut out);
    out.extend_from_slice(&wire);
    out
}

#[test]
fn header_list_limit_bounds_what_the_decoder_holds() {
    // 100 KB of 'a' (62.5 KB coded) as a value with indexing, without
    // indexing, and as a name, against a 16 KB list limit: refused, and
    // never more than the limit decoded.
    let big = coded_literal(&[b'a'; 100_000]);
    let blocks = [
        [&[0x40, 0x01, b'x'][..], &big].concat(),
        [&[0x00, 0x01, b'x'][..], &big].concat(),
        [&[0x00][..], &big, &[0x00]].concat(),
    ];
    for block in blocks {
        let mut dec = Decoder::new(4096, 16 * 1024);
        let mut fields = 0;
        assert_eq!(
            dec.decode(&block, |_, _| fields += 1),
            Err(HpackError::HeaderListTooLarge { limit: 16 * 1024 })
        );
        assert_eq!(fields, 0);
        assert!(
            dec.scratch_capacity() <= 16 * 1024,
            "{}",
            dec.scratch_capacity()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// Any bytes: an error or fields, never a panic, and the table within
    /// its size. Blocks follow each other on one decoder, as on a
    /// connection, so garbage meets a table that earlier garbage filled.
    #[test]
    fn arbitrary_bytes_never_panic(
        limit in prop_oneof![0usize..300, Just(4096usize)],
        blocks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..4),
    ) {
        let mut dec = Decoder::new(limit, 2048);
        for b in &blocks {
            let _ = decode_all(&mut dec, b);
            prop_assert!(dec.table_size() <= dec.max_table_size());
            prop_assert!(dec.max_table_size() <= limit);
        }
    }

    /// Bytes after a valid prefix that fills the table.
    #[test]
    fn garbage_after_a_full_table_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut dec = Decoder::new(256, 4096);
        let mut block = hex("4001 6101 62 4001 6301 64 4002 6565 0366 6666");
        block.extend_from_slice(&tail);
        let _ = decode_all(&mut dec, &block);
    }
}
