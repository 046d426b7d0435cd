//! Property: any valid stream of responses, split anywhere into any number
//! of reads, parses into the same responses as the whole stream, and those
//! are the responses that were generated.

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Framing {
    Length,
    Chunked {
        sizes: Vec<usize>,
        ext: bool,
        trailer: bool,
    },
    NoBody(u16),
}

#[derive(Debug, Clone)]
struct Gen {
    status: u16,
    body: usize,
    framing: Framing,
    interim: bool,
    extra_headers: usize,
}

fn one_response() -> impl Strategy<Value = Gen> {
    let framing = prop_oneof![
        Just(Framing::Length),
        (
            prop::collection::vec(1usize..300, 0..6),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(sizes, ext, trailer)| Framing::Chunked {
                sizes,
                ext,
                trailer
            }),
        prop_oneof![Just(204u16), Just(304u16)].prop_map(Framing::NoBody),
    ];
    (200u16..600, 0usize..500, framing, any::<bool>(), 0usize..4).prop_map(
        |(status, body, framing, interim, extra_headers)| Gen {
            status,
            body,
            framing,
            interim,
            extra_headers,
        },
    )
}

/// Renders a response and the `Response` the parser should produce.
fn render(g: &Gen, out: &mut Vec<u8>) -> Response {
    if g.interim {
        out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let status = match g.framing {
        Framing::NoBody(s) => s,
        _ if g.status == 204 || g.status == 304 => 200,
        _ => g.status,
    };
    out.extend_from_slice(format!("HTTP/1.1 {status} Whatever\r\n").as_bytes());
    for i in 0..g.extra_headers {
        out.extend_from_slice(format!("X-Extra-{i}: {}\r\n", "v".repeat(i * 7)).as_bytes());
    }
    let body_len = match &g.framing {
        Framing::Length => {
            out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", g.body).as_bytes());
            out.extend(std::iter::repeat_n(b'b', g.body));
            g.body
        }
        Framing::Chunked {
            sizes,
            ext,
            trailer,
        } => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            for &n in sizes {
                let e = if *ext { ";k=v" } else { "" };
                out.extend_from_slice(format!("{n:X}{e}\r\n").as_bytes());
                out.extend(std::iter::repeat_n(b'c', n));
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n");
            if *trailer {
                out.extend_from_slice(b"Trailer-Field: x\r\n");
            }
            out.extend_from_slice(b"\r\n");
            sizes.iter().sum()
        }
        Framing::NoBody(_) => {
            out.extend_from_slice(b"Content-Length: 17\r\n\r\n");
            0
        }
    };
    Response {
        status,
        body_len: body_len as u64,
        close: false,
    }
}

fn parse_pieces(pieces: &[&[u8]]) -> Result<Vec<Response>, ParseError> {
    let mut p = ResponseParser::new(64 * 1024);
    let mut out = Vec::new();
    for piece in pieces {
        let mut off = 0;
        while off < piece.len() {
            let (n, r) = p.parse(&piece[off..], false)?;
            assert!(n > 0 || r.is_some(), "no progress");
            off += n;
            out.extend(r);
        }
    }
    out.extend(p.eof()?);
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_split_of_a_valid_stream_parses_the_same(
        gens in prop::collection::vec(one_response(), 1..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut bytes = Vec::new();
        let want: Vec<Response> = gens.iter().map(|g| render(g, &mut bytes)).collect();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut pieces = Vec::new();
        let mut last = 0;
        for p in points {
            pieces.push(&bytes[last..p]);
            last = p;
        }
        pieces.push(&bytes[last..]);
        prop_assert_eq!(parse_pieces(&[&bytes]).unwrap(), want.clone());
        prop_assert_eq!(parse_pieces(&pieces).unwrap(), want);
    }
}
