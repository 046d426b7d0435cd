//! The shard core on a fake clock, with no sockets: each rule the engines
//! used to write twice is tested once here, for both.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::*;
use crate::config::Config;
use crate::schedule::Schedule;
use crate::url::Url;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
const CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const MS: u64 = 1_000_000;

fn config() -> Config {
    let url = Url::parse("http://127.0.0.1:9/").unwrap();
    let addr = url.resolve().unwrap();
    let mut cfg = Config::for_url(url, addr);
    cfg.connections = 1;
    cfg.timeout = Duration::from_millis(100);
    cfg
}

fn plan_of(cfg: &Config) -> ShardPlan {
    plan(cfg).remove(0)
}

/// A core and the engine's view of it: the actions it asked for, and a
/// clock the test moves.
struct Fake<'a> {
    core: Core<'a>,
    now: u64,
    buf: Vec<Action>,
}

impl<'a> Fake<'a> {
    fn new(cfg: &'a Config, progress: &'a ShardProgress, stop: &'a AtomicBool) -> Fake<'a> {
        Self::with_caps(
            cfg,
            progress,
            stop,
            EngineCaps {
                silent_sends: false,
            },
        )
    }

    fn with_caps(
        cfg: &'a Config,
        progress: &'a ShardProgress,
        stop: &'a AtomicBool,
        caps: EngineCaps,
    ) -> Fake<'a> {
        let mut core = Core::new(cfg, &plan_of(cfg), caps, progress, stop);
        core.start(1_700_000_000_000_000);
        Fake {
            core,
            now: 0,
            buf: Vec::new(),
        }
    }

    fn actions(&mut self) -> Vec<Action> {
        self.core.check_invariants();
        self.core.take_actions(&mut self.buf);
        std::mem::take(&mut self.buf)
    }

    /// Time `t` has come; what the core sends leaves at once.
    fn at(&mut self, t: u64) -> Vec<Action> {
        self.now = t;
        self.core.turn(t);
        self.core.stamp(t);
        self.actions()
    }

    /// Connects slot `c` at its current generation; returns what followed.
    fn connect(&mut self, c: u32, generation: u32) -> Vec<Action> {
        self.core.on_connected(c, generation, self.now);
        self.core.stamp(self.now);
        self.actions()
    }

    fn recv(&mut self, c: u32, generation: u32, data: &[u8]) -> Vec<Action> {
        self.core.on_received(c, generation, data, self.now);
        self.core.stamp(self.now);
        self.actions()
    }

    /// The batch wait the engine would be asked for at `t`, as
    /// `(want, min_wait_us)`, with nothing due before it ends (the fake
    /// clock jumps past the core's checks).
    fn batch_wait(&mut self, t: u64) -> (u32, u32) {
        let b = self.core.batch_wait(t, u64::MAX);
        (b.want, b.min_wait_us)
    }

    fn sent(&mut self, c: u32, generation: u32) -> Vec<Action> {
        self.core.on_sent(c, generation, self.now);
        self.actions()
    }
}

fn sends(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Send { .. }))
        .count()
}

fn connects(actions: &[Action]) -> Vec<(u32, u32)> {
    actions
        .iter()
        .filter_map(|a| match *a {
            Action::Connect {
                conn, generation, ..
            } => Some((conn, generation)),
            _ => None,
        })
        .collect()
}

/// A scenario of the one templated request `spec`, seed 1.
fn templated(spec: crate::http::RequestSpec) -> std::sync::Arc<Scenario> {
    use crate::scenario::{Entry, Options};
    let entry = Entry {
        name: "t".into(),
        weight: 1,
        spec,
        grpc: None,
    };
    let options = Options {
        feeds: Vec::new(),
        jwt: None,
        seed: 1,
        named: false,
        env: &|_| None,
    };
    std::sync::Arc::new(Scenario::compile(vec![entry], options).unwrap())
}

#[test]
fn start_opens_every_slot() {
    let mut cfg = config();
    cfg.connections = 3;
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    assert_eq!(connects(&f.actions()), [(0, 0), (1, 0), (2, 0)]);
}

#[test]
fn closed_loop_sends_whole_batches_and_the_next_when_all_are_answered() {
    let mut cfg = config();
    cfg.pipeline = 3;
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    let a = f.connect(0, 0);
    assert_eq!(
        a,
        [Action::Send {
            conn: 0,
            generation: 0,
            ack: true
        }]
    );
    assert_eq!(
        f.core.send_bytes(0).len(),
        3 * cfg.scenario.max_request_len()
    );
    f.sent(0, 0);
    // Two of three answered, in one read and split across reads: no send.
    let two = [OK, OK].concat();
    assert!(f.recv(0, 0, &two[..10]).is_empty());
    assert!(f.recv(0, 0, &two[10..]).is_empty());
    assert_eq!(f.core.stats().responses, 2);
    assert_eq!(sends(&f.recv(0, 0, OK)), 1);
    assert_eq!(f.core.stats().responses, 3);
}

#[test]
fn a_send_is_not_overtaken_before_its_ack() {
    let mut cfg = config();
    cfg.schedule = Some(Schedule::constant(1000.0));
    cfg.pipeline = 4;
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.connect(0, 0);
    assert_eq!(sends(&f.at(0)), 1, "the request due at 0");
    // Due at 1 ms, but the first send is not acked yet: it waits.
    assert_eq!(sends(&f.at(MS)), 0);
    assert_eq!(sends(&f.sent(0, 0)), 1);
}

#[test]
fn silent_sends_only_where_nothing_can_overtake_them() {
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let silent = EngineCaps { silent_sends: true };
    let ack_of = |cfg: &Config| {
        let mut f = Fake::with_caps(cfg, &p, &s, silent);
        f.actions();
        f.connect(0, 0);
        f.at(0)
            .into_iter()
            .chain(f.actions())
            .find_map(|a| match a {
                Action::Send { ack, .. } => Some(ack),
                _ => None,
            })
    };
    let mut cfg = config();
    cfg.pipeline = 16;
    let mut f = Fake::with_caps(&cfg, &p, &s, silent);
    f.actions();
    assert!(matches!(
        f.connect(0, 0)[..],
        [Action::Send { ack: false, .. }]
    ));
    cfg.schedule = Some(Schedule::constant(1000.0));
    assert_eq!(ack_of(&cfg), Some(true), "open loop, depth 16");
    cfg.pipeline = 1;
    assert_eq!(ack_of(&cfg), Some(false), "open loop, depth 1");
}

#[test]
fn count_mode_ends_at_its_last_response_not_when_the_engine_looks() {
    let mut cfg = config();
    cfg.duration = None;
    cfg.requests = Some(2);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.connect(0, 0);
    f.sent(0, 0);
    f.now = 3 * MS;
    f.recv(0, 0, OK);
    f.sent(0, 0);
    f.now = 5 * MS;
    f.recv(0, 0, OK);
    assert!(!f.core.is_finished());
    // The engine next looks 45 ms later (glommio's ticker used to take
    // that time; io_uring used "now").
    let a = f.at(50 * MS);
    assert!(f.core.is_finished());
    assert_eq!(f.core.stats().elapsed, Duration::from_millis(5));
    assert_eq!(f.core.stats().responses, 2);
    assert!(a.contains(&Action::Close {
        conn: 0,
        generation: 0
    }));
}

#[test]
fn duration_mode_ends_at_the_deadline() {
    let mut cfg = config();
    cfg.duration = Some(Duration::from_millis(20));
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    assert_eq!(f.core.next_wake(), 10 * MS, "the first timer check");
    f.at(19 * MS);
    assert!(!f.core.is_finished());
    f.at(23 * MS);
    assert!(f.core.is_finished());
    assert_eq!(f.core.stats().elapsed, Duration::from_millis(20));
}

#[test]
fn unreachable_means_never_connected() {
    let mut cfg = config();
    cfg.duration = None;
    cfg.requests = Some(10);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    // Connects fail: after the timeout the -n run gives up.
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.core.on_connect_failed(0, 0, 0);
    f.at(50 * MS);
    assert!(!f.core.is_finished());
    f.at(110 * MS);
    assert!(f.core.is_finished(), "nothing ever connected");
    // A target that connected once and then failed is not unreachable:
    // glommio's old rule (no responses, no request errors) said it was.
    // Not until it has refused every connect for a whole timeout.
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.connect(0, 0);
    f.core.on_eof(0, 0, 0);
    assert_eq!(f.core.stats().errors.closed, 1);
    let reconnect = connects(&f.actions());
    assert_eq!(reconnect, [(0, 1)]);
    f.core.on_connect_failed(0, 1, MS);
    f.at(90 * MS);
    assert!(!f.core.is_finished());
}

/// `-n` against a server that was reached and then went away (or silent):
/// before, every slot retried its connect forever and the run never
/// ended. Now a whole `--timeout` of failed connects ends it, flagged;
/// a shorter outage does not.
#[test]
fn a_count_run_ends_when_the_target_is_lost_for_a_whole_timeout() {
    let mut cfg = config();
    cfg.duration = None;
    cfg.requests = Some(10);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.connect(0, 0);
    // The server goes away; the reconnects fail for 60 ms, then one works.
    f.core.on_eof(0, 0, 0);
    let mut generation = connects(&f.actions())[0].1;
    let mut t = MS;
    f.core.on_connect_failed(0, generation, t);
    while t < 60 * MS {
        t += MS;
        if let Some(&(_, g)) = connects(&f.at(t)).first() {
            generation = g;
            f.core.on_connect_failed(0, generation, t);
        }
    }
    while connects(&f.at(t)).is_empty() {
        t += MS;
    }
    generation += 1;
    f.now = t;
    f.connect(0, generation);
    assert!(!f.core.is_finished(), "a 60 ms outage, under the timeout");
    // Gone again, for good: done a timeout after the first refusal.
    f.core.on_eof(0, generation, t);
    let gone = t;
    while !f.core.is_finished() && t < gone + 300 * MS {
        t += MS;
        if let Some(&(_, g)) = connects(&f.at(t)).first() {
            f.core.on_connect_failed(0, g, t);
        }
    }
    assert!(f.core.is_finished());
    assert!(t >= gone + 100 * MS && t <= gone + 120 * MS, "{t} {gone}");
    assert!(f.core.stats().lost_target);
    assert!(f.core.stats().errors.connect >= 2);
}

#[test]
fn connect_backoff_is_jittered_and_grows() {
    let mut cfg = config();
    cfg.connections = 64;
    // Timers every 1 ms (timeout / 10, clamped).
    cfg.timeout = Duration::from_millis(10);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    for c in 0..64 {
        f.core.on_connect_failed(c, 0, 0);
    }
    // Record when each slot reconnects.
    let mut retry_at = vec![0u64; 64];
    let mut t = 0;
    while retry_at.contains(&0) && t < 100 * MS {
        t += MS;
        for (c, _) in connects(&f.at(t)) {
            retry_at[c as usize] = t;
        }
    }
    let distinct: std::collections::BTreeSet<u64> = retry_at.iter().copied().collect();
    assert!(
        retry_at.iter().all(|&r| (5 * MS..=11 * MS).contains(&r)),
        "first backoff is 5–10 ms: {retry_at:?}"
    );
    // Connections that failed together do not all retry together (the old
    // glommio rule `failures % 7` retried them in lockstep).
    assert!(distinct.len() >= 4, "{retry_at:?}");
    // The second failure waits longer: 10–20 ms.
    f.core.on_connect_failed(0, 1, t);
    let mut again = 0;
    for k in 1..=30 {
        if connects(&f.at(t + k * MS)).iter().any(|&(c, _)| c == 0) {
            again = k;
            break;
        }
    }
    assert!((10..=21).contains(&again), "{again}");
}

#[test]
fn a_connect_that_takes_too_long_is_closed_and_retried() {
    let cfg = config();
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    let a = f.at(110 * MS);
    assert!(a.contains(&Action::Close {
        conn: 0,
        generation: 0
    }));
    assert_eq!(f.core.stats().errors.connect, 1);
    // Events of the abandoned socket are stale.
    f.core.on_connected(0, 0, 111 * MS);
    assert!(f.actions().is_empty());
}

#[test]
fn a_request_that_times_out_fails_and_its_slot_reconnects() {
    let cfg = config();
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.connect(0, 0);
    let a = f.at(101 * MS);
    assert_eq!(f.core.stats().errors.timeout, 1);
    assert!(a.contains(&Action::Close {
        conn: 0,
        generation: 0
    }));
    assert_eq!(connects(&a), [(0, 1)]);
}

#[test]
fn a_server_close_reissues_the_pipelined_requests_behind() {
    let mut cfg = config();
    cfg.pipeline = 4;
    cfg.duration = None;
    cfg.requests = Some(4);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.connect(0, 0);
    f.sent(0, 0);
    // One answered with `Connection: close`: three go again.
    let a = f.recv(0, 0, CLOSE);
    assert_eq!(connects(&a), [(0, 1)]);
    assert_eq!(f.core.stats().reissued, 3);
    assert_eq!(f.core.stats().reconnects, 0);
    let a = f.connect(0, 1);
    assert_eq!(sends(&a), 1);
    assert_eq!(f.core.stats().reconnects, 1);
    assert_eq!(
        f.core.send_bytes(0).len(),
        3 * cfg.scenario.max_request_len()
    );
    f.sent(0, 1);
    f.recv(0, 1, &[OK, OK, OK].concat());
    f.at(MS);
    assert!(f.core.is_finished());
    assert_eq!(f.core.stats().responses, 4, "-n counts answers, not sends");
}

#[test]
fn a_spent_quota_opens_no_new_connection() {
    let mut cfg = config();
    cfg.connections = 2;
    cfg.duration = None;
    cfg.requests = Some(2);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.connect(0, 0);
    f.connect(1, 0);
    f.sent(0, 0);
    f.sent(1, 0);
    // Both requests are out; the server closes after the first answer.
    let a = f.recv(0, 0, CLOSE);
    assert!(connects(&a).is_empty(), "nothing left to carry: {a:?}");
    assert!(!f.core.is_finished());
    f.recv(1, 0, OK);
    f.at(MS);
    assert!(f.core.is_finished());
    assert_eq!(f.core.stats().responses, 2);
    // A connection that fails with a request queued behind the failed one
    // does reconnect: that request goes back to the quota.
    cfg.connections = 1;
    cfg.pipeline = 2;
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.connect(0, 0);
    f.core.on_recv_failed(0, 0, libc::ECONNRESET, 0);
    assert_eq!(connects(&f.actions()), [(0, 1)]);
}

#[test]
fn failures_count_once_and_classify_resets() {
    let mut cfg = config();
    cfg.pipeline = 2;
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.connect(0, 0);
    f.core.on_recv_failed(0, 0, libc::ECONNRESET, 0);
    let e = f.core.stats().errors;
    assert_eq!((e.reset, e.read), (1, 0));
    // The failed request is an error; the one behind it is re-sent.
    assert_eq!(f.core.stats().reissued, 1);
    f.actions();
    f.connect(0, 1);
    f.core.on_send_failed(0, 1, libc::EIO, 0);
    assert_eq!(f.core.stats().errors.write, 1);
    // Bytes nobody asked for are a parse error.
    f.actions();
    f.connect(0, 2);
    f.sent(0, 2);
    f.recv(0, 2, &[OK, OK, OK].concat());
    assert_eq!(f.core.stats().errors.parse, 1);
}

#[test]
fn warm_up_is_forgotten_and_n_counts_from_its_end() {
    let mut cfg = config();
    cfg.warmup = Duration::from_millis(10);
    cfg.duration = None;
    cfg.requests = Some(3);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.connect(0, 0);
    f.sent(0, 0);
    // Unlimited during the warm-up.
    for _ in 0..5 {
        assert_eq!(sends(&f.recv(0, 0, OK)), 1);
        f.sent(0, 0);
    }
    f.at(10 * MS);
    assert_eq!(f.core.stats().responses, 0, "warm-up forgotten");
    // One request is in flight at the end of the warm-up: it counts.
    f.now = 12 * MS;
    f.recv(0, 0, OK);
    f.sent(0, 0);
    f.recv(0, 0, OK);
    f.sent(0, 0);
    assert!(f.recv(0, 0, OK).is_empty(), "quota spent");
    f.at(13 * MS);
    assert!(f.core.is_finished());
    assert_eq!(f.core.stats().responses, 3);
    assert_eq!(f.core.stats().elapsed, Duration::from_millis(2));
}

#[test]
fn open_loop_counts_lag_and_connection_waits_apart() {
    let mut cfg = config();
    cfg.schedule = Some(Schedule::constant(1000.0));
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.connect(0, 0);
    // Due at 0, sent at 0. The only connection is busy from then on.
    assert_eq!(sends(&f.at(0)), 1);
    f.sent(0, 0);
    // Due at 1 ms: no free connection; nothing to wake up for until one is.
    assert_eq!(sends(&f.at(MS + 200_000)), 0);
    assert_eq!(f.core.next_wake(), 10 * MS);
    // The answer frees it: the request due at 1 ms waited for the server.
    f.now = 2 * MS + 500_000;
    f.recv(0, 0, OK);
    assert_eq!(sends(&f.at(2 * MS + 500_000)), 1);
    f.sent(0, 0);
    f.now = 2 * MS + 700_000;
    f.recv(0, 0, OK);
    // Due at 2 ms, before the last block (2.5 ms): a wait as well.
    assert_eq!(sends(&f.at(2 * MS + 700_000)), 1);
    f.sent(0, 0);
    f.now = 2 * MS + 800_000;
    f.recv(0, 0, OK);
    // Due at 3 ms with the connection free, sent 0.4 ms late: our lag.
    assert_eq!(sends(&f.at(3 * MS + 400_000)), 1);
    let st = f.core.stats();
    assert_eq!(st.conn_waits, 2);
    assert_eq!(st.lag.len(), 2, "the requests due at 0 and 3 ms");
    assert!(st.lag.equivalent(st.lag.max(), 401), "{}", st.lag.max());
    // Corrected latency counts from the intended times: 2.5, 1.7 and
    // 0.8 ms for the requests due at 0, 1 and 2 ms.
    assert_eq!(st.latency.len(), 3);
    assert!(
        st.latency
            .equivalent(st.latency.value_at_quantile(0.5), 1700)
    );
}

#[test]
fn requests_that_come_due_while_every_slot_is_busy_waited_for_the_server() {
    let mut cfg = config();
    cfg.schedule = Some(Schedule::constant(1000.0));
    cfg.pipeline = 2;
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.connect(0, 0);
    assert_eq!(sends(&f.at(0)), 1);
    f.sent(0, 0);
    assert_eq!(sends(&f.at(MS)), 1);
    f.sent(0, 0);
    // Due at 2 ms: both slots busy.
    assert_eq!(sends(&f.at(2 * MS + 100_000)), 0);
    // Both answers at 3.6 ms free two slots: the requests due at 2 and
    // 3 ms leave together. The one due at 3 ms came due while no slot was
    // free: it too waited for the server, it is not the generator's lag.
    f.now = 3 * MS + 600_000;
    f.recv(0, 0, &[OK, OK].concat());
    assert_eq!(sends(&f.at(3 * MS + 600_000)), 1);
    let st = f.core.stats();
    assert_eq!(st.conn_waits, 2);
    assert_eq!(st.lag.len(), 2, "only the requests due at 0 and 1 ms");
    assert!(st.lag.max() < 10, "{}", st.lag.max());
}

#[test]
fn open_loop_latency_counts_from_the_intended_time() {
    let mut cfg = config();
    cfg.schedule = Some(Schedule::constant(100.0));
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    // The connection opens 3 ms after the first request was due.
    f.now = 3 * MS;
    f.connect(0, 0);
    assert_eq!(sends(&f.at(3 * MS)), 1);
    f.sent(0, 0);
    f.now = 4 * MS;
    f.recv(0, 0, OK);
    let st = f.core.stats();
    assert!(
        st.latency.equivalent(st.latency.max(), 4000),
        "corrected: 4 ms"
    );
    assert!(
        st.service.equivalent(st.service.max(), 1000),
        "service: 1 ms"
    );
}

#[test]
fn stop_flag_ends_the_run_with_what_was_measured() {
    let cfg = config();
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.connect(0, 0);
    f.now = MS;
    f.recv(0, 0, OK);
    s.store(true, std::sync::atomic::Ordering::Relaxed);
    f.at(7 * MS);
    assert!(f.core.is_finished());
    assert_eq!(f.core.stats().responses, 1);
    assert_eq!(f.core.stats().elapsed, Duration::from_millis(7));
    assert_eq!(
        f.core.stats().seconds.len(),
        1,
        "the partial second is kept"
    );
}

#[test]
fn seconds_roll_and_publish_progress() {
    let mut cfg = config();
    cfg.duration = Some(Duration::from_millis(2500));
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.connect(0, 0);
    f.recv(0, 0, OK);
    f.at(1000 * MS);
    assert_eq!(f.core.stats().seconds.len(), 1);
    assert_eq!(p.responses.load(std::sync::atomic::Ordering::Relaxed), 1);
    f.at(2600 * MS);
    assert!(f.core.is_finished());
    assert_eq!(f.core.stats().seconds.len(), 3);
}

#[test]
fn stale_events_change_nothing() {
    let cfg = config();
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.connect(0, 0);
    f.core.on_eof(0, 0, 0);
    f.actions();
    let before = (f.core.stats().responses, f.core.stats().errors);
    // Generation 0 is gone; its late bytes, acks and errors are ignored.
    f.core.on_received(0, 0, OK, 0);
    f.core.on_sent(0, 0, 0);
    f.core.on_recv_failed(0, 0, libc::ECONNRESET, 0);
    f.core.on_send_failed(0, 0, libc::EPIPE, 0);
    f.core.on_connect_failed(0, 0, 0);
    f.core.on_connected(0, 0, 0);
    assert!(f.actions().is_empty());
    assert_eq!((f.core.stats().responses, f.core.stats().errors), before);
}

#[test]
fn templated_requests_render_into_the_slot_buffer() {
    let mut cfg = config();
    cfg.pipeline = 2;
    cfg.scenario = templated(crate::http::RequestSpec::get("127.0.0.1:9", "/i/{{seq}}"));
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.connect(0, 0);
    let text = String::from_utf8(f.core.send_bytes(0).to_vec()).unwrap();
    assert!(text.starts_with("GET /i/0 HTTP/1.1\r\n"), "{text}");
    assert!(text.contains("GET /i/1 HTTP/1.1\r\n"), "{text}");
}

/// The batch wait: none with one request in flight (no batch can form),
/// else 1/32 of the recent latency, at most `--batch-wait`, and none when
/// that is zero.
#[test]
fn the_batch_wait_is_a_small_part_of_the_latency_and_needs_company() {
    let wait_after = |connections: usize, latency_ms: u64, cap: Duration| {
        let mut cfg = config();
        cfg.connections = connections;
        cfg.batch_wait = cap;
        let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
        let mut f = Fake::new(&cfg, &p, &s);
        f.actions();
        for c in 0..connections as u32 {
            f.connect(c, 0);
            f.sent(c, 0);
        }
        assert_eq!(f.batch_wait(f.now), (1, 0), "no latency seen yet");
        // Many responses at this latency: the average settles on it.
        for _ in 0..200 {
            f.now += latency_ms * MS;
            for c in 0..connections as u32 {
                f.recv(c, 0, OK);
                f.sent(c, 0);
            }
        }
        f.batch_wait(f.now);
        f.at(f.now);
        f.batch_wait(f.now)
    };
    let cap = Duration::from_micros(100);
    assert_eq!(wait_after(1, 1, cap), (1, 0), "one in flight");
    let (want, wait) = wait_after(8, 1, cap);
    assert_eq!(want, 8, "as many as are in flight");
    assert!((30..=31).contains(&wait), "1 ms / 32: {wait} µs");
    assert_eq!(wait_after(8, 50, cap), (8, 100), "capped");
    assert_eq!(wait_after(8, 50, Duration::ZERO), (1, 0), "off");
}

/// A shard whose last turn took longer than the wait would be (busy), or
/// whose last wait overslept by 4 times (starved of its CPU), does not
/// wait.
#[test]
fn a_slow_turn_or_an_overslept_wait_skips_the_batch_wait() {
    let mut cfg = config();
    cfg.connections = 8;
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    for c in 0..8 {
        f.connect(c, 0);
        f.sent(c, 0);
    }
    for _ in 0..200 {
        f.now += 10 * MS;
        for c in 0..8 {
            f.recv(c, 0, OK);
            f.sent(c, 0);
        }
    }
    // The engine asks before each wait; this one ends at once.
    f.batch_wait(f.now);
    f.at(f.now);
    let (want, wait) = f.batch_wait(f.now + 50_000);
    assert_eq!((want, wait), (8, 100), "a 50 µs turn");
    assert_eq!(f.batch_wait(f.now + 100_000), (1, 0), "a 100 µs turn");
    // The wait that began at +100 µs ends at +500 µs: overslept.
    f.at(f.now + 500_000);
    assert_eq!(f.batch_wait(f.now + 10_000), (1, 0), "a 400 µs wait");
    // One that ends in time.
    f.at(f.now + 10_000 + 300_000);
    assert_eq!(f.batch_wait(f.now + 10_000), (8, 100), "a 300 µs wait");
    // Never past the core's next wake (an open-loop send due then).
    let b = f.core.batch_wait(f.now + 10_000, f.now + 30_000);
    assert_eq!((b.want, b.min_wait_us), (8, 20), "20 µs to the wake");
}

/// The request log's lines, as the engine would write them out.
fn log_lines(f: &mut Fake<'_>) -> Vec<Vec<String>> {
    let log = f.core.request_log().expect("a request log");
    let text = String::from_utf8(log.pending().to_vec()).unwrap();
    log.clear();
    text.lines()
        .map(|l| l.split('\t').map(String::from).collect())
        .collect()
}

fn logged(mut cfg: Config) -> Config {
    cfg.request_log = Some(crate::config::RequestLogSpec {
        path: "/dev/null".into(),
        sample: 1,
    });
    cfg
}

/// `--request-log`: a line where the stats book a request (a response,
/// or a request that failed), none for the warm-up, with the first
/// byte's time and the body's length of its own response.
#[test]
fn the_request_log_has_a_line_per_measured_request() {
    let mut cfg = logged(config());
    cfg.warmup = Duration::from_millis(10);
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.connect(0, 0);
    f.sent(0, 0);
    f.now = MS;
    f.recv(0, 0, OK);
    f.sent(0, 0);
    assert!(log_lines(&mut f).is_empty(), "the warm-up is not logged");
    f.at(10 * MS);
    // The response arrives in two reads: its first byte at 11 ms.
    f.now = 11 * MS;
    f.recv(0, 0, &OK[..5]);
    f.now = 12 * MS;
    f.recv(0, 0, &OK[5..]);
    let sent_us = 1_700_000_000_000_000u64 + 1_000;
    assert_eq!(
        log_lines(&mut f),
        [[
            sent_us.to_string(),
            "0".into(),
            "0".into(),
            "200".into(),
            "11000".into(),
            "10000".into(),
            "2".into(),
            String::new()
        ]]
    );
    // The next one times out: a line with the error, no status.
    f.sent(0, 0);
    f.at(200 * MS);
    let lines = log_lines(&mut f);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0][3..], ["0", "188000", "0", "0", "timeout"]);
    let st = f.core.stats();
    assert_eq!(
        (st.responses, st.errors.timeout),
        (1, 1),
        "as many as lines"
    );
}

/// Open loop: the latency is the corrected one, and the line carries
/// when the request was meant to leave.
#[test]
fn open_loop_log_lines_carry_the_intended_time() {
    let mut cfg = logged(config());
    cfg.schedule = Some(Schedule::constant(100.0));
    let (p, s) = (ShardProgress::default(), AtomicBool::new(false));
    let mut f = Fake::new(&cfg, &p, &s);
    f.actions();
    f.now = 3 * MS;
    f.connect(0, 0);
    f.at(3 * MS);
    f.sent(0, 0);
    f.now = 4 * MS;
    f.recv(0, 0, OK);
    let lines = log_lines(&mut f);
    assert_eq!(lines.len(), 1);
    let (start, latency, intended) = (&lines[0][0], &lines[0][4], &lines[0][8]);
    let epoch = 1_700_000_000_000_000u64;
    assert_eq!(start, &(epoch + 3000).to_string(), "sent at 3 ms");
    let intended: u64 = intended.parse().unwrap();
    assert!(intended < epoch + 3000, "meant for before the connection");
    assert_eq!(latency, &(epoch + 4000 - intended).to_string(), "corrected");
}

mod h2;
mod h3;
