//! The Huffman code of RFC 7541 Appendix B: decoding (a byte-indexed table
//! for codes of up to 8 bits, which cover the letters, digits and common
//! punctuation of header values, and canonical-code arithmetic for the
//! longer ones) and encoding.
//!
//! The code is canonical: within one length, codes rise with the symbol,
//! and each length's first code follows the last of the shorter ones. The
//! decoder relies on that (`tests::oracle::huffman_code_is_canonical_and_complete`
//! checks it).

use super::HpackError;

/// (code, length in bits) for bytes 0..=255, then EOS (256), transcribed
/// from RFC 7541 Appendix B ("code as hex" and "len").
pub(super) const CODES: [(u32, u8); 257] = [
    (0x1ff8, 13),
    (0x7fffd8, 23),
    (0xfffffe2, 28),
    (0xfffffe3, 28),
    (0xfffffe4, 28),
    (0xfffffe5, 28),
    (0xfffffe6, 28),
    (0xfffffe7, 28),
    (0xfffffe8, 28),
    (0xffffea, 24),
    (0x3ffffffc, 30),
    (0xfffffe9, 28),
    (0xfffffea, 28),
    (0x3ffffffd, 30),
    (0xfffffeb, 28),
    (0xfffffec, 28),
    (0xfffffed, 28),
    (0xfffffee, 28),
    (0xfffffef, 28),
    (0xffffff0, 28),
    (0xffffff1, 28),
    (0xffffff2, 28),
    (0x3ffffffe, 30),
    (0xffffff3, 28),
    (0xffffff4, 28),
    (0xffffff5, 28),
    (0xffffff6, 28),
    (0xffffff7, 28),
    (0xffffff8, 28),
    (0xffffff9, 28),
    (0xffffffa, 28),
    (0xffffffb, 28),
    (0x14, 6),
    (0x3f8, 10),
    (0x3f9, 10),
    (0xffa, 12),
    (0x1ff9, 13),
    (0x15, 6),
    (0xf8, 8),
    (0x7fa, 11),
    (0x3fa, 10),
    (0x3fb, 10),
    (0xf9, 8),
    (0x7fb, 11),
    (0xfa, 8),
    (0x16, 6),
    (0x17, 6),
    (0x18, 6),
    (0x0, 5),
    (0x1, 5),
    (0x2, 5),
    (0x19, 6),
    (0x1a, 6),
    (0x1b, 6),
    (0x1c, 6),
    (0x1d, 6),
    (0x1e, 6),
    (0x1f, 6),
    (0x5c, 7),
    (0xfb, 8),
    (0x7ffc, 15),
    (0x20, 6),
    (0xffb, 12),
    (0x3fc, 10),
    (0x1ffa, 13),
    (0x21, 6),
    (0x5d, 7),
    (0x5e, 7),
    (0x5f, 7),
    (0x60, 7),
    (0x61, 7),
    (0x62, 7),
    (0x63, 7),
    (0x64, 7),
    (0x65, 7),
    (0x66, 7),
    (0x67, 7),
    (0x68, 7),
    (0x69, 7),
    (0x6a, 7),
    (0x6b, 7),
    (0x6c, 7),
    (0x6d, 7),
    (0x6e, 7),
    (0x6f, 7),
    (0x70, 7),
    (0x71, 7),
    (0x72, 7),
    (0xfc, 8),
    (0x73, 7),
    (0xfd, 8),
    (0x1ffb, 13),
    (0x7fff0, 19),
    (0x1ffc, 13),
    (0x3ffc, 14),
    (0x22, 6),
    (0x7ffd, 15),
    (0x3, 5),
    (0x23, 6),
    (0x4, 5),
    (0x24, 6),
    (0x5, 5),
    (0x25, 6),
    (0x26, 6),
    (0x27, 6),
    (0x6, 5),
    (0x74, 7),
    (0x75, 7),
    (0x28, 6),
    (0x29, 6),
    (0x2a, 6),
    (0x7, 5),
    (0x2b, 6),
    (0x76, 7),
    (0x2c, 6),
    (0x8, 5),
    (0x9, 5),
    (0x2d, 6),
    (0x77, 7),
    (0x78, 7),
    (0x79, 7),
    (0x7a, 7),
    (0x7b, 7),
    (0x7ffe, 15),
    (0x7fc, 11),
    (0x3ffd, 14),
    (0x1ffd, 13),
    (0xffffffc, 28),
    (0xfffe6, 20),
    (0x3fffd2, 22),
    (0xfffe7, 20),
    (0xfffe8, 20),
    (0x3fffd3, 22),
    (0x3fffd4, 22),
    (0x3fffd5, 22),
    (0x7fffd9, 23),
    (0x3fffd6, 22),
    (0x7fffda, 23),
    (0x7fffdb, 23),
    (0x7fffdc, 23),
    (0x7fffdd, 23),
    (0x7fffde, 23),
    (0xffffeb, 24),
    (0x7fffdf, 23),
    (0xffffec, 24),
    (0xffffed, 24),
    (0x3fffd7, 22),
    (0x7fffe0, 23),
    (0xffffee, 24),
    (0x7fffe1, 23),
    (0x7fffe2, 23),
    (0x7fffe3, 23),
    (0x7fffe4, 23),
    (0x1fffdc, 21),
    (0x3fffd8, 22),
    (0x7fffe5, 23),
    (0x3fffd9, 22),
    (0x7fffe6, 23),
    (0x7fffe7, 23),
    (0xffffef, 24),
    (0x3fffda, 22),
    (0x1fffdd, 21),
    (0xfffe9, 20),
    (0x3fffdb, 22),
    (0x3fffdc, 22),
    (0x7fffe8, 23),
    (0x7fffe9, 23),
    (0x1fffde, 21),
    (0x7fffea, 23),
    (0x3fffdd, 22),
    (0x3fffde, 22),
    (0xfffff0, 24),
    (0x1fffdf, 21),
    (0x3fffdf, 22),
    (0x7fffeb, 23),
    (0x7fffec, 23),
    (0x1fffe0, 21),
    (0x1fffe1, 21),
    (0x3fffe0, 22),
    (0x1fffe2, 21),
    (0x7fffed, 23),
    (0x3fffe1, 22),
    (0x7fffee, 23),
    (0x7fffef, 23),
    (0xfffea, 20),
    (0x3fffe2, 22),
    (0x3fffe3, 22),
    (0x3fffe4, 22),
    (0x7ffff0, 23),
    (0x3fffe5, 22),
    (0x3fffe6, 22),
    (0x7ffff1, 23),
    (0x3ffffe0, 26),
    (0x3ffffe1, 26),
    (0xfffeb, 20),
    (0x7fff1, 19),
    (0x3fffe7, 22),
    (0x7ffff2, 23),
    (0x3fffe8, 22),
    (0x1ffffec, 25),
    (0x3ffffe2, 26),
    (0x3ffffe3, 26),
    (0x3ffffe4, 26),
    (0x7ffffde, 27),
    (0x7ffffdf, 27),
    (0x3ffffe5, 26),
    (0xfffff1, 24),
    (0x1ffffed, 25),
    (0x7fff2, 19),
    (0x1fffe3, 21),
    (0x3ffffe6, 26),
    (0x7ffffe0, 27),
    (0x7ffffe1, 27),
    (0x3ffffe7, 26),
    (0x7ffffe2, 27),
    (0xfffff2, 24),
    (0x1fffe4, 21),
    (0x1fffe5, 21),
    (0x3ffffe8, 26),
    (0x3ffffe9, 26),
    (0xffffffd, 28),
    (0x7ffffe3, 27),
    (0x7ffffe4, 27),
    (0x7ffffe5, 27),
    (0xfffec, 20),
    (0xfffff3, 24),
    (0xfffed, 20),
    (0x1fffe6, 21),
    (0x3fffe9, 22),
    (0x1fffe7, 21),
    (0x1fffe8, 21),
    (0x7ffff3, 23),
    (0x3fffea, 22),
    (0x3fffeb, 22),
    (0x1ffffee, 25),
    (0x1ffffef, 25),
    (0xfffff4, 24),
    (0xfffff5, 24),
    (0x3ffffea, 26),
    (0x7ffff4, 23),
    (0x3ffffeb, 26),
    (0x7ffffe6, 27),
    (0x3ffffec, 26),
    (0x3ffffed, 26),
    (0x7ffffe7, 27),
    (0x7ffffe8, 27),
    (0x7ffffe9, 27),
    (0x7ffffea, 27),
    (0x7ffffeb, 27),
    (0xffffffe, 28),
    (0x7ffffec, 27),
    (0x7ffffed, 27),
    (0x7ffffee, 27),
    (0x7ffffef, 27),
    (0x7fffff0, 27),
    (0x3ffffee, 26),
    (0x3fffffff, 30),
];

const EOS: u16 = 256;
const MAX_LEN: usize = 30;

/// For each first byte of the remaining input: `len << 8 | symbol` of the
/// code of up to 8 bits it starts with, or 0 when it starts a longer code.
static SHORT: [u16; 256] = short_table();

/// Canonical decoding of the longer codes: per length, the first code, how
/// many codes there are, and where their symbols start in `SORTED`.
struct Canonical {
    first: [u32; MAX_LEN + 1],
    count: [u32; MAX_LEN + 1],
    offset: [u16; MAX_LEN + 1],
    sorted: [u16; 257],
}

static CANONICAL: Canonical = canonical();

const fn short_table() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut sym = 0;
    while sym < 256 {
        let (code, len) = CODES[sym];
        if len <= 8 {
            let start = (code << (8 - len)) as usize;
            let n = 1usize << (8 - len);
            let mut i = 0;
            while i < n {
                t[start + i] = ((len as u16) << 8) | sym as u16;
                i += 1;
            }
        }
        sym += 1;
    }
    t
}

const fn canonical() -> Canonical {
    let mut c = Canonical {
        first: [0; MAX_LEN + 1],
        count: [0; MAX_LEN + 1],
        offset: [0; MAX_LEN + 1],
        sorted: [0; 257],
    };
    let mut next = 0usize;
    let mut len = 1;
    while len <= MAX_LEN {
        c.offset[len] = next as u16;
        let mut sym = 0;
        while sym < 257 {
            let (code, l) = CODES[sym];
            if l as usize == len {
                if c.count[len] == 0 {
                    c.first[len] = code;
                }
                c.count[len] += 1;
                c.sorted[next] = sym as u16;
                next += 1;
            }
            sym += 1;
        }
        len += 1;
    }
    c
}

/// The symbol whose code starts `acc` (left-aligned) when it is longer
/// than 8 bits, with its length. Every 30-bit string starts with a code
/// (the code is complete), so this always finds one.
#[cold]
fn long_code(acc: u64) -> (u16, u32) {
    let c = &CANONICAL;
    for len in 9..=MAX_LEN {
        let v = (acc >> (64 - len)) as u32;
        if c.count[len] > 0 && v < c.first[len] + c.count[len] {
            let i = c.offset[len] as usize + (v - c.first[len]) as usize;
            return (c.sorted[i], len as u32);
        }
    }
    unreachable!("the HPACK Huffman code is complete: every 30-bit string starts with a code")
}

/// Decodes `src`, passing each byte to `emit`. The string must end in at
/// most 7 bits of padding, all ones (the start of EOS), and must not
/// contain EOS (RFC 7541 §5.2).
pub fn decode(src: &[u8], mut emit: impl FnMut(u8)) -> Result<(), HpackError> {
    // Bits not yet decoded, left-aligned; the bits below them are zero.
    let mut acc: u64 = 0;
    let mut nbits: u32 = 0;
    let mut i = 0;
    loop {
        while nbits <= 56 && i < src.len() {
            acc |= u64::from(src[i]) << (56 - nbits);
            nbits += 8;
            i += 1;
        }
        if nbits == 0 {
            return Ok(());
        }
        let e = SHORT[(acc >> 56) as usize];
        let (sym, len) = if e != 0 {
            (e & 0xff, u32::from(e >> 8))
        } else {
            long_code(acc)
        };
        if len > nbits {
            // The input is used up (the refill above stops only then) and
            // what is left is the start of a code: padding, which must be
            // under 8 bits and the start of EOS, i.e. all ones.
            let ones = !0u64 << (64 - nbits);
            return if nbits <= 7 && acc & ones == ones {
                Ok(())
            } else {
                Err(HpackError::HuffmanPadding)
            };
        }
        if sym == EOS {
            return Err(HpackError::HuffmanEos);
        }
        emit(sym as u8);
        acc <<= len;
        nbits -= len;
    }
}

/// The most bytes `decode` can produce from `wire_len` bytes: no code is
/// shorter than 5 bits.
pub(super) fn max_decoded_len(wire_len: usize) -> usize {
    wire_len * 8 / 5
}

/// The longest coding of a static table name (27 letters and dashes, of
/// 5 or 6 bits each, fit in 21 bytes).
pub(super) const CODED_NAME_MAX: usize = 24;

/// `encode` at compile time, for the static table's names: the coding and
/// its length. More than `CODED_NAME_MAX` bytes fails to compile.
pub(super) const fn encode_name(src: &[u8]) -> ([u8; CODED_NAME_MAX], usize) {
    let mut out = [0u8; CODED_NAME_MAX];
    let mut n = 0;
    let mut acc: u64 = 0;
    let mut nbits: u32 = 0;
    let mut i = 0;
    while i < src.len() {
        let (code, len) = CODES[src[i] as usize];
        acc = (acc << len) | code as u64;
        nbits += len as u32;
        while nbits >= 8 {
            nbits -= 8;
            out[n] = (acc >> nbits) as u8;
            n += 1;
        }
        i += 1;
    }
    if nbits > 0 {
        out[n] = ((acc << (8 - nbits)) as u8) | (0xff >> nbits);
        n += 1;
    }
    (out, n)
}

/// Appends the Huffman coding of `src`, padded with ones.
pub fn encode(src: &[u8], out: &mut Vec<u8>) {
    let mut acc: u64 = 0;
    let mut nbits: u32 = 0;
    for &b in src {
        let (code, len) = CODES[b as usize];
        acc = (acc << len) | u64::from(code);
        nbits += u32::from(len);
        while nbits >= 8 {
            nbits -= 8;
            out.push((acc >> nbits) as u8);
        }
    }
    if nbits > 0 {
        out.push(((acc << (8 - nbits)) as u8) | (0xff >> nbits));
    }
}
