//! gRPC's message framing over HTTP/2 DATA: one byte saying whether the
//! message is compressed (loadgen never compresses), four bytes of
//! big-endian length, then the message.

/// The prefix's length.
pub const PREFIX_LEN: usize = 5;

/// Appends `message` to `out` with its prefix.
pub fn frame(message: &[u8], out: &mut Vec<u8>) {
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
}

/// Whether `bytes` are already one framed, uncompressed message. A
/// protobuf message never starts with a zero byte (field number 0 is not
/// allowed), so a raw message is never taken for a framed one.
pub fn is_framed(bytes: &[u8]) -> bool {
    match bytes {
        [0, a, b, c, d, rest @ ..] => u32::from_be_bytes([*a, *b, *c, *d]) as usize == rest.len(),
        _ => false,
    }
}

/// `bytes` as the body of a call: framed unless they already are.
pub fn body_of(bytes: &[u8]) -> Vec<u8> {
    if is_framed(bytes) {
        return bytes.to_vec();
    }
    let mut out = Vec::with_capacity(PREFIX_LEN + bytes.len());
    frame(bytes, &mut out);
    out
}

/// A message file of protobuf bytes (`.bin`, `.pb`), sent as they are;
/// any other holds JSON.
pub fn is_raw_file(path: &std::path::Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("bin") || e.eq_ignore_ascii_case("pb"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_once() {
        let msg = [0x0a, 0x02, b'h', b'i'];
        let body = body_of(&msg);
        assert_eq!(body, [0, 0, 0, 0, 4, 0x0a, 0x02, b'h', b'i']);
        assert!(is_framed(&body));
        assert!(!is_framed(&msg));
        assert_eq!(body_of(&body), body, "a framed message is sent as it is");
        assert_eq!(body_of(&[]), [0, 0, 0, 0, 0]);
        // A wrong length is not a frame: the bytes are framed.
        assert!(!is_framed(&[0, 0, 0, 0, 9, 1]));
    }
}
