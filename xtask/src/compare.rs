//! Peer comparison: the same nginx, the same pinned client CPU, alternating
//! loadgen and wrk, several rounds. Prints requests/s and client CPU
//! (user+sys from rusage) per completed request, and their ratios.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use loadgen_tests::nginx::Nginx;

struct Opts {
    rounds: usize,
    duration: u64,
    connections: usize,
    depths: Vec<usize>,
    server_cpu: usize,
    client_cpu: usize,
}

#[derive(Clone, Copy)]
struct Sample {
    rps: f64,
    cpu_us_per_req: f64,
}

pub fn main(args: &[String]) -> anyhow::Result<()> {
    let mut o = Opts {
        rounds: 3,
        duration: 10,
        connections: 64,
        depths: vec![1, 16],
        server_cpu: 0,
        client_cpu: 1,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().context(format!("{a} needs a value"));
        match a.as_str() {
            "--rounds" => o.rounds = val()?.parse()?,
            "--duration" => o.duration = val()?.parse()?,
            "--connections" => o.connections = val()?.parse()?,
            "--depths" => {
                o.depths = val()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--server-cpu" => o.server_cpu = val()?.parse()?,
            "--client-cpu" => o.client_cpu = val()?.parse()?,
            other => bail!("unknown option {other:?}"),
        }
    }
    let loadgen = crate::build_loadgen()?;
    let wrk = which("wrk").context("wrk not found: apt-get install wrk")?;
    let nginx = Nginx::start(o.server_cpu).map_err(anyhow::Error::msg)?;
    let url = format!("http://127.0.0.1:{}/", nginx.port);
    let script = std::env::temp_dir().join("loadgen-wrk-pipeline.lua");

    println!(
        "# nginx 1 worker on CPU {}, client on CPU {}, {} connections, {} s, {} rounds",
        o.server_cpu, o.client_cpu, o.connections, o.duration, o.rounds
    );
    println!("# kernel {}", uname_r());
    println!(
        "{:<6} {:>5} {:>8} {:>12} {:>14}",
        "depth", "round", "client", "req/s", "cpu µs/req"
    );
    const CLIENTS: [&str; 3] = ["loadgen", "glommio", "wrk"];
    let mut results: Vec<(usize, &str, Vec<Sample>)> = Vec::new();
    for &depth in &o.depths {
        std::fs::write(&script, wrk_pipeline_script(depth))?;
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); CLIENTS.len()];
        for round in 1..=o.rounds {
            // Rotate which client goes first so drift hits all equally.
            for k in 0..CLIENTS.len() {
                let c = (k + round - 1) % CLIENTS.len();
                let s = match CLIENTS[c] {
                    "loadgen" => run_loadgen(&loadgen, &url, &o, depth, "uring")?,
                    "glommio" => run_loadgen(&loadgen, &url, &o, depth, "glommio")?,
                    _ => run_wrk(&wrk, &url, &o, depth, &script)?,
                };
                println!(
                    "{:<6} {:>5} {:>8} {:>12.0} {:>14.2}",
                    depth, round, CLIENTS[c], s.rps, s.cpu_us_per_req
                );
                samples[c].push(s);
            }
        }
        for (c, v) in samples.into_iter().enumerate() {
            results.push((depth, CLIENTS[c], v));
        }
    }
    println!("\n# medians (loadgen = the io_uring engine, glommio = --engine glommio)");
    println!(
        "{:<6} {:>8} {:>12} {:>14} {:>20}",
        "depth", "client", "req/s", "cpu µs/req", "cpu ratio vs wrk"
    );
    for group in results.chunks(CLIENTS.len()) {
        let med = |v: &[Sample], f: fn(&Sample) -> f64| median(v.iter().map(f).collect());
        let wrk_cpu = med(&group[CLIENTS.len() - 1].2, |s| s.cpu_us_per_req);
        for (depth, client, v) in group {
            let cpu = med(v, |s| s.cpu_us_per_req);
            println!(
                "{:<6} {:>8} {:>12.0} {:>14.2} {:>20.3}",
                depth,
                client,
                med(v, |s| s.rps),
                cpu,
                cpu / wrk_cpu
            );
        }
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn wrk_pipeline_script(depth: usize) -> String {
    // wrk's own pipelining idiom (scripts/pipeline.lua): one write of
    // `depth` requests, responses counted one by one.
    format!(
        "init = function(args)\n  local r = {{}}\n  for i = 1, {depth} do r[i] = wrk.format() end\n  req = table.concat(r)\nend\nrequest = function() return req end\n"
    )
}

/// Runs a command pinned to the client CPU; returns its stdout and the
/// user+sys CPU seconds it used.
fn timed(cmd: &mut Command) -> anyhow::Result<(String, f64)> {
    let before = children_cpu();
    let out = cmd.output()?;
    let cpu = children_cpu() - before;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", out.status);
    }
    Ok((String::from_utf8_lossy(&out.stdout).into_owned(), cpu))
}

fn children_cpu() -> f64 {
    // SAFETY: rusage is plain data, filled by the kernel.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a live rusage.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn run_loadgen(
    bin: &Path,
    url: &str,
    o: &Opts,
    depth: usize,
    engine: &str,
) -> anyhow::Result<Sample> {
    let (out, cpu) = timed(
        Command::new("taskset")
            .arg("-c")
            .arg(o.client_cpu.to_string())
            .arg(bin)
            .args(["-t1", "-c"])
            .arg(o.connections.to_string())
            .arg("-d")
            .arg(format!("{}s", o.duration))
            .arg("--pipeline")
            .arg(depth.to_string())
            .args(["--engine", engine])
            .args(["--json", "-"])
            .arg(url)
            .stderr(Stdio::null()),
    )?;
    let v: serde_like::Doc = serde_like::parse(&out)?;
    Ok(Sample {
        rps: v.rps,
        cpu_us_per_req: cpu * 1e6 / v.requests.max(1.0),
    })
}

fn run_wrk(bin: &Path, url: &str, o: &Opts, depth: usize, script: &Path) -> anyhow::Result<Sample> {
    let mut cmd = Command::new("taskset");
    cmd.arg("-c")
        .arg(o.client_cpu.to_string())
        .arg(bin)
        .args(["-t1", "-c"])
        .arg(o.connections.to_string())
        .arg("-d")
        .arg(format!("{}s", o.duration));
    if depth > 1 {
        cmd.arg("-s").arg(script);
    }
    let (out, cpu) = timed(cmd.arg(url))?;
    let requests: f64 = out
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .map(|(n, _)| n.trim().to_string())
        })
        .context("no 'requests in' line in wrk's output")?
        .parse()?;
    let rps: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .context("no Requests/sec in wrk's output")?
        .trim()
        .parse()?;
    Ok(Sample {
        rps,
        cpu_us_per_req: cpu * 1e6 / requests.max(1.0),
    })
}

/// Just the two numbers we need from loadgen's JSON, without pulling a
/// JSON parser into xtask.
mod serde_like {
    pub struct Doc {
        pub rps: f64,
        pub requests: f64,
    }

    fn field(s: &str, name: &str) -> anyhow::Result<f64> {
        let key = format!("\"{name}\":");
        let at = s
            .find(&key)
            .ok_or_else(|| anyhow::anyhow!("no {name} in loadgen's JSON"))?;
        let rest = s[at + key.len()..].trim_start();
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == '-' || c == '+'))
            .unwrap_or(rest.len());
        Ok(rest[..end].parse()?)
    }

    pub fn parse(s: &str) -> anyhow::Result<Doc> {
        Ok(Doc {
            rps: field(s, "rps")?,
            requests: field(s, "requests")?,
        })
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

fn uname_r() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
