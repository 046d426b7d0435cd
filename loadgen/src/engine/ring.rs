//! io_uring setup (with feature fallback) and the provided-buffer ring that
//! multishot receives draw from.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;
use io_uring::types::BufRingEntry;

/// Which setup flags the kernel accepted, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
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

/// A ring of `count` receive buffers of `size` bytes registered with the
/// kernel as buffer group `bgid`. The kernel picks a buffer per receive;
/// we hand it back with [`BufRing::recycle`] once the bytes are parsed.
pub struct BufRing {
    ring: *mut BufRingEntry,
    ring_layout: Layout,
    bufs: Box<[u8]>,
    size: usize,
    mask: u16,
    tail: u16,
    pub bgid: u16,
}

impl BufRing {
    pub fn new(uring: &IoUring, count: u16, size: usize, bgid: u16) -> io::Result<BufRing> {
        assert!(
            count.is_power_of_two(),
            "buffer count must be a power of two"
        );
        let ring_layout =
            Layout::from_size_align(count as usize * std::mem::size_of::<BufRingEntry>(), 4096)
                .map_err(io::Error::other)?;
        // SAFETY: the layout has a non-zero size (count ≥ 1).
        let ring = unsafe { alloc_zeroed(ring_layout) } as *mut BufRingEntry;
        if ring.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut br = BufRing {
            ring,
            ring_layout,
            bufs: vec![0u8; count as usize * size].into_boxed_slice(),
            size,
            mask: count - 1,
            tail: 0,
            bgid,
        };
        // SAFETY: the ring memory is page-aligned, zeroed, sized for `count`
        // entries and lives until `Drop`, after which the kernel no longer
        // uses it (the ring is unregistered when the io_uring is dropped,
        // which happens before this BufRing in the shard).
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

    /// The bytes the kernel wrote into buffer `bid`.
    #[inline]
    pub fn get(&self, bid: u16, len: usize) -> &[u8] {
        let start = bid as usize * self.size;
        &self.bufs[start..start + len.min(self.size)]
    }

    /// Queues buffer `bid` for reuse; visible to the kernel on `publish`.
    #[inline]
    pub fn recycle(&mut self, bid: u16) {
        let idx = (self.tail & self.mask) as usize;
        let addr = self.bufs.as_ptr() as u64 + (bid as usize * self.size) as u64;
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
    pub fn publish(&self) {
        // SAFETY: the tail field lives in the first entry, which is inside
        // our allocation; the kernel reads it with acquire semantics, and
        // u16 has the same layout as AtomicU16.
        unsafe {
            let tail = BufRingEntry::tail(self.ring) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout.
        unsafe { dealloc(self.ring as *mut u8, self.ring_layout) };
    }
}
