//! The unidirectional streams (RFC 9114 §6.2): ours (the control stream,
//! opened once with our SETTINGS) and the server's (control, QPACK encoder
//! and decoder, and types we ignore).

use super::error::{H3Error, code};
use super::frame::{Frame, FrameReader, StreamKind, frame_type, write_frame_header};
use super::varint;

/// Stream types (§6.2, RFC 9204 §4.2).
const CONTROL: u64 = 0x00;
const PUSH: u64 = 0x01;
const QPACK_ENCODER: u64 = 0x02;
const QPACK_DECODER: u64 = 0x03;

/// Settings identifiers (§7.2.4.1, RFC 9204 §5).
const QPACK_MAX_TABLE_CAPACITY: u64 = 0x01;
const MAX_FIELD_SECTION_SIZE: u64 = 0x06;
const QPACK_BLOCKED_STREAMS: u64 = 0x07;

/// The bytes our control stream starts with: its type and our SETTINGS.
/// The QPACK table capacity and blocked streams are left at their default,
/// 0 (no dynamic table); no MAX_PUSH_ID is ever sent, so the server may
/// not push.
pub fn client_control_stream(max_field_section: u64) -> Vec<u8> {
    let mut settings = Vec::new();
    varint::encode(MAX_FIELD_SECTION_SIZE, &mut settings);
    varint::encode(max_field_section, &mut settings);
    let mut out = Vec::new();
    varint::encode(CONTROL, &mut out);
    write_frame_header(frame_type::SETTINGS, settings.len() as u64, &mut out);
    out.extend_from_slice(&settings);
    out
}

/// The server's settings that concern us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerSettings {
    /// The largest request field section the server takes (none: no limit).
    pub max_field_section_size: Option<u64>,
    /// The server's QPACK table, which our encoder does not use.
    pub qpack_max_table_capacity: u64,
    pub qpack_blocked_streams: u64,
}

/// A SETTINGS payload: pairs of varints, each identifier at most once,
/// none of HTTP/2's (§7.2.4).
fn parse_settings(mut payload: &[u8]) -> Result<PeerSettings, H3Error> {
    let mut s = PeerSettings::default();
    let mut ids = Vec::new();
    while !payload.is_empty() {
        let pair = varint::decode(payload)
            .and_then(|(id, a)| varint::decode(&payload[a..]).map(|(value, b)| (id, value, a + b)));
        let Some((id, value, n)) = pair else {
            return Err(H3Error::Frame("SETTINGS ends inside a setting"));
        };
        payload = &payload[n..];
        if ids.contains(&id) {
            return Err(H3Error::Settings("a setting appears twice"));
        }
        ids.push(id);
        match id {
            QPACK_MAX_TABLE_CAPACITY => s.qpack_max_table_capacity = value,
            MAX_FIELD_SECTION_SIZE => s.max_field_section_size = Some(value),
            QPACK_BLOCKED_STREAMS => s.qpack_blocked_streams = value,
            0x02..=0x05 => return Err(H3Error::Settings("an HTTP/2 setting")),
            _ => {}
        }
    }
    Ok(s)
}

/// What a connection learned from the server's unidirectional streams.
#[derive(Debug, Clone, Default)]
pub struct PeerStreams {
    settings: Option<PeerSettings>,
    goaway: Option<u64>,
    new_goaway: bool,
    /// Which critical streams the server opened: control, encoder, decoder.
    open: [bool; 3],
}

impl PeerStreams {
    pub fn new() -> Self {
        Self::default()
    }

    /// The server's SETTINGS, once they came.
    pub fn settings(&self) -> Option<&PeerSettings> {
        self.settings.as_ref()
    }

    /// The lowest stream id the server's GOAWAYs named: requests on streams
    /// from there on were not processed and may be sent again elsewhere.
    pub fn goaway(&self) -> Option<u64> {
        self.goaway
    }

    /// A GOAWAY that came since the last call, with the id it set.
    pub fn take_goaway(&mut self) -> Option<u64> {
        std::mem::take(&mut self.new_goaway)
            .then_some(self.goaway)
            .flatten()
    }

    fn on_goaway(&mut self, id: u64) -> Result<(), H3Error> {
        // A server's GOAWAY names a client-initiated bidirectional stream,
        // and never a higher one than before (§5.2).
        if !id.is_multiple_of(4) {
            return Err(H3Error::Id("GOAWAY names no request stream"));
        }
        if self.goaway.is_some_and(|old| id > old) {
            return Err(H3Error::Id("GOAWAY raised the stream id"));
        }
        self.goaway = Some(id);
        self.new_goaway = true;
        Ok(())
    }
}

/// What the caller must do with a server's unidirectional stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniStreamAction {
    Continue,
    /// A type we do not know (grease, extensions): tell the server to stop
    /// (STOP_SENDING with this code) and drop what it sends (§6.2).
    StopSending(u64),
}

#[derive(Debug, Clone)]
enum UniState {
    /// The stream type is still arriving.
    Type {
        buf: [u8; 8],
        len: u8,
    },
    Control(Box<FrameReader>),
    /// Must hold only "Set Dynamic Table Capacity 0".
    Encoder,
    /// Instructions about our table, which we never use.
    Decoder,
    Ignored,
}

/// One of the server's unidirectional streams.
#[derive(Debug, Clone)]
pub struct UniStream {
    state: UniState,
}

impl Default for UniStream {
    fn default() -> Self {
        Self::new()
    }
}

impl UniStream {
    pub fn new() -> Self {
        UniStream {
            state: UniState::Type {
                buf: [0; 8],
                len: 0,
            },
        }
    }

    /// Reads the stream's next bytes into `peer`.
    pub fn on_data(
        &mut self,
        mut data: &[u8],
        peer: &mut PeerStreams,
    ) -> Result<UniStreamAction, H3Error> {
        if let UniState::Type { buf, len } = &mut self.state {
            let first = match (*len, data.first()) {
                (0, None) => return Ok(UniStreamAction::Continue),
                (0, Some(&b)) => b,
                _ => buf[0],
            };
            let need = varint::len(first);
            let take = (need - *len as usize).min(data.len());
            buf[*len as usize..*len as usize + take].copy_from_slice(&data[..take]);
            *len += take as u8;
            data = &data[take..];
            if (*len as usize) < need {
                return Ok(UniStreamAction::Continue);
            }
            let ty = varint::decode(&buf[..need]).map_or(u64::MAX, |(t, _)| t);
            let slot = |i: usize, name, peer: &mut PeerStreams| {
                if std::mem::replace(&mut peer.open[i], true) {
                    Err(H3Error::StreamCreation(name))
                } else {
                    Ok(())
                }
            };
            self.state = match ty {
                CONTROL => {
                    slot(0, "control", peer)?;
                    UniState::Control(Box::new(FrameReader::new(StreamKind::Control, 0)))
                }
                QPACK_ENCODER => {
                    slot(1, "QPACK encoder", peer)?;
                    UniState::Encoder
                }
                QPACK_DECODER => {
                    slot(2, "QPACK decoder", peer)?;
                    UniState::Decoder
                }
                PUSH => return Err(H3Error::Id("a push stream, but we allowed no push")),
                _ => {
                    self.state = UniState::Ignored;
                    return Ok(UniStreamAction::StopSending(code::H3_STREAM_CREATION_ERROR));
                }
            };
        }
        match &mut self.state {
            UniState::Type { .. } | UniState::Decoder | UniState::Ignored => {}
            UniState::Encoder => {
                // 0x20 is "Set Dynamic Table Capacity" to 0, the only
                // instruction a table of 0 bytes allows (RFC 9204 §4.3).
                if data.iter().any(|&b| b != 0x20) {
                    return Err(H3Error::EncoderStream);
                }
            }
            UniState::Control(frames) => {
                while let Some(frame) = frames.next(&mut data)? {
                    match frame {
                        // The reader lets SETTINGS through only first.
                        Frame::Settings(payload) => {
                            peer.settings = Some(parse_settings(payload)?);
                        }
                        Frame::Goaway(id) => peer.on_goaway(id)?,
                        // The control reader hands on only SETTINGS and GOAWAY.
                        Frame::Headers(_) | Frame::Data(_) => {
                            return Err(H3Error::Frame("request frame on the control stream"));
                        }
                    }
                }
            }
        }
        Ok(UniStreamAction::Continue)
    }

    /// The stream ended (FIN or reset): the server's control and QPACK
    /// streams must stay open for the connection's life (§6.2.1, RFC 9204
    /// §4.2).
    pub fn on_end(&self) -> Result<(), H3Error> {
        match self.state {
            UniState::Control(_) => Err(H3Error::ClosedCriticalStream("control")),
            UniState::Encoder => Err(H3Error::ClosedCriticalStream("QPACK encoder")),
            UniState::Decoder => Err(H3Error::ClosedCriticalStream("QPACK decoder")),
            UniState::Type { .. } | UniState::Ignored => Ok(()),
        }
    }
}
