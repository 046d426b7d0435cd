//! The second engine: glommio's executor and sockets under the same shard
//! core. It needs only Linux ≥ 5.8, and as an independent I/O path it
//! cross-checks the default engine's counts. Measured here it costs about
//! 1.4–2.3× wrk's client CPU per request (glommio's rings take no setup
//! flags; BENCHMARKS.md), so it is the fallback, not the default.
//!
//! Shape: one `LocalExecutor` per shard; one task per connection slot,
//! which carries out the core's actions for that slot (connect, write,
//! close) and reports what its socket did; and the shard's own future,
//! which sleeps on a glommio timer until the core's next wake-up (or until
//! an event moved it earlier) and then gives the core its turn.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::{TcpStream, UnixStream};
use glommio::timer::Timer;
use glommio::{LocalExecutorBuilder, Placement};

use super::gate::Pass;
use super::log_file::LogFile;
use super::{EngineError, Shard};
use crate::peer::Peer;
use crate::shard::{Action, Core, EngineCaps};
use crate::stats::ShardStats;
use crate::sys;

/// glommio refuses to start below this much locked memory.
pub const MIN_MEMLOCK: u64 = 512 * 1024;

/// glommio reports every send, so the core always asks for an ack.
const CAPS: EngineCaps = EngineCaps {
    silent_sends: false,
};

/// Checks the memlock limit glommio needs, before any thread starts.
pub fn check_memlock() -> Result<(), EngineError> {
    match sys::memlock_limit() {
        Ok(Some(lim)) if lim < MIN_MEMLOCK => Err(EngineError::Memlock(lim / 1024)),
        _ => Ok(()),
    }
}

/// Runs one shard (already pinned by the caller) until the core says the
/// run is over.
pub fn run(
    shard: &Shard<'_>,
    pass: Pass<'_>,
    log: Option<LogFile>,
) -> Result<ShardStats, EngineError> {
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .name(&format!("loadgen-glommio-{}", shard.plan.index))
        // We do no file I/O: keep the registered buffer small.
        .io_memory(64 << 10)
        .make()
        .map_err(|e| EngineError::Glommio(e.to_string()))?;
    pass.wait()?;
    Ok(ex.run(drive(shard, log)))
}

/// A slot's actions, in the order the core gave them, and the task that
/// carries them out.
#[derive(Default)]
struct Mailbox {
    queue: RefCell<VecDeque<Action>>,
    waker: Cell<Option<Waker>>,
}

impl Mailbox {
    fn push(&self, a: Action) {
        self.queue.borrow_mut().push_back(a);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    fn front(&self) -> Option<Action> {
        self.queue.borrow().front().copied()
    }

    fn pop(&self) {
        self.queue.borrow_mut().pop_front();
    }

    fn wait(&self, cx: &Context<'_>) {
        self.waker.set(Some(cx.waker().clone()));
    }
}

/// What the shard's tasks share. Single-threaded: the `RefCell` borrows
/// never cross an await.
struct Io<'a> {
    core: RefCell<Core<'a>>,
    mail: Vec<Mailbox>,
    actions: RefCell<Vec<Action>>,
    epoch: Instant,
    /// When the shard future's timer is set to fire.
    planned_wake: Cell<u64>,
    kicked: Cell<bool>,
    ticker: Cell<Option<Waker>>,
}

impl Io<'_> {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Reports an event to the core, gives it its turn, and delivers what
    /// it asks for.
    fn event(&self, f: impl FnOnce(&mut Core<'_>, u64)) {
        let now = self.now();
        let mut core = self.core.borrow_mut();
        f(&mut core, now);
        core.turn(now);
        let mut actions = self.actions.borrow_mut();
        while core.has_actions() {
            core.take_actions(&mut actions);
            for a in actions.drain(..) {
                let conn = match a {
                    Action::Connect { conn, .. }
                    | Action::Send { conn, .. }
                    | Action::Close { conn, .. } => conn,
                };
                self.mail[conn as usize].push(a);
            }
        }
        // The shard future sleeps until its planned wake-up; an event can
        // move the core's next one earlier (a freed connection lets due
        // requests go) or end the run.
        if core.is_finished() || core.next_wake() < self.planned_wake.get() {
            self.kicked.set(true);
            if let Some(w) = self.ticker.take() {
                w.wake();
            }
        }
    }

    /// Sleeps for `d`, or until an event kicks.
    async fn nap(&self, d: Duration) {
        let mut timer = Timer::new(d);
        future::poll_fn(|cx| {
            if self.kicked.replace(false) || Pin::new(&mut timer).poll(cx).is_ready() {
                return Poll::Ready(());
            }
            self.ticker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }
}

async fn drive(shard: &Shard<'_>, mut log: Option<LogFile>) -> ShardStats {
    let (plan, epoch, wall_us) = super::start_clock(shard);
    let n = plan.connections;
    let io = Io {
        core: RefCell::new(Core::new(
            shard.cfg,
            &plan,
            CAPS,
            shard.progress,
            shard.stop,
        )),
        mail: (0..n).map(|_| Mailbox::default()).collect(),
        actions: RefCell::new(Vec::with_capacity(n * 3 + 8)),
        epoch,
        planned_wake: Cell::new(0),
        kicked: Cell::new(false),
        ticker: Cell::new(None),
    };
    io.event(|core, _| core.start(wall_us));
    let mut cpu = super::CpuMeter::default();
    let peer = &shard.cfg.peer;
    let tasks: Vec<_> = (0..n as u32)
        // SAFETY: the tasks borrow `io` and the config, which outlive them:
        // they are kept in `tasks`, never leaked, and dropped (cancelled)
        // below before `io` is; a panic drops them in the same order while
        // unwinding.
        .map(|ci| unsafe { glommio::spawn_scoped_local(connection(&io, ci, peer)) })
        .collect();
    loop {
        let (finished, wake) = {
            let core = io.core.borrow();
            cpu.watch(&core);
            (core.is_finished(), core.next_wake())
        };
        if finished {
            break;
        }
        if let Some(log) = &mut log {
            // Before a nap: the connection tasks have had their turn.
            log.write(&mut io.core.borrow_mut(), false);
        }
        let now = io.now();
        if wake > now {
            io.planned_wake.set(wake);
            io.nap(Duration::from_nanos(wake - now)).await;
            io.planned_wake.set(0);
        }
        io.event(|_, _| {});
    }
    drop(tasks);
    let mut core = io.core.into_inner();
    if let Some(log) = &mut log {
        log.write(&mut core, true);
    }
    let mut stats = core.into_stats();
    cpu.finish(&mut stats);
    stats
}

/// The errno of an I/O error, for the core's error classification.
fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => libc::ECONNRESET,
        _ => libc::EIO,
    })
}

/// One slot: waits for the core to ask for a connection, makes it, and
/// serves it until the core closes it or the server does.
async fn connection(io: &Io<'_>, ci: u32, peer: &Peer) {
    let mail = &io.mail[ci as usize];
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let generation = future::poll_fn(|cx| {
            while let Some(a) = mail.front() {
                mail.pop();
                if let Action::Connect { generation, .. } = a {
                    return Poll::Ready(generation);
                }
                // A close or send for a socket that is already gone.
            }
            mail.wait(cx);
            Poll::Pending
        })
        .await;
        // The core times connects out: it closes the generation.
        let closed = future::poll_fn(|cx| match mail.front() {
            Some(Action::Close { generation: g, .. }) if g == generation => {
                mail.pop();
                Poll::Ready(None)
            }
            _ => {
                mail.wait(cx);
                Poll::Pending
            }
        });
        let connect = async { Some(Stream::connect(peer).await) };
        match future::or(connect, closed).await {
            None => {}
            Some(Err(_)) => io.event(|core, now| core.on_connect_failed(ci, generation, now)),
            Some(Ok(Stream::Tcp(mut stream))) => {
                let _ = stream.set_nodelay(true);
                io.event(|core, now| core.on_connected(ci, generation, now));
                serve(io, ci, generation, &mut stream, &mut buf).await;
            }
            Some(Ok(Stream::Unix(mut stream))) => {
                io.event(|core, now| core.on_connected(ci, generation, now));
                serve(io, ci, generation, &mut stream, &mut buf).await;
            }
        }
    }
}

/// A connected socket of either kind.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    async fn connect(peer: &Peer) -> glommio::Result<Stream, ()> {
        Ok(match peer {
            Peer::Tcp(a) => Stream::Tcp(TcpStream::connect(*a).await?),
            Peer::Unix(p) => Stream::Unix(UnixStream::connect(p).await?),
        })
    }
}

/// Carries out the core's sends on an open socket and reports what it
/// reads, until the core closes this generation or the socket ends.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    io: &Io<'_>,
    ci: u32,
    generation: u32,
    stream: &mut S,
    buf: &mut [u8],
) {
    let mail = &io.mail[ci as usize];
    // The send in progress: bytes written so far.
    let mut writing: Option<usize> = None;
    future::poll_fn(|cx| {
        loop {
            while let Some(a) = mail.front() {
                match a {
                    Action::Send { generation: g, .. } if g == generation => {
                        mail.pop();
                        // The core sends again only after an ack.
                        writing = Some(0);
                        io.core.borrow_mut().stamp(io.now());
                    }
                    Action::Close { generation: g, .. } if g == generation => {
                        mail.pop();
                        return Poll::Ready(());
                    }
                    // The next socket's connect: this one is finished.
                    Action::Connect { .. } => return Poll::Ready(()),
                    _ => mail.pop(),
                }
            }
            let mut progressed = false;
            if let Some(off) = writing {
                let (res, len) = {
                    let core = io.core.borrow();
                    let bytes = core.send_bytes(ci);
                    (
                        Pin::new(&mut *stream).poll_write(cx, &bytes[off..]),
                        bytes.len(),
                    )
                };
                match res {
                    Poll::Ready(Ok(k)) => {
                        progressed = true;
                        if off + k >= len {
                            writing = None;
                            io.event(|core, now| core.on_sent(ci, generation, now));
                        } else {
                            writing = Some(off + k);
                        }
                    }
                    Poll::Ready(Err(e)) => {
                        writing = None;
                        io.event(|core, now| core.on_send_failed(ci, generation, errno(&e), now));
                        return Poll::Ready(());
                    }
                    Poll::Pending => {}
                }
            }
            match Pin::new(&mut *stream).poll_read(cx, buf) {
                Poll::Ready(Ok(0)) => {
                    io.event(|core, now| core.on_eof(ci, generation, now));
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(k)) => {
                    progressed = true;
                    let data = &buf[..k];
                    io.event(|core, now| core.on_received(ci, generation, data, now));
                }
                Poll::Ready(Err(e)) => {
                    io.event(|core, now| core.on_recv_failed(ci, generation, errno(&e), now));
                    return Poll::Ready(());
                }
                Poll::Pending => {}
            }
            if !progressed {
                mail.wait(cx);
                return Poll::Pending;
            }
        }
    })
    .await
}
