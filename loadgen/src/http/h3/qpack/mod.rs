//! QPACK (RFC 9204) with no dynamic table in either direction.
//!
//! We advertise SETTINGS_QPACK_MAX_TABLE_CAPACITY = 0 (the default), so a
//! server's field section may only use the static table and literals: its
//! Required Insert Count is 0, and any reference to the dynamic table is
//! QPACK_DECOMPRESSION_FAILED (§2.2.3). The decoder therefore keeps no
//! state between sections and blocks no stream. Our requests use literals
//! and the static table only, so the server's table (whatever it offers) is
//! never touched and we open no encoder or decoder stream (§4.2).
//!
//! The integers and strings are HPACK's (§4.1), so the primitives and the
//! Huffman code are [`crate::http::h2::hpack`]'s.

mod table;

use bytes::Bytes;

use super::error::H3Error;
use super::frame::{frame_type, write_frame_header};
use crate::http::h2::hpack::{self, Decoded, Reader, Status, Value, encode_int, encode_raw_string};

/// Decodes the field sections of one connection's responses (one per
/// connection, or per shard: it keeps only a scratch buffer).
#[derive(Debug, Clone)]
pub struct Decoder {
    max_list: usize,
    /// Huffman-coded literal names, decoded. Grows to the largest, then
    /// stays.
    scratch: Vec<u8>,
}

/// Counts one field against the field section limit (RFC 9114 §4.2.2
/// sizes fields as HPACK does: name + value + 32).
fn account(out: &mut Decoded, max_list: usize, len: usize) -> Result<(), H3Error> {
    out.list_size = out.list_size.saturating_add(hpack::ENTRY_OVERHEAD + len);
    out.fields += 1;
    if out.list_size > max_list {
        return Err(H3Error::ExcessiveLoad {
            what: "response field section",
            limit: max_list,
        });
    }
    Ok(())
}

fn static_entry(i: usize) -> Result<(&'static [u8], &'static [u8]), H3Error> {
    table::STATIC
        .get(i)
        .copied()
        .ok_or(H3Error::Decompression("static table index above 98"))
}

const DYNAMIC: H3Error =
    H3Error::Decompression("a field line refers to the dynamic table, which we set to 0 bytes");

impl Decoder {
    /// `max_field_section_size` is our SETTINGS_MAX_FIELD_SECTION_SIZE: a
    /// larger section is H3_EXCESSIVE_LOAD, found before the field that
    /// crosses it reaches the callback.
    pub fn new(max_field_section_size: usize) -> Self {
        Decoder {
            max_list: max_field_section_size,
            scratch: Vec::new(),
        }
    }

    /// Decodes one field section (a HEADERS frame's payload), calling
    /// `on_field(name, value)` for each field line in order. Values come as
    /// they were on the wire ([`Value::Huffman`] when coded, undecoded);
    /// names always come decoded. `:status` is decoded and checked as
    /// HPACK's decoder does ([`Decoded::status`]).
    pub fn decode<F>(&mut self, section: &[u8], mut on_field: F) -> Result<Decoded, H3Error>
    where
        F: FnMut(&[u8], Value<'_>),
    {
        let mut r = Reader::new(section);
        // The prefix (§4.5.1): Required Insert Count, then the sign bit and
        // Delta Base. With no table the count must be 0, and the base
        // means nothing.
        if r.int(8)? != 0 {
            return Err(DYNAMIC);
        }
        r.int(7)?;
        let mut out = Decoded::default();
        let mut status = Status::Absent;
        while let Some(first) = r.peek() {
            if first & 0x80 != 0 {
                // Indexed field line (§4.5.2): T is 0x40.
                if first & 0x40 == 0 {
                    return Err(DYNAMIC);
                }
                let (name, value) = static_entry(r.int(6)?)?;
                account(&mut out, self.max_list, name.len() + value.len())?;
                status.see(name, Value::Plain(value));
                on_field(name, Value::Plain(value));
            } else if first & 0x40 != 0 {
                // Literal with name reference (§4.5.4): N is 0x20, T 0x10.
                if first & 0x10 == 0 {
                    return Err(DYNAMIC);
                }
                let (name, _) = static_entry(r.int(4)?)?;
                let value = value(r.string_prefixed(7)?);
                account(&mut out, self.max_list, name.len() + value.wire().len())?;
                status.see(name, value);
                on_field(name, value);
            } else if first & 0x20 != 0 {
                // Literal with literal name (§4.5.6): N is 0x10, H 0x08.
                let (wire, huffman) = r.string_prefixed(3)?;
                let name = if huffman {
                    self.scratch.clear();
                    let room = self
                        .max_list
                        .saturating_sub(out.list_size + hpack::ENTRY_OVERHEAD);
                    let scratch = &mut self.scratch;
                    let mut over = false;
                    hpack::huffman_decode(wire, |c| {
                        if scratch.len() < room {
                            scratch.push(c);
                        } else {
                            over = true;
                        }
                    })?;
                    if over {
                        return Err(H3Error::ExcessiveLoad {
                            what: "response field section",
                            limit: self.max_list,
                        });
                    }
                    &self.scratch[..]
                } else {
                    wire
                };
                let value = value(r.string_prefixed(7)?);
                account(&mut out, self.max_list, name.len() + value.wire().len())?;
                status.see(name, value);
                on_field(name, value);
            } else {
                // Indexed with post-base index (0001) or literal with
                // post-base name reference (0000): dynamic only.
                return Err(DYNAMIC);
            }
        }
        out.status = status.get();
        Ok(out)
    }
}

fn value((wire, huffman): (&[u8], bool)) -> Value<'_> {
    if huffman {
        Value::Huffman(wire)
    } else {
        Value::Plain(wire)
    }
}

/// Appends `fields` (names lowercase, pseudo-headers first, as
/// [`hpack::RequestFields`] gives them) as one field section: a field
/// entirely in the static table as its index, any other as a literal
/// (with the static name's index when there is one), strings raw.
pub fn encode_fields<'a>(
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    out: &mut Vec<u8>,
) {
    // Required Insert Count 0, Delta Base 0.
    out.extend_from_slice(&[0, 0]);
    for (name, val) in fields {
        match table::lookup(name, val) {
            Some((_, Some(full))) => encode_int(full, 6, 0xc0, out),
            Some((name_index, None)) => {
                encode_int(name_index, 4, 0x50, out);
                encode_raw_string(val, out);
            }
            None => {
                encode_int(name.len(), 3, 0x20, out);
                out.extend_from_slice(name);
                encode_raw_string(val, out);
            }
        }
    }
}

/// Appends a whole HEADERS frame carrying `fields` (see [`encode_fields`]).
pub fn request_frame<'a>(
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    out: &mut Vec<u8>,
) {
    let mut section = Vec::new();
    encode_fields(fields, &mut section);
    write_frame_header(frame_type::HEADERS, section.len() as u64, out);
    out.extend_from_slice(&section);
}

/// The HEADERS frame of a request that never changes, built once: with no
/// table it is the same on every stream of every connection, so a stream
/// gets it by reference count (`Bytes::clone`), with no copy.
pub fn fixed_request_frame<'a>(fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Bytes {
    let mut out = Vec::new();
    request_frame(fields, &mut out);
    Bytes::from(out)
}

#[cfg(test)]
pub(super) fn static_table() -> &'static [(&'static [u8], &'static [u8])] {
    &table::STATIC
}
