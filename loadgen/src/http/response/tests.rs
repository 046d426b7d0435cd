use super::*;

/// Feeds `chunks` in order, collecting every completed response; an error
/// ends the stream. `eof` delivers a close at the end.
fn run(chunks: &[&[u8]], head: bool, eof: bool) -> Result<Vec<Response>, ParseError> {
    let mut p = ResponseParser::new(8192);
    let mut out = Vec::new();
    for chunk in chunks {
        let mut off = 0;
        while off < chunk.len() {
            let (n, resp) = p.parse(&chunk[off..], head)?;
            assert!(n > 0 || resp.is_some(), "parser made no progress");
            off += n;
            out.extend(resp);
        }
    }
    if eof {
        out.extend(p.eof()?);
    }
    Ok(out)
}

fn one(bytes: &[u8]) -> Result<Vec<Response>, ParseError> {
    run(&[bytes], false, false)
}

fn resp(status: u16, body_len: u64, close: bool) -> Response {
    Response {
        status,
        body_len,
        close,
    }
}

#[test]
fn content_length() {
    assert_eq!(
        one(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").unwrap(),
        vec![resp(200, 5, false)]
    );
}

#[test]
fn zero_length_completes_at_head() {
    assert_eq!(
        one(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").unwrap(),
        vec![resp(404, 0, false)]
    );
}

#[test]
fn pipelined_batch_in_one_read() {
    let mut stream = Vec::new();
    for _ in 0..16 {
        stream.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    }
    assert_eq!(one(&stream).unwrap(), vec![resp(200, 2, false); 16]);
}

#[test]
fn chunked_with_extensions_and_trailers() {
    let bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;name=value\r\nhello\r\n\
        A ; a=\"b\"\r\n0123456789\r\n\
        0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n";
    assert_eq!(one(bytes).unwrap(), vec![resp(200, 15, false)]);
}

#[test]
fn chunked_wins_over_content_length_and_bare_lf_is_tolerated() {
    let bytes =
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
        3\nabc\n0\n\n";
    assert_eq!(one(bytes).unwrap(), vec![resp(200, 3, false)]);
}

#[test]
fn body_until_eof() {
    let out = run(
        &[b"HTTP/1.1 200 OK\r\n\r\nsome", b" more bytes"],
        false,
        true,
    )
    .unwrap();
    assert_eq!(out, vec![resp(200, 15, true)]);
}

#[test]
fn unknown_coding_reads_until_eof() {
    let out = run(
        &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc"],
        false,
        true,
    )
    .unwrap();
    assert_eq!(out, vec![resp(200, 3, true)]);
}

#[test]
fn interim_responses_are_skipped() {
    let bytes = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
        HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx";
    assert_eq!(one(bytes).unwrap(), vec![resp(201, 1, false)]);
}

#[test]
fn no_body_statuses_and_head() {
    let bytes = b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n\
        HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(
        one(bytes).unwrap(),
        vec![resp(204, 0, false), resp(304, 0, false)]
    );
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
    assert_eq!(
        run(&[head], true, false).unwrap(),
        vec![resp(200, 0, false)]
    );
}

#[test]
fn connection_close_and_http10() {
    assert_eq!(
        one(b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, close\r\nContent-Length: 0\r\n\r\n")
            .unwrap(),
        vec![resp(200, 0, true)]
    );
    assert_eq!(
        one(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap(),
        vec![resp(200, 0, true)]
    );
    assert_eq!(
        one(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").unwrap(),
        vec![resp(200, 0, false)]
    );
}

#[test]
fn duplicate_equal_lengths_are_fine_conflicting_are_not() {
    assert_eq!(
        one(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx").unwrap(),
        vec![resp(200, 1, false)]
    );
    for bad in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    ] {
        assert_eq!(one(bad), Err(ParseError::ContentLength), "{bad:?}");
    }
}

#[test]
fn garbage_and_bad_chunks_are_errors() {
    assert!(matches!(
        one(b"SMTP ready\r\n\r\n"),
        Err(ParseError::Head(_))
    ));
    assert_eq!(
        one(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
        Err(ParseError::ChunkSize)
    );
    assert_eq!(
        one(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab"),
        Err(ParseError::ChunkFraming)
    );
    assert_eq!(
        one(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n"),
        Err(ParseError::ChunkTooLarge)
    );
    assert_eq!(
        one(b"HTTP/1.1 101 Switching Protocols\r\n\r\n"),
        Err(ParseError::Upgrade)
    );
}

#[test]
fn truncated_body_is_an_error_at_eof() {
    assert_eq!(
        run(
            &[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"],
            false,
            true
        ),
        Err(ParseError::Truncated)
    );
    assert_eq!(
        run(&[b"HTTP/1.1 200 OK\r\nContent-"], false, true),
        Err(ParseError::Truncated)
    );
    assert_eq!(run(&[], false, true), Ok(vec![]));
}

#[test]
fn head_limit_applies_in_one_read_and_across_reads() {
    let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
    while big.len() < 10_000 {
        big.extend_from_slice(b"X-Filler: ");
        big.extend_from_slice(&[b'a'; 1000]);
        big.extend_from_slice(b"\r\n");
    }
    assert_eq!(one(&big), Err(ParseError::HeadTooLarge));
    // A complete head over the limit in one read is refused too.
    let mut complete = big.clone();
    complete.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    assert_eq!(one(&complete), Err(ParseError::HeadTooLarge));
    let pieces: Vec<&[u8]> = big.chunks(100).collect();
    assert_eq!(run(&pieces, false, false), Err(ParseError::HeadTooLarge));
}

/// A stream exercising every framing, pipelined back to back.
fn mixed_stream() -> (Vec<u8>, Vec<Response>) {
    let parts: &[(&[u8], Response)] = &[
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            resp(200, 5, false),
        ),
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            resp(204, 0, false),
        ),
        (
            b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nabcd\r\n0\r\nT: v\r\n\r\n",
            resp(500, 4, false),
        ),
        (
            b"HTTP/1.1 302 Found\r\nLocation: /\r\nContent-Length: 0\r\n\r\n",
            resp(302, 0, false),
        ),
        (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
            resp(200, 13, true),
        ),
    ];
    let mut bytes = Vec::new();
    let mut want = Vec::new();
    for (b, r) in parts {
        bytes.extend_from_slice(b);
        want.push(*r);
    }
    (bytes, want)
}

#[test]
fn any_split_gives_the_same_responses() {
    let (bytes, want) = mixed_stream();
    assert_eq!(run(&[&bytes], false, true).unwrap(), want);
    for i in 0..=bytes.len() {
        for j in i..=bytes.len() {
            let got = run(&[&bytes[..i], &bytes[i..j], &bytes[j..]], false, true).unwrap();
            assert_eq!(got, want, "split at {i}/{j}");
        }
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(run(&singles, false, true).unwrap(), want);
}
