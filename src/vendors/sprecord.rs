//! SPRecord: `{device_id, event_type, payload}` messages, identical on SSE and
//! webhooks, and the MD5 verification handshake — parsing and normalization (pure).

use serde_json::Value;

use super::{ParseError, unknown_event};
use crate::event::VendorEvent;

/// One SPRecord message.
#[derive(Clone, Debug, PartialEq)]
pub enum SprecordMessage {
    Event(VendorEvent),
    /// The webhook verification handshake: answer with the MD5 hex of `payload`.
    Verification {
        payload: String,
    },
}

/// Parses one message (an SSE `data:` JSON or a webhook body).
pub fn parse_message(message: &Value) -> Result<SprecordMessage, ParseError> {
    if !message.is_object() {
        return Err(ParseError(
            "an SPRecord message must be a JSON object".into(),
        ));
    }
    Ok(SprecordMessage::Event(unknown_event(message.clone())))
}
