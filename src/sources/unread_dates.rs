//! Vendor dates in no form the relay reads, said: the event's `time` is
//! then when the relay received it (CONTRACT: "when the payload has no time
//! of its own"), and a consumer that windows by `time` is off by the
//! delivery's delay without anything telling it so.
//!
//! Guarantees: one warning per vendor and date field at most every
//! [`WARN_EVERY`], the next saying how many were held back; it names the
//! vendor, the account, the field and the date's text cut to
//! [`EXCERPT_CHARS`](crate::logging::EXCERPT_CHARS) characters (a date is
//! no secret). A placeholder (`0`, `0000-00-00 00:00:00`) is not said.

use std::time::Duration;

use crate::event::{IncomingEvent, Vendor};
use crate::log_throttle::SharedLogThrottle;

/// How often a vendor's field is said again.
pub const WARN_EVERY: Duration = Duration::from_secs(30);

/// The relay's unread-date warnings, shared by every source: keyed by
/// vendor and field, a set as small as the vendors' date fields (the
/// account is named, not keyed: a sender writing dates so writes them
/// alike on every account).
#[derive(Debug)]
pub struct UnreadDates(SharedLogThrottle<(Vendor, &'static str)>);

impl Default for UnreadDates {
    fn default() -> UnreadDates {
        UnreadDates(SharedLogThrottle::new(WARN_EVERY))
    }
}

impl UnreadDates {
    /// Says that `incoming`'s date could not be read, if it could not and
    /// the line is due.
    pub fn say(&self, incoming: &IncomingEvent) {
        let Some(unread) = &incoming.event.unread_time else {
            return;
        };
        let vendor = incoming.vendor;
        if let Some(held_back) = self.0.admit_now((vendor, unread.field)) {
            tracing::warn!(
                vendor = vendor.as_str(),
                account = crate::logging::excerpt(&incoming.account).as_str(),
                field = unread.field,
                value = unread.text.as_str(),
                event_type = incoming.event.event_type.as_str(),
                held_back,
                "vendor date in no form the relay reads: the event's `time` is when the relay received it"
            );
        }
    }
}

/// What the sources' tests check of an event whose date was not read.
#[cfg(test)]
pub(crate) mod tests_support {
    use serde_json::Value;

    use crate::journal::Journal;

    /// The one event `journal` holds has its receive time as its `time`.
    pub(crate) fn assert_the_one_event_is_at_its_receive_time(journal: &Journal) {
        let journaled = journal.read_after(0, 10).unwrap();
        assert_eq!(journaled.len(), 1);
        let event: Value = serde_json::from_slice(&journaled[0].json).unwrap();
        let received = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(journaled[0].received_at_ms) * 1_000_000,
        )
        .unwrap();
        assert_eq!(
            event["time"].as_str(),
            Some(crate::event::format_time(received).as_str())
        );
    }

    /// `logs`, JSON lines, say an unread date exactly once: a WARN naming
    /// `vendor`, `account`, `field` and the date's text `value`. Counted
    /// both by any line that holds the message and by the lines whose
    /// message does, as the tests this gathers counted it.
    pub(crate) fn assert_said_once(
        logs: &str,
        vendor: &str,
        account: &str,
        field: &str,
        value: &str,
    ) {
        const SAID: &str = "vendor date in no form the relay reads";
        let lines: Vec<&str> = logs.lines().filter(|l| l.contains(SAID)).collect();
        assert_eq!(lines.len(), 1, "{logs}");
        assert!(
            lines[0].contains(&format!(r#""account":"{account}""#)),
            "{logs}"
        );
        assert!(
            lines[0].contains(&format!(r#""field":"{field}""#)),
            "{logs}"
        );
        assert!(
            lines[0].contains(&format!(r#""value":"{value}""#)),
            "{logs}"
        );
        let said: Vec<Value> = logs
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["message"].as_str().is_some_and(|m| m.contains(SAID)))
            .collect();
        assert_eq!(said.len(), 1, "{logs}");
        assert_eq!(said[0]["level"], "WARN", "{logs}");
        assert_eq!(said[0]["vendor"], vendor, "{logs}");
        assert_eq!(said[0]["account"], account, "{logs}");
        assert_eq!(said[0]["field"], field, "{logs}");
        assert_eq!(said[0]["value"], value, "{logs}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{RawPayload, Transport};
    use crate::logging::tests_support::logged_json;
    use serde_json::json;

    fn missed_call(calldate: serde_json::Value, account: &str) -> IncomingEvent {
        let payload = json!({"linkedid": "1616734230.1021", "dst": "130", "calldate": calldate});
        let event = crate::vendors::voip24h::parse_call_event(&payload).unwrap();
        IncomingEvent {
            vendor: Vendor::Voip24h,
            account: account.to_owned(),
            transport: Transport::Webhook,
            received_at: time::OffsetDateTime::now_utc(),
            event,
            raw: RawPayload::Fields(Default::default()),
        }
    }

    /// A day-first `calldate` (never guessed) is said, with what it was,
    /// once per interval for the field; a date read or a placeholder is not.
    #[test]
    fn an_unread_date_is_said_once_per_vendor_and_field() {
        let dates = UnreadDates::default();
        let logged = logged_json(|| {
            dates.say(&missed_call(json!("2021-03-26 11:50:30"), "main"));
            dates.say(&missed_call(json!("0000-00-00 00:00:00"), "main"));
            dates.say(&missed_call(json!(""), "main"));
            dates.say(&missed_call(json!("26/03/2021 11:50:30"), "main"));
            dates.say(&missed_call(json!("27/03/2021 11:50:30"), "branch"));
        });
        let lines: Vec<&str> = logged.lines().collect();
        assert_eq!(lines.len(), 1, "{logged}");
        for field in [
            r#""level":"WARN""#,
            r#""vendor":"voip24h""#,
            r#""account":"main""#,
            r#""field":"calldate""#,
            r#""value":"26/03/2021 11:50:30""#,
            r#""event_type":"call.missed""#,
            r#""held_back":0"#,
            "when the relay received it",
        ] {
            assert!(lines[0].contains(field), "{field}: {logged}");
        }
    }
}
