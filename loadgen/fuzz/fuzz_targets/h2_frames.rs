//! Differential fuzzing of the HTTP/2 client connection: the same server
//! bytes, read whole and in reads cut at fuzzer-chosen points, must give
//! the same events, the same frames back and the same error (or none).
//! The connection has streams open on every slot first, so frames about
//! them reach the stream logic; the server's SETTINGS comes first unless
//! the first input byte says otherwise.

#![no_main]

use libfuzzer_sys::fuzz_target;
use loadgen::http::h2::hpack::RequestFields;
use loadgen::http::h2::{ConnError, Connection, Event, H2Stats, Head, Settings, frame};

const LOCAL: Settings = Settings {
    streams: 4,
    stream_window: 1 << 16,
    conn_window: 1 << 17,
    max_header_list: 8192,
};

fn run(stream: &[u8], cuts: &[usize]) -> (Vec<Event>, Vec<u8>, Option<ConnError>) {
    let mut conn = Connection::new(LOCAL);
    let mut st = H2Stats::default();
    conn.start(&mut st);
    let mut fields = RequestFields::new();
    fields
        .from_http1(b"POST /f HTTP/1.1\r\nHost: fuzz\r\n\r\n", b"http")
        .expect("a valid head");
    for slot in 0..LOCAL.streams {
        let _ = conn.open_stream(slot, Head::Fields(&fields), &[7; 100], &mut st);
    }
    let mut events = Vec::new();
    let mut last = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        if let Err(e) = conn.read(&stream[last..cut], &mut events, &mut st) {
            let mut out = Vec::new();
            conn.take_output(&mut out);
            return (events, out, Some(e));
        }
        last = cut;
    }
    let mut out = Vec::new();
    conn.take_output(&mut out);
    (events, out, None)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let mut stream = Vec::new();
    if data[0] & 1 == 0 {
        frame::settings(&mut stream, &[]);
    }
    stream.extend_from_slice(&data[2..]);
    let mut cuts = Vec::new();
    let mut step = data[1] as usize % 17 + 1;
    let mut pos = 0;
    while pos + step < stream.len() {
        pos += step;
        cuts.push(pos);
        step = (step * 7 + data[0] as usize) % 23 + 1;
    }
    let whole = run(&stream, &[]);
    let split = run(&stream, &cuts);
    assert_eq!(whole, split, "cuts at {cuts:?}");
});
