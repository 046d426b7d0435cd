//! The template language. A template is parsed once into segments;
//! rendering appends to a buffer the caller reuses, so it never allocates
//! once that buffer has reached [`Template::max_len`].
//!
//! `{{seq}}`, `{{rand:MIN:MAX}}`, `{{uuid}}`, `{{now_ms}}`, `{{env:NAME}}`
//! (resolved here, once), `{{feed:NAME}}`, `{{feed:NAME.COL}}`, `{{jwt}}`.

use super::feed::Feed;
use super::rng::Rng;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Lit(Box<[u8]>),
    /// The request's sequence number, unique across shards.
    Seq,
    /// Uniform in `min ..= min + span - 1` (`span == 0`: all of u64).
    Rand {
        min: i64,
        span: u64,
    },
    Uuid,
    NowMs,
    /// The request's row of feed `feed`: the whole line, or one column.
    Feed {
        feed: usize,
        col: Option<usize>,
    },
    Jwt,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    pub segs: Vec<Seg>,
}

/// A template that cannot be compiled; `what` names where it came from.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("bad template in {what} at byte {pos}: {msg}")]
pub struct TemplateError {
    pub what: String,
    pub pos: usize,
    pub msg: String,
}

/// What placeholders may refer to while compiling.
pub struct Names<'a> {
    pub feeds: &'a [Feed],
    pub jwt: bool,
    /// `{{env:NAME}}` lookup (the process environment outside tests).
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// Values of the placeholders for one request.
pub struct Vars<'a> {
    pub seq: u64,
    /// The request's row of each feed.
    pub rows: &'a [u32],
    pub feeds: &'a [Feed],
    pub now_ms: u64,
    pub rng: &'a mut Rng,
    pub jwt: &'a [u8],
}

const HELP: &str = "use {{seq}}, {{rand:MIN:MAX}}, {{uuid}}, {{now_ms}}, {{env:NAME}}, {{feed:NAME}}, {{feed:NAME.COL}} or {{jwt}}";

impl Template {
    /// A template with no placeholders.
    pub fn literal(bytes: &[u8]) -> Template {
        let mut t = Template::default();
        t.push_lit(bytes);
        t
    }

    pub fn parse(src: &str, what: &str, names: &Names<'_>) -> Result<Template, TemplateError> {
        let err = |pos: usize, msg: String| TemplateError {
            what: what.to_string(),
            pos,
            msg,
        };
        let mut t = Template::default();
        let mut rest = 0;
        while let Some(open) = src[rest..].find("{{").map(|i| rest + i) {
            t.push_lit(&src.as_bytes()[rest..open]);
            let Some(close) = src[open + 2..].find("}}").map(|i| open + 2 + i) else {
                return Err(err(open, "\"{{\" is never closed with \"}}\"".into()));
            };
            let body = src[open + 2..close].trim();
            match Self::placeholder(body, names) {
                Ok(Seg::Lit(b)) => t.push_lit(&b),
                Ok(seg) => t.segs.push(seg),
                Err(msg) => return Err(err(open, msg)),
            }
            rest = close + 2;
        }
        t.push_lit(&src.as_bytes()[rest..]);
        Ok(t)
    }

    fn placeholder(body: &str, names: &Names<'_>) -> Result<Seg, String> {
        let (kind, arg) = match body.split_once(':') {
            Some((k, a)) => (k.trim(), Some(a.trim())),
            None => (body, None),
        };
        match (kind, arg) {
            ("seq", None) => Ok(Seg::Seq),
            ("uuid", None) => Ok(Seg::Uuid),
            ("now_ms", None) => Ok(Seg::NowMs),
            ("jwt", None) if names.jwt => Ok(Seg::Jwt),
            ("jwt", None) => Err("{{jwt}} needs --jwt-secret".into()),
            ("rand", Some(range)) => {
                let bad = || {
                    format!(
                        "{{{{rand:{range}}}}} needs two integers MIN:MAX with MIN <= MAX, e.g. {{{{rand:1:100}}}}"
                    )
                };
                let (lo, hi) = range.split_once(':').ok_or_else(bad)?;
                let lo: i64 = lo.trim().parse().map_err(|_| bad())?;
                let hi: i64 = hi.trim().parse().map_err(|_| bad())?;
                if lo > hi {
                    return Err(bad());
                }
                // hi - lo + 1 wraps to 0 only for the full i64 range.
                let span = (hi as i128 - lo as i128 + 1) as u64;
                Ok(Seg::Rand { min: lo, span })
            }
            ("env", Some(name)) => match (names.env)(name) {
                Some(v) => Ok(Seg::Lit(v.into_bytes().into_boxed_slice())),
                None => Err(format!(
                    "environment variable {name:?} is not set; export it or remove {{{{env:{name}}}}}"
                )),
            },
            ("feed", Some(spec)) => {
                let (name, col) = match spec.split_once('.') {
                    Some((n, c)) => (n, Some(c)),
                    None => (spec, None),
                };
                let Some(feed) = names.feeds.iter().position(|f| f.name == name) else {
                    return Err(format!(
                        "no feed named {name:?}; give one with --feed {name}=FILE"
                    ));
                };
                let col = match col {
                    None => None,
                    Some(c) => Some(names.feeds[feed].column(c)?),
                };
                Ok(Seg::Feed { feed, col })
            }
            _ => Err(format!("unknown placeholder {{{{{body}}}}}; {HELP}")),
        }
    }

    fn push_lit(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(Seg::Lit(prev)) = self.segs.last_mut() {
            let mut joined = prev.to_vec();
            joined.extend_from_slice(bytes);
            *prev = joined.into_boxed_slice();
        } else {
            self.segs.push(Seg::Lit(bytes.into()));
        }
    }

    /// Appends `other` (merging literals at the seam).
    pub fn append(&mut self, other: &Template) {
        for s in &other.segs {
            match s {
                Seg::Lit(b) => self.push_lit(b),
                s => self.segs.push(s.clone()),
            }
        }
    }

    /// The bytes, when there are no placeholders.
    pub fn as_literal(&self) -> Option<&[u8]> {
        match self.segs.as_slice() {
            [] => Some(&[]),
            [Seg::Lit(b)] => Some(b),
            _ => None,
        }
    }

    /// Literal bytes (for validation: rendered values are checked apart).
    pub fn literal_bytes(&self) -> impl Iterator<Item = u8> + '_ {
        self.segs.iter().flat_map(|s| match s {
            Seg::Lit(b) => b.iter().copied(),
            _ => [].iter().copied(),
        })
    }

    /// Feeds this template reads.
    pub fn feeds(&self) -> impl Iterator<Item = usize> + '_ {
        self.segs.iter().filter_map(|s| match s {
            Seg::Feed { feed, .. } => Some(*feed),
            _ => None,
        })
    }

    pub fn uses_jwt(&self) -> bool {
        self.segs.contains(&Seg::Jwt)
    }

    /// The longest rendering, given the feeds and the token length.
    pub fn max_len(&self, feeds: &[Feed], jwt_len: usize) -> usize {
        self.segs
            .iter()
            .map(|s| match s {
                Seg::Lit(b) => b.len(),
                Seg::Seq | Seg::NowMs => 20,
                Seg::Rand { .. } => 20,
                Seg::Uuid => 36,
                Seg::Feed { feed, col } => feeds[*feed].max_len(*col),
                Seg::Jwt => jwt_len,
            })
            .sum()
    }

    #[inline]
    pub fn render(&self, v: &mut Vars<'_>, out: &mut Vec<u8>) {
        for s in &self.segs {
            match s {
                Seg::Lit(b) => out.extend_from_slice(b),
                Seg::Seq => push_u64(out, v.seq),
                Seg::Rand { min, span } => {
                    let r = v.rng.below(*span);
                    push_i64(out, min.wrapping_add(r as i64));
                }
                Seg::Uuid => push_uuid(out, v.rng.next_u64(), v.rng.next_u64()),
                Seg::NowMs => push_u64(out, v.now_ms),
                Seg::Feed { feed, col } => {
                    let row = v.rows[*feed];
                    out.extend_from_slice(v.feeds[*feed].get(row, *col));
                }
                Seg::Jwt => out.extend_from_slice(v.jwt),
            }
        }
    }
}

/// Appends `n` in decimal without allocating, two digits per division
/// (the itoa approach).
#[inline]
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    while n >= 100 {
        let d = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[d..d + 2]);
    }
    if n >= 10 {
        let d = n as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[d..d + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + n as u8;
    }
    out.extend_from_slice(&buf[i..]);
}

#[inline]
fn push_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_u64(out, n.unsigned_abs());
}

/// A random (version 4, RFC 9562) UUID in its 36-character form.
#[inline]
fn push_uuid(out: &mut Vec<u8>, hi: u64, lo: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hi = (hi & !0xf000) | 0x4000;
    let lo = (lo & !(0b11 << 62)) | (0b10 << 62);
    let v = ((hi as u128) << 64) | lo as u128;
    let mut buf = [0u8; 36];
    let mut nibble = 0;
    for (i, b) in buf.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            *b = b'-';
        } else {
            *b = HEX[((v >> (124 - 4 * nibble)) & 0xf) as usize];
            nibble += 1;
        }
    }
    out.extend_from_slice(&buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(feeds: &[Feed]) -> Names<'_> {
        Names {
            feeds,
            jwt: false,
            env: &|k| (k == "TOKEN").then(|| "s3cret".to_string()),
        }
    }

    fn render(t: &Template, seq: u64, rng: &mut Rng) -> String {
        let mut out = Vec::new();
        let mut v = Vars {
            seq,
            rows: &[],
            feeds: &[],
            now_ms: 1_700_000_000_123,
            rng,
            jwt: b"",
        };
        t.render(&mut v, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn placeholders_render() {
        let t = Template::parse(
            "/u/{{seq}}?t={{ env:TOKEN }}&n={{now_ms}}",
            "the URL",
            &names(&[]),
        )
        .unwrap();
        assert_eq!(t.segs.len(), 4, "env folds into the literals: {t:?}");
        assert_eq!(
            render(&t, 42, &mut Rng::new(1)),
            "/u/42?t=s3cret&n=1700000000123"
        );
        assert_eq!(
            Template::parse("plain", "x", &names(&[]))
                .unwrap()
                .as_literal(),
            Some(&b"plain"[..])
        );
    }

    #[test]
    fn rand_stays_in_range_including_negative_and_full() {
        let t = Template::parse("{{rand:-3:3}}", "x", &names(&[])).unwrap();
        let mut rng = Rng::new(7);
        let mut seen = [false; 7];
        for _ in 0..1000 {
            let v: i64 = render(&t, 0, &mut rng).parse().unwrap();
            assert!((-3..=3).contains(&v));
            seen[(v + 3) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
        let full = Template::parse(
            "{{rand:-9223372036854775808:9223372036854775807}}",
            "x",
            &names(&[]),
        )
        .unwrap();
        assert_eq!(
            full.segs,
            vec![Seg::Rand {
                min: i64::MIN,
                span: 0
            }]
        );
        render(&full, 0, &mut rng).parse::<i64>().unwrap();
    }

    #[test]
    fn uuid_is_version_4() {
        let t = Template::parse("{{uuid}}", "x", &names(&[])).unwrap();
        let mut rng = Rng::new(3);
        let a = render(&t, 0, &mut rng);
        let b = render(&t, 0, &mut rng);
        assert_ne!(a, b);
        for u in [a, b] {
            assert_eq!(u.len(), 36);
            let parts: Vec<&str> = u.split('-').collect();
            assert_eq!(
                parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12]
            );
            assert!(parts[2].starts_with('4'));
            assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
        }
    }

    #[test]
    fn errors_name_the_position() {
        let e = Template::parse("/a/{{nope}}", "the URL", &names(&[])).unwrap_err();
        assert_eq!(e.pos, 3);
        assert!(
            e.to_string()
                .starts_with("bad template in the URL at byte 3: unknown placeholder {{nope}}")
        );
        for bad in [
            "{{seq",
            "{{rand:5:1}}",
            "{{rand:a:b}}",
            "{{rand:1}}",
            "{{env:NOPE_NOT_SET}}",
            "{{feed:users}}",
            "{{jwt}}",
        ] {
            assert!(
                Template::parse(bad, "x", &names(&[])).is_err(),
                "{bad} should fail"
            );
        }
    }

    #[test]
    fn max_len_bounds_every_rendering() {
        let t = Template::parse(
            "{{seq}}/{{rand:-9223372036854775808:9223372036854775807}}/{{uuid}}/{{now_ms}}",
            "x",
            &names(&[]),
        )
        .unwrap();
        let mut rng = Rng::new(9);
        for seq in [0, u64::MAX] {
            assert!(render(&t, seq, &mut rng).len() <= t.max_len(&[], 0));
        }
    }

    #[test]
    fn numbers_format_like_display() {
        for n in [0, 7, 10, 99, 100, 101, 999, 12345, 100000, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        let mut out = Vec::new();
        push_i64(&mut out, i64::MIN);
        assert_eq!(out, i64::MIN.to_string().as_bytes());
    }
}
