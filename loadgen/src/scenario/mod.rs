//! What to send: one request or a weighted mix, compiled once from
//! templates, rendered per request into a connection's reusable buffer.
//!
//! The state a rendering needs is split by who may share it: the shard
//! owns `{{seq}}` and the feed cursors ([`ShardGen`], strided by shard so
//! no counter is shared between threads); the connection owns its random
//! generator and its token ([`ConnGen`]).

mod feed;
mod file;
mod jwt;
mod rng;
mod template;

pub use feed::{Feed, FeedError};
pub use file::{FileError, load_file};
pub use jwt::{Jwt, JwtError};
pub use rng::{Rng, fresh_seed};
pub use template::{Names, Template, TemplateError, Vars};

use crate::fleet::Stream;
use crate::http::{RequestError, RequestSpec, bad_target_byte};

/// More requests than this in one scenario is almost surely a mistake
/// (and each keeps its own histograms per shard).
pub const MAX_REQUESTS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Jwt(#[from] JwtError),
    #[error(
        "feed {feed:?} row {row} contains spaces or control characters and is used in a URL: percent-encode it in the file"
    )]
    FeedInTarget { feed: String, row: usize },
    #[error(
        "feed {feed:?} row {row} contains control characters and is used in a header: remove them from the file"
    )]
    FeedInHeader { feed: String, row: usize },
    #[error(
        "request {0:?} sets Content-Length and has a templated body: drop the header, loadgen computes it"
    )]
    ContentLength(String),
    #[error("a scenario needs at least one request")]
    Empty,
    #[error("a scenario may have at most {MAX_REQUESTS} requests, got {0}")]
    TooMany(usize),
}

/// One request before compiling: method, target and header values and
/// body are templates.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub weight: u32,
    pub spec: RequestSpec,
    /// A unary gRPC call of this method: `spec` is its request (built by
    /// the caller: `POST /SERVICE/METHOD`, gRPC's headers, the message).
    pub grpc: Option<crate::grpc::Method>,
}

/// Options that apply to every request of the scenario.
pub struct Options<'a> {
    pub feeds: Vec<Feed>,
    /// `--jwt-secret`, `--jwt-claims`, `--jwt-ttl` (s).
    pub jwt: Option<(Vec<u8>, String, u64)>,
    pub seed: u64,
    /// Report results per request name (`--scenario`).
    pub named: bool,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// One compiled request.
#[derive(Debug, Clone)]
pub struct Request {
    pub name: String,
    pub method: String,
    /// The target as written (with its placeholders), for reports.
    pub target: String,
    pub weight: u32,
    /// A HEAD: its responses have no body.
    pub head: bool,
    /// Request line and headers; with a literal body also the
    /// Content-Length, the blank line and the body.
    head_tpl: Template,
    /// A templated body: its length is known only once it is rendered.
    body: Option<Template>,
    /// A unary gRPC call of this method: its response's status is a gRPC
    /// status, counted as such.
    pub call: Option<crate::grpc::Method>,
    /// A gRPC call whose body is a JSON message template: rendered as
    /// JSON (with no Content-Length) and encoded by the HTTP/2 sender.
    pub message: Option<std::sync::Arc<crate::grpc::MessageType>>,
    feeds: Vec<usize>,
    max_len: usize,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub requests: Vec<Request>,
    /// Cumulative weights, for the weighted pick.
    cum: Vec<u64>,
    pub feeds: Vec<Feed>,
    pub jwt: Option<Jwt>,
    pub seed: u64,
    pub named: bool,
    /// The whole request when nothing in it varies: the engines then send
    /// these bytes and render nothing.
    fixed: Option<Vec<u8>>,
    max_len: usize,
    jwt_len: usize,
    /// SHA-256 (hex) of what the scenario sends: every request as written
    /// (name, weight, method, host, target, headers, body), the feeds'
    /// names and rows, and the token's claims and lifetime. Parts of one
    /// fleet have the same; `loadgen merge` refuses reports that differ.
    pub digest: String,
}

/// Adds `-H` headers to every request; a request's own header of the same
/// name wins.
pub fn add_global_headers(entries: &mut [Entry], global: &[(String, String)]) {
    for e in entries {
        let own = std::mem::take(&mut e.spec.headers);
        let mut headers: Vec<(String, String)> = global
            .iter()
            .filter(|(n, _)| !own.iter().any(|(o, _)| o.eq_ignore_ascii_case(n)))
            .cloned()
            .collect();
        headers.extend(own);
        e.spec.headers = headers;
    }
}

impl Scenario {
    /// A scenario of one fixed request (no templates).
    pub fn fixed(spec: &RequestSpec) -> Result<Scenario, ScenarioError> {
        Scenario::compile(
            vec![Entry {
                name: format!("{} {}", spec.method, spec.target),
                weight: 1,
                spec: spec.clone(),
                grpc: None,
            }],
            Options {
                feeds: Vec::new(),
                jwt: None,
                seed: 0,
                named: false,
                env: &|_| None,
            },
        )
    }

    pub fn compile(entries: Vec<Entry>, opts: Options<'_>) -> Result<Scenario, ScenarioError> {
        if entries.is_empty() {
            return Err(ScenarioError::Empty);
        }
        if entries.len() > MAX_REQUESTS {
            return Err(ScenarioError::TooMany(entries.len()));
        }
        let feeds = opts.feeds;
        let names = Names {
            feeds: &feeds,
            jwt: opts.jwt.is_some(),
            env: opts.env,
        };
        let jwt = match &opts.jwt {
            Some((secret, claims, ttl)) => Some(Jwt::new(secret, claims, *ttl, &names)?),
            None => None,
        };
        let jwt_len = jwt.as_ref().map_or(0, |j| j.max_len(&feeds));
        let digest = digest(
            &entries,
            &feeds,
            opts.jwt.as_ref().map(|(_, c, t)| (c.as_str(), *t)),
        );
        let mut requests = Vec::with_capacity(entries.len());
        for e in entries {
            requests.push(compile_one(e, &names, jwt_len, opts.named)?);
        }
        let mut cum = Vec::with_capacity(requests.len());
        let mut total = 0u64;
        for r in &requests {
            total += r.weight as u64;
            cum.push(total);
        }
        let fixed = match requests.as_slice() {
            [r] if r.body.is_none() => r.head_tpl.as_literal().map(<[u8]>::to_vec),
            _ => None,
        };
        let max_len = requests.iter().map(|r| r.max_len).max().unwrap_or(0);
        Ok(Scenario {
            requests,
            cum,
            feeds,
            jwt,
            seed: opts.seed,
            named: opts.named,
            fixed,
            max_len,
            jwt_len,
            digest,
        })
    }

    /// The bytes of every request, when they never vary.
    pub fn fixed_bytes(&self) -> Option<&[u8]> {
        self.fixed.as_deref()
    }

    /// The longest request this scenario can render.
    pub fn max_request_len(&self) -> usize {
        self.max_len
    }

    /// How many requests the report keeps apart by name: all of them for
    /// `--scenario`, none for a single URL.
    pub fn named_count(&self) -> usize {
        if self.named { self.requests.len() } else { 0 }
    }

    /// True when request `which` is a gRPC call.
    #[inline]
    pub fn is_call(&self, which: u16) -> bool {
        self.requests[which as usize].call.is_some()
    }

    /// The methods the scenario's gRPC calls name, each once, in the
    /// order the requests first name them.
    pub fn methods(&self) -> Vec<&crate::grpc::Method> {
        let mut out: Vec<&crate::grpc::Method> = Vec::new();
        for m in self.requests.iter().filter_map(|r| r.call.as_ref()) {
            if !out.contains(&m) {
                out.push(m);
            }
        }
        out
    }

    /// True when request `which` is a HEAD.
    #[inline]
    pub fn is_head(&self, which: u16) -> bool {
        self.requests[which as usize].head
    }

    /// Picks the next request, appends it to `out`, and returns which one
    /// it was. `now_ms` is the wall clock (Unix ms).
    #[inline]
    pub fn render(
        &self,
        sg: &mut ShardGen,
        cg: &mut ConnGen,
        now_ms: u64,
        out: &mut Vec<u8>,
    ) -> u16 {
        let which = if self.cum.len() == 1 {
            0
        } else {
            let total = self.cum[self.cum.len() - 1];
            let x = cg.rng.below(total);
            self.cum.partition_point(|&c| c <= x)
        };
        self.render_request(which, sg, cg, now_ms, out);
        which as u16
    }

    /// Appends request `which` to `out` (a gRPC call's templated message
    /// as JSON, after the blank line).
    #[inline]
    pub fn render_request(
        &self,
        which: usize,
        sg: &mut ShardGen,
        cg: &mut ConnGen,
        now_ms: u64,
        out: &mut Vec<u8>,
    ) {
        let r = &self.requests[which];
        let seq = sg.seq;
        sg.seq = sg.seq.wrapping_add(sg.stride);
        for &f in &r.feeds {
            sg.next_row(f, &self.feeds[f]);
        }
        let ConnGen {
            rng,
            token,
            token_exp,
            scratch,
        } = cg;
        let now_s = now_ms / 1000;
        let mint = self
            .jwt
            .as_ref()
            .filter(|_| token.is_empty() || now_s + jwt::REFRESH_MARGIN_S >= *token_exp);
        if let Some(jwt) = mint {
            // Feeds only the claims read take their next row now.
            for &f in jwt.feeds() {
                if !r.feeds.contains(&f) {
                    sg.next_row(f, &self.feeds[f]);
                }
            }
        }
        let mut v = Vars {
            seq,
            rows: &sg.rows,
            feeds: &self.feeds,
            now_ms,
            rng,
            jwt: b"",
        };
        if let Some(jwt) = mint {
            *token_exp = jwt.mint(&mut v, now_s, scratch, token);
        }
        v.jwt = token;
        r.head_tpl.render(&mut v, out);
        if let Some(body) = &r.body {
            scratch.clear();
            body.render(&mut v, scratch);
            if r.message.is_some() {
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(scratch);
                return;
            }
            out.extend_from_slice(b"Content-Length: ");
            template::push_u64(out, scratch.len() as u64);
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(scratch);
        }
    }
}

/// See [`Scenario::digest`]. Each field is length-prefixed, so no two
/// different scenarios hash the same bytes.
fn digest(entries: &[Entry], feeds: &[Feed], jwt: Option<(&str, u64)>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    for e in entries {
        let s = &e.spec;
        field(e.name.as_bytes());
        field(&e.weight.to_le_bytes());
        field(s.method.as_bytes());
        field(s.host.as_bytes());
        field(s.target.as_bytes());
        for (n, v) in &s.headers {
            field(n.as_bytes());
            field(v.as_bytes());
        }
        field(b"body");
        field(&s.body);
    }
    for f in feeds {
        field(f.name.as_bytes());
        for c in &f.columns {
            field(c.as_bytes());
        }
        for row in f.values(None) {
            field(row);
        }
    }
    if let Some((claims, ttl)) = jwt {
        field(claims.as_bytes());
        field(&ttl.to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn compile_one(
    e: Entry,
    names: &Names<'_>,
    jwt_len: usize,
    named: bool,
) -> Result<Request, ScenarioError> {
    let spec = &e.spec;
    let what = |part: &str| {
        if !named {
            part.to_string()
        } else {
            format!("{part} of request {:?}", e.name)
        }
    };
    // Header names were checked when parsed (-H, the scenario file).
    spec.check_method()?;
    let target = Template::parse(&spec.target, &what("the URL"), names)?;
    if target.literal_bytes().any(bad_target_byte) {
        return Err(RequestError::Target(spec.target.clone()).into());
    }
    check_feeds(&target, names.feeds, bad_target_byte, |feed, row| {
        ScenarioError::FeedInTarget { feed, row }
    })?;
    let mut head = Template::literal(format!("{} ", spec.method).as_bytes());
    head.append(&target);
    head.append(&Template::literal(b" HTTP/1.1\r\n"));
    let has = |name: &str| {
        spec.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    if !has("host") {
        head.append(&Template::literal(
            format!("Host: {}\r\n", spec.host).as_bytes(),
        ));
    }
    let body = match std::str::from_utf8(&spec.body) {
        Ok(text) if text.contains("{{") => Template::parse(text, &what("the body"), names)?,
        _ => Template::literal(&spec.body),
    };
    let mut uses_jwt = target.uses_jwt() || body.uses_jwt();
    for (name, value) in &spec.headers {
        let v = Template::parse(value, &what(&format!("header {name}")), names)?;
        if v.literal_bytes().any(|b| b == b'\r' || b == b'\n') {
            return Err(RequestError::Header(format!("{name}: {value}")).into());
        }
        check_feeds(
            &v,
            names.feeds,
            |b| b < b' ' && b != b'\t' || b == 0x7f,
            |feed, row| ScenarioError::FeedInHeader { feed, row },
        )?;
        uses_jwt |= v.uses_jwt();
        head.append(&Template::literal(format!("{name}: ").as_bytes()));
        head.append(&v);
        head.append(&Template::literal(b"\r\n"));
    }
    if names.jwt && !uses_jwt && !has("authorization") {
        // A token is sent the usual way unless the request places it.
        head.append(&Template::literal(b"Authorization: Bearer "));
        head.append(&Template {
            segs: vec![template::Seg::Jwt],
        });
        head.append(&Template::literal(b"\r\n"));
    }
    let is_method = |m: &str| spec.method.eq_ignore_ascii_case(m);
    let body = match body.as_literal() {
        Some(lit) => {
            let wants_length =
                !lit.is_empty() || ["POST", "PUT", "PATCH"].iter().any(|m| is_method(m));
            if wants_length && !has("content-length") {
                head.append(&Template::literal(
                    format!("Content-Length: {}\r\n", lit.len()).as_bytes(),
                ));
            }
            head.append(&Template::literal(b"\r\n"));
            head.append(&Template::literal(lit));
            None
        }
        None if has("content-length") => return Err(ScenarioError::ContentLength(e.name)),
        None => Some(body),
    };
    let mut feeds: Vec<usize> = head
        .feeds()
        .chain(body.iter().flat_map(|b| b.feeds()))
        .collect();
    feeds.sort_unstable();
    feeds.dedup();
    let max_len = head.max_len(names.feeds, jwt_len)
        + body.as_ref().map_or(0, |b| {
            "Content-Length: \r\n\r\n".len() + 20 + b.max_len(names.feeds, jwt_len)
        });
    Ok(Request {
        name: e.name,
        method: spec.method.clone(),
        target: spec.target.clone(),
        weight: e.weight,
        head: spec.is_head(),
        head_tpl: head,
        body,
        call: e.grpc,
        message: None,
        feeds,
        max_len,
    })
}

/// Checks every value of every feed column `t` uses against `bad`.
fn check_feeds(
    t: &Template,
    feeds: &[Feed],
    bad: impl Fn(u8) -> bool,
    err: impl Fn(String, usize) -> ScenarioError,
) -> Result<(), ScenarioError> {
    for s in &t.segs {
        if let template::Seg::Feed { feed, col } = s {
            let f = &feeds[*feed];
            if let Some(row) = f.values(*col).position(|v| v.iter().any(|&b| bad(b))) {
                return Err(err(f.name.clone(), row + 1));
            }
        }
    }
    Ok(())
}

/// A shard's part of the rendering state: `{{seq}}` and the feed cursors,
/// strided by the shard count so shards never hand out the same value.
#[derive(Debug, Clone)]
pub struct ShardGen {
    seq: u64,
    stride: u64,
    cursor: Vec<u64>,
    rows: Vec<u32>,
}

impl ShardGen {
    /// Moves feed `f` to its next row for this shard.
    #[inline]
    fn next_row(&mut self, f: usize, feed: &Feed) {
        self.rows[f] = self.cursor[f] as u32;
        self.cursor[f] = (self.cursor[f] + self.stride) % feed.rows() as u64;
    }

    /// Shard `shard` of `shards` of a process alone.
    pub fn new(sc: &Scenario, shard: usize, shards: usize) -> ShardGen {
        ShardGen::for_stream(
            sc,
            Stream {
                offset: shard as u64,
                stride: shards.max(1) as u64,
            },
        )
    }

    /// A shard at `stream` of the fleet's numbering ([`crate::fleet`]): its
    /// `{{seq}}` values and each feed's rows are `offset + stride·j`, so no
    /// two shards of any part hand out the same.
    pub fn for_stream(sc: &Scenario, stream: Stream) -> ShardGen {
        let stride = stream.stride.max(1);
        ShardGen {
            seq: stream.offset,
            stride,
            cursor: sc
                .feeds
                .iter()
                .map(|f| stream.offset % f.rows() as u64)
                .collect(),
            rows: vec![0; sc.feeds.len()],
        }
    }
}

/// A connection's part: its random stream and its token.
#[derive(Debug, Clone)]
pub struct ConnGen {
    rng: Rng,
    token: Vec<u8>,
    /// `exp` of `token`, Unix s.
    token_exp: u64,
    scratch: Vec<u8>,
}

impl ConnGen {
    /// Buffers are sized for the longest rendering up front, so rendering
    /// never allocates.
    pub fn new(sc: &Scenario, shard: usize, conn: usize) -> ConnGen {
        ConnGen::with_seed(sc, sc.seed, shard, conn)
    }

    /// The same with the generators seeded from `seed` (a part's own,
    /// [`crate::fleet::Part::seed`]).
    pub fn with_seed(sc: &Scenario, seed: u64, shard: usize, conn: usize) -> ConnGen {
        ConnGen {
            rng: Rng::for_connection(seed, shard, conn),
            token: Vec::with_capacity(sc.jwt_len),
            token_exp: 0,
            scratch: Vec::with_capacity(sc.max_len.max(sc.jwt_len)),
        }
    }
}

#[cfg(test)]
mod tests;
