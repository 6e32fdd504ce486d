//! Lenient readers shared by the vendor modules: field lookup that ignores key
//! case, scalar text that keeps a number's digits, seconds, direction and
//! status vocabularies, vendor dates in any of the forms they send, and
//! unambiguous identities.
//!
//! Guarantees: every function is total — it returns `None` (a date:
//! [`Date::Unread`], or a placeholder) for anything it cannot read and never
//! panics, whatever the input.

use serde_json::{Map, Number, Value};
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::event::{UnreadDate, id_text};

/// The offset Vietnamese vendors (Voip24h, CareSoft, Tel4vn) write local dates in.
pub const ICT: UtcOffset = match UtcOffset::from_hms(7, 0, 0) {
    Ok(o) => o,
    Err(_) => UtcOffset::UTC,
};

/// The value at `key`, matching the key exactly first, then ignoring ASCII case
/// (vendors are not consistent: `callid`, `CallId`, `UniqueId`, `uniqueid`).
pub fn get<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// The first of `keys` that holds a usable text (see [`text`]).
pub fn text_of(map: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| get(map, k).and_then(text))
}

/// The object at `key`, if it is one.
pub fn object<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    get(map, key).and_then(Value::as_object)
}

/// A scalar's exact text (numbers keep their digits); `None` for null,
/// containers, `""` and `0`, which vendors use for "no value".
pub fn text(value: &Value) -> Option<String> {
    id_text(value)
}

/// A scalar's text lowercased, for matching vendor vocabularies case-insensitively.
pub fn lower(value: Option<&Value>) -> Option<String> {
    value.and_then(text).map(|t| t.to_ascii_lowercase())
}

/// A count of seconds: a JSON number or a numeric string, kept as a JSON number
/// (`0` is a real duration here). Negative or non-numeric values are `None`.
pub fn seconds(value: Option<&Value>) -> Option<Value> {
    let text = match value? {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        _ => return None,
    };
    if let Ok(n) = text.parse::<u64>() {
        return Some(Value::Number(n.into()));
    }
    let f = text
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && *f >= 0.0)?;
    // `abs`: "-0" passes the bound as -0.0, and was written `-0.0`.
    Number::from_f64(f.abs()).map(Value::Number)
}

/// `inbound`, `outbound` or `internal` from the vendors' words for them.
pub fn direction(value: Option<&Value>) -> Option<&'static str> {
    match lower(value)?.as_str() {
        "inbound" | "incoming" | "in" => Some("inbound"),
        "outbound" | "outgoing" | "out" => Some("outbound"),
        "local" | "internal" | "incominglocal" | "outgoinglocal" => Some("internal"),
        _ => None,
    }
}

/// A status word normalized to `lower_snake` (`NO ANSWER` → `no_answer`), so
/// vendors that write the same status differently compare equal.
pub fn status(value: Option<&Value>) -> Option<String> {
    let t = lower(value)?;
    let mut out = String::with_capacity(t.len());
    for c in t.chars() {
        if c.is_whitespace() || c == '-' {
            if !out.ends_with('_') {
                out.push('_');
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Normalized `data` fields under construction; absent values are skipped.
pub struct Fields(Map<String, Value>);

impl Default for Fields {
    fn default() -> Self {
        // Room for every vendor's usual set, so building one never regrows the map.
        Fields(Map::with_capacity(12))
    }
}

impl Fields {
    pub fn text(&mut self, name: &str, value: Option<String>) -> &mut Self {
        if let Some(v) = value {
            self.0.insert(name.to_owned(), Value::String(v));
        }
        self
    }
    pub fn word(&mut self, name: &str, value: Option<&str>) -> &mut Self {
        self.text(name, value.map(str::to_owned))
    }
    pub fn value(&mut self, name: &str, value: Option<Value>) -> &mut Self {
        if let Some(v) = value {
            self.0.insert(name.to_owned(), v);
        }
        self
    }
    pub fn build(self) -> Map<String, Value> {
        self.0
    }
}

/// An identity built from parts: the canonical JSON array of their texts, so
/// no two different part lists share a text (`["a|b"]` vs `["a","b"]`).
pub fn identity(parts: &[Option<&str>]) -> String {
    // Serialized straight from the slice, no `Value` in between; the text is
    // what `Value::Array(..).to_string()` always gave (journaled ids are
    // hashes of it). ok: strings and nulls always serialize.
    serde_json::to_string(parts).unwrap_or_default()
}

/// Canonical text of a payload for identities, looser than
/// [`canonical_json`](crate::event::canonical_json): keys sorted and every
/// scalar written as its text, so `{"call_id": 8}` and `{"call_id": "8"}` — the
/// same event re-serialised by a vendor — give the same identity.
pub fn loose_canonical(value: &Value) -> String {
    crate::event::canonical_text(value, crate::event::Scalars::Loose)
}

/// A vendor date, read leniently: epoch milliseconds or seconds (number or
/// numeric string, fractions allowed), RFC 3339, `YYYY-MM-DD HH:MM:SS` with
/// its zone attached or after a space (see [`iso_date`]), in `local` time
/// without one, or Java's `Wed Oct 06 09:45:53 ICT 2021`; rounded to the
/// millisecond. `None` for anything else and for dates outside 2000..2100
/// (vendors' placeholders such as `0`): [`date`] tells those apart.
pub fn time(value: Option<&Value>, local: UtcOffset) -> Option<OffsetDateTime> {
    match date(value, local) {
        Date::Read(t) => Some(t),
        Date::Absent | Date::Placeholder | Date::Unread(_) => None,
    }
}

/// What a vendor's date field holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Date {
    /// No field, or no value in it (null, `""`).
    Absent,
    /// "No date": `0`, a negative number, all zeros (`0000-00-00 00:00:00`),
    /// or a date outside 2000..2100 (an epoch's too, up to 1e14 milliseconds).
    Placeholder,
    Read(OffsetDateTime),
    /// A value in no form [`time`] reads, a positive number past 1e14
    /// (microseconds, nanoseconds) among them: its text, cut for a log line.
    Unread(String),
}

/// As [`time`], telling an absent date, a placeholder and one that cannot
/// be read apart.
pub fn date(value: Option<&Value>, local: UtcOffset) -> Date {
    let read = match value {
        None | Some(Value::Null) => return Date::Absent,
        Some(Value::Number(n)) => {
            let n = n.to_string();
            epoch(&n).ok_or_else(|| not_an_epoch(&n))
        }
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                return Date::Absent;
            }
            parse_date_text(s, local).ok_or_else(|| unread_or_placeholder(s))
        }
        Some(other) => Err(Date::Unread(crate::logging::excerpt(&other.to_string()))),
    };
    match read.map(to_the_millisecond) {
        Ok(Some(t)) if (2000..2100).contains(&t.year()) => Date::Read(t),
        Ok(_) => Date::Placeholder,
        Err(not_read) => not_read,
    }
}

/// The first of `fields` (each its name and value) that holds a date, tried
/// in order; when none does, the first that held one in no form read, so
/// that the caller can say the receive time stands in for it.
pub fn first_date(
    fields: &[(&'static str, Option<&Value>)],
    local: UtcOffset,
) -> (Option<OffsetDateTime>, Option<UnreadDate>) {
    let mut unread = None;
    for (field, value) in fields {
        match date(*value, local) {
            Date::Read(t) => return (Some(t), None),
            Date::Unread(text) if unread.is_none() => {
                unread = Some(UnreadDate { field, text });
            }
            Date::Absent | Date::Placeholder | Date::Unread(_) => {}
        }
    }
    (None, unread)
}

/// A text no form reads: a placeholder when it is all zeros (`0000-00-00
/// 00:00:00`, `0.0`) or a number [`not_an_epoch`] calls one, else unread.
fn unread_or_placeholder(s: &str) -> Date {
    let digits = || s.bytes().filter(u8::is_ascii_digit);
    let all_zeros = digits().next().is_some() && digits().all(|b| b == b'0');
    let number = s.strip_prefix('-').unwrap_or(s);
    let numeric = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let named_number = numeric && s.parse::<f64>().is_ok();
    let only_date_marks = s
        .bytes()
        .all(|b| b.is_ascii_digit() || b" -:./T+Z".contains(&b));
    if all_zeros && only_date_marks {
        Date::Placeholder
    } else if named_number {
        not_an_epoch(s)
    } else {
        Date::Unread(crate::logging::excerpt(s))
    }
}

/// The largest epoch read, in milliseconds (the year 5138); a number below
/// 1e11 is seconds.
const MAX_EPOCH_MS: f64 = 1e14;

/// A number [`epoch`] refused: not positive, a placeholder; past
/// [`MAX_EPOCH_MS`], unread. That one is most likely microseconds (Go's
/// `UnixMicro`) or nanoseconds, which the relay does not read (their ranges
/// meet milliseconds' and seconds', so the unit would be a guess), and a
/// date it does not read is said, not taken for "no date".
fn not_an_epoch(text: &str) -> Date {
    match text.parse::<f64>() {
        // NaN compares false: no JSON number or numeric text is one.
        Ok(v) if v > MAX_EPOCH_MS => Date::Unread(crate::logging::excerpt(text)),
        _ => Date::Placeholder,
    }
}

/// `t` rounded to the millisecond, as an epoch's fraction is (so that one
/// instant sent as a number and as a text has one `time`, which is written
/// with milliseconds); `None` past the last instant `time` can hold.
fn to_the_millisecond(t: OffsetDateTime) -> Option<OffsetDateTime> {
    let below = t.nanosecond() % 1_000_000;
    let cut = t.replace_nanosecond(t.nanosecond() - below).ok()?;
    if below >= 500_000 {
        cut.checked_add(time::Duration::milliseconds(1))
    } else {
        Some(cut)
    }
}

fn epoch(text: &str) -> Option<OffsetDateTime> {
    let v: f64 = text
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)?;
    // Below 1e11 it can only be seconds (1e11 s is year 5138; 1e11 ms is 1973).
    let ms = if v < 1e11 { v * 1000.0 } else { v };
    if ms > MAX_EPOCH_MS {
        return None;
    }
    // Rounded: `1086454554.416 * 1000.0` is 1086454554415.9999, a
    // millisecond early if cut.
    OffsetDateTime::from_unix_timestamp_nanos((ms.round() as i128) * 1_000_000).ok()
}

fn parse_date_text(s: &str, local: UtcOffset) -> Option<OffsetDateTime> {
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return epoch(s);
    }
    if let Ok(t) = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Some(t);
    }
    iso_date(s, local).or_else(|| java_date(s, local))
}

/// `YYYY-MM-DD HH:MM:SS[.fff]` (or with `T`) and the zone that follows:
/// - none: `local`;
/// - attached: `Z`, `+07:00`, `+0700` or `+07` (ISO 8601 that RFC 3339
///   refuses: PHP's DATE_ISO8601 writes no colon);
/// - after one space: those, `UTC`, or `07:00`, the `+07:00` a form or
///   query body turns into a space when the sender did not encode its `+`;
/// - Go's `time.Time.String()`: `+0700 +07` (the name after the offset is
///   only its abbreviation) and perhaps a monotonic `m=+0.000012001`.
///
/// A zone named otherwise (`ICT` after such a date) is not guessed, nor are
/// day-first or month-first dates (`03/04/2021` is either).
fn iso_date(s: &str, local: UtcOffset) -> Option<OffsetDateTime> {
    let naive = format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    // Only the date's own `T`: the zone's letters (`UTC`) may hold another.
    let spaced = match s.as_bytes().get(10) {
        Some(b'T') => format!("{} {}", &s[..10], &s[11..]),
        _ => s.to_owned(),
    };
    let mut words = spaced.split(' ');
    let (date, clock) = (words.next()?, words.next()?);
    let (clock, attached) = match clock.find(['+', '-', 'Z', 'z']) {
        Some(at) => (&clock[..at], Some(&clock[at..])),
        None => (clock, None),
    };
    let mut after: Vec<&str> = words.collect();
    if attached.is_none() && after.len() == 3 && after[2].starts_with("m=") {
        after.pop();
    }
    let offset = match (attached, after.as_slice()) {
        (None, []) => local,
        (Some(zone), []) | (None, &[zone]) => {
            zone_after(zone, attached.is_none()).or_else(|| utc_offset(zone))?
        }
        // Go: the offset is what counts; the name is the zone's abbreviation
        // or, for a zone without one, the offset again (`+07`).
        (None, [offset, name]) if offset.len() == 5 && is_zone_name(name) => utc_offset(offset)?,
        _ => return None,
    };
    PrimitiveDateTime::parse(&format!("{date} {clock}"), naive)
        .ok()
        .map(|t| t.assume_offset(offset))
}

/// A Go zone abbreviation: letters (`ICT`), or a signed number (`+07`).
fn is_zone_name(name: &str) -> bool {
    let signed = name.strip_prefix(['+', '-']);
    match signed {
        Some(digits) => !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
        None => !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphabetic()),
    }
}

/// UTC's names, and (`spaced`: after a space) `hh:mm` whose `+` was lost.
fn zone_after(zone: &str, spaced: bool) -> Option<UtcOffset> {
    let utc_named = ["utc", "gmt"].iter().any(|n| zone.eq_ignore_ascii_case(n));
    if zone.eq_ignore_ascii_case("z") || (spaced && utc_named) {
        return Some(UtcOffset::UTC);
    }
    let bytes = zone.as_bytes();
    let hh_mm = bytes.len() == 5
        && bytes[2] == b':'
        && [0, 1, 3, 4].iter().all(|&i| bytes[i].is_ascii_digit());
    if spaced && hh_mm {
        return utc_offset(&format!("+{zone}"));
    }
    None
}

/// `+HH`, `+HHMM` or `+HH:MM` (or `-`).
fn utc_offset(text: &str) -> Option<UtcOffset> {
    let (sign, digits) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let digits = digits.replacen(':', "", 1);
    if !matches!(digits.len(), 2 | 4) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i8 = digits[..2].parse().ok()?;
    let minutes: i8 = digits
        .get(2..)
        .filter(|m| !m.is_empty())
        .map_or(Ok(0), str::parse)
        .ok()?;
    UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()
}

/// `EEE MMM dd HH:mm:ss zzz yyyy`, Java's `Date.toString()`.
fn java_date(s: &str, local: UtcOffset) -> Option<OffsetDateTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, month, day, clock, zone, year] = parts.as_slice() else {
        return None;
    };
    let offset = match zone.to_ascii_uppercase().as_str() {
        "UTC" | "GMT" | "Z" => UtcOffset::UTC,
        "ICT" => ICT,
        "MSK" => UtcOffset::from_hms(3, 0, 0).ok()?,
        "CET" => UtcOffset::from_hms(1, 0, 0).ok()?,
        "CEST" => UtcOffset::from_hms(2, 0, 0).ok()?,
        // What Java prints for a zone that is only an offset: GMT+08:00.
        named => ["GMT", "UTC"]
            .iter()
            .find_map(|prefix| named.strip_prefix(prefix))
            .and_then(utc_offset)
            .unwrap_or(local),
    };
    let text = format!("{year}-{month}-{day} {clock}");
    let fmt = format_description!(
        "[year]-[month repr:short case_sensitive:false]-[day padding:none] [hour]:[minute]:[second]"
    );
    PrimitiveDateTime::parse(&text, fmt)
        .ok()
        .map(|t| t.assume_offset(offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identity_is_the_json_array_text_it_always_was() {
        for parts in [
            vec![],
            vec![None],
            vec![Some("1287674126.299"), Some("ring"), Some("130")],
            vec![Some("a\"b\\c\n\u{1}é"), None, Some("")],
        ] {
            let reference = Value::Array(
                parts
                    .iter()
                    .map(|p| p.map_or(Value::Null, |s| Value::String(s.to_owned())))
                    .collect(),
            )
            .to_string();
            assert_eq!(identity(&parts), reference);
        }
    }

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn dates_in_every_vendor_form() {
        let ms = time(Some(&json!(1633489861000u64)), ICT).unwrap();
        assert_eq!(ms.unix_timestamp(), 1633489861);
        let s = time(Some(&parse("1616708923.946")), ICT).unwrap();
        assert_eq!(s.unix_timestamp_nanos() / 1_000_000, 1616708923946);
        let java = time(Some(&json!("Wed Oct 06 09:45:53 ICT 2021")), UtcOffset::UTC).unwrap();
        assert_eq!(crate::event::format_time(java), "2021-10-06T02:45:53.000Z");
        let naive = time(Some(&json!("2021-03-26 04:50:30")), ICT).unwrap();
        assert_eq!(crate::event::format_time(naive), "2021-03-25T21:50:30.000Z");
        let rfc = time(Some(&json!("2022-06-16T09:30:53.341Z")), ICT).unwrap();
        assert_eq!(crate::event::format_time(rfc), "2022-06-16T09:30:53.341Z");
        assert_eq!(time(Some(&json!("1633489861000")), ICT), Some(ms));
    }

    /// Seconds with a fraction are the milliseconds they say, also where a
    /// double's product falls just below them (1.5 % of 2004's values).
    #[test]
    fn epoch_seconds_keep_their_milliseconds() {
        for (text, utc) in [
            ("1086454554.416", "2004-06-05T16:55:54.416Z"),
            ("2175335284.871", "2038-12-07T11:48:04.871Z"),
            ("1616708923.946", "2021-03-25T21:48:43.946Z"),
        ] {
            let t = time(Some(&parse(text)), ICT).unwrap();
            assert_eq!(crate::event::format_time(t), utc, "{text}");
        }
    }

    /// An ISO 8601 offset RFC 3339 does not allow is still the date's own.
    #[test]
    fn a_date_keeps_an_offset_written_without_its_colon() {
        for (text, utc) in [
            ("2022-06-16T09:30:53+0300", "2022-06-16T06:30:53.000Z"),
            ("2022-06-16T09:30:53+03", "2022-06-16T06:30:53.000Z"),
            ("2022-06-16 09:30:53.5-0130", "2022-06-16T11:00:53.500Z"),
            ("2022-06-16T09:30:53+03:00", "2022-06-16T06:30:53.000Z"),
            (
                "Wed Oct 06 09:45:53 GMT+08:00 2021",
                "2021-10-06T01:45:53.000Z",
            ),
            (
                "Wed Oct 06 09:45:53 UTC-0300 2021",
                "2021-10-06T12:45:53.000Z",
            ),
        ] {
            let t = time(Some(&json!(text)), ICT);
            assert_eq!(
                t.map(crate::event::format_time).as_deref(),
                Some(utc),
                "{text}"
            );
        }
        for garbled in [
            "2022-06-16T09:30:53+3",
            "2022-06-16T09:30:53+030",
            "2022-06-16T09:30:53+99",
        ] {
            assert_eq!(time(Some(&json!(garbled)), ICT), None, "{garbled}");
        }
    }

    /// Zones written after a space, as PHP's `Y-m-d H:i:s O`, a `UTC` or
    /// `Z` suffix, Go's `time.Time.String()` and an ISO offset whose `+` a
    /// form or query body turned into a space: each the instant it names,
    /// not the receive time (data audit: all were unread).
    #[test]
    fn a_date_keeps_a_zone_written_after_a_space() {
        for (text, utc) in [
            ("2021-03-26 11:50:30 +0700", "2021-03-26T04:50:30.000Z"),
            ("2021-03-26 11:50:30 +07:00", "2021-03-26T04:50:30.000Z"),
            ("2021-03-26 11:50:30 -0130", "2021-03-26T13:20:30.000Z"),
            ("2021-03-26T11:50:30.25 +07", "2021-03-26T04:50:30.250Z"),
            ("2021-03-26 11:50:30 UTC", "2021-03-26T11:50:30.000Z"),
            ("2021-03-26T11:50:30 Z", "2021-03-26T11:50:30.000Z"),
            ("2021-03-26 11:50:30Z", "2021-03-26T11:50:30.000Z"),
            ("2021-03-26 11:50:30.5 utc", "2021-03-26T11:50:30.500Z"),
            ("2021-03-26T11:50:30 07:00", "2021-03-26T04:50:30.000Z"),
            ("2021-03-26 11:50:30.5 07:00", "2021-03-26T04:50:30.500Z"),
            (
                "2021-03-26 11:50:30.123 +0700 +07",
                "2021-03-26T04:50:30.123Z",
            ),
            (
                "2021-03-26 11:50:30.123456789 +0000 UTC",
                "2021-03-26T11:50:30.123Z",
            ),
            (
                "2021-03-26 11:50:30 +0700 ICT m=+0.000012001",
                "2021-03-26T04:50:30.000Z",
            ),
        ] {
            // Read with a local offset none of them has: the zone is the text's.
            let local = UtcOffset::from_hms(5, 0, 0).unwrap();
            let t = time(Some(&json!(text)), local);
            assert_eq!(
                t.map(crate::event::format_time).as_deref(),
                Some(utc),
                "{text}"
            );
        }
    }

    /// Forms that stay unread: day-first and month-first dates share one
    /// spelling (`03/04/2021` is either), so neither is guessed; a zone that
    /// is no offset nor UTC is not guessed either, and a space-for-`+`
    /// offset is read only in the `hh:mm` form a stripped `+hh:mm` leaves.
    #[test]
    fn an_ambiguous_or_unknown_date_stays_unread() {
        for text in [
            "26/03/2021 11:50:30",
            "03/26/2021 11:50:30",
            "26-03-2021 11:50:30",
            "2021-03-26 11:50:30 ICT",
            "2021-03-26 11:50:30 0700",
            "2021-03-26 11:50:30 2021",
            "2021-03-26 11:50:30 +0700 +07 extra",
            "2021-03-26  11:50:30",
            "2021-03-26 11:50:30 +07:00 UTC",
            "2021-03-26 11:50:30 Z Z",
            "2021-03-26 11:50:30 +99",
        ] {
            assert_eq!(time(Some(&json!(text)), ICT), None, "{text}");
        }
    }

    /// A text's fraction is rounded to the millisecond as an epoch
    /// number's is, so one instant sent both ways has one `time`.
    #[test]
    fn a_texts_fraction_is_rounded_as_an_epochs_is() {
        let from_epoch = time(Some(&parse("1616734230.9996")), ICT).unwrap();
        let from_text = time(Some(&json!("2021-03-26T11:50:30.9996+07:00")), ICT).unwrap();
        assert_eq!(
            crate::event::format_time(from_epoch),
            "2021-03-26T04:50:31.000Z"
        );
        assert_eq!(
            crate::event::format_time(from_text),
            "2021-03-26T04:50:31.000Z"
        );
        let naive = time(Some(&json!("2021-03-26 11:50:30.1234")), ICT).unwrap();
        assert_eq!(crate::event::format_time(naive), "2021-03-26T04:50:30.123Z");
    }

    /// Only a value that is there, is no placeholder and still cannot be
    /// read is unread: that one the source says it used the receive time for.
    #[test]
    fn a_date_is_absent_a_placeholder_read_or_unread() {
        for v in [json!(null), json!(""), json!("  ")] {
            assert_eq!(date(Some(&v), ICT), Date::Absent, "{v}");
        }
        assert_eq!(date(None, ICT), Date::Absent);
        for v in [
            json!(0),
            json!(-5),
            json!("0"),
            json!("000"),
            json!("-1"),
            json!("0000-00-00 00:00:00"),
            json!("0000-00-00T00:00:00Z"),
            json!("1970-01-01 07:00:00"),
            json!("2100-01-01T00:00:00Z"),
        ] {
            assert_eq!(date(Some(&v), ICT), Date::Placeholder, "{v}");
        }
        assert!(matches!(
            date(Some(&json!("2021-03-26 11:50:30")), ICT),
            Date::Read(_)
        ));
        for (v, text) in [
            (json!("26/03/2021 11:50:30"), "26/03/2021 11:50:30"),
            (json!(" yesterday "), "yesterday"),
            (json!(true), "true"),
            (json!({"d": 1}), "{\"d\":1}"),
            (
                json!("Wed Oct 99 09:45:53 ICT 2021"),
                "Wed Oct 99 09:45:53 ICT 2021",
            ),
        ] {
            assert_eq!(date(Some(&v), ICT), Date::Unread(text.to_owned()), "{v}");
        }
        // Cut for a log line.
        let long = format!("x{}", "9".repeat(500));
        let Date::Unread(cut) = date(Some(&json!(long)), ICT) else {
            panic!("unread")
        };
        assert_eq!(cut.chars().count(), crate::logging::EXCERPT_CHARS);
    }

    /// An epoch in microseconds (Go's `UnixMicro`, 1616734230123456) or
    /// nanoseconds is a date the relay does not read, said, not a vendor's
    /// "no date": so is any positive number past the milliseconds read
    /// (1e14, the year 5138). Milliseconds of a year past 2099 below that
    /// stay a placeholder, as a date written out for one is.
    #[test]
    fn an_epoch_too_large_for_milliseconds_is_unread() {
        for (v, text) in [
            (json!(1616734230123456u64), "1616734230123456"),
            (json!("1616734230123456"), "1616734230123456"),
            (json!(1616734230123456789u64), "1616734230123456789"),
            (json!(" 1616734230123456789 "), "1616734230123456789"),
            (json!("1616734230123456.5"), "1616734230123456.5"),
            (json!(100000000000001u64), "100000000000001"),
            (json!(1e300), "1e+300"),
            (json!("99999999999999999"), "99999999999999999"),
        ] {
            assert_eq!(date(Some(&v), ICT), Date::Unread(text.to_owned()), "{v}");
        }
        let (t, unread) = first_date(&[("timestamp", Some(&json!(1616734230123456u64)))], ICT);
        assert_eq!(t, None);
        assert_eq!(unread.map(|u| u.field), Some("timestamp"));
        for v in [
            json!(100000000000000u64),
            json!("100000000000000"),
            json!(4102444800000u64),
            json!(-1616734230123456i64),
            json!("-1616734230123456"),
            json!("0000000000000000"),
        ] {
            assert_eq!(date(Some(&v), ICT), Date::Placeholder, "{v}");
        }
    }

    /// The first date read wins; an unread one is told only when none is
    /// read, and it is the first unread.
    #[test]
    fn the_first_date_read_or_else_the_first_unread() {
        let (bad, worse, good) = (json!("26/03/2021"), json!("soon"), json!(1616734230));
        let (t, unread) = first_date(&[("a", Some(&bad)), ("b", Some(&good))], ICT);
        assert_eq!(t.map(|t| t.unix_timestamp()), Some(1616734230));
        assert_eq!(unread, None);
        let (t, unread) = first_date(
            &[
                ("a", None),
                ("b", Some(&json!(0))),
                ("c", Some(&bad)),
                ("d", Some(&worse)),
            ],
            ICT,
        );
        assert_eq!(t, None);
        assert_eq!(
            unread,
            Some(UnreadDate {
                field: "c",
                text: "26/03/2021".to_owned()
            })
        );
        assert_eq!(
            first_date(&[("a", Some(&json!("0000-00-00 00:00:00")))], ICT),
            (None, None)
        );
    }

    #[test]
    fn a_java_date_is_read_in_the_zone_it_names() {
        // Read with a local offset of +05:00, which none of the named zones has.
        let local = UtcOffset::from_hms(5, 0, 0).unwrap();
        for (zone, utc) in [
            ("UTC", "2021-10-06T09:45:53.000Z"),
            ("GMT", "2021-10-06T09:45:53.000Z"),
            ("Z", "2021-10-06T09:45:53.000Z"),
            ("ICT", "2021-10-06T02:45:53.000Z"),
            ("MSK", "2021-10-06T06:45:53.000Z"),
            ("CET", "2021-10-06T08:45:53.000Z"),
            ("CEST", "2021-10-06T07:45:53.000Z"),
            ("XYZ", "2021-10-06T04:45:53.000Z"),
        ] {
            let text = format!("Wed Oct 06 09:45:53 {zone} 2021");
            let t = time(Some(&json!(text)), local).unwrap();
            assert_eq!(crate::event::format_time(t), utc, "{zone}");
        }
    }

    #[test]
    fn placeholders_and_garbage_are_no_date() {
        for v in [
            json!(0),
            json!(""),
            json!("yesterday"),
            json!(-5),
            json!(1e300),
            json!(null),
            json!({}),
            json!("000"),
            json!("Wed Oct 99 09:45:53 ICT 2021"),
        ] {
            assert_eq!(time(Some(&v), ICT), None, "{v}");
        }
    }

    /// A negative number is no epoch, however large. The years check refuses
    /// a small one anyway; only the sign check keeps -1e300 (read as seconds)
    /// from overflowing the nanoseconds it is multiplied into, a panic where
    /// overflow is checked (a debug build), a wrap to 1970 where not.
    #[test]
    fn a_negative_epoch_of_any_size_is_no_date() {
        for v in [json!(-1e300), json!(f64::MIN)] {
            assert_eq!(time(Some(&v), ICT), None, "{v}");
        }
    }

    #[test]
    fn seconds_and_vocabularies() {
        assert_eq!(seconds(Some(&json!("10"))), Some(json!(10)));
        assert_eq!(seconds(Some(&json!(0))), Some(json!(0)));
        assert_eq!(seconds(Some(&json!("x"))), None);
        assert_eq!(seconds(Some(&json!(-1))), None);
        assert_eq!(seconds(Some(&json!("-0"))).unwrap().to_string(), "0.0");
        // Beyond 2⁶⁴: a float, written as docs/webhooks.md says.
        let huge = seconds(Some(&json!("100000000000000000000"))).unwrap();
        assert_eq!(huge.to_string(), "1e+20");
        assert_eq!(direction(Some(&json!("Inbound"))), Some("inbound"));
        assert_eq!(direction(Some(&json!("incomingLocal"))), Some("internal"));
        assert_eq!(direction(Some(&json!("barge"))), None);
        assert_eq!(
            status(Some(&json!("NO ANSWER"))).as_deref(),
            Some("no_answer")
        );
    }

    #[test]
    fn loose_canonical_ignores_number_versus_string() {
        assert_eq!(
            loose_canonical(&json!({"b": 8, "a": "x"})),
            loose_canonical(&json!({"a": "x", "b": "8"}))
        );
        assert_ne!(identity(&[Some("a|b")]), identity(&[Some("a"), Some("b")]));
    }
}
