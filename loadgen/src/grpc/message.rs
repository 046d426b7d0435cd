//! The request message: proto3 JSON (with templates) turned into
//! protobuf bytes against the method's request type. The schema is
//! compiled once, before the run; a JSON message that never changes is
//! encoded once then (the run sends those bytes), and a templated one is
//! rendered as JSON per call and encoded here.

use prost::Message as _;
use prost_reflect::{DeserializeOptions, DynamicMessage, MessageDescriptor};

use super::GrpcError;
use super::frame::PREFIX_LEN;

/// A method's request type, ready to encode JSON messages.
#[derive(Debug, Clone)]
pub struct MessageType {
    desc: MessageDescriptor,
}

impl MessageType {
    pub fn new(desc: MessageDescriptor) -> MessageType {
        MessageType { desc }
    }

    /// `helloworld.HelloRequest`.
    pub fn name(&self) -> &str {
        self.desc.full_name()
    }

    /// Appends `json` (proto3's JSON mapping) to `out` as one framed
    /// message. A field the type does not have, or a value of the wrong
    /// type, is an error that names it.
    pub fn encode(&self, json: &[u8], out: &mut Vec<u8>) -> Result<(), GrpcError> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let opts = DeserializeOptions::new().deny_unknown_fields(true);
        let msg = DynamicMessage::deserialize_with_options(self.desc.clone(), &mut de, &opts)
            .and_then(|m| de.end().map(|()| m))
            .map_err(|e| GrpcError::Json {
                message: self.desc.full_name().into(),
                why: e.to_string(),
            })?;
        let len = msg.encoded_len();
        out.reserve(PREFIX_LEN + len);
        out.push(0);
        out.extend_from_slice(&(len as u32).to_be_bytes());
        msg.encode(out).map_err(|e| GrpcError::Json {
            message: self.desc.full_name().into(),
            why: e.to_string(),
        })
    }
}
