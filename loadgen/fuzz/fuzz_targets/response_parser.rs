//! Differential fuzzing of the response parser: the same bytes, parsed as
//! one read and as reads cut at fuzzer-chosen points, must give the same
//! responses and the same error (or none), and the parser must always make
//! progress. The first two input bytes choose HEAD-ness and the cuts.

#![no_main]

use libfuzzer_sys::fuzz_target;
use loadgen::http::{ParseError, Response, ResponseParser};

const MAX_HEAD: usize = 4096;

fn run(stream: &[u8], cuts: &[usize], head: bool) -> (Vec<Response>, Option<ParseError>) {
    let mut p = ResponseParser::new(MAX_HEAD);
    let mut out = Vec::new();
    let mut last = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        let piece = &stream[last..cut];
        last = cut;
        let mut off = 0;
        while off < piece.len() {
            match p.parse(&piece[off..], head) {
                Ok((n, r)) => {
                    assert!(n > 0 || r.is_some(), "parser made no progress");
                    assert!(n <= piece.len() - off, "consumed more than it was given");
                    off += n;
                    out.extend(r);
                }
                Err(e) => return (out, Some(e)),
            }
        }
    }
    match p.eof() {
        Ok(r) => {
            out.extend(r);
            (out, None)
        }
        Err(e) => (out, Some(e)),
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let head = data[0] & 1 == 1;
    let stream = &data[2..];
    let mut cuts = Vec::new();
    let mut step = data[1] as usize % 17 + 1;
    let mut pos = 0;
    while pos + step < stream.len() {
        pos += step;
        cuts.push(pos);
        step = (step * 7 + data[0] as usize) % 23 + 1;
    }
    let whole = run(stream, &[], head);
    let split = run(stream, &cuts, head);
    assert_eq!(whole, split, "cuts at {cuts:?}");
});
