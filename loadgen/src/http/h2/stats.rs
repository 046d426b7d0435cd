//! What HTTP/2 itself did during a run, per shard and merged: frames,
//! resets by code, GOAWAYs, flow-control stalls, the server's stream limit.

use super::frame::ERROR_NAMES;

/// Reset codes kept apart: RFC 9113's fourteen, then one for any other.
pub const RESET_CODES: usize = ERROR_NAMES.len() + 1;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct H2Stats {
    pub frames_in: u64,
    pub frames_out: u64,
    /// RST_STREAM frames the server sent, by error code (the last slot:
    /// codes RFC 9113 does not define).
    pub rst_streams: [u64; RESET_CODES],
    pub goaways: u64,
    /// PINGs the server sent (each answered).
    pub pings: u64,
    /// Request bodies that had to wait for the server to open a window.
    pub window_stalls: u64,
    /// The smallest SETTINGS_MAX_CONCURRENT_STREAMS a server sent.
    pub max_concurrent_streams: Option<u32>,
    /// Why the server would not speak HTTP/2 at all (the run stopped):
    /// it chose another protocol in ALPN, or answered the preface in
    /// HTTP/1.1.
    pub refused: Option<String>,
}

impl H2Stats {
    #[inline]
    pub fn count_reset(&mut self, code: u32) {
        let i = (code as usize).min(RESET_CODES - 1);
        self.rst_streams[i] += 1;
    }

    pub fn saw_max_streams(&mut self, n: u32) {
        self.max_concurrent_streams = Some(self.max_concurrent_streams.map_or(n, |m| m.min(n)));
    }

    /// Resets by code name, in code order, the codes never seen left out.
    pub fn resets(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ERROR_NAMES
            .iter()
            .copied()
            .chain(["OTHER"])
            .zip(self.rst_streams)
            .filter(|&(_, n)| n > 0)
    }

    pub fn merge(&mut self, o: &H2Stats) {
        self.frames_in += o.frames_in;
        self.frames_out += o.frames_out;
        for (a, b) in self.rst_streams.iter_mut().zip(o.rst_streams) {
            *a += b;
        }
        self.goaways += o.goaways;
        self.pings += o.pings;
        self.window_stalls += o.window_stalls;
        if let Some(n) = o.max_concurrent_streams {
            self.saw_max_streams(n);
        }
        if self.refused.is_none() {
            self.refused.clone_from(&o.refused);
        }
    }

    /// Forgets the warm-up's counts; the server's limit stays known.
    pub fn reset(&mut self) {
        *self = H2Stats {
            max_concurrent_streams: self.max_concurrent_streams,
            refused: self.refused.take(),
            ..H2Stats::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_are_named_and_merged() {
        let mut a = H2Stats::default();
        a.count_reset(7);
        a.count_reset(0xdead);
        a.saw_max_streams(100);
        let mut b = H2Stats::default();
        b.count_reset(7);
        b.saw_max_streams(50);
        a.merge(&b);
        assert_eq!(
            a.resets().collect::<Vec<_>>(),
            [("REFUSED_STREAM", 2), ("OTHER", 1)]
        );
        assert_eq!(a.max_concurrent_streams, Some(50));
        a.reset();
        assert_eq!(a.resets().count(), 0);
        assert_eq!(a.max_concurrent_streams, Some(50));
    }
}
