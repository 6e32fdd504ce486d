//! What a WebSocket client asked for in its query string: the event filters
//! (`type` globs, `vendor`, `account`, `subject`), the resume point
//! (`since`), a token, and whether it wants heartbeat frames. Parsed once at
//! connect, then matched against each event's already-parsed
//! [`EventHeader`], so filtering never touches the JSON.
//!
//! Guarantees: every parameter may be repeated or comma-separated; an empty
//! list means "no filter on that attribute"; unknown parameters are ignored
//! (browsers add cache busters); a malformed `since` is an error, not "live";
//! a parameter that is not UTF-8 once percent-decoded is an error, not a
//! filter of replacement characters that silently matches nothing.

use crate::event::{EventHeader, HeaderRef};
use crate::ingest::RouteKey;
use crate::vendors::text::{Pairs, form_pairs};

/// Why a query was refused (answered 400 before the upgrade).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    /// `field` is where the client gave it: `since` or `Last-Event-ID`.
    #[error("`{field}` must be a non-negative integer seq, got {got:?}")]
    BadSince { field: &'static str, got: String },
    /// A parameter's name or value is not UTF-8 once percent-decoded.
    #[error("{0}")]
    NotUtf8(String),
    /// The `Last-Event-ID` header's bytes are not text.
    #[error("`Last-Event-ID` must be a non-negative integer seq, and is not text")]
    LastEventIdNotText,
    /// A filter is larger than the relay keeps: see [`Oversized`].
    #[error("{0}")]
    FilterTooLarge(Oversized),
}

/// How a filter (named by its parameter) is too large to keep.
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
pub enum Oversized {
    /// It lists more values than [`MAX_FILTER_VALUES`].
    #[error("`{0}` lists more than {MAX_FILTER_VALUES} values")]
    Values(&'static str),
    /// One of its values is longer than [`MAX_FILTER_VALUE_BYTES`]; the
    /// value is not echoed, as it may be most of a 64 KiB request line.
    #[error("a `{0}` value is longer than {MAX_FILTER_VALUE_BYTES} bytes")]
    Length(&'static str),
}

/// The most values one filter (`type`, `vendor`, `account`, `subject`) may
/// list: each is kept for the connection and matched against every event,
/// so `?type=a,a,a,…` in a 64 KiB request line held about 1 MB per client
/// and 32,000 glob matches per event (memory audit, 2026-12-05).
pub const MAX_FILTER_VALUES: usize = 256;

/// The longest value (in bytes, once percent-decoded) a filter may list.
/// Every event is matched against every value, so one `type=` value of
/// 60,000 characters cost each event an estimated 100 µs, for live events, replay
/// pages and the replay's count alike (bounds review, 2026-12-06). No real
/// value comes near: event types are under 30 bytes, account names at most
/// 64, vendor names a word, subjects a call id, ticket id or login.
pub const MAX_FILTER_VALUE_BYTES: usize = 256;

/// The query parameters a client may give.
const PARAMETERS: [&str; 7] = [
    "type",
    "vendor",
    "account",
    "subject",
    "since",
    "token",
    "heartbeat",
];

/// A client's filters; an event is sent when it matches every non-empty list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub types: Vec<String>,
    pub vendors: Vec<String>,
    pub accounts: Vec<String>,
    pub subjects: Vec<String>,
}

/// Everything read from the query string. Its `Debug` hides the token.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientQuery {
    pub filter: Filter,
    /// `?since=` as sent; read with [`ClientQuery::since`] once the client is authenticated.
    pub since: Option<String>,
    pub token: Option<String>,
    /// `?token=` came more than once (refused: see `auth::presented`).
    pub token_repeated: bool,
    /// A `?token=` came that is not UTF-8 once percent-decoded: a client
    /// that sent a token must not be told that one is required.
    pub token_not_utf8: bool,
    /// `?heartbeat` (any value but `0` or `false`): the client wants
    /// `{"control":"heartbeat","seq":N}` frames (see `session`).
    pub heartbeat: bool,
    /// Why the first parameter that is not UTF-8 was skipped: reported by
    /// [`ClientQuery::since`], after authentication, like a bad `since`.
    pub not_utf8: Option<String>,
    /// The first filter that listed too many values (its rest are dropped)
    /// or a value too long (not kept): reported by [`ClientQuery::since`]
    /// as well.
    pub oversized: Option<Oversized>,
}

impl std::fmt::Debug for ClientQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientQuery")
            .field("filter", &self.filter)
            .field("since", &self.since)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("token_repeated", &self.token_repeated)
            .field("token_not_utf8", &self.token_not_utf8)
            .field("heartbeat", &self.heartbeat)
            .field("not_utf8", &self.not_utf8)
            .field("oversized", &self.oversized)
            .finish()
    }
}

impl ClientQuery {
    /// Parses a raw (still percent-encoded) query string. Never fails: a bad
    /// `since` or a parameter that is not UTF-8 is reported by
    /// [`ClientQuery::since`], after authentication.
    pub fn parse(raw: Option<&str>) -> ClientQuery {
        let mut q = ClientQuery::default();
        let Some(raw) = raw else {
            return q;
        };
        // One pair at a time, so an unreadable `account` still leaves the
        // token readable and the client is told 401 before 400.
        for pair in raw.split('&') {
            let decoded = form_pairs(pair.as_bytes(), None, Pairs::QueryParameters);
            let (key, value) = match decoded.map(|mut one| one.pop()) {
                Ok(Some(pair)) => pair,
                Ok(None) => continue,
                // Refused only for a parameter the relay reads: unknown ones
                // are ignored (browsers and proxies add cache busters).
                Err(e) => {
                    let name = pair.split_once('=').map_or(pair, |(name, _)| name);
                    let decoded_name = form_pairs(name.as_bytes(), None, Pairs::QueryParameters)
                        .ok()
                        .and_then(|p| p.into_iter().next().map(|(n, _)| n));
                    let Some(decoded_name) = decoded_name else {
                        continue;
                    };
                    if PARAMETERS.contains(&decoded_name.as_str()) {
                        q.not_utf8.get_or_insert(e.0);
                    }
                    q.token_not_utf8 |= decoded_name == "token";
                    continue;
                }
            };
            let (name, list) = match key.as_str() {
                "type" => ("type", &mut q.filter.types),
                "vendor" => ("vendor", &mut q.filter.vendors),
                "account" => ("account", &mut q.filter.accounts),
                "subject" => ("subject", &mut q.filter.subjects),
                "since" => {
                    q.since = Some(value);
                    continue;
                }
                "token" => {
                    q.token_repeated |= q.token.is_some();
                    q.token = Some(value);
                    continue;
                }
                "heartbeat" => {
                    // The last one wins, as for `since`.
                    q.heartbeat = !matches!(value.trim(), "0" | "false");
                    continue;
                }
                _ => continue,
            };
            for one in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                if list.len() == MAX_FILTER_VALUES {
                    q.oversized.get_or_insert(Oversized::Values(name));
                    break;
                }
                if one.len() > MAX_FILTER_VALUE_BYTES {
                    q.oversized.get_or_insert(Oversized::Length(name));
                    continue;
                }
                list.push(one.to_owned());
            }
        }
        q
    }

    /// The resume point: `?since=`, else the `Last-Event-ID` header's value;
    /// or why the query cannot be served.
    /// `last_event_id` is the header's text, `Err` when it is not text.
    pub fn since(
        &self,
        last_event_id: Option<Result<&str, ()>>,
    ) -> Result<Option<u64>, QueryError> {
        if let Some(why) = &self.not_utf8 {
            return Err(QueryError::NotUtf8(why.clone()));
        }
        if let Some(why) = self.oversized {
            return Err(QueryError::FilterTooLarge(why));
        }
        match (self.since.as_deref(), last_event_id) {
            (Some(text), _) => parse_seq(text, "since").map(Some),
            (None, Some(Ok(text))) => parse_seq(text, "Last-Event-ID").map(Some),
            (None, Some(Err(()))) => Err(QueryError::LastEventIdNotText),
            (None, None) => Ok(None),
        }
    }
}

/// A seq as sent by a client in `field` (`since` or `Last-Event-ID`).
fn parse_seq(text: &str, field: &'static str) -> Result<u64, QueryError> {
    text.trim().parse().map_err(|_| QueryError::BadSince {
        field,
        got: text.chars().take(40).collect(),
    })
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
            && self.vendors.is_empty()
            && self.accounts.is_empty()
            && self.subjects.is_empty()
    }

    /// The route its session is fed from (see [`RouteKey`]): the one
    /// subject this filter lets through, else the one account, else the
    /// one type if it is no glob, else the one vendor (each named once or
    /// more); `None` (the shared ring) when it names none of them once.
    /// The most selective first: a session's route carries all its events
    /// and as few others as the filter allows. The subject before the
    /// account: a screen of one call under a token scoped to its tenant's
    /// account (the scope written into the filter) is woken by that call's
    /// events, not by every event of the account.
    pub fn route_key(&self) -> Option<RouteKey<'_>> {
        fn only(list: &[String]) -> Option<&str> {
            let (first, rest) = list.split_first()?;
            rest.iter().all(|v| v == first).then_some(first.as_str())
        }
        if let Some(subject) = only(&self.subjects) {
            return Some(RouteKey::Subject(subject));
        }
        if let Some(account) = only(&self.accounts) {
            return Some(RouteKey::Account(account));
        }
        // A glob with no wildcard matches its own text alone.
        let literal = only(&self.types).filter(|t| !t.contains(['*', '?']));
        if let Some(event_type) = literal {
            return Some(RouteKey::Type(event_type));
        }
        only(&self.vendors).map(RouteKey::Vendor)
    }

    /// Whether `header` passes every filter. The globs go last: an event
    /// another filter already drops costs no glob match.
    pub fn matches(&self, header: &EventHeader) -> bool {
        self.matches_ref(&header.borrowed())
    }

    /// As [`Filter::matches`], for a header borrowed from a journal record.
    pub fn matches_ref(&self, header: &HeaderRef<'_>) -> bool {
        let any = |list: &[String], value: &str| list.is_empty() || list.iter().any(|v| v == value);
        any(&self.vendors, header.vendor)
            && any(&self.accounts, header.account)
            && (self.subjects.is_empty()
                || header
                    .subject
                    .is_some_and(|s| self.subjects.iter().any(|v| v == s)))
            && (self.types.is_empty() || self.types.iter().any(|g| glob(g, header.event_type)))
    }
}

/// Glob match where `*` is any run of characters (dots included) and `?` one
/// character; everything else is literal. Iterative with one backtrack point,
/// so a hostile pattern cannot make it exponential. Walks both strings by
/// byte offset, one character at a time, without copying them: it runs for
/// every event and every `type` value of every session.
pub fn glob(pattern: &str, text: &str) -> bool {
    // Offsets only ever move by a whole character (`*` is one byte), so
    // every slice below starts on a character boundary.
    let at = |s: &str, i: usize| s[i..].chars().next();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while let Some(tc) = at(text, ti) {
        let pc = at(pattern, pi);
        // `*` first: taken as a literal when the text holds a `*` there, it
        // left no backtrack point, and `*b*` missed `a*b-c` (fuzzing found it).
        if pc == Some('*') {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some(pc) = pc.filter(|pc| *pc == '?' || *pc == tc) {
            pi += pc.len_utf8();
            ti += tc.len_utf8();
        } else if let Some((sp, st)) = star {
            // The star takes one more character of the text than it did.
            let taken = at(text, st).map_or(1, char::len_utf8);
            pi = sp + 1;
            ti = st + taken;
            star = Some((sp, ti));
        } else {
            return false;
        }
    }
    pattern[pi..].bytes().all(|b| b == b'*')
}

#[cfg(test)]
mod model_tests;

#[cfg(test)]
mod tests {
    use super::*;

    /// The route a filter gives: one subject first, then one account, one
    /// type that is no glob, one vendor; none when it names no attribute
    /// once (a value repeated is named once).
    #[test]
    fn a_filter_routes_on_its_most_selective_single_value() {
        let key = |query: &str| {
            let filter = ClientQuery::parse(Some(query)).filter;
            format!("{:?}", filter.route_key())
        };
        assert_eq!(
            key("account=a&subject=s&type=t&vendor=v"),
            r#"Some(Subject("s"))"#
        );
        assert_eq!(
            key("account=a&subject=s,r&type=t&vendor=v"),
            r#"Some(Account("a"))"#
        );
        assert_eq!(
            key("account=a,b&subject=s,s&vendor=v"),
            r#"Some(Subject("s"))"#
        );
        assert_eq!(
            key("subject=s,r&type=call.ended&vendor=v"),
            r#"Some(Type("call.ended"))"#
        );
        assert_eq!(key("type=call.*&vendor=v"), r#"Some(Vendor("v"))"#);
        assert_eq!(key("type=call.?nded&vendor=v,w"), "None");
        assert_eq!(key("type=a,b"), "None");
        assert_eq!(key(""), "None");
    }

    #[test]
    fn a_query_prints_without_its_token() {
        let q = ClientQuery::parse(Some("token=s3cr3t-t0k&type=call.*"));
        assert_eq!(q.token.as_deref(), Some("s3cr3t-t0k"));
        let shown = format!("{q:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("***") && shown.contains("call.*"), "{shown}");
    }

    #[test]
    fn a_filter_listing_too_many_values_is_refused_and_holds_at_most_the_limit() {
        let at_limit = format!("type={}", vec!["call.*"; MAX_FILTER_VALUES].join(","));
        let q = ClientQuery::parse(Some(&at_limit));
        assert_eq!(q.since(None), Ok(None));
        assert_eq!(q.filter.types.len(), MAX_FILTER_VALUES);
        // 1,000 values in one parameter, or spread over several.
        for over in [
            format!("vendor={}", "a,".repeat(1_000)),
            format!("account=a&{}", "account=a,a&".repeat(200)),
        ] {
            let q = ClientQuery::parse(Some(&over));
            assert!(
                matches!(q.since(None), Err(QueryError::FilterTooLarge(_))),
                "{over:.40}"
            );
            let kept = q.filter.vendors.len() + q.filter.accounts.len();
            assert!(kept <= MAX_FILTER_VALUES, "{kept}");
        }
    }

    #[test]
    fn a_filter_value_longer_than_the_limit_is_refused_without_being_echoed() {
        // Counted in bytes once decoded: `á` is two.
        let at_limit = "\u{e1}".repeat(MAX_FILTER_VALUE_BYTES / 2);
        for name in ["type", "vendor", "account", "subject"] {
            let q = ClientQuery::parse(Some(&format!("{name}={at_limit}&since=3")));
            assert_eq!(q.since(None), Ok(Some(3)), "{name}");
            assert!(!q.filter.is_empty(), "{name}");

            let over = format!("x{}", "y".repeat(MAX_FILTER_VALUE_BYTES));
            let q = ClientQuery::parse(Some(&format!("{name}=ok,{over},also&since=3")));
            let refused = q.since(None).unwrap_err();
            let told = refused.to_string();
            assert_eq!(
                told,
                format!("a `{name}` value is longer than {MAX_FILTER_VALUE_BYTES} bytes")
            );
            assert!(!told.contains("xy"), "{told}");
            assert!(
                q.filter.types.len()
                    + q.filter.vendors.len()
                    + q.filter.accounts.len()
                    + q.filter.subjects.len()
                    == 2,
                "the long value is not kept: {q:?}"
            );
        }
    }

    fn header(t: &str, vendor: &str, account: &str, subject: Option<&str>) -> EventHeader {
        EventHeader {
            id: "00".into(),
            event_type: t.into(),
            source: format!("/{vendor}/{account}"),
            subject: subject.map(str::to_owned),
            vendor: vendor.into(),
            account: account.into(),
            seq: 1,
        }
    }

    #[test]
    fn globs() {
        assert!(glob("call.*", "call.ringing"));
        assert!(glob("call.*", "call.transfer_cancelled"));
        assert!(!glob("call.*", "crm.ticket.update"));
        assert!(!glob("call.*", "call"));
        assert!(glob("*", "anything"));
        assert!(glob("crm.*.update", "crm.ticket.update"));
        assert!(!glob("crm.*.update", "crm.ticket.create"));
        assert!(glob("call.?nded", "call.ended"));
        assert!(glob("call.hangup", "call.hangup"));
        assert!(!glob("call.hangup", "call.hangups"));
        assert!(glob("*a*a*a*a*a*b", &"a".repeat(60).replace("aa", "ab")));
        assert!(!glob("*a*a*a*a*a*c", &"a".repeat(200)));
        // `?` and a backtracking `*` step over a whole character, not a byte.
        assert!(glob("g?i", "g\u{1ecd}i"));
        assert!(glob("*\u{e9}", "a\u{e9}\u{e9}"));
        assert!(glob("*\u{e9}?", "\u{e9}x\u{e9}\u{1f600}"));
        assert!(!glob("a?c", "ac"));
        assert!(!glob("*\u{e9}", "\u{e9}a"));
    }

    /// A `*` of the pattern meeting a `*` of the text is still a wildcard:
    /// read as a literal, it left no point to backtrack to (fuzzing found
    /// it: fuzz/regressions/websocket_query/).
    #[test]
    fn a_star_meeting_a_star_in_the_text_is_still_a_wildcard() {
        assert!(glob("*b*", "a*b-c"));
        assert!(glob("*pe=*", "ty=*,type=*,c"));
        assert!(glob("a*", "a*x"));
        assert!(!glob("*b*", "a*c"));
    }

    #[test]
    fn parses_repeated_and_comma_separated() {
        let q = ClientQuery::parse(Some(
            "type=call.*,agent.*&type=sms.received&vendor=voip24h&vendor=&account=a%2Cb&since=42&token=t%20k&x=1",
        ));
        assert_eq!(q.filter.types, ["call.*", "agent.*", "sms.received"]);
        assert_eq!(q.filter.vendors, ["voip24h"]);
        assert_eq!(q.filter.accounts, ["a", "b"]);
        assert_eq!(
            q.since(Some(Ok("7"))),
            Ok(Some(42)),
            "?since= wins over Last-Event-ID"
        );
        assert_eq!(q.token.as_deref(), Some("t k"));
        let none = ClientQuery::parse(None);
        assert_eq!(none, ClientQuery::default());
        assert_eq!(none.since(Some(Ok(" 9 "))), Ok(Some(9)));
        assert_eq!(none.since(None), Ok(None));
        assert!(ClientQuery::parse(Some("since=-1")).since(None).is_err());
        assert!(ClientQuery::parse(Some("since=abc")).since(None).is_err());
        let header = ClientQuery::parse(None).since(Some(Ok("-1"))).unwrap_err();
        assert_eq!(
            header.to_string(),
            "`Last-Event-ID` must be a non-negative integer seq, got \"-1\""
        );
        assert!(none.since(Some(Ok("x"))).is_err());
    }

    #[test]
    fn heartbeat_is_any_value_but_off_and_the_last_one_wins() {
        let heartbeat = |raw: &str| ClientQuery::parse(Some(raw)).heartbeat;
        assert!(!heartbeat("type=call.*"));
        for on in [
            "heartbeat",
            "heartbeat=1",
            "heartbeat=true",
            "heartbeat=yes",
        ] {
            assert!(heartbeat(on), "{on}");
        }
        for off in ["heartbeat=0", "heartbeat=false", "heartbeat=%200%20"] {
            assert!(!heartbeat(off), "{off}");
        }
        assert!(!heartbeat("heartbeat=1&heartbeat=0"));
        assert!(heartbeat("heartbeat=0&heartbeat=1"));
    }

    #[test]
    fn a_token_sent_twice_is_marked_repeated() {
        assert!(!ClientQuery::parse(Some("token=a&x=1")).token_repeated);
        assert!(ClientQuery::parse(Some("token=a&token=b")).token_repeated);
        assert!(ClientQuery::parse(Some("token=a&token=b&token=c")).token_repeated);
    }

    #[test]
    fn a_filter_is_empty_only_with_every_list_empty() {
        assert!(Filter::default().is_empty());
        for raw in ["type=a", "vendor=a", "account=a", "subject=a"] {
            let filter = ClientQuery::parse(Some(raw)).filter;
            assert!(!filter.is_empty(), "{raw}");
        }
    }

    #[test]
    fn a_parameter_that_is_not_utf8_is_refused_after_the_token_is_read() {
        // `%E1` is `á` in Latin-1: read lossily it became a filter of U+FFFD
        // that matched nothing, and the screen stayed empty without a word.
        let q = ClientQuery::parse(Some("account=ph%E1t&token=t%C3%A1&since=3&type=call.*"));
        assert_eq!(q.token.as_deref(), Some("tá"), "the token is still read");
        assert_eq!(q.filter.types, ["call.*"]);
        assert!(q.filter.accounts.is_empty(), "{q:?}");
        let refused = q.since(None).unwrap_err();
        assert!(matches!(refused, QueryError::NotUtf8(_)), "{refused:?}");
        let told = refused.to_string();
        assert!(
            told.contains("query parameter `account` is not UTF-8"),
            "{told}"
        );
        assert!(told.contains("%C4%90"), "{told}");
        // Unknown parameters are ignored, whatever their bytes (browsers and
        // proxies add cache busters): only the relay's own are refused.
        assert_eq!(
            ClientQuery::parse(Some("%FF=1&since=2")).since(None),
            Ok(Some(2))
        );
        assert_eq!(
            ClientQuery::parse(Some("_=%FF&since=1")).since(None),
            Ok(Some(1))
        );
        for known in [
            "type",
            "vendor",
            "subject",
            "since",
            "token",
            "heartbeat",
            "%74ype",
        ] {
            let q = ClientQuery::parse(Some(&format!("{known}=%FF")));
            assert!(
                matches!(q.since(None), Err(QueryError::NotUtf8(_))),
                "{known}"
            );
        }
        // A literal U+FFFD sent as UTF-8 is text like any other.
        let replacement = ClientQuery::parse(Some("account=%EF%BF%BD&since=5"));
        assert_eq!(replacement.filter.accounts, ["\u{FFFD}"]);
        assert_eq!(replacement.since(None), Ok(Some(5)));
    }

    #[test]
    fn matches_every_non_empty_list() {
        let q = ClientQuery::parse(Some("type=call.*&vendor=voip24h,caresoft&subject=7")).filter;
        assert!(q.matches(&header("call.ringing", "voip24h", "main", Some("7"))));
        assert!(q.matches(&header("call.ended", "caresoft", "x", Some("7"))));
        assert!(!q.matches(&header("call.ended", "tel4vn", "x", Some("7"))));
        assert!(!q.matches(&header("crm.ticket.update", "caresoft", "x", Some("7"))));
        assert!(!q.matches(&header("call.ended", "caresoft", "x", Some("8"))));
        assert!(!q.matches(&header("call.ended", "caresoft", "x", None)));
        assert!(Filter::default().matches(&header("vendor.unknown", "voipex", "a", None)));
    }
}
