//! The real HTTP/2 servers the tests run loadgen against, proved with
//! independent clients (h2load, nghttp) first: Debian's nginx over h2c
//! and over TLS with ALPN h2, and Go's net/http over TLS.

use std::collections::BTreeSet;

use loadgen_tests::caddy::Caddy;
use loadgen_tests::go::{GoOptions, GoServer};
use loadgen_tests::nghttp2::{h2load, have_nghttp2, nghttp};
use loadgen_tests::nginx::{Nginx, NginxCounts, NginxOptions, NginxTls, find_nginx};
use loadgen_tests::pki::Pki;
use loadgen_tests::{run_json, skip};

fn ready(need_nginx: bool) -> Option<Pki> {
    if !have_nghttp2() {
        return None;
    }
    if need_nginx && find_nginx().is_none() {
        skip("nginx is not installed (apt-get install nginx-light)");
        return None;
    }
    Pki::new().map_err(|e| skip(&e)).ok()
}

fn tls(pki: &Pki) -> NginxTls<'_> {
    NginxTls {
        cert: &pki.server_cert,
        key: &pki.server_key,
        client_ca: None,
    }
}

#[test]
fn nginx_over_h2c_and_alpn_h2_counts_exactly() {
    let Some(pki) = ready(true) else { return };
    for (scheme, protocol) in [("http", "h2c"), ("https", "h2")] {
        let nginx = Nginx::start_with(&NginxOptions {
            cpu: 1,
            tls: (scheme == "https").then(|| tls(&pki)),
            http2: true,
            access_log: true,
            ..NginxOptions::default()
        })
        .expect("start nginx");
        // One worker, pinned where it was asked to be.
        let workers = nginx.workers();
        assert_eq!(workers.len(), 1);
        let status = std::fs::read_to_string(format!("/proc/{}/status", workers[0])).unwrap();
        assert!(status.contains("Cpus_allowed_list:\t1\n"), "{status}");

        let url = format!("{scheme}://127.0.0.1:{}/", nginx.port);
        let out = h2load(&["-n", "1000", "-c", "4", "-m", "16", &url]);
        assert_eq!(out.succeeded, 1000, "{}", out.output);
        assert_eq!(out.protocol, protocol);
        assert_eq!(
            nginx.counts(),
            NginxCounts {
                requests: 1000,
                connections: 4
            }
        );
        // Reading the counts is not counted.
        assert_eq!(nginx.counts().requests, 1000);
        let log = nginx.access_log();
        assert_eq!(log.len(), 1000);
        assert!(
            log.iter()
                .all(|l| l.protocol == "HTTP/2.0" && l.status == 200)
        );
        let conns: BTreeSet<u64> = log.iter().map(|l| l.connection).collect();
        assert_eq!(conns.len(), 4);
    }
}

#[test]
fn nginx_keepalive_requests_ends_a_connection_with_goaway() {
    let Some(pki) = ready(true) else { return };
    let nginx = Nginx::start_with(&NginxOptions {
        tls: Some(tls(&pki)),
        http2: true,
        keepalive_requests: Some(100),
        ..NginxOptions::default()
    })
    .expect("start nginx");
    let url = format!("https://127.0.0.1:{}/", nginx.port);
    // h2load does not reconnect after the GOAWAY: the other 900 are lost.
    let out = h2load(&["-n", "1000", "-c", "1", "-m", "4", &url]);
    assert_eq!(out.succeeded, 100, "{}", out.output);
    assert_eq!(
        nginx.counts(),
        NginxCounts {
            requests: 100,
            connections: 1
        }
    );
    // Three requests on a connection allowed two: the GOAWAY names the
    // second as the last stream nginx will answer.
    let nginx = Nginx::start_with(&NginxOptions {
        http2: true,
        keepalive_requests: Some(2),
        ..NginxOptions::default()
    })
    .expect("start nginx");
    let url = |p: &str| format!("http://127.0.0.1:{}/{p}", nginx.port);
    // (nghttp fetches a URL given twice once.)
    let shown = nghttp(&["-n", "--no-dep", &url("a"), &url("b"), &url("c")]);
    assert!(
        shown
            .output
            .contains("recv GOAWAY frame <length=8, flags=0x00, stream_id=0>\n          (last_stream_id=3, error_code=NO_ERROR(0x00)"),
        "{}",
        shown.output
    );
    assert_eq!(nginx.counts().requests, 2, "{}", shown.output);
}

#[test]
fn nginx_advertises_its_max_concurrent_streams() {
    let Some(_pki) = ready(true) else { return };
    let nginx = Nginx::start_with(&NginxOptions {
        http2: true,
        max_concurrent_streams: Some(7),
        ..NginxOptions::default()
    })
    .expect("start nginx");
    let url = format!("http://127.0.0.1:{}/", nginx.port);
    let shown = nghttp(&["-n", &url]);
    assert_eq!(
        shown.server_setting("SETTINGS_MAX_CONCURRENT_STREAMS"),
        Some(7),
        "{}",
        shown.output
    );
    // Within the limit every request succeeds; the server counted them all.
    let out = h2load(&["-n", "700", "-c", "2", "-m", "7", &url]);
    assert_eq!(out.succeeded, 700, "{}", out.output);
    assert_eq!(nginx.counts().requests, 1 + 700);
}

#[test]
fn go_net_http_over_alpn_h2_counts_exactly() {
    let Some(pki) = ready(false) else { return };
    let Some(go) = GoServer::start(&pki, &GoOptions::default()) else {
        return;
    };
    let out = h2load(&["-n", "1000", "-c", "4", "-m", "16", &go.url("/")]);
    assert_eq!(out.succeeded, 1000, "{}", out.output);
    assert_eq!(out.protocol, "h2");
    let s = go.stats();
    assert_eq!((s.requests, s.h2_requests, s.connections), (1000, 1000, 4));
    // Go's own default, which the next test changes.
    let shown = nghttp(&["-n", &go.url("/")]);
    assert_eq!(
        shown.server_setting("SETTINGS_MAX_CONCURRENT_STREAMS"),
        Some(250),
        "{}",
        shown.output
    );
}

#[test]
fn go_max_concurrent_streams_is_configurable() {
    let Some(pki) = ready(false) else { return };
    let opts = GoOptions {
        max_concurrent_streams: Some(5),
        ..GoOptions::default()
    };
    let Some(go) = GoServer::start(&pki, &opts) else {
        return;
    };
    let shown = nghttp(&["-n", &go.url("/")]);
    assert_eq!(
        shown.server_setting("SETTINGS_MAX_CONCURRENT_STREAMS"),
        Some(5),
        "{}",
        shown.output
    );
    let out = h2load(&["-n", "500", "-c", "2", "-m", "5", &go.url("/")]);
    assert_eq!(out.succeeded, 500, "{}", out.output);
    assert_eq!(go.stats().requests, 1 + 500);
}

#[test]
fn go_reads_request_bodies_and_sends_trailers() {
    let Some(pki) = ready(false) else { return };
    let Some(go) = GoServer::start(&pki, &GoOptions::default()) else {
        return;
    };
    let body = std::env::temp_dir().join(format!("loadgen-go-body-{}", std::process::id()));
    std::fs::write(&body, vec![b'b'; 100_000]).unwrap();
    let body_path = body.to_str().unwrap();
    let out = h2load(&[
        "-n",
        "20",
        "-c",
        "2",
        "-m",
        "4",
        "-d",
        body_path,
        &go.url("/"),
    ]);
    assert_eq!(out.succeeded, 20, "{}", out.output);
    assert_eq!(go.stats().body_bytes, 20 * 100_000);

    let shown = nghttp(&["-n", "-d", body_path, &go.url("/trailers")]);
    let _ = std::fs::remove_file(&body);
    let stream = shown.first_stream().expect("a response");
    let h = shown.received_headers(stream);
    let trailer = |name: &str| {
        h.iter()
            .find_map(|(n, v)| (n == name).then(|| v.clone()))
            .unwrap_or_else(|| panic!("no {name}: {}", shown.output))
    };
    assert_eq!(trailer("x-trailer"), "done");
    assert_eq!(trailer("x-body-bytes"), "100000");
    // Response headers, then the trailers in a HEADERS frame of their own.
    assert_eq!(shown.frames_received("HEADERS"), 2, "{}", shown.output);
    let s = go.stats();
    assert_eq!((s.trailers_sent, s.body_bytes), (1, 21 * 100_000));
}

#[test]
fn caddy_over_tls_counts_exactly_in_its_access_log() {
    let Some(pki) = ready(false) else { return };
    let Some(caddy) = Caddy::start(&pki) else {
        return;
    };
    // The independent client first: h2load over ALPN h2 (it checks no
    // certificate; loadgen below does).
    let url = caddy.url("/");
    let out = h2load(&["-n", "500", "-c", "2", "-m", "8", &url]);
    assert_eq!(out.succeeded, 500, "{}", out.output);
    assert_eq!(out.protocol, "h2");
    assert_eq!(caddy.requests("HTTP/2.0"), 500);
    // loadgen, both engines, HTTP/2 and HTTP/1.1 over TLS, verifying the
    // certificate against the test CA.
    let ca = pki.ca.to_str().unwrap();
    let mut h2 = 500;
    let mut h1 = 0;
    for engine in ["uring", "glommio"] {
        for (flags, n) in [(&["--http2", "--streams", "8"][..], 1000), (&[][..], 600)] {
            let n_str = n.to_string();
            let mut args = vec!["-c4", "-n", &n_str, "--engine", engine, "--cacert", ca];
            args.extend_from_slice(flags);
            args.push(&url);
            let (json, text, code) = run_json(&args);
            assert_eq!(code, 0, "{args:?}: {text}");
            assert_eq!(json["requests"], n, "{text}");
            assert_eq!(json["status"]["2xx"], n, "{text}");
            if flags.is_empty() {
                h1 += n;
            } else {
                h2 += n;
            }
            assert_eq!(caddy.requests("HTTP/2.0"), h2, "{args:?}");
            assert_eq!(caddy.requests("HTTP/1.1"), h1, "{args:?}");
        }
    }
}
