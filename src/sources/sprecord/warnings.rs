//! The warnings about one stream's data (malformed messages, events over the
//! size limit, webhook verification messages, bytes that are not UTF-8), at
//! most one line per kind every [`WARN_EVERY`], the next saying how many were
//! held back.
//!
//! Why: a server can repeat a bad event as fast as it can write it, and a
//! line per event (each with the event's id, up to 1 MiB) turned a few
//! bytes of input into megabytes of log. Guarantees: a line quotes at most
//! [`SHOWN_ID_CHARS`] characters of an id, with its length.

use std::time::Duration;

use super::sse::MAX_EVENT_BYTES;
use crate::log_throttle::SharedLogThrottle;

/// How often each kind of warning is said.
pub const WARN_EVERY: Duration = Duration::from_secs(30);
/// How much of an event id a line quotes: what a log line repeats of any
/// text from the network.
pub const SHOWN_ID_CHARS: usize = crate::logging::EXCERPT_CHARS;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Lossy,
    Malformed,
    TooLarge,
    Verification,
    JournalRefused,
}

/// One stream's warnings.
#[derive(Debug)]
pub struct StreamWarnings {
    throttle: SharedLogThrottle<Kind>,
}

impl Default for StreamWarnings {
    fn default() -> StreamWarnings {
        StreamWarnings {
            throttle: SharedLogThrottle::new(WARN_EVERY),
        }
    }
}

impl StreamWarnings {
    /// `Some(held_back)` when a line about `kind` is due.
    fn due(&self, kind: Kind) -> Option<u64> {
        self.throttle.admit_now(kind)
    }

    /// A message skipped as malformed. The payload itself may hold phone
    /// numbers: `why` says why, not what.
    pub fn malformed(&self, account: &str, stream: usize, why: &str) {
        if let Some(held_back) = self.due(Kind::Malformed) {
            tracing::warn!(vendor = "sprecord", account = %account, stream, held_back,
                "malformed SSE message skipped: {why}");
        }
    }

    /// An event over [`MAX_EVENT_BYTES`], skipped, whose id at its end was
    /// `id`. None of its bytes is logged. Many can come fast: after an id
    /// near the limit, a few bytes of data make one.
    pub fn too_large(&self, account: &str, stream: usize, id: &str) {
        if let Some(held_back) = self.due(Kind::TooLarge) {
            tracing::warn!(vendor = "sprecord", account = %account, stream, held_back,
                event_id = %shown_id(id),
                "an SSE event over {MAX_EVENT_BYTES} bytes was skipped; the stream reads on");
        }
    }

    /// A webhook verification message, which only the webhook registration
    /// sends: on a stream it means nothing, and a server may repeat it.
    pub fn verification(&self, account: &str, stream: usize) {
        if let Some(held_back) = self.due(Kind::Verification) {
            tracing::warn!(vendor = "sprecord", account = %account, stream, held_back,
                "ignored a webhook verification message received on the SSE stream");
        }
    }

    /// An event the journal refused (a full disk), retried in `retry_in`:
    /// the retries come every few seconds for as long as it refuses.
    pub fn journal_refused(
        &self,
        account: &str,
        stream: usize,
        why: &dyn std::fmt::Display,
        retry_in: Duration,
    ) {
        let retry_in_ms = crate::logging::millis(retry_in);
        match self.due(Kind::JournalRefused) {
            Some(held_back) => {
                tracing::warn!(vendor = "sprecord", account = %account, stream, retry_in_ms, held_back,
                    "could not journal an SSE event, retrying: {why}");
            }
            None => tracing::debug!(vendor = "sprecord", account = %account, stream, retry_in_ms,
                "could not journal an SSE event, retrying: {why}"),
        }
    }

    /// An event whose bytes were not all UTF-8, handed on with U+FFFD in
    /// their place (the SSE standard's decoding).
    pub fn lossy(&self, account: &str, stream: usize, id: &str) {
        if let Some(held_back) = self.due(Kind::Lossy) {
            tracing::warn!(vendor = "sprecord", account = %account, stream, held_back,
                event_id = %shown_id(id),
                "an event's bytes were not all UTF-8: each invalid sequence is read as U+FFFD (the SSE standard's decoding), also in an id, which is sent back so as Last-Event-ID");
        }
    }
}

/// An event id as a log line quotes it: whole when short, else its first
/// [`SHOWN_ID_CHARS`] characters and its length.
fn shown_id(id: &str) -> String {
    if id.chars().nth(SHOWN_ID_CHARS).is_none() {
        format!("{id:?}")
    } else {
        format!("{:?}… ({} bytes)", crate::logging::excerpt(id), id.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::tests_support::logged_json;

    /// A server repeating an 8-byte bad event after a 1 MiB id: one line
    /// per event, each with the whole id, was 100,000 times the input.
    /// One line per kind now.
    #[test]
    fn repeated_warnings_are_one_line_quoting_a_short_id() {
        let warnings = StreamWarnings::default();
        let id = "9".repeat(1 << 20);
        let logged = logged_json(|| {
            for _ in 0..1_000 {
                warnings.lossy("office", 2, &id);
                warnings.malformed("office", 2, "data is not JSON");
                warnings.too_large("office", 2, &id);
                warnings.verification("office", 2);
                warnings.journal_refused(
                    "office",
                    2,
                    &"No space left on device",
                    Duration::from_secs(5),
                );
            }
        });
        // The journal's refusals too: a line per retry, every ≤ 5 s per
        // stream while a disk was full (operator-messages review, 2026-12-05).
        assert_eq!(
            logged.lines().count(),
            5,
            "{}",
            &logged[..logged.len().min(500)]
        );
        assert!(logged.len() < 2_000, "{} bytes logged", logged.len());
        assert!(logged.contains("(1048576 bytes)"), "{logged}");
        assert!(logged.contains("\"stream\":2"), "{logged}");
    }

    #[test]
    fn a_short_id_is_quoted_whole_and_a_long_one_cut_at_a_character() {
        assert_eq!(shown_id("41"), "\"41\"");
        let long = "ố".repeat(SHOWN_ID_CHARS + 1);
        let kept = "ố".repeat(SHOWN_ID_CHARS);
        assert_eq!(shown_id(&long), format!("{kept:?}… ({} bytes)", long.len()));
    }
}
