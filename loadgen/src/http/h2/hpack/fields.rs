//! The HTTP/2 field list of a request, from the HTTP/1.1 head loadgen
//! renders (`RequestSpec::to_bytes`, the scenario's templates), so that one
//! renderer serves both protocols.

use std::mem::MaybeUninit;

/// More headers than this in one request is an error.
const MAX_HEADERS: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FieldsError {
    #[error("the request head is not valid HTTP/1.1 ({0}); check the -H headers and the target")]
    Parse(httparse::Error),
    #[error("the request head does not end with an empty line")]
    Incomplete,
    #[error("the request has two Host headers; give one")]
    TwoHosts,
}

/// A request's HTTP/2 fields, pseudo-headers first, in one reusable buffer:
/// after the first few requests, filling it allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct RequestFields {
    bytes: Vec<u8>,
    /// Per field: where its name starts, where its value starts (the name
    /// ends there), where its value ends.
    spans: Vec<[u32; 3]>,
}

/// Connection-specific header fields, which HTTP/2 forbids (RFC 9113
/// §8.2.2); `te` is allowed only as "trailers" and handled apart.
const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Is `name` one of the options listed in a Connection header? Those are
/// connection-specific too (RFC 9110 §7.6.1).
fn connection_option(headers: &[httparse::Header<'_>], name: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .any(|opt| opt.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
}

impl RequestFields {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the fields with those of `head`, an HTTP/1.1 request head
    /// (request line, headers, empty line; a body may follow): `:method`,
    /// `:scheme` (given), `:authority` from Host (which is dropped; none if
    /// there is no Host), `:path` (the request target), then the headers in
    /// order with lowercase names, minus the connection-specific ones
    /// (Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding,
    /// Upgrade, those Connection lists, and TE unless it is "trailers").
    /// Returns the head's length: the body starts there.
    pub fn from_http1(&mut self, head: &[u8], scheme: &[u8]) -> Result<usize, FieldsError> {
        self.bytes.clear();
        self.spans.clear();
        let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let len = match req.parse_with_uninit_headers(head, &mut storage) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Err(FieldsError::Incomplete),
            Err(e) => return Err(FieldsError::Parse(e)),
        };
        let (Some(method), Some(path)) = (req.method, req.path) else {
            return Err(FieldsError::Incomplete);
        };
        let mut host = None;
        for h in req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("host"))
        {
            if host.replace(h.value).is_some() {
                return Err(FieldsError::TwoHosts);
            }
        }
        self.push(b":method", method.as_bytes());
        self.push(b":scheme", scheme);
        if let Some(host) = host {
            self.push(b":authority", host);
        }
        self.push(b":path", path.as_bytes());
        let has_connection = req
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("connection"));
        for h in req.headers.iter() {
            let name = h.name;
            let drop = name.eq_ignore_ascii_case("host")
                || CONNECTION_SPECIFIC
                    .iter()
                    .any(|c| name.eq_ignore_ascii_case(c))
                || (name.eq_ignore_ascii_case("te")
                    && !h.value.trim_ascii().eq_ignore_ascii_case(b"trailers"))
                || (has_connection && connection_option(req.headers, name));
            if !drop {
                self.push_lowercase(name.as_bytes(), h.value);
            }
        }
        Ok(len)
    }

    fn push(&mut self, name: &[u8], value: &[u8]) {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(name);
        self.end_field(start, value);
    }

    fn push_lowercase(&mut self, name: &[u8], value: &[u8]) {
        let start = self.bytes.len() as u32;
        self.bytes
            .extend(name.iter().map(|b| b.to_ascii_lowercase()));
        self.end_field(start, value);
    }

    fn end_field(&mut self, start: u32, value: &[u8]) {
        let mid = self.bytes.len() as u32;
        self.bytes.extend_from_slice(value);
        self.spans.push([start, mid, self.bytes.len() as u32]);
    }

    /// The fields, as (name, value).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        self.spans.iter().map(|&[a, b, c]| {
            (
                &self.bytes[a as usize..b as usize],
                &self.bytes[b as usize..c as usize],
            )
        })
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}
