//! Vendor bytes to text: the charset a body declares, a byte order mark,
//! percent-decoded form fields, and JSON's lone surrogate escapes; and how
//! much of a payload is read into values at all.
//!
//! Guarantees: text is never altered silently. A body in the charset its
//! `Content-Type` names (`; charset=windows-1251`, any WHATWG label) is read
//! in that charset; without one it must be UTF-8, and bytes that are not are
//! refused with a reason that says where and what to do, never replaced (a
//! replacement character would also make two different values one, and so
//! one event a duplicate of another). A leading UTF-8 byte order mark is
//! skipped (RFC 8259 allows a reader to); a UTF-16 one is named. The one
//! change made to text that is read is to a JSON `\uD800`-style escape of a
//! lone surrogate (what JavaScript's `JSON.stringify` writes for a string cut
//! through an emoji): it cannot be UTF-8, so rather than lose the event it is
//! read as U+FFFD, in `data.raw` too. JSON of more than [`MAX_VALUES`] values
//! or nested deeper than [`MAX_NESTING`] levels, and a form or query of more
//! than [`MAX_VALUES`] fields, is refused before any of it is read into
//! values: what a payload takes in memory is bounded by its bytes and that
//! number, not by its bytes alone.

use std::borrow::Cow;

use encoding_rs::Encoding;
use serde_json::Value;

use super::ParseError;

pub(super) const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The charset `Content-Type` names, when it names one other than UTF-8.
pub fn declared_charset(
    content_type: Option<&[u8]>,
) -> Result<Option<&'static Encoding>, ParseError> {
    let Some(content_type) = content_type else {
        return Ok(None);
    };
    let content_type = String::from_utf8_lossy(content_type);
    let Some(label) = charset_label(&content_type) else {
        return Ok(None);
    };
    match Encoding::for_label(label.as_bytes()) {
        Some(encoding) if encoding == encoding_rs::UTF_8 => Ok(None),
        // WHATWG's "replacement" stands for encodings it refuses to read
        // (ISO-2022-KR, HZ, …): unknown here too, not "not valid replacement".
        Some(encoding) if encoding != encoding_rs::REPLACEMENT => Ok(Some(encoding)),
        _ => Err(ParseError(format!(
            "the charset {:?} in Content-Type is not one the relay knows (it reads the WHATWG encodings: utf-8, windows-1251, windows-1258, iso-8859-1, …)",
            crate::logging::excerpt(label)
        ))),
    }
}

/// The `charset` parameter of a `Content-Type`, as the sender wrote it.
fn charset_label(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// The text of a body: in `charset` when one was declared, else UTF-8 with
/// a leading byte order mark skipped.
pub fn body_text<'a>(
    body: &'a [u8],
    charset: Option<&'static Encoding>,
) -> Result<Cow<'a, str>, ParseError> {
    if let Some(encoding) = charset {
        let body = match Encoding::for_bom(body) {
            Some((bom_of, bom_len)) if bom_of == encoding => &body[bom_len..],
            _ => body,
        };
        return encoding
            .decode_without_bom_handling_and_without_replacement(body)
            .ok_or_else(|| {
                ParseError(format!(
                    "the body is not valid {} (the charset its Content-Type names)",
                    encoding.name()
                ))
            });
    }
    if body.starts_with(b"\xFF\xFE") || body.starts_with(b"\xFE\xFF") {
        return Err(ParseError(
            "the body is UTF-16 (it starts with a UTF-16 byte order mark): send UTF-8, or name the charset in Content-Type".into(),
        ));
    }
    let body = body.strip_prefix(UTF8_BOM).unwrap_or(body);
    std::str::from_utf8(body).map(Cow::Borrowed).map_err(|e| {
        ParseError(format!(
            "the body is not UTF-8 (byte {} is not): a sender that writes another charset must name it in Content-Type, e.g. `; charset=windows-1258`",
            e.valid_up_to()
        ))
    })
}

/// Where `name=value` pairs come from: what an error calls one, and what a
/// sender whose bytes are not UTF-8 can do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pairs {
    /// A form body, whose `Content-Type` can name a charset.
    FormFields,
    /// A URL's query, which has no charset of its own to name.
    QueryParameters,
}

impl Pairs {
    fn one(self) -> &'static str {
        match self {
            Pairs::FormFields => "form field",
            Pairs::QueryParameters => "query parameter",
        }
    }

    fn remedy(self) -> &'static str {
        match self {
            Pairs::FormFields => {
                "a sender that writes another charset must name it in Content-Type, e.g. `; charset=windows-1258`"
            }
            Pairs::QueryParameters => {
                "a query has no charset to name, so a sender must percent-encode the text's UTF-8 bytes (`Đ` is `%C4%90`)"
            }
        }
    }
}

/// Form fields (`a=1&b=%C3%A1`, `+` for a space) or query parameters as
/// text, percent-decoded and then read in `charset` (UTF-8 when `None`).
pub fn form_pairs(
    encoded: &[u8],
    charset: Option<&'static Encoding>,
    pairs: Pairs,
) -> Result<Vec<(String, String)>, ParseError> {
    let what = pairs.one();
    // Counted before any is decoded: each field is two strings and an
    // entry in the payload's object, whatever its bytes (`a&a&…`).
    let count = encoded
        .split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .count();
    if count > MAX_VALUES {
        return Err(ParseError(format!(
            "more than {MAX_VALUES} {what}s, the most the relay reads in one payload"
        )));
    }
    let text = |bytes: &[u8], name: Option<&str>| -> Result<String, ParseError> {
        let plus_as_space: Vec<u8> = bytes
            .iter()
            .map(|b| if *b == b'+' { b' ' } else { *b })
            .collect();
        let decoded: Vec<u8> = percent_encoding::percent_decode(&plus_as_space).collect();
        let encoding = charset.unwrap_or(encoding_rs::UTF_8);
        match encoding.decode_without_bom_handling_and_without_replacement(&decoded) {
            Some(text) => Ok(text.into_owned()),
            None => {
                let whose = match name {
                    // The sender's text, whole in the 400 and the warning
                    // (a name of up to `max_body`): cut as other such text is.
                    Some(name) => {
                        format!("the value of {what} `{}`", crate::logging::excerpt(name))
                    }
                    None => format!("a {what}'s name"),
                };
                Err(ParseError(match charset {
                    Some(encoding) => format!(
                        "{whose} is not valid {} (the charset the Content-Type names) once percent-decoded",
                        encoding.name()
                    ),
                    None => format!(
                        "{whose} is not UTF-8 once percent-decoded: {}",
                        pairs.remedy()
                    ),
                }))
            }
        }
    };
    encoded
        .split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &b""[..]),
            };
            let name = text(name, None)?;
            let value = text(value, Some(&name))?;
            Ok((name, value))
        })
        .collect()
}

/// A label a body's bytes belie: see [`labelled_other_than_its_utf8`].
#[derive(Debug, PartialEq, Eq)]
pub struct Mislabelled {
    /// The `charset` as the sender wrote it (at most 40 characters).
    pub label: String,
    /// The charset the body was read in (WHATWG's name for the label:
    /// `iso-8859-1` and `us-ascii` are read as `windows-1252`).
    pub read_as: &'static str,
}

/// The charset a body is labelled with when its bytes are UTF-8 instead: it
/// names one other than UTF-8, yet the body (percent-decoded when it is not
/// JSON) has bytes past ASCII and is valid UTF-8. Text in another charset is
/// almost never valid UTF-8 too (its high bytes would have to fall into
/// UTF-8's multi-byte patterns throughout), so such a body is most likely a
/// sender mislabelling UTF-8, and the text read in the label's charset is
/// garbled. The body is still read as labelled: this only says so.
pub fn labelled_other_than_its_utf8(
    body: &[u8],
    content_type: Option<&[u8]>,
) -> Option<Mislabelled> {
    let charset = declared_charset(content_type).ok()??;
    let looks_like_utf8 = |bytes: &[u8]| !bytes.is_ascii() && std::str::from_utf8(bytes).is_ok();
    let belied = if !body.is_ascii() {
        looks_like_utf8(body)
    } else if body.trim_ascii_start().first() == Some(&b'{') {
        // An ASCII JSON body has nothing a charset could garble.
        false
    } else {
        // A form's bytes past ASCII are percent-encoded.
        let decoded: Vec<u8> = percent_encoding::percent_decode(body).collect();
        looks_like_utf8(&decoded)
    };
    if !belied {
        return None;
    }
    let content_type = String::from_utf8_lossy(content_type?);
    let label = charset_label(&content_type)?;
    Some(Mislabelled {
        label: label.chars().take(40).collect(),
        read_as: charset.name(),
    })
}

/// How deep a payload's arrays and objects may nest. serde_json reads up
/// to 127 levels, and a CloudEvent puts the payload two levels down
/// (`data.raw`): a payload nested 126 deep would be journaled and sent as
/// a CloudEvent that serde_json readers, `callrelay tail` among them,
/// cannot read. No vendor nests more than a few levels.
pub const MAX_NESTING: usize = 100;

/// The most values a payload may hold (objects, arrays and scalars alike;
/// an object's keys are part of its members, not values of their own), and
/// the most fields a form or parameters a query may. A value read into a
/// `serde_json::Value` takes about 80 bytes and a number a string of its
/// own besides (the crate keeps key order and numbers' text), whatever its
/// bytes: a 1 MiB body of `[0,0,…]` took about 46 MB, more while the array
/// grew, and the body budget counts bytes. The vendors' events hold at most
/// a few hundred values (CareSoft's largest documented one, 59).
pub const MAX_VALUES: usize = 10_000;

/// Why [`parse_json`] did not read a text.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The text is not JSON: serde_json's reason.
    #[error(transparent)]
    Syntax(#[from] serde_json::Error),
    #[error("nested deeper than {MAX_NESTING} levels")]
    TooDeep,
    #[error("more than {MAX_VALUES} values, the most the relay reads in one payload")]
    TooManyValues,
}

/// Parses JSON text; one with lone surrogate escapes is read with U+FFFD in
/// their place, and the text returned is the one that was read (for
/// `data.raw`). Text nested deeper than [`MAX_NESTING`] or holding more than
/// [`MAX_VALUES`] values is refused before any of it is read into values.
pub fn parse_json(text: &str) -> Result<(Value, Cow<'_, str>), JsonError> {
    // The repair below changes no structure: one check covers both texts.
    check_shape(text)?;
    match serde_json::from_str(text) {
        Ok(value) => Ok((value, Cow::Borrowed(text))),
        Err(e) => match without_lone_surrogates(text) {
            Some(repaired) => {
                let value = serde_json::from_str(&repaired)?;
                Ok((value, Cow::Owned(repaired)))
            }
            None => Err(e.into()),
        },
    }
}

/// Refuses text nested deeper than [`MAX_NESTING`] or holding more than
/// [`MAX_VALUES`] values, counted in one pass over its bytes without
/// reading it. The count is exact for JSON: one value to start with, one
/// more after each comma (each separates two elements or members), one for
/// each array or object, less one for each that closes empty (it held none
/// of the one its opening counted for its inside). For text that is not
/// JSON the count still covers every value serde_json reads before it
/// fails, since both take strings to end at the same unescaped quote.
fn check_shape(text: &str) -> Result<(), JsonError> {
    let (mut depth, mut values) = (0usize, 1usize);
    let (mut in_string, mut escaped, mut just_opened) = (false, false, false);
    for &b in text.as_bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => continue,
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(JsonError::TooDeep);
                }
                values += 1;
                just_opened = true;
                continue;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                if just_opened {
                    values -= 1;
                }
            }
            b',' => values += 1,
            _ => {}
        }
        just_opened = false;
        if values > MAX_VALUES {
            return Err(JsonError::TooManyValues);
        }
    }
    // The last container opened may be left open (text cut short).
    if values > MAX_VALUES {
        return Err(JsonError::TooManyValues);
    }
    Ok(())
}

/// `text` with each `\uXXXX` escape of a surrogate that is not half of a
/// pair written as `\ufffd`; `None` when it has none. Escapes are only
/// looked for inside strings, after an unescaped backslash.
fn without_lone_surrogates(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let surrogate_at = |at: usize| -> Option<u16> {
        let hex = bytes.get(at..at + 6)?;
        if hex[0] != b'\\' || hex[1] != b'u' {
            return None;
        }
        let code = u16::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()?;
        (0xD800..=0xDFFF).contains(&code).then_some(code)
    };
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut in_string = false;
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => in_string = !in_string,
            b'\\' if in_string => {
                let lone = match surrogate_at(at) {
                    Some(0xD800..=0xDBFF) => {
                        if matches!(surrogate_at(at + 6), Some(0xDC00..=0xDFFF)) {
                            // A pair: both escapes stay as they are.
                            at += 12;
                            continue;
                        }
                        true
                    }
                    Some(_) => true,
                    None => false,
                };
                if lone {
                    let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
                    out.push_str(&text[copied..at]);
                    out.push_str("\\ufffd");
                    at += 6;
                    copied = at;
                    continue;
                }
                // Any other escape is two bytes (`\uXXXX` reads on as text).
                at += 2;
                continue;
            }
            _ => {}
        }
        at += 1;
    }
    let mut out = out?;
    out.push_str(&text[copied..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn utf8_labelled_as_another_charset_is_named() {
        let form = Some(&b"application/x-www-form-urlencoded; charset=windows-1252"[..]);
        let json = Some(&b"application/json; charset=iso-8859-1"[..]);
        // UTF-8 "Nguyễn" raw, and percent-encoded in a form.
        let read_as = |body: &[u8], content_type| {
            labelled_other_than_its_utf8(body, content_type).map(|m| (m.label, m.read_as))
        };
        assert_eq!(
            read_as("{\"name\":\"Nguyễn\"}".as_bytes(), json),
            Some(("iso-8859-1".to_owned(), "windows-1252"))
        );
        assert_eq!(
            read_as(b"name=Nguy%E1%BB%85n", form),
            Some(("windows-1252".to_owned(), "windows-1252"))
        );
        // Text that is the labelled charset: "café" in windows-1252, raw and encoded.
        assert_eq!(
            labelled_other_than_its_utf8(b"{\"n\":\"caf\xE9\"}", json),
            None
        );
        assert_eq!(labelled_other_than_its_utf8(b"name=caf%E9", form), None);
        // Cyrillic in windows-1251 ("Привет").
        let cp1251 = Some(&b"text/plain; charset=windows-1251"[..]);
        assert_eq!(
            labelled_other_than_its_utf8(b"{\"n\":\"\xCF\xF0\xE8\xE2\xE5\xF2\"}", cp1251),
            None
        );
        // Nothing past ASCII, no label or a UTF-8 label, or a JSON body whose
        // `%` is text: nothing to say.
        assert_eq!(labelled_other_than_its_utf8(b"name=Nguyen", form), None);
        assert_eq!(
            labelled_other_than_its_utf8(b"{\"url\":\"/?q=%C3%A9\"}", json),
            None
        );
        let utf8 = Some(&b"application/json; charset=utf-8"[..]);
        assert_eq!(
            labelled_other_than_its_utf8("{\"n\":\"ễ\"}".as_bytes(), utf8),
            None
        );
        assert_eq!(
            labelled_other_than_its_utf8("{\"n\":\"ễ\"}".as_bytes(), None),
            None
        );
        assert_eq!(
            labelled_other_than_its_utf8(
                "{\"n\":\"ễ\"}".as_bytes(),
                Some(&b"application/json; charset=klingon"[..])
            ),
            None
        );
    }

    fn charset(content_type: &str) -> Option<&'static Encoding> {
        declared_charset(Some(content_type.as_bytes())).unwrap()
    }

    #[test]
    fn the_declared_charset_is_read_from_content_type() {
        assert_eq!(declared_charset(None).unwrap(), None);
        assert_eq!(charset("application/json"), None);
        assert_eq!(charset("application/json; charset=utf-8"), None);
        assert_eq!(charset("application/json;charset=\"UTF8\""), None);
        assert_eq!(
            charset("application/x-www-form-urlencoded; charset=windows-1251"),
            Some(encoding_rs::WINDOWS_1251)
        );
        assert_eq!(
            charset("text/plain; format=x; Charset=CP1258"),
            Some(encoding_rs::WINDOWS_1258)
        );
        let unknown = declared_charset(Some(b"application/json; charset=klingon")).unwrap_err();
        assert!(unknown.0.contains("\"klingon\""), "{unknown}");
        let refused = declared_charset(Some(b"application/json; charset=iso-2022-kr")).unwrap_err();
        assert!(
            refused
                .0
                .contains("\"iso-2022-kr\" in Content-Type is not one"),
            "{refused}"
        );
    }

    #[test]
    fn a_body_is_read_in_its_charset_or_as_utf8_never_with_replacements() {
        // "Иванов" in windows-1251.
        let cp1251 = b"{\"name\":\"\xC8\xE2\xE0\xED\xEE\xE2\"}";
        assert_eq!(
            body_text(cp1251, Some(encoding_rs::WINDOWS_1251)).unwrap(),
            "{\"name\":\"Иванов\"}"
        );
        let refused = body_text(cp1251, None).unwrap_err();
        assert!(
            refused.0.contains("byte 9 is not") && refused.0.contains("charset"),
            "{refused}"
        );
        assert_eq!(body_text(b"\xEF\xBB\xBF{}", None).unwrap(), "{}");
        let utf16 = body_text(b"\xFF\xFE{\x00}\x00", None).unwrap_err();
        assert!(utf16.0.contains("UTF-16"), "{utf16}");
        let not_utf16 = body_text(b"\xFF\xFE{\x00}\x00", Some(encoding_rs::UTF_16LE));
        assert_eq!(not_utf16.unwrap(), "{}");
    }

    /// Only the declared charset's own byte order mark is skipped: in
    /// windows-1251 the bytes of UTF-8's are three letters of the text, and
    /// dropping them would alter it without a word.
    #[test]
    fn only_the_declared_charsets_byte_order_mark_is_skipped() {
        assert_eq!(
            body_text(b"\xEF\xBB\xBFabc", Some(encoding_rs::WINDOWS_1251)).unwrap(),
            "п»їabc"
        );
    }

    #[test]
    fn form_fields_are_percent_decoded_in_their_charset_and_refused_when_not_utf8() {
        assert_eq!(
            form_pairs(
                b"a=1&name=Nguy%E1%BB%85n+V%C4%83n&flag&=x&&b=%zz",
                None,
                Pairs::FormFields
            )
            .unwrap(),
            vec![
                ("a".into(), "1".into()),
                ("name".into(), "Nguyễn Văn".into()),
                ("flag".into(), "".into()),
                ("".into(), "x".into()),
                ("b".into(), "%zz".into()),
            ]
        );
        // "Đà" in windows-1258.
        assert_eq!(
            form_pairs(
                b"name=%D0%E0",
                Some(encoding_rs::WINDOWS_1258),
                Pairs::FormFields
            )
            .unwrap(),
            vec![("name".into(), "Đà".into())]
        );
        let refused = form_pairs(b"callid=X%FF", None, Pairs::FormFields).unwrap_err();
        assert!(
            refused
                .0
                .starts_with("the value of form field `callid` is not UTF-8"),
            "{refused}"
        );
        assert!(refused.0.contains("name it in Content-Type"), "{refused}");
        let name = form_pairs(b"%FF=1", None, Pairs::QueryParameters).unwrap_err();
        assert!(
            name.0.starts_with("a query parameter's name is not UTF-8"),
            "{name}"
        );
        // A query's sender cannot name a charset: it is told what it can do.
        assert!(!name.0.contains("Content-Type"), "{name}");
        assert!(
            name.0.contains("percent-encode the text's UTF-8 bytes"),
            "{name}"
        );
    }

    /// The sender's own text goes into the 400 and the `webhook refused`
    /// warning: a 10,000-character field name or charset label went whole
    /// (up to `max_body`, 1 MiB by default), once per refusal.
    #[test]
    fn a_refusal_quotes_at_most_an_excerpt_of_the_senders_text() {
        let long = "A".repeat(10_000);
        let field =
            form_pairs(format!("{long}=%FF").as_bytes(), None, Pairs::FormFields).unwrap_err();
        assert!(field.0.len() < 300, "{} bytes", field.0.len());
        assert!(field.0.contains(&"A".repeat(crate::logging::EXCERPT_CHARS)));
        let content_type = format!("application/json; charset={long}");
        let charset = declared_charset(Some(content_type.as_bytes())).unwrap_err();
        assert!(charset.0.len() < 300, "{} bytes", charset.0.len());
    }

    /// Depth is how deep containers sit, not how many there are: an object
    /// holding a list of 150 rows, each an object holding a list, is four
    /// levels, and counting every opening bracket (302) would refuse it as
    /// nested too deep.
    #[test]
    fn containers_side_by_side_are_not_nesting() {
        let wide = format!("{{\"rows\":[{}]}}", vec!["{\"a\":[1]}"; 150].join(","));
        let (value, _) = parse_json(&wide).unwrap();
        assert_eq!(value["rows"].as_array().map(Vec::len), Some(150));
    }

    /// `{"a":[0,0,…]}` of `n` values in all: the object and the array are
    /// two of them.
    fn wide(n: usize) -> String {
        format!("{{\"a\":[{}]}}", vec!["0"; n - 2].join(","))
    }

    #[test]
    fn a_payload_of_more_values_than_the_limit_is_refused_and_one_at_it_is_read() {
        let (value, _) = parse_json(&wide(MAX_VALUES)).unwrap();
        assert_eq!(value["a"].as_array().map(Vec::len), Some(MAX_VALUES - 2));
        let refused = parse_json(&wide(MAX_VALUES + 1)).unwrap_err();
        assert!(
            refused.to_string().contains("more than 10000 values"),
            "{refused}"
        );
        // An object's members are one value each, whatever their key, and
        // an empty array or object is one value too.
        let members = |n: usize| {
            let members: Vec<String> = (0..n).map(|i| format!("\"k{i}\":[]")).collect();
            format!("{{{}}}", members.join(","))
        };
        let (value, _) = parse_json(&members(MAX_VALUES - 1)).unwrap();
        assert_eq!(value.as_object().map(|o| o.len()), Some(MAX_VALUES - 1));
        let over = |text: &str| matches!(parse_json(text), Err(JsonError::TooManyValues));
        assert!(over(&members(MAX_VALUES)));
        // A text read repaired (a lone surrogate) is counted as well, and
        // one cut short is refused for its count, not its syntax.
        let repaired = format!("[\"\\ud800\",{}]", vec!["0"; MAX_VALUES - 1].join(","));
        assert!(over(&repaired));
        let cut_short = format!("[{},", vec!["0"; MAX_VALUES].join(","));
        assert!(over(&cut_short));
    }

    /// Whitespace between an opening bracket and its closing one leaves the
    /// container empty: one value, not two. A pretty-printer writes `{ }`,
    /// `[\n]` or `{\n  }` for an empty container, and counted twice a
    /// pretty-printed event at the limit would be refused.
    #[test]
    fn a_pretty_printed_payload_of_empty_containers_is_counted_as_written_compactly() {
        let empties = ["[ ]", "{ }", "{\n}", "[\n\t\r ]", "{\n    }", "[]"];
        for empty in empties {
            assert_eq!(
                parse_json(empty).unwrap().0.to_string().len(),
                2,
                "{empty:?}"
            );
        }
        // The object and `n` members, each an empty container.
        let pretty = |n: usize| {
            let members: Vec<String> = (0..n)
                .map(|i| format!("  \"k{i}\": {}", empties[i % empties.len()]))
                .collect();
            format!("{{\n{}\n}}\n", members.join(",\n"))
        };
        let (value, _) = parse_json(&pretty(MAX_VALUES - 1)).unwrap();
        assert_eq!(value.as_object().map(|o| o.len()), Some(MAX_VALUES - 1));
        assert!(matches!(
            parse_json(&pretty(MAX_VALUES)),
            Err(JsonError::TooManyValues)
        ));
    }

    /// Depth is checked before the text is read, so text that is not JSON
    /// nested too deep is refused for its depth, and at the limit for what
    /// it is.
    #[test]
    fn invalid_text_nested_too_deep_is_refused_for_its_depth() {
        let nested = |depth: usize| format!("{{\"a\":{}oops", "[".repeat(depth - 1));
        assert!(matches!(
            parse_json(&nested(MAX_NESTING + 1)),
            Err(JsonError::TooDeep)
        ));
        assert!(matches!(
            parse_json(&nested(MAX_NESTING)),
            Err(JsonError::Syntax(_))
        ));
    }

    /// An opening bracket's value is counted after the loop's check when it
    /// is the text's last byte: text cut short just after it, one value
    /// over the limit, is refused for its count.
    #[test]
    fn text_ending_with_an_opening_bracket_over_the_limit_is_refused_for_its_count() {
        // The outer array, `zeros` zeros and the array opened last.
        let cut = |zeros: usize| format!("[{},[", vec!["0"; zeros].join(","));
        assert!(matches!(
            parse_json(&cut(MAX_VALUES - 2)),
            Err(JsonError::TooManyValues)
        ));
        assert!(matches!(
            parse_json(&cut(MAX_VALUES - 3)),
            Err(JsonError::Syntax(_))
        ));
    }

    /// What would be values outside a string is text inside one: brackets,
    /// commas, escaped quotes, and an escaped backslash just before the
    /// closing quote, after which counting goes on.
    #[test]
    fn brackets_commas_and_escaped_quotes_inside_strings_are_not_values() {
        let text = |zeros: usize| {
            format!(
                "{{\"s\":\"{}\",\"a\":[{}]}}",
                r#"[{,\"],:\\"#.repeat(MAX_VALUES),
                vec!["0"; zeros].join(",")
            )
        };
        // The object, the string, the array and its zeros.
        let (value, _) = parse_json(&text(MAX_VALUES - 3)).unwrap();
        assert!(value["s"].as_str().unwrap().starts_with("[{,\"],:\\"));
        assert!(matches!(
            parse_json(&text(MAX_VALUES - 2)),
            Err(JsonError::TooManyValues)
        ));
    }

    #[test]
    fn a_form_of_more_fields_than_the_limit_is_refused() {
        let form = |n: usize| {
            let fields: Vec<String> = (0..n).map(|i| format!("a{i}=1")).collect();
            fields.join("&")
        };
        let read = form_pairs(form(MAX_VALUES).as_bytes(), None, Pairs::FormFields).unwrap();
        assert_eq!(read.len(), MAX_VALUES);
        // An empty pair (`&&`) is no field.
        let empties = format!("&&{}&&", form(MAX_VALUES));
        assert!(form_pairs(empties.as_bytes(), None, Pairs::FormFields).is_ok());
        let refused =
            form_pairs(form(MAX_VALUES + 1).as_bytes(), None, Pairs::FormFields).unwrap_err();
        assert!(
            refused.0.contains("more than 10000 form fields"),
            "{refused}"
        );
        let refused = form_pairs(
            form(MAX_VALUES + 1).as_bytes(),
            None,
            Pairs::QueryParameters,
        )
        .unwrap_err();
        assert!(
            refused.0.contains("more than 10000 query parameters"),
            "{refused}"
        );
    }

    /// An escape is skipped as its two bytes: a lone surrogate right after
    /// a `\n` in the same string is still found and read as U+FFFD.
    #[test]
    fn a_lone_surrogate_after_another_escape_is_still_read() {
        let (value, read) = parse_json(r#"{"text":"line\nnext \ud83d"}"#).unwrap();
        assert_eq!(value["text"], "line\nnext \u{fffd}");
        assert_eq!(read, r#"{"text":"line\nnext \ufffd"}"#);
    }

    #[test]
    fn lone_surrogate_escapes_are_read_as_replacement_characters_and_pairs_kept() {
        let (value, text) =
            parse_json(r#"{"a":"x\ud800","b":"\udc00y","c":"\ud83d\ude00","d":"\\ud800"}"#)
                .unwrap();
        assert_eq!(
            value,
            json!({"a": "x\u{fffd}", "b": "\u{fffd}y", "c": "😀", "d": "\\ud800"})
        );
        assert_eq!(
            text,
            r#"{"a":"x\ufffd","b":"\ufffdy","c":"\ud83d\ude00","d":"\\ud800"}"#
        );
        // A high surrogate before another high one, and at the very end.
        let (value, _) = parse_json(r#"["\ud83d\ud83d\ude00","\udbff"]"#).unwrap();
        assert_eq!(value, json!(["\u{fffd}😀", "\u{fffd}"]));
        // A low half needs its own backslash to pair with a high one.
        let (value, _) = parse_json(r#"["\ud83dxude00"]"#).unwrap();
        assert_eq!(value, json!(["\u{fffd}xude00"]));
        // Text that needs nothing is not copied; other errors stay errors.
        assert!(matches!(
            parse_json(r#"{"a":"\u00e9"}"#).unwrap().1,
            Cow::Borrowed(_)
        ));
        assert!(parse_json(r#"{"a":"\ud800"#).is_err());
        assert!(parse_json("{bad").is_err());
    }
}
