//! Response framing: heads via httparse, bodies by Content-Length, chunked
//! coding, or connection close; interim 1xx responses skipped.

use super::chunked::{ChunkError, ChunkedDecoder};

/// Headers beyond this count make a response unparsable (as in most
/// clients); it bounds the stack array httparse fills.
const MAX_HEADERS: usize = 100;

/// One complete response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Body bytes after transfer decoding.
    pub body_len: u64,
    /// The server will close the connection after this response.
    pub close: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("malformed response head: {0}")]
    Head(httparse::Error),
    #[error("response head larger than the header limit")]
    HeadTooLarge,
    #[error("invalid or conflicting Content-Length")]
    ContentLength,
    #[error("invalid chunk size")]
    ChunkSize,
    #[error("invalid chunk framing")]
    ChunkFraming,
    #[error("chunk, extension or trailer too large")]
    ChunkTooLarge,
    #[error("101 Switching Protocols is not supported")]
    Upgrade,
    #[error("connection closed in the middle of a response")]
    Truncated,
}

impl From<ChunkError> for ParseError {
    fn from(e: ChunkError) -> Self {
        match e {
            ChunkError::Size => ParseError::ChunkSize,
            ChunkError::Framing => ParseError::ChunkFraming,
            ChunkError::TooLarge => ParseError::ChunkTooLarge,
        }
    }
}

#[derive(Debug, Clone)]
enum Body {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilEof,
}

#[derive(Debug, Clone)]
enum State {
    Head,
    Body(Body),
}

/// Incremental parser for a stream of responses on one connection.
///
/// Feed it whatever the socket gave; it never needs the whole response in
/// memory. Heads split across reads are kept in a spill buffer that is
/// allocated once (up to `max_head` bytes) and reused.
#[derive(Debug, Clone)]
pub struct ResponseParser {
    state: State,
    spill: Vec<u8>,
    max_head: usize,
    status: u16,
    close: bool,
    body_len: u64,
}

struct Head {
    len: usize,
    status: u16,
    close: bool,
    body: Option<Body>,
}

impl ResponseParser {
    pub fn new(max_head: usize) -> Self {
        ResponseParser {
            state: State::Head,
            spill: Vec::new(),
            max_head: max_head.max(64),
            status: 0,
            close: false,
            body_len: 0,
        }
    }

    /// Forgets any partial response (after the connection is replaced).
    pub fn reset(&mut self) {
        self.state = State::Head;
        self.spill.clear();
    }

    /// True when no response is partially parsed.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Head) && self.spill.is_empty()
    }

    /// Parses from `input`; returns how many bytes were used and the
    /// response they completed, if any. Call again with the rest of the
    /// input: the bytes after a completed response belong to the next.
    /// `head_request` says the response answers a HEAD (it has no body).
    pub fn parse(
        &mut self,
        input: &[u8],
        head_request: bool,
    ) -> Result<(usize, Option<Response>), ParseError> {
        match &mut self.state {
            State::Head => self.parse_head(input, head_request),
            State::Body(Body::Length(remaining)) => {
                let n = (*remaining).min(input.len() as u64);
                *remaining -= n;
                self.body_len += n;
                let done = *remaining == 0;
                Ok((n as usize, done.then(|| self.finish())))
            }
            State::Body(Body::Chunked(decoder)) => {
                let (n, body, done) = decoder.feed(input)?;
                self.body_len += body;
                Ok((n, done.then(|| self.finish())))
            }
            State::Body(Body::UntilEof) => {
                self.body_len += input.len() as u64;
                Ok((input.len(), None))
            }
        }
    }

    /// The peer closed the connection. Completes a body delimited by close;
    /// an error if a response was cut short; `None` when idle.
    pub fn eof(&mut self) -> Result<Option<Response>, ParseError> {
        match self.state {
            State::Body(Body::UntilEof) => Ok(Some(self.finish())),
            State::Head if self.spill.is_empty() => Ok(None),
            _ => {
                self.reset();
                Err(ParseError::Truncated)
            }
        }
    }

    fn finish(&mut self) -> Response {
        self.state = State::Head;
        Response {
            status: self.status,
            body_len: std::mem::take(&mut self.body_len),
            close: self.close,
        }
    }

    fn parse_head(
        &mut self,
        input: &[u8],
        head_request: bool,
    ) -> Result<(usize, Option<Response>), ParseError> {
        // Fast path: the whole head is in this read, parse it in place.
        let (consumed, head) = if self.spill.is_empty() {
            match parse_head_bytes(input, head_request, self.max_head)? {
                // The limit holds however the head arrived (the fuzzer's
                // whole-vs-split oracle insists on it).
                Some(head) if head.len > self.max_head => return Err(ParseError::HeadTooLarge),
                Some(head) => (head.len, head),
                None => {
                    if input.len() >= self.max_head {
                        return Err(ParseError::HeadTooLarge);
                    }
                    if self.spill.capacity() == 0 {
                        self.spill.reserve_exact(self.max_head);
                    }
                    self.spill.extend_from_slice(input);
                    return Ok((input.len(), None));
                }
            }
        } else {
            let before = self.spill.len();
            let take = input.len().min(self.max_head - before);
            self.spill.extend_from_slice(&input[..take]);
            match parse_head_bytes(&self.spill, head_request, self.max_head)? {
                Some(head) => {
                    self.spill.clear();
                    (head.len - before, head)
                }
                None if self.spill.len() >= self.max_head => {
                    return Err(ParseError::HeadTooLarge);
                }
                None => return Ok((take, None)),
            }
        };
        let Some(body) = head.body else {
            // Interim 1xx: the real response follows.
            return Ok((consumed, None));
        };
        self.status = head.status;
        self.close = head.close;
        self.body_len = 0;
        match body {
            Body::Length(0) => Ok((consumed, Some(self.finish()))),
            body => {
                self.state = State::Body(body);
                Ok((consumed, None))
            }
        }
    }
}

/// Parses a complete head; `Ok(None)` when more bytes are needed. A head
/// with `body: None` is an interim (1xx) response.
fn parse_head_bytes(
    buf: &[u8],
    head_request: bool,
    max_trailer: usize,
) -> Result<Option<Head>, ParseError> {
    // Uninitialised: zeroing 100 headers cost more than parsing a small
    // response (criterion: response/parse_small).
    let mut headers =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut headers)
        .map_err(ParseError::Head)?
    {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    let status = resp.code.unwrap_or(0);
    let version = resp.version.unwrap_or(1);
    if status == 101 {
        return Err(ParseError::Upgrade);
    }
    if (100..200).contains(&status) {
        return Ok(Some(Head {
            len,
            status,
            close: false,
            body: None,
        }));
    }
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut other_coding = false;
    // HTTP/1.0 closes unless it says keep-alive.
    let mut close = version == 0;
    for h in resp.headers.iter() {
        // Length first: most headers are none of the three we care about.
        if !matches!(h.name.len(), 10 | 14 | 17) {
            continue;
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = parse_length(h.value).ok_or(ParseError::ContentLength)?;
            if content_length.is_some_and(|prev| prev != v) {
                return Err(ParseError::ContentLength);
            }
            content_length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the final coding decides the framing (RFC 9112 §6.3).
            for coding in h.value.split(|&b| b == b',') {
                let coding = trim(coding);
                if coding.is_empty() {
                    continue;
                }
                chunked = coding.eq_ignore_ascii_case(b"chunked");
                other_coding = !chunked;
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = trim(token);
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && version == 0 {
                    close = false;
                }
            }
        }
    }
    let body = if head_request || status == 204 || status == 304 {
        Body::Length(0)
    } else if chunked {
        Body::Chunked(ChunkedDecoder::new(max_trailer))
    } else if other_coding {
        Body::UntilEof
    } else if let Some(n) = content_length {
        Body::Length(n)
    } else {
        Body::UntilEof
    };
    if matches!(body, Body::UntilEof) {
        close = true;
    }
    Ok(Some(Head {
        len,
        status,
        close,
        body: Some(body),
    }))
}

fn parse_length(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add((d - b'0') as u64)
    })
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |p| p + 1);
    &v[start..end]
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
