//! HTTP/3 frames (RFC 9114 §7): an incremental reader per stream, and the
//! few frames a client writes.

use super::error::H3Error;
use super::varint;

/// Frame types (RFC 9114 §7.2, §11.2.1).
pub mod frame_type {
    pub const DATA: u64 = 0x0;
    pub const HEADERS: u64 = 0x1;
    pub const CANCEL_PUSH: u64 = 0x3;
    pub const SETTINGS: u64 = 0x4;
    pub const PUSH_PROMISE: u64 = 0x5;
    pub const GOAWAY: u64 = 0x7;
    pub const MAX_PUSH_ID: u64 = 0xd;

    /// HTTP/2's PRIORITY, PING, WINDOW_UPDATE and CONTINUATION: reserved,
    /// an error wherever they come (§7.2.8).
    pub fn is_http2_only(t: u64) -> bool {
        matches!(t, 0x2 | 0x6 | 0x8 | 0x9)
    }
}

/// Which stream a reader reads: the frames allowed differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// A request stream: the response's HEADERS and DATA.
    Request,
    /// The server's control stream: SETTINGS, then GOAWAY.
    Control,
}

impl StreamKind {
    fn name(self) -> &'static str {
        match self {
            StreamKind::Request => "request",
            StreamKind::Control => "control",
        }
    }
}

/// A frame, or a piece of one, as the reader hands it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole HEADERS frame's field section.
    Headers(&'a [u8]),
    /// The next piece of a DATA frame's payload (a frame's payload may come
    /// in several pieces, as it arrives; an empty frame comes as one empty
    /// piece).
    Data(&'a [u8]),
    /// A whole SETTINGS frame's payload.
    Settings(&'a [u8]),
    /// GOAWAY with its stream id.
    Goaway(u64),
}

/// What the reader does with the payload of the current frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Data,
    Skip,
    Gather(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames; `hdr[..hdr_len]` holds a frame header split across
    /// reads.
    Header,
    Payload {
        body: Body,
        left: u64,
    },
}

/// The most a SETTINGS frame may take: a few dozen settings are plenty.
const MAX_SETTINGS: usize = 4096;

/// The longest frame header: two 8-byte varints.
const MAX_HEADER: usize = 16;

/// Reads the frames of one stream, from the stream's bytes in the pieces
/// they arrive in.
#[derive(Debug, Clone)]
pub struct FrameReader {
    kind: StreamKind,
    state: State,
    hdr: [u8; MAX_HEADER],
    hdr_len: u8,
    /// A HEADERS or SETTINGS frame split across reads, gathered; emptied
    /// when the next frame starts. It keeps its capacity.
    gathered: Vec<u8>,
    /// `gathered` holds a frame already handed on.
    stale: bool,
    /// The largest HEADERS frame accepted.
    max_headers: usize,
    /// Frames whose header was read, skipped ones included (the control
    /// stream's first must be SETTINGS, and only the first, §6.2.1).
    started: u64,
}

/// What one step of [`FrameReader::next`] found.
enum Step {
    /// A frame whose payload is `len` bytes at the start of the input.
    FromInput {
        ty: u64,
        len: usize,
    },
    /// A frame whose payload is `gathered`.
    Gathered(u64),
    Goaway(u64),
    Data(usize),
    NeedMore,
}

impl FrameReader {
    /// A reader for a stream of `kind`; HEADERS frames above
    /// `max_field_section` bytes (our SETTINGS_MAX_FIELD_SECTION_SIZE; the
    /// encoded section is never larger than the decoded one plus a few
    /// bytes) are H3_EXCESSIVE_LOAD.
    pub fn new(kind: StreamKind, max_field_section: usize) -> Self {
        FrameReader {
            kind,
            state: State::Header,
            hdr: [0; MAX_HEADER],
            hdr_len: 0,
            gathered: Vec::new(),
            stale: false,
            max_headers: max_field_section.saturating_add(16),
            started: 0,
        }
    }

    /// Readies the reader for a new stream of the same kind, keeping its
    /// buffer.
    pub fn reset(&mut self) {
        self.state = State::Header;
        self.hdr_len = 0;
        self.gathered.clear();
        self.stale = false;
        self.started = 0;
    }

    /// The next frame (or piece of DATA) from `input`, which is advanced
    /// past what was used; `None` when `input` is used up inside a frame
    /// (the reader keeps what it needs) or is empty. Unknown frame types are
    /// skipped (§9).
    pub fn next<'s, 'i: 's>(
        &'s mut self,
        input: &mut &'i [u8],
    ) -> Result<Option<Frame<'s>>, H3Error> {
        if self.stale {
            self.gathered.clear();
            self.stale = false;
        }
        let step = self.step(input)?;
        Ok(match step {
            Step::NeedMore => None,
            Step::Data(n) => {
                let (piece, rest) = input.split_at(n);
                *input = rest;
                Some(Frame::Data(piece))
            }
            Step::Goaway(id) => Some(Frame::Goaway(id)),
            Step::FromInput { ty, len } => {
                let (payload, rest) = input.split_at(len);
                *input = rest;
                Some(whole(ty, payload))
            }
            Step::Gathered(ty) => {
                self.stale = true;
                Some(whole(ty, &self.gathered))
            }
        })
    }

    /// The stream ended cleanly here: an error if it ended inside a frame
    /// (§7.1).
    pub fn finish(&self) -> Result<(), H3Error> {
        if self.state == State::Header && self.hdr_len == 0 {
            Ok(())
        } else {
            Err(H3Error::Frame("the stream ended inside a frame"))
        }
    }

    fn step(&mut self, input: &mut &[u8]) -> Result<Step, H3Error> {
        loop {
            match self.state {
                State::Header => {
                    let Some((ty, len)) = self.header(input) else {
                        return Ok(Step::NeedMore);
                    };
                    self.start(ty, len)?;
                    if let State::Payload {
                        body: Body::Data,
                        left: 0,
                    } = self.state
                    {
                        self.state = State::Header;
                        return Ok(Step::Data(0));
                    }
                }
                State::Payload { body, left } => {
                    if input.is_empty() && left > 0 {
                        return Ok(Step::NeedMore);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    let done = n as u64 == left;
                    self.state = if done {
                        State::Header
                    } else {
                        State::Payload {
                            body,
                            left: left - n as u64,
                        }
                    };
                    match body {
                        Body::Data => return Ok(Step::Data(n)),
                        Body::Skip => *input = &input[n..],
                        Body::Gather(ty) if done && self.gathered.is_empty() => {
                            return self.finish_frame(ty, input, n);
                        }
                        Body::Gather(ty) => {
                            self.gathered.extend_from_slice(&input[..n]);
                            *input = &input[n..];
                            if done {
                                return self.finish_gathered(ty);
                            }
                        }
                    }
                }
            }
        }
    }

    /// A frame whose whole payload is the next `n` bytes of `input`.
    fn finish_frame(&mut self, ty: u64, input: &mut &[u8], n: usize) -> Result<Step, H3Error> {
        if ty == frame_type::GOAWAY {
            let id = goaway_id(&input[..n])?;
            *input = &input[n..];
            return Ok(Step::Goaway(id));
        }
        Ok(Step::FromInput { ty, len: n })
    }

    fn finish_gathered(&mut self, ty: u64) -> Result<Step, H3Error> {
        if ty == frame_type::GOAWAY {
            let id = goaway_id(&self.gathered)?;
            self.gathered.clear();
            return Ok(Step::Goaway(id));
        }
        Ok(Step::Gathered(ty))
    }

    /// A frame header, from `input` directly when it holds one whole, else
    /// gathered into `hdr`.
    fn header(&mut self, input: &mut &[u8]) -> Option<(u64, u64)> {
        if self.hdr_len == 0
            && let Some((ty, a)) = varint::decode(input)
            && let Some((len, b)) = varint::decode(&input[a..])
        {
            *input = &input[a + b..];
            return Some((ty, len));
        }
        while let Some((&byte, rest)) = input.split_first() {
            self.hdr[self.hdr_len as usize] = byte;
            self.hdr_len += 1;
            *input = rest;
            let got = &self.hdr[..self.hdr_len as usize];
            if let Some((ty, a)) = varint::decode(got)
                && let Some((len, b)) = varint::decode(&got[a..])
            {
                debug_assert_eq!(a + b, got.len());
                self.hdr_len = 0;
                return Some((ty, len));
            }
        }
        None
    }

    /// Checks a frame's type and length against the stream, and sets up
    /// reading its payload.
    fn start(&mut self, ty: u64, len: u64) -> Result<(), H3Error> {
        use frame_type::*;
        self.started += 1;
        let unexpected = H3Error::FrameUnexpected {
            frame: ty,
            stream: self.kind.name(),
        };
        if self.kind == StreamKind::Control {
            match (self.started, ty) {
                (1, SETTINGS) => {}
                (1, _) => return Err(H3Error::MissingSettings),
                (_, SETTINGS) => return Err(unexpected),
                _ => {}
            }
        }
        let body = match (self.kind, ty) {
            (StreamKind::Request, DATA) => Body::Data,
            (StreamKind::Request, HEADERS) => {
                if len > self.max_headers as u64 {
                    return Err(H3Error::ExcessiveLoad {
                        what: "HEADERS frame",
                        limit: self.max_headers,
                    });
                }
                Body::Gather(ty)
            }
            (StreamKind::Control, SETTINGS) => {
                if len > MAX_SETTINGS as u64 {
                    return Err(H3Error::ExcessiveLoad {
                        what: "SETTINGS frame",
                        limit: MAX_SETTINGS,
                    });
                }
                Body::Gather(ty)
            }
            (StreamKind::Control, GOAWAY) => {
                if len == 0 || len > 8 {
                    return Err(H3Error::Frame("GOAWAY must hold one stream id"));
                }
                Body::Gather(ty)
            }
            // We never send MAX_PUSH_ID, so no push id is allowed (§7.2.3,
            // §7.2.5).
            (StreamKind::Request, PUSH_PROMISE) => {
                return Err(H3Error::Id("PUSH_PROMISE, but we allowed no push"));
            }
            (StreamKind::Control, CANCEL_PUSH) => {
                return Err(H3Error::Id("CANCEL_PUSH, but we allowed no push"));
            }
            (_, DATA | HEADERS | CANCEL_PUSH | SETTINGS | PUSH_PROMISE | GOAWAY | MAX_PUSH_ID) => {
                return Err(unexpected);
            }
            _ if is_http2_only(ty) => return Err(unexpected),
            _ => Body::Skip,
        };
        self.state = State::Payload { body, left: len };
        Ok(())
    }
}

fn whole(ty: u64, payload: &[u8]) -> Frame<'_> {
    match ty {
        frame_type::HEADERS => Frame::Headers(payload),
        _ => Frame::Settings(payload),
    }
}

/// GOAWAY's payload: exactly one varint.
fn goaway_id(payload: &[u8]) -> Result<u64, H3Error> {
    match varint::decode(payload) {
        Some((id, n)) if n == payload.len() => Ok(id),
        _ => Err(H3Error::Frame("GOAWAY must hold one stream id")),
    }
}

/// Appends a frame header: type and payload length.
pub fn write_frame_header(ty: u64, len: u64, out: &mut Vec<u8>) {
    varint::encode(ty, out);
    varint::encode(len, out);
}
