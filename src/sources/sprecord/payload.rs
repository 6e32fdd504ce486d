//! What one SSE `data:` payload of an SPRecord stream is: an event, with the
//! text as received for `data.raw`, or the reason it is skipped.
//!
//! Pure, so the fuzz target `upstream_sse` runs exactly what a stream runs
//! on each payload it frames. Guarantees: never panics; a payload that is no
//! JSON or no SPRecord event is `Malformed` with a reason that quotes none
//! of it; the webhook verification message, which means nothing on a
//! stream, is `Verification`.

use crate::event::{RawPayload, VendorEvent};
use crate::vendors;
use crate::vendors::sprecord::{SprecordMessage, parse_message};

/// One payload, read.
// Returned once per payload and taken apart at once: boxing the event would
// only add an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq)]
pub enum StreamPayload {
    /// An event, and its payload for `data.raw`: the text as received,
    /// without the whitespace around it (a lone surrogate escape read as
    /// U+FFFD).
    Event(VendorEvent, RawPayload),
    /// The webhook registration's verification message.
    Verification,
    /// Not an SPRecord event: why, in words that quote none of the payload.
    Malformed(String),
}

/// Reads one `data:` payload as a stream does.
pub fn read_payload(data: &str) -> StreamPayload {
    let (value, text) = match vendors::text::parse_json(data) {
        Ok(read) => read,
        Err(e @ vendors::text::JsonError::TooManyValues) => {
            return StreamPayload::Malformed(format!("data holds {e}; {} bytes", data.len()));
        }
        Err(e) => {
            return StreamPayload::Malformed(format!(
                "data is not JSON ({e}); {} bytes",
                data.len()
            ));
        }
    };
    match parse_message(&value) {
        Ok(SprecordMessage::Event(event)) => {
            let raw = RawPayload::json(&text).unwrap_or(RawPayload::Fields(value));
            StreamPayload::Event(event, raw)
        }
        Ok(SprecordMessage::Verification { .. }) => StreamPayload::Verification,
        Err(e) => StreamPayload::Malformed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_keeps_its_text_as_received() {
        let data = include_str!("../../../tests/fixtures/vendors/sprecord/call_end.json");
        match read_payload(data) {
            StreamPayload::Event(event, RawPayload::Json(raw)) => {
                // The file's last line end is outside the JSON value.
                assert_eq!(raw.get(), data.trim_end());
                assert!(!event.event_type.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn text_that_is_not_json_is_malformed_without_being_quoted() {
        let StreamPayload::Malformed(why) = read_payload("secret-looking text") else {
            panic!("not malformed");
        };
        assert!(!why.contains("secret"), "{why}");
        assert!(why.contains("19 bytes"), "{why}");
    }

    #[test]
    fn data_of_more_values_than_the_limit_is_malformed() {
        let zeros = vec!["0"; crate::vendors::text::MAX_VALUES].join(",");
        let data = format!(r#"{{"event_type":"call_end","a":[{zeros}]}}"#);
        let StreamPayload::Malformed(why) = read_payload(&data) else {
            panic!("read");
        };
        assert!(why.contains("more than 10000 values"), "{why}");
    }

    #[test]
    fn the_verification_message_is_told_apart() {
        let data = include_str!("../../../tests/fixtures/vendors/sprecord/verification.json");
        assert_eq!(read_payload(data), StreamPayload::Verification);
    }

    #[test]
    fn json_that_is_no_sprecord_event_is_malformed() {
        assert!(matches!(
            read_payload("[1, 2]"),
            StreamPayload::Malformed(_)
        ));
    }
}
