//! A response on a request stream (RFC 9114 §4.1): interim HEADERS (1xx),
//! the final HEADERS, DATA, optional trailers, then the stream's end.

use super::error::H3Error;
use super::frame::{Frame, FrameReader, StreamKind, frame_type};
use super::qpack::Decoder;

/// What a response stream gave, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseEvent {
    /// An interim response (1xx other than 101).
    Informational(u16),
    /// The final response head.
    Head { status: u16 },
    /// Body bytes (DATA payload), as they arrive.
    Body(usize),
    /// The trailer section, decoded (its fields went to the callback).
    Trailers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Msg {
    Head,
    Body,
    Trailers,
}

/// Reads one response; [`ResponseReader::reset`] readies it for the next
/// stream, keeping its buffer.
#[derive(Debug, Clone)]
pub struct ResponseReader {
    frames: FrameReader,
    msg: Msg,
}

impl ResponseReader {
    pub fn new(max_field_section: usize) -> Self {
        ResponseReader {
            frames: FrameReader::new(StreamKind::Request, max_field_section),
            msg: Msg::Head,
        }
    }

    /// Starts over for a new stream.
    pub fn reset(&mut self) {
        self.frames.reset();
        self.msg = Msg::Head;
    }

    /// Whether the final head was read.
    pub fn has_head(&self) -> bool {
        self.msg != Msg::Head
    }

    /// Reads the stream's next bytes, calling `on_event` for what they
    /// complete and `on_field` for every field of every field section.
    /// After an error the stream (or, unless [`H3Error::is_stream_error`],
    /// the connection) must end with [`H3Error::code`].
    pub fn on_data<E, F>(
        &mut self,
        mut data: &[u8],
        qpack: &mut Decoder,
        mut on_event: E,
        mut on_field: F,
    ) -> Result<(), H3Error>
    where
        E: FnMut(ResponseEvent),
        F: FnMut(&[u8], crate::http::h2::hpack::Value<'_>),
    {
        while let Some(frame) = self.frames.next(&mut data)? {
            match (frame, self.msg) {
                (Frame::Headers(section), Msg::Head) => {
                    let d = qpack.decode(section, &mut on_field)?;
                    match d.status {
                        Some(101) => return Err(H3Error::Message("101 is not allowed in HTTP/3")),
                        Some(s @ 100..=199) => on_event(ResponseEvent::Informational(s)),
                        Some(status @ 200..=999) => {
                            self.msg = Msg::Body;
                            on_event(ResponseEvent::Head { status });
                        }
                        _ => return Err(H3Error::Message("no :status, or a bad one")),
                    }
                }
                (Frame::Headers(section), Msg::Body) => {
                    let mut pseudo = false;
                    qpack.decode(section, |name, value| {
                        pseudo |= name.first() == Some(&b':');
                        on_field(name, value);
                    })?;
                    if pseudo {
                        return Err(H3Error::Message("a pseudo-header in the trailers"));
                    }
                    self.msg = Msg::Trailers;
                    on_event(ResponseEvent::Trailers);
                }
                (Frame::Data(piece), Msg::Body) => on_event(ResponseEvent::Body(piece.len())),
                (Frame::Data(_), _) => {
                    return Err(H3Error::FrameUnexpected {
                        frame: frame_type::DATA,
                        stream: "request (DATA before the response head, or after trailers)",
                    });
                }
                (Frame::Headers(_), Msg::Trailers) => {
                    return Err(H3Error::FrameUnexpected {
                        frame: frame_type::HEADERS,
                        stream: "request (HEADERS after trailers)",
                    });
                }
                // The reader hands only HEADERS and DATA on a request stream.
                (Frame::Settings(_) | Frame::Goaway(_), _) => {
                    return Err(H3Error::Frame("control frame on a request stream"));
                }
            }
        }
        Ok(())
    }

    /// The stream ended cleanly (FIN): an error if it ended inside a frame
    /// or before the response head.
    pub fn on_finish(&self) -> Result<(), H3Error> {
        self.frames.finish()?;
        if self.msg == Msg::Head {
            return Err(H3Error::RequestIncomplete);
        }
        Ok(())
    }
}
