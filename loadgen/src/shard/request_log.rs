//! `--request-log FILE`: one tab-separated line per completed request (a
//! response, or a request-level error), written into the shard's own
//! buffer as the core books the request. No I/O and no lock here: the
//! engine writes the buffer out when [`RequestLog::is_full`] says so, at a
//! point where the shard would otherwise wait, and once more at the end.
//! Every shard appends whole lines to the same file (`O_APPEND`), so the
//! file is one log, in time order within each shard's blocks.
//!
//! The buffer is allocated when the shard starts and reused: a line is
//! digits pushed into spare capacity, so logging allocates nothing per
//! request (`tests/tests/alloc.rs` checks it). Only a single turn that
//! completes more requests than the spare room holds (thousands) grows it,
//! once.

use crate::stats::ErrorKind;

/// The engine writes the buffer out once it holds this much.
pub const FLUSH_BYTES: usize = 64 * 1024;
/// Room for the lines one turn may add after the buffer filled.
const SPARE_BYTES: usize = 192 * 1024;

/// The columns, as the header names them; `grpc_status` follows when
/// some requests are gRPC calls, `name` for scenarios and
/// `intended_unix_us` in open loop.
const COLUMNS: &str = "start_unix_us\tshard\tconn\tstatus\tlatency_us\tttfb_us\tbytes\terror";

/// The header line of a log with these columns.
pub fn header(grpc: bool, named: bool, open_loop: bool) -> String {
    let mut h = String::from(COLUMNS);
    if grpc {
        h.push_str("\tgrpc_status");
    }
    if named {
        h.push_str("\tname");
    }
    if open_loop {
        h.push_str("\tintended_unix_us");
    }
    h.push('\n');
    h
}

/// One completed request, times in ns of the shard's clock.
#[derive(Debug, Clone, Copy)]
pub struct Completed {
    pub conn: u32,
    /// When it left (for a request that never did, when it failed).
    pub sent: u64,
    /// Open loop: when the schedule meant it to leave.
    pub intended: u64,
    /// The first byte of its response, if any came.
    pub first_byte: Option<u64>,
    pub now: u64,
    /// 0 for a request that failed.
    pub status: u16,
    /// A gRPC call's status code, from its trailers.
    pub grpc: Option<u8>,
    /// Response body bytes.
    pub bytes: u64,
    pub error: Option<ErrorKind>,
    /// Which scenario request.
    pub which: u16,
}

pub struct RequestLog {
    buf: Vec<u8>,
    shard: u32,
    /// Unix µs at the shard clock's 0.
    wall_epoch_us: u64,
    /// Keep one line in `sample`; `seen` counts the requests offered.
    sample: u64,
    seen: u64,
    /// Lines have a `grpc_status` column.
    grpc: bool,
    /// Scenario names, tabs and newlines replaced (`--scenario` only).
    names: Option<Box<[Box<[u8]>]>>,
    open_loop: bool,
}

impl RequestLog {
    /// `grpc`: lines carry a gRPC status column; `names`: the scenario's
    /// request names when lines carry them.
    pub fn new<'n>(
        shard: u32,
        sample: u64,
        grpc: bool,
        names: Option<impl Iterator<Item = &'n str>>,
        open_loop: bool,
    ) -> RequestLog {
        RequestLog {
            buf: Vec::with_capacity(FLUSH_BYTES + SPARE_BYTES),
            shard,
            wall_epoch_us: 0,
            sample: sample.max(1),
            seen: 0,
            grpc,
            names: names.map(|n| {
                n.map(|s| s.bytes().map(|b| if b < b' ' { b' ' } else { b }).collect())
                    .collect()
            }),
            open_loop,
        }
    }

    /// The shard clock's 0 is `wall_us` in Unix µs.
    pub fn start(&mut self, wall_us: u64) {
        self.wall_epoch_us = wall_us;
    }

    /// Writes `r`'s line (or, sampling, skips it). In open loop the
    /// latency runs from the intended time, as in the report.
    #[inline]
    pub fn record(&mut self, r: Completed) {
        self.seen += 1;
        if !(self.seen - 1).is_multiple_of(self.sample) {
            return;
        }
        let from = if self.open_loop { r.intended } else { r.sent };
        let latency_us = r.now.saturating_sub(from) / 1000;
        let ttfb_us = r.first_byte.map_or(0, |t| t.saturating_sub(r.sent) / 1000);
        let b = &mut self.buf;
        push_u64(b, self.wall_epoch_us + r.sent / 1000);
        b.push(b'\t');
        push_u64(b, self.shard as u64);
        b.push(b'\t');
        push_u64(b, r.conn as u64);
        b.push(b'\t');
        push_u64(b, r.status as u64);
        b.push(b'\t');
        push_u64(b, latency_us);
        b.push(b'\t');
        push_u64(b, ttfb_us);
        b.push(b'\t');
        push_u64(b, r.bytes);
        b.push(b'\t');
        if let Some(e) = r.error {
            b.extend_from_slice(e.name().as_bytes());
        }
        if self.grpc {
            b.push(b'\t');
            // A plain request of a mixed scenario, or a call that failed
            // before its status came, leaves it empty.
            if let Some(code) = r.grpc {
                b.extend_from_slice(crate::grpc::status::name(code).as_bytes());
            }
        }
        if let Some(names) = &self.names {
            b.push(b'\t');
            if let Some(n) = names.get(r.which as usize) {
                b.extend_from_slice(n);
            }
        }
        if self.open_loop {
            b.push(b'\t');
            push_u64(b, self.wall_epoch_us + r.intended / 1000);
        }
        b.push(b'\n');
    }

    /// The buffer is due to be written out.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.buf.len() >= FLUSH_BYTES
    }

    /// The lines not yet written out (whole lines only).
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// The pending lines were written out.
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

/// Appends `n` in decimal: no formatter, no allocation while the buffer
/// has room.
#[inline]
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(status: u16, sent: u64, now: u64) -> Completed {
        Completed {
            conn: 3,
            sent,
            intended: sent,
            first_byte: Some(sent + 40_000),
            now,
            status,
            grpc: None,
            bytes: 17,
            error: None,
            which: 0,
        }
    }

    fn lines(log: &RequestLog) -> Vec<String> {
        String::from_utf8(log.pending().to_vec())
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn headers_name_the_columns_lines_carry() {
        assert_eq!(
            header(false, false, false),
            "start_unix_us\tshard\tconn\tstatus\tlatency_us\tttfb_us\tbytes\terror\n"
        );
        assert!(header(false, true, false).ends_with("\terror\tname\n"));
        assert!(header(false, false, true).ends_with("\terror\tintended_unix_us\n"));
        assert!(header(false, true, true).ends_with("\terror\tname\tintended_unix_us\n"));
        assert!(
            header(true, true, true).ends_with("\terror\tgrpc_status\tname\tintended_unix_us\n")
        );
    }

    #[test]
    fn a_line_per_request_with_wall_clock_times() {
        let mut log = RequestLog::new(1, 1, false, None::<std::iter::Empty<&str>>, false);
        log.start(1_700_000_000_000_000);
        log.record(done(200, 2_000_000, 2_250_000));
        log.record(Completed {
            status: 0,
            error: Some(ErrorKind::Timeout),
            first_byte: None,
            bytes: 0,
            ..done(0, 3_000_000, 2_003_000_000)
        });
        assert_eq!(
            lines(&log),
            [
                "1700000000002000\t1\t3\t200\t250\t40\t17\t",
                "1700000000003000\t1\t3\t0\t2000000\t0\t0\ttimeout",
            ]
        );
        let cols = header(false, false, false).trim_end().split('\t').count();
        assert!(lines(&log).iter().all(|l| l.split('\t').count() == cols));
        log.clear();
        assert!(log.pending().is_empty());
    }

    /// Open loop: the latency is corrected (from the intended time) and
    /// the intended time is the last column; scenario names sit before it,
    /// their tabs and newlines made spaces.
    #[test]
    fn open_loop_and_scenario_columns() {
        let names = ["get\titem", "post\nform"];
        let mut log = RequestLog::new(0, 1, false, Some(names.iter().copied()), true);
        log.start(1_000_000);
        log.record(Completed {
            intended: 1_000_000,
            which: 1,
            ..done(201, 5_000_000, 6_000_000)
        });
        assert_eq!(
            lines(&log),
            ["1005000\t0\t3\t201\t5000\t40\t17\t\tpost form\t1001000"]
        );
        let cols = header(false, true, true).trim_end().split('\t').count();
        assert_eq!(lines(&log)[0].split('\t').count(), cols);
    }

    /// gRPC calls: the status by name after `error`; a plain request of a
    /// mixed scenario, and a call that failed, leave it empty.
    #[test]
    fn grpc_status_column() {
        let names = ["say", "page"];
        let mut log = RequestLog::new(0, 1, true, Some(names.iter().copied()), false);
        log.record(Completed {
            grpc: Some(3),
            ..done(200, 1000, 2000)
        });
        log.record(Completed {
            which: 1,
            ..done(200, 1000, 2000)
        });
        log.record(Completed {
            error: Some(ErrorKind::StreamReset),
            ..done(0, 1000, 2000)
        });
        let fields: Vec<Vec<String>> = lines(&log)
            .iter()
            .map(|l| l.split('\t').skip(7).map(String::from).collect())
            .collect();
        assert_eq!(
            fields,
            [
                ["", "INVALID_ARGUMENT", "say"],
                ["", "", "page"],
                ["stream_reset", "", "say"],
            ]
        );
        let cols = header(true, true, false).trim_end().split('\t').count();
        assert!(lines(&log).iter().all(|l| l.split('\t').count() == cols));
    }

    #[test]
    fn sampling_keeps_one_in_n_from_the_first() {
        let mut log = RequestLog::new(0, 3, false, None::<std::iter::Empty<&str>>, false);
        for i in 0..10u64 {
            log.record(done(200, i * 1000, i * 1000 + 1000));
        }
        let starts: Vec<String> = lines(&log)
            .iter()
            .map(|l| l.split('\t').next().unwrap().to_string())
            .collect();
        assert_eq!(starts, ["0", "3", "6", "9"]);
    }

    /// The buffer fills to the flush mark without growing: a line is
    /// pushed into capacity allocated at the start.
    #[test]
    fn lines_go_into_the_buffer_allocated_at_the_start() {
        let mut log = RequestLog::new(0, 1, false, None::<std::iter::Empty<&str>>, false);
        log.start(u64::MAX / 2);
        let cap = log.buf.capacity();
        let mut n = 0;
        while !log.is_full() {
            log.record(Completed {
                conn: u32::MAX,
                bytes: u64::MAX,
                ..done(599, u64::MAX / 4, u64::MAX / 2)
            });
            n += 1;
        }
        assert!(n > 100, "{n}");
        assert_eq!(log.buf.capacity(), cap, "the buffer grew");
        assert!(log.pending().ends_with(b"\n"));
    }

    #[test]
    fn digits() {
        for n in [0, 7, 10, 99, 1234567890, u64::MAX] {
            let mut v = Vec::new();
            push_u64(&mut v, n);
            assert_eq!(v, n.to_string().into_bytes());
        }
    }
}
