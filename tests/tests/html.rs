//! `--html`: the page opened in headless Chromium (Debian's `chromium`)
//! renders with no console error, has every chart (SVGs counted in the
//! DOM), loads nothing over the network, and its flamegraphs search and
//! zoom. `loadgen report RUN.json --html` draws the same page again.

use std::path::Path;
use std::process::{Command, Stdio};

use loadgen_tests::{Target, have, run_json, skip};

/// Runs headless Chromium on `page` with `extra` flags; returns its
/// stdout and its log (stderr: console messages appear there).
fn chromium(page: &Path, extra: &[&str]) -> (String, String) {
    let profile = std::env::temp_dir().join(format!(
        "loadgen-chromium-{}-{}",
        std::process::id(),
        extra.len()
    ));
    let out = Command::new("timeout")
        .arg("90")
        .arg("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Nothing resolves: even Chromium's own background requests
            // cannot leave the machine.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .output()
        .expect("cannot run chromium");
    let _ = std::fs::remove_dir_all(&profile);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Requests the page itself made (Chromium's own have no origin).
fn page_requests(net_log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(net_log).expect("the net log");
    let log: serde_json::Value = serde_json::from_str(&text).expect("net log JSON");
    let mut urls = Vec::new();
    for e in log["events"].as_array().unwrap() {
        let p = &e["params"];
        if let (Some(url), Some(initiator)) = (p["url"].as_str(), p["initiator"].as_str())
            && initiator != "not an origin"
        {
            urls.push(url.to_string());
        }
    }
    urls
}

/// A script that exercises the flamegraphs inside their frames and writes
/// what happened into the DOM (so `--dump-dom` shows it).
const PROBE: &str = r#"<script>
window.addEventListener('load', function () {
  var out = [];
  document.querySelectorAll('iframe.flame').forEach(function (f) {
    var w = f.contentWindow, d = f.contentDocument;
    var r = { svgs: d.querySelectorAll('svg').length, frames: d.querySelectorAll('#frames g').length };
    try {
      // The hottest function of the profile, as a literal regex, less the
      // `_[k]` kind of annotation inferno does not show.
      var name = HOT.replace(/_\[[kwij]\]$/, '');
      w.search(name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
      r.matched = d.getElementById('matched').textContent;
      var g = d.querySelector('#frames g');
      g.dispatchEvent(new MouseEvent('click', { bubbles: true }));
      r.unzoom = !d.getElementById('unzoom').classList.contains('hide');
    } catch (e) { r.error = String(e); }
    out.push(r);
  });
  document.body.setAttribute('data-probe', JSON.stringify(out));
});
</script>"#;

#[test]
fn the_page_renders_in_chromium_with_every_chart_and_no_network() {
    if !have("chromium") {
        skip("Chromium is not installed (apt-get install chromium)");
        return;
    }
    let t = Target::start(1);
    let dir = std::env::temp_dir().join(format!("loadgen-html-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("mix.toml");
    std::fs::write(
        &scenario,
        format!(
            "[[request]]\nname = \"burn\"\nurl = \"{}\"\nweight = 3\n\n[[request]]\nname = \"missing\"\nurl = \"/status/404\"\n",
            t.url("/cpu/300")
        ),
    )
    .unwrap();
    let profiled = loadgen_tests::can_profile();
    let pid = t.pid().to_string();
    let profile: Vec<&str> = if profiled {
        loadgen_tests::privileged_ran();
        vec!["--profile-pid", &pid]
    } else {
        skip(
            "the flamegraphs need CAP_BPF and CAP_PERFMON (run as root); the charts are still checked",
        );
        Vec::new()
    };
    // A baseline (three runs, so the comparison is per run).
    let base = dir.join("base.json");
    let out = loadgen_tests::run(
        &[
            &[
                "-t1",
                "-c4",
                "-d1s",
                "--runs",
                "3",
                "--scenario",
                scenario.to_str().unwrap(),
            ][..],
            &profile,
            &["--json", base.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = dir.join("report.html");
    let json_path = dir.join("report.json");
    let metrics = t.url("/metrics");
    let (json, text, code) = run_json(
        &[
            &[
                "-t1",
                "-c4",
                "-R",
                "800",
                "-d1s",
                "--runs",
                "3",
                "--scenario",
                scenario.to_str().unwrap(),
            ][..],
            &profile,
            &[
                "--baseline",
                base.to_str().unwrap(),
                "--threshold",
                "p99<10s",
                "--threshold",
                "errors==0",
                "--server-metrics",
                &metrics,
                "--html",
                html.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{text}");
    std::fs::write(&json_path, serde_json::to_string(&json).unwrap()).unwrap();
    let page = std::fs::read_to_string(&html).unwrap();

    // Every chart: rate, latency, errors, spectrum, and one distribution per
    // compared metric (5).
    let charts = 4 + 5;
    let (dom, log) = chromium(&html, &["--dump-dom"]);
    assert_eq!(dom.matches("<svg").count(), charts, "SVGs in the DOM");
    assert!(dom.contains("Thresholds: all passed"), "thresholds table");
    assert!(dom.contains("The server's own count"), "server metrics");
    assert!(
        dom.contains("By request") && dom.contains("missing"),
        "per-request table"
    );
    assert!(dom.contains("Compared with"), "comparison table");
    assert!(
        dom.contains("service time"),
        "open loop: the spectrum has both lines"
    );
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    let flames = if profiled { 2 } else { 0 };
    assert_eq!(page.matches("<iframe class=\"flame\"").count(), flames);

    // The flamegraphs work inside the page: search highlights, a click zooms.
    let probed = dir.join("probed.html");
    // Search for a function the profile surely has (a short run may not
    // sample any one given function).
    let hot = json["profile"]["functions"][0]["name"].clone();
    let probe = format!("<script>var HOT = {hot};</script>{PROBE}");
    std::fs::write(&probed, page.replace("</body>", &format!("{probe}</body>"))).unwrap();
    let net_log = dir.join("net.json");
    let (dom, log) = chromium(
        &probed,
        &[
            "--dump-dom",
            &format!("--log-net-log={}", net_log.display()),
        ],
    );
    let probe = dom
        .split("data-probe=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the probe ran")
        .replace("&quot;", "\"");
    let probe: serde_json::Value = serde_json::from_str(&probe).unwrap();
    assert_eq!(probe.as_array().unwrap().len(), flames, "{probe}");
    for f in probe.as_array().unwrap() {
        assert!(f["error"].is_null(), "{probe}");
        // inferno nests the frames in an inner <svg>.
        assert!(f["svgs"].as_u64().unwrap() >= 1, "{probe}");
        assert!(f["frames"].as_u64().unwrap() > 3, "{probe}");
        assert!(
            f["matched"].as_str().unwrap().contains("Matched"),
            "search: {probe}"
        );
        assert_eq!(f["unzoom"], true, "zoom: {probe}");
    }
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    let requests = page_requests(&net_log);
    assert!(requests.is_empty(), "the page fetched {requests:?}");

    // Drawn again from the saved JSON: the same page.
    let again = dir.join("again.html");
    let out = loadgen_tests::run(&[
        "report",
        json_path.to_str().unwrap(),
        "--html",
        again.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&again).unwrap(),
        page,
        "the JSON holds the whole page"
    );
    let _ = std::fs::remove_dir_all(dir);
}
