//! `${ENV_VAR}` expansion in config text.
//!
//! Guarantees: every `${NAME}` outside comments is replaced, escaped for the
//! TOML context it stands in (a basic string gets `\"`, `\\` and `\n` escapes,
//! so a secret with quotes cannot break the file), and every unset variable is
//! reported with its byte offset. `$${` writes a literal `${`. Every offset
//! in the expanded text maps back to the original ([`Expanded::original_offset`]).

use std::ops::Range;

/// The result of expanding one text.
pub struct Expanded {
    pub text: String,
    /// (byte offset in the original text, message) for each problem.
    pub problems: Vec<(usize, String)>,
    /// The unset variables inside a string, as written (`${NAME}`), one
    /// per problem: they stay in the text as a placeholder the later checks
    /// can read past, at the same place and of the same length. The other
    /// problems cannot be read past: the text after a `${` left open may be
    /// a secret a later message would quote, and a bare `${NAME}` left out
    /// or in place is no TOML value.
    pub unset: Vec<String>,
    /// Where each replacement stands, in the original and the expanded text,
    /// in order.
    substitutions: Vec<Substitution>,
}

struct Substitution {
    original: Range<usize>,
    expanded: Range<usize>,
    /// The environment's value (`None` for a `$${` escape).
    value: Option<String>,
}

impl Expanded {
    /// The byte offset in the original text of `offset` in the expanded text.
    /// An offset inside a replaced value maps to its `${`, so an error's place
    /// depends neither on the value's length nor on newlines in it (and does
    /// not reveal either).
    pub fn original_offset(&self, offset: usize) -> usize {
        let (mut original_end, mut expanded_end) = (0, 0);
        for s in &self.substitutions {
            if offset < s.expanded.start {
                break;
            }
            // An empty value: what stands right where it was is reported at it.
            if offset < s.expanded.end || offset == s.expanded.start {
                return s.original.start;
            }
            original_end = s.original.end;
            expanded_end = s.expanded.end;
        }
        offset - expanded_end + original_end
    }

    /// Where `span` of the expanded text stands in the original, when a
    /// replacement lies in it (`None` when the span is the file's own text),
    /// so a message can show the `${NAME}` the user wrote instead of a value
    /// from the environment.
    pub fn original_span_if_expanded(&self, span: Range<usize>) -> Option<Range<usize>> {
        let touches = |s: &&Substitution| {
            (span.start <= s.expanded.start && s.expanded.start < span.end)
                || (s.expanded.start < span.start && span.start < s.expanded.end)
        };
        let first = self.substitutions.iter().find(touches)?;
        let last = self.substitutions.iter().rev().find(touches)?;
        let start = self.original_offset(span.start).min(first.original.start);
        let end = if span.end <= last.expanded.end {
            last.original.end
        } else {
            self.original_offset(span.end)
        };
        Some(start..end.max(start))
    }

    /// `message` with every value from the environment that it quotes (as
    /// Rust's `{:?}` or TOML writes a string, or in serde's backquotes)
    /// replaced by the `${NAME}` that
    /// `original` has for it: the last guard that no check's message, nor a
    /// parser's, shows one. Only quoted: a value that is also an ordinary
    /// word ("voip", "main") must not rewrite the rest of the message.
    pub fn redact(&self, message: &str, original: &str) -> String {
        let mut values: Vec<(&str, &str)> = self
            .substitutions
            .iter()
            .filter_map(|s| {
                let value = s.value.as_deref().filter(|v| !v.is_empty())?;
                Some((value, original.get(s.original.clone())?))
            })
            .collect();
        // Longest first: a value inside a longer one must not split it.
        values.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
        let mut message = message.to_owned();
        for (value, reference) in values {
            let quoted = format!("\"{reference}\"");
            // serde's own quoting too: "unknown variant `…`, expected one of …".
            for (form, shown) in [
                (format!("{value:?}"), quoted.clone()),
                (format!("\"{value}\""), quoted),
                (format!("`{value}`"), format!("`{reference}`")),
            ] {
                if message.contains(&form) {
                    message = message.replace(&form, &shown);
                }
            }
        }
        message
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Bare,
    Comment,
    Basic,
    MultiBasic,
    Literal,
    MultiLiteral,
}

/// Expands `${NAME}` using `lookup`.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Expanded {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    let mut unset = Vec::new();
    let mut substitutions = Vec::new();
    let mut ctx = Context::Bare;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        let c = bytes[i];
        // Context changes.
        match ctx {
            Context::Bare => {
                if c == b'#' {
                    ctx = Context::Comment;
                } else if rest.starts_with("\"\"\"") {
                    ctx = Context::MultiBasic;
                    out.push_str("\"\"\"");
                    i += 3;
                    continue;
                } else if rest.starts_with("'''") {
                    ctx = Context::MultiLiteral;
                    out.push_str("'''");
                    i += 3;
                    continue;
                } else if c == b'"' {
                    ctx = Context::Basic;
                    out.push('"');
                    i += 1;
                    continue;
                } else if c == b'\'' {
                    ctx = Context::Literal;
                    out.push('\'');
                    i += 1;
                    continue;
                }
            }
            Context::Comment => {
                if c == b'\n' {
                    ctx = Context::Bare;
                }
            }
            Context::Basic | Context::MultiBasic => {
                if c == b'\\' {
                    // Keep an escape and the character it escapes together.
                    let len = rest.chars().nth(1).map(|ch| 1 + ch.len_utf8()).unwrap_or(1);
                    out.push_str(&rest[..len]);
                    i += len;
                    continue;
                }
                if ctx == Context::MultiBasic && rest.starts_with("\"\"\"") {
                    ctx = Context::Bare;
                    out.push_str("\"\"\"");
                    i += 3;
                    continue;
                }
                if ctx == Context::Basic && (c == b'"' || c == b'\n') {
                    ctx = Context::Bare;
                }
            }
            Context::Literal => {
                if c == b'\'' || c == b'\n' {
                    ctx = Context::Bare;
                    out.push(c as char);
                    i += 1;
                    continue;
                }
            }
            Context::MultiLiteral => {
                if rest.starts_with("'''") {
                    ctx = Context::Bare;
                    out.push_str("'''");
                    i += 3;
                    continue;
                }
            }
        }
        if ctx != Context::Comment && rest.starts_with("$${") {
            substitutions.push(Substitution {
                original: i..i + 3,
                expanded: out.len()..out.len() + 2,
                value: None,
            });
            out.push_str("${");
            i += 3;
            continue;
        }
        if ctx != Context::Comment && rest.starts_with("${") {
            // Only name characters are read: a message may quote them, and
            // what follows a `${` left open can be a secret on a later line.
            let name_len = rest[2..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len() - 2);
            let name = &rest[2..2 + name_len];
            if !rest[2 + name_len..].starts_with('}') {
                problems.push((
                    i,
                    format!(
                        "`${{{}` is not closed by `}}` after a variable name (letters, digits, '_')",
                        shown_prefix(name)
                    ),
                ));
                i += 2 + name_len;
                continue;
            }
            if !is_env_name(name) {
                problems.push((
                    i,
                    format!("`${{{name}}}` is not a valid environment variable name"),
                ));
            } else {
                match lookup(name) {
                    Some(value) => {
                        let start = out.len();
                        out.push_str(&escape_for(ctx, &value, i, &mut problems));
                        substitutions.push(Substitution {
                            original: i..i + 2 + name_len + 1,
                            expanded: start..out.len(),
                            value: Some(value),
                        });
                    }
                    None => {
                        let written = &rest[..2 + name_len + 1];
                        if ctx != Context::Bare {
                            out.push_str(written);
                            unset.push(written.to_owned());
                        }
                        problems.push((i, format!("environment variable `{name}` is not set")));
                    }
                }
            }
            i += 2 + name_len + 1;
            continue;
        }
        let ch = rest.chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8();
    }
    Expanded {
        text: out,
        problems,
        unset,
        substitutions,
    }
}

/// At most the first 32 characters of a name: a long unclosed run is more
/// likely a value than a variable name.
fn shown_prefix(name: &str) -> String {
    match name.char_indices().nth(32) {
        Some((at, _)) => format!("{}…", &name[..at]),
        None => name.to_owned(),
    }
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

fn escape_for(ctx: Context, value: &str, at: usize, problems: &mut Vec<(usize, String)>) -> String {
    match ctx {
        Context::Basic | Context::MultiBasic => {
            let mut s = String::with_capacity(value.len());
            for ch in value.chars() {
                match ch {
                    '"' => s.push_str("\\\""),
                    '\\' => s.push_str("\\\\"),
                    '\n' => s.push_str("\\n"),
                    '\r' => s.push_str("\\r"),
                    '\t' => s.push_str("\\t"),
                    c if c.is_control() => s.push_str(&format!("\\u{:04X}", c as u32)),
                    c => s.push(c),
                }
            }
            s
        }
        Context::Literal | Context::MultiLiteral => {
            if value.contains('\'') || value.contains('\n') {
                problems.push((
                    at,
                    "an environment variable with a quote or newline cannot go in a '…' literal string; use \"…\"".to_owned(),
                ));
            }
            value.to_owned()
        }
        Context::Bare | Context::Comment => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("s3cr\"et\\x".to_owned()),
            "PLAIN" => Some("abc".to_owned()),
            "NUM" => Some("3".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn expands_in_basic_strings_with_escapes() {
        let e = expand("key = \"${KEY}\"\n", &env);
        assert!(e.problems.is_empty());
        let v: toml::Table = toml::from_str(&e.text).unwrap();
        assert_eq!(v["key"].as_str(), Some("s3cr\"et\\x"));
    }

    #[test]
    fn a_span_over_a_replacement_maps_to_the_reference_as_written() {
        let lookup = |n: &str| match n {
            "EMPTY" => Some(String::new()),
            _ => env(n),
        };
        let text = "a = \"${PLAIN}\"\nb = \"x${EMPTY}y\"\nc = \"${PLAIN}${NUM}\"\nd = \"own\"\n";
        let e = expand(text, &lookup);
        let span_of = |value: &str| {
            let start = e.text.find(value).unwrap();
            start..start + value.len()
        };
        let written = |value: &str| {
            e.original_span_if_expanded(span_of(value))
                .map(|r| &text[r])
        };
        assert_eq!(written("\"abc\""), Some("\"${PLAIN}\""));
        assert_eq!(written("\"xy\""), Some("\"x${EMPTY}y\""));
        assert_eq!(written("\"abc3\""), Some("\"${PLAIN}${NUM}\""));
        assert_eq!(written("\"own\""), None);
    }

    #[test]
    fn reports_every_unset_variable_with_offset() {
        let text = "a = \"${NOPE}\"\nb = \"x${ALSO_NOPE}\"\n";
        let e = expand(text, &env);
        assert_eq!(e.problems.len(), 2);
        assert_eq!(e.problems[0].0, 5);
        assert!(e.problems[0].1.contains("`NOPE`"));
        assert_eq!(e.problems[1].0, text.find("${ALSO").unwrap());
    }

    #[test]
    fn ignores_comments_and_honours_dollar_escape() {
        let e = expand("# ${NOPE}\na = \"$${PLAIN}\" # ${NOPE}\n", &env);
        assert!(e.problems.is_empty(), "{:?}", e.problems);
        assert!(e.text.contains("a = \"${PLAIN}\""));
    }

    #[test]
    fn expands_bare_values_and_literals() {
        let e = expand("n = ${NUM}\nl = '${PLAIN}'\n", &env);
        assert!(e.problems.is_empty());
        let v: toml::Table = toml::from_str(&e.text).unwrap();
        assert_eq!(v["n"].as_integer(), Some(3));
        assert_eq!(v["l"].as_str(), Some("abc"));
    }

    #[test]
    fn unterminated_and_invalid_names_are_problems() {
        assert_eq!(expand("a = \"${OPEN\"", &env).problems.len(), 1);
        assert_eq!(expand("a = \"${1X}\"", &env).problems.len(), 1);
    }

    #[test]
    fn an_unclosed_reference_quotes_only_its_name_never_later_text() {
        let text = "account = \"x${oops\"\npassword = \"LITERAL-PW\"\nh = { a = \"b\" }\nc = \"${NOPE}\"\n";
        let e = expand(text, &env);
        let messages: Vec<&str> = e.problems.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(e.problems.len(), 2, "{messages:?}");
        assert_eq!(e.problems[0].0, text.find("${oops").unwrap());
        assert!(messages[0].contains("`${oops`"), "{messages:?}");
        assert!(
            messages.iter().all(|m| !m.contains("LITERAL-PW")),
            "{messages:?}"
        );
        // The reference after it is still read as one.
        assert!(messages[1].contains("`NOPE`"), "{messages:?}");
        let long = format!("k = \"${{{}\"", "A".repeat(100));
        let e = expand(&long, &env);
        assert!(
            !e.problems[0].1.contains(&"A".repeat(33)),
            "{:?}",
            e.problems
        );
    }

    #[test]
    fn an_offset_right_after_a_value_maps_right_after_its_reference() {
        let text = "x = \"a${PLAIN}b\"\n";
        let e = expand(text, &env);
        let reference = text.find("${").unwrap();
        let value = e.text.find("abc").unwrap();
        assert_eq!(e.original_offset(value), reference);
        assert_eq!(e.original_offset(value + 1), reference);
        assert_eq!(e.original_offset(value + 3), text.find("b\"").unwrap());
    }

    #[test]
    fn a_span_touches_a_replacement_only_when_they_overlap() {
        let text = "x = \"a${PLAIN}b\"\n";
        let e = expand(text, &env);
        let value = e.text.find("abc").unwrap();
        // The `a` before and the `b` after are the file's own text.
        assert_eq!(e.original_span_if_expanded(value - 1..value), None);
        assert_eq!(e.original_span_if_expanded(value + 3..value + 4), None);
        // A span starting inside the value shows the reference as written.
        let from_inside = e.original_span_if_expanded(value + 1..value + 4);
        assert_eq!(from_inside.map(|r| &text[r]), Some("${PLAIN}b"));
    }

    #[test]
    fn multi_line_strings_and_literals_keep_their_context() {
        // A `#` inside a multi-line string is not a comment; a `'x'` ends
        // before the comment that follows it; each value is escaped for the
        // string it stands in.
        let text = "a = \"\"\"\n# ${KEY}\n\"\"\"\nb = '''\n${PLAIN}'''\nc = 'x' # ${NOPE}\nd = \"${KEY}\"\n";
        let e = expand(text, &env);
        assert!(e.problems.is_empty(), "{:?}", e.problems);
        let v: toml::Table = toml::from_str(&e.text).unwrap();
        assert_eq!(v["a"].as_str(), Some("# s3cr\"et\\x\n"));
        assert_eq!(v["b"].as_str(), Some("abc"));
        assert_eq!(v["c"].as_str(), Some("x"));
        assert_eq!(v["d"].as_str(), Some("s3cr\"et\\x"));
    }

    #[test]
    fn an_unclosed_reference_is_skipped_by_its_name_only() {
        // At the end of the text: the whole name is quoted.
        let e = expand("a = ${OPEN", &env);
        assert_eq!(e.problems.len(), 1);
        assert!(e.problems[0].1.contains("`${OPEN`"), "{:?}", e.problems);
        // The `"` after the name still ends the string, so the comment after
        // it is one.
        let e = expand("a = \"${ABC\" # ${NOPE}\n", &env);
        assert_eq!(e.problems.len(), 1, "{:?}", e.problems);
    }

    #[test]
    fn an_empty_name_or_one_starting_with_a_digit_is_not_a_variable_name() {
        for reference in ["${}", "${1X}"] {
            let e = expand(&format!("a = \"{reference}\"\n"), &env);
            let messages: Vec<&str> = e.problems.iter().map(|(_, m)| m.as_str()).collect();
            assert_eq!(
                messages,
                [format!(
                    "`{reference}` is not a valid environment variable name"
                )],
            );
        }
    }

    #[test]
    fn control_characters_are_escaped_and_literals_refuse_quotes_and_newlines() {
        let lookup = |n: &str| match n {
            "CTRL" => Some("a\u{1}b\rc\td".to_owned()),
            "QUOTE" => Some("it's".to_owned()),
            "NL" => Some("a\nb".to_owned()),
            _ => None,
        };
        let e = expand("a = \"${CTRL}\"\n", &lookup);
        let v: toml::Table = toml::from_str(&e.text).unwrap();
        assert_eq!(v["a"].as_str(), Some("a\u{1}b\rc\td"));
        for name in ["QUOTE", "NL"] {
            let e = expand(&format!("a = '${{{name}}}'\n"), &lookup);
            assert_eq!(e.problems.len(), 1, "{name}: {:?}", e.problems);
            assert!(e.problems[0].1.contains("cannot go in a '…' literal"));
        }
    }

    #[test]
    fn escaped_quote_does_not_end_a_string() {
        let e = expand("a = \"x\\\" # ${PLAIN}\"\n", &env);
        assert!(e.text.contains("abc"));
    }
}
