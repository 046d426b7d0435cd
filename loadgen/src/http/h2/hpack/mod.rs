//! HPACK (RFC 7541), shaped for a load generator.
//!
//! Our own rather than a crate's: the HPACK crates decode every field of
//! every response into fresh allocations, and a load generator needs from a
//! response block only `:status` (later `grpc-status` and `grpc-message`),
//! while keeping the dynamic table right. So:
//!
//! - [`Decoder::decode`] walks one complete header block, keeps the dynamic
//!   table (a preallocated byte ring, no allocation per block once warm),
//!   and hands each field to a callback. Values of literals that are not
//!   indexed stay Huffman-coded ([`Value::Huffman`]) unless the callback
//!   decodes them; `:status` is always decoded and returned in [`Decoded`].
//!   Servers that insert the same fields with every response (nginx does)
//!   cost compares, not Huffman decodes: the table keeps each value's
//!   coding and finds it again. The header list limit is enforced as the
//!   block is read, so no block makes the decoder hold more than it.
//! - Requests are encoded cheaply ([`encoder`]): templated requests as
//!   literals that never touch the server's table, and a request that never
//!   changes as a [`FixedRequest`], sent once with incremental indexing and
//!   then as one indexed byte per field. [`RequestEncoder`] is the per
//!   connection state that picks the right block and signals table size
//!   changes.
//! - [`RequestFields`] turns the HTTP/1.1 request head that loadgen renders
//!   into the HTTP/2 field list.
//!
//! Any [`HpackError`] is a connection error of type COMPRESSION_ERROR for
//! the caller (RFC 9113 §4.3): after one, the decoder's table is no longer
//! in step with the server's and the decoder must not be used again.

mod decoder;
pub mod encoder;
mod fields;
mod huffman;
mod table;

#[cfg(test)]
mod tests;

pub(crate) use decoder::Status;
pub use decoder::{Decoded, Decoder, Value};
pub use encoder::{FixedRequest, RequestEncoder, encode_literal, size_update};
pub use fields::{FieldsError, RequestFields};
pub use huffman::{decode as huffman_decode, encode as huffman_encode};

/// What was wrong with a header block. Every variant is a COMPRESSION_ERROR
/// for HTTP/2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("HPACK: index {0} is in neither the static nor the dynamic table")]
    BadIndex(usize),
    #[error("HPACK: an integer does not fit in 32 bits or is longer than 5 continuation bytes")]
    IntegerOverflow,
    #[error("HPACK: dynamic table size update to {size} bytes, above the {limit} we allowed")]
    SizeUpdateTooLarge { size: usize, limit: usize },
    #[error("HPACK: dynamic table size update after the first field of the block")]
    SizeUpdateNotAtStart,
    #[error("HPACK: Huffman-coded string contains the EOS symbol")]
    HuffmanEos,
    #[error("HPACK: Huffman-coded string ends in padding longer than 7 bits or not all ones")]
    HuffmanPadding,
    #[error("HPACK: header block ends inside a field")]
    Truncated,
    #[error("HPACK: header list larger than the {limit} bytes we allowed")]
    HeaderListTooLarge { limit: usize },
}

/// HPACK's idea of an entry's size (RFC 7541 §4.1): its bytes plus 32.
pub const ENTRY_OVERHEAD: usize = 32;

/// The dynamic table size both sides start with (RFC 9113 §6.5.2).
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// `a == b` for the short strings HPACK compares (names, coded values):
/// word loads instead of a call to `memcmp`, which costs more than the
/// compare itself at these lengths, several times per field.
#[inline]
fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    fn word<const N: usize>(s: &[u8], at: usize) -> [u8; N] {
        let mut w = [0; N];
        w.copy_from_slice(&s[at..at + N]);
        w
    }
    let n = a.len();
    n == b.len()
        && match n {
            0 => true,
            1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
            4..=7 => {
                word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, n - 4) == word::<4>(b, n - 4)
            }
            8..=16 => {
                word::<8>(a, 0) == word::<8>(b, 0) && word::<8>(a, n - 8) == word::<8>(b, n - 8)
            }
            17..=32 => {
                word::<16>(a, 0) == word::<16>(b, 0)
                    && word::<16>(a, n - 16) == word::<16>(b, n - 16)
            }
            _ => a == b,
        }
}

/// Reads the primitives of RFC 7541 §5 from a header block (QPACK's field
/// lines use the same integers and strings, RFC 9204 §4.1).
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// An integer with an N-bit prefix (§5.1); the flag bits above the
    /// prefix in the first byte are the caller's. Values above `u32::MAX`
    /// and encodings longer than 5 continuation bytes are refused: nothing
    /// in HPACK needs them, and a bound keeps zero-padded encodings short.
    pub(crate) fn int(&mut self, prefix_bits: u32) -> Result<usize, HpackError> {
        let mask = (1u32 << prefix_bits) - 1;
        let first = self.peek().ok_or(HpackError::Truncated)?;
        self.pos += 1;
        let mut value = u64::from(u32::from(first) & mask);
        if value < u64::from(mask) {
            return Ok(value as usize);
        }
        for shift in (0..35).step_by(7) {
            let b = self.peek().ok_or(HpackError::Truncated)?;
            self.pos += 1;
            value += u64::from(b & 0x7f) << shift;
            if value > u64::from(u32::MAX) {
                return Err(HpackError::IntegerOverflow);
            }
            if b & 0x80 == 0 {
                return Ok(value as usize);
            }
        }
        Err(HpackError::IntegerOverflow)
    }

    /// A string literal (§5.2): its wire bytes and whether they are
    /// Huffman-coded.
    fn string(&mut self) -> Result<(&'a [u8], bool), HpackError> {
        self.string_prefixed(7)
    }

    /// A string literal whose length has an N-bit prefix and whose Huffman
    /// flag is the bit above it (HPACK: 7; QPACK's literal names: 3).
    pub(crate) fn string_prefixed(
        &mut self,
        prefix_bits: u32,
    ) -> Result<(&'a [u8], bool), HpackError> {
        let huffman = self.peek().ok_or(HpackError::Truncated)? & (1 << prefix_bits) != 0;
        let len = self.int(prefix_bits)?;
        let end = self.pos.checked_add(len).ok_or(HpackError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(HpackError::Truncated)?;
        self.pos = end;
        Ok((bytes, huffman))
    }
}

/// Appends an integer with an N-bit prefix, `flags` in the bits above it.
pub(crate) fn encode_int(value: usize, prefix_bits: u32, flags: u8, out: &mut Vec<u8>) {
    let mask = (1usize << prefix_bits) - 1;
    if value < mask {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | mask as u8);
    let mut rest = value - mask;
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Appends a raw (not Huffman-coded) string literal.
pub(crate) fn encode_raw_string(s: &[u8], out: &mut Vec<u8>) {
    encode_int(s.len(), 7, 0, out);
    out.extend_from_slice(s);
}
