//! HTTP/2 frames (RFC 9113 §4, §6) as the test server reads and writes
//! them, and the one HPACK representation it encodes: a literal field
//! without indexing, new name, no Huffman (RFC 7541 §6.2.2), which every
//! decoder must accept.

/// Frame types.
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

/// Flags.
pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

/// Settings identifiers.
pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
pub const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

/// Error codes (RFC 9113 §7).
pub const NO_ERROR: u32 = 0x0;
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const INTERNAL_ERROR: u32 = 0x2;
pub const FLOW_CONTROL_ERROR: u32 = 0x3;
pub const STREAM_CLOSED: u32 = 0x5;
pub const FRAME_SIZE_ERROR: u32 = 0x6;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;
pub const COMPRESSION_ERROR: u32 = 0x9;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The initial flow-control window of a connection and of every stream
/// until SETTINGS say otherwise.
pub const DEFAULT_WINDOW: u32 = 65_535;
/// SETTINGS_MAX_FRAME_SIZE until SETTINGS say otherwise (and its minimum).
pub const DEFAULT_MAX_FRAME: usize = 16_384;
/// The largest window a WINDOW_UPDATE may produce.
pub const MAX_WINDOW: i64 = (1 << 31) - 1;

/// A frame read from the peer.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// The first frame in `buf`, if it is all there, and the bytes it took.
pub fn parse(buf: &[u8]) -> Option<(Frame, usize)> {
    let head = buf.get(..9)?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let payload = buf.get(9..9 + len)?;
    Some((
        Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload: payload.to_vec(),
        },
        9 + len,
    ))
}

/// The length a frame in `buf` says it has, once its header is there.
pub fn declared_len(buf: &[u8]) -> Option<usize> {
    let head = buf.get(..3)?;
    Some(u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize)
}

/// Appends one frame. The length is whatever `payload` has: callers that
/// mean to break the rules do so through the payload they pass.
pub fn write(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

pub fn settings(out: &mut Vec<u8>, settings: &[(u16, u32)]) {
    let mut p = Vec::with_capacity(settings.len() * 6);
    for (id, value) in settings {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&value.to_be_bytes());
    }
    write(out, SETTINGS, 0, 0, &p);
}

pub fn rst_stream(out: &mut Vec<u8>, stream: u32, code: u32) {
    write(out, RST_STREAM, 0, stream, &code.to_be_bytes());
}

pub fn goaway(out: &mut Vec<u8>, last_stream: u32, code: u32, debug: &[u8]) {
    let mut p = last_stream.to_be_bytes().to_vec();
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(debug);
    write(out, GOAWAY, 0, 0, &p);
}

pub fn window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    write(out, WINDOW_UPDATE, 0, stream, &increment.to_be_bytes());
}

/// A header block in a HEADERS frame and as many CONTINUATION frames as
/// `max_frame` requires. `pad` adds the PADDED flag with that many bytes
/// of padding, `priority` the PRIORITY flag (exclusive dependency on
/// stream 0, weight 16), both to the HEADERS frame.
pub fn headers(
    out: &mut Vec<u8>,
    stream: u32,
    block: &[u8],
    end_stream: bool,
    max_frame: usize,
    pad: Option<u8>,
    priority: bool,
) -> usize {
    let mut prefix = Vec::new();
    let mut flags = if end_stream { END_STREAM } else { 0 };
    if let Some(p) = pad {
        prefix.push(p);
        flags |= PADDED;
    }
    if priority {
        prefix.extend_from_slice(&0x8000_0000u32.to_be_bytes());
        prefix.push(15);
        flags |= PRIORITY_FLAG;
    }
    let padding = pad.unwrap_or(0) as usize;
    let room = max_frame.saturating_sub(prefix.len() + padding).max(1);
    let (first, rest) = block.split_at(block.len().min(room));
    let mut chunks = rest.chunks(max_frame).peekable();
    if chunks.peek().is_none() {
        flags |= END_HEADERS;
    }
    let mut payload = prefix;
    payload.extend_from_slice(first);
    payload.resize(payload.len() + padding, 0);
    write(out, HEADERS, flags, stream, &payload);
    let mut frames = 1;
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() {
            END_HEADERS
        } else {
            0
        };
        write(out, CONTINUATION, flags, stream, chunk);
        frames += 1;
    }
    frames
}

/// One DATA frame, optionally padded (`pad` bytes of padding, counted
/// against flow control as the RFC says).
pub fn data(out: &mut Vec<u8>, stream: u32, body: &[u8], end_stream: bool, pad: Option<u8>) {
    let mut flags = if end_stream { END_STREAM } else { 0 };
    match pad {
        None => write(out, DATA, flags, stream, body),
        Some(p) => {
            flags |= PADDED;
            let mut payload = Vec::with_capacity(1 + body.len() + p as usize);
            payload.push(p);
            payload.extend_from_slice(body);
            payload.resize(payload.len() + p as usize, 0);
            write(out, DATA, flags, stream, &payload);
        }
    }
}

/// The flow-controlled length of a DATA frame carrying `body` with `pad`.
pub fn data_cost(body: usize, pad: Option<u8>) -> usize {
    body + pad.map_or(0, |p| 1 + p as usize)
}

/// An HPACK integer with an `n`-bit prefix whose other bits are `first`.
pub fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A literal header field without indexing, new name, no Huffman.
pub fn hpack_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    hpack_int(out, 0, 7, name.len());
    out.extend_from_slice(name);
    hpack_int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

/// A literal header field with incremental indexing, new name: the
/// decoder adds it to its dynamic table (as index 62).
pub fn hpack_literal_indexed(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x40);
    hpack_int(out, 0, 7, name.len());
    out.extend_from_slice(name);
    hpack_int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

/// An indexed header field (RFC 7541 §6.1).
pub fn hpack_indexed(out: &mut Vec<u8>, index: usize) {
    hpack_int(out, 0x80, 7, index);
}

/// A header block of literal fields.
pub fn block(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    for (n, v) in fields {
        hpack_literal(&mut b, n, v);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_fields_decode_with_an_independent_decoder() {
        let mut b = block(&[(b":status", b"200"), (b"x-long", &[b'v'; 300])]);
        hpack_literal_indexed(&mut b, b"x-idx", b"abc");
        hpack_indexed(&mut b, 62);
        let got = loona_hpack::Decoder::new().decode(&b).expect("decodes");
        let want: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b":status".to_vec(), b"200".to_vec()),
            (b"x-long".to_vec(), vec![b'v'; 300]),
            (b"x-idx".to_vec(), b"abc".to_vec()),
            (b"x-idx".to_vec(), b"abc".to_vec()),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn a_long_block_is_split_into_continuations_within_the_frame_size() {
        let block = vec![7u8; 40_000];
        let mut out = Vec::new();
        let frames = headers(&mut out, 1, &block, true, 16_384, Some(3), true);
        assert_eq!(frames, 3);
        let mut rest = &out[..];
        let mut kinds = Vec::new();
        let mut carried = 0;
        while let Some((f, used)) = parse(rest) {
            assert!(f.payload.len() <= 16_384);
            kinds.push((f.kind, f.flags));
            carried += f.payload.len();
            rest = &rest[used..];
        }
        assert!(rest.is_empty());
        assert_eq!(
            kinds,
            [
                (HEADERS, END_STREAM | PADDED | PRIORITY_FLAG),
                (CONTINUATION, 0),
                (CONTINUATION, END_HEADERS)
            ]
        );
        // Pad length byte, 5 bytes of priority, 3 of padding.
        assert_eq!(carried, 40_000 + 1 + 5 + 3);
    }

    #[test]
    fn integers_past_the_prefix_take_continuation_bytes() {
        let mut out = Vec::new();
        hpack_int(&mut out, 0x80, 7, 200);
        assert_eq!(out, [0xff, 0x49]);
        out.clear();
        hpack_int(&mut out, 0, 7, 1337);
        assert_eq!(out, [0x7f, 0xba, 0x09]);
    }
}
