//! Voip24h: call events (socket.io `response` and webhook), missed calls and
//! the feedback rating callback — parsing and normalization (pure).

use serde_json::Value;

use super::{ParseError, unknown_event};
use crate::event::VendorEvent;

/// A call event `{extend, state, phone, callid, type}` (also a missed-call
/// object), as the socket.io `response` event or a webhook body carries it.
pub fn parse_call_event(payload: &Value) -> Result<VendorEvent, ParseError> {
    if !payload.is_object() {
        return Err(ParseError("a Voip24h event must be a JSON object".into()));
    }
    Ok(unknown_event(payload.clone()))
}
