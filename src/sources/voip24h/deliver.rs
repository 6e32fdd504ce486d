//! A `response` event's way into the journal: unwrap the payload (an object, or
//! a JSON string holding one), parse it with the Voip24h vendor module, submit.
//! An event the session does not know takes the same way, wrapped with its
//! name ([`unrecognised`]).
//!
//! Guarantees: a payload that cannot be read is counted in
//! `callrelay_upstream_malformed_total` and logged (its size, never its text),
//! and the session goes on; readable ones are journaled in one commit, in
//! order, retried as a whole on commit errors until journaled or the caller
//! gives up (`give_up`: the session's drain deadline after a stop) — never
//! dropped before that.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::wire::Arg;
use crate::app::Context;
use crate::event::{IncomingEvent, RawPayload, Transport, Vendor};
use crate::ingest::IngestError;
use crate::vendors::voip24h::parse_call_event;

/// Why a `response` payload was not an event.
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    #[error("`response` carried no argument")]
    Missing,
    #[error("payload of {0} bytes is over the limit of {1} bytes")]
    TooLarge(usize, u64),
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    #[error("{0}")]
    Parse(String),
}

/// The journal is closing, or the drain after a stop is over: the session
/// must end. `abandoned` events of the group were not journaled.
#[derive(Debug)]
pub struct ShuttingDown {
    pub abandoned: u64,
}

/// Reads the first argument of a `response` event (an object, or a JSON
/// string holding one): the payload as a value for the vendor module, and as
/// the server wrote it, for `data.raw`.
pub fn read_payload(args: &[Arg], max_bytes: u64) -> Result<(Value, RawPayload), Malformed> {
    let first = args.first().ok_or(Malformed::Missing)?;
    let read = |text: &str| {
        check_size(text.len(), max_bytes)?;
        serde_json::from_str::<Value>(text).map_err(|e| Malformed::NotJson(e.to_string()))
    };
    if let Some(inner) = first.as_string() {
        let value = read(&inner)?;
        // `inner` was just read as JSON, so the fallback is never taken.
        let raw = RawPayload::json(&inner).unwrap_or_else(|| RawPayload::Fields(value.clone()));
        return Ok((value, raw));
    }
    let value = read(first.json())?;
    Ok((value, RawPayload::Json(first.clone().into_raw())))
}

fn check_size(size: usize, max: u64) -> Result<(), Malformed> {
    if size as u64 > max {
        Err(Malformed::TooLarge(size, max))
    } else {
        Ok(())
    }
}

/// An event the session does not know, as one `response`-like argument:
/// `{"event": name, "args": [...]}` with each argument's JSON as it arrived.
/// Voip24h says its socket also carries missed calls without naming their
/// event; whatever it is, it is relayed (as `vendor.unknown`, since the
/// wrapper has no call fields), not dropped.
pub fn unrecognised(name: &str, args: &[Arg]) -> Option<Arg> {
    let mut text = format!("{{\"event\":{},\"args\":[", Value::String(name.to_owned()));
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(arg.json());
    }
    text.push_str("]}");
    Arg::from_json(&text)
}

/// Counts a message from the server that could not be read.
pub fn count_malformed(ctx: &Context, account: &str) {
    ctx.metrics
        .upstream_malformed
        .with_label_values(&[Vendor::Voip24h.as_str(), account])
        .inc();
}

/// Parses and journals `responses` (each one event's arguments) in one
/// commit, in order; returns how many were events (the malformed are counted
/// and skipped). Commit errors are retried, the whole group each time so that
/// their order holds, until `give_up` fires.
pub async fn deliver_all(
    ctx: &Arc<Context>,
    account: &str,
    responses: &[Vec<Arg>],
    give_up: &CancellationToken,
) -> Result<usize, ShuttingDown> {
    let max_bytes = ctx.config.load().server.max_body.get_ref().get();
    let mut events = Vec::with_capacity(responses.len());
    for args in responses {
        let parsed = read_payload(args, max_bytes).and_then(|(payload, raw)| {
            parse_call_event(&payload)
                .map(|event| (event, raw))
                .map_err(|e| Malformed::Parse(e.0))
        });
        match parsed {
            Ok((event, raw)) => events.push(IncomingEvent {
                vendor: Vendor::Voip24h,
                account: account.to_owned(),
                transport: Transport::SocketIo,
                received_at: OffsetDateTime::now_utc(),
                event,
                raw,
            }),
            Err(why) => {
                count_malformed(ctx, account);
                tracing::warn!(vendor = "voip24h", account, error = %why, "malformed `response` payload; skipped");
            }
        }
    }
    if events.is_empty() {
        return Ok(0);
    }
    ctx.metrics
        .events_received
        .with_label_values(&[
            Vendor::Voip24h.as_str(),
            account,
            Transport::SocketIo.as_str(),
        ])
        .inc_by(events.len() as u64);
    let mut wait = Duration::from_millis(100);
    loop {
        match ctx.ingest.submit_all(&events).await {
            Ok(_) => return Ok(events.len()),
            Err(IngestError::ShuttingDown) => return Err(abandoned(&events)),
            Err(e) => {
                tracing::warn!(vendor = "voip24h", account, events = events.len(), error = %e, retry_in = ?wait, "journal refused events; retrying");
                tokio::select! {
                    _ = give_up.cancelled() => return Err(abandoned(&events)),
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn abandoned(events: &[IncomingEvent]) -> ShuttingDown {
    ShuttingDown {
        abandoned: events.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn arg(text: &str) -> Arg {
        Arg::from_json(text).unwrap()
    }

    #[test]
    fn an_unknown_event_is_wrapped_with_its_name_and_arguments_as_sent() {
        let wrapped =
            unrecognised("mi\"ssed", &[arg(r#"{"b": 1.0e3, "a":[]}"#), arg("7")]).unwrap();
        assert_eq!(
            wrapped.json(),
            r#"{"event":"mi\"ssed","args":[{"b": 1.0e3, "a":[]},7]}"#
        );
        let empty = unrecognised("ping2", &[]).unwrap();
        assert_eq!(empty.json(), r#"{"event":"ping2","args":[]}"#);
        let (value, _) = read_payload(&[empty], 1024).unwrap();
        assert_eq!(
            parse_call_event(&value).unwrap().event_type,
            "vendor.unknown"
        );
    }

    #[test]
    fn reads_objects_and_json_strings_keeping_their_text() {
        let text = r#"{"extend": 130, "state":"Ring","callid":"1.2","n":1.0e3}"#;
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(value["state"], "Ring");
        let (read, raw) = read_payload(&[arg(text)], 1 << 20).unwrap();
        assert_eq!(
            (read, serde_json::to_string(&raw).unwrap()),
            (value.clone(), text.to_owned())
        );
        // A JSON string holding the payload: the text inside it is the payload.
        let quoted = serde_json::to_string(&format!(" {text}\n")).unwrap();
        let (read, raw) = read_payload(&[arg(&quoted)], 1 << 20).unwrap();
        assert_eq!(
            (read, serde_json::to_string(&raw).unwrap()),
            (value, text.to_owned())
        );
    }

    #[test]
    fn refuses_missing_non_json_and_huge_payloads() {
        assert!(matches!(read_payload(&[], 100), Err(Malformed::Missing)));
        assert!(matches!(
            read_payload(&[arg(r#""{not json""#)], 100),
            Err(Malformed::NotJson(_))
        ));
        let huge = arg(&format!("\"{}\"", "x".repeat(200)));
        assert!(matches!(
            read_payload(&[huge], 100),
            Err(Malformed::TooLarge(200, 100))
        ));
        let big_obj = arg(&json!({"a": "y".repeat(200)}).to_string());
        assert!(matches!(
            read_payload(&[big_obj], 100),
            Err(Malformed::TooLarge(_, 100))
        ));
    }
}
