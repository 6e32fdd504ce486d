//! Telling an operator that another client probably holds this account's
//! key. Voip24h allows one session per key: a second relay (a standby
//! started by mistake, a test script) signed in with it takes the session,
//! and each side gets part of the stream. Its only sign was a generic
//! `connect_end` reconnect about once a minute.
//!
//! Guarantees: the hint applies once the server has ended [`ENDS`]
//! sessions that had signed in with `connectEnd` within [`WITHIN`]; it
//! stops applying once they are older; it is said at most once per
//! [`WITHIN`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::session::{EndReason, SessionEnd};

/// How many ends by `connectEnd` make the hint apply.
const ENDS: usize = 3;
/// The window they must fall within.
const WITHIN: Duration = Duration::from_secs(10 * 60);

/// What `/status` and the log add to such an end.
pub const HINT: &str = "the server ended this key's session 3 times in 10 minutes: another client (another relay, a script) may be signed in with the same key, and Voip24h allows one session per key (deploy/README §8a)";

#[derive(Default)]
pub struct TakenOver {
    ends: VecDeque<Instant>,
    said: Option<Instant>,
}

impl TakenOver {
    /// Notes a session's `end` at `now`; whether the hint applies.
    pub fn note(&mut self, end: &SessionEnd, now: Instant) -> bool {
        if end.reason == EndReason::ConnectEnd && end.connected_for.is_some() {
            self.ends.push_back(now);
            if self.ends.len() > ENDS {
                self.ends.pop_front();
            }
        }
        self.applies(now)
    }

    /// Whether the hint applies at `now`: [`ENDS`] ends within [`WITHIN`].
    pub fn applies(&mut self, now: Instant) -> bool {
        while self
            .ends
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= WITHIN)
        {
            self.ends.pop_front();
        }
        self.ends.len() >= ENDS
    }

    /// When the hint stops applying, if it applies at `now`: the oldest of
    /// the ends that make it apply ages past [`WITHIN`].
    pub fn applies_until(&mut self, now: Instant) -> Option<Instant> {
        if !self.applies(now) {
            return None;
        }
        self.ends.front().map(|oldest| *oldest + WITHIN)
    }

    /// Whether the hint is due in the log (at most once per [`WITHIN`]).
    pub fn say(&mut self, now: Instant) -> bool {
        if self
            .said
            .is_some_and(|at| now.saturating_duration_since(at) < WITHIN)
        {
            return false;
        }
        self.said = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(reason: EndReason, signed_in: bool) -> SessionEnd {
        SessionEnd {
            reason,
            detail: String::new(),
            namespace_connected: signed_in,
            connected_for: signed_in.then_some(Duration::from_secs(40)),
        }
    }

    #[test]
    fn three_ends_by_connect_end_within_ten_minutes_give_the_hint() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut t = TakenOver::default();
        assert!(!t.note(&end(EndReason::ConnectEnd, true), at(0)));
        assert!(!t.note(&end(EndReason::ConnectEnd, true), at(60)));
        // Other ends, or a refusal before the sign-in, are not counted.
        assert!(!t.note(&end(EndReason::Silent, true), at(90)));
        assert!(!t.note(&end(EndReason::ConnectEnd, false), at(100)));
        assert!(t.note(&end(EndReason::ConnectEnd, true), at(120)));
        // It applies between ends too, while the three are within the window.
        assert!(t.applies(at(500)));
        assert!(t.note(&end(EndReason::Silent, true), at(590)));
        assert!(t.say(at(120)));
        assert!(!t.say(at(300)), "said once per ten minutes");
        // Once the first two are older than ten minutes, one more is not enough.
        assert!(!t.note(&end(EndReason::ConnectEnd, true), at(700)));
        assert!(t.say(at(721)));
    }

    /// A session that signs in while the hint applies is told when it stops
    /// applying, so its `/status` row drops it then.
    #[test]
    fn the_hint_applies_until_the_oldest_end_is_ten_minutes_old() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut t = TakenOver::default();
        assert_eq!(t.applies_until(at(0)), None);
        for s in [0, 60, 120] {
            t.note(&end(EndReason::ConnectEnd, true), at(s));
        }
        assert_eq!(t.applies_until(at(130)), Some(at(600)));
        assert_eq!(t.applies_until(at(600)), None);
    }
}
