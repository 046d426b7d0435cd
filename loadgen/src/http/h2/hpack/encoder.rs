//! Request encoding, cheap by design: strings go raw (no Huffman), and the
//! server's dynamic table is used only by a request that never changes.
//!
//! # The protocol, per connection
//!
//! Every header block the connection sends goes through one
//! [`RequestEncoder`], in the order the blocks go on the wire (HPACK state
//! is per direction and per connection; a block encoded must be sent):
//!
//! - `RequestEncoder::new()` when the connection opens: both sides start
//!   with a 4096-byte table.
//! - When the server's SETTINGS carries SETTINGS_HEADER_TABLE_SIZE, call
//!   [`RequestEncoder::set_peer_table_size`] at the point where our SETTINGS
//!   ACK goes into the output: blocks before the ACK were encoded for the
//!   old size, and the next block starts with the size update the server
//!   expects (RFC 7541 §4.2). A larger size is ignored (we keep 4096).
//! - A request that never changes: build a [`FixedRequest`] once (per shard
//!   is fine, it depends on no connection) and call
//!   [`RequestEncoder::encode_fixed`] for each. The first call on a
//!   connection sends its fields with incremental indexing, the later ones
//!   send one index per field. If the fields do not fit the server's table,
//!   or another `FixedRequest` already filled it, it is sent as literals.
//! - Anything else (templated requests): [`RequestEncoder::encode_literal`],
//!   which never adds to the server's table, so it can interleave freely
//!   with fixed requests.
//!
//! Both append one complete header block to `out`; the caller frames it
//! (HEADERS, then CONTINUATION beyond the server's SETTINGS_MAX_FRAME_SIZE).

use std::sync::atomic::{AtomicU64, Ordering};

use super::table::static_lookup;
use super::{DEFAULT_TABLE_SIZE, ENTRY_OVERHEAD, encode_int, encode_raw_string};

/// Appends `fields` as one header block: a field entirely in the static
/// table (`:method GET`, `:scheme https`, `:path /`, …) as its index,
/// every other one as a literal without indexing (RFC 7541 §6.2.2), its
/// name as a static index when there is one, strings raw. Names must be
/// lowercase already ([`super::RequestFields`] does that). Touches no table.
pub fn encode_literal<'a>(
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    out: &mut Vec<u8>,
) {
    for (name, value) in fields {
        match static_lookup(name, value) {
            Some((_, Some(full))) => encode_int(full, 7, 0x80, out),
            Some((name_index, None)) => {
                encode_int(name_index, 4, 0x00, out);
                encode_raw_string(value, out);
            }
            None => {
                out.push(0x00);
                encode_raw_string(name, out);
                encode_raw_string(value, out);
            }
        }
    }
}

/// Appends a dynamic table size update to `n` bytes (RFC 7541 §6.3). It
/// may only start a block; [`RequestEncoder`] places it.
pub fn size_update(n: usize, out: &mut Vec<u8>) {
    encode_int(n, 5, 0x20, out);
}

/// Tells `FixedRequest`s apart, so that a connection's encoder knows whose
/// fields are in the server's table.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A request that never changes, encoded ahead of time three ways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedRequest {
    id: u64,
    first: Vec<u8>,
    repeat: Vec<u8>,
    literal: Vec<u8>,
    table_need: usize,
}

impl FixedRequest {
    /// Encodes `fields` (names lowercase) as:
    /// - `first`: fields entirely in the static table as their index, every
    ///   other one as a literal with incremental indexing (name from the
    ///   static table when it is there, strings raw);
    /// - `repeat`: every field as an index, static or of the entry `first`
    ///   made (valid only after `first`, with nothing else inserted since);
    /// - `literal`: as [`encode_literal`], for when the server's table is
    ///   too small or taken.
    pub fn new<'a, I>(fields: I) -> Self
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])> + Clone,
    {
        let mut first = Vec::new();
        let mut inserted = 0;
        let mut table_need = 0;
        for (name, value) in fields.clone() {
            match static_lookup(name, value) {
                Some((_, Some(full))) => encode_int(full, 7, 0x80, &mut first),
                lookup => {
                    match lookup {
                        Some((name_index, _)) => encode_int(name_index, 6, 0x40, &mut first),
                        None => {
                            first.push(0x40);
                            encode_raw_string(name, &mut first);
                        }
                    }
                    encode_raw_string(value, &mut first);
                    inserted += 1;
                    table_need += ENTRY_OVERHEAD + name.len() + value.len();
                }
            }
        }
        // The j-th inserted entry (from 0) ends up at dynamic position
        // inserted - j (1 = newest), wire index 61 + that.
        let mut repeat = Vec::new();
        let mut j = 0;
        for (name, value) in fields.clone() {
            match static_lookup(name, value) {
                Some((_, Some(full))) => encode_int(full, 7, 0x80, &mut repeat),
                _ => {
                    encode_int(61 + inserted - j, 7, 0x80, &mut repeat);
                    j += 1;
                }
            }
        }
        let mut literal = Vec::new();
        encode_literal(fields, &mut literal);
        FixedRequest {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            first,
            repeat,
            literal,
            table_need,
        }
    }

    /// The block that fills the server's table.
    pub fn first(&self) -> &[u8] {
        &self.first
    }

    /// The all-indexed block, once `first` was sent.
    pub fn repeat(&self) -> &[u8] {
        &self.repeat
    }

    /// The block that uses no table.
    pub fn literal(&self) -> &[u8] {
        &self.literal
    }

    /// How much of the server's table `first` fills (HPACK sizes): the
    /// server's table must be at least this for `first`/`repeat` to work.
    pub fn table_need(&self) -> usize {
        self.table_need
    }
}

/// The HPACK encoder state of one connection: the table size the server
/// knows we use, a size update still to send, and whose fields fill the
/// server's table. See the module docs for the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestEncoder {
    table_size: usize,
    pending_update: Option<usize>,
    /// The `FixedRequest` (id, table need) whose entries are the newest in
    /// the server's table.
    owner: Option<(u64, usize)>,
}

impl Default for RequestEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestEncoder {
    pub fn new() -> Self {
        RequestEncoder {
            table_size: DEFAULT_TABLE_SIZE,
            pending_update: None,
            owner: None,
        }
    }

    /// The server's SETTINGS_HEADER_TABLE_SIZE, applied as our ACK of its
    /// SETTINGS is queued. A smaller size than ours is signalled at the
    /// start of the next block; several before one block signal the
    /// smallest, which is also the last since we never grow.
    pub fn set_peer_table_size(&mut self, size: usize) {
        if size >= self.table_size {
            return;
        }
        self.table_size = size;
        self.pending_update = Some(size);
        // Entries that fit stay (only our entries are there, and they fit).
        if self.owner.is_some_and(|(_, need)| need > size) {
            self.owner = None;
        }
    }

    /// The dynamic table size the server's decoder will use for our next block.
    pub fn table_size(&self) -> usize {
        self.table_size
    }

    fn start_block(&mut self, out: &mut Vec<u8>) {
        if let Some(n) = self.pending_update.take() {
            size_update(n, out);
        }
    }

    /// Appends the block for `req`: `first` the first time on this
    /// connection, `repeat` after, `literal` when its fields do not fit
    /// the server's table or another `FixedRequest` filled it.
    pub fn encode_fixed(&mut self, req: &FixedRequest, out: &mut Vec<u8>) {
        self.start_block(out);
        let block = match self.owner {
            _ if req.table_need == 0 => &req.repeat,
            Some((id, _)) if id == req.id => &req.repeat,
            None if req.table_need <= self.table_size => {
                self.owner = Some((req.id, req.table_need));
                &req.first
            }
            _ => &req.literal,
        };
        out.extend_from_slice(block);
    }

    /// Appends `fields` as literals ([`encode_literal`]).
    pub fn encode_literal<'a>(
        &mut self,
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        out: &mut Vec<u8>,
    ) {
        self.start_block(out);
        encode_literal(fields, out);
    }
}
