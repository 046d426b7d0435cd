//! The dynamic table's byte ring: entries stay readable through evictions
//! and the moves that make room at the end.

use super::*;

#[test]
fn entries_survive_compaction() {
    // A 200-byte table (a 400-byte ring): entries of 32 + 3 + 20..60 bytes,
    // inserted 200 times, so the live bytes move to the front many times.
    let mut dec = Decoder::new(200, 1 << 20);
    let mut model: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for i in 0..200usize {
        let name = format!("n{:02}", i % 100).into_bytes();
        let value = vec![b'a' + (i % 26) as u8; 20 + (i * 7) % 41];
        let mut block = vec![0x40];
        super::super::encode_raw_string(&name, &mut block);
        super::super::encode_raw_string(&value, &mut block);
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
