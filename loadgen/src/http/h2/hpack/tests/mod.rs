//! Tests of the HPACK codec: the RFC's examples (`rfc`), an independent
//! implementation as oracle (`oracle`), malformed input (`errors`), the
//! table's byte ring (`table`), and the request side (`requests`).

mod errors;
mod oracle;
mod requests;
mod rfc;
mod table;

use super::{Decoded, Decoder, HpackError};

/// Bytes from hex, spaces ignored (the RFC's dumps).
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// Decodes a block into an owned list, Huffman-coded values decoded too.
fn decode_all(dec: &mut Decoder, block: &[u8]) -> Result<(Fields, Decoded), HpackError> {
    let mut fields = Vec::new();
    let mut value_error = None;
    let decoded = dec.decode(block, |name, value| {
        let mut v = Vec::new();
        if let Err(e) = value.decode_into(&mut v) {
            value_error.get_or_insert(e);
        }
        fields.push((name.to_vec(), v));
    })?;
    match value_error {
        Some(e) => Err(e),
        None => Ok((fields, decoded)),
    }
}

/// `"name: value"` lines.
fn lines(fields: &Fields) -> Vec<String> {
    fields
        .iter()
        .map(|(n, v)| {
            format!(
                "{}: {}",
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(v)
            )
        })
        .collect()
}

/// The dynamic table, newest first, as `"name: value"` lines.
fn table(dec: &Decoder) -> Vec<String> {
    (1..=dec.table_len())
        .map(|i| {
            let (n, v) = dec.table_entry(i).unwrap();
            format!(
                "{}: {}",
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(v)
            )
        })
        .collect()
}
