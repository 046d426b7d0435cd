//! A UDP relay that makes a bad network out of loopback, for the HTTP/3
//! tests: it listens on 127.0.0.1, forwards each client's datagrams to the
//! server from a socket of that client's own (so the server's replies can
//! be told apart and sent back to the right client), and on the way drops,
//! delays and reorders them. There is no netem here (design note §4).
//!
//! Per direction: drop a percentage, decided by a seeded generator of that
//! direction's own (the same seed and the same datagrams arriving in the
//! same order that way drop the same ones, whatever the other way does);
//! hold every Nth datagram back until the next one of that flow and
//! direction has gone (or `hold_max` passed with none); then delay each by
//! a fixed time. One thread, blocked in poll(2) between datagrams.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What happens to datagrams going one way.
#[derive(Debug, Clone, Copy, Default)]
pub struct Impairment {
    /// Percentage of datagrams dropped, 0 to 100.
    pub drop_percent: f64,
    /// Hold every Nth datagram back behind the next (0: never).
    pub reorder_every: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    pub to_server: Impairment,
    pub to_client: Impairment,
    /// Added to every datagram, both ways.
    pub delay: Duration,
    /// How long a held datagram waits for a next one before it goes anyway.
    pub hold_max: Duration,
    pub seed: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            to_server: Impairment::default(),
            to_client: Impairment::default(),
            delay: Duration::ZERO,
            hold_max: Duration::from_millis(20),
            seed: 1,
        }
    }
}

/// Datagrams one way: each is forwarded or dropped; a forwarded one may
/// also have been reordered (sent after a later one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flow {
    pub forwarded: u64,
    pub dropped: u64,
    pub reordered: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayCounts {
    pub to_server: Flow,
    pub to_client: Flow,
}

pub struct UdpRelay {
    pub addr: SocketAddr,
    counts: Arc<Mutex<RelayCounts>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpRelay {
    /// A relay on 127.0.0.1 (a port of its own) to `server`.
    pub fn start(server: SocketAddr, config: RelayConfig) -> std::io::Result<UdpRelay> {
        let listen = UdpSocket::bind("127.0.0.1:0")?;
        listen.set_nonblocking(true)?;
        let addr = listen.local_addr()?;
        let counts = Arc::new(Mutex::new(RelayCounts::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut relay = Relay {
            listen,
            server,
            config,
            rng: [config.seed, config.seed ^ 0x5eed_0fc1_1e47],
            clients: Vec::new(),
            counts: counts.clone(),
            queue: VecDeque::new(),
        };
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("udp-relay".into())
            .spawn(move || relay.run(&stopping))?;
        Ok(UdpRelay {
            addr,
            counts,
            stop,
            thread: Some(thread),
        })
    }

    pub fn counts(&self) -> RelayCounts {
        *self.counts.lock().expect("relay counts")
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    ToServer,
    ToClient,
}

/// One client: its address and the socket that speaks for it to the server.
struct Client {
    addr: SocketAddr,
    upstream: UdpSocket,
    /// Datagrams seen per direction (for every Nth), and the one held back.
    seen: [u32; 2],
    held: [Option<(Vec<u8>, Instant)>; 2],
}

/// A datagram waiting out its delay.
struct Due {
    at: Instant,
    client: usize,
    dir: Dir,
    data: Vec<u8>,
}

struct Relay {
    listen: UdpSocket,
    server: SocketAddr,
    config: RelayConfig,
    /// One generator per direction.
    rng: [u64; 2],
    clients: Vec<Client>,
    counts: Arc<Mutex<RelayCounts>>,
    /// Due times only grow (one fixed delay), so this stays in order.
    queue: VecDeque<Due>,
}

impl Relay {
    fn run(&mut self, stop: &AtomicBool) {
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            self.wait();
            while let Ok((n, from)) = self.listen.recv_from(&mut buf) {
                let client = self.client(from);
                self.arrive(client, Dir::ToServer, &buf[..n]);
            }
            for c in 0..self.clients.len() {
                while let Ok(n) = self.clients[c].upstream.recv(&mut buf) {
                    self.arrive(c, Dir::ToClient, &buf[..n]);
                }
            }
            self.release_held();
            self.send_due();
        }
    }

    /// Blocks until a socket is readable, the next datagram is due, a held
    /// one must go, or 20 ms pass (to notice `stop`).
    fn wait(&self) {
        let now = Instant::now();
        let mut until = now + Duration::from_millis(20);
        if let Some(d) = self.queue.front() {
            until = until.min(d.at);
        }
        for c in &self.clients {
            for (_, since) in c.held.iter().flatten() {
                until = until.min(*since + self.config.hold_max);
            }
        }
        let mut fds: Vec<libc::pollfd> = std::iter::once(self.listen.as_raw_fd())
            .chain(self.clients.iter().map(|c| c.upstream.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // Round up: a poll that wakes a little early would spin.
        let ms = until
            .saturating_duration_since(now)
            .as_micros()
            .div_ceil(1000) as i32;
        // SAFETY: `fds` is a valid array of pollfd of the given length,
        // for sockets this relay owns.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    }

    fn client(&mut self, from: SocketAddr) -> usize {
        if let Some(i) = self.clients.iter().position(|c| c.addr == from) {
            return i;
        }
        let upstream = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.connect(self.server).map(|()| s))
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .expect("relay: a socket for a new client");
        self.clients.push(Client {
            addr: from,
            upstream,
            seen: [0; 2],
            held: [None, None],
        });
        self.clients.len() - 1
    }

    /// splitmix64: small, seeded, the same sequence everywhere.
    fn next_random(&mut self, dir: Dir) -> u64 {
        let state = &mut self.rng[dir as usize];
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn arrive(&mut self, client: usize, dir: Dir, data: &[u8]) {
        let imp = match dir {
            Dir::ToServer => self.config.to_server,
            Dir::ToClient => self.config.to_client,
        };
        // A uniform draw in [0, 100) against the percentage.
        let draw = (self.next_random(dir) >> 11) as f64 / (1u64 << 53) as f64 * 100.0;
        if draw < imp.drop_percent {
            self.flow(dir, |f| f.dropped += 1);
            return;
        }
        let now = Instant::now();
        let d = dir as usize;
        let c = &mut self.clients[client];
        c.seen[d] += 1;
        if imp.reorder_every > 0
            && c.seen[d].is_multiple_of(imp.reorder_every)
            && c.held[d].is_none()
        {
            c.held[d] = Some((data.to_vec(), now));
            return;
        }
        let held = c.held[d].take();
        self.schedule(client, dir, data.to_vec(), now);
        if let Some((late, _)) = held {
            self.flow(dir, |f| f.reordered += 1);
            self.schedule(client, dir, late, now);
        }
    }

    /// Held datagrams that waited `hold_max` for a next one go as they are.
    fn release_held(&mut self) {
        let now = Instant::now();
        for c in 0..self.clients.len() {
            for (d, dir) in [(0, Dir::ToServer), (1, Dir::ToClient)] {
                let expired = matches!(&self.clients[c].held[d],
                    Some((_, since)) if now >= *since + self.config.hold_max);
                if expired {
                    let (data, _) = self.clients[c].held[d].take().expect("held");
                    self.schedule(c, dir, data, now);
                }
            }
        }
    }

    fn schedule(&mut self, client: usize, dir: Dir, data: Vec<u8>, now: Instant) {
        self.queue.push_back(Due {
            at: now + self.config.delay,
            client,
            dir,
            data,
        });
    }

    fn send_due(&mut self) {
        let now = Instant::now();
        while self.queue.front().is_some_and(|d| d.at <= now) {
            let due = self.queue.pop_front().expect("front");
            let c = &self.clients[due.client];
            // A full socket buffer or a refused port loses the datagram, as
            // a network would; it has still left the relay.
            let _ = match due.dir {
                Dir::ToServer => c.upstream.send(&due.data),
                Dir::ToClient => self.listen.send_to(&due.data, c.addr),
            };
            self.flow(due.dir, |f| f.forwarded += 1);
        }
    }

    fn flow(&self, dir: Dir, f: impl FnOnce(&mut Flow)) {
        let mut counts = self.counts.lock().expect("relay counts");
        f(match dir {
            Dir::ToServer => &mut counts.to_server,
            Dir::ToClient => &mut counts.to_client,
        });
    }
}
