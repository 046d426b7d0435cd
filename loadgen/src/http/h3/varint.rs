//! QUIC variable-length integers (RFC 9000 §16): the two high bits of the
//! first byte give the length (1, 2, 4 or 8 bytes), big-endian.

/// The largest value a varint holds.
pub const MAX: u64 = (1 << 62) - 1;

/// The length of the varint whose first byte is `first`.
#[inline]
pub fn len(first: u8) -> usize {
    1 << (first >> 6)
}

/// The varint at the start of `buf` and its length; `None` when `buf`
/// ends inside it.
#[inline]
pub fn decode(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let n = len(first);
    let bytes = buf.get(..n)?;
    let mut v = u64::from(first & 0x3f);
    for &b in &bytes[1..] {
        v = (v << 8) | u64::from(b);
    }
    Some((v, n))
}

/// How many bytes `v` takes in its shortest encoding.
#[inline]
pub fn size(v: u64) -> usize {
    match v {
        0..=63 => 1,
        64..=16383 => 2,
        16384..=1_073_741_823 => 4,
        _ => 8,
    }
}

/// Appends `v` in its shortest encoding. Values above [`MAX`] are our own
/// bug, not the peer's: they are cut to 62 bits.
#[inline]
pub fn encode(v: u64, out: &mut Vec<u8>) {
    debug_assert!(v <= MAX, "varint {v} above 2^62-1");
    let v = v & MAX;
    match size(v) {
        1 => out.push(v as u8),
        2 => out.extend_from_slice(&(v as u16 | 0x4000).to_be_bytes()),
        4 => out.extend_from_slice(&(v as u32 | 0x8000_0000).to_be_bytes()),
        _ => out.extend_from_slice(&(v | 0xc000_0000_0000_0000).to_be_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9000_examples_decode_and_reencode() {
        // RFC 9000 Appendix A.1.
        for (wire, v) in [
            (
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c][..],
                151_288_809_941_952_652,
            ),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0x7b, 0xbd], 15_293),
            (&[0x25], 37),
        ] {
            assert_eq!(decode(wire), Some((v, wire.len())));
            let mut out = Vec::new();
            encode(v, &mut out);
            assert_eq!(out, wire);
        }
        // A non-minimal encoding is still valid (§16).
        assert_eq!(decode(&[0x40, 0x25]), Some((37, 2)));
    }

    #[test]
    fn short_input_is_none_and_boundaries_round_trip() {
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&[0x7b]), None);
        assert_eq!(decode(&[0xc2, 0, 0, 0, 0, 0, 0]), None);
        for v in [0, 63, 64, 16383, 16384, 1_073_741_823, 1_073_741_824, MAX] {
            let mut out = Vec::new();
            encode(v, &mut out);
            assert_eq!(out.len(), size(v));
            assert_eq!(decode(&out), Some((v, out.len())), "{v}");
        }
    }
}
