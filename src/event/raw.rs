//! `data.raw`: the vendor's payload as it arrived, kept beside what the vendor
//! module made of it.
//!
//! Guarantees: a payload that came as JSON is sent on exactly as its text
//! arrived (without the whitespace around it): escapes, number forms, key
//! order, repeated keys and inner whitespace are the vendor's, so a consumer
//! can check a signature over it. Only what did not come as JSON (form
//! fields, a feedback query) is the object of strings the relay made of it.

use serde::{Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// The vendor payload as received (CONTRACT `data.raw`).
#[derive(Clone, Debug)]
pub enum RawPayload {
    /// JSON text exactly as the vendor sent it.
    Json(Box<RawValue>),
    /// Form fields or query parameters, as an object of strings.
    Fields(Value),
}

impl RawPayload {
    /// The JSON text `text` as received (without the whitespace around it);
    /// `None` when it is not one JSON value. Callers pass text they have
    /// already read into a `Value`: `RawValue` checks the structure but lets
    /// a lone surrogate escape (`"\ud800"`) through, which `Value` refuses.
    pub fn json(text: &str) -> Option<RawPayload> {
        RawValue::from_string(text.to_owned())
            .ok()
            .map(RawPayload::Json)
    }

    /// The payload as a JSON value (parsed again for `Json`; for tests and tools).
    pub fn to_value(&self) -> Value {
        match self {
            RawPayload::Json(text) => serde_json::from_str(text.get()).unwrap_or(Value::Null),
            RawPayload::Fields(value) => value.clone(),
        }
    }
}

impl From<Value> for RawPayload {
    fn from(value: Value) -> RawPayload {
        RawPayload::Fields(value)
    }
}

impl PartialEq for RawPayload {
    fn eq(&self, other: &RawPayload) -> bool {
        match (self, other) {
            (RawPayload::Json(a), RawPayload::Json(b)) => a.get() == b.get(),
            (RawPayload::Fields(a), RawPayload::Fields(b)) => a == b,
            _ => false,
        }
    }
}

impl Serialize for RawPayload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RawPayload::Json(text) => text.serialize(serializer),
            RawPayload::Fields(value) => value.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_text_is_kept_as_written() {
        let text = "{\"b\":1.5e12,\"a\":\"caf\\u00e9 \\ud83d\\ude00\",\n  \"t\":1,\"t\":2}";
        let raw = RawPayload::json(&format!(" \r\n{text}\n")).unwrap();
        assert_eq!(serde_json::to_string(&raw).unwrap(), text);
    }

    #[test]
    fn what_is_not_one_json_value_is_refused() {
        for bad in ["", "{", "{} {}", "\u{feff}{}", "{\"a\":1} x"] {
            assert!(RawPayload::json(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn fields_serialize_as_their_object() {
        let raw = RawPayload::from(json!({"keypress": "4"}));
        assert_eq!(serde_json::to_string(&raw).unwrap(), r#"{"keypress":"4"}"#);
        assert_eq!(raw.to_value(), json!({"keypress": "4"}));
    }

    /// Equal means the same text as received, or the same fields.
    #[test]
    fn payloads_are_equal_only_as_the_same_text_or_fields() {
        let json = |t: &str| RawPayload::json(t).unwrap();
        assert_eq!(json(r#"{"a":1}"#), json(r#"{"a":1}"#));
        assert_ne!(json(r#"{"a":1}"#), json(r#"{"a": 1}"#));
        assert_ne!(json(r#"{"a":"1"}"#), RawPayload::from(json!({"a": "1"})));
        assert_ne!(
            RawPayload::from(json!({"a": "1"})),
            RawPayload::from(json!({"a": "2"}))
        );
    }
}
