//! Chunked transfer-coding decoder (RFC 9112 §7.1), fed arbitrary slices.

/// Chunk sizes above this are treated as an attack, not a body.
const MAX_CHUNK_SIZE: u64 = 1 << 48;
/// Bound on a chunk-size line's extension, so a hostile server cannot make
/// us scan forever without progress.
const MAX_EXT_LEN: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChunkError {
    Size,
    Framing,
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size {
        value: u64,
        digits: u8,
    },
    /// Skipping `;ext=val` (or whitespace) up to the line end.
    Ext {
        value: u64,
        len: usize,
    },
    /// Saw `\r` after the size line; want `\n`.
    SizeLf {
        value: u64,
    },
    Data {
        remaining: u64,
    },
    DataCr,
    DataLf,
    /// Trailer section: lines up to an empty one. `line` counts the
    /// current line's bytes, `total` all trailer bytes.
    Trailer {
        line: usize,
        total: usize,
    },
    TrailerLf {
        line: usize,
        total: usize,
    },
    Done,
}

#[derive(Debug, Clone)]
pub(super) struct ChunkedDecoder {
    state: State,
    max_trailer: usize,
}

impl ChunkedDecoder {
    pub(super) fn new(max_trailer: usize) -> Self {
        ChunkedDecoder {
            state: State::Size {
                value: 0,
                digits: 0,
            },
            max_trailer,
        }
    }

    /// Consumes bytes of the chunked body. Returns `(consumed, body_bytes,
    /// done)`; when `done`, the bytes after `consumed` belong to the next
    /// message.
    pub(super) fn feed(&mut self, input: &[u8]) -> Result<(usize, u64, bool), ChunkError> {
        let mut i = 0;
        let mut body = 0u64;
        while i < input.len() {
            match self.state {
                State::Data { remaining } => {
                    let n = remaining.min((input.len() - i) as u64);
                    i += n as usize;
                    body += n;
                    self.state = if n == remaining {
                        State::DataCr
                    } else {
                        State::Data {
                            remaining: remaining - n,
                        }
                    };
                    continue;
                }
                State::Done => return Ok((i, body, true)),
                _ => {}
            }
            let b = input[i];
            i += 1;
            self.state = match self.state {
                State::Size { value, digits } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                        let value = value * 16 + d;
                        if value > MAX_CHUNK_SIZE {
                            return Err(ChunkError::TooLarge);
                        }
                        State::Size {
                            value,
                            digits: digits.saturating_add(1),
                        }
                    }
                    _ if digits == 0 => return Err(ChunkError::Size),
                    b';' | b' ' | b'\t' => State::Ext { value, len: 0 },
                    b'\r' => State::SizeLf { value },
                    b'\n' => self.after_size_line(value),
                    _ => return Err(ChunkError::Size),
                },
                State::Ext { value, len } => match b {
                    b'\r' => State::SizeLf { value },
                    b'\n' => self.after_size_line(value),
                    _ if len >= MAX_EXT_LEN => return Err(ChunkError::TooLarge),
                    _ => State::Ext {
                        value,
                        len: len + 1,
                    },
                },
                State::SizeLf { value } => match b {
                    b'\n' => self.after_size_line(value),
                    _ => return Err(ChunkError::Framing),
                },
                State::DataCr => match b {
                    b'\r' => State::DataLf,
                    b'\n' => Self::next_chunk(),
                    _ => return Err(ChunkError::Framing),
                },
                State::DataLf => match b {
                    b'\n' => Self::next_chunk(),
                    _ => return Err(ChunkError::Framing),
                },
                State::Trailer { line, total } => {
                    if total >= self.max_trailer {
                        return Err(ChunkError::TooLarge);
                    }
                    match b {
                        b'\r' => State::TrailerLf {
                            line,
                            total: total + 1,
                        },
                        b'\n' if line == 0 => State::Done,
                        b'\n' => State::Trailer {
                            line: 0,
                            total: total + 1,
                        },
                        _ => State::Trailer {
                            line: line + 1,
                            total: total + 1,
                        },
                    }
                }
                State::TrailerLf { line, total } => match b {
                    b'\n' if line == 0 => State::Done,
                    b'\n' => State::Trailer {
                        line: 0,
                        total: total + 1,
                    },
                    _ => return Err(ChunkError::Framing),
                },
                State::Data { .. } | State::Done => unreachable!("handled above"),
            };
            if self.state == State::Done {
                return Ok((i, body, true));
            }
        }
        Ok((i, body, self.state == State::Done))
    }

    fn after_size_line(&self, value: u64) -> State {
        if value == 0 {
            State::Trailer { line: 0, total: 0 }
        } else {
            State::Data { remaining: value }
        }
    }

    fn next_chunk() -> State {
        State::Size {
            value: 0,
            digits: 0,
        }
    }
}
