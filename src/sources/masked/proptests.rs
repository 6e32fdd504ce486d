//! Property tests of [`Masked`]: proptest draws one to three secrets and a
//! text that holds them, and checks what the module doc promises.
//!
//! - [`Masked::mask_json`]: a JSON value holding the secrets as string
//!   values, inside longer strings, as keys, as numbers (digits), and in the
//!   JSON text a string holds, nested up to two levels past
//!   `NESTED_JSON_MAX` (some with text around it, a fragment no longer
//!   JSON, or whitespace around it), each string written with `\uXXXX`
//!   escapes for all, none or some of its characters, with or without PHP's
//!   `\/`, some with a lone surrogate escape. What comes out is JSON (as
//!   serde_json reads it, and as the relay reads it), and no secret is in
//!   it: in no string or key as written or decoded, in no JSON text a
//!   decoded string holds (read the same way, to any depth), in no fragment
//!   once its escapes are read (to any depth), in no scalar's text, nor in
//!   the text as a whole when the secret has none of JSON's punctuation (a
//!   `:` is in any object, and no string's).
//!   Some of those texts are fragments: cut, or with text around them.
//! - [`Masked::mask`] and [`Masked::mask_read`] (cut), by an oracle that
//!   knows nothing of how they search: the secrets are drawn from one
//!   alphabet and the text around them from another. The text is made of
//!   that filler, whole secrets in any of their forms, and runs of the
//!   secrets' characters that secrets cover, overlapping one another or
//!   within one another; a cut read ends with the start of a run (its
//!   last secrets cut) or of a secret's form. No character of the
//!   secrets' alphabet may come out (each was in a whole secret, or in a
//!   start at the end of a cut read), and the filler comes out as it was.
//!
//! No secret holds a `*`: `***` is what a secret becomes, and beside it a
//! letter and a star would read as a secret that was never there.

use proptest::prelude::*;

use super::*;

/// Vietnamese letters (one byte of UTF-8 and more), and one character
/// JSON writes as a surrogate pair when it `\u`-escapes it.
const NON_ASCII: &[char] = &[
    'ă', 'â', 'đ', 'ê', 'ô', 'ơ', 'ư', 'ạ', 'ả', 'ấ', 'ề', 'ể', 'ệ', 'ị', 'ọ', 'ố', 'ộ', 'ớ', 'ụ',
    'ứ', 'ự', 'ỹ', 'Đ', 'Ư', '😀',
];

/// Written as `\ud83d`, a lone surrogate escape (a JavaScript server's
/// string cut through an emoji), which serde_json refuses and the vendors'
/// reader reads as U+FFFD.
const LONE: char = '\u{E000}';

/// Cases per property when `PROPTEST_CASES` does not say: the lib suite
/// runs them in debug, among a thousand other tests.
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

fn secret_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => (0x20u8..0x7f).prop_filter("no star", |b| *b != b'*').prop_map(char::from),
        // JSON's own characters, and escapes' letters: a secret made of
        // them is what masking as text gets wrong.
        3 => prop::sample::select(vec!['"', '\\', '/', 'u', '0', '5', 'c', ':']),
        2 => prop::sample::select(NON_ASCII),
    ]
}

fn secret() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(secret_char(), 1..=6).prop_map(String::from_iter),
        1 => "[0-9]{1,6}",
    ]
}

fn secrets() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(secret(), 1..=3)
}

/// Text around the secrets, escapes' own letters among it.
fn text() -> impl Strategy<Value = String> {
    let char = prop_oneof![
        6 => prop::sample::select("abcu0123 é{}[]:,*".chars().collect::<Vec<_>>()),
        2 => prop::sample::select(vec!['"', '\\', '/', '\n', '\t']),
        1 => prop::sample::select(NON_ASCII),
        1 => Just(LONE),
    ];
    prop::collection::vec(char, 0..6).prop_map(String::from_iter)
}

/// How a string is written: bit `i % 64` of `unicode` writes its `i`th
/// character as `\uXXXX` (none, all, or some), and `php` writes `/` as `\/`.
#[derive(Clone, Copy, Debug)]
struct Enc {
    unicode: u64,
    php: bool,
}

fn enc() -> impl Strategy<Value = Enc> {
    let unicode = prop_oneof![2 => Just(0), 1 => Just(u64::MAX), 2 => any::<u64>()];
    (unicode, any::<bool>()).prop_map(|(unicode, php)| Enc { unicode, php })
}

/// A string written as JSON, by `enc` rather than by serde_json: servers
/// escape more than serde_json does.
fn write_string(text: &str, enc: Enc) -> String {
    // Escaping all of a text of kilobytes, level after level, grows it
    // sixfold a level: the outer levels of a deep nesting are written plain.
    let unicode = if text.len() > 2_000 { 0 } else { enc.unicode };
    let mut out = String::from('"');
    for (i, c) in text.chars().enumerate() {
        if c == LONE {
            out.push_str("\\ud83d");
            continue;
        }
        if unicode >> (i % 64) & 1 == 1 {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
            continue;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' if enc.php => out.push_str("\\/"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Clone, Debug)]
enum Piece {
    Text(String),
    /// The secret at this index (modulo their count).
    Secret(usize),
    /// The JSON text of a value.
    Json(Box<Tree>),
}

#[derive(Clone, Debug)]
enum Tree {
    Str(Vec<Piece>, Enc),
    /// A number that holds no secret by construction of its text.
    Number(&'static str),
    /// A number holding the secret at this index, written in one of four
    /// shapes; a string of it when the secret is not digits.
    SecretNumber(usize, u8),
    Literal(&'static str),
    /// Items, and whether a space follows each comma.
    Array(Vec<Tree>, bool),
    Object(Vec<(Vec<Piece>, Enc, Tree)>, bool),
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        text().prop_map(Piece::Text),
        (0..3usize).prop_map(Piece::Secret),
    ]
}

fn pieces() -> impl Strategy<Value = Vec<Piece>> {
    prop::collection::vec(piece(), 1..=3)
}

fn leaf() -> impl Strategy<Value = Tree> {
    prop_oneof![
        4 => (pieces(), enc()).prop_map(|(pieces, enc)| Tree::Str(pieces, enc)),
        1 => prop::sample::select(vec!["0", "-12.5e3", "1.0e3", "42"]).prop_map(Tree::Number),
        2 => (0..3usize, 0..4u8).prop_map(|(at, shape)| Tree::SecretNumber(at, shape)),
        1 => prop::sample::select(vec!["true", "false", "null"]).prop_map(Tree::Literal),
    ]
}

fn tree() -> impl Strategy<Value = Tree> {
    leaf().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            (prop::collection::vec(inner.clone(), 0..4), any::<bool>())
                .prop_map(|(items, spaced)| Tree::Array(items, spaced)),
            (
                prop::collection::vec((pieces(), enc(), inner.clone()), 0..4),
                any::<bool>()
            )
                .prop_map(|(members, spaced)| Tree::Object(members, spaced)),
            // A string holding a JSON text, within other text or not.
            (text(), inner, text(), enc()).prop_map(|(before, inner, after, enc)| {
                Tree::Str(
                    vec![
                        Piece::Text(before),
                        Piece::Json(Box::new(inner)),
                        Piece::Text(after),
                    ],
                    enc,
                )
            }),
        ]
    })
}

/// One level of a nesting: the JSON text within, in a string that is an
/// object's value (0), an array's item (1), the whole value (2) or an
/// object's key (3); some with text around it (no longer JSON) or
/// whitespace (JSON still).
fn level() -> impl Strategy<Value = (u8, Enc, Option<(String, String)>)> {
    (
        0..4u8,
        enc(),
        prop_oneof![
            6 => Just(None),
            2 => (text(), text()).prop_map(Some),
            1 => ("[ \t\n]{0,3}", "[ \t\n]{0,3}").prop_map(Some),
        ],
    )
}

fn nested() -> impl Strategy<Value = Tree> {
    (
        tree(),
        prop::collection::vec(level(), 1..=NESTED_JSON_MAX + 2),
    )
        .prop_map(|(innermost, levels)| {
            levels
                .into_iter()
                .fold(innermost, |inner, (shape, enc, around)| {
                    let json = Piece::Json(Box::new(inner));
                    let pieces = match around {
                        Some((before, after)) => {
                            vec![Piece::Text(before), json, Piece::Text(after)]
                        }
                        None => vec![json],
                    };
                    match shape {
                        0 => Tree::Object(
                            vec![(
                                vec![Piece::Text("sign".into())],
                                enc,
                                Tree::Str(pieces, enc),
                            )],
                            false,
                        ),
                        1 => Tree::Array(vec![Tree::Str(pieces, enc), Tree::Number("7")], true),
                        2 => Tree::Str(pieces, enc),
                        _ => Tree::Object(vec![(pieces, enc, Tree::Literal("true"))], false),
                    }
                })
        })
}

fn value() -> impl Strategy<Value = Tree> {
    prop_oneof![
        tree(),
        nested(),
        (tree(), nested()).prop_map(|(tree, nested)| Tree::Array(vec![nested, tree], false)),
    ]
}

fn text_of(pieces: &[Piece], secrets: &[String]) -> String {
    pieces
        .iter()
        .map(|piece| match piece {
            Piece::Text(text) => text.clone(),
            Piece::Secret(at) => secrets[at % secrets.len()].clone(),
            Piece::Json(tree) => render(tree, secrets),
        })
        .collect()
}

fn render(tree: &Tree, secrets: &[String]) -> String {
    let comma = |spaced: bool| if spaced { ", " } else { "," };
    match tree {
        Tree::Str(pieces, enc) => write_string(&text_of(pieces, secrets), *enc),
        Tree::Number(number) => (*number).to_owned(),
        Tree::SecretNumber(at, shape) => {
            let secret = &secrets[at % secrets.len()];
            if !secret.bytes().all(|b| b.is_ascii_digit()) {
                return write_string(
                    secret,
                    Enc {
                        unicode: 0,
                        php: false,
                    },
                );
            }
            // JSON has no number with a leading zero but 0 itself.
            let whole = if secret.starts_with('0') && secret.len() > 1 {
                format!("9{secret}")
            } else {
                secret.clone()
            };
            match shape {
                0 => whole,
                1 => format!("1{secret}"),
                2 => format!("1.{secret}"),
                _ => format!("-{whole}e5"),
            }
        }
        Tree::Literal(literal) => (*literal).to_owned(),
        Tree::Array(items, spaced) => {
            let items: Vec<String> = items.iter().map(|item| render(item, secrets)).collect();
            format!("[{}]", items.join(comma(*spaced)))
        }
        Tree::Object(members, spaced) => {
            let members: Vec<String> = members
                .iter()
                .map(|(key, enc, value)| {
                    let key = write_string(&text_of(key, secrets), *enc);
                    format!("{key}:{}", render(value, secrets))
                })
                .collect();
            format!("{{{}}}", members.join(comma(*spaced)))
        }
    }
}

fn is_json(text: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

/// A text that can show a secret: one no secret may be in, or a JSON text,
/// in which a secret with JSON's punctuation may be its structure's.
#[derive(Debug)]
enum Shown {
    Text(String),
    Json(String),
}

/// Every text in which `json` (a JSON text) could show a secret: each
/// string token as written (between its quotes) and decoded, each scalar's
/// text; a decoded string that is a JSON text the same again, and one that
/// is not, each reading of its escapes until none is left. Tokens are
/// found here rather than by the module, whose reading is under test.
fn texts(json: &str, out: &mut Vec<Shown>) {
    let bytes = json.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => {
                let mut end = at + 1;
                while end < bytes.len() && bytes[end] != b'"' {
                    end += if bytes[end] == b'\\' { 2 } else { 1 };
                }
                let end = (end + 1).min(bytes.len());
                let token = &json[at..end];
                let inside = token.get(1..token.len() - 1).unwrap_or_default();
                out.push(Shown::Text(inside.to_owned()));
                let decoded =
                    serde_json::from_str::<String>(token).unwrap_or_else(|_| read_escapes(inside));
                if reads_as_json(&decoded) {
                    texts(&decoded, out);
                    // Its punctuation is no string's.
                    out.push(Shown::Json(decoded));
                    at = end;
                    continue;
                } else {
                    let mut read = decoded.clone();
                    loop {
                        let next = read_escapes(&read);
                        if next == read {
                            break;
                        }
                        out.push(Shown::Text(next.clone()));
                        read = next;
                    }
                }
                out.push(Shown::Text(decoded));
                at = end;
            }
            b',' | b':' | b'[' | b']' | b'{' | b'}' | b' ' | b'\t' | b'\n' | b'\r' => at += 1,
            _ => {
                let end = bytes[at..]
                    .iter()
                    .position(|b| b",:[]{} \t\n\r\"".contains(b))
                    .map_or(bytes.len(), |len| at + len);
                out.push(Shown::Text(json[at..end].to_owned()));
                at = end;
            }
        }
    }
}

/// A secret that only tokens can hold: one with none of JSON's
/// punctuation, whitespace or quotes, found in the whole text only within
/// one token. (`:` of `{"a":1}` is in any object, not a leak.)
fn fits_in_a_token(secret: &str) -> bool {
    !secret.contains([',', ':', '[', ']', '{', '}', ' ', '\t', '\n', '\r', '"'])
}

fn check_mask_json(secrets: &[String], sent: &str) -> Result<(), TestCaseError> {
    let masked = Masked::new(secrets.iter().cloned().map(Secret::new));
    let got = masked.mask_json(sent);
    if is_json(sent) {
        prop_assert!(is_json(&got), "not JSON: {got}\nsent: {sent}");
    }
    if reads_as_json(sent) {
        prop_assert!(reads_as_json(&got), "not JSON: {got}\nsent: {sent}");
    }
    let mut shown = vec![Shown::Json(got.clone().into_owned())];
    texts(&got, &mut shown);
    for secret in secrets {
        let leak = shown.iter().find(|shown| match shown {
            Shown::Text(text) => text.contains(secret.as_str()),
            Shown::Json(text) => fits_in_a_token(secret) && text.contains(secret.as_str()),
        });
        prop_assert!(
            leak.is_none(),
            "{secret:?} in {leak:?} of {got}\nsent: {sent}"
        );
    }
    Ok(())
}

/// The characters of the secrets in the properties of `mask` and
/// `mask_read`: letters, digits, and the ones JSON escapes (`"`, `\`) or
/// PHP does (`/`), so each form of a secret is written with them too.
const SECRET_CHARS: &[char] = &[
    'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', '0', '1', '2', '3', '"', '\\',
    '/',
];

/// The text around those secrets: no character of theirs, so any of
/// theirs in the text is in a secret, and any left after masking is shown.
fn filler() -> impl Strategy<Value = String> {
    let char = prop_oneof![
        3 => prop::sample::select("nopqrstuvwxyz ".chars().collect::<Vec<_>>()),
        1 => prop::sample::select(NON_ASCII),
    ];
    prop::collection::vec(char, 0..4).prop_map(String::from_iter)
}

/// A run of the secrets' characters, and where the secrets are in it:
/// together they cover it, each overlapping the one before it or not,
/// some within another. The secrets are what those spans hold.
#[derive(Clone, Debug)]
struct Chain {
    run: Vec<char>,
    spans: Vec<(usize, usize)>,
}

impl Chain {
    fn secrets(&self) -> Vec<String> {
        self.spans
            .iter()
            .map(|&(start, end)| String::from_iter(&self.run[start..end]))
            .collect()
    }
}

fn chain() -> impl Strategy<Value = Chain> {
    (
        prop::collection::vec(prop::sample::select(SECRET_CHARS), 1..=10),
        prop::collection::vec((any::<u8>(), any::<u8>()), 1..=5),
    )
        .prop_map(|(run, draws)| {
            let n = run.len();
            let mut spans = Vec::new();
            // `run[..covered]` is in a span.
            let mut covered = 0;
            for (back, len) in draws {
                let (back, len) = (usize::from(back), usize::from(len));
                if covered == n {
                    // One within the others.
                    let start = back % n;
                    spans.push((start, start + 1 + len % (n - start)));
                    continue;
                }
                // From within the last span (an overlap), or where it ends.
                let end = covered + 1 + len % (n - covered);
                spans.push((covered - back % (covered + 1), end));
                covered = end;
            }
            if covered < n {
                spans.push((covered, n));
            }
            Chain { run, spans }
        })
}

/// A part of a text: filler, a chain's run (its secrets overlapping), or
/// one of the chain's secrets in one of its forms.
#[derive(Clone, Debug)]
enum Part {
    Filler(String),
    Run,
    Form(prop::sample::Index, usize),
}

fn parts() -> impl Strategy<Value = Vec<Part>> {
    let part = prop_oneof![
        2 => filler().prop_map(Part::Filler),
        2 => Just(Part::Run),
        1 => (any::<prop::sample::Index>(), 0..3usize).prop_map(|(at, form)| Part::Form(at, form)),
    ];
    prop::collection::vec(part, 1..=6)
}

fn write_parts(parts: &[Part], chain: &Chain) -> String {
    let secrets = chain.secrets();
    parts
        .iter()
        .map(|part| match part {
            Part::Filler(text) => text.clone(),
            Part::Run => String::from_iter(&chain.run),
            Part::Form(at, form) => forms(&Secret::new(at.get(&secrets).clone()))[*form].clone(),
        })
        .collect()
}

/// `got` shows no character of a secret, and is `text`'s filler as it
/// was, each secret (or run of them) `***` or dropped.
fn shows_only_the_filler(got: &str, text: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        !got.contains(SECRET_CHARS),
        "a secret's character in {got:?}\nsent: {text:?}"
    );
    let filler: String = text.chars().filter(|c| !SECRET_CHARS.contains(c)).collect();
    prop_assert_eq!(got.replace('*', ""), filler, "from {:?}", text);
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    /// Masked JSON is JSON, and holds no secret however it is read; a
    /// fragment (JSON cut, or with text around it) holds none either.
    #[test]
    fn masked_json_is_json_and_shows_no_secret(
        secrets in secrets(),
        value in value(),
        fragment in prop::option::weighted(0.2, (text(), any::<prop::sample::Index>(), text())),
    ) {
        let mut sent = render(&value, &secrets);
        if let Some((before, cut, after)) = fragment {
            let mut at = cut.index(sent.len() + 1);
            while !sent.is_char_boundary(at) {
                at -= 1;
            }
            sent = format!("{before}{}{after}", &sent[..at]);
        }
        check_mask_json(&secrets, &sent)?;
    }
}

proptest! {
    #![proptest_config(config(1024))]

    /// `mask` leaves no character of a secret: each is in a whole secret
    /// (as written, or in its JSON-escaped forms), those secrets overlapping
    /// or one within another, and every whole secret is masked; the text
    /// around them is as it was.
    #[test]
    fn masked_text_shows_no_character_of_a_secret(chain in chain(), parts in parts()) {
        let text = write_parts(&parts, &chain);
        let masked = Masked::new(chain.secrets().into_iter().map(Secret::new));
        shows_only_the_filler(&masked.mask(&text), &text)?;
    }

    /// A read cut by its limit, ending in the start of a secret (within
    /// or overlapping the whole secrets before it, or a form's start), or
    /// in a character cut in two (U+FFFD): no character of a secret is
    /// shown, and all the text around them is.
    #[test]
    fn a_cut_read_shows_no_character_of_a_secret(
        chain in chain(),
        parts in parts(),
        end in any::<prop::sample::Index>(),
        form in prop::option::of((any::<prop::sample::Index>(), 0..3usize)),
        cut_char in any::<bool>(),
    ) {
        let mut text = write_parts(&parts, &chain);
        match form {
            // A form's proper start.
            Some((at, form)) => {
                let form = forms(&Secret::new(at.get(&chain.secrets()).clone()))[form].clone();
                let chars: Vec<char> = form.chars().collect();
                text.extend(&chars[..end.index(chars.len())]);
            }
            // The run's start, its last secrets cut.
            None => text.extend(&chain.run[..end.index(chain.run.len() + 1)]),
        }
        if cut_char {
            text.push('\u{FFFD}');
        }
        let masked = Masked::new(chain.secrets().into_iter().map(Secret::new));
        let got = masked.mask_read(&text, true);
        shows_only_the_filler(&got, text.trim_end_matches('\u{FFFD}'))?;
    }
}
