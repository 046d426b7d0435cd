//! The `loadgen` binary: parse, run, report. Exit codes: 0 the run
//! completed, 1 a runtime failure (no connection could be made, I/O setup
//! failed, the report could not be written), 2 bad usage.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use loadgen::cli::{Cli, Command, RunArgs, TargetArgs};
use loadgen::config::allowed_cpus;
use loadgen::report::{self, RunReport};
use loadgen::target::{Server, TargetConfig};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind::*;
            if matches!(
                e.kind(),
                DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // clap's first line says what is wrong; the usage block is noise.
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            let first = first.trim_start_matches("error: ");
            eprintln!("loadgen: {first} (see loadgen --help)");
            return ExitCode::from(2);
        }
    };
    let result = match &cli.command {
        Some(Command::Target(args)) => target(args),
        None => run(&cli.run),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn target(args: &TargetArgs) -> anyhow::Result<ExitCode> {
    let cfg = TargetConfig {
        listen: args.listen,
        threads: args.threads.unwrap_or_else(|| allowed_cpus().len().max(1)),
    };
    let stop = loadgen::signal::install();
    let server = Server::start(&cfg)?;
    println!(
        "loadgen target listening on http://{} ({} threads)",
        server.addr(),
        cfg.threads
    );
    let _ = std::io::stdout().flush();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    eprintln!("loadgen target: {} responses sent", server.responses());
    Ok(ExitCode::SUCCESS)
}

fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = match args.to_config() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let json_to_stdout = args.json.as_deref().is_some_and(|p| p.as_os_str() == "-");
    let mut text_out: Box<dyn Write> = if json_to_stdout {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let stop = loadgen::signal::install();
    write!(text_out, "{}", report::header(&cfg))?;
    text_out.flush()?;
    let out = loadgen::engine::run(&cfg, stop)?;
    let rep = RunReport {
        cfg: &cfg,
        out: &out,
        engine: "io_uring",
        interrupted: loadgen::signal::interrupted(),
    };
    write!(text_out, "{}", report::summary(&rep, args.latency))?;
    text_out.flush()?;
    if let Some(path) = &args.json {
        let mut doc = serde_json::to_string_pretty(&report::to_json(&rep))?;
        doc.push('\n');
        if json_to_stdout {
            std::io::stdout().write_all(doc.as_bytes())?;
        } else {
            std::fs::write(path, doc)
                .with_context(|| format!("cannot write the JSON report to {}", path.display()))?;
        }
    }
    let t = &out.total;
    if t.responses == 0 && t.errors.connect > 0 {
        eprintln!(
            "loadgen: could not connect to {} ({} connect errors): is the server running?",
            cfg.addr, t.errors.connect
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
