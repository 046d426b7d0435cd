//! From flags to a validated run: the one place where loadgen reads the
//! files a run names (bodies, scenarios, feeds), resolves the host, looks up
//! the CPUs, probes the kernel for `--engine auto`, and reads environment
//! overrides. Everything after this trusts the [`Validated`] config.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use loadgen::config::{Config, ConfigError, Engine, Load, RingMode, RunInputs, Validated};
use loadgen::engine::{FORCE_NO_DEFER_TASKRUN, auto_engine};
use loadgen::fleet::{Part, PartError, StartAtError, check_start_at};
use loadgen::http::{RequestError, RequestSpec};
use loadgen::peer::{MAX_UNIX_PATH, Peer};
use loadgen::scenario::{self, Entry, Feed, FeedError, Options, Scenario, fresh_seed};
use loadgen::schedule::{Schedule, ScheduleError};
use loadgen::threshold::Threshold;
use loadgen::tls::{self, TlsError, TlsInputs, TlsSettings, TlsVersion};
use loadgen::url::{Url, UrlError};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::cli::{EngineFlag, RunArgs};
use super::{output, usage};

/// `LOADGEN_RING_MODE=coop|plain` lowers the io_uring setup mode, to
/// exercise the fallbacks.
pub const RING_MODE_ENV: &str = "LOADGEN_RING_MODE";

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("missing URL: try `loadgen -c64 -d10s http://127.0.0.1:8080/`")]
    MissingUrl,
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Scenario(#[from] scenario::ScenarioError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error("cannot read --body-file {0}: {1}")]
    BodyFile(PathBuf, std::io::Error),
    #[error(
        "Lua scripts (-s) are not supported: use templates ({{{{seq}}}}, {{{{rand:1:100}}}}, {{{{feed:NAME}}}}…) in the URL, -H and -b, or --scenario FILE (see README)"
    )]
    Script,
    #[error(transparent)]
    Feed(#[from] FeedError),
    #[error(transparent)]
    ScenarioFile(#[from] scenario::FileError),
    #[error("{0} applies to a single request; with --scenario set it per request in the file")]
    ScenarioFlag(&'static str),
    #[error("cannot read {0} {1}: {2}")]
    TlsFile(&'static str, PathBuf, std::io::Error),
    #[error("{0} {1} holds no {2} in PEM form")]
    Pem(&'static str, PathBuf, &'static str),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Part(#[from] PartError),
    #[error(transparent)]
    StartAt(#[from] StartAtError),
    #[error(
        "--bind {0}: this host cannot send from that address ({1}); give addresses of this host's interfaces (ip -brief address)"
    )]
    Bind(IpAddr, std::io::Error),
    #[error(
        "--request-log needs a file: stdout carries the summary (give a path, e.g. requests.tsv)"
    )]
    RequestLogStdout,
    #[error("cannot write --request-log {}: {error}", path.display())]
    RequestLog {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("--unix-socket {}: {why}", path.display())]
    UnixSocket { path: PathBuf, why: String },
    #[error(
        "--start-at starts one run at one instant, so --runs must be 1: run the fleet again with a new --start-at"
    )]
    StartAtRuns,
    #[error("--streams is HTTP/2's and HTTP/3's: add --http2 or --http3 (or --grpc)")]
    StreamsWithoutHttp2,
    #[error("--expect-status: {0}")]
    ExpectStatus(String),
    #[error(transparent)]
    Grpc(#[from] super::grpc::GrpcSetupError),
    #[error(
        "--server-metrics compares the server's count with this process's, but with --part {0} the server also counts the other parts: check one process alone"
    )]
    FleetServerMetrics(Part),
}

/// The environment variable a Kubernetes Indexed Job sets in each pod: its
/// 0-based index (`--part auto/N`).
pub const JOB_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// With `--start-at`, the warm-up unless `--warmup` says otherwise: time
/// to connect (and handshake) before the measured window opens.
pub const START_AT_WARMUP: Duration = Duration::from_secs(1);

/// Builds and validates the run `args` describe.
pub fn run_config(args: &RunArgs) -> Result<Validated, SetupError> {
    if args.script.is_some() {
        return Err(SetupError::Script);
    }
    let (url, mut entries) = requests(args)?;
    if let Some(call) = &args.grpc {
        entries = vec![super::grpc::single(args, call, &url)?];
    }
    let calls = entries.iter().filter(|e| e.grpc.is_some()).count();
    if calls > 0 && args.http3 {
        // Config::validate refuses it too; here before reflection asks the
        // server anything.
        return Err(ConfigError::GrpcWithHttp3.into());
    }
    // gRPC calls go over HTTP/2, and so do the plain requests beside them.
    let http2 = args.speaks_http2() || calls > 0;
    if args.streams.is_some() && !http2 && !args.http3 {
        return Err(SetupError::StreamsWithoutHttp2);
    }
    if calls == 0 && (!args.proto.is_empty() || args.protoset.is_some()) {
        return Err(super::grpc::GrpcSetupError::SchemaWithoutCalls.into());
    }
    let (expect_status, grpc) = expect_status(args, calls, entries.len() - calls)?;
    let load = match (&args.rate, &args.stages) {
        (Some(r), _) => Load::Rate(Schedule::parse_rate(r)?),
        (None, Some(spec)) => Load::Stages(Schedule::parse(spec)?),
        (None, None) => Load::Closed,
    };
    let tls = tls_settings(args, &url)?;
    let peer = match &args.unix_socket {
        // The URL's host is only the Host header: nothing resolves it.
        Some(path) => {
            check_unix_socket(path)?;
            Peer::Unix(path.clone())
        }
        None => Peer::Tcp(url.resolve()?),
    };
    // A gRPC call's message may need the server (reflection): made once
    // the server is known.
    let messages = if calls > 0 {
        let mut metadata = Vec::new();
        for h in &args.headers {
            metadata.push(RequestSpec::parse_header(h)?);
        }
        let reach = super::grpc::Reach {
            peer: &peer,
            tls: tls.as_ref(),
            timeout: args.timeout,
        };
        super::grpc::prepare(args, &mut entries, &url, &metadata, &reach)?
    } else {
        Vec::new()
    };
    let mut scenario = compile_scenario(args, entries)?;
    super::grpc::attach(&mut scenario, messages)?;
    let part = fleet_part(args)?;
    let bind = args.bind.as_ref().map(|b| b.0.clone()).unwrap_or_default();
    // The family is checked with the config; a bad address of the right
    // family is found here, once, before anything connects.
    if let Some(addr) = peer.tcp() {
        for &ip in bind.iter().filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
            loadgen::sys::sock::check_source(ip).map_err(|e| SetupError::Bind(ip, e))?;
        }
    }
    if args.request_log.as_deref() == Some(Path::new("-")) {
        return Err(SetupError::RequestLogStdout);
    }
    let cfg = Config::from_inputs(RunInputs {
        url,
        peer,
        scenario,
        scenario_file: args.scenario.clone(),
        connections: args.connections,
        threads: args.threads,
        duration: args.duration,
        requests: args.requests,
        load,
        warmup: args.warmup.unwrap_or(if args.start_at.is_some() {
            START_AT_WARMUP
        } else {
            Duration::ZERO
        }),
        pipeline: args.pipeline,
        http2: http2.then(|| loadgen::http::h2::Settings {
            streams: args.streams.unwrap_or(1),
            stream_window: (1u32 << args.h2_window) - 1,
            conn_window: (1u32 << args.h2_conn_window) - 1,
            max_header_list: args.max_header_bytes as u32,
        }),
        timeout: args.timeout,
        batch_wait: args.batch_wait,
        max_header_bytes: args.max_header_bytes,
        pin: !args.no_pin,
        allowed_cpus: loadgen::sys::allowed_cpus(),
        expect_status,
        engine: engine(args.engine),
        ring_best: match std::env::var(RING_MODE_ENV).as_deref() {
            Ok("coop") => RingMode::CoopTaskrun,
            Ok("plain") => RingMode::Plain,
            _ => RingMode::DeferTaskrun,
        },
        tls,
        keepalive: !args.no_keepalive,
        part,
        start_at: args.start_at,
        bind,
        http3: args.http3.then(|| args.streams.unwrap_or(1)),
        grpc,
        request_log: args
            .request_log
            .as_ref()
            .map(|path| loadgen::config::RequestLogSpec {
                path: path.clone(),
                sample: args.request_log_sample,
            }),
    })?;
    if let Some(spec) = &cfg.request_log {
        create_request_log(&spec.path, &cfg)?;
    }
    if let (Some(_), Some(t)) = (cfg.http3, &cfg.tls) {
        // TLS 1.3 with QUIC's initial suite (--tls-version, --ciphers).
        t.for_shard_quic()?;
    }
    Ok(cfg)
}

/// `--expect-status`: HTTP statuses, or with gRPC calls their statuses by
/// name (numbers allowed when every request is a call). A scenario of
/// both kinds needs both, each applied to its own kind of request.
fn expect_status(
    args: &RunArgs,
    calls: usize,
    plain: usize,
) -> Result<(Vec<u16>, Option<loadgen::grpc::GrpcRun>), SetupError> {
    use loadgen::grpc::{GrpcRun, status};
    let Some(list) = &args.expect_status else {
        return Ok((Vec::new(), (calls > 0).then(GrpcRun::default)));
    };
    if calls == 0 {
        let http = super::cli::status_list(list).map_err(SetupError::ExpectStatus)?;
        return Ok((http.0, None));
    }
    if plain == 0 {
        let expect = status::parse_list(list).map_err(SetupError::ExpectStatus)?;
        return Ok((Vec::new(), Some(GrpcRun { expect })));
    }
    let (names, http): (Vec<&str>, Vec<&str>) = list
        .split(',')
        .partition(|p| status::by_name(p).is_some() && p.trim().parse::<u16>().is_err());
    if names.is_empty() || http.is_empty() {
        return Err(SetupError::ExpectStatus(format!(
            "{list:?}: the scenario has gRPC calls and HTTP requests; give statuses for both, e.g. OK,2xx"
        )));
    }
    let expect = status::parse_list(&names.join(",")).map_err(SetupError::ExpectStatus)?;
    let http = super::cli::status_list(&http.join(",")).map_err(SetupError::ExpectStatus)?;
    Ok((http.0, Some(GrpcRun { expect })))
}

/// Makes `--request-log`'s file (emptied if it exists) with its header,
/// so a path that cannot be written fails here, before the run; the
/// shards append the lines.
fn create_request_log(path: &Path, cfg: &Config) -> Result<(), SetupError> {
    let header = loadgen::shard::request_log_header(
        cfg.calls_grpc(),
        cfg.scenario.named,
        cfg.schedule.is_some(),
    );
    std::fs::write(path, header).map_err(|error| SetupError::RequestLog {
        path: path.to_path_buf(),
        error,
    })
}

/// `--unix-socket PATH` names a socket this process can reach: found
/// here, in one line, rather than as a run of connect errors.
fn check_unix_socket(path: &Path) -> Result<(), SetupError> {
    use std::os::unix::fs::FileTypeExt;
    let bad = |why: String| SetupError::UnixSocket {
        path: path.to_path_buf(),
        why,
    };
    if path.as_os_str().len() > MAX_UNIX_PATH {
        return Err(bad(format!(
            "the path is longer than a socket address holds ({MAX_UNIX_PATH} bytes); use a shorter one, e.g. a symlink to its directory"
        )));
    }
    let meta = std::fs::metadata(path).map_err(|e| {
        bad(match e.kind() {
            std::io::ErrorKind::NotFound => {
                "no such socket: start the server, or give the path it listens on".into()
            }
            _ => format!("{e}"),
        })
    })?;
    let kind = meta.file_type();
    if !kind.is_socket() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_file() {
            "a regular file"
        } else {
            "a FIFO or a device"
        };
        return Err(bad(format!(
            "{what}, not a socket: give the path the server listens on"
        )));
    }
    Ok(())
}

/// The requests (the URL's, or `--scenario`'s) with `-H`, the feeds,
/// the JWT and the seed, compiled.
fn compile_scenario(args: &RunArgs, mut entries: Vec<Entry>) -> Result<Scenario, SetupError> {
    let mut global = Vec::new();
    for h in &args.headers {
        global.push(RequestSpec::parse_header(h)?);
    }
    if args.no_keepalive {
        global.push(("Connection".into(), "close".into()));
    }
    scenario::add_global_headers(&mut entries, &global);
    let mut feeds: Vec<Feed> = Vec::new();
    for arg in &args.feeds {
        let f = Feed::from_arg(arg)?;
        if feeds.iter().any(|g| g.name == f.name) {
            return Err(FeedError::Duplicate(f.name).into());
        }
        feeds.push(f);
    }
    let scenario = Scenario::compile(
        entries,
        Options {
            feeds,
            jwt: args.jwt_secret.as_ref().map(|k| {
                (
                    k.clone().into_bytes(),
                    args.jwt_claims.clone(),
                    args.jwt_ttl.as_secs(),
                )
            }),
            seed: args.seed.unwrap_or_else(fresh_seed),
            named: args.scenario.is_some(),
            env: &|k| std::env::var(k).ok(),
        },
    )?;
    Ok(scenario)
}

/// `--part` (with `auto/N`, the index from the environment) and
/// `--start-at`, and what they rule out.
fn fleet_part(args: &RunArgs) -> Result<Part, SetupError> {
    let part = match args.part {
        Some(spec) => spec.resolve(std::env::var(JOB_INDEX_ENV).ok().as_deref())?,
        None => Part::default(),
    };
    if part.is_fleet() && args.server_metrics.is_some() {
        return Err(SetupError::FleetServerMetrics(part));
    }
    if let Some(at) = args.start_at {
        check_start_at(at, SystemTime::now())?;
        if args.runs > 1 {
            return Err(SetupError::StartAtRuns);
        }
    }
    Ok(part)
}

/// What a run and `find-max` both start from, found before anything is
/// sent: the flags as a validated config, the open-file limit raised for
/// it, the gates (`--threshold`, `--slo`) checked against it, and where
/// the text goes. Anything wrong is a usage error.
pub struct Prepared {
    pub cfg: Validated,
    pub out: Box<dyn Write>,
}

impl Prepared {
    pub fn new(args: &RunArgs, gates: &[Threshold]) -> anyhow::Result<Prepared> {
        let cfg = run_config(args).map_err(usage)?;
        raise_file_limit(&cfg).map_err(usage)?;
        for t in gates {
            t.check_inputs(cfg.expects_status(), cfg.grpc.is_some())
                .map_err(usage)?;
        }
        Ok(Prepared {
            cfg,
            out: output::text_out(args.json.as_deref()),
        })
    }
}

/// Open files a run needs: a socket per connection, and some to spare
/// (rings, the metrics endpoint, files written at the end).
pub fn files_needed(cfg: &Config) -> u64 {
    cfg.connections as u64 + 16 * cfg.shards as u64 + 256
}

/// Raises the open-file limit for the run (as far as this process may);
/// a limit still too low is one line rather than a run full of connect
/// errors.
pub fn raise_file_limit(cfg: &Config) -> Result<(), String> {
    let want = files_needed(cfg);
    match loadgen::sys::raise_file_limit(want) {
        Ok(have) if have >= want => Ok(()),
        Ok(have) => Err(format!(
            "-c {} needs about {want} open files, but the limit is {have} and this process may not raise it: raise it (ulimit -n {want}, or LimitNOFILE= in systemd), or lower -c",
            cfg.connections
        )),
        // Without getrlimit the run goes on; connects will say the rest.
        Err(_) => Ok(()),
    }
}

/// The TLS client config of an `https://` run: the system's roots, the
/// files the flags name, and the choices. TLS flags on `http://` are
/// refused rather than ignored.
fn tls_settings(args: &RunArgs, url: &Url) -> Result<Option<TlsSettings>, SetupError> {
    if !url.tls {
        for (given, flag) in [
            (!args.cacert.is_empty(), "--cacert"),
            (args.insecure, "-k/--insecure"),
            (args.cert.is_some(), "--cert"),
            (args.tls_version.is_some(), "--tls-version"),
            (args.ciphers.is_some(), "--ciphers"),
            (args.no_tls_resume, "--no-tls-resume"),
        ] {
            if given {
                return Err(ConfigError::TlsFlagOnHttp(flag).into());
            }
        }
        return Ok(None);
    }
    let system_roots = if args.insecure {
        Vec::new()
    } else {
        // Unreadable stores are skipped, as curl does; with none at all
        // and no --cacert the config says so.
        rustls_native_certs::load_native_certs().certs
    };
    let mut extra_roots = Vec::new();
    for path in &args.cacert {
        extra_roots.extend(read_certs("--cacert", path)?);
    }
    let client_auth = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => Some((read_certs("--cert", cert)?, read_key(key)?)),
        _ => None,
    };
    Ok(Some(tls::client_config(TlsInputs {
        host: url.host.clone(),
        system_roots,
        extra_roots,
        insecure: args.insecure,
        client_auth,
        version: args.tls_version.as_deref().map(|v| match v {
            "1.2" => TlsVersion::V1_2,
            _ => TlsVersion::V1_3,
        }),
        ciphers: args
            .ciphers
            .as_deref()
            .map(|l| {
                l.split([',', ':'])
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
        resume: !args.no_tls_resume,
        http2: args.speaks_http2(),
    })?))
}

fn read_certs(
    flag: &'static str,
    path: &PathBuf,
) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    let pem = std::fs::read(path).map_err(|e| SetupError::TlsFile(flag, path.clone(), e))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(SetupError::Pem(flag, path.clone(), "certificate"));
    }
    Ok(certs)
}

fn read_key(path: &PathBuf) -> Result<PrivateKeyDer<'static>, SetupError> {
    let pem = std::fs::read(path).map_err(|e| SetupError::TlsFile("--key", path.clone(), e))?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|_| SetupError::Pem("--key", path.clone(), "private key"))
}

/// The URL and the requests: from `--scenario FILE`, or the one request
/// the URL, `-m`, `-b` and `--body-file` describe.
fn requests(args: &RunArgs) -> Result<(Url, Vec<Entry>), SetupError> {
    if let Some(path) = &args.scenario {
        if args.grpc.is_some() {
            return Err(super::grpc::GrpcSetupError::Scenario.into());
        }
        for (given, flag) in [
            (args.method.is_some(), "-m/--method"),
            (args.body.is_some(), "-b/--body"),
            (args.body_file.is_some(), "--body-file"),
        ] {
            if given {
                return Err(SetupError::ScenarioFlag(flag));
            }
        }
        let base = args.url.as_deref().map(Url::parse).transpose()?;
        return Ok(scenario::load_file(path, base.as_ref())?);
    }
    let raw = args.url.as_deref().ok_or(SetupError::MissingUrl)?;
    let url = Url::parse(raw)?;
    if args.grpc.is_some() {
        // The call's request is built once the server is known.
        return Ok((url, Vec::new()));
    }
    let mut spec = RequestSpec::get(&url.host_header(), &url.target);
    spec.method = args.method.clone().unwrap_or_else(|| "GET".into());
    if let Some(b) = &args.body {
        spec.body = b.clone().into_bytes();
    }
    if let Some(path) = &args.body_file {
        spec.body = std::fs::read(path).map_err(|e| SetupError::BodyFile(path.clone(), e))?;
    }
    let name = format!("{} {}", spec.method, spec.target);
    Ok((
        url,
        vec![Entry {
            name,
            weight: 1,
            spec,
            grpc: None,
        }],
    ))
}

/// `--engine`; `auto` probes the kernel and says when it did not pick
/// io_uring.
fn engine(flag: EngineFlag) -> Engine {
    match flag {
        EngineFlag::Uring => Engine::Uring,
        EngineFlag::Glommio => Engine::Glommio,
        EngineFlag::Auto => {
            let forced = std::env::var_os(FORCE_NO_DEFER_TASKRUN).is_some_and(|v| v == "1");
            let (engine, why) = auto_engine(forced);
            if engine != Engine::Uring {
                eprintln!("loadgen: notice: using the {} engine: {why}", engine.name());
            }
            engine
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::cli::Cli;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Validated, SetupError> {
        let mut argv = vec!["loadgen"];
        argv.extend_from_slice(args);
        run_config(&Cli::try_parse_from(argv).unwrap().run)
    }

    #[test]
    fn wrk_style_flags() {
        let cfg = parse(&["-t1", "-c64", "-d5s", "--latency", "http://127.0.0.1:9/x"]).unwrap();
        assert_eq!(cfg.shards, 1);
        assert_eq!(cfg.connections, 64);
        assert_eq!(cfg.duration, Some(Duration::from_secs(5)));
        assert_eq!(cfg.requests, None);
        assert!(
            cfg.scenario
                .fixed_bytes()
                .unwrap()
                .starts_with(b"GET /x HTTP/1.1\r\nHost: 127.0.0.1:9\r\n")
        );
    }

    #[test]
    fn count_mode_and_request_options() {
        let cfg = parse(&[
            "-n",
            "1k",
            "-c",
            "4",
            "-t",
            "2",
            "-m",
            "POST",
            "-b",
            "abc",
            "-H",
            "X-A: 1",
            "--pipeline",
            "8",
            "http://127.0.0.1:9/",
        ])
        .unwrap();
        assert_eq!(cfg.requests, Some(1000));
        assert_eq!(cfg.duration, None);
        assert_eq!(cfg.pipeline, 8);
        let text = String::from_utf8(cfg.scenario.fixed_bytes().unwrap().to_vec()).unwrap();
        assert!(text.starts_with("POST / HTTP/1.1\r\n"));
        assert!(text.contains("X-A: 1\r\n"));
        assert!(text.ends_with("Content-Length: 3\r\n\r\nabc"));
    }

    #[test]
    fn bad_inputs_say_what_is_wrong() {
        assert!(matches!(parse(&[]), Err(SetupError::MissingUrl)));
        assert!(matches!(
            parse(&["ftp://127.0.0.1/"]),
            Err(SetupError::Url(UrlError::Scheme(_)))
        ));
        assert!(matches!(
            parse(&["-c", "0", "http://127.0.0.1:9/"]),
            Err(SetupError::Config(ConfigError::Connections(0)))
        ));
        assert!(matches!(
            parse(&["-t", "4", "-c", "2", "http://127.0.0.1:9/"]),
            Err(SetupError::Config(ConfigError::FewerConnectionsThanShards(
                2, 4
            )))
        ));
        assert!(matches!(
            parse(&["-d", "1s", "-n", "5", "http://127.0.0.1:9/"]),
            Err(SetupError::Config(ConfigError::DurationAndRequests))
        ));
        assert!(matches!(
            parse(&["--body-file", "/nonexistent/x", "http://127.0.0.1:9/"]),
            Err(SetupError::BodyFile(..))
        ));
        assert!(matches!(
            parse(&["-H", "bad", "http://127.0.0.1:9/"]),
            Err(SetupError::Request(_))
        ));
    }

    #[test]
    fn the_script_refusal_names_placeholders_as_written() {
        let e = parse(&["-s", "x.lua", "http://127.0.0.1:9/"]).unwrap_err();
        assert!(matches!(e, SetupError::Script));
        // It once suggested `{seq}`: placeholders are written `{{seq}}`.
        let text = e.to_string();
        assert!(text.contains("{{seq}}"), "{text}");
        assert!(text.contains("{{rand:1:100}}"), "{text}");
        assert!(text.contains("{{feed:NAME}}"), "{text}");
    }

    #[test]
    fn open_loop_flags() {
        let cfg = parse(&["-R", "2k", "-c4", "http://127.0.0.1:9/"]).unwrap();
        assert_eq!(cfg.schedule, Some(Schedule::constant(2000.0)));
        assert_eq!(cfg.duration, Some(Duration::from_secs(10)));
        let cfg = parse(&[
            "--stages",
            "2s:10,3s:10->20",
            "--warmup",
            "1s",
            "-c4",
            "http://127.0.0.1:9/",
        ])
        .unwrap();
        assert_eq!(cfg.duration, Some(Duration::from_secs(5)));
        assert_eq!(cfg.warmup, Duration::from_secs(1));
        for bad in ["0", "fast"] {
            assert!(matches!(
                parse(&["-R", bad, "http://127.0.0.1:9/"]),
                Err(SetupError::Schedule(ScheduleError::BadRate(_)))
            ));
        }
        // A ramp given to -R once ran a constant 1000 req/s without a word.
        let e = parse(&["-R", "1k->5k", "http://127.0.0.1:9/"]).unwrap_err();
        assert!(matches!(
            e,
            SetupError::Schedule(ScheduleError::RampInRate(_))
        ));
        assert!(e.to_string().contains("--stages"), "{e}");
        assert!(matches!(
            parse(&["--stages", "10s", "http://127.0.0.1:9/"]),
            Err(SetupError::Schedule(_))
        ));
    }

    #[test]
    fn expect_status_reaches_the_config() {
        let cfg = parse(&["--expect-status", "200", "http://127.0.0.1:9/"]).unwrap();
        assert!(cfg.expected(200) && !cfg.expected(404));
    }

    #[test]
    fn templates_and_scenario_flags() {
        let cfg = parse(&[
            "-H",
            "X-Id: {{uuid}}",
            "--seed",
            "5",
            "http://127.0.0.1:9/i/{{seq}}",
        ])
        .unwrap();
        assert!(cfg.scenario.fixed_bytes().is_none());
        assert_eq!(cfg.scenario.seed, 5);
        assert!(!cfg.scenario.named);
        assert!(matches!(
            parse(&["http://127.0.0.1:9/{{nope}}"]),
            Err(SetupError::Scenario(_))
        ));
        assert!(matches!(
            parse(&["--feed", "u=/nonexistent", "http://127.0.0.1:9/"]),
            Err(SetupError::Feed(_))
        ));
        assert!(matches!(
            parse(&["--scenario", "/nonexistent.toml", "-m", "POST"]),
            Err(SetupError::ScenarioFlag("-m/--method"))
        ));
        assert!(matches!(
            parse(&["--scenario", "/nonexistent.toml"]),
            Err(SetupError::ScenarioFile(_))
        ));
        let big = "x".repeat(1 << 20);
        assert!(matches!(
            parse(&[
                "-c",
                "2000",
                "-b",
                &format!("{{{{seq}}}}{big}"),
                "http://127.0.0.1:9/"
            ]),
            Err(SetupError::Config(ConfigError::InFlightMemory { .. }))
        ));
    }

    #[test]
    fn http3_takes_what_quic_can_carry_and_refuses_the_rest() {
        let h3 = |extra: &[&str], url: &str| {
            let mut args = vec!["-k", "--engine", "uring", "--http3"];
            args.extend_from_slice(extra);
            args.push(url);
            parse(&args)
        };
        let https = "https://127.0.0.1:9/";
        assert_eq!(h3(&[], https).unwrap().http3, Some(1));
        assert_eq!(h3(&["--streams", "16"], https).unwrap().http3, Some(16));
        let alias = parse(&["-k", "--engine", "uring", "--h3", https]).unwrap();
        assert_eq!(alias.http3, Some(1));
        assert!(alias.http2.is_none());
        let config = |extra: &[&str], url: &str| match h3(extra, url) {
            Err(SetupError::Config(e)) => e,
            other => panic!("{extra:?} {url}: {other:?}"),
        };
        assert_eq!(
            parse(&["--http3", "http://127.0.0.1:9/"])
                .unwrap_err()
                .to_string(),
            ConfigError::Http3WithoutTls.to_string()
        );
        assert_eq!(config(&["--http2"], https), ConfigError::Http3WithHttp2);
        assert_eq!(
            config(&["--pipeline", "4"], https),
            ConfigError::PipelineWithHttp3
        );
        assert_eq!(
            config(&["--no-keepalive"], https),
            ConfigError::NoKeepaliveWithHttp3
        );
        assert_eq!(config(&["--streams", "0"], https), ConfigError::Streams(0));
        let glommio = parse(&["-k", "--engine", "glommio", "--http3", https]);
        assert!(matches!(
            glommio,
            Err(SetupError::Config(ConfigError::Http3Glommio))
        ));
        assert_eq!(
            config(&["--grpc", "a.B/C", "-b", "{}"], https),
            ConfigError::GrpcWithHttp3
        );
        assert!(matches!(
            h3(&["--tls-version", "1.2"], https),
            Err(SetupError::Tls(TlsError::NoQuicSuite))
        ));
        let sock = std::env::temp_dir().join(format!("loadgen-h3-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&sock);
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let path = sock.to_str().unwrap();
        assert_eq!(
            config(&["--unix-socket", path], https),
            ConfigError::Http3Unix
        );
        drop(listener);
        let _ = std::fs::remove_file(&sock);
    }

    #[test]
    fn tls_flags_are_checked() {
        let cfg = parse(&["-k", "-n", "1", "https://127.0.0.1:9/"]).unwrap();
        assert!(cfg.tls.is_some() && cfg.url.tls);
        assert!(matches!(
            parse(&["-k", "http://127.0.0.1:9/"]),
            Err(SetupError::Config(ConfigError::TlsFlagOnHttp(
                "-k/--insecure"
            )))
        ));
        assert!(matches!(
            parse(&["--cacert", "/nonexistent.pem", "https://127.0.0.1:9/"]),
            Err(SetupError::TlsFile("--cacert", ..))
        ));
        let e = parse(&["-k", "--ciphers", "RC4-MD5", "https://127.0.0.1:9/"]).unwrap_err();
        assert!(matches!(e, SetupError::Tls(TlsError::Cipher(..))), "{e}");
        assert!(matches!(
            parse(&["--no-keepalive", "--pipeline", "4", "http://127.0.0.1:9/"]),
            Err(SetupError::Config(ConfigError::PipelineWithoutKeepalive))
        ));
        let cfg = parse(&["--no-keepalive", "http://127.0.0.1:9/"]).unwrap();
        let text = String::from_utf8_lossy(cfg.scenario.fixed_bytes().unwrap()).into_owned();
        assert!(text.contains("Connection: close\r\n"), "{text}");
    }

    #[test]
    fn default_threads_never_exceed_connections() {
        let cfg = parse(&["-c1", "http://127.0.0.1:9/"]).unwrap();
        assert_eq!(cfg.shards, 1);
    }

    #[test]
    fn fleet_flags() {
        let cfg = parse(&[
            "--part",
            "2/3",
            "-c",
            "30",
            "-n",
            "3000",
            "http://127.0.0.1:9/",
        ])
        .unwrap();
        assert_eq!(cfg.part, Part { index: 2, of: 3 });
        assert_eq!((cfg.connections, cfg.fleet_connections), (10, 30));
        assert_eq!(cfg.part_requests(), Some(1000));
        let e = Cli::try_parse_from(["loadgen", "--part", "3/2", "http://h/"]).unwrap_err();
        assert!(e.to_string().contains("--part takes K/N"), "{e}");
        assert!(matches!(
            parse(&[
                "--part",
                "1/2",
                "--server-metrics",
                "http://127.0.0.1:9/metrics",
                "http://127.0.0.1:9/"
            ]),
            Err(SetupError::FleetServerMetrics(_))
        ));
    }

    #[test]
    fn start_at_in_the_past_or_with_runs_is_refused() {
        let e = parse(&["--start-at", "2020-01-01T00:00:00Z", "http://127.0.0.1:9/"]).unwrap_err();
        assert!(
            matches!(e, SetupError::StartAt(StartAtError::Past { .. })),
            "{e}"
        );
        let soon = SystemTime::now() + Duration::from_secs(60);
        let at = format!(
            "{:.3}",
            soon.duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
        );
        let cfg = parse(&["--start-at", &at, "http://127.0.0.1:9/"]).unwrap();
        assert!(cfg.start_at.is_some());
        assert_eq!(
            cfg.warmup, START_AT_WARMUP,
            "connect and warm up before the start"
        );
        let cfg = parse(&["--start-at", &at, "--warmup", "3s", "http://127.0.0.1:9/"]).unwrap();
        assert_eq!(cfg.warmup, Duration::from_secs(3));
        assert!(matches!(
            parse(&["--start-at", &at, "--runs", "2", "http://127.0.0.1:9/"]),
            Err(SetupError::StartAtRuns)
        ));
    }

    #[test]
    fn bind_addresses_are_checked_before_the_run() {
        let cfg = parse(&[
            "--bind",
            "127.0.0.2-127.0.0.3",
            "--engine",
            "uring",
            "http://127.0.0.1:9/",
        ])
        .unwrap();
        assert_eq!(cfg.bind.len(), 2);
        // TEST-NET-1: no host has it, so binding fails (nothing is sent).
        let e = parse(&[
            "--bind",
            "192.0.2.1",
            "--engine",
            "uring",
            "http://127.0.0.1:9/",
        ])
        .unwrap_err();
        assert!(matches!(e, SetupError::Bind(..)), "{e}");
        assert!(e.to_string().contains("192.0.2.1"), "{e}");
        assert!(matches!(
            parse(&[
                "--bind",
                "127.0.0.2",
                "--engine",
                "glommio",
                "http://127.0.0.1:9/"
            ]),
            Err(SetupError::Config(ConfigError::BindGlommio))
        ));
        assert!(Cli::try_parse_from(["loadgen", "--bind", "nope", "http://h/"]).is_err());
    }

    #[test]
    fn unix_socket_paths_are_checked_before_the_run() {
        let dir = std::env::temp_dir().join(format!("loadgen-setup-uds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("s.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let path = sock.to_str().unwrap();
        // The host is only the Host header: it need not resolve.
        let cfg = parse(&["--unix-socket", path, "-n", "5", "http://app.invalid/x"]).unwrap();
        assert_eq!(cfg.peer, Peer::Unix(sock.clone()));
        let text = String::from_utf8_lossy(cfg.scenario.fixed_bytes().unwrap()).into_owned();
        assert!(
            text.starts_with("GET /x HTTP/1.1\r\nHost: app.invalid\r\n"),
            "{text}"
        );
        let bad = |p: &str| {
            let e = parse(&["--unix-socket", p, "http://localhost/"]).unwrap_err();
            assert!(matches!(e, SetupError::UnixSocket { .. }), "{e}");
            e.to_string()
        };
        let missing = dir.join("none.sock");
        let e = bad(missing.to_str().unwrap());
        assert!(
            e.contains("no such socket") && e.contains("none.sock"),
            "{e}"
        );
        let file = dir.join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(bad(file.to_str().unwrap()).contains("a regular file, not a socket"));
        assert!(bad(dir.to_str().unwrap()).contains("a directory, not a socket"));
        let long = format!("/tmp/{}", "x".repeat(120));
        assert!(bad(&long).contains("longer than a socket address holds"));
        assert!(matches!(
            parse(&[
                "--unix-socket",
                path,
                "--bind",
                "127.0.0.1",
                "http://localhost/"
            ]),
            Err(SetupError::Config(ConfigError::BindUnix))
        ));
        drop(listener);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
