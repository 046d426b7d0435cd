//! HPACK decoding: any blocks, one after another on one connection's
//! decoder, never panic and keep the table within its limits; and where
//! both our decoder and an independent one (httlib-hpack) accept a block,
//! they give the same fields.
//!
//! Input: the first byte picks our table size limit and header list limit;
//! then blocks, each a length byte followed by that many bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use loadgen::http::h2::hpack::{Decoder, HpackError};

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// Our fields, values decoded; an error if any part of the block is bad.
fn ours(dec: &mut Decoder, block: &[u8]) -> Result<Fields, HpackError> {
    let mut fields = Vec::new();
    let mut bad = None;
    let d = dec.decode(block, |name, value| {
        let mut v = Vec::new();
        if let Err(e) = value.decode_into(&mut v) {
            bad.get_or_insert(e);
        }
        fields.push((name.to_vec(), v));
    })?;
    assert_eq!(d.fields, fields.len());
    assert!(dec.table_size() <= dec.max_table_size());
    bad.map_or(Ok(fields), Err)
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, mut rest)) = data.split_first() else {
        return;
    };
    let limit = [0, 64, 256, 4096][usize::from(pick & 3)];
    let max_list = [256, 4096, 65536, 1 << 20][usize::from(pick >> 2 & 3)];
    let mut dec = Decoder::new(limit, max_list);
    let mut oracle = httlib_hpack::Decoder::with_dynamic_size(limit as u32);
    let mut in_step = true;
    while let Some((&len, tail)) = rest.split_first() {
        let block = &tail[..usize::from(len).min(tail.len())];
        rest = &tail[block.len()..];
        let Ok(fields) = ours(&mut dec, block) else {
            // A connection error: the connection ends here.
            return;
        };
        assert!(dec.max_table_size() <= limit);
        if !in_step {
            continue;
        }
        let mut buf = block.to_vec();
        let mut theirs = Vec::new();
        match oracle.decode(&mut buf, &mut theirs) {
            Ok(_) => {
                let theirs: Fields = theirs.into_iter().map(|(n, v, _)| (n, v)).collect();
                assert_eq!(fields, theirs, "block {block:02x?}");
            }
            // It refuses some blocks we accept (integers longer than 4
            // continuation bytes): from here its table may differ.
            Err(_) => in_step = false,
        }
    }
});
