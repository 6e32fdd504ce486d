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

use std::time::Duration;

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

/// `None` when the sink is delivering.
pub fn not_delivering_reason(o: &Observed<'_>) -> Option<String> {
    if stalled(o) {
        let stall = stall_text(o);
        return Some(match o.failure {
            Some(failure) => format!("{stall} (earlier: {failure})"),
            None => stall,
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
        }
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
