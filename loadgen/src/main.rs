//! The `loadgen` binary: parse, dispatch. Exit codes: 0 the run completed,
//! 1 a runtime failure (no connection could be made, I/O setup failed, a
//! report could not be written), 2 bad usage (a threshold that does not
//! parse included; nothing is run), 3 significantly slower than the
//! baseline by more than `--fail-if-slower`, 4 responses with a status
//! outside `--expect-status`, 5 a `--threshold` failed. When several of
//! 3–5 apply, the smallest wins (1 wins over all of them); each cause is
//! still printed on its own line.

mod cmd;

use std::process::ExitCode;

use clap::Parser;
use cmd::cli::{Cli, Command};

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
        Some(Command::Target(args)) => cmd::target::main(args),
        Some(Command::Demo(args)) => cmd::demo::main(args),
        Some(Command::Compare(args)) => cmd::compare::compare(args),
        Some(Command::DiffFlame(args)) => cmd::compare::diff_flame(args),
        Some(Command::Report(args)) => cmd::report::main(args),
        Some(Command::FindMax(args)) => cmd::find_max::main(args),
        Some(Command::Merge(args)) => cmd::merge::main(args),
        None => cmd::run::main(&cli.run),
    };
    match result {
        Ok(code) => code,
        Err(e) => match e.downcast_ref::<cmd::Usage>() {
            Some(usage) => {
                eprintln!("loadgen: {usage}");
                ExitCode::from(2)
            }
            None => {
                eprintln!("loadgen: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}
