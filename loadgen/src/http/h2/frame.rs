//! HTTP/2 frames (RFC 9113 §4, §6): the 9-byte header, the types, flags,
//! settings and error codes, and writers for every frame a client sends.
//! Reading is done by [`super::Connection`], which needs to see frames
//! arrive piece by piece.

/// What a client sends first (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Every frame starts with this many bytes.
pub const HEADER_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE's initial value, and its smallest legal one.
pub const DEFAULT_MAX_FRAME: u32 = 16_384;
/// The largest legal SETTINGS_MAX_FRAME_SIZE.
pub const MAX_MAX_FRAME: u32 = (1 << 24) - 1;
/// Flow-control windows start here (SETTINGS_INITIAL_WINDOW_SIZE's
/// initial value, and the connection's window).
pub const DEFAULT_WINDOW: u32 = 65_535;
/// The largest window (and stream id): 2^31 − 1.
pub const MAX_WINDOW: u32 = (1 << 31) - 1;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
pub const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

/// Error codes (RFC 9113 §7), by the names reports use.
pub const NO_ERROR: u32 = 0x0;
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const INTERNAL_ERROR: u32 = 0x2;
pub const FLOW_CONTROL_ERROR: u32 = 0x3;
pub const SETTINGS_TIMEOUT: u32 = 0x4;
pub const STREAM_CLOSED: u32 = 0x5;
pub const FRAME_SIZE_ERROR: u32 = 0x6;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;
pub const COMPRESSION_ERROR: u32 = 0x9;
pub const CONNECT_ERROR: u32 = 0xa;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;
pub const INADEQUATE_SECURITY: u32 = 0xc;
pub const HTTP_1_1_REQUIRED: u32 = 0xd;

/// The names of the error codes 0…13, indexed by code.
pub const ERROR_NAMES: [&str; 14] = [
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "INTERNAL_ERROR",
    "FLOW_CONTROL_ERROR",
    "SETTINGS_TIMEOUT",
    "STREAM_CLOSED",
    "FRAME_SIZE_ERROR",
    "REFUSED_STREAM",
    "CANCEL",
    "COMPRESSION_ERROR",
    "CONNECT_ERROR",
    "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY",
    "HTTP_1_1_REQUIRED",
];

/// An error code's name; codes RFC 9113 does not define are "OTHER"
/// (a peer may send any, and the report keeps one slot for them).
pub fn error_name(code: u32) -> &'static str {
    ERROR_NAMES.get(code as usize).copied().unwrap_or("OTHER")
}

/// A frame's 9-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Payload length (24 bits).
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    /// Stream id, the reserved bit cleared.
    pub stream: u32,
}

impl Header {
    pub fn parse(b: &[u8; HEADER_LEN]) -> Header {
        Header {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & MAX_WINDOW,
        }
    }

    #[inline]
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Appends a frame header.
#[inline]
pub fn write_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    debug_assert!(len <= MAX_MAX_FRAME as usize);
    let l = (len as u32).to_be_bytes();
    out.extend_from_slice(&[l[1], l[2], l[3], kind, flags]);
    out.extend_from_slice(&(stream & MAX_WINDOW).to_be_bytes());
}

/// A SETTINGS frame carrying `settings` (id, value).
pub fn settings(out: &mut Vec<u8>, settings: &[(u16, u32)]) {
    write_header(out, settings.len() * 6, SETTINGS, 0, 0);
    for &(id, value) in settings {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

pub fn settings_ack(out: &mut Vec<u8>) {
    write_header(out, 0, SETTINGS, ACK, 0);
}

pub fn window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    debug_assert!((1..=MAX_WINDOW).contains(&increment));
    write_header(out, 4, WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&increment.to_be_bytes());
}

pub fn ping(out: &mut Vec<u8>, ack: bool, payload: &[u8; 8]) {
    write_header(out, 8, PING, if ack { ACK } else { 0 }, 0);
    out.extend_from_slice(payload);
}

pub fn rst_stream(out: &mut Vec<u8>, stream: u32, code: u32) {
    write_header(out, 4, RST_STREAM, 0, stream);
    out.extend_from_slice(&code.to_be_bytes());
}

pub fn goaway(out: &mut Vec<u8>, last_stream: u32, code: u32) {
    write_header(out, 8, GOAWAY, 0, 0);
    out.extend_from_slice(&(last_stream & MAX_WINDOW).to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
}

/// A header block as HEADERS and, past `max_frame` bytes, CONTINUATION
/// frames; `end_stream` when no body follows. Returns the frames written.
pub fn headers(
    out: &mut Vec<u8>,
    stream: u32,
    block: &[u8],
    end_stream: bool,
    max_frame: usize,
) -> u64 {
    let mut chunks = block.chunks(max_frame.max(1));
    let first = chunks.next().unwrap_or(&[]);
    let last = first.len() == block.len();
    let flags = if end_stream { END_STREAM } else { 0 } | if last { END_HEADERS } else { 0 };
    write_header(out, first.len(), HEADERS, flags, stream);
    out.extend_from_slice(first);
    let mut frames = 1;
    let mut sent = first.len();
    for chunk in chunks {
        sent += chunk.len();
        let flags = if sent == block.len() { END_HEADERS } else { 0 };
        write_header(out, chunk.len(), CONTINUATION, flags, stream);
        out.extend_from_slice(chunk);
        frames += 1;
    }
    frames
}

/// One DATA frame (the caller keeps it within the peer's frame size and
/// windows).
pub fn data(out: &mut Vec<u8>, stream: u32, payload: &[u8], end_stream: bool) {
    write_header(
        out,
        payload.len(),
        DATA,
        if end_stream { END_STREAM } else { 0 },
        stream,
    );
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(b: &[u8]) -> Header {
        Header::parse(b[..HEADER_LEN].try_into().unwrap())
    }

    #[test]
    fn header_round_trips_and_ignores_the_reserved_bit() {
        let mut out = Vec::new();
        write_header(&mut out, 0x12_3456, HEADERS, END_HEADERS | END_STREAM, 7);
        assert_eq!(out, [0x12, 0x34, 0x56, 1, 5, 0, 0, 0, 7]);
        let h = header_of(&out);
        assert_eq!((h.len, h.kind, h.flags, h.stream), (0x12_3456, 1, 5, 7));
        out[5] |= 0x80;
        assert_eq!(header_of(&out).stream, 7, "the R bit is not part of the id");
    }

    #[test]
    fn a_large_block_is_split_into_continuations() {
        let block: Vec<u8> = (0..=9).collect();
        let mut out = Vec::new();
        assert_eq!(headers(&mut out, 3, &block, true, 4), 3);
        let h1 = header_of(&out);
        assert_eq!((h1.len, h1.kind, h1.flags), (4, HEADERS, END_STREAM));
        let h2 = header_of(&out[13..]);
        assert_eq!(
            (h2.len, h2.kind, h2.flags, h2.stream),
            (4, CONTINUATION, 0, 3)
        );
        let h3 = header_of(&out[26..]);
        assert_eq!((h3.len, h3.kind, h3.flags), (2, CONTINUATION, END_HEADERS));
        assert_eq!(&out[35..], &[8, 9]);
        let mut small = Vec::new();
        assert_eq!(headers(&mut small, 1, &block, false, 16), 1);
        assert_eq!(header_of(&small).flags, END_HEADERS);
        let mut empty = Vec::new();
        assert_eq!(headers(&mut empty, 1, &[], true, 16), 1);
        assert_eq!(header_of(&empty).flags, END_HEADERS | END_STREAM);
    }

    #[test]
    fn control_frames_have_their_fixed_layouts() {
        let mut out = Vec::new();
        settings(
            &mut out,
            &[
                (SETTINGS_ENABLE_PUSH, 0),
                (SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20),
            ],
        );
        assert_eq!(out.len(), 9 + 12);
        assert_eq!(&out[9..15], &[0, 2, 0, 0, 0, 0]);
        out.clear();
        window_update(&mut out, 0, MAX_WINDOW);
        assert_eq!(out, [0, 0, 4, 8, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]);
        out.clear();
        ping(&mut out, true, b"12345678");
        assert_eq!(&out[3..5], &[PING, ACK]);
        out.clear();
        goaway(&mut out, 5, ENHANCE_YOUR_CALM);
        assert_eq!(&out[9..], &[0, 0, 0, 5, 0, 0, 0, 0xb]);
        assert_eq!(error_name(REFUSED_STREAM), "REFUSED_STREAM");
        assert_eq!(error_name(0x1234), "OTHER");
    }
}
