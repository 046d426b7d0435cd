//! `compare --h3`: HTTP/3 against Caddy (nginx-light has none), whose
//! process is pinned to the server CPU: loadgen `--http3`, loadgen
//! `--http2` over TLS (the issue's "no more than 3× loadgen's own HTTP/2
//! with TLS") and, when installed, oha over HTTP/3 and HTTP/2 (`cargo
//! install oha --features http3`; its `-p` is the streams per
//! connection). Alternating, client CPU per request from rusage.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use loadgen_tests::caddy::Caddy;
use loadgen_tests::pki::Pki;

use super::{Opts, Sample, run_loadgen, timed, uname_r, which};

enum Client {
    Loadgen(Vec<String>),
    Oha(&'static str),
}

pub(super) fn main(o: &Opts, loadgen: &Path) -> anyhow::Result<()> {
    let pki = Pki::new().map_err(anyhow::Error::msg)?;
    let caddy = Caddy::start(&pki).context("caddy is needed: apt-get install caddy")?;
    // Every thread of the Go process, on the server CPU.
    let pinned = Command::new("taskset")
        .args(["-a", "-p", "-c"])
        .arg(o.server_cpu.to_string())
        .arg(caddy.pid().to_string())
        .output()?;
    anyhow::ensure!(pinned.status.success(), "taskset -a -p failed on Caddy");
    let url = caddy.url("/");
    let ca = pki.ca.display().to_string();
    let with = |flag: &str| vec!["--cacert".to_string(), ca.clone(), flag.to_string()];
    let mut clients: Vec<(&str, Client)> = vec![
        ("loadgen-h3", Client::Loadgen(with("--http3"))),
        ("loadgen-h2", Client::Loadgen(with("--http2"))),
    ];
    let oha = which("oha").or_else(|| {
        let p = PathBuf::from(std::env::var("HOME").ok()?).join(".cargo/bin/oha");
        p.exists().then_some(p)
    });
    match &oha {
        Some(_) => {
            clients.push(("oha-h3", Client::Oha("3")));
            clients.push(("oha-h2", Client::Oha("2")));
        }
        None => println!("# oha not found (cargo install oha --features http3): loadgen only"),
    }
    println!(
        "# Caddy 2.6 pinned to CPU {}, client on CPU {}, {} connections, {} s, {} rounds, https://localhost (depth = streams per connection)",
        o.server_cpu, o.client_cpu, o.connections, o.duration, o.rounds
    );
    println!("# kernel {}", uname_r());
    println!(
        "{:<6} {:>5} {:>14} {:>12} {:>14}",
        "depth", "round", "client", "req/s", "cpu µs/req"
    );
    let mut medians: Vec<(usize, &str, f64, f64)> = Vec::new();
    for &depth in &o.depths {
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); clients.len()];
        for round in 1..=o.rounds {
            for k in 0..clients.len() {
                let c = (k + round - 1) % clients.len();
                let s = match &clients[c].1 {
                    Client::Loadgen(args) => run_loadgen(loadgen, &url, o, depth, "uring", args)?,
                    Client::Oha(version) => {
                        let bin = oha.as_deref().context("oha")?;
                        run_oha(bin, &url, o, depth, version, &ca)?
                    }
                };
                println!(
                    "{:<6} {:>5} {:>14} {:>12.0} {:>14.2}",
                    depth, round, clients[c].0, s.rps, s.cpu_us_per_req
                );
                samples[c].push(s);
            }
        }
        for (c, v) in samples.iter().enumerate() {
            let med =
                |f: fn(&Sample) -> f64| crate::args::median(&v.iter().map(f).collect::<Vec<_>>());
            medians.push((
                depth,
                clients[c].0,
                med(|s| s.rps),
                med(|s| s.cpu_us_per_req),
            ));
        }
    }
    println!("\n# medians; ratios of client CPU per request");
    println!(
        "{:<6} {:>14} {:>12} {:>14} {:>14} {:>14}",
        "depth", "client", "req/s", "cpu µs/req", "/ loadgen-h2", "/ oha-h3"
    );
    for group in medians.chunks(clients.len()) {
        let of = |name: &str| group.iter().find(|m| m.1 == name).map(|m| m.3);
        for (depth, client, rps, cpu) in group {
            println!(
                "{:<6} {:>14} {:>12.0} {:>14.2} {:>14.3} {:>14.3}",
                depth,
                client,
                rps,
                cpu,
                cpu / of("loadgen-h2").unwrap_or(f64::NAN),
                cpu / of("oha-h3").unwrap_or(f64::NAN)
            );
        }
    }
    Ok(())
}

/// oha for `o.duration` seconds, `-p depth` streams per connection, its
/// JSON summary's successful (200) responses as the count.
fn run_oha(
    bin: &Path,
    url: &str,
    o: &Opts,
    depth: usize,
    version: &str,
    ca: &str,
) -> anyhow::Result<Sample> {
    let (out, cpu) = timed(
        Command::new("taskset")
            .arg("-c")
            .arg(o.client_cpu.to_string())
            .arg(bin)
            .arg("-z")
            .arg(format!("{}s", o.duration))
            .arg("-c")
            .arg(o.connections.to_string())
            .arg("-p")
            .arg(depth.to_string())
            .args(["--http-version", version, "--cacert", ca])
            .args(["--no-tui", "--output-format", "json"])
            .arg(url),
    )?;
    let v: serde_json::Value = serde_json::from_str(&out).context("oha printed no JSON summary")?;
    let ok = v["statusCodeDistribution"]["200"]
        .as_f64()
        .context("no 200 responses in oha's summary")?;
    Ok(Sample {
        rps: ok / o.duration.max(1) as f64,
        cpu_us_per_req: cpu * 1e6 / ok.max(1.0),
    })
}
