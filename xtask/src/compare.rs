//! Peer comparison: the same nginx, the same pinned client CPU, alternating
//! loadgen and wrk, several rounds. Prints requests/s and client CPU
//! (user+sys from rusage) per completed request, and their ratios.
//!
//! `--templated` compares request generation instead of engines: a fixed
//! URL, `/items/{{rand:1:100000}}`, and a weighted scenario with a feed and
//! JWTs, against wrk with a fixed URL and with the equivalent Lua
//! `request()` function.
//!
//! `--tls` runs the engine comparison over https (nginx with a test CA,
//! TLS 1.3, keep-alive), with h2load (`--h1`) as a third peer.
//!
//! `--h2` compares HTTP/2 (h2c; with `--tls`, ALPN h2): loadgen with
//! `--http2 --streams D` against h2load with `-m D`, the depths being
//! streams per connection; h2load is the reference (wrk has no HTTP/2).
//!
//! `--h3` compares HTTP/3 against Caddy instead (`compare/h3.rs`).

mod h3;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use loadgen_tests::nginx::{Nginx, NginxOptions, NginxTls};
use loadgen_tests::pki::Pki;

struct Opts {
    rounds: usize,
    duration: u64,
    connections: usize,
    depths: Vec<usize>,
    server_cpu: usize,
    client_cpu: usize,
    templated: bool,
    tls: bool,
    h2: bool,
    h3: bool,
    /// `--also NAME=BINARY`: another loadgen build as one more client.
    also: Vec<(String, PathBuf)>,
}

/// One client configuration in a comparison.
enum Client {
    /// loadgen with these extra arguments and this path.
    Loadgen {
        engine: &'static str,
        args: Vec<String>,
        path: &'static str,
        /// A binary other than the one built here.
        bin: Option<PathBuf>,
    },
    /// wrk with this path and a Lua script rendered for the depth: a
    /// pipelining script only when depth > 1, a generating one always.
    Wrk {
        path: &'static str,
        script: fn(usize) -> String,
        generates: bool,
    },
    /// h2load: HTTP/1.1 (`--h1`) pipelining with `-m`, or with `--h2`
    /// HTTP/2 with `-m` streams per connection.
    H2load,
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
        templated: false,
        tls: false,
        h2: false,
        h3: false,
        also: Vec::new(),
    };
    let mut a = crate::args::Args::new(args);
    while let Some(flag) = a.flag() {
        match flag {
            "--rounds" => o.rounds = a.value(flag)?,
            "--duration" => o.duration = a.value(flag)?,
            "--connections" => o.connections = a.value(flag)?,
            "--depths" => o.depths = a.list(flag)?,
            "--server-cpu" => o.server_cpu = a.value(flag)?,
            "--client-cpu" => o.client_cpu = a.value(flag)?,
            "--templated" => o.templated = true,
            "--tls" => o.tls = true,
            "--h2" => o.h2 = true,
            "--h3" => o.h3 = true,
            "--also" => {
                let v = a.string(flag)?;
                let (name, bin) = v
                    .split_once('=')
                    .context("--also wants NAME=BINARY, e.g. --also before=/tmp/old/loadgen")?;
                o.also.push((name.to_string(), PathBuf::from(bin)));
            }
            other => return Err(crate::args::unknown(other)),
        }
    }
    let loadgen = crate::build_loadgen()?;
    if o.h3 {
        return h3::main(&o, &loadgen);
    }
    let wrk = match which("wrk") {
        Some(w) => w,
        None if o.h2 => PathBuf::new(),
        None => bail!("wrk not found: apt-get install wrk"),
    };
    let pki = if o.tls {
        Some(Pki::new().map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    let nginx = Nginx::start_with(&NginxOptions {
        cpu: o.server_cpu,
        tls: pki.as_ref().map(|p| NginxTls {
            cert: &p.server_cert,
            key: &p.server_key,
            client_ca: None,
        }),
        http2: o.h2,
        ..NginxOptions::default()
    })
    .map_err(anyhow::Error::msg)?;
    let base = match &pki {
        Some(_) => format!("https://localhost:{}", nginx.port),
        None => format!("http://127.0.0.1:{}", nginx.port),
    };
    let mut tls_args: Vec<String> = match &pki {
        Some(p) => vec!["--cacert".into(), p.ca.display().to_string()],
        None => vec![],
    };
    if o.h2 {
        tls_args.push("--http2".into());
    }
    let script = std::env::temp_dir().join("loadgen-wrk-compare.lua");
    let clients = if o.templated {
        templated_clients()?
    } else {
        let mut c: Vec<(&str, Client)> = vec![
            (
                "loadgen",
                Client::Loadgen {
                    engine: "uring",
                    args: tls_args.clone(),
                    path: "/",
                    bin: None,
                },
            ),
            (
                "glommio",
                Client::Loadgen {
                    engine: "glommio",
                    args: tls_args.clone(),
                    path: "/",
                    bin: None,
                },
            ),
        ];
        if !o.h2 {
            c.push((
                "wrk",
                Client::Wrk {
                    path: "/",
                    script: wrk_pipeline_script,
                    generates: false,
                },
            ));
        }
        if o.tls || o.h2 {
            c.push(("h2load", Client::H2load));
        }
        for (name, bin) in &o.also {
            let name: &'static str = Box::leak(name.clone().into_boxed_str());
            c.push((
                name,
                Client::Loadgen {
                    engine: "uring",
                    args: tls_args.clone(),
                    path: "/",
                    bin: Some(bin.clone()),
                },
            ));
        }
        c
    };
    let h2load = which("h2load");
    if (o.tls || o.h2) && h2load.is_none() {
        bail!("h2load not found: apt-get install nghttp2-client");
    }

    println!(
        "# nginx 1 worker on CPU {}, client on CPU {}, {} connections, {} s, {} rounds{}{}",
        o.server_cpu,
        o.client_cpu,
        o.connections,
        o.duration,
        o.rounds,
        if o.tls { ", https (TLS 1.3)" } else { "" },
        if o.h2 {
            ", HTTP/2 (depth = streams per connection)"
        } else {
            ""
        }
    );
    println!("# kernel {}", uname_r());
    println!(
        "{:<6} {:>5} {:>14} {:>12} {:>14}",
        "depth", "round", "client", "req/s", "cpu µs/req"
    );
    let mut results: Vec<(usize, &str, Vec<Sample>)> = Vec::new();
    for &depth in &o.depths {
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); clients.len()];
        for round in 1..=o.rounds {
            // Rotate which client goes first so drift hits all equally.
            for k in 0..clients.len() {
                let c = (k + round - 1) % clients.len();
                let s = match &clients[c].1 {
                    Client::Loadgen {
                        engine,
                        args,
                        path,
                        bin,
                    } => run_loadgen(
                        bin.as_deref().unwrap_or(&loadgen),
                        &format!("{base}{path}"),
                        &o,
                        depth,
                        engine,
                        args,
                    )?,
                    Client::Wrk {
                        path,
                        script: lua,
                        generates,
                    } => {
                        let lua = if depth > 1 || *generates {
                            std::fs::write(&script, lua(depth))?;
                            Some(script.as_path())
                        } else {
                            None
                        };
                        run_wrk(&wrk, &format!("{base}{path}"), &o, lua)?
                    }
                    Client::H2load => {
                        let bin = h2load.as_deref().context("h2load")?;
                        run_h2load(bin, &format!("{base}/"), &o, depth)?
                    }
                };
                println!(
                    "{:<6} {:>5} {:>14} {:>12.0} {:>14.2}",
                    depth, round, clients[c].0, s.rps, s.cpu_us_per_req
                );
                samples[c].push(s);
            }
        }
        for (c, v) in samples.into_iter().enumerate() {
            results.push((depth, clients[c].0, v));
        }
    }
    // wrk where it runs; h2load for HTTP/2.
    let reference = clients
        .iter()
        .position(|c| {
            matches!(
                c.1,
                Client::Wrk {
                    generates: false,
                    ..
                }
            ) || (o.h2 && matches!(c.1, Client::H2load))
        })
        .unwrap_or(0);
    println!(
        "\n# medians; ratio = client CPU per request / {}'s",
        clients[reference].0
    );
    println!(
        "{:<6} {:>14} {:>12} {:>14} {:>10}",
        "depth", "client", "req/s", "cpu µs/req", "cpu ratio"
    );
    for group in results.chunks(clients.len()) {
        let med = |v: &[Sample], f: fn(&Sample) -> f64| {
            crate::args::median(&v.iter().map(f).collect::<Vec<_>>())
        };
        let ref_cpu = med(&group[reference].2, |s| s.cpu_us_per_req);
        for (depth, client, v) in group {
            let cpu = med(v, |s| s.cpu_us_per_req);
            println!(
                "{:<6} {:>14} {:>12.0} {:>14.2} {:>10.3}",
                depth,
                client,
                med(v, |s| s.rps),
                cpu,
                cpu / ref_cpu
            );
        }
    }
    Ok(())
}

/// `--templated`: fixed and templated requests from both tools. The
/// scenario mixes three weighted templated requests, a CSV feed and a JWT
/// per connection.
fn templated_clients() -> anyhow::Result<Vec<(&'static str, Client)>> {
    let dir = std::env::temp_dir().join("loadgen-compare-templated");
    std::fs::create_dir_all(&dir)?;
    let feed = dir.join("users.csv");
    let mut users = String::from("id,name\n");
    for i in 1..=1000 {
        users.push_str(&format!("{i},user{i}\n"));
    }
    std::fs::write(&feed, users)?;
    let scenario = dir.join("mix.toml");
    std::fs::write(
        &scenario,
        r#"[[request]]
name = "item"
url = "/items/{{rand:1:100000}}"
weight = 8

[[request]]
name = "user"
url = "/users/{{feed:users.id}}"
headers = ["X-User: {{feed:users.name}}"]
weight = 1

[[request]]
name = "search"
url = "/search?q={{uuid}}&seq={{seq}}"
weight = 1
"#,
    )?;
    // The same mix with every value written out (and a token-sized
    // literal Authorization header): separates what generating costs from
    // what longer, varied requests cost the kernel and the server.
    let token = format!("Authorization: Bearer {}", "x".repeat(150));
    let static_mix = dir.join("static-mix.toml");
    std::fs::write(
        &static_mix,
        format!(
            r#"[[request]]
name = "item"
url = "/items/54321"
headers = ["{token}"]
weight = 8

[[request]]
name = "user"
url = "/users/500"
headers = ["X-User: user500", "{token}"]
weight = 1

[[request]]
name = "search"
url = "/search?q=0b4f7c1e-9a3d-4e2b-8c5f-6d7e8f9a0b1c&seq=1234567"
headers = ["{token}"]
weight = 1
"#
        ),
    )?;
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Ok(vec![
        (
            "lg-fixed",
            Client::Loadgen {
                engine: "uring",
                args: vec![],
                path: "/items/42",
                bin: None,
            },
        ),
        (
            "lg-rand",
            Client::Loadgen {
                engine: "uring",
                args: vec![],
                path: "/items/{{rand:1:100000}}",
                bin: None,
            },
        ),
        (
            "lg-static-mix",
            Client::Loadgen {
                engine: "uring",
                args: s(&["--scenario", &static_mix.to_string_lossy()]),
                path: "/",
                bin: None,
            },
        ),
        (
            "lg-scenario",
            Client::Loadgen {
                engine: "uring",
                args: s(&[
                    "--scenario",
                    &scenario.to_string_lossy(),
                    "--feed",
                    &format!("users={}", feed.display()),
                    "--jwt-secret",
                    "benchmark-secret",
                    "--jwt-claims",
                    r#"{"sub":"{{feed:users.name}}"}"#,
                ]),
                path: "/",
                bin: None,
            },
        ),
        (
            "wrk-fixed",
            Client::Wrk {
                path: "/items/42",
                script: wrk_pipeline_script,
                generates: false,
            },
        ),
        (
            "wrk-lua-rand",
            Client::Wrk {
                path: "/",
                script: wrk_random_script,
                generates: true,
            },
        ),
    ])
}

/// wrk's documented way to vary requests: a Lua `request()` returning
/// `depth` freshly formatted requests per call.
fn wrk_random_script(depth: usize) -> String {
    format!(
        "math.randomseed(os.time())\nrequest = function()\n  local r = {{}}\n  for i = 1, {depth} do\n    r[i] = wrk.format(nil, \"/items/\" .. math.random(1, 100000))\n  end\n  return table.concat(r)\nend\n"
    )
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
    extra: &[String],
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
            .arg(if o.h2 || o.h3 {
                "--streams"
            } else {
                "--pipeline"
            })
            .arg(depth.to_string())
            .args(["--engine", engine])
            .args(["--json", "-"])
            .args(extra)
            .arg(url)
            .stderr(Stdio::null()),
    )?;
    let v: serde_like::Doc = serde_like::parse(&out)?;
    Ok(Sample {
        rps: v.rps,
        cpu_us_per_req: cpu * 1e6 / v.requests.max(1.0),
    })
}

fn run_wrk(bin: &Path, url: &str, o: &Opts, script: Option<&Path>) -> anyhow::Result<Sample> {
    let mut cmd = Command::new("taskset");
    cmd.arg("-c")
        .arg(o.client_cpu.to_string())
        .arg(bin)
        .args(["-t1", "-c"])
        .arg(o.connections.to_string())
        .arg("-d")
        .arg(format!("{}s", o.duration));
    if let Some(script) = script {
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

fn run_h2load(bin: &Path, url: &str, o: &Opts, depth: usize) -> anyhow::Result<Sample> {
    let (out, cpu) = timed(
        Command::new("taskset")
            .arg("-c")
            .arg(o.client_cpu.to_string())
            .arg(bin)
            .args(if o.h2 {
                &["-t1", "-c"][..]
            } else {
                &["--h1", "-t1", "-c"]
            })
            .arg(o.connections.to_string())
            .arg("-m")
            .arg(depth.to_string())
            .arg("-D")
            .arg(o.duration.to_string())
            .arg(url),
    )?;
    // "requests: 100 total, 100 started, 100 done, 100 succeeded, …"
    let succeeded: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("requests: "))
        .and_then(|l| l.split(", ").find_map(|f| f.strip_suffix(" succeeded")))
        .context("no 'requests:' line in h2load's output")?
        .trim()
        .parse()?;
    Ok(Sample {
        rps: succeeded / o.duration.max(1) as f64,
        cpu_us_per_req: cpu * 1e6 / succeeded.max(1.0),
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
