//! Which spellings of the values the relay reads itself are taken.
//!
//! Guarantees: a value [`spelling_problem`] takes is read by librdkafka
//! (`strtol(v, &end, 0)` cut to an `int`, or `strtod`) whole and as the
//! same number as by the relay; a spelling both already read alike is not
//! refused.

/// The options whose values the relay reads for checks of its own (the
/// 413 bound, the queue against the largest message, the linger against
/// the stall rule), as integers and as decimals.
const READ_AS_INTEGERS: [&str; 2] = ["message.max.bytes", "queue.buffering.max.kbytes"];
const READ_AS_DECIMALS: [&str; 2] = ["linger.ms", "queue.buffering.max.ms"];

/// A value of an option the relay reads itself, in a spelling the relay
/// and librdkafka could read differently. librdkafka reads an integer with
/// `strtol(value, &end, 0)` and a decimal with `strtod`, ignoring trailing
/// text: `0500000` is octal, `0x800` hex, `2048KB` 2048 and `600000ms`
/// 600000, where the relay's reading failed and its check was skipped; and
/// an integer is cut to 32 bits. So only spellings both read as the same
/// number are taken, and no narrower: refusing one that both already read
/// alike (`+4096`, `.5`, `5e0`) would only make an upgrade refuse a working
/// config.
pub(super) fn spelling_problem(key: &str, property: &str, value: &str) -> Option<String> {
    let v = value.trim();
    if READ_AS_INTEGERS.contains(&property) {
        // Rust's integer parse takes one leading `+` as strtol does; a
        // leading 0 is where strtol's base 0 turns octal or hex.
        let digits = v.strip_prefix('+').unwrap_or(v);
        let decimal = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        if !decimal || (digits.len() > 1 && digits.starts_with('0')) {
            return Some(format!(
                "[kafka.options] `{key}` = {value:?}: write it in decimal digits, without a leading 0"
            ));
        }
        // librdkafka keeps `(int)strtol(…)`: 4295967296 becomes 1000000,
        // which its range check then takes.
        if v.parse::<i32>().is_err() {
            return Some(format!(
                "[kafka.options] `{key}` = {value:?} is over {}: librdkafka cuts it to 32 bits and would use another number than the relay",
                i32::MAX
            ));
        }
    }
    if READ_AS_DECIMALS.contains(&property) {
        // Over these characters Rust's grammar for an f64 (sign, digits
        // with at most one '.', at least one digit, an exponent with
        // digits) is strtod's decimal form read to the end, and both round
        // correctly: the same number. The rest (`nan`, `inf`, hex, trailing
        // text) is where they part, and an overflow is infinite to Rust and
        // HUGE_VAL to strtod.
        let plain = v
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
        if !plain || !v.parse::<f64>().is_ok_and(f64::is_finite) {
            return Some(format!(
                "[kafka.options] `{key}` = {value:?}: write it as a plain decimal number of milliseconds (5, 0.5, 1e3)"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value the spelling rule lets through is read by librdkafka's
    /// own functions (`strtol(v, &end, 0)` cut to an `int`, and `strtod`)
    /// whole, as the same number the relay reads: tried on every string of
    /// up to 5 characters over the characters that matter.
    #[test]
    fn every_spelling_taken_is_read_whole_and_alike_by_librdkafkas_functions() {
        use std::ffi::{CString, c_char, c_long};
        #[allow(unsafe_code)]
        unsafe extern "C" {
            fn strtol(s: *const c_char, end: *mut *mut c_char, base: i32) -> c_long;
            fn strtod(s: *const c_char, end: *mut *mut c_char) -> f64;
        }
        fn strings(alphabet: &str, longest: usize) -> Vec<String> {
            let mut all = vec![String::new()];
            let mut last = vec![String::new()];
            for _ in 0..longest {
                last = last
                    .iter()
                    .flat_map(|s| alphabet.chars().map(move |c| format!("{s}{c}")))
                    .collect();
                all.extend(last.iter().cloned());
            }
            all
        }
        let mut taken = 0;
        for v in strings("019+-x .eE", 5) {
            if spelling_problem("message.max.bytes", "message.max.bytes", &v).is_some() {
                continue;
            }
            taken += 1;
            let c = CString::new(v.trim()).unwrap();
            let mut end = std::ptr::null_mut();
            // SAFETY: a NUL-terminated string that outlives the call, and
            // `end` a valid place for strtol to write into.
            #[allow(unsafe_code)]
            let read = unsafe { strtol(c.as_ptr(), &mut end, 0) } as i32;
            assert_eq!(end as usize - c.as_ptr() as usize, v.trim().len(), "{v:?}");
            assert_eq!(Some(read), v.trim().parse::<i32>().ok(), "{v:?}");
        }
        assert!(taken > 100, "{taken}");
        taken = 0;
        for v in strings("019+-. eEx", 5) {
            if spelling_problem("linger.ms", "linger.ms", &v).is_some() {
                continue;
            }
            taken += 1;
            let c = CString::new(v.trim()).unwrap();
            let mut end = std::ptr::null_mut();
            // SAFETY: as above.
            #[allow(unsafe_code)]
            let read = unsafe { strtod(c.as_ptr(), &mut end) };
            assert_eq!(end as usize - c.as_ptr() as usize, v.trim().len(), "{v:?}");
            let ours = v.trim().parse::<f64>().unwrap();
            assert_eq!(read.to_bits(), ours.to_bits(), "{v:?}");
        }
        assert!(taken > 100, "{taken}");
    }

    /// No narrower than that: spellings both read alike are taken, a lone
    /// `0` included (a refused one only makes an upgrade refuse a working
    /// config; mutation testing, round 72: refusing `0` passed every test).
    #[test]
    fn the_spellings_both_read_alike_are_taken() {
        for v in ["0", "+0", "5", " 5 ", "+4096", "2147483647"] {
            let said = spelling_problem("message.max.bytes", "message.max.bytes", v);
            assert_eq!(said, None, "{v:?}");
        }
        for v in ["0", "0.5", ".5", "5e0", "+5", "1E3"] {
            assert_eq!(spelling_problem("linger.ms", "linger.ms", v), None, "{v:?}");
        }
    }
}
