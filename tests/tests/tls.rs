//! https: against Debian's nginx with a test CA made at test time, and
//! against servers that break the handshake.

use loadgen_tests::hostile::{HostileTls, TlsMischief};
use loadgen_tests::nginx::{Nginx, NginxTls, find_nginx};
use loadgen_tests::pki::Pki;
use loadgen_tests::{Target, run_json, skip};

/// A PKI and an nginx serving its server certificate, or a loud skip.
fn nginx_tls(client_ca: bool) -> Option<(Pki, Nginx)> {
    if find_nginx().is_none() {
        skip("nginx is not installed (apt-get install nginx-light)");
        return None;
    }
    let pki = match Pki::new() {
        Ok(p) => p,
        Err(e) => {
            skip(&e);
            return None;
        }
    };
    let nginx = Nginx::start_tls(
        0,
        &NginxTls {
            cert: &pki.server_cert,
            key: &pki.server_key,
            client_ca: client_ca.then_some(pki.ca.as_path()),
        },
    )
    .expect("start nginx with TLS");
    Some((pki, nginx))
}

fn url(n: &Nginx) -> String {
    format!("https://localhost:{}/", n.port)
}

#[test]
fn exact_counts_over_https_on_both_engines() {
    let Some((pki, nginx)) = nginx_tls(false) else {
        return;
    };
    let ca = pki.ca.to_str().unwrap();
    for engine in ["uring", "glommio"] {
        for extra in [&["-t1"][..], &["-t2", "--pipeline", "16"]] {
            let mut args = vec!["-c8", "-n", "5000", "--engine", engine, "--cacert", ca];
            args.extend_from_slice(extra);
            let u = url(&nginx);
            args.push(&u);
            let (json, text, code) = run_json(&args);
            assert_eq!(code, 0, "{engine} {extra:?}: {text}");
            assert_eq!(json["requests"], 5000, "{engine} {extra:?}: {json}");
            assert_eq!(json["status"]["codes"]["200"], 5000);
            let tls = &json["tls"];
            assert_eq!(tls["version"], "1.3", "{tls}");
            assert_eq!(tls["alpn"], "http/1.1");
            assert_eq!(tls["handshakes"], 8, "one per connection: {tls}");
            assert_eq!(tls["errors"]["protocol"], 0);
            assert!(text.contains("TLS 1.3 "), "{text}");
            // Socket bytes are ciphertext: more than the plaintext bodies.
            assert!(json["bytes_read"].as_u64().unwrap() > 5000 * 17);
        }
    }
}

/// An open-loop run's last turn dispatches the request due at the
/// deadline and then closes its connections; the engine sends it after
/// the slot's TLS session is gone. It panicked ("range end index 63 out
/// of range": the record's length applied to the plaintext requests).
#[test]
fn open_loop_over_https_ends_at_its_deadline() {
    let Some((pki, nginx)) = nginx_tls(false) else {
        return;
    };
    let ca = pki.ca.to_str().unwrap();
    for engine in ["uring", "glommio"] {
        let u = url(&nginx);
        let args = [
            "-c2", "-R", "200", "-d", "1", "--engine", engine, "--cacert", ca, &u,
        ];
        let (json, text, code) = run_json(&args);
        assert_eq!(code, 0, "{engine}: {text}");
        let n = json["requests"].as_u64().unwrap();
        assert!(
            (190..=201).contains(&n),
            "{engine}: {n} requests at 200/s for 1 s: {text}"
        );
        let errors = json["errors"].as_object().unwrap();
        assert!(errors.values().all(|v| v == 0), "{engine}: {errors:?}");
    }
}

#[test]
fn tls_1_2_and_pinned_suites() {
    let Some((pki, nginx)) = nginx_tls(false) else {
        return;
    };
    let ca = pki.ca.to_str().unwrap();
    let u = url(&nginx);
    let (json, text, code) = run_json(&[
        "-c2",
        "-n",
        "200",
        "--cacert",
        ca,
        "--tls-version",
        "1.2",
        "--ciphers",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        &u,
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["tls"]["version"], "1.2");
    assert_eq!(
        json["tls"]["cipher"],
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
    );
    let (json, _, _) = run_json(&[
        "-c2",
        "-n",
        "200",
        "--cacert",
        ca,
        "--ciphers",
        "TLS_CHACHA20_POLY1305_SHA256",
        &u,
    ]);
    assert_eq!(json["tls"]["cipher"], "TLS_CHACHA20_POLY1305_SHA256");
}

#[test]
fn verification_failures_are_one_line_and_cacert_or_k_fix_them() {
    let Some((pki, nginx)) = nginx_tls(false) else {
        return;
    };
    let u = url(&nginx);
    // The system roots do not know the test CA.
    let (json, text, code) = run_json(&["-c2", "-d", "10s", &u]);
    assert_eq!(code, 1, "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("loadgen: TLS certificate verification failed"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("unknown issuer"), "{line}");
    assert!(line.contains("--cacert") && line.contains("-k"), "{line}");
    assert!(json["duration_s"].as_f64().unwrap() < 2.0, "ends at once");
    assert!(json["tls"]["errors"]["cert"].as_u64().unwrap() >= 1);
    let (_, text, code) = run_json(&["-c2", "-n", "100", "-k", &u]);
    assert_eq!(code, 0, "{text}");
    drop(nginx);
    // A certificate for another name.
    let wrong = Nginx::start_tls(
        0,
        &NginxTls {
            cert: &pki.wrong_name_cert,
            key: &pki.wrong_name_key,
            client_ca: None,
        },
    )
    .unwrap();
    let ca = pki.ca.to_str().unwrap();
    let (_, text, code) = run_json(&["-c2", "-n", "100", "--cacert", ca, &url(&wrong)]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("name mismatch"), "{text}");
}

#[test]
fn mutual_tls() {
    let Some((pki, nginx)) = nginx_tls(true) else {
        return;
    };
    let (ca, cert, key) = (
        pki.ca.to_str().unwrap(),
        pki.client_cert.to_str().unwrap(),
        pki.client_key.to_str().unwrap(),
    );
    let u = url(&nginx);
    let (json, text, code) = run_json(&[
        "-c2", "-n", "500", "--cacert", ca, "--cert", cert, "--key", key, &u,
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["status"]["codes"]["200"], 500, "{json}");
    // Without a client certificate nginx refuses: no 200s.
    let (json, text, _) = run_json(&["-c2", "-n", "20", "--timeout", "1s", "--cacert", ca, &u]);
    assert!(json["status"]["codes"].get("200").is_none(), "{text}");
}

#[test]
fn handshakes_per_request_resume_unless_told_not_to() {
    let Some((pki, nginx)) = nginx_tls(false) else {
        return;
    };
    let ca = pki.ca.to_str().unwrap();
    let u = url(&nginx);
    let (json, text, code) = run_json(&[
        "-t1",
        "-c4",
        "-n",
        "2000",
        "--no-keepalive",
        "--cacert",
        ca,
        &u,
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["requests"], 2000);
    let tls = &json["tls"];
    assert_eq!(tls["handshakes"], 2000, "{tls}");
    // All but each connection's first.
    assert!(tls["resumed"].as_u64().unwrap() >= 1990, "{tls}");
    assert!(text.contains("% resumed"), "{text}");
    let (json, text, code) = run_json(&[
        "-t1",
        "-c4",
        "-n",
        "1000",
        "--no-keepalive",
        "--no-tls-resume",
        "--cacert",
        ca,
        &u,
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(json["tls"]["handshakes"], 1000);
    assert_eq!(json["tls"]["resumed"], 0);
}

#[test]
fn hostile_tls_servers_are_counted_and_end_on_time() {
    let check = |url: &str, kind: &str| {
        let started = loadgen_tests::start_clock();
        let (json, text, code) = run_json(&["-c2", "-n", "10", "--timeout", "1s", "-k", url]);
        let took = started.elapsed();
        assert_eq!(code, 1, "{kind}: {text}");
        assert!(!text.contains("panicked"), "{text}");
        assert!(took.as_secs_f64() < 5.0, "{kind}: took {took:?}");
        assert!(
            json["tls"]["errors"][kind].as_u64().unwrap() > 0,
            "{kind}: {json}"
        );
        assert!(text.contains("no TLS handshake"), "{kind}: {text}");
    };
    // Plain HTTP on the port: its 400 is not a TLS record.
    let t = Target::start(1);
    check(&format!("https://127.0.0.1:{}/", t.port), "protocol");
    let h = HostileTls::start(TlsMischief::Garbage);
    check(&h.url(), "protocol");
    let h = HostileTls::start(TlsMischief::CloseMidHandshake);
    check(&h.url(), "closed");
    let h = HostileTls::start(TlsMischief::Stall);
    check(&h.url(), "timeout");
}
