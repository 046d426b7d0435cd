//! `--runs K [--pause DUR]`: the load K times in a row, each run kept on
//! its own (a sample for `compare`) and all of them together.

use std::io::Write;
use std::sync::atomic::AtomicBool;

use loadgen::config::{Config, Validated};
use loadgen::metrics::Window;
use loadgen::profile::{Profile, ProfileReport};
use loadgen::report::RunReport;
use loadgen::stats::RunOutput;

use super::assemble::TargetRun;
use super::load::{Hooks, Load, run_load, start_profiler};
use crate::cmd::cli::RunArgs;

/// The runs made, in order.
#[derive(Default)]
pub struct Runs {
    pub outs: Vec<RunOutput>,
    /// The server's metrics at each run's edges.
    pub windows: Vec<Window>,
    /// All the runs' profiles, merged.
    pub profile: Option<Profile>,
    /// Each run's per-second target figures, joined to its own seconds.
    pub targets: Vec<Option<TargetRun>>,
    /// With several runs, each run's own profile figures (no stacks: those
    /// are left to the merged profile), for `compare` run by run.
    pub run_profiles: Vec<Option<ProfileReport>>,
}

impl Runs {
    /// Makes the runs, one line each on `out` when there are several. A
    /// stop (Ctrl-C) ends the current run or pause, and the runs.
    pub fn make(
        args: &RunArgs,
        cfg: &Validated,
        stop: &'static AtomicBool,
        hooks: &Hooks<'_>,
        out: &mut dyn Write,
    ) -> anyhow::Result<Runs> {
        let mut runs = Runs::default();
        for run in 0..args.runs {
            // The first run always happens: a stop that came before it
            // ends it at once, and the report says so. A stop in a pause
            // ends the pause and the runs; the finished ones are reported.
            if run > 0 && !loadgen::signal::sleep(args.pause) {
                break;
            }
            let session = args
                .wants_profile()
                .then(|| start_profiler(args, cfg))
                .flatten();
            let load = run_load(cfg, stop, session, hooks)?;
            if args.runs > 1 {
                writeln!(out, "{}", run_line(run + 1, args.runs, &load.out))?;
                out.flush()?;
            }
            runs.add(load, args.runs > 1);
        }
        Ok(runs)
    }

    fn add(&mut self, load: Load, several: bool) {
        let Load {
            out,
            profile,
            window,
        } = load;
        self.windows.extend(window);
        self.targets
            .push(profile.as_ref().map(|p| TargetRun::of(p, out.started_at)));
        if several {
            self.run_profiles.push(profile.as_ref().map(|p| {
                let mut r = p.report();
                r.folded.clear();
                if let Some(o) = &mut r.off_cpu {
                    o.folded.clear();
                }
                r
            }));
        }
        match (&mut self.profile, profile) {
            (Some(all), Some(p)) => all.merge(&p),
            (slot @ None, Some(p)) => *slot = Some(p),
            _ => {}
        }
        self.outs.push(out);
    }

    /// All the runs' figures merged.
    pub fn total(&self) -> anyhow::Result<RunOutput> {
        RunOutput::combine(&self.outs).ok_or_else(|| anyhow::anyhow!("no run was made"))
    }

    /// With several runs, each run's own report: its seconds make the
    /// combined series, and it is the run's entry in the JSON. Empty for
    /// one run.
    pub fn reports<'a>(&'a self, cfg: &'a Config) -> Vec<RunReport<'a>> {
        if self.outs.len() < 2 {
            return Vec::new();
        }
        self.outs
            .iter()
            .map(|o| RunReport::new(cfg, o, cfg.engine.name(), false))
            .collect()
    }
}

/// "  run 2/5: 9538.36 req/s, p50 42.00us, p99 2.68ms, errors 0"
fn run_line(run: u32, of: u32, out: &RunOutput) -> String {
    let t = &out.total;
    let q =
        |q: f64| loadgen::units::format_time_us(loadgen::histogram::quantile(&t.latency, q) as f64);
    format!(
        "  run {run}/{of}: {:.2} req/s, p50 {}, p99 {}, errors {}",
        t.responses as f64 / t.elapsed.as_secs_f64().max(1e-9),
        q(0.5),
        q(0.99),
        t.errors.total()
    )
}
