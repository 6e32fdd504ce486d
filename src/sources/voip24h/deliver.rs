//! A `response` event's way into the journal: unwrap the payload (an object, or
//! a JSON string holding one), parse it with the Voip24h vendor module, submit.
//! An event the session does not know takes the same way, the account's key
//! and secret masked in it first ([`without_secrets`]): as the call event
//! its first argument carries ([`carries_a_call_event`]), else wrapped with
//! its name ([`unrecognised`]). A payload the vendor module does not know
//! either, journaled as `vendor.unknown`, is masked alike.
//!
//! Guarantees: a payload that cannot be read is counted in
//! `callrelay_upstream_malformed_total` and logged (its size, never its text),
//! and the session goes on; readable ones are journaled in one commit, in
//! order, retried as a whole on commit errors until journaled or the caller
//! gives up (`give_up`: the session's drain deadline after a stop) — never
//! dropped before that. A group already queued when the drain ends is
//! committed whatever the session does, and is waited for [`ANSWER_GRACE`]
//! more at most, so the session ends (and counts what it leaves) before the
//! sources' stop aborts it; a task then takes its answer, and counts the
//! group as lost if its commit fails. Meanwhile the session's `hello`s go on (see
//! [`super::keep_alive`]), so that the server keeps the session.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::keep_alive::KeepAlive;
use super::link::Masked;
use super::warnings::SessionWarnings;
use super::wire::Arg;
use crate::app::Context;
use crate::event::{IncomingEvent, RawPayload, Transport, UNKNOWN_TYPE, Vendor, VendorEvent};
use crate::ingest::IngestError;
use crate::sources::masked::MASKED_STRING;
use crate::vendors;
use crate::vendors::voip24h::parse_call_event;

/// Why a `response` payload was not an event.
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    #[error("`response` carried no argument")]
    Missing,
    #[error(
        "payload of {0} bytes is over the limit of {1} bytes (the larger of `server.max_body` and 1 MiB)"
    )]
    TooLarge(usize, u64),
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    /// Refused before it is read into values: see `vendors::text::MAX_VALUES`.
    #[error("payload holds {0}")]
    TooManyValues(vendors::text::JsonError),
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
    if let Some(inner) = first.as_string() {
        return read_inner(&inner, max_bytes);
    }
    let (value, text) = read_json(first.json(), max_bytes)?;
    match (value, text) {
        // A string with a lone surrogate escape, which `as_string` refuses.
        (Value::String(inner), _) => read_inner(&inner, max_bytes),
        (value, Cow::Borrowed(_)) => Ok((value, RawPayload::Json(first.clone().into_raw()))),
        (value, Cow::Owned(repaired)) => {
            let raw = raw_payload(&repaired, &value);
            Ok((value, raw))
        }
    }
}

/// The JSON text a string argument holds.
fn read_inner(inner: &str, max_bytes: u64) -> Result<(Value, RawPayload), Malformed> {
    let (value, text) = read_json(inner, max_bytes)?;
    let raw = raw_payload(&text, &value);
    Ok((value, raw))
}

/// `text` as JSON, and the text read (see `vendors::text::parse_json`).
fn read_json(text: &str, max_bytes: u64) -> Result<(Value, Cow<'_, str>), Malformed> {
    check_size(text.len(), max_bytes)?;
    vendors::text::parse_json(text).map_err(|e| match e {
        vendors::text::JsonError::TooManyValues => Malformed::TooManyValues(e),
        e => Malformed::NotJson(e.to_string()),
    })
}

/// `text`, just read as `value`, as `data.raw` (the fallback is never taken).
fn raw_payload(text: &str, value: &Value) -> RawPayload {
    RawPayload::json(text).unwrap_or_else(|| RawPayload::Fields(value.clone()))
}

/// The smallest bound on a `response` payload, whatever `server.max_body`
/// says (SPRecord's events have the same fixed bound).
const MIN_PAYLOAD_LIMIT: u64 = 1024 * 1024;

/// The largest `response` payload taken: `server.max_body`, lowered to
/// harden the webhooks, refused the socket's events past it, and socket.io
/// has no replay: a 5 KiB CDR under `max_body = "4KiB"` was lost for good.
pub fn payload_limit(max_body: u64) -> u64 {
    max_body.max(MIN_PAYLOAD_LIMIT)
}

/// [`payload_limit`] under the relay's config as now loaded.
pub fn payload_limit_of(ctx: &Context) -> u64 {
    payload_limit(ctx.config.load().server.max_body.get_ref().get())
}

fn check_size(size: usize, max: u64) -> Result<(), Malformed> {
    if size as u64 > max {
        Err(Malformed::TooLarge(size, max))
    } else {
        Ok(())
    }
}

/// `args` with the account's key and secret (`masked`) shown as `***`
/// wherever they occur ([`Masked::mask_json`]: inside strings too, the JSON
/// kept whole): an event the session does not know may be the vendor
/// echoing what it was sent (the `sign` object back, "key <KEY> không hợp
/// lệ"), and journaled as received it put them on Kafka for the topic's
/// retention, on every screen of the account and in the journal's backups.
pub fn without_secrets(args: Vec<Arg>, masked: &Masked) -> Vec<Arg> {
    args.into_iter()
        .filter_map(|arg| match masked.mask_json(arg.json()) {
            Cow::Borrowed(_) => Some(arg),
            // Masked JSON is JSON; were it not, the argument is replaced
            // whole rather than journaled as received.
            Cow::Owned(text) => Arg::from_json(&text).or_else(|| Arg::from_json(MASKED_STRING)),
        })
        .collect()
}

/// An event the session does not know, as one `response`-like argument:
/// `{"event": name, "args": [...]}` with each argument's JSON as it arrived.
/// For an event that carries no call event ([`carries_a_call_event`]
/// decides first: Voip24h says its socket also carries missed calls without
/// naming their event, and those are journaled as the call event); whatever
/// it is, it is relayed as `vendor.unknown`, not dropped.
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

/// The length of [`unrecognised`]'s text for `name` and `args`, found
/// without writing it.
pub fn unrecognised_len(name: &str, args: &[Arg]) -> usize {
    let name = Value::String(name.to_owned()).to_string().len();
    let commas = args.len().saturating_sub(1);
    let args: usize = args.iter().map(|arg| arg.json().len()).sum();
    r#"{"event":,"args":[]}"#.len() + name + args + commas
}

/// Whether the first of `args` (an event of another name than `response`)
/// reads as a call event the vendor's parser knows: Voip24h says its socket
/// also carries missed calls without naming the event, and wrapped as
/// `vendor.unknown` such a call had another identity than the webhook's
/// `call.missed` of it, so the call came twice, once unrecognised.
pub fn carries_a_call_event(ctx: &Context, args: &[Arg]) -> bool {
    let max_bytes = payload_limit_of(ctx);
    read_payload(args, max_bytes)
        .ok()
        .and_then(|(payload, _)| parse_call_event(&payload).ok())
        // A call id too: an undocumented event that only says `state` is
        // not taken for a call's.
        .is_some_and(|event| event.event_type != UNKNOWN_TYPE && event.subject.is_some())
}

/// Counts a message from the server that could not be read.
pub fn count_malformed(ctx: &Context, account: &str) {
    ctx.metrics
        .upstream_malformed
        .with_label_values(&[Vendor::Voip24h.as_str(), account])
        .inc();
}

/// One event's arguments and when they arrived (its receive time).
pub type Received = (Vec<Arg>, OffsetDateTime);

/// `event`, of a payload the vendor module does not know, and its `raw`,
/// with the account's key and secret (`masked`) shown as `***`: a
/// `response` with none of the fields the vendor documents may be its
/// refusal ("key <KEY> không hợp lệ") or the `sign` object echoed back. Its
/// identity is the masked payload's, as a `vendor.unknown` wrapper's is.
fn unknown_without_secrets(
    event: VendorEvent,
    raw: RawPayload,
    masked: &Masked,
) -> (VendorEvent, RawPayload) {
    let text = match &raw {
        RawPayload::Json(text) => Cow::Borrowed(text.get()),
        RawPayload::Fields(value) => Cow::Owned(value.to_string()),
    };
    let Cow::Owned(text) = masked.mask_json(&text) else {
        return (event, raw);
    };
    match vendors::text::parse_json(&text) {
        Ok((value, read)) => (vendors::unknown_event(&value), raw_payload(&read, &value)),
        // Masked JSON is JSON; were it not, the payload goes whole rather
        // than as received.
        Err(_) => {
            let value = Value::String("***".into());
            (vendors::unknown_event(&value), RawPayload::Fields(value))
        }
    }
}

/// Parses and journals `responses` (each one event's arguments) in one
/// commit, in order; returns how many were events (the malformed are counted
/// and skipped). Commit errors are retried, the whole group each time so that
/// their order holds, until `give_up` fires. One the vendor module does not
/// know is journaled with the account's key and secret (`masked`) masked.
pub async fn deliver_all(
    ctx: &Arc<Context>,
    account: &str,
    responses: &[Received],
    give_up: &CancellationToken,
    mut keep_alive: Option<&mut KeepAlive<'_>>,
    warnings: &SessionWarnings,
    masked: &Masked,
) -> Result<usize, ShuttingDown> {
    let max_bytes = payload_limit_of(ctx);
    let mut events = Vec::with_capacity(responses.len());
    for (args, arrived) in responses {
        let parsed =
            read_payload(args, max_bytes).and_then(|(payload, raw)| {
                match parse_call_event(&payload) {
                    Ok(event) if event.event_type == UNKNOWN_TYPE => {
                        Ok(unknown_without_secrets(event, raw, masked))
                    }
                    Ok(event) => Ok((event, raw)),
                    Err(e) => Err(Malformed::Parse(e.0)),
                }
            });
        match parsed {
            Ok((event, raw)) => {
                let incoming = IncomingEvent {
                    vendor: Vendor::Voip24h,
                    account: account.to_owned(),
                    transport: Transport::SocketIo,
                    received_at: *arrived,
                    event,
                    raw,
                };
                ctx.unread_dates.say(&incoming);
                events.push(incoming);
            }
            Err(why) => {
                count_malformed(ctx, account);
                warnings.malformed_response(account, &why);
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
    let mut wait = FIRST_COMMIT_RETRY;
    loop {
        let submitted = saying_hello(&mut keep_alive, async {
            let queued = ctx.ingest.queue_all_unless(&events, give_up).await?;
            let mut answered = Box::pin(queued.answered());
            tokio::select! {
                answer = &mut answered => answer.map(|_| ()),
                () = answer_grace_over(give_up) => {
                    // Queued, so journaled if the commit in progress
                    // succeeds (a reopen reads the whole file: minutes);
                    // waiting on past the drain got the session aborted at
                    // the sources' 10 s, what it read behind this group
                    // lost and not counted. Its answer is still taken: a
                    // refusal is counted as lost at the stop.
                    warnings.group_unanswered(account, events.len(), ANSWER_GRACE);
                    let (ctx, account, group) = (ctx.clone(), account.to_owned(), events.len());
                    ctx.late_answers.clone().spawn(async move {
                        if answered.await.is_err() {
                            count_lost_at_stop(&ctx, &account, group as u64);
                        }
                    });
                    Ok(())
                }
            }
        })
        .await;
        match submitted {
            Ok(()) => return Ok(events.len()),
            Err(IngestError::ShuttingDown) => return Err(abandoned(&events)),
            // The drain ended while the group waited for room: nothing was
            // queued, and nothing is retried.
            Err(IngestError::Full) if give_up.is_cancelled() => return Err(abandoned(&events)),
            Err(e) => {
                warnings.journal_refused(account, events.len(), &e, wait);
                tokio::select! {
                    _ = give_up.cancelled() => return Err(abandoned(&events)),
                    _ = saying_hello(&mut keep_alive, tokio::time::sleep(wait)) => {}
                }
                wait = next_commit_retry(wait);
            }
        }
    }
}

/// How long a group already queued is waited for once the drain is over:
/// the session must end before the sources' stop aborts it, 10 s after the
/// stop (see `session::DRAIN_LIMIT` for the rest of that budget).
const ANSWER_GRACE: Duration = Duration::from_secs(2);

/// `left` `response`s received and not journaled at a stop are lost (the
/// server will not send them again): counted and logged rather than
/// dropped without a word.
pub fn count_lost_at_stop(ctx: &Context, account: &str, left: u64) {
    if left == 0 {
        return;
    }
    ctx.metrics
        .ingest_errors
        .with_label_values(&["dropped_at_stop"])
        .inc_by(left);
    if ctx.shutdown.is_cancelled() {
        // Kept for the next start: this process is seldom scraped again.
        ctx.dropped_at_shutdown
            .fetch_add(left, std::sync::atomic::Ordering::AcqRel);
    }
    tracing::error!(
        vendor = "voip24h",
        account,
        events = left,
        "`response` events received but not journaled as the session ended (within the drain after a stop, or with the journal closing or refusing them); they are lost"
    );
}

/// Ends [`ANSWER_GRACE`] after `give_up` fires.
async fn answer_grace_over(give_up: &CancellationToken) {
    give_up.cancelled().await;
    tokio::time::sleep(ANSWER_GRACE).await;
}

/// Runs `work`, with the session's `hello`s going on meanwhile if asked.
async fn saying_hello<F: std::future::Future>(
    keep_alive: &mut Option<&mut KeepAlive<'_>>,
    work: F,
) -> F::Output {
    match keep_alive.as_deref_mut() {
        Some(keep_alive) => keep_alive.during(work).await,
        None => work.await,
    }
}

/// The wait before the first retry of a refused commit.
const FIRST_COMMIT_RETRY: Duration = Duration::from_millis(100);
/// The longest wait between retries: a journal back from a fault is used
/// again within this.
const LAST_COMMIT_RETRY: Duration = Duration::from_secs(5);

/// The wait after `wait` between retries of a refused commit: doubled, up
/// to [`LAST_COMMIT_RETRY`].
fn next_commit_retry(wait: Duration) -> Duration {
    (wait * 2).min(LAST_COMMIT_RETRY)
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

    /// `responses` delivered on account `acc` by a session of its own, and
    /// the JSON lines logged meanwhile.
    async fn deliver_logged(
        ctx: &Arc<Context>,
        responses: &[Received],
    ) -> (Result<usize, ShuttingDown>, String) {
        let (logs, guard) = crate::logging::tests_support::capture_json();
        let journaled = deliver_all(
            ctx,
            "acc",
            responses,
            &CancellationToken::new(),
            None,
            &SessionWarnings::default(),
            &Masked::default(),
        )
        .await;
        drop(guard);
        (journaled, logs.text())
    }

    /// A server repeating a payload that cannot be read got a warning line
    /// per payload (operator-messages review, 2026-12-05): one now, the
    /// rest counted in the metric and in the next line's `held_back`.
    #[tokio::test]
    async fn malformed_responses_are_warned_about_once_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        let relay = crate::app::tests_support::relay_in(dir.path(), "").await;
        let arrived = OffsetDateTime::now_utc();
        let responses: Vec<Received> = (0..100)
            .map(|_| (vec![arg("\"not an object\"")], arrived))
            .collect();
        let (journaled, lines) = deliver_logged(&relay.ctx, &responses).await;
        assert!(matches!(journaled, Ok(0)), "{journaled:?}");
        let warned = lines
            .lines()
            .filter(|l| l.contains("malformed `response` payload"))
            .count();
        assert_eq!(warned, 1, "{lines}");
        let malformed = relay
            .ctx
            .metrics
            .upstream_malformed
            .with_label_values(&["voip24h", "acc"])
            .get();
        assert_eq!(malformed, 100, "each one counted");
        crate::app::tests_support::stop(relay).await;
    }

    /// A missed call whose `calldate` is day-first (never guessed) is
    /// journaled with the receive time as its `time`, and the session says
    /// so, once for the field however many come; one read is not said.
    #[tokio::test]
    async fn an_unread_date_is_journaled_at_the_receive_time_and_said() {
        let dir = tempfile::tempdir().unwrap();
        let relay = crate::app::tests_support::relay_in(dir.path(), "").await;
        let arrived = OffsetDateTime::now_utc();
        let missed = |linkedid: &str, calldate: &str| {
            let payload = json!({"linkedid": linkedid, "dst": "130", "calldate": calldate});
            (vec![arg(&payload.to_string())], arrived)
        };
        let responses = vec![
            missed("1616734230.1", "2021-03-26 11:50:30 +0700"),
            missed("1616734230.2", "26/03/2021 11:50:30"),
            missed("1616734230.3", "27/03/2021 11:50:30"),
        ];
        let (journaled, logs) = deliver_logged(&relay.ctx, &responses).await;
        assert!(matches!(journaled, Ok(3)), "{journaled:?}");
        crate::sources::unread_dates::tests_support::assert_said_once(
            &logs,
            "voip24h",
            "acc",
            "calldate",
            "26/03/2021 11:50:30",
        );
        let times: Vec<String> = relay
            .ctx
            .journal
            .read_after(0, 10)
            .unwrap()
            .iter()
            .map(|e| serde_json::from_slice::<Value>(&e.json).unwrap()["time"].to_string())
            .collect();
        let received = format!("\"{}\"", crate::event::format_time(arrived));
        assert_eq!(
            times,
            [
                "\"2021-03-26T04:50:30.000Z\"",
                received.as_str(),
                received.as_str()
            ]
        );
        crate::app::tests_support::stop(relay).await;
    }

    #[test]
    fn a_refused_commit_is_retried_after_doubling_waits_up_to_five_seconds() {
        let waits: Vec<u64> =
            std::iter::successors(Some(FIRST_COMMIT_RETRY), |w| Some(next_commit_retry(*w)))
                .take(9)
                .map(|w| w.as_millis() as u64)
                .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }

    #[test]
    fn an_unknown_event_is_wrapped_with_its_name_and_arguments_as_sent() {
        let wrapped =
            unrecognised("mi\"ssed", &[arg(r#"{"b": 1.0e3, "a":[]}"#), arg("7")]).unwrap();
        assert_eq!(
            wrapped.json(),
            r#"{"event":"mi\"ssed","args":[{"b": 1.0e3, "a":[]},7]}"#
        );
        assert_eq!(
            unrecognised_len("mi\"ssed", &[arg(r#"{"b": 1.0e3, "a":[]}"#), arg("7")]),
            wrapped.json().len()
        );
        let empty = unrecognised("ping2", &[]).unwrap();
        assert_eq!(empty.json(), r#"{"event":"ping2","args":[]}"#);
        assert_eq!(unrecognised_len("ping2", &[]), empty.json().len());
        let (value, _) = read_payload(&[empty], 1024).unwrap();
        assert_eq!(
            parse_call_event(&value).unwrap().event_type,
            "vendor.unknown"
        );
    }

    /// A JavaScript server's string cut through an emoji (`\ud83d` alone):
    /// read with U+FFFD in its place, in `data.raw` too, rather than
    /// skipped as not JSON; in an object and inside a JSON string alike.
    #[test]
    fn a_lone_surrogate_escape_is_read_as_a_replacement_character() {
        let text = r#"{"state":"Ring","callid":"1.2","note":"t\u1ed1t \ud83d"}"#;
        let (read, raw) = read_payload(&[arg(text)], 1 << 20).unwrap();
        assert_eq!(read["note"], "tốt \u{fffd}");
        assert_eq!(
            serde_json::to_string(&raw).unwrap(),
            r#"{"state":"Ring","callid":"1.2","note":"t\u1ed1t \ufffd"}"#
        );
        // The escape in the string argument itself, or in the JSON inside it.
        let (read, raw) = read_payload(&[arg(r#""{\"note\":\"x\ud83d\"}""#)], 1 << 20).unwrap();
        assert_eq!(read, json!({"note": "x\u{fffd}"}));
        assert_eq!(
            serde_json::to_string(&raw).unwrap(),
            "{\"note\":\"x\u{fffd}\"}"
        );
        let (read, raw) = read_payload(&[arg(r#""{\"note\":\"x\\ud83d\"}""#)], 1 << 20).unwrap();
        assert_eq!(read, json!({"note": "x\u{fffd}"}));
        assert_eq!(
            serde_json::to_string(&raw).unwrap(),
            r#"{"note":"x\ufffd"}"#
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

    /// A payload within the byte limit but of more values than an event
    /// holds is not read into values (it took about 46 MB per MiB), in an
    /// object and inside a JSON string alike: skipped as malformed.
    #[test]
    fn a_payload_of_more_values_than_the_limit_is_malformed() {
        let zeros = vec!["0"; vendors::text::MAX_VALUES].join(",");
        let wide = format!(r#"{{"callid":"1.2","a":[{zeros}]}}"#);
        let quoted = serde_json::to_string(&wide).unwrap();
        for payload in [wide, quoted] {
            let read = read_payload(&[arg(&payload)], 1 << 20);
            match read {
                Err(e @ Malformed::TooManyValues(_)) => {
                    assert!(e.to_string().contains("more than 10000 values"), "{e}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    /// A `max_body` lowered for the webhooks does not lower the socket's
    /// bound below 1 MiB; one raised raises it (units review, round 47).
    #[test]
    fn the_payload_limit_is_max_body_but_at_least_1_mib() {
        assert_eq!(payload_limit(4096), 1024 * 1024);
        assert_eq!(payload_limit(4 << 20), 4 << 20);
        let cdr = arg(&json!({"state": "Cdr", "callid": "1.2", "x": "y".repeat(5000)}).to_string());
        assert!(read_payload(&[cdr], payload_limit(4096)).is_ok());
    }

    /// `max_payload` is the largest payload taken, not the first refused.
    #[test]
    fn a_payload_of_exactly_the_limit_is_taken() {
        let text = r#"{"state":"Ring","callid":"1.2"}"#;
        let limit = text.len() as u64;
        assert!(read_payload(&[arg(text)], limit).is_ok());
        assert!(matches!(
            read_payload(&[arg(text)], limit - 1),
            Err(Malformed::TooLarge(size, max)) if size as u64 == limit && max == limit - 1
        ));
    }
}
