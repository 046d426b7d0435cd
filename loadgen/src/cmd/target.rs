//! `loadgen target`: the built-in server in the foreground.

use std::process::ExitCode;

use super::cli::TargetArgs;
use loadgen::target::{Server, TargetConfig};

pub fn main(args: &TargetArgs) -> anyhow::Result<ExitCode> {
    let cfg = TargetConfig {
        listen: args.listen,
        threads: args
            .threads
            .unwrap_or_else(|| loadgen::sys::allowed_cpus().len().max(1)),
        stall: args.stall_every.zip(args.stall_for),
    };
    if let Some((every, stall_for)) = cfg.stall
        && (stall_for >= every || every.is_zero())
    {
        return Err(super::usage(
            "--stall-for must be shorter than --stall-every",
        ));
    }
    let stop = loadgen::signal::install();
    let server = Server::start(&cfg)?;
    println!(
        "loadgen target listening on http://{} ({} threads)",
        server.addr(),
        cfg.threads
    );
    let _ = std::io::Write::flush(&mut std::io::stdout());
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    eprintln!("loadgen target: {} responses sent", server.responses());
    Ok(ExitCode::SUCCESS)
}
