//! The decoder: one call per complete header block.

use super::table::{DynamicTable, STATIC, static_name_coded};
use super::{ENTRY_OVERHEAD, HpackError, Reader, eq_bytes, huffman};

/// A field value as the decoder hands it to the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// The value itself.
    Plain(&'a [u8]),
    /// The value Huffman-coded, as it came: [`Value::decode_into`] (or
    /// [`Value::bytes`]) gives the value. It is not checked until then.
    Huffman(&'a [u8]),
}

impl<'a> Value<'a> {
    pub fn is_huffman(&self) -> bool {
        matches!(self, Value::Huffman(_))
    }

    /// The bytes as they came on the wire.
    pub fn wire(&self) -> &'a [u8] {
        match *self {
            Value::Plain(b) | Value::Huffman(b) => b,
        }
    }

    /// Appends the value to `out`, Huffman-decoding if needed.
    pub fn decode_into(&self, out: &mut Vec<u8>) -> Result<(), HpackError> {
        match *self {
            Value::Plain(b) => {
                out.extend_from_slice(b);
                Ok(())
            }
            Value::Huffman(b) => {
                out.reserve(huffman::max_decoded_len(b.len()));
                huffman::decode(b, |c| out.push(c))
            }
        }
    }

    /// The value: borrowed when plain, else decoded into `buf` (cleared
    /// first) and borrowed from there.
    pub fn bytes<'s>(&self, buf: &'s mut Vec<u8>) -> Result<&'s [u8], HpackError>
    where
        'a: 's,
    {
        match *self {
            Value::Plain(b) => Ok(b),
            Value::Huffman(_) => {
                buf.clear();
                self.decode_into(buf)?;
                Ok(buf)
            }
        }
    }
}

/// What a block held besides its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decoded {
    /// `:status` when the block has exactly one and its value is exactly
    /// three ASCII digits (0..=999); `None` when it has none (a trailer
    /// block), several, or a bad one: the caller decides which is an error.
    pub status: Option<u16>,
    /// Fields in the block (size updates are not fields).
    pub fields: usize,
    /// The header list size as counted against the limit: exact except for
    /// Huffman-coded values that were not decoded, counted at wire length.
    pub list_size: usize,
}

/// What was seen of `:status` so far (QPACK's decoder keeps the same rule).
#[derive(Clone, Copy)]
pub(crate) enum Status {
    Absent,
    One(u16),
    Bad,
}

impl Status {
    #[inline]
    pub(crate) fn see(&mut self, name: &[u8], value: Value<'_>) {
        if name.first() != Some(&b':') || !eq_bytes(name, b":status") {
            return;
        }
        *self = match (*self, parse_status(value)) {
            (Status::Absent, Some(code)) => Status::One(code),
            _ => Status::Bad,
        };
    }

    pub(crate) fn get(self) -> Option<u16> {
        match self {
            Status::One(code) => Some(code),
            Status::Absent | Status::Bad => None,
        }
    }
}

fn parse_status(value: Value<'_>) -> Option<u16> {
    let mut digits = [0u8; 3];
    let mut n = 0;
    match value {
        Value::Plain(b) => {
            if b.len() != 3 {
                return None;
            }
            digits.copy_from_slice(b);
            n = 3;
        }
        Value::Huffman(b) => {
            // Three digits take at most 3 bytes (digits have 5- and 6-bit codes).
            if b.len() > 3 {
                return None;
            }
            huffman::decode(b, |c| {
                if n < 3 {
                    digits[n] = c;
                }
                n += 1;
            })
            .ok()?;
        }
    }
    if n != 3 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0, |acc, d| acc * 10 + u16::from(d - b'0')),
    )
}

/// Decodes the header blocks of one connection's responses, in order.
pub struct Decoder {
    table: DynamicTable,
    max_list: usize,
    /// Names and values the decoder must own for a moment: Huffman-coded
    /// names, and indexed literals on their way into the table. Grows to the
    /// largest needed, then stays.
    scratch: Vec<u8>,
}

/// Entry `i` of the combined index space (RFC 7541 §2.3.3).
fn entry(table: &DynamicTable, i: usize) -> Result<(&[u8], &[u8]), HpackError> {
    match i {
        1..=61 => Ok(STATIC[i - 1]),
        _ => i
            .checked_sub(61)
            .filter(|&d| d > 0)
            .and_then(|d| table.get(d))
            .ok_or(HpackError::BadIndex(i)),
    }
}

/// Appends a string literal's bytes, Huffman-decoding them if coded, but
/// no more than `room` bytes: a longer one takes the header list over its
/// limit, which is then found before the string is all decoded, so a
/// block cannot make the decoder hold more than the limit.
fn push_string(
    out: &mut Vec<u8>,
    (wire, huffman): (&[u8], bool),
    room: usize,
    limit: usize,
) -> Result<(), HpackError> {
    let too_large = HpackError::HeaderListTooLarge { limit };
    if !huffman {
        if wire.len() > room {
            return Err(too_large);
        }
        out.extend_from_slice(wire);
        return Ok(());
    }
    let end = out.len() + room;
    out.reserve(huffman::max_decoded_len(wire.len()).min(room));
    let mut over = false;
    huffman::decode(wire, |c| {
        if out.len() < end {
            out.push(c);
        } else {
            over = true;
        }
    })?;
    if over { Err(too_large) } else { Ok(()) }
}

/// Counts one field against the header list limit before it is handed on.
fn account(out: &mut Decoded, max_list: usize, len: usize) -> Result<(), HpackError> {
    out.list_size = out.list_size.saturating_add(ENTRY_OVERHEAD + len);
    out.fields += 1;
    if out.list_size > max_list {
        return Err(HpackError::HeaderListTooLarge { limit: max_list });
    }
    Ok(())
}

impl Decoder {
    /// `max_table_size` is our SETTINGS_HEADER_TABLE_SIZE (4096 unless we
    /// advertise otherwise): the table starts at that size and size updates
    /// above it are errors. `max_header_list_size` is our
    /// SETTINGS_MAX_HEADER_LIST_SIZE: a block whose list is larger is an
    /// error, found before the field that crosses it reaches the callback.
    pub fn new(max_table_size: usize, max_header_list_size: usize) -> Self {
        Decoder {
            table: DynamicTable::new(max_table_size),
            max_list: max_header_list_size,
            scratch: Vec::with_capacity(256),
        }
    }

    /// Decodes one complete header block (HEADERS plus any CONTINUATION,
    /// joined), calling `on_field(name, value)` for each field in order.
    ///
    /// Fields with incremental indexing are decoded (they go into the
    /// table) and arrive as [`Value::Plain`]; other literals with a
    /// Huffman-coded value arrive as [`Value::Huffman`], undecoded. Names
    /// always arrive decoded. After an error the table may be out of step
    /// with the server's: the connection must end (COMPRESSION_ERROR).
    pub fn decode<F>(&mut self, block: &[u8], mut on_field: F) -> Result<Decoded, HpackError>
    where
        F: FnMut(&[u8], Value<'_>),
    {
        let mut r = Reader::new(block);
        let mut out = Decoded::default();
        let mut status = Status::Absent;
        let mut at_start = true;
        while let Some(first) = r.peek() {
            if first & 0x80 != 0 {
                // Indexed field (§6.1). The one place a byte on the wire can
                // stand for up to a table's worth of header list, so its
                // size is counted exactly.
                let i = r.int(7)?;
                let (name, value) = entry(&self.table, i)?;
                account(&mut out, self.max_list, name.len() + value.len())?;
                status.see(name, Value::Plain(value));
                on_field(name, Value::Plain(value));
            } else if first & 0x40 != 0 {
                // Literal with incremental indexing (§6.2.1): decoded into
                // scratch (a referenced name too: inserting may evict it),
                // then into the table.
                let i = r.int(6)?;
                self.scratch.clear();
                let room = self.max_list.saturating_sub(out.list_size + ENTRY_OVERHEAD);
                if i == 0 {
                    match r.string()? {
                        (wire, true) if let Some(name) = static_name_coded(wire) => {
                            self.scratch.extend_from_slice(name);
                        }
                        name => push_string(&mut self.scratch, name, room, self.max_list)?,
                    }
                } else {
                    let (name, _) = entry(&self.table, i)?;
                    self.scratch.extend_from_slice(name);
                }
                let name_len = self.scratch.len();
                let (wire, huffman) = r.string()?;
                let seen = huffman.then(|| self.table.find_coded(wire)).flatten();
                match seen {
                    Some(value) => self.scratch.extend_from_slice(value),
                    None => push_string(
                        &mut self.scratch,
                        (wire, huffman),
                        room.saturating_sub(name_len),
                        self.max_list,
                    )?,
                }
                let (name, value) = self.scratch.split_at(name_len);
                account(&mut out, self.max_list, name.len() + value.len())?;
                status.see(name, Value::Plain(value));
                on_field(name, Value::Plain(value));
                self.table.insert(name, value, huffman.then_some(wire));
            } else if first & 0x20 != 0 {
                // Dynamic table size update (§6.3): only before the first
                // field (§4.2), never above what we allowed.
                if !at_start {
                    return Err(HpackError::SizeUpdateNotAtStart);
                }
                let size = r.int(5)?;
                if size > self.table.limit() {
                    return Err(HpackError::SizeUpdateTooLarge {
                        size,
                        limit: self.table.limit(),
                    });
                }
                self.table.set_max_size(size);
                continue;
            } else {
                // Literal without indexing (§6.2.2) or never indexed
                // (§6.2.3): the value stays as it came. A Huffman-coded value
                // counts at its wire length, which is at most 37.5 % short of
                // the decoded one; it cannot amplify, only indexing can.
                let i = r.int(4)?;
                let name = if i == 0 {
                    match r.string()? {
                        (wire, false) => wire,
                        (wire, true) => match static_name_coded(wire) {
                            Some(name) => name,
                            None => {
                                self.scratch.clear();
                                let room =
                                    self.max_list.saturating_sub(out.list_size + ENTRY_OVERHEAD);
                                push_string(&mut self.scratch, (wire, true), room, self.max_list)?;
                                &self.scratch[..]
                            }
                        },
                    }
                } else {
                    entry(&self.table, i)?.0
                };
                let value = match r.string()? {
                    (wire, false) => Value::Plain(wire),
                    (wire, true) => Value::Huffman(wire),
                };
                account(&mut out, self.max_list, name.len() + value.wire().len())?;
                status.see(name, value);
                on_field(name, value);
            }
            at_start = false;
        }
        out.status = status.get();
        Ok(out)
    }

    /// The dynamic table's HPACK size now (sum of 32 + name + value).
    pub fn table_size(&self) -> usize {
        self.table.size()
    }

    /// Entries in the dynamic table now.
    pub fn table_len(&self) -> usize {
        self.table.len()
    }

    /// The dynamic table's maximum size as last set by the server.
    pub fn max_table_size(&self) -> usize {
        self.table.max_size()
    }

    #[cfg(test)]
    pub(super) fn scratch_capacity(&self) -> usize {
        self.scratch.capacity()
    }

    /// Dynamic entry `i`, 1 being the newest (wire index 61 + i).
    pub fn table_entry(&self, i: usize) -> Option<(&[u8], &[u8])> {
        self.table.get(i)
    }
}
