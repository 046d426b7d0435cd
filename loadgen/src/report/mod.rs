//! Turning merged stats into what people read: wrk's text summary and a
//! JSON document whose field names are a public interface (see README).

mod json;
mod text;

pub use json::to_json;
pub use text::{header, summary};

use crate::config::Config;
use crate::engine::RunOutput;

/// Everything a report needs about one finished run.
pub struct RunReport<'a> {
    pub cfg: &'a Config,
    pub out: &'a RunOutput,
    /// Engine name as shown to users.
    pub engine: &'static str,
    /// The run was cut short by Ctrl-C.
    pub interrupted: bool,
}

impl RunReport<'_> {
    pub fn elapsed_s(&self) -> f64 {
        self.out.total.elapsed.as_secs_f64()
    }

    /// Completed responses per second over the measured time.
    pub fn rps(&self) -> f64 {
        let s = self.elapsed_s();
        if s > 0.0 {
            self.out.total.responses as f64 / s
        } else {
            0.0
        }
    }

    pub fn transfer_per_s(&self) -> f64 {
        let s = self.elapsed_s();
        if s > 0.0 {
            self.out.total.bytes_read as f64 / s
        } else {
            0.0
        }
    }
}
