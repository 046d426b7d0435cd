//! HTTP/3 and QPACK errors, and their codes on the wire.

/// The error codes of RFC 9114 §8.1 and RFC 9204 §6, for
/// CONNECTION_CLOSE, RESET_STREAM and STOP_SENDING.
pub mod code {
    pub const H3_NO_ERROR: u64 = 0x100;
    pub const H3_GENERAL_PROTOCOL_ERROR: u64 = 0x101;
    pub const H3_INTERNAL_ERROR: u64 = 0x102;
    pub const H3_STREAM_CREATION_ERROR: u64 = 0x103;
    pub const H3_CLOSED_CRITICAL_STREAM: u64 = 0x104;
    pub const H3_FRAME_UNEXPECTED: u64 = 0x105;
    pub const H3_FRAME_ERROR: u64 = 0x106;
    pub const H3_EXCESSIVE_LOAD: u64 = 0x107;
    pub const H3_ID_ERROR: u64 = 0x108;
    pub const H3_SETTINGS_ERROR: u64 = 0x109;
    pub const H3_MISSING_SETTINGS: u64 = 0x10a;
    pub const H3_REQUEST_REJECTED: u64 = 0x10b;
    pub const H3_REQUEST_CANCELLED: u64 = 0x10c;
    pub const H3_REQUEST_INCOMPLETE: u64 = 0x10d;
    pub const H3_MESSAGE_ERROR: u64 = 0x10e;
    pub const H3_CONNECT_ERROR: u64 = 0x10f;
    pub const H3_VERSION_FALLBACK: u64 = 0x110;
    pub const QPACK_DECOMPRESSION_FAILED: u64 = 0x200;
    pub const QPACK_ENCODER_STREAM_ERROR: u64 = 0x201;
    pub const QPACK_DECODER_STREAM_ERROR: u64 = 0x202;
}

/// The name of an HTTP/3 or QPACK error code, for reports (`None` for codes
/// these RFCs do not define: other extensions', or grease).
pub fn code_name(c: u64) -> Option<&'static str> {
    use code::*;
    Some(match c {
        H3_NO_ERROR => "H3_NO_ERROR",
        H3_GENERAL_PROTOCOL_ERROR => "H3_GENERAL_PROTOCOL_ERROR",
        H3_INTERNAL_ERROR => "H3_INTERNAL_ERROR",
        H3_STREAM_CREATION_ERROR => "H3_STREAM_CREATION_ERROR",
        H3_CLOSED_CRITICAL_STREAM => "H3_CLOSED_CRITICAL_STREAM",
        H3_FRAME_UNEXPECTED => "H3_FRAME_UNEXPECTED",
        H3_FRAME_ERROR => "H3_FRAME_ERROR",
        H3_EXCESSIVE_LOAD => "H3_EXCESSIVE_LOAD",
        H3_ID_ERROR => "H3_ID_ERROR",
        H3_SETTINGS_ERROR => "H3_SETTINGS_ERROR",
        H3_MISSING_SETTINGS => "H3_MISSING_SETTINGS",
        H3_REQUEST_REJECTED => "H3_REQUEST_REJECTED",
        H3_REQUEST_CANCELLED => "H3_REQUEST_CANCELLED",
        H3_REQUEST_INCOMPLETE => "H3_REQUEST_INCOMPLETE",
        H3_MESSAGE_ERROR => "H3_MESSAGE_ERROR",
        H3_CONNECT_ERROR => "H3_CONNECT_ERROR",
        H3_VERSION_FALLBACK => "H3_VERSION_FALLBACK",
        QPACK_DECOMPRESSION_FAILED => "QPACK_DECOMPRESSION_FAILED",
        QPACK_ENCODER_STREAM_ERROR => "QPACK_ENCODER_STREAM_ERROR",
        QPACK_DECODER_STREAM_ERROR => "QPACK_DECODER_STREAM_ERROR",
        _ => return None,
    })
}

/// What the server did wrong, by the code it earns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum H3Error {
    #[error("HTTP/3: a frame of type {frame:#x} is not allowed on a {stream} stream")]
    FrameUnexpected { frame: u64, stream: &'static str },
    #[error("HTTP/3: malformed frame: {0}")]
    Frame(&'static str),
    #[error("HTTP/3: {what} larger than the {limit} bytes we allow")]
    ExcessiveLoad { what: &'static str, limit: usize },
    #[error("HTTP/3: {0}")]
    Id(&'static str),
    #[error("HTTP/3: bad SETTINGS: {0}")]
    Settings(&'static str),
    #[error("HTTP/3: the control stream did not start with SETTINGS")]
    MissingSettings,
    #[error("HTTP/3: the server closed its {0} stream")]
    ClosedCriticalStream(&'static str),
    #[error("HTTP/3: the server opened a second {0} stream")]
    StreamCreation(&'static str),
    #[error("HTTP/3: malformed response: {0}")]
    Message(&'static str),
    #[error("HTTP/3: the response stream ended before the response head")]
    RequestIncomplete,
    #[error("QPACK: {0}")]
    Decompression(&'static str),
    #[error("QPACK: the server's encoder stream used a dynamic table we did not allow")]
    EncoderStream,
}

impl H3Error {
    /// The code to close the connection (or reset the stream) with.
    pub fn code(&self) -> u64 {
        use code::*;
        match self {
            H3Error::FrameUnexpected { .. } => H3_FRAME_UNEXPECTED,
            H3Error::Frame(_) => H3_FRAME_ERROR,
            H3Error::ExcessiveLoad { .. } => H3_EXCESSIVE_LOAD,
            H3Error::Id(_) => H3_ID_ERROR,
            H3Error::Settings(_) => H3_SETTINGS_ERROR,
            H3Error::MissingSettings => H3_MISSING_SETTINGS,
            H3Error::ClosedCriticalStream(_) => H3_CLOSED_CRITICAL_STREAM,
            H3Error::StreamCreation(_) => H3_STREAM_CREATION_ERROR,
            H3Error::Message(_) => H3_MESSAGE_ERROR,
            H3Error::RequestIncomplete => H3_REQUEST_INCOMPLETE,
            H3Error::Decompression(_) => QPACK_DECOMPRESSION_FAILED,
            H3Error::EncoderStream => QPACK_ENCODER_STREAM_ERROR,
        }
    }

    /// Whether only the stream fails (a malformed or cut response, RFC
    /// 9114 §4.1.2); every other fault ends the connection.
    pub fn is_stream_error(&self) -> bool {
        matches!(
            self,
            H3Error::Message(_) | H3Error::RequestIncomplete | H3Error::ExcessiveLoad { .. }
        )
    }
}

impl From<super::super::h2::hpack::HpackError> for H3Error {
    fn from(e: super::super::h2::hpack::HpackError) -> Self {
        use super::super::h2::hpack::HpackError as E;
        match e {
            E::HeaderListTooLarge { limit } => H3Error::ExcessiveLoad {
                what: "response field section",
                limit,
            },
            E::HuffmanEos => H3Error::Decompression("Huffman-coded string contains EOS"),
            E::HuffmanPadding => H3Error::Decompression("bad Huffman padding"),
            E::IntegerOverflow => H3Error::Decompression("integer too large"),
            E::Truncated => H3Error::Decompression("field section ends inside a field line"),
            // No QPACK representation reaches HPACK's table rules.
            E::BadIndex(_) => H3Error::Decompression("bad index"),
            E::SizeUpdateTooLarge { .. } | E::SizeUpdateNotAtStart => {
                H3Error::Decompression("bad table size")
            }
        }
    }
}
