//! Pure vendor modules: bytes and headers in, a verified, normalized
//! [`VendorEvent`](crate::event::VendorEvent) (or a typed error) out.
//!
//! Guarantees: no I/O, no clock read, no panic on any input.

pub mod caresoft;
pub mod sprecord;
pub mod tel4vn;
pub mod voip24h;
pub mod voipex;

use serde_json::Value;

use crate::event::{UNKNOWN_TYPE, VendorEvent, canonical_json};

/// A payload that cannot be read as the vendor's format; the text says why
/// (it is shown to the sender in a 400 and must hold no secret).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// An object the vendor module does not recognise: relayed as `vendor.unknown`
/// with its raw payload, identified by the payload's canonical text.
pub fn unknown_event(raw: Value) -> VendorEvent {
    VendorEvent {
        event_type: UNKNOWN_TYPE.to_owned(),
        subject: None,
        time: None,
        fields: Default::default(),
        identity: canonical_json(&raw),
        raw,
    }
}
