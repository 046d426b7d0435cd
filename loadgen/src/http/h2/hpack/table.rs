//! The static table (RFC 7541 Appendix A) and the decoder's dynamic table.

use std::collections::VecDeque;

use super::huffman::{self, CODED_NAME_MAX};
use super::{ENTRY_OVERHEAD, eq_bytes};

/// Entries 1..=61; `STATIC[i - 1]` is index `i`.
pub(super) const STATIC: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// The longest static name ("access-control-allow-origin").
const LONGEST_NAME: usize = 27;

/// A perfect hash of the 52 distinct static names into 128 slots, for
/// `static_lookup`: the encoder looks a name up per field per templated
/// request, and one multiply and one compare beat a search. The multiplier
/// was found by trying random ones; `name_slots` refuses to compile if two
/// names share a slot.
const SLOT_MULTIPLIER: u32 = 0x74b8_b31b;
const SLOT_BITS: u32 = 7;

const fn name_slot(name: &[u8]) -> usize {
    let n = name.len();
    let key = (n as u32 & 0xff)
        | (name[0] as u32) << 8
        | (name[n / 2] as u32) << 16
        | (name[n - 1] as u32) << 24;
    (key.wrapping_mul(SLOT_MULTIPLIER) >> (32 - SLOT_BITS)) as usize
}

/// The static index of the first entry with each name, by `name_slot`.
static NAME_SLOTS: [u8; 1 << SLOT_BITS] = name_slots();

/// For each static index, how many entries in a row share its name (7 for
/// the first `:status`, 1 for most), so values are compared only there.
static RUN: [u8; 62] = runs();

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn name_slots() -> [u8; 1 << SLOT_BITS] {
    let mut t = [0u8; 1 << SLOT_BITS];
    let mut i = 0;
    while i < STATIC.len() {
        // Entries with the same name are adjacent: keep the first.
        if i == 0 || !same(STATIC[i - 1].0, STATIC[i].0) {
            let slot = name_slot(STATIC[i].0);
            assert!(
                t[slot] == 0,
                "two static names share a slot: pick another multiplier"
            );
            t[slot] = (i + 1) as u8;
        }
        i += 1;
    }
    t
}

const fn runs() -> [u8; 62] {
    let mut r = [0u8; 62];
    let mut i = STATIC.len();
    while i >= 1 {
        r[i] = if i < STATIC.len() && same(STATIC[i - 1].0, STATIC[i].0) {
            r[i + 1] + 1
        } else {
            1
        };
        i -= 1;
    }
    r
}

/// The static table entry for `name` (the first one with that name), and
/// the index of the entry that also matches `value`, if any.
pub(super) fn static_lookup(name: &[u8], value: &[u8]) -> Option<(usize, Option<usize>)> {
    if name.is_empty() || name.len() > LONGEST_NAME {
        return None;
    }
    let i = NAME_SLOTS[name_slot(name)] as usize;
    if i == 0 || !eq_bytes(STATIC[i - 1].0, name) {
        return None;
    }
    let full = (i..i + RUN[i] as usize).find(|&j| eq_bytes(STATIC[j - 1].1, value));
    Some((i, full))
}

/// The static names Huffman-coded, by static index - 1.
static CODED_NAMES: [([u8; CODED_NAME_MAX], usize); 61] = coded_names();

/// Static indexes of the distinct names by coded length, 0-terminated.
static CODED_BY_LEN: [[u8; CODED_PER_LEN]; CODED_NAME_MAX + 1] = coded_by_len();

/// The most distinct static names of one coded length; more fails to
/// compile.
const CODED_PER_LEN: usize = 8;

const fn coded_names() -> [([u8; CODED_NAME_MAX], usize); 61] {
    let mut t = [([0u8; CODED_NAME_MAX], 0); 61];
    let mut i = 0;
    while i < STATIC.len() {
        t[i] = huffman::encode_name(STATIC[i].0);
        i += 1;
    }
    t
}

const fn coded_by_len() -> [[u8; CODED_PER_LEN]; CODED_NAME_MAX + 1] {
    let names = coded_names();
    let mut t = [[0u8; CODED_PER_LEN]; CODED_NAME_MAX + 1];
    let mut i = 0;
    while i < STATIC.len() {
        if i == 0 || !same(STATIC[i - 1].0, STATIC[i].0) {
            let len = names[i].1;
            let mut k = 0;
            while t[len][k] != 0 {
                k += 1;
            }
            t[len][k] = (i + 1) as u8;
        }
        i += 1;
    }
    t
}

/// The static name whose Huffman coding is `wire`. Servers send common
/// names as coded literals rather than static indexes (nginx 1.22 does
/// for etag and accept-ranges); this spares decoding them every response.
pub(super) fn static_name_coded(wire: &[u8]) -> Option<&'static [u8]> {
    let cands = CODED_BY_LEN.get(wire.len())?;
    cands
        .iter()
        .take_while(|&&i| i != 0)
        .map(|&i| i as usize - 1)
        .find(|&i| eq_bytes(&CODED_NAMES[i].0[..wire.len()], wire))
        .map(|i| STATIC[i].0)
}

/// One dynamic entry: where its bytes start in the ring (name, value, and
/// the value's Huffman coding when it came coded and kept), and the first
/// 8 coded bytes, to find the same coded value when it comes again.
#[derive(Clone, Copy)]
struct Entry {
    at: u32,
    name_len: u32,
    value_len: u32,
    /// `NOT_KEPT` when the value came raw, or coded longer than itself.
    wire_len: u32,
    wire_head: u64,
}

const NOT_KEPT: u32 = u32::MAX;

/// How many of the newest entries `find_coded` looks through: nginx
/// inserts the same five fields with every response.
const RECENT: usize = 16;

/// Up to the first 8 bytes of `wire`, zero-padded.
fn wire_head(wire: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let k = wire.len().min(8);
    b[..k].copy_from_slice(&wire[..k]);
    u64::from_le_bytes(b)
}

/// The decoder's dynamic table. Entries live back to back in one byte
/// buffer allocated once, oldest first: name, value, and the value's
/// Huffman coding when it came coded no longer than itself (so an entry
/// takes at most twice its name and value, and the live bytes at most
/// twice the limit). Eviction only moves the start; when the next entry
/// does not fit at the end, the live bytes move to the front. The buffer
/// is three times the limit, so that happens after at least `limit` bytes
/// of inserts, and each inserted byte is moved at most twice on average.
pub(super) struct DynamicTable {
    bytes: Vec<u8>,
    /// `bytes` never grows past this (its allocation is at least this).
    cap: usize,
    /// Oldest first.
    entries: VecDeque<Entry>,
    /// HPACK size: the sum of name + value + 32 over the entries.
    size: usize,
    /// The current maximum size, set by size updates; at most `limit`.
    max: usize,
    /// What we allowed the peer (SETTINGS_HEADER_TABLE_SIZE).
    limit: usize,
}

impl DynamicTable {
    pub(super) fn new(limit: usize) -> Self {
        // SETTINGS values are 32-bit; the division keeps offsets in u32.
        let limit = limit.min(u32::MAX as usize / 3);
        let cap = limit * 3;
        DynamicTable {
            bytes: Vec::with_capacity(cap),
            cap,
            entries: VecDeque::with_capacity(limit / ENTRY_OVERHEAD + 1),
            size: 0,
            max: limit,
            limit,
        }
    }

    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    pub(super) fn size(&self) -> usize {
        self.size
    }

    pub(super) fn max_size(&self) -> usize {
        self.max
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Entry `i`, 1 being the newest (dynamic index 62 on the wire).
    pub(super) fn get(&self, i: usize) -> Option<(&[u8], &[u8])> {
        let e = self.entries.get(self.entries.len().checked_sub(i)?)?;
        let at = e.at as usize;
        let mid = at + e.name_len as usize;
        Some((
            &self.bytes[at..mid],
            &self.bytes[mid..mid + e.value_len as usize],
        ))
    }

    /// The value of a recent entry whose value came coded as `wire`, which
    /// is then what `wire` decodes to: a server that inserts the same field
    /// with every response (nginx does) costs a compare instead of a
    /// Huffman decode.
    pub(super) fn find_coded(&self, wire: &[u8]) -> Option<&[u8]> {
        let (len, head) = (wire.len() as u32, wire_head(wire));
        self.entries.iter().rev().take(RECENT).find_map(|e| {
            if e.wire_len != len || e.wire_head != head {
                return None;
            }
            let value = e.at as usize + e.name_len as usize;
            let coded = value + e.value_len as usize;
            eq_bytes(&self.bytes[coded..coded + wire.len()], wire)
                .then(|| &self.bytes[value..coded])
        })
    }

    /// A size update (RFC 7541 §6.3); the caller checked it against `limit`.
    pub(super) fn set_max_size(&mut self, max: usize) {
        self.max = max;
        while self.size > self.max {
            self.evict_oldest();
        }
    }

    /// Adds an entry (RFC 7541 §4.4): evicts the oldest entries until it
    /// fits, or empties the table when it is larger than the table. The
    /// caller must not pass bytes of the table itself (it copies a
    /// referenced name out first, since evicting may drop that entry).
    /// `coded` is the value's Huffman coding when it came coded.
    pub(super) fn insert(&mut self, name: &[u8], value: &[u8], coded: Option<&[u8]>) {
        let size = ENTRY_OVERHEAD + name.len() + value.len();
        if size > self.max {
            self.entries.clear();
            self.bytes.clear();
            self.size = 0;
            return;
        }
        while self.size + size > self.max {
            self.evict_oldest();
        }
        let coded = coded.filter(|w| w.len() <= value.len()).unwrap_or(&[]);
        let len = name.len() + value.len() + coded.len();
        if self.bytes.len() + len > self.cap {
            self.compact();
        }
        // Within capacity: the live bytes and these are at most twice
        // (max - 32), under the cap.
        let at = self.bytes.len() as u32;
        self.bytes.extend_from_slice(name);
        self.bytes.extend_from_slice(value);
        self.bytes.extend_from_slice(coded);
        self.entries.push_back(Entry {
            at,
            name_len: name.len() as u32,
            value_len: value.len() as u32,
            wire_len: if coded.is_empty() {
                NOT_KEPT
            } else {
                coded.len() as u32
            },
            wire_head: wire_head(coded),
        });
        self.size += size;
    }

    fn evict_oldest(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.size -= ENTRY_OVERHEAD + (e.name_len + e.value_len) as usize;
        }
        if self.entries.is_empty() {
            self.bytes.clear();
        }
    }

    /// Moves the live bytes to the front of the buffer.
    fn compact(&mut self) {
        let start = self
            .entries
            .front()
            .map_or(self.bytes.len(), |e| e.at as usize);
        self.bytes.copy_within(start.., 0);
        self.bytes.truncate(self.bytes.len() - start);
        for e in &mut self.entries {
            e.at -= start as u32;
        }
    }
}
