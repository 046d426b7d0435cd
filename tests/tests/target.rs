//! The built-in target against requests a load generator would not send.

use std::io::{Read, Write};
use std::time::Duration;

use loadgen_tests::{Target, http_get};

fn exchange(port: u16, request: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn an_absurd_content_length_is_refused_and_the_server_lives_on() {
    let t = Target::start(1);
    let r = exchange(
        t.port,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\nabc",
    );
    assert!(r.starts_with("HTTP/1.1 413 "), "{r}");
    let r = exchange(
        t.port,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
    // Still serving.
    assert!(http_get(t.port, "/__stats").contains("responses"));
}
