//! `--request-log`'s I/O: each shard's own descriptor on the log, opened
//! for appending before the run starts, and the writes of the lines its
//! core buffered (`shard::RequestLog`). With `O_APPEND` the kernel puts
//! each write at the end of the file whole, so the shards share one file
//! without a lock between them, and the file holds whole lines.

use std::fs::{File, OpenOptions};
use std::io::Write;

use super::EngineError;
use crate::config::Config;
use crate::shard::Core;

pub struct LogFile {
    file: Option<File>,
}

impl LogFile {
    /// The run's log, if it asked for one. The command layer made the
    /// file and wrote its header; a run started another way (tests,
    /// benches) gets it made here.
    pub fn open(cfg: &Config) -> Result<Option<LogFile>, EngineError> {
        let Some(spec) = &cfg.request_log else {
            return Ok(None);
        };
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&spec.path)
            .map_err(|error| EngineError::RequestLog {
                path: spec.path.clone(),
                error,
            })?;
        Ok(Some(LogFile { file: Some(file) }))
    }

    /// Writes out the lines the core holds once it holds enough (`all`:
    /// whatever it holds, at the end of the run).
    pub fn write(&mut self, core: &mut Core<'_>, all: bool) {
        let Some(log) = core.request_log() else {
            return;
        };
        if !(log.is_full() || all) {
            return;
        }
        if let Some(f) = &mut self.file
            && let Err(e) = f.write_all(log.pending())
        {
            // A full disk ends the log, not the run: its results stand.
            eprintln!("loadgen: --request-log: cannot write ({e}); the log stops here");
            self.file = None;
        }
        log.clear();
    }

    /// The core holds enough lines to write out.
    #[inline]
    pub fn due(core: &mut Core<'_>) -> bool {
        core.request_log().is_some_and(|l| l.is_full())
    }
}
