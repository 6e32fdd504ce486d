//! Which of librdkafka's global errors reach the log at `warn`.
//!
//! Why: while a broker is unreachable librdkafka reports "N/N brokers are
//! down" every time a connection attempt or metadata request fails, about 20
//! times a second, and the same error again through more than one path. Logged
//! as they come, an outage of a day wrote two million journald lines and hid
//! everything else.
//!
//! Guarantees:
//! - "all brokers are down" is logged once per outage (again only after a
//!   delivery or a probe has shown a broker reachable, [`ErrorLog::reachable`])
//!   and at most once per [`REPEAT_INTERVAL`], so a broker that crash-loops
//!   does not write a line per flap; an outage begun within the interval is
//!   said by its first report past it, with the outages held back before it;
//! - any other error is logged the first time its code appears for a broker,
//!   then at most once per [`REPEAT_INTERVAL`] per code and broker, saying how
//!   many were held back in between ([`LogThrottle`]): a second broker's
//!   failure is not hidden by the first one's repeats;
//! - what is held back still reaches `debug`, and `/status` still shows the
//!   latest reason (the caller records it whatever this says);
//! - librdkafka's own log lines ([`LibLog`]) are logged once per
//!   [`LIB_LOG_INTERVAL`] per broker thread and line shape: against a broker
//!   that accepts connections but does not answer, it logged a timeout per
//!   request and per retry, about 22 lines a minute, and still 10–11 with a
//!   30 s interval (three shapes on each of two threads per broker;
//!   steady-state audits, 2026-12-01). What it says is also in its errors
//!   (above) and in `/status`. At most [`MAX_LINE_SHAPES`] shapes are
//!   remembered: past that, new shapes not finding room share one line per
//!   interval and level, its `held_back` counting them all, so more shapes
//!   than that cannot turn the throttle off, nor an info line hold back an
//!   error one. A shape, or a shared line, that held lines back and has not
//!   come for [`LIB_LOG_HORIZON`] is forgotten (shapes only once the map is
//!   full), its count handed to the caller to say ([`LibLog::take_unsaid`]):
//!   kept until its next line, a broker thread's whose address changed on
//!   a restart took its place for the rest of the process, and its count was
//!   never said.

use std::time::{Duration, Instant};

use rdkafka::error::RDKafkaErrorCode;

use crate::log_throttle::LogThrottle;

/// How often a repeating error is logged again.
pub const REPEAT_INTERVAL: Duration = Duration::from_secs(30);

/// How often a repeating librdkafka log line is logged again.
pub const LIB_LOG_INTERVAL: Duration = Duration::from_secs(300);

/// How long a librdkafka line shape that held lines back is kept without
/// coming again, for its next line to say the count: a broker restarted
/// under a new address never brings its old thread's shapes back.
pub const LIB_LOG_HORIZON: Duration = Duration::from_secs(60 * 60);

/// Whether to log an error at `warn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `held_back` errors of the same code were not logged since the last.
    Warn { held_back: u64 },
    /// A repeat: `debug` only.
    Quiet,
}

/// Where the current "all brokers are down" outage stands in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outage {
    /// None since a broker was last reachable.
    None,
    /// Logged: its repeats are quiet until a broker is reachable again.
    Said,
    /// Begun within [`REPEAT_INTERVAL`] of the last one said: logged by
    /// the first repeat past the interval. It was taken for said, and an
    /// outage that began just after a flap went unlogged for its hours.
    HeldBack,
}

/// The state behind the verdicts, one per Kafka sink: kept across the
/// producers a recovery replaces, until a `[kafka]` reload or a restart
/// makes a new sink.
#[derive(Debug)]
pub struct ErrorLog {
    outage: Outage,
    /// When an outage was last said.
    outage_said_at: Option<Instant>,
    /// Outages begun and not said since the last one said.
    outages_held_back: u64,
    /// Keyed by librdkafka's numeric code (the enum is not `Hash`) and the
    /// broker the reason names: as many keys as brokers and codes.
    others: LogThrottle<(Option<i32>, String)>,
}

impl Default for ErrorLog {
    fn default() -> Self {
        ErrorLog {
            outage: Outage::None,
            outage_said_at: None,
            outages_held_back: 0,
            others: LogThrottle::new(REPEAT_INTERVAL),
        }
    }
}

impl ErrorLog {
    /// The verdict for an error with librdkafka's `code` and `reason`, reported at `now`.
    pub fn verdict(
        &mut self,
        code: Option<RDKafkaErrorCode>,
        reason: &str,
        now: Instant,
    ) -> Verdict {
        if code == Some(RDKafkaErrorCode::AllBrokersDown) {
            return self.all_down(now);
        }
        let key = (code.map(|c| c as i32), broker_of(reason));
        match self.others.admit(key, now) {
            Some(held_back) => Verdict::Warn { held_back },
            None => Verdict::Quiet,
        }
    }

    /// The verdict for an "all brokers are down" at `now`: an outage's
    /// first report, or the first repeat of an outage held back once the
    /// interval has passed; `held_back` counts the outages not said since.
    fn all_down(&mut self, now: Instant) -> Verdict {
        if self.outage == Outage::Said {
            return Verdict::Quiet;
        }
        if self.outage == Outage::None {
            self.outages_held_back += 1;
        }
        let due = self
            .outage_said_at
            .is_none_or(|said| now.saturating_duration_since(said) >= REPEAT_INTERVAL);
        if !due {
            self.outage = Outage::HeldBack;
            return Verdict::Quiet;
        }
        self.outage = Outage::Said;
        self.outage_said_at = Some(now);
        // This one was counted when it began.
        let held_back = std::mem::take(&mut self.outages_held_back).saturating_sub(1);
        Verdict::Warn { held_back }
    }

    /// A broker took a delivery: the next "all brokers down" is a new
    /// outage. Whether this one was said (its end is said then too).
    pub fn reachable(&mut self) -> bool {
        std::mem::replace(&mut self.outage, Outage::None) == Outage::Said
    }
}

/// Which of librdkafka's own log lines (its log callback, not its error
/// callback) are logged at their level; the rest go to `debug`.
#[derive(Debug)]
pub struct LibLog {
    lines: LogThrottle<(String, String)>,
    /// The new shapes that find no room in `lines`, under one key per
    /// level: an info line sharing one with an error line (an SSL or SASL
    /// failure on a new broker's thread) would send the error to debug.
    unremembered: LogThrottle<tracing::Level>,
    /// Counts forgotten and not yet said, until [`LibLog::take_unsaid`].
    unsaid: Unsaid,
}

/// Lines held back that no line of their own will say, their keys having
/// been forgotten after [`LIB_LOG_HORIZON`] without coming again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unsaid {
    /// Shapes forgotten with lines held back, and those lines.
    pub shapes: u64,
    pub lines: u64,
    /// Lines held back by the shared lines of new shapes past the cap.
    pub shared: u64,
}

/// Line shapes remembered at most: librdkafka's messages come from a fixed
/// set, times the brokers. Past this a new shape takes the place of shapes
/// due again that held nothing back (their next line would be logged
/// anyway, and has no count to say) or that have not come for
/// [`LIB_LOG_HORIZON`] (their count said then), or else shares one
/// throttle with every other new shape of its level. Starting over instead made every
/// shape new again, so more shapes than this, recurring, were all logged.
pub(super) const MAX_LINE_SHAPES: usize = 1024;

impl Default for LibLog {
    fn default() -> Self {
        LibLog {
            lines: LogThrottle::new(LIB_LOG_INTERVAL),
            unremembered: LogThrottle::new(LIB_LOG_INTERVAL),
            unsaid: Unsaid::default(),
        }
    }
}

impl LibLog {
    /// The verdict for a line of facility `fac`, to be logged at `level`,
    /// at `now`.
    pub fn verdict(
        &mut self,
        fac: &str,
        message: &str,
        level: tracing::Level,
        now: Instant,
    ) -> Verdict {
        let shape = line_shape(fac, message);
        // The scan for shapes due runs only when full, over at most
        // MAX_LINE_SHAPES keys: microseconds, at librdkafka's log rate.
        let room = self.lines.len() < MAX_LINE_SHAPES || self.lines.knows(&shape) || {
            let forgotten = self.lines.forget_due(now, LIB_LOG_HORIZON);
            self.unsaid.shapes += forgotten.keys;
            self.unsaid.lines += forgotten.held_back;
            self.lines.len() < MAX_LINE_SHAPES
        };
        let admitted = match room {
            true => self.lines.admit(shape, now),
            false => self.unremembered.admit(level, now),
        };
        // At most one key per level, so this runs on every line: once room
        // opens no new shape comes to the shared lines, and their count
        // would wait for a line that may never come.
        self.unsaid.shared += self.unremembered.forget_due(now, LIB_LOG_HORIZON).held_back;
        match admitted {
            Some(held_back) => Verdict::Warn { held_back },
            None => Verdict::Quiet,
        }
    }

    /// The counts of lines held back by keys forgotten since the last
    /// call, to be said by the caller; `None` when there are none.
    pub fn take_unsaid(&mut self) -> Option<Unsaid> {
        let unsaid = std::mem::take(&mut self.unsaid);
        (unsaid != Unsaid::default()).then_some(unsaid)
    }
}

/// What makes two librdkafka lines "the same": the facility, the broker
/// thread they come from (`[thrd:host:port/id]`, kept whole so that brokers
/// whose addresses differ only in digits stay apart), and the text without
/// its numbers (timeouts, counts, request numbers change from line to line).
fn line_shape(fac: &str, message: &str) -> (String, String) {
    let (thread, text) = match message.strip_prefix("[thrd:") {
        Some(rest) => match rest.split_once("]: ") {
            Some((thread, text)) => (thread, text),
            None => ("", message),
        },
        None => ("", message),
    };
    let text: String = text.chars().filter(|c| !c.is_ascii_digit()).collect();
    // librdkafka's own repeat count, added to the same failure's next line
    // (`… (after 0ms in state CONNECT, 1 identical error(s) suppressed)`),
    // made it another line: a refused connect was logged twice in a second.
    let text = text.replace(",  identical error(s) suppressed", "");
    (format!("{fac} {thread}"), text)
}

/// The broker a librdkafka reason starts with (`kafka-1:9092/1: Connect to
/// …`), or nothing: librdkafka names the broker, `host:port/id`, before the
/// first ": " of errors about one.
fn broker_of(reason: &str) -> String {
    match reason.split_once(": ") {
        Some((prefix, _)) if prefix.contains('/') && !prefix.contains(' ') => prefix.to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    const DOWN: Option<RDKafkaErrorCode> = Some(RDKafkaErrorCode::AllBrokersDown);
    const TRANSPORT: Option<RDKafkaErrorCode> = Some(RDKafkaErrorCode::BrokerTransportFailure);
    const AUTH: Option<RDKafkaErrorCode> = Some(RDKafkaErrorCode::Authentication);
    const A: &str = "kafka-1:9092/1: Connect to ipv4#10.0.0.1:9092 failed: Connection refused";
    const B: &str = "kafka-2:9092/2: Connect to ipv4#10.0.0.2:9092 failed: Connection refused";

    #[test]
    fn a_second_broker_is_not_hidden_by_the_first_ones_repeats() {
        let mut log = ErrorLog::default();
        let t0 = Instant::now();
        assert_eq!(
            log.verdict(TRANSPORT, A, t0),
            Verdict::Warn { held_back: 0 }
        );
        assert_eq!(log.verdict(TRANSPORT, A, t0), Verdict::Quiet);
        assert_eq!(
            log.verdict(TRANSPORT, B, t0),
            Verdict::Warn { held_back: 0 }
        );
        assert_eq!(broker_of(A), "kafka-1:9092/1");
        assert_eq!(broker_of("1/1 brokers are down"), "");
        assert_eq!(broker_of("Local: Broker transport failure: x"), "");
    }

    const TIMED_OUT: &str = "[thrd:10.0.0.1:9092/1]: 10.0.0.1:9092/1: Timed out 1 in-flight, 0 retry-queued, 0 out-queue, 0 partially-sent requests";

    #[test]
    fn a_librdkafka_line_repeating_with_other_numbers_is_held_back_until_the_interval() {
        let mut log = LibLog::default();
        let t0 = Instant::now();
        assert_eq!(
            log.verdict("REQTMOUT", TIMED_OUT, Level::INFO, t0),
            Verdict::Warn { held_back: 0 }
        );
        let again = TIMED_OUT.replace("Timed out 1", "Timed out 17");
        assert_eq!(
            log.verdict(
                "REQTMOUT",
                &again,
                Level::INFO,
                t0 + Duration::from_secs(10)
            ),
            Verdict::Quiet
        );
        assert_eq!(
            log.verdict(
                "REQTMOUT",
                TIMED_OUT,
                Level::INFO,
                t0 + Duration::from_secs(290)
            ),
            Verdict::Quiet
        );
        assert_eq!(
            log.verdict("REQTMOUT", &again, Level::INFO, t0 + LIB_LOG_INTERVAL),
            Verdict::Warn { held_back: 2 }
        );
    }

    #[test]
    fn librdkafka_lines_of_another_broker_facility_or_text_are_not_held_back() {
        let mut log = LibLog::default();
        let t0 = Instant::now();
        assert_eq!(
            log.verdict("REQTMOUT", TIMED_OUT, Level::INFO, t0),
            Verdict::Warn { held_back: 0 }
        );
        // The second broker's address differs only in digits.
        let other_broker = TIMED_OUT.replace("10.0.0.1", "10.0.0.2");
        let other_text =
            "[thrd:10.0.0.1:9092/1]: 10.0.0.1:9092/1: ApiVersionRequest failed: Local: Timed out";
        for (fac, message) in [
            ("REQTMOUT", other_broker.as_str()),
            ("FAIL", TIMED_OUT),
            ("FAIL", other_text),
            ("CONFWARN", "No `bootstrap.servers` configured"),
        ] {
            assert_eq!(
                log.verdict(fac, message, Level::INFO, t0),
                Verdict::Warn { held_back: 0 },
                "{fac} {message}"
            );
        }
    }

    fn shape(n: usize) -> String {
        // The thread is kept whole, digits and all: one shape per `n`.
        format!("[thrd:b{n}]: line")
    }

    /// More shapes than remembered, recurring: the throttle started over
    /// each time it was full, so every shape was new again and nearly every
    /// line was logged (4,096 of 4,096 here), under the very flood it is for.
    #[test]
    fn more_line_shapes_than_remembered_stay_throttled_round_after_round() {
        let mut log = LibLog::default();
        let t0 = Instant::now();
        let mut admitted = 0;
        for round in 0..2 {
            let now = t0 + Duration::from_secs(round);
            for n in 0..2 * MAX_LINE_SHAPES {
                if log.verdict("X", &shape(n), Level::INFO, now) != Verdict::Quiet {
                    admitted += 1;
                }
            }
        }
        // Each remembered shape once, and one line for all the others.
        assert_eq!(admitted, MAX_LINE_SHAPES + 1);
        assert!(log.lines.len() <= MAX_LINE_SHAPES);
    }

    /// A new shape finding the map full took the place of every shape due,
    /// one that held lines back included: that one's next line said
    /// `held_back` 0, as if it had not repeated.
    #[test]
    fn a_new_shape_does_not_take_the_place_of_one_that_held_lines_back() {
        let mut log = LibLog::default();
        let t0 = Instant::now();
        for n in 0..MAX_LINE_SHAPES {
            log.verdict("X", &shape(n), Level::INFO, t0);
        }
        assert_eq!(log.verdict("X", &shape(0), Level::INFO, t0), Verdict::Quiet);
        let t1 = t0 + LIB_LOG_INTERVAL;
        assert_eq!(
            log.verdict("X", &shape(MAX_LINE_SHAPES), Level::INFO, t1),
            Verdict::Warn { held_back: 0 }
        );
        assert_eq!(
            log.verdict("X", &shape(0), Level::INFO, t1),
            Verdict::Warn { held_back: 1 }
        );
    }

    /// Brokers whose addresses change on each restart leave shapes that
    /// held lines back and never come again. Kept for their count, they
    /// filled every slot, and every new shape went to the shared line for
    /// the rest of the process.
    #[test]
    fn shapes_that_held_lines_back_and_stopped_give_their_place_past_the_horizon() {
        let mut log = LibLog::default();
        let t0 = Instant::now();
        for n in 0..MAX_LINE_SHAPES {
            log.verdict("X", &shape(n), Level::INFO, t0);
            log.verdict("X", &shape(n), Level::INFO, t0);
        }
        let new = |n: usize| shape(MAX_LINE_SHAPES + n);
        let warn = Verdict::Warn { held_back: 0 };
        let later = t0 + LIB_LOG_INTERVAL;
        assert_eq!(log.verdict("X", &new(0), Level::INFO, later), warn);
        assert_eq!(
            log.verdict("X", &new(1), Level::INFO, later),
            Verdict::Quiet,
            "within the horizon they keep their count"
        );
        assert_eq!(log.take_unsaid(), None);
        let past = t0 + Duration::from_secs(2 * 60 * 60);
        assert_eq!(log.verdict("X", &new(2), Level::INFO, past), warn);
        assert_eq!(log.verdict("X", &new(3), Level::INFO, past), warn);
        assert!(log.lines.len() <= MAX_LINE_SHAPES);
        // No count is lost: the forgotten shapes' and the shared line's.
        assert_eq!(
            log.take_unsaid(),
            Some(Unsaid {
                shapes: MAX_LINE_SHAPES as u64,
                lines: MAX_LINE_SHAPES as u64,
                shared: 1,
            })
        );
        assert_eq!(log.take_unsaid(), None);
    }

    /// Once room opened, no new shape came to the shared line, and what it
    /// held back waited for a line that never came.
    #[test]
    fn the_shared_lines_count_is_said_once_it_has_not_come_for_the_horizon() {
        let mut log = LibLog::default();
        let t0 = Instant::now();
        for n in 0..MAX_LINE_SHAPES {
            log.verdict("X", &shape(n), Level::INFO, t0);
        }
        let new = |n: usize| shape(MAX_LINE_SHAPES + n);
        log.verdict("X", &new(0), Level::ERROR, t0);
        log.verdict("X", &new(1), Level::ERROR, t0);
        log.verdict("X", &new(2), Level::ERROR, t0);
        // Room: the old shapes are due with nothing held back.
        let t1 = t0 + LIB_LOG_INTERVAL;
        assert_eq!(
            log.verdict("X", &new(3), Level::ERROR, t1),
            Verdict::Warn { held_back: 0 }
        );
        assert_eq!(log.take_unsaid(), None, "within the horizon");
        log.verdict("X", &shape(0), Level::INFO, t0 + LIB_LOG_HORIZON);
        assert_eq!(
            log.take_unsaid(),
            Some(Unsaid {
                shared: 2,
                ..Unsaid::default()
            })
        );
    }

    /// Past the cap, an info line took the one shared throttle, and a new
    /// error line (an SSL or SASL failure on a new broker's thread) went to
    /// debug for up to 5 minutes.
    #[test]
    fn past_the_cap_a_new_error_line_is_not_held_back_by_a_new_info_one() {
        let mut log = LibLog::default();
        let t0 = Instant::now();
        for n in 0..MAX_LINE_SHAPES {
            log.verdict("X", &shape(n), Level::INFO, t0);
        }
        let new = |n: usize| shape(MAX_LINE_SHAPES + n);
        let warn = Verdict::Warn { held_back: 0 };
        assert_eq!(log.verdict("X", &new(0), Level::INFO, t0), warn);
        assert_eq!(log.verdict("SSL", &new(1), Level::ERROR, t0), warn);
        assert_eq!(log.verdict("X", &new(2), Level::WARN, t0), warn);
        // Within a level, new shapes still share one line.
        assert_eq!(
            log.verdict("SASL", &new(3), Level::ERROR, t0),
            Verdict::Quiet
        );
        assert_eq!(log.verdict("X", &new(4), Level::INFO, t0), Verdict::Quiet);
    }

    #[test]
    fn past_the_cap_new_shapes_share_one_throttle_until_old_ones_are_due() {
        let mut log = LibLog::default();
        let t0 = Instant::now();
        for n in 0..MAX_LINE_SHAPES {
            log.verdict("X", &shape(n), Level::INFO, t0);
        }
        let new = |n: usize| shape(MAX_LINE_SHAPES + n);
        assert_eq!(
            log.verdict("X", &new(0), Level::INFO, t0),
            Verdict::Warn { held_back: 0 }
        );
        assert_eq!(log.verdict("X", &new(1), Level::INFO, t0), Verdict::Quiet);
        assert_eq!(log.verdict("X", &new(2), Level::INFO, t0), Verdict::Quiet);
        // The remembered shapes keep their own clocks, and stay remembered
        // while they recur.
        let t1 = t0 + LIB_LOG_INTERVAL;
        for n in 0..MAX_LINE_SHAPES {
            assert_eq!(
                log.verdict("X", &shape(n), Level::INFO, t1),
                Verdict::Warn { held_back: 0 }
            );
        }
        assert_eq!(
            log.verdict("X", &new(3), Level::INFO, t1),
            Verdict::Warn { held_back: 2 },
            "the shared throttle says what it held back"
        );
        // Shapes that stopped are forgotten once due: a new one is its own again.
        let t2 = t1 + LIB_LOG_INTERVAL;
        assert_eq!(
            log.verdict("X", &new(4), Level::INFO, t2),
            Verdict::Warn { held_back: 0 }
        );
        assert_eq!(
            log.verdict("X", &new(5), Level::INFO, t2),
            Verdict::Warn { held_back: 0 }
        );
        assert_eq!(log.verdict("X", &new(4), Level::INFO, t2), Verdict::Quiet);
        assert!(log.lines.len() <= MAX_LINE_SHAPES);
    }

    #[test]
    fn all_brokers_down_is_logged_once_per_outage() {
        let mut log = ErrorLog::default();
        let t0 = Instant::now();
        assert_eq!(log.verdict(DOWN, "", t0), Verdict::Warn { held_back: 0 });
        for i in 1..200 {
            let later = t0 + Duration::from_millis(50 * i);
            assert_eq!(log.verdict(DOWN, "", later), Verdict::Quiet, "repeat {i}");
        }
        // Far past the repeat interval, still the same outage.
        assert_eq!(
            log.verdict(DOWN, "", t0 + 4 * REPEAT_INTERVAL),
            Verdict::Quiet
        );
        log.reachable();
        let t1 = t0 + 5 * REPEAT_INTERVAL;
        assert_eq!(log.verdict(DOWN, "", t1), Verdict::Warn { held_back: 0 });
        // A broker that flaps: one line per interval, counting the outages between.
        for i in 1..=3 {
            log.reachable();
            assert_eq!(
                log.verdict(DOWN, "", t1 + Duration::from_secs(i)),
                Verdict::Quiet
            );
        }
        log.reachable();
        assert_eq!(
            log.verdict(DOWN, "", t1 + REPEAT_INTERVAL),
            Verdict::Warn { held_back: 3 }
        );
    }

    /// An outage that begins just after a flap, within the interval, and
    /// then lasts: said once the interval has passed, and its end too. It
    /// was taken for said: no line for its hours, and its end said "a
    /// broker answers again" for an outage never logged (guarantees review,
    /// 2026-12-06).
    #[test]
    fn an_outage_held_back_after_a_flap_is_said_once_the_interval_has_passed() {
        let mut log = ErrorLog::default();
        let t0 = Instant::now();
        assert_eq!(log.verdict(DOWN, "", t0), Verdict::Warn { held_back: 0 });
        assert!(log.reachable(), "the first outage was said");
        let again = t0 + Duration::from_secs(20);
        assert_eq!(log.verdict(DOWN, "", again), Verdict::Quiet);
        assert!(!log.reachable(), "held back: its end is not said");
        assert_eq!(log.verdict(DOWN, "", again), Verdict::Quiet);
        for s in 21..30 {
            let repeat = t0 + Duration::from_secs(s);
            assert_eq!(log.verdict(DOWN, "", repeat), Verdict::Quiet, "{s}");
        }
        assert_eq!(
            log.verdict(DOWN, "", t0 + REPEAT_INTERVAL),
            Verdict::Warn { held_back: 1 },
            "the one that ended unsaid is counted; this one is said"
        );
        let hours = t0 + 100 * REPEAT_INTERVAL;
        assert_eq!(log.verdict(DOWN, "", hours), Verdict::Quiet);
        assert!(log.reachable(), "its end is said");
    }

    #[test]
    fn a_repeating_error_is_logged_again_after_the_interval_with_what_was_held_back() {
        let mut log = ErrorLog::default();
        let t0 = Instant::now();
        assert_eq!(
            log.verdict(TRANSPORT, A, t0),
            Verdict::Warn { held_back: 0 }
        );
        assert_eq!(log.verdict(TRANSPORT, A, t0), Verdict::Quiet);
        let just_before = t0 + REPEAT_INTERVAL - Duration::from_millis(1);
        assert_eq!(log.verdict(TRANSPORT, A, just_before), Verdict::Quiet);
        assert_eq!(
            log.verdict(TRANSPORT, A, t0 + REPEAT_INTERVAL),
            Verdict::Warn { held_back: 2 }
        );
        // The count starts over from the error just logged.
        let t1 = t0 + REPEAT_INTERVAL;
        assert_eq!(log.verdict(TRANSPORT, A, t1), Verdict::Quiet);
        assert_eq!(
            log.verdict(TRANSPORT, A, t1 + REPEAT_INTERVAL),
            Verdict::Warn { held_back: 1 }
        );
    }

    #[test]
    fn librdkafkas_own_repeat_count_does_not_make_another_line() {
        let mut log = LibLog::default();
        let t0 = Instant::now();
        let first = "[thrd:127.0.0.1:18098/bootstrap]: 127.0.0.1:18098/bootstrap: Connect to ipv4#127.0.0.1:18098 failed: Connection refused (after 0ms in state CONNECT)";
        let again = "[thrd:127.0.0.1:18098/bootstrap]: 127.0.0.1:18098/bootstrap: Connect to ipv4#127.0.0.1:18098 failed: Connection refused (after 0ms in state CONNECT, 1 identical error(s) suppressed)";
        assert_eq!(
            log.verdict("FAIL", first, Level::INFO, t0),
            Verdict::Warn { held_back: 0 }
        );
        assert_eq!(log.verdict("FAIL", again, Level::INFO, t0), Verdict::Quiet);
    }

    #[test]
    fn each_error_code_repeats_on_its_own_clock() {
        let mut log = ErrorLog::default();
        let t0 = Instant::now();
        assert_eq!(
            log.verdict(TRANSPORT, A, t0),
            Verdict::Warn { held_back: 0 }
        );
        assert_eq!(log.verdict(AUTH, A, t0), Verdict::Warn { held_back: 0 });
        // Two errors taking turns are each still a repeat.
        assert_eq!(log.verdict(TRANSPORT, A, t0), Verdict::Quiet);
        assert_eq!(log.verdict(None, A, t0), Verdict::Warn { held_back: 0 });
        assert_eq!(log.verdict(None, A, t0), Verdict::Quiet);
        // "All brokers down" in between does not reset them.
        assert_eq!(log.verdict(DOWN, "", t0), Verdict::Warn { held_back: 0 });
        assert_eq!(log.verdict(AUTH, A, t0), Verdict::Quiet);
    }
}
