//! The requests one connection holds, in the order they were queued: first
//! those in flight (sent, or handed to the engine), then those queued
//! (taken from the quota, waiting for the send). Each sits in a *slot*
//! (`0..depth`) that keeps its send times and which scenario request it
//! is. HTTP/1.1 answers in order, so only the oldest ever leaves before
//! the others; an HTTP/2 stream is known by its slot and may end in any
//! order. A doubly linked list through the slots serves both in O(1).

const NIL: u16 = u16::MAX;

/// `sent_at` of a request not yet stamped (queued, or handed to the engine
/// since its last `stamp`).
const UNSTAMPED: u64 = u64::MAX;

/// `first_byte_at` of a request whose response has not begun.
const NO_BYTE: u64 = u64::MAX;

/// The most slots a connection can have (`--pipeline`, `--streams`).
pub const MAX_SLOTS: usize = NIL as usize;

pub struct Slots {
    /// Send times (ns since shard start), by slot.
    sent_at: Box<[u64]>,
    /// Intended send times (open loop), by slot.
    intended_at: Box<[u64]>,
    /// When each slot's response began to arrive ([`NO_BYTE`]: not yet),
    /// for `--request-log`'s time to first byte.
    first_byte_at: Box<[u64]>,
    /// Which scenario request each slot holds.
    which: Box<[u16]>,
    next: Box<[u16]>,
    prev: Box<[u16]>,
    /// Oldest and newest held slot.
    head: u16,
    tail: u16,
    /// Slots holding nothing.
    free: Vec<u16>,
    /// Requests sent (or handed to the engine) and not yet answered.
    pub inflight: u32,
    /// The last `unstamped` of the in-flight requests were handed to the
    /// engine since its last `stamp`, and get that send time.
    pub unstamped: u32,
    /// Requests taken from the quota but waiting for the send.
    pub queued: u32,
}

impl Slots {
    pub fn new(depth: usize) -> Slots {
        assert!((1..=MAX_SLOTS).contains(&depth), "depth {depth}");
        Slots {
            sent_at: vec![0; depth].into_boxed_slice(),
            intended_at: vec![0; depth].into_boxed_slice(),
            first_byte_at: vec![NO_BYTE; depth].into_boxed_slice(),
            which: vec![0; depth].into_boxed_slice(),
            next: vec![NIL; depth].into_boxed_slice(),
            prev: vec![NIL; depth].into_boxed_slice(),
            head: NIL,
            tail: NIL,
            // Popped from the end: slot 0 first.
            free: (0..depth as u16).rev().collect(),
            inflight: 0,
            unstamped: 0,
            queued: 0,
        }
    }

    #[inline]
    pub fn depth(&self) -> u32 {
        self.sent_at.len() as u32
    }

    /// Requests held, in flight or queued.
    #[inline]
    pub fn held(&self) -> u32 {
        self.inflight + self.queued
    }

    /// Send time of the oldest in-flight request, if it has one yet.
    #[inline]
    pub fn oldest_sent_at(&self) -> Option<u64> {
        (self.inflight > self.unstamped).then(|| self.sent_at[self.head as usize])
    }

    /// The oldest in-flight request's slot.
    #[inline]
    pub fn oldest(&self) -> Option<u32> {
        (self.inflight > 0).then_some(self.head as u32)
    }

    /// Queues one request meant to be sent at `intended` (ns); the caller
    /// checked there is a free slot. Returns its slot.
    #[inline]
    pub fn queue(&mut self, intended: u64) -> u32 {
        let s = self.free.pop().expect("a free slot");
        let i = s as usize;
        self.intended_at[i] = intended;
        self.sent_at[i] = UNSTAMPED;
        self.first_byte_at[i] = NO_BYTE;
        self.next[i] = NIL;
        self.prev[i] = self.tail;
        match self.tail {
            NIL => self.head = s,
            t => self.next[t as usize] = s,
        }
        self.tail = s;
        self.queued += 1;
        s as u32
    }

    /// Calls `f` on each queued request's slot, oldest first, and keeps
    /// which scenario request it returns for the slot.
    pub fn assign_queued(&mut self, mut f: impl FnMut(u32) -> u16) {
        let mut s = self.tail;
        for _ in 1..self.queued {
            s = self.prev[s as usize];
        }
        for _ in 0..self.queued {
            self.which[s as usize] = f(s as u32);
            s = self.next[s as usize];
        }
    }

    /// Moves the queued requests in flight (their send is with the engine).
    /// True when they are the connection's first unstamped ones: the
    /// caller lists it for the next stamp, once.
    #[inline]
    pub fn mark_sent(&mut self) -> bool {
        let first = self.unstamped == 0 && self.queued > 0;
        self.inflight += self.queued;
        self.unstamped += self.queued;
        self.queued = 0;
        first
    }

    /// Gives the newest `unstamped` in-flight requests send time `t`.
    #[inline]
    pub fn stamp(&mut self, t: u64) {
        let mut s = self.tail;
        for _ in 0..self.queued {
            s = self.prev[s as usize];
        }
        for _ in 0..self.unstamped {
            self.sent_at[s as usize] = t;
            s = self.prev[s as usize];
        }
        self.unstamped = 0;
    }

    /// When the request in `slot` was sent (it was: its answer came).
    #[inline]
    pub fn sent_at(&self, slot: u32) -> u64 {
        self.sent_at[slot as usize]
    }

    /// The response to the request in `slot` began to arrive at `t`.
    #[inline]
    pub fn note_first_byte(&mut self, slot: u32, t: u64) {
        self.first_byte_at[slot as usize] = t;
    }

    /// When the response to the request in `slot` began, if it has.
    #[inline]
    pub fn first_byte_at(&self, slot: u32) -> Option<u64> {
        Some(self.first_byte_at[slot as usize]).filter(|&t| t != NO_BYTE)
    }

    /// Which scenario request the oldest in-flight one is.
    #[inline]
    pub fn oldest_which(&self) -> u16 {
        self.which[self.head as usize]
    }

    /// Removes the in-flight request in `slot`, returning its actual and
    /// intended send times and which scenario request it was.
    #[inline]
    pub fn pop(&mut self, slot: u32) -> (u64, u64, u16) {
        let i = slot as usize;
        let (p, n) = (self.prev[i], self.next[i]);
        match p {
            NIL => self.head = n,
            p => self.next[p as usize] = n,
        }
        match n {
            NIL => self.tail = p,
            n => self.prev[n as usize] = p,
        }
        self.free.push(slot as u16);
        self.inflight -= 1;
        // HTTP/2 pops in any order: a request given back in the turn it
        // was sent leaves the other unstamped ones unstamped, and the
        // stamped ones as they were.
        if self.sent_at[i] == UNSTAMPED {
            self.unstamped -= 1;
        }
        (self.sent_at[i], self.intended_at[i], self.which[i])
    }

    /// Removes the oldest in-flight request (see [`Slots::pop`]).
    #[inline]
    pub fn pop_oldest(&mut self) -> (u64, u64, u16) {
        self.pop(self.head as u32)
    }

    /// Intended send times of the requests in flight or queued, oldest
    /// first.
    pub fn pending_intended(&self) -> impl Iterator<Item = u64> + '_ {
        std::iter::successors((self.head != NIL).then_some(self.head), |&s| {
            let n = self.next[s as usize];
            (n != NIL).then_some(n)
        })
        .map(|s| self.intended_at[s as usize])
    }

    /// Forgets everything held; returns how many requests were in flight
    /// or queued (the caller decides their fate).
    pub fn clear(&mut self) -> u32 {
        let lost = self.held();
        let depth = self.depth() as u16;
        self.free.clear();
        self.free.extend((0..depth).rev());
        self.head = NIL;
        self.tail = NIL;
        self.inflight = 0;
        self.unstamped = 0;
        self.queued = 0;
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(s: &mut Slots) -> Vec<u32> {
        let mut v = Vec::new();
        s.assign_queued(|slot| {
            v.push(slot);
            7
        });
        v
    }

    /// HTTP/2 gives back a stream in the turn it was sent (a GOAWAY read
    /// after the send): the requests sent before keep their send times,
    /// and the other new one still gets the next stamp.
    #[test]
    fn giving_back_an_unstamped_request_leaves_the_others_stamps() {
        let mut s = Slots::new(4);
        let a = s.queue(0);
        s.mark_sent();
        s.stamp(100);
        let b = s.queue(0);
        let c = s.queue(0);
        s.mark_sent();
        assert_eq!(s.unstamped, 2);
        s.pop(b);
        assert_eq!(s.unstamped, 1);
        s.stamp(200);
        assert_eq!(s.sent_at(a), 100, "a was sent before");
        assert_eq!(s.sent_at(c), 200);
        assert_eq!(s.oldest_sent_at(), Some(100));
        // And the newest: the one before it stays unstamped.
        let d = s.queue(0);
        let e = s.queue(0);
        s.mark_sent();
        s.pop(e);
        s.stamp(300);
        assert_eq!([s.sent_at(a), s.sent_at(c), s.sent_at(d)], [100, 200, 300]);
    }

    /// Queue, send, stamp and pop in any order: every slot is held at most
    /// once, the list stays in queue order, and counts agree.
    #[test]
    fn out_of_order_pops_keep_the_queue_order() {
        let mut s = Slots::new(4);
        let a = s.queue(10);
        let b = s.queue(20);
        assert_eq!(queued(&mut s), [a, b]);
        s.mark_sent();
        s.stamp(100);
        let c = s.queue(30);
        assert_eq!(queued(&mut s), [c]);
        s.mark_sent();
        s.stamp(200);
        assert_eq!(s.oldest_sent_at(), Some(100));
        // b ends first (an HTTP/2 stream), then the oldest.
        assert_eq!(s.pop(b), (100, 20, 7));
        assert_eq!(s.pending_intended().collect::<Vec<_>>(), [10, 30]);
        let d = s.queue(40);
        assert_eq!(d, b, "the freed slot is reused");
        assert_eq!(s.pop_oldest(), (100, 10, 7));
        assert_eq!(s.oldest(), Some(c));
        assert_eq!(s.oldest_sent_at(), Some(200));
        assert_eq!((s.inflight, s.queued), (1, 1));
        assert_eq!(s.pending_intended().collect::<Vec<_>>(), [30, 40]);
        assert_eq!(s.clear(), 2);
        assert_eq!(s.pending_intended().count(), 0);
        assert_eq!(s.oldest(), None);
        for k in 0..4 {
            s.queue(k);
        }
        assert_eq!(queued(&mut s).len(), 4);
    }

    #[test]
    fn first_bytes_belong_to_their_slot_until_it_is_reused() {
        let mut s = Slots::new(2);
        let a = s.queue(0);
        let b = s.queue(0);
        s.mark_sent();
        s.stamp(5);
        assert_eq!(s.first_byte_at(a), None);
        s.note_first_byte(b, 7);
        assert_eq!((s.first_byte_at(a), s.first_byte_at(b)), (None, Some(7)));
        s.pop(b);
        assert_eq!(s.queue(0), b);
        assert_eq!(s.first_byte_at(b), None, "a new request in the slot");
    }

    #[test]
    fn only_the_newest_sends_are_stamped() {
        let mut s = Slots::new(3);
        s.queue(0);
        s.mark_sent();
        s.stamp(5);
        s.queue(0);
        s.mark_sent();
        // Queued behind a send still waiting for its ack.
        s.queue(0);
        s.stamp(9);
        assert_eq!(s.pop_oldest().0, 5);
        assert_eq!(s.pop_oldest().0, 9);
        assert_eq!((s.inflight, s.queued), (0, 1));
    }
}
