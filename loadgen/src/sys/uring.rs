//! io_uring setup (with feature fallback) and the memory the kernel shares
//! with us: the submission entries' targets and the provided-buffer ring
//! that multishot receives write into.
//!
//! [`Uring`] owns the ring and its buffer ring together, so the buffers
//! can never be freed while the kernel may still write into them.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::types::BufRingEntry;
use io_uring::{IoUring, squeue, types};

use super::udp::{self, MultiRecv};

/// Which io_uring setup flags the kernel accepted, best first (in
/// reports as `ring_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RingMode {
    /// `SINGLE_ISSUER | DEFER_TASKRUN` (Linux ≥ 6.1): completions are only
    /// posted when we ask, so the shard is never interrupted mid-turn.
    DeferTaskrun,
    /// `COOP_TASKRUN` (Linux ≥ 5.19): no IPI to run task work.
    CoopTaskrun,
    /// No setup flags.
    Plain,
}

impl RingMode {
    pub fn describe(self) -> &'static str {
        match self {
            RingMode::DeferTaskrun => "SINGLE_ISSUER|DEFER_TASKRUN",
            RingMode::CoopTaskrun => "COOP_TASKRUN",
            RingMode::Plain => "no setup flags",
        }
    }

    /// The weaker of two modes.
    pub fn weakest(self, other: RingMode) -> RingMode {
        if other as u8 > self as u8 {
            other
        } else {
            self
        }
    }
}

/// Builds a ring with the best flags the kernel takes, starting at `best`.
/// Must be called on the thread that will submit to it (SINGLE_ISSUER).
pub fn build_ring(entries: u32, best: RingMode) -> io::Result<(IoUring, RingMode)> {
    let cq = entries.saturating_mul(4);
    let mut last_err = None;
    for mode in [
        RingMode::DeferTaskrun,
        RingMode::CoopTaskrun,
        RingMode::Plain,
    ] {
        if (mode as u8) < (best as u8) {
            continue;
        }
        let mut b = IoUring::builder();
        b.setup_cqsize(cq).setup_clamp();
        match mode {
            RingMode::DeferTaskrun => {
                b.setup_single_issuer().setup_defer_taskrun();
            }
            RingMode::CoopTaskrun => {
                b.setup_coop_taskrun();
            }
            RingMode::Plain => {}
        }
        match b.build(entries) {
            Ok(ring) => return Ok((ring, mode)),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no io_uring mode allowed")))
}

/// Why [`Uring::new`] failed.
#[derive(Debug)]
pub enum SetupError {
    /// No ring at all.
    Ring(io::Error),
    /// A ring, but no provided-buffer ring (Linux < 5.19).
    BufRing(io::Error),
}

/// How [`Uring::enter`] waits: for `want` completions or `min_wait_us`,
/// whichever comes first, and then for the first (the kernel's min-wait).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchWait {
    pub want: u32,
    pub min_wait_us: u32,
}

impl BatchWait {
    /// Return with the first completion.
    pub const NONE: BatchWait = BatchWait {
        want: 1,
        min_wait_us: 0,
    };
}

/// One completion, copied out of the completion queue.
#[derive(Debug, Clone, Copy, Default)]
pub struct Completion {
    pub user_data: u64,
    pub result: i32,
    pub flags: u32,
}

/// An io_uring and the receive buffers registered with it.
pub struct Uring {
    ring: IoUring,
    bufs: BufRing,
    /// UDP's buffers (a second group: a datagram burst with GRO needs far
    /// larger buffers than a stream's reads) and the header their
    /// multishot receives share; see [`Uring::enable_udp`].
    udp: Option<(BufRing, MultiRecv)>,
    /// UDP receives whose payload did not fit a buffer (the rest is lost).
    pub udp_truncated: u64,
    pub mode: RingMode,
    /// The kernel takes a min-wait with a wait (Linux ≥ 6.12).
    min_wait: bool,
    /// Operations submitted whose final completion has not been reaped.
    /// The caller keeps it (only it knows which completions are final);
    /// `Drop` trusts it to decide whether the buffers may be freed.
    pub in_flight: u64,
    /// Tests: every enter after this many fails (a ring that breaks in
    /// the middle of a run).
    #[cfg(test)]
    pub fail_enter_after: Option<u32>,
}

impl Uring {
    /// A ring of `entries` submission slots with `buf_count` receive
    /// buffers of `buf_size` bytes in buffer group `bgid`.
    pub fn new(
        entries: u32,
        best: RingMode,
        buf_count: u16,
        buf_size: usize,
        bgid: u16,
    ) -> Result<Uring, SetupError> {
        let (ring, mode) = build_ring(entries, best).map_err(SetupError::Ring)?;
        let bufs = BufRing::new(&ring, buf_count, buf_size, bgid).map_err(SetupError::BufRing)?;
        Ok(Uring {
            min_wait: ring.params().is_feature_min_timeout(),
            ring,
            bufs,
            udp: None,
            udp_truncated: 0,
            mode,
            in_flight: 0,
            #[cfg(test)]
            fail_enter_after: None,
        })
    }

    pub fn bgid(&self) -> u16 {
        self.bufs.bgid
    }

    /// Registers `count` UDP receive buffers of `size` bytes as buffer
    /// group `bgid` (not the stream group's). Each buffer gives
    /// [`udp::RECV_OVERHEAD`] bytes to the kernel's header and the control
    /// message; the rest is payload: 1500 bytes of it take one datagram, a
    /// GRO batch needs up to 64 KiB.
    pub fn enable_udp(&mut self, count: u16, size: usize, bgid: u16) -> io::Result<()> {
        if size <= udp::RECV_OVERHEAD || bgid == self.bufs.bgid || self.udp.is_some() {
            return Err(io::Error::other(
                "UDP buffers: one group, its own id, larger than the receive header",
            ));
        }
        let bufs = BufRing::new(&self.ring, count, size, bgid)?;
        self.udp = Some((bufs, MultiRecv::new()));
        Ok(())
    }

    /// The entry that arms a multishot UDP receive on `fd` into the UDP
    /// buffers (`None` before [`Self::enable_udp`]). Its completions name a
    /// buffer to read with [`Self::udp_received`] and then recycle with
    /// [`Self::udp_recycle`].
    pub fn udp_recv_entry(&self, fd: std::os::fd::RawFd) -> Option<squeue::Entry> {
        let (bufs, hdr) = self.udp.as_ref()?;
        Some(hdr.entry(fd, bufs.bgid))
    }

    /// The datagrams in UDP buffer `bid` (`len` from the completion), named
    /// by a completion just reaped and not yet recycled; truncation is
    /// counted in `udp_truncated`.
    pub fn udp_received(&mut self, bid: u16, len: usize) -> Option<udp::Received<'_>> {
        let (bufs, hdr) = self.udp.as_ref()?;
        let r = hdr.parse(bufs.get(bid, len))?;
        if r.truncated {
            self.udp_truncated += 1;
        }
        Some(r)
    }

    /// Hands UDP buffer `bid` back to the kernel (visible on
    /// [`Self::publish`]).
    pub fn udp_recycle(&mut self, bid: u16) {
        if let Some((bufs, _)) = &mut self.udp {
            bufs.recycle(bid);
        }
    }

    /// Queues `entry`; when the submission queue is full, submits what is
    /// queued first. Returns false when the kernel would not take it.
    ///
    /// # Safety
    /// Every buffer and address `entry` points to must stay valid, and not
    /// be written by us while the kernel reads it, until the operation's
    /// final completion is reaped (or, for a send that only completes on
    /// failure, until the bytes can no longer be sent: the socket is closed).
    pub unsafe fn push(&mut self, entry: &squeue::Entry) -> bool {
        loop {
            // SAFETY: the caller vouches for what the entry points to.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return true;
            }
            // The submission queue is full: hand it to the kernel now.
            if let Err(e) = self.ring.submit()
                && e.raw_os_error() != Some(libc::EBUSY)
            {
                return false;
            }
        }
    }

    /// Hands what is queued to the kernel without waiting (a send then
    /// leaves before the shard does something slow). An error leaves the
    /// entries queued for the next enter.
    pub fn submit(&mut self) {
        let _ = self.ring.submit();
    }

    /// No submission slot is free: the next push submits first.
    pub fn sq_full(&mut self) -> bool {
        self.ring.submission().is_full()
    }

    /// Submits everything queued and waits up to `timeout` for at least one
    /// completion. With DEFER_TASKRUN completions are only posted by an
    /// enter that waits, which a plain submit is not (a spin of plain
    /// submits once starved the receives), so a zero timeout still waits.
    ///
    /// `batch` (from `Core::batch_wait`) may ask it to wait for more; a
    /// kernel without min-wait waits for the first, as with
    /// [`BatchWait::NONE`].
    pub fn enter(&mut self, timeout: Duration, batch: BatchWait) -> io::Result<()> {
        #[cfg(test)]
        if let Some(n) = &mut self.fail_enter_after {
            if *n == 0 {
                return Err(io::Error::from_raw_os_error(libc::EBADFD));
            }
            *n -= 1;
        }
        let ts = types::Timespec::from(timeout);
        let batch = if self.min_wait {
            batch
        } else {
            BatchWait::NONE
        };
        let args = types::SubmitArgs::new()
            .timespec(&ts)
            .min_wait_usec(batch.min_wait_us);
        match self
            .ring
            .submitter()
            .submit_with_args(batch.want.max(1) as usize, &args)
        {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) => Ok(()),
                _ => Err(e),
            },
        }
    }

    /// Copies up to `out.len()` completions out of the queue, so the ring
    /// can be pushed to while they are handled.
    pub fn reap(&mut self, out: &mut [Completion]) -> usize {
        let mut n = 0;
        for cqe in &mut self.ring.completion() {
            out[n] = Completion {
                user_data: cqe.user_data(),
                result: cqe.result(),
                flags: cqe.flags(),
            };
            n += 1;
            if n == out.len() {
                break;
            }
        }
        n
    }

    /// The bytes the kernel wrote into buffer `bid` (named by a completion
    /// that was just reaped and not yet recycled).
    #[inline]
    pub fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        self.bufs.get(bid, len)
    }

    /// Hands buffer `bid` back to the kernel (visible on [`Self::publish`]).
    #[inline]
    pub fn recycle(&mut self, bid: u16) {
        self.bufs.recycle(bid);
    }

    #[inline]
    pub fn publish(&self) {
        self.bufs.publish();
        if let Some((bufs, _)) = &self.udp {
            bufs.publish();
        }
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        if self.in_flight == 0 {
            // Nothing can touch the buffers any more: take them back.
            let _ = self.ring.submitter().unregister_buf_ring(self.bufs.bgid);
            if let Some((bufs, _)) = &self.udp {
                let _ = self.ring.submitter().unregister_buf_ring(bufs.bgid);
            }
        } else {
            // Operations are still in flight after the caller's shutdown
            // window (a kernel that never completed a cancelled receive).
            // Only receives write our memory, and only into these buffers;
            // they may do so until the ring's teardown, which runs after
            // `close` returns. So the buffers are leaked, never freed: at
            // most `count × size` bytes per shard, once per run. The UDP
            // receive header is read by the kernel too: leaked with them.
            self.bufs.leak = true;
            if let Some((bufs, _)) = &mut self.udp {
                bufs.leak = true;
            }
            if let Some(udp) = self.udp.take() {
                std::mem::forget(udp);
            }
        }
        // `ring` drops next (closing it cancels what is left), then `bufs`.
    }
}

/// A ring of `count` receive buffers of `size` bytes registered with the
/// kernel as buffer group `bgid`. The kernel picks a buffer per receive;
/// we hand it back with [`BufRing::recycle`] once the bytes are parsed.
///
/// Both allocations are raw: the kernel writes into them behind any
/// reference Rust could hold, so we only ever make a slice of a buffer the
/// kernel has handed to us and not yet been given back.
struct BufRing {
    ring: *mut BufRingEntry,
    ring_layout: Layout,
    bufs: *mut u8,
    bufs_layout: Layout,
    size: usize,
    mask: u16,
    tail: u16,
    bgid: u16,
    leak: bool,
}

impl BufRing {
    fn new(uring: &IoUring, count: u16, size: usize, bgid: u16) -> io::Result<BufRing> {
        if !count.is_power_of_two() || size == 0 {
            return Err(io::Error::other(
                "buffer count must be a power of two and size non-zero",
            ));
        }
        let ring_layout =
            Layout::from_size_align(count as usize * std::mem::size_of::<BufRingEntry>(), 4096)
                .map_err(io::Error::other)?;
        let bufs_layout =
            Layout::from_size_align(count as usize * size, 64).map_err(io::Error::other)?;
        // SAFETY: both layouts have a non-zero size (count ≥ 1, size ≥ 1).
        let (ring, bufs) = unsafe { (alloc_zeroed(ring_layout), alloc_zeroed(bufs_layout)) };
        if ring.is_null() || bufs.is_null() {
            // SAFETY: whichever was allocated, with exactly its layout.
            unsafe {
                if !ring.is_null() {
                    dealloc(ring, ring_layout);
                }
                if !bufs.is_null() {
                    dealloc(bufs, bufs_layout);
                }
            }
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut br = BufRing {
            ring: ring as *mut BufRingEntry,
            ring_layout,
            bufs,
            bufs_layout,
            size,
            mask: count - 1,
            tail: 0,
            bgid,
            leak: false,
        };
        // SAFETY: the ring memory is page-aligned, zeroed and sized for
        // `count` entries. It stays allocated until `Drop`, which runs after
        // the owning `Uring` unregistered it (or never frees it, see there).
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(br.ring as u64, count, bgid, 0)?;
        }
        for bid in 0..count {
            br.recycle(bid);
        }
        br.publish();
        Ok(br)
    }

    #[inline]
    fn get(&self, bid: u16, len: usize) -> &[u8] {
        let bid = (bid & self.mask) as usize;
        // SAFETY: `bid` is inside the allocation (masked), and the caller
        // names a buffer the kernel completed and we have not recycled: the
        // kernel does not write it until it is recycled, which needs
        // `&mut self`, so no write can happen while this slice lives.
        unsafe { std::slice::from_raw_parts(self.bufs.add(bid * self.size), len.min(self.size)) }
    }

    #[inline]
    fn recycle(&mut self, bid: u16) {
        let idx = (self.tail & self.mask) as usize;
        let bid = bid & self.mask;
        let addr = self.bufs as u64 + (bid as usize * self.size) as u64;
        // SAFETY: idx ≤ mask < count, inside the ring allocation. The kernel
        // only reads entries between its head and our published tail, and
        // this slot is past the tail until `publish`.
        let entry = unsafe { &mut *self.ring.add(idx) };
        entry.set_addr(addr);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes recycled buffers visible to the kernel (one release store).
    #[inline]
    fn publish(&self) {
        // SAFETY: the tail field lives in the first entry, inside our
        // allocation; the kernel reads it with acquire semantics, and u16
        // has the layout of AtomicU16.
        unsafe {
            let tail = BufRingEntry::tail(self.ring) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leak {
            return;
        }
        // SAFETY: allocated in `new` with exactly these layouts, and no
        // longer registered with (or written by) the kernel.
        unsafe {
            dealloc(self.ring as *mut u8, self.ring_layout);
            dealloc(self.bufs, self.bufs_layout);
        }
    }
}
