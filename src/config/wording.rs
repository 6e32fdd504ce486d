//! How a TOML error (a syntax error, or a value of the wrong type) is
//! worded for the file's reader: placed in the file as written and said in
//! the file's terms (the names a key takes, a whole number's range, a list
//! of hosts) instead of serde's Rust types.
//!
//! Guarantees: a message built here names the key whose value it refuses
//! (`` `max_clients`: invalid type: … ``) where the error stands at a
//! `key = value` line's value, does not quote the value serde refused
//! in an "invalid type" or "invalid value" message, and shows a value from
//! `${ENV}` or `${file:…}` as the file writes it (the parser's token only
//! where it stands as a whole word, and every quoted string through
//! `env::Expanded::redact`).
use super::env;

/// A value of the wrong type, placed in the file as written, its message
/// led by the key of the value it refused (see [`key_at`]), without that
/// value (see [`without_literal`]) and with any value from the environment
/// replaced by its `${VAR}`.
pub(super) fn type_problem(
    expanded: &env::Expanded,
    text: &str,
    e: &toml::de::Error,
) -> (usize, String) {
    worded(expanded, text, e, true)
}

/// A syntax error, worded as [`type_problem`] but naming no key: its place
/// may be anywhere (the end of a line whose string is left open), and what
/// stands before it may be a string's text.
pub(super) fn syntax_problem(
    expanded: &env::Expanded,
    text: &str,
    e: &toml::de::Error,
) -> (usize, String) {
    worded(expanded, text, e, false)
}

fn worded(
    expanded: &env::Expanded,
    text: &str,
    e: &toml::de::Error,
    names_the_key: bool,
) -> (usize, String) {
    let offset = expanded.original_offset(e.span().map(|s| s.start).unwrap_or(0));
    let key = key_at(text, offset);
    let mut message = in_the_files_terms(&without_literal(e.message().trim()), key);
    // A value the parser refused that holds a `${VAR}`: quoted as written.
    let written = e.span().and_then(|span| {
        let token = expanded.text.get(span.clone())?;
        let written = text.get(expanded.original_span_if_expanded(span)?)?;
        Some((token, written))
    });
    if let Some((token, written)) = written {
        message = replace_whole(&message, token, written);
    }
    // A check's message quotes the string it read, as `{:?}` writes it or
    // serde in backquotes ("unknown variant `hunterx`"), which differs from
    // the token for a '…' string, an escape or a value among other text
    // (`retention = '${RET}h'` showed "hunterh"): `redact` shows each string
    // holding a value as written.
    let message = expanded.redact(&message, text);
    // The key as the range checks name theirs ("`retention` = …"): the place
    // alone left the reader to find which key of a line such as
    // `tls = { ca_file = 5 }` was meant. Added after the value is replaced
    // and redacted: the key is read from the file as written, so holds no
    // value from the environment, and a key spelled like the value must not
    // be rewritten as if it were one.
    match key.filter(|_| names_the_key) {
        Some(key) => (offset, format!("`{key}`: {message}")),
        None => (offset, message),
    }
}

/// The key a `key = value` line at `offset` names, if `offset` is where its
/// value begins (or an element of its array, on the same line).
pub(super) fn key_at(text: &str, offset: usize) -> Option<&str> {
    let line_start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    // The last `key =` before the value: also inside an inline table.
    let (before, value) = text.get(line_start..offset)?.rsplit_once('=')?;
    // Anything else between them and the `=` may be another key's (`a = 1
    // b` at `b`, `tokens = [{ token = "t" }, 5]` at `5`): no key rather than
    // the wrong one.
    if !value.chars().all(|c| c.is_whitespace() || c == '[') {
        return None;
    }
    // The last word before the `=`, taken only when it is a key's: a bare
    // key (dotted too) or one quoted whole, of key characters, outside any
    // string. An `=` inside a string (a base64 secret's padding, its closing
    // quote forgotten) would otherwise show the string's text as the key.
    let before = before.trim_end();
    let word_start = before
        .rfind(|c: char| c.is_ascii_whitespace() || c == '{' || c == ',')
        .map_or(0, |i| i + 1);
    let word = before.get(word_start..)?;
    let key = ['"', '\'']
        .into_iter()
        .find_map(|q| word.strip_prefix(q)?.strip_suffix(q))
        .unwrap_or(word);
    let of_key_characters = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    let outside_strings = {
        let earlier = before.get(..word_start)?;
        earlier.matches('"').count() % 2 == 0 && earlier.matches('\'').count() % 2 == 0
    };
    (of_key_characters && outside_strings).then_some(key)
}

/// The words a key of one of a few names takes, for the message that
/// refuses a value of another kind there.
fn words_of(key: &str) -> Option<String> {
    let words: Vec<&str> = match key {
        "engine_io" => vec!["auto", "3", "4"],
        "sign" => vec!["key", "object"],
        "vendor" => crate::event::Vendor::ALL
            .iter()
            .map(|v| v.as_str())
            .collect(),
        "verification_reply" => vec!["plain", "json"],
        _ => return None,
    };
    let quoted: Vec<String> = words.iter().map(|w| format!("{w:?}")).collect();
    Some(match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => return None,
    })
}

/// The parser's words for a value of the wrong kind, said in the file's
/// terms: toml's "wanted string or table" for a name written without quotes
/// (`engine_io = 3`), serde's "expected usize" and "untagged enum HostList".
fn in_the_files_terms(message: &str, key: Option<&str>) -> String {
    if message == "wanted string or table" {
        return match key.and_then(words_of) {
            Some(words) => format!("expected one of {words}, in quotes"),
            None => "expected one of this key's names, in quotes".to_owned(),
        };
    }
    if message.contains("untagged enum HostList") {
        return r#"expected a list of hosts (["gw.example", "10.0.0.5"]) or one comma-separated string"#
            .to_owned();
    }
    for number in ["usize", "u8", "u16", "u32", "u64", "i64"] {
        if let Some(kind) = message
            .strip_prefix("invalid type: ")
            .and_then(|rest| rest.strip_suffix(&format!(", expected {number}")))
        {
            return format!("invalid type: {kind}, expected a whole number (without quotes)");
        }
        // A number the type cannot hold (`-1`, `300` for a u8): serde names
        // the Rust type, which says nothing to the file's reader.
        if let Some(kind) = message
            .strip_prefix("invalid value: ")
            .and_then(|rest| rest.strip_suffix(&format!(", expected {number}")))
        {
            let range = match number {
                "u8" => "from 0 to 255",
                "u16" => "from 0 to 65535",
                "u32" => "from 0 to 4294967295",
                "i64" => "that fits in 64 bits",
                _ => "of 0 or more",
            };
            return format!("invalid value: {kind}, expected a whole number {range}");
        }
    }
    message.to_owned()
}

/// `message` with each occurrence of `token` that stands on its own (no
/// letter, digit or `_` on either side) replaced by `written`: a short value
/// (`e`, `5`) must not rewrite the parser's words ("valu${T}s") or its
/// examples ("${MB}12KiB"), which would also give the value away.
pub(super) fn replace_whole(message: &str, token: &str, written: &str) -> String {
    if token.is_empty() {
        return message.to_owned();
    }
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut out = String::with_capacity(message.len());
    let mut copied = 0;
    for (at, _) in message.match_indices(token) {
        if at < copied {
            continue;
        }
        let before = message[..at].chars().next_back();
        let after = message[at + token.len()..].chars().next();
        if is_word(before) || is_word(after) {
            continue;
        }
        out.push_str(&message[copied..at]);
        out.push_str(written);
        copied = at + token.len();
    }
    out.push_str(&message[copied..]);
    out
}

/// serde's "invalid type: integer `12345678`, expected a string" with the
/// literal taken out ("invalid type: integer, expected a string"): the value
/// may be a secret from `${ENV}` in a secret's field (`password = ${PW}`),
/// and the message goes to `check` output and to the logs on a reload. The
/// place in the file already shows which value it is.
pub(super) fn without_literal(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        let Some(rest) = message.strip_prefix(prefix) else {
            continue;
        };
        // The last one: a string literal may itself contain ", expected ".
        let Some(at) = rest.rfind(", expected ") else {
            continue;
        };
        let (unexpected, expected) = rest.split_at(at);
        // The kind ("integer", "floating point", "string") ends where its
        // literal, backtick- or double-quoted, begins.
        let kind = unexpected
            .match_indices(' ')
            .map(|(i, _)| i)
            .find(|&i| unexpected[i + 1..].starts_with(['`', '"']))
            .map_or(unexpected, |i| &unexpected[..i]);
        return format!("{prefix}{kind}{expected}");
    }
    message.to_owned()
}
