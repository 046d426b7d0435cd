//! Against a real server: Debian's nginx with our own config.

use loadgen_tests::nginx::{Nginx, find_nginx};
use loadgen_tests::{run_json, skip};

#[test]
fn exact_counts_against_nginx() {
    if find_nginx().is_none() {
        skip("nginx is not installed (apt-get install nginx-light)");
        return;
    }
    let nginx = Nginx::start(0).expect("start nginx");
    let url = format!("http://127.0.0.1:{}/", nginx.port);
    for extra in [&["-t1"][..], &["-t2", "--pipeline", "16"]] {
        let mut args = vec!["-c16", "-n", "20000"];
        args.extend_from_slice(extra);
        args.push(&url);
        let (json, text, code) = run_json(&args);
        assert_eq!(code, 0, "{text}");
        assert_eq!(json["requests"], 20000, "{json}");
        assert_eq!(json["status"]["codes"]["200"], 20000);
        assert_eq!(json["errors"]["parse"], 0);
        // Every nginx response is the same size: bytes are exact too.
        let bytes = json["bytes_read"].as_u64().unwrap();
        assert_eq!(bytes % 20000, 0, "{bytes}");
    }
}
