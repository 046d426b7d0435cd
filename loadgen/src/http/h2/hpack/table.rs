//! The static table (RFC 7541 Appendix A) and the decoder's dynamic table.

use std::collections::VecDeque;

use super::ENTRY_OVERHEAD;

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
/// The most static names of one length (7: ":method" twice, ":scheme"
/// twice, ":status" seven times, "expires", "referer", "refresh").
const PER_LEN: usize = 14;

/// Static indexes by name length, 0-terminated, for `static_name`: the
/// encoder looks a name up per field per templated request, and a handful
/// of compares of equal-length names beats a hash here.
static BY_LEN: [[u8; PER_LEN]; LONGEST_NAME + 1] = by_len();

const fn by_len() -> [[u8; PER_LEN]; LONGEST_NAME + 1] {
    let mut t = [[0u8; PER_LEN]; LONGEST_NAME + 1];
    let mut i = 0;
    while i < STATIC.len() {
        let len = STATIC[i].0.len();
        let mut k = 0;
        while t[len][k] != 0 {
            k += 1;
        }
        t[len][k] = (i + 1) as u8;
        i += 1;
    }
    t
}

/// The static table entry for `name` (the first one with that name), and
/// the index of the entry that also matches `value`, if any.
pub(super) fn static_lookup(name: &[u8], value: &[u8]) -> Option<(usize, Option<usize>)> {
    let cands = BY_LEN.get(name.len())?;
    let mut name_index = None;
    for &i in cands.iter().take_while(|&&i| i != 0) {
        let (n, v) = STATIC[i as usize - 1];
        if n == name {
            name_index.get_or_insert(i as usize);
            if v == value {
                return Some((i as usize, Some(i as usize)));
            }
        }
    }
    name_index.map(|i| (i, None))
}

/// One dynamic entry: where its bytes (name then value) start in the ring.
#[derive(Clone, Copy)]
struct Entry {
    at: u32,
    name_len: u32,
    value_len: u32,
}

/// The decoder's dynamic table. Names and values live back to back in one
/// byte buffer allocated once (twice the size limit), oldest first. Eviction
/// only moves the start; when the next entry does not fit at the end, the
/// live bytes move to the front, which happens after at least `limit` bytes
/// of inserts (live bytes never exceed the limit), so each inserted byte is
/// moved at most once on average.
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
        // SETTINGS values are 32-bit; the halving keeps offsets in u32.
        let limit = limit.min(u32::MAX as usize / 2);
        let cap = limit * 2;
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
        let e = *self.entries.get(self.entries.len().checked_sub(i)?)?;
        let at = e.at as usize;
        let mid = at + e.name_len as usize;
        Some((
            &self.bytes[at..mid],
            &self.bytes[mid..mid + e.value_len as usize],
        ))
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
    pub(super) fn insert(&mut self, name: &[u8], value: &[u8]) {
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
        let len = name.len() + value.len();
        if self.bytes.len() + len > self.cap {
            self.compact();
        }
        // Within capacity: live bytes + len <= max - 32 <= cap.
        let at = self.bytes.len() as u32;
        self.bytes.extend_from_slice(name);
        self.bytes.extend_from_slice(value);
        self.entries.push_back(Entry {
            at,
            name_len: name.len() as u32,
            value_len: value.len() as u32,
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
