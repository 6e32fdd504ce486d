//! The socket.io text framing over Engine.IO websocket frames, as far as the
//! Voip24h session needs it: the Engine.IO packet type, and socket.io CONNECT,
//! DISCONNECT, CONNECT_ERROR and EVENT packets on the default namespace.
//!
//! Guarantees: pure functions; any text decodes to some [`Frame`] (unknown
//! input is [`Frame::Other`] or [`SioPacket::Other`], a broken socket.io
//! packet [`SioPacket::Malformed`]), never a panic.

use serde_json::Value;
use serde_json::value::RawValue;
use url::Url;

/// One Engine.IO packet, by its leading digit.
#[derive(Debug, PartialEq)]
pub enum Frame<'a> {
    /// `0{...}`: the handshake; its JSON.
    Open(&'a str),
    /// `1`: the server closes the transport.
    Close,
    /// `2...`: a ping (sent by the server in Engine.IO 4).
    Ping(&'a str),
    /// `3...`: a pong (answer to our ping in Engine.IO 3).
    Pong,
    /// `4...`: a message: a socket.io packet.
    Message(SioPacket),
    /// `6` noop and anything unknown.
    Other,
}

/// A socket.io packet on the default namespace.
#[derive(Debug, PartialEq)]
pub enum SioPacket {
    /// `0`: whether the server sent data with it (socket.io 3+ sends
    /// `{"sid": ...}`; 2.x sends nothing), which is all the session reads.
    Connect(bool),
    /// `1`: the server disconnected us from the namespace.
    Disconnect,
    /// `2[...]`: an event with its arguments.
    Event { name: String, args: Vec<Arg> },
    /// `4...`: the namespace refused us, the server's reason; or, on
    /// socket.io 2 once the namespace is open, its `socket.error(msg)`,
    /// which the link hands on as the `error` event.
    ConnectError(String),
    /// Acks, other namespaces.
    Other,
    /// A packet that breaks the socket.io format (an event whose data is not a
    /// JSON array starting with its name, or whose name is over
    /// [`MAX_EVENT_NAME`] bytes, an unknown packet type): why.
    Malformed(&'static str),
}

pub fn decode(text: &str) -> Frame<'_> {
    let mut chars = text.chars();
    let Some(kind) = chars.next() else {
        return Frame::Other;
    };
    let rest = chars.as_str();
    match kind {
        '0' => Frame::Open(rest),
        '1' => Frame::Close,
        '2' => Frame::Ping(rest),
        '3' => Frame::Pong,
        '4' => Frame::Message(decode_socketio(rest)),
        _ => Frame::Other,
    }
}

fn decode_socketio(text: &str) -> SioPacket {
    let mut chars = text.chars();
    let Some(kind) = chars.next() else {
        return SioPacket::Malformed("an empty socket.io packet");
    };
    let rest = chars.as_str();
    // A packet for another namespace starts with `/nsp,`; ours is the default one.
    if rest.starts_with('/') && !rest.starts_with("/,") {
        return SioPacket::Other;
    }
    let rest = rest.strip_prefix("/,").unwrap_or(rest);
    match kind {
        // Checked as JSON, not kept: parsed into values, a 16 MiB `40[0,0,…]`
        // took hundreds of MB.
        '0' => SioPacket::Connect(serde_json::from_str::<serde::de::IgnoredAny>(rest).is_ok()),
        '1' => SioPacket::Disconnect,
        '2' => decode_event(rest),
        // Whole (one frame, bounded as an event's arguments are): the
        // key or secret it may echo is masked before it is cut.
        '4' => SioPacket::ConnectError(rest.to_owned()),
        // Acks: valid, and nothing the session uses.
        '3' | '6' => SioPacket::Other,
        // Valid, but its data comes in binary frames we do not assemble:
        // counted, so that a `response` sent this way is not lost unseen.
        '5' => SioPacket::Malformed("a binary event (not read: Voip24h sends none)"),
        _ => SioPacket::Malformed("an unknown socket.io packet type"),
    }
}

/// One argument of an event, as its JSON text arrived: a `response`'s
/// payload is journaled as the server wrote it (`data.raw`).
#[derive(Clone, Debug)]
pub struct Arg(Box<RawValue>);

impl Arg {
    /// `text` as an argument, when it is one JSON value.
    pub fn from_json(text: &str) -> Option<Arg> {
        RawValue::from_string(text.to_owned()).ok().map(Arg)
    }

    /// The argument's JSON text.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// The text of a JSON string argument; `None` for any other JSON value.
    pub fn as_string(&self) -> Option<String> {
        serde_json::from_str::<String>(self.0.get()).ok()
    }

    /// The argument as JSON text kept as it arrived.
    pub fn into_raw(self) -> Box<RawValue> {
        self.0
    }
}

impl PartialEq for Arg {
    fn eq(&self, other: &Arg) -> bool {
        self.json() == other.json()
    }
}

/// The most arguments an event may carry. Each is a boxed value of its
/// own, so a 16 MiB frame of 8 million zeros would take hundreds of MB
/// while the backlog bound counted 16 MiB; the vendor's events carry one.
const MAX_EVENT_ARGS: usize = 16;

const TOO_MANY_ARGS: &str = "too many arguments";

/// The longest event name read, in bytes: the vendor's are short words. A
/// name outlives its frame (an unknown one is kept in the session's set of
/// names logged, for the session's life, and logged), so an unbounded one
/// let a server keep and log megabytes per name, outside the read-ahead
/// bound.
pub(super) const MAX_EVENT_NAME: usize = 256;

/// An event's array, its name first, read only up to `MAX_EVENT_ARGS`
/// arguments.
struct EventItems(Vec<Box<RawValue>>);

impl<'de> serde::Deserialize<'de> for EventItems {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Items;
        impl<'de> serde::de::Visitor<'de> for Items {
            type Value = EventItems;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "an array of at most {} items", MAX_EVENT_ARGS + 1)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<EventItems, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Box<RawValue>>()? {
                    if items.len() > MAX_EVENT_ARGS {
                        return Err(serde::de::Error::custom(TOO_MANY_ARGS));
                    }
                    items.push(item);
                }
                Ok(EventItems(items))
            }
        }
        deserializer.deserialize_seq(Items)
    }
}

fn decode_event(text: &str) -> SioPacket {
    // An event may carry an ack id before its array: `212["name", ...]`.
    let json = text.trim_start_matches(|c: char| c.is_ascii_digit());
    const NOT_AN_EVENT: &str = "an event that is not a JSON array starting with its name";
    let mut items = match serde_json::from_str::<EventItems>(json) {
        Ok(EventItems(items)) => items,
        Err(e) if e.to_string().starts_with(TOO_MANY_ARGS) => {
            return SioPacket::Malformed("an event with more than 16 arguments");
        }
        Err(_) => return SioPacket::Malformed(NOT_AN_EVENT),
    };
    if items.is_empty() {
        return SioPacket::Malformed(NOT_AN_EVENT);
    }
    match serde_json::from_str::<String>(items.remove(0).get()) {
        Ok(name) if name.len() > MAX_EVENT_NAME => {
            SioPacket::Malformed("an event whose name is over 256 bytes")
        }
        Ok(name) => SioPacket::Event {
            name,
            args: items.into_iter().map(Arg).collect(),
        },
        Err(_) => SioPacket::Malformed(NOT_AN_EVENT),
    }
}

/// The text frame for `socket.emit(event, arg)` on the default namespace.
pub fn encode_event(event: &str, arg: Option<&Value>) -> String {
    let mut items = vec![Value::String(event.to_owned())];
    if let Some(arg) = arg {
        items.push(arg.clone());
    }
    format!("42{}", Value::Array(items))
}

pub const PING: &str = "2";
pub const PONG_PREFIX: &str = "3";
pub const CONNECT: &str = "40";
pub const DISCONNECT: &str = "41";

/// The websocket URL of the Engine.IO endpoint behind a configured http(s) URL:
/// `ws(s)://host:port/socket.io/?EIO={eio}&transport=websocket`. A URL with
/// its own path keeps it as the Engine.IO path (the socket.io clients'
/// `path` option, for a server behind a front end), not as a namespace, as
/// `io(url)` would take it: the relay joins the default namespace only.
/// The path always ends in one `/` (`/gw/socket.io` dials
/// `/gw/socket.io/`), as engine.io-client writes its `path`.
pub fn websocket_url(base: &str, eio: u8) -> Result<Url, url::ParseError> {
    let mut url = Url::parse(base)?;
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    // ok to ignore: http(s) → ws(s) is always an allowed scheme change.
    let _ = url.set_scheme(scheme);
    // An engine.io server matches its path plus `/` as a prefix, so
    // `/socket.io?EIO=…` is never answered; `check` (cross_checks'
    // `voip24h_server`) counts both spellings as one server, and so must
    // the dialer.
    let path = match url.path().trim_end_matches('/') {
        "" => "/socket.io/".to_owned(),
        path => format!("{path}/"),
    };
    url.set_path(&path);
    url.query_pairs_mut()
        .append_pair("EIO", &eio.to_string())
        .append_pair("transport", "websocket");
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_the_packets_a_voip24h_session_sees() {
        assert_eq!(decode("0{\"sid\":\"s\"}"), Frame::Open("{\"sid\":\"s\"}"));
        assert_eq!(decode("3"), Frame::Pong);
        assert_eq!(decode("1"), Frame::Close);
        assert_eq!(decode("2probe"), Frame::Ping("probe"));
        assert_eq!(decode("40"), Frame::Message(SioPacket::Connect(false)));
        assert_eq!(
            decode("40{\"sid\":\"x\"}"),
            Frame::Message(SioPacket::Connect(true))
        );
        assert_eq!(
            decode("42[\"say\"]"),
            Frame::Message(SioPacket::Event {
                name: "say".into(),
                args: vec![]
            })
        );
        let Frame::Message(SioPacket::Event { name, args }) =
            decode("427[\"response\", {\"a\" : 1.0e3,\"a\":\"\\u00e9\"},\"b\"]")
        else {
            panic!("not an event");
        };
        assert_eq!(name, "response");
        // Arguments are equal as the same text, not as the same value.
        let arg = |t: &str| Arg::from_json(t).unwrap();
        assert_eq!(
            decode("42[\"x\",{\"a\":1}]"),
            Frame::Message(SioPacket::Event {
                name: "x".into(),
                args: vec![arg("{\"a\":1}")]
            })
        );
        assert_ne!(arg("{\"a\":1}"), arg("{\"a\": 1}"));
        let texts: Vec<&str> = args.iter().map(Arg::json).collect();
        // Each argument's text as the server wrote it.
        assert_eq!(texts, ["{\"a\" : 1.0e3,\"a\":\"\\u00e9\"}", "\"b\""]);
        assert_eq!(args[0].as_string(), None);
        assert_eq!(args[1].as_string().as_deref(), Some("b"));
        assert_eq!(decode("41"), Frame::Message(SioPacket::Disconnect));
        assert_eq!(
            decode("44{\"message\":\"no\"}"),
            Frame::Message(SioPacket::ConnectError("{\"message\":\"no\"}".into()))
        );
        assert_eq!(
            decode("42/admin,[\"say\"]"),
            Frame::Message(SioPacket::Other)
        );
    }

    #[test]
    fn never_panics_on_garbage() {
        for text in [
            "", "4", "42", "42[", "42[]", "42[1,2]", "9", "é", "42\u{0}", "0",
        ] {
            let _ = decode(text);
        }
        for text in ["42[1]", "42[]", "42[\"response\",{bad", "4", "49"] {
            assert!(
                matches!(decode(text), Frame::Message(SioPacket::Malformed(_))),
                "{text}"
            );
        }
        assert_eq!(decode("43[]"), Frame::Message(SioPacket::Other));
        // A binary event is named as such, so the count says what was skipped.
        assert_eq!(
            decode("451-[\"response\",{\"_placeholder\":true,\"num\":0}]"),
            Frame::Message(SioPacket::Malformed(
                "a binary event (not read: Voip24h sends none)"
            ))
        );
    }

    #[test]
    fn an_event_of_more_than_16_arguments_is_malformed() {
        let with_args = |n: usize| format!("42[\"response\"{}]", ",0".repeat(n));
        let Frame::Message(SioPacket::Event { args, .. }) = decode(&with_args(16)) else {
            panic!("16 arguments are an event");
        };
        assert_eq!(args.len(), 16);
        // Each argument is a value of its own: millions of them took far
        // more memory than the frame's bytes, which the backlog bound counts.
        assert_eq!(
            decode(&with_args(17)),
            Frame::Message(SioPacket::Malformed("an event with more than 16 arguments"))
        );
        assert_eq!(
            decode(&with_args(100_000)),
            Frame::Message(SioPacket::Malformed("an event with more than 16 arguments"))
        );
    }

    /// A name is kept and logged where arguments are not: one of megabytes
    /// is a broken frame, not an event to relay.
    #[test]
    fn an_event_name_over_256_bytes_is_malformed() {
        let named = |name: &str| format!("42[{},{{}}]", json!(name));
        let longest = "é".repeat(MAX_EVENT_NAME / 2);
        let Frame::Message(SioPacket::Event { name, .. }) = decode(&named(&longest)) else {
            panic!("a name of 256 bytes is an event");
        };
        assert_eq!(name, longest);
        for over in [format!("{longest}x"), "x".repeat(15 << 20)] {
            assert_eq!(
                decode(&named(&over)),
                Frame::Message(SioPacket::Malformed(
                    "an event whose name is over 256 bytes"
                )),
                "{} bytes",
                over.len()
            );
        }
    }

    #[test]
    fn encodes_events_with_and_without_an_argument() {
        assert_eq!(encode_event("hello", None), "42[\"hello\"]");
        assert_eq!(
            encode_event("sign", Some(&json!("k"))),
            "42[\"sign\",\"k\"]"
        );
    }

    #[test]
    fn builds_the_engine_io_url() {
        assert_eq!(
            websocket_url("http://127.0.0.1:3122", 3).unwrap().as_str(),
            "ws://127.0.0.1:3122/socket.io/?EIO=3&transport=websocket"
        );
        assert_eq!(
            websocket_url("https://dial.voip24h.vn:3123/", 4)
                .unwrap()
                .as_str(),
            "wss://dial.voip24h.vn:3123/socket.io/?EIO=4&transport=websocket"
        );
    }

    /// engine.io servers match `path` + `/` by prefix: `/socket.io?EIO=…`
    /// was never answered, so a path written without its trailing slash
    /// dialled a session that never opened.
    #[test]
    fn the_engine_io_path_ends_with_one_slash_however_it_is_written() {
        for (base, path) in [
            ("https://dial.voip24h.vn:3123/socket.io", "/socket.io/"),
            ("https://dial.voip24h.vn:3123/socket.io/", "/socket.io/"),
            ("https://dial.voip24h.vn:3123/socket.io//", "/socket.io/"),
            ("https://gw/voip24h/socket.io", "/voip24h/socket.io/"),
            ("https://gw/voip24h/socket.io/", "/voip24h/socket.io/"),
            ("https://gw", "/socket.io/"),
            ("https://gw/", "/socket.io/"),
            ("https://gw//", "/socket.io/"),
        ] {
            let url = websocket_url(base, 4).unwrap();
            assert_eq!(url.path(), path, "{base}");
            assert_eq!(url.query(), Some("EIO=4&transport=websocket"), "{base}");
        }
    }
}
