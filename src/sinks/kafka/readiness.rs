//! Why the Kafka sink is not delivering, as `/status` and `/readyz`
//! (`degraded`) say it: the one sentence an operator reads first.
//!
//! Guarantees: a sink with records in flight and no delivery report for
//! longer than `stalled_after` is called stalled even when an earlier
//! failure is still on record — that failure is named beside it, not in its
//! place (the stall investigation: after a broker lost its log, a stale
//! "topic does not exist" stood for 5 minutes while the topic existed and
//! 6,780 records waited on a stalled producer); every brokers-down period
//! pauses the stall clock, so "all brokers are down" is what shows then.

use std::time::{Duration, Instant};

/// What the forwarder knows when it publishes its status.
pub struct Observed<'a> {
    /// Its last failure not yet cleared by a delivery.
    pub failure: Option<&'a str>,
    pub brokers_down: bool,
    pub in_flight: usize,
    /// Since the last delivery report, or since records were handed over
    /// with none in flight.
    pub awaiting_reports_for: Duration,
    pub stalled_after: Duration,
    /// How long the producer's creation has taken, once it takes long.
    pub creating_for: Option<Duration>,
}

/// A producer's creation that has taken `taken` so far, in the words of
/// `/status` and the log.
pub fn creation_text(taken: Duration) -> String {
    format!(
        "creating the Kafka producer has taken {}s: librdkafka reads the files its options name (ssl.ca.location, …) on a slow or hung mount?",
        taken.as_secs()
    )
}

/// Records in flight, no delivery report for longer than `stalled_after`,
/// and no broker known to be down: what a hung or silently cut-off broker
/// looks like, since nothing refuses.
pub fn stalled(o: &Observed<'_>) -> bool {
    o.in_flight > 0 && o.awaiting_reports_for > o.stalled_after && !o.brokers_down
}

/// The stall, in the words of `/status` (see [`stalled`]).
pub fn stall_text(o: &Observed<'_>) -> String {
    format!(
        "no delivery report for {}s with {} records in flight",
        o.awaiting_reports_for.as_secs(),
        o.in_flight
    )
}

/// What one look at the sink does to the stall on record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StallChange {
    Began,
    Ended,
    Unchanged,
}

/// Whether a stall begins or ends, given whether one is on record
/// (`noticed`). A stall that turns into every broker being down stays on
/// record until reports come again, so that its end is said: the
/// brokers-down state has no end line of its own (verification audit: after
/// a 3-minute freeze the log never said the sink had recovered).
pub fn stall_change(noticed: bool, stalled: bool, brokers_down: bool) -> StallChange {
    match (noticed, stalled) {
        (false, true) => StallChange::Began,
        (true, false) if !brokers_down => StallChange::Ended,
        _ => StallChange::Unchanged,
    }
}

/// The stall on record, if any: when it began.
#[derive(Debug, Default)]
pub struct StallRecord {
    since: Option<Instant>,
}

/// What one look at the sink has to say about its stall.
#[derive(Debug, PartialEq, Eq)]
pub enum StallNews {
    /// A stall began: its text ([`stall_text`]).
    Began(String),
    /// The stall on record ended, after lasting this long.
    Ended { lasted: Duration },
}

impl StallRecord {
    /// Takes one look at the sink at `now`: `stall` is its text when it is
    /// stalled, `awaiting` how long reports have been awaited. A stall is
    /// recorded as beginning when the reports stopped, not when it was seen.
    pub fn observe(
        &mut self,
        stall: Option<String>,
        brokers_down: bool,
        awaiting: Duration,
        now: Instant,
    ) -> Option<StallNews> {
        match (
            stall_change(self.since.is_some(), stall.is_some(), brokers_down),
            stall,
            self.since,
        ) {
            (StallChange::Began, Some(stall), _) => {
                self.since = Some(now.checked_sub(awaiting).unwrap_or(now));
                Some(StallNews::Began(stall))
            }
            (StallChange::Ended, _, Some(since)) => {
                self.since = None;
                Some(StallNews::Ended {
                    lasted: now.saturating_duration_since(since),
                })
            }
            _ => None,
        }
    }
}

/// `None` when the sink is delivering.
pub fn not_delivering_reason(o: &Observed<'_>) -> Option<String> {
    // What the sink waits on now, with the failure before it beside it.
    let now = if stalled(o) {
        Some(stall_text(o))
    } else {
        o.creating_for.map(creation_text)
    };
    if let Some(now) = now {
        return Some(match o.failure {
            Some(failure) => format!("{now} (earlier: {failure})"),
            None => now,
        });
    }
    if let Some(failure) = o.failure {
        return Some(failure.to_owned());
    }
    o.brokers_down
        .then(|| "all Kafka brokers are down; events wait in the journal".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_ends_when_reports_come_again_not_when_the_brokers_are_called_down() {
        use StallChange::*;
        assert_eq!(stall_change(false, true, false), Began);
        assert_eq!(stall_change(true, true, false), Unchanged);
        // librdkafka calls every broker down: the stall stays on record...
        assert_eq!(stall_change(true, false, true), Unchanged);
        // ... until the brokers answer and it is no longer stalled.
        assert_eq!(stall_change(true, false, false), Ended);
        assert_eq!(stall_change(false, false, true), Unchanged);
        assert_eq!(stall_change(false, false, false), Unchanged);
    }

    #[test]
    fn a_stall_is_news_when_it_begins_and_when_it_ends_and_each_time_again() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let stall = || Some("no delivery report for 31s with 5 records in flight".to_owned());
        let mut record = StallRecord::default();
        assert_eq!(record.observe(None, false, Duration::ZERO, at(1)), None);
        assert_eq!(
            record.observe(stall(), false, Duration::from_secs(31), at(40)),
            Some(StallNews::Began(stall().unwrap_or_default()))
        );
        assert_eq!(
            record.observe(stall(), false, Duration::from_secs(32), at(41)),
            None
        );
        // Every broker called down: the stall stays on record, said once.
        assert_eq!(record.observe(None, true, Duration::ZERO, at(60)), None);
        // Measured from when the reports stopped (9 s before the stall was seen).
        assert_eq!(
            record.observe(None, false, Duration::ZERO, at(70)),
            Some(StallNews::Ended {
                lasted: Duration::from_secs(61)
            })
        );
        assert_eq!(record.observe(None, false, Duration::ZERO, at(71)), None);
        // The next stall is news again.
        assert_eq!(
            record.observe(stall(), false, Duration::from_secs(31), at(110)),
            Some(StallNews::Began(stall().unwrap_or_default()))
        );
    }

    fn observed(
        failure: Option<&str>,
        brokers_down: bool,
        in_flight: usize,
        secs: u64,
    ) -> Observed<'_> {
        Observed {
            failure,
            brokers_down,
            in_flight,
            awaiting_reports_for: Duration::from_secs(secs),
            stalled_after: Duration::from_secs(30),
            creating_for: None,
        }
    }

    /// A producer's creation that takes long is what the sink is waiting
    /// on (a hung mount), named before an earlier failure.
    #[test]
    fn a_slow_producer_creation_is_named() {
        let slow = Observed {
            creating_for: Some(Duration::from_secs(12)),
            ..observed(Some("producer fenced"), false, 0, 0)
        };
        let reason = not_delivering_reason(&slow).unwrap_or_default();
        assert!(
            reason.starts_with("creating the Kafka producer has taken 12s")
                && reason.ends_with("(earlier: producer fenced)"),
            "{reason}"
        );
    }

    #[test]
    fn a_stall_is_named_even_with_an_earlier_failure_on_record() {
        let topic = "topic \"t\" does not exist on the broker";
        assert_eq!(
            not_delivering_reason(&observed(Some(topic), false, 6_780, 300)).as_deref(),
            Some(
                "no delivery report for 300s with 6780 records in flight (earlier: topic \"t\" does not exist on the broker)"
            )
        );
        assert_eq!(
            not_delivering_reason(&observed(None, false, 5, 31)).as_deref(),
            Some("no delivery report for 31s with 5 records in flight")
        );
    }

    #[test]
    fn otherwise_the_failure_then_brokers_down_then_nothing() {
        assert_eq!(
            not_delivering_reason(&observed(Some("cannot read metadata"), true, 5, 10)).as_deref(),
            Some("cannot read metadata")
        );
        assert_eq!(
            not_delivering_reason(&observed(None, true, 5, 300)).as_deref(),
            Some("all Kafka brokers are down; events wait in the journal"),
            "a brokers-down period is not a stall"
        );
        assert_eq!(not_delivering_reason(&observed(None, false, 5, 30)), None);
        assert_eq!(not_delivering_reason(&observed(None, false, 0, 300)), None);
    }
}
