//! The dynamic table's byte ring: entries stay readable through evictions
//! and the moves that make room at the end.

use super::*;

#[test]
fn entries_survive_compaction() {
    // A 200-byte table (a 600-byte ring): entries of 32 + 3 + 20..60 bytes,
    // inserted 200 times, so the live bytes move to the front many times.
    let mut dec = Decoder::new(200, 1 << 20);
    let mut model: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for i in 0..200usize {
        let name = format!("n{:02}", i % 100).into_bytes();
        let value = vec![b'a' + (i % 26) as u8; 20 + (i * 7) % 41];
        let mut block = vec![0x40];
        super::super::encode_raw_string(&name, &mut block);
        if i % 2 == 0 {
            super::super::encode_raw_string(&value, &mut block);
        } else {
            // Coded values are kept coded too: more bytes in the ring.
            let mut coded = Vec::new();
            super::super::huffman::encode(&value, &mut coded);
            block.push(0x80 | coded.len() as u8);
            block.extend_from_slice(&coded);
        }
        dec.decode(&block, |_, _| {}).unwrap();
        model.insert(0, (name, value));
        let mut size: usize = model.iter().map(|(n, v)| 32 + n.len() + v.len()).sum();
        while size > 200 {
            let (n, v) = model.pop().unwrap();
            size -= 32 + n.len() + v.len();
        }
        assert_eq!(dec.table_size(), size, "insert {i}");
        assert_eq!(dec.table_len(), model.len(), "insert {i}");
        for (k, (n, v)) in model.iter().enumerate() {
            assert_eq!(
                dec.table_entry(k + 1),
                Some((&n[..], &v[..])),
                "insert {i}, entry {k}"
            );
        }
    }
}

/// Blocks as nginx 1.22.1 sent them to `GET /` (captured with a raw
/// client); see also benches/benches/h2.rs.
const NGINX_BLOCK: &str = "887689aa6355e580ae212e1f6196dd6d5f4a01c52f948a080271403b704edc6dc53168df\
    5f87497ca589d34d1f5c0231376c96dd6d5f4a01c52f948a080271403b704edc6da53168df00832a47378afe5c8c2d\
    80ae8d6087f9008919085ad2b583aa62a3848fd24a8f";

#[test]
fn repeated_coded_values_come_from_the_table() {
    // nginx inserts the same five fields with every response: the second
    // time their values come from the entries of the first, and must be
    // the same.
    let block = hex(NGINX_BLOCK);
    let mut dec = Decoder::new(4096, 1 << 20);
    let (first, _) = decode_all(&mut dec, &block).unwrap();
    // What an independent decoder makes of it.
    let mut oracle = httlib_hpack::Decoder::with_dynamic_size(4096);
    let mut want = Vec::new();
    oracle.decode(&mut block.clone(), &mut want).unwrap();
    let want: Fields = want.into_iter().map(|(n, v, _)| (n, v)).collect();
    assert_eq!(first, want);
    assert_eq!(
        lines(&first)[1..],
        [
            "server: nginx/1.22.1",
            "date: Sun, 06 Dec 2026 07:27:56 GMT",
            "content-type: text/html",
            "content-length: 17",
            "last-modified: Sun, 06 Dec 2026 07:27:54 GMT",
            "etag: \"6b150e7a-11\"",
            "accept-ranges: bytes",
        ]
    );
    for _ in 0..40 {
        assert_eq!(decode_all(&mut dec, &block).unwrap().0, first);
    }
}

#[test]
fn a_coded_value_that_starts_alike_is_decoded() {
    // Same coded length and first 8 coded bytes, different last byte: the
    // earlier entry must not stand in for the later value.
    let mut dec = Decoder::new(4096, 1 << 20);
    for (value, name) in [
        (&b"aaaaaaaaaaaaaaaaX"[..], "x-a"),
        (b"aaaaaaaaaaaaaaaaY", "x-a"),
        (b"aaaaaaaaaaaaaaaaY", "x-b"),
    ] {
        let mut coded = Vec::new();
        super::super::huffman::encode(value, &mut coded);
        let mut block = vec![0x40];
        super::super::encode_raw_string(name.as_bytes(), &mut block);
        block.push(0x80 | coded.len() as u8);
        block.extend_from_slice(&coded);
        let (fields, _) = decode_all(&mut dec, &block).unwrap();
        assert_eq!(fields, [(name.as_bytes().to_vec(), value.to_vec())]);
        assert_eq!(dec.table_entry(1), Some((name.as_bytes(), value)));
    }
}

#[test]
fn coded_static_names_are_recognised() {
    use super::super::table::{STATIC, static_name_coded};
    for (name, _) in STATIC {
        let mut coded = Vec::new();
        super::super::huffman::encode(name, &mut coded);
        assert_eq!(static_name_coded(&coded), Some(name));
    }
    let mut coded = Vec::new();
    super::super::huffman::encode(b"x-etag", &mut coded);
    assert_eq!(static_name_coded(&coded), None);
    assert_eq!(static_name_coded(&[]), None);
    assert_eq!(static_name_coded(&[0xff; 30]), None);
}
