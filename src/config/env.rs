//! `${ENV_VAR}` and `${file:/absolute/path}` expansion in config text.
//!
//! Guarantees: every `${NAME}` and `${file:…}` outside comments is replaced,
//! escaped for the TOML context it stands in (a basic string gets `\"`, `\\`
//! and `\n` escapes, so a secret with quotes cannot break the file), and
//! every unset variable and every file that cannot be used is reported with
//! its byte offset (its `${`). `$${` writes a literal `${`. Every offset in the
//! expanded text maps back to the original ([`Expanded::original_offset`]).
//!
//! A file is read each time the text is expanded (start, reload, `check`),
//! through the reader given to [`expand_with_files`] ([`read_file`] for the
//! disk): its content, with one trailing `\n` or `\r\n` taken off, is the
//! value. Its path is taken as written, no `${VAR}` inside it (a `${` there is
//! a problem), and must be absolute. A value from a file is treated as one
//! from the environment everywhere: no message quotes it, only the path. A
//! file named more than once is read once per expansion, so that every
//! reference gets the same content. A file everyone may read is warned at
//! each read (its path and mode).

use std::cell::OnceCell;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The most a `${file:…}`'s value may hold (its trailing line ending
/// aside): a secret is a few hundred bytes at most, and the whole file is
/// held in memory (twice, escaped) while it loads.
pub const FILE_VALUE_LIMIT: usize = 64 * 1024;

/// The most bytes of a `${file:…}` read: a value at the limit with its
/// `\r\n`, and one more, which tells a longer file apart without reading
/// it whole.
pub const FILE_READ_LIMIT: usize = FILE_VALUE_LIMIT + 3;

/// Why a `${file:…}` could not be read, as [`read_file`] says it. Shown in the
/// problem after the path; never holds the file's content.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The operating system's reason (not found, permission denied, …).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A directory, FIFO or device: opening a FIFO waits for a writer (a
    /// reload would hang), and `/dev/zero` or `/dev/stdin` is no secret.
    #[error("not a regular file")]
    NotAFile,
}

/// Reads a `${file:…}`: its bytes, at most [`FILE_READ_LIMIT`] of them.
pub type ReadFile = dyn Fn(&Path) -> Result<Vec<u8>, FileError>;

/// A [`ReadFile`] that may borrow (the expansion's reader, which keeps what
/// it read).
type FileReader<'a> = dyn Fn(&Path) -> Result<Vec<u8>, FileError> + 'a;

/// The reader of the disk: only a regular file is read (see
/// [`FileError::NotAFile`]), and a FIFO is never waited on, even one
/// swapped in after the path was looked at ([`crate::regular_file::open`]).
pub fn read_file(path: &Path) -> Result<Vec<u8>, FileError> {
    use std::io::Read;
    let Some(file) = crate::regular_file::open(path)? else {
        return Err(FileError::NotAFile);
    };
    warn_if_readable_by_everyone(path, &file);
    let mut bytes = Vec::new();
    file.take(FILE_READ_LIMIT as u64).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A secret anyone on the host can read is said at each read (once per
/// load: [`expand_with_files`] reads a file once however often it is
/// named), by its path and mode (never its content), as the journal's file
/// is. Not refused: a config that started before an upgrade must start
/// after it.
fn warn_if_readable_by_everyone(path: &Path, file: &std::fs::File) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = file.metadata() else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o004 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            "a `${{file:…}}` secret is readable by everyone on the host: let only the relay \
             read it, `chmod 0640` with its group one the service runs with. With the fixed \
             account (deploy/README.md §2): owned by root:callrelay. Under the shipped unit's \
             `DynamicUser=yes`: owned by root and a static group (`groupadd --system \
             callrelay-secrets`) that a drop-in gives the service with \
             `SupplementaryGroups=callrelay-secrets` (deploy/README.md §3); a group \
             given to the service takes effect at its next restart, not at a reload"
        );
    }
}

/// The result of expanding one text.
pub struct Expanded {
    pub text: String,
    /// (byte offset in the original text, message) for each problem.
    pub problems: Vec<(usize, String)>,
    /// The unset variables and the files that cannot be used inside a
    /// string, as written (`${NAME}`, `${file:/path}`), one per problem:
    /// they stay in the text as a placeholder the later checks can read
    /// past, at the same place and of the same length. The other problems
    /// cannot be read past: the text after a `${` left open may be a secret
    /// a later message would quote, and a bare `${NAME}` left out or in
    /// place is no TOML value.
    pub unset: Vec<String>,
    /// The indices in `problems` of the environment variables not set:
    /// a reload says of them what a start cannot (see
    /// [`super::Loading::Reload`]).
    pub unset_variables: Vec<usize>,
    /// Where each replacement stands, in the original and the expanded text,
    /// in order.
    substitutions: Vec<Substitution>,
    /// The strings and keys of the expanded text that hold a value, found
    /// at the first [`Expanded::redact`] that needs them.
    strings_with_values: OnceCell<Vec<StringWithValue>>,
}

/// A string or key of the expanded text that holds a value from the
/// environment or a file: as it reads, and where the file writes it.
struct StringWithValue {
    read: String,
    original: Range<usize>,
}

struct Substitution {
    original: Range<usize>,
    expanded: Range<usize>,
    /// The environment's value or the file's content (`None` for a `$${`
    /// escape).
    value: Option<String>,
}

/// Where each replacement of one expansion stands, in the original and the
/// expanded text, without the values: what places a problem found after the
/// load (a reload's refusal) in the file as written, with no second
/// expansion (which would read every `${file:…}` again, and could find
/// another content by then).
#[derive(Clone, Debug, Default)]
pub struct OffsetMap {
    /// (original, expanded) ranges, in order.
    spans: Vec<(Range<usize>, Range<usize>)>,
}

impl OffsetMap {
    /// [`Expanded::original_offset`], for the expansion this map was taken of.
    pub fn original_offset(&self, offset: usize) -> usize {
        original_offset(self.spans.iter().map(|(o, e)| (o, e)), offset)
    }
}

/// The byte offset in the original text of `offset` in the expanded text,
/// given where each replacement stands there (original, expanded), in order.
fn original_offset<'a>(
    spans: impl Iterator<Item = (&'a Range<usize>, &'a Range<usize>)>,
    offset: usize,
) -> usize {
    let (mut original_end, mut expanded_end) = (0, 0);
    for (original, expanded) in spans {
        if offset < expanded.start {
            break;
        }
        // An empty value: what stands right where it was is reported at it.
        if offset < expanded.end || offset == expanded.start {
            return original.start;
        }
        original_end = original.end;
        expanded_end = expanded.end;
    }
    offset - expanded_end + original_end
}

/// [`Expanded::original_span_if_expanded`], given the replacements.
fn original_span(substitutions: &[Substitution], span: Range<usize>) -> Option<Range<usize>> {
    let touches = |s: &&Substitution| {
        (span.start <= s.expanded.start && s.expanded.start < span.end)
            || (s.expanded.start < span.start && span.start < s.expanded.end)
    };
    let first = substitutions.iter().find(touches)?;
    let last = substitutions.iter().rev().find(touches)?;
    let at = |offset| {
        original_offset(
            substitutions.iter().map(|s| (&s.original, &s.expanded)),
            offset,
        )
    };
    let start = at(span.start).min(first.original.start);
    let end = if span.end <= last.expanded.end {
        last.original.end
    } else {
        at(span.end)
    };
    Some(start..end.max(start))
}

impl Expanded {
    /// The byte offset in the original text of `offset` in the expanded text.
    /// An offset inside a replaced value maps to its `${`, so an error's place
    /// depends neither on the value's length nor on newlines in it (and does
    /// not reveal either).
    pub fn original_offset(&self, offset: usize) -> usize {
        original_offset(
            self.substitutions
                .iter()
                .map(|s| (&s.original, &s.expanded)),
            offset,
        )
    }

    /// Where the replacements stand, without their values: to place a
    /// problem found once the expansion is gone.
    pub fn offset_map(&self) -> OffsetMap {
        OffsetMap {
            spans: self
                .substitutions
                .iter()
                .map(|s| (s.original.clone(), s.expanded.clone()))
                .collect(),
        }
    }

    /// Where `span` of the expanded text stands in the original, when a
    /// replacement lies in it (`None` when the span is the file's own text),
    /// so a message can show the `${NAME}` or `${file:…}` the user wrote
    /// instead of a value from the environment or a file.
    pub fn original_span_if_expanded(&self, span: Range<usize>) -> Option<Range<usize>> {
        original_span(&self.substitutions, span)
    }

    /// `message` with every value from the environment or a file that it
    /// quotes (as Rust's `{:?}` or TOML writes a string, or in serde's
    /// backquotes) replaced by the `${NAME}` or `${file:…}` that
    /// `original` has for it, and every string or key of the file holding
    /// one, quoted as it reads (`"hunterh"`, serde's "unknown variant
    /// `hunterx`"), by the string as `original` writes it (`'${RET}h'`,
    /// `` `${V}x` ``): the last guard that no check's message, nor a
    /// parser's, shows one. Only quoted: a value that is also an ordinary
    /// word ("voip", "main") must not rewrite the rest of the message.
    pub fn redact(&self, message: &str, original: &str) -> String {
        let message = self.redact_values(message, original);
        self.redact_strings(&message, original)
    }

    /// The strings and keys holding a value, each quoted as it reads, by
    /// the string as written (the whole values are [`Self::redact_values`]'s).
    fn redact_strings(&self, message: &str, original: &str) -> String {
        let strings = self
            .strings_with_values
            .get_or_init(|| strings_with_values(&self.text, &self.substitutions));
        let mut message = message.to_owned();
        for string in strings {
            // A place that cannot be cut out of the file (not expected: the
            // places come from this text) is said, never left as read.
            let written = original
                .get(string.original.clone())
                .unwrap_or(UNQUOTABLE_VALUE);
            // Inside backquotes, as a whole value is shown: without its quotes.
            let unquoted = ["\"\"\"", "'''", "\"", "'"]
                .into_iter()
                .find_map(|q| written.strip_prefix(q)?.strip_suffix(q))
                .unwrap_or(written);
            // In double quotes, as the file quotes it (a bare key is put in
            // quotes, as a whole value is).
            let quoted = if unquoted.len() < written.len() {
                written.to_owned()
            } else {
                format!("\"{written}\"")
            };
            replace_quoted(&mut message, &string.read, &quoted, unquoted);
        }
        message
    }

    /// [`Self::redact`]'s whole values.
    fn redact_values(&self, message: &str, original: &str) -> String {
        let mut values: Vec<(&str, &str)> = self
            .substitutions
            .iter()
            .filter_map(|s| {
                let value = s.value.as_deref().filter(|v| !v.is_empty())?;
                // Fail closed, as for strings: a place that cannot be cut
                // out (not expected) is said, not left as read.
                let reference = original.get(s.original.clone()).unwrap_or(UNQUOTABLE_VALUE);
                Some((value, reference))
            })
            .collect();
        // Longest first: a value inside a longer one must not split it.
        values.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
        let mut message = message.to_owned();
        for (value, reference) in values {
            replace_quoted(&mut message, value, &format!("\"{reference}\""), reference);
        }
        message
    }
}

/// What stands for a value from the environment or a file that cannot be
/// shown in its place (fail closed: never the value itself).
const UNQUOTABLE_VALUE: &str = "(a value from the environment or a file)";

/// Replaces `read` in `message` wherever it stands quoted — `{:?}`-written,
/// in double quotes, or in serde's backquotes ("unknown variant `…`,
/// expected one of …") — by `quoted` (the first two) or `` `unquoted` ``.
fn replace_quoted(message: &mut String, read: &str, quoted: &str, unquoted: &str) {
    for (form, shown) in [
        (format!("{read:?}"), quoted.to_owned()),
        (format!("\"{read}\""), quoted.to_owned()),
        (format!("`{read}`"), format!("`{unquoted}`")),
    ] {
        if message.contains(&form) {
            *message = message.replace(&form, &shown);
        }
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

/// Every string and key of `text` (an expanded config) that holds a value
/// from `substitutions`, longest first: from the TOML parser, which reads
/// each as the config will, with its place (none when `text` is no TOML).
fn strings_with_values(text: &str, substitutions: &[Substitution]) -> Vec<StringWithValue> {
    fn walk_table<'a>(table: &'a DeTable<'_>, found: &mut Vec<(Range<usize>, &'a str)>) {
        for (key, value) in table.iter() {
            found.push((key.span(), key.get_ref().as_ref()));
            walk_value(value, found);
        }
    }
    fn walk_value<'a>(value: &'a Spanned<DeValue<'_>>, found: &mut Vec<(Range<usize>, &'a str)>) {
        match value.get_ref() {
            DeValue::String(s) => found.push((value.span(), s.as_ref())),
            DeValue::Table(table) => walk_table(table, found),
            DeValue::Array(items) => items.iter().for_each(|item| walk_value(item, found)),
            _ => {}
        }
    }
    // The replacements are in order: those inside a span follow the first
    // that starts in it.
    let holds_value = |span: &Range<usize>| {
        let first = substitutions.partition_point(|s| s.expanded.start < span.start);
        substitutions[first..]
            .iter()
            .take_while(|s| s.expanded.end <= span.end)
            .any(|s| s.value.as_deref().is_some_and(|v| !v.is_empty()))
    };
    if !substitutions.iter().any(|s| s.value.is_some()) {
        return Vec::new();
    }
    let Ok(root) = DeTable::parse(text) else {
        return Vec::new();
    };
    let mut found: Vec<(Range<usize>, &str)> = Vec::new();
    walk_table(root.get_ref(), &mut found);
    let mut strings: Vec<StringWithValue> = found
        .into_iter()
        .filter(|(span, _)| holds_value(span))
        .filter_map(|(span, read): (Range<usize>, &str)| {
            Some(StringWithValue {
                read: read.to_owned(),
                original: original_span(substitutions, span)?,
            })
        })
        .collect();
    // Longest first: a string inside a longer one must not split it.
    strings.sort_by_key(|s| std::cmp::Reverse(s.read.len()));
    strings
}

/// Expands `${NAME}` using `lookup`, and `${file:…}` from the disk.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Expanded {
    expand_with_files(text, lookup, &read_file)
}

/// Expands `${NAME}` using `lookup`, and `${file:…}` using `read`, once
/// per file: a file named twice (a rotated credential's list, one secret
/// for two accounts) gives both the same content, not one from before and
/// one from after a rewrite, and its warning is logged once.
pub fn expand_with_files(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    read: &ReadFile,
) -> Expanded {
    // Keyed by the path as written (its bytes), not by `Path`, which
    // compares by component: `/etc/cs` and `/etc/cs/` (a directory, which
    // no file is) must not share a read.
    let already_read: std::cell::RefCell<std::collections::HashMap<std::ffi::OsString, Vec<u8>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
    let read = |path: &Path| -> Result<Vec<u8>, FileError> {
        if let Some(bytes) = already_read.borrow().get(path.as_os_str()) {
            return Ok(Vec::clone(bytes));
        }
        let bytes = read(path)?;
        already_read
            .borrow_mut()
            .insert(path.as_os_str().to_owned(), bytes.clone());
        Ok(bytes)
    };
    let read: &FileReader<'_> = &read;
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    let mut unset = Vec::new();
    let mut unset_variables = Vec::new();
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
        if ctx != Context::Comment && rest.starts_with(FILE_PREFIX) {
            let len = match file_reference(rest, ctx) {
                FileReference::Closed(len) => len,
                FileReference::Nested(len) => {
                    problems.push((
                        i,
                        "`${file:…}` takes its path as written: a `${` inside it is not expanded; write the path out in full".to_owned(),
                    ));
                    i += len;
                    continue;
                }
                FileReference::Unclosed => {
                    // The path is not quoted: what follows may be a secret.
                    problems.push((
                        i,
                        "`${file:` is not closed by `}` before its line or string ends".to_owned(),
                    ));
                    i += FILE_PREFIX.len();
                    continue;
                }
            };
            let written = &rest[..len];
            let path = &rest[FILE_PREFIX.len()..len - 1];
            match file_value(path, read) {
                Ok(value) => {
                    let start = out.len();
                    out.push_str(&escape_for(
                        ctx,
                        &value,
                        "a file's content",
                        i,
                        &mut problems,
                    ));
                    substitutions.push(Substitution {
                        original: i..i + len,
                        expanded: start..out.len(),
                        value: Some(value),
                    });
                }
                Err(why) => {
                    // A placeholder, as for an unset variable; not one a
                    // basic string would read a `\` of as an escape.
                    if ctx != Context::Bare && !written.contains('\\') {
                        out.push_str(written);
                        unset.push(written.to_owned());
                    }
                    problems.push((i, why.to_string()));
                }
            }
            i += len;
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
                        out.push_str(&escape_for(
                            ctx,
                            &value,
                            "an environment variable",
                            i,
                            &mut problems,
                        ));
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
                        unset_variables.push(problems.len());
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
        unset_variables,
        substitutions,
        strings_with_values: OnceCell::new(),
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

/// What a file reference starts with.
const FILE_PREFIX: &str = "${file:";

enum FileReference {
    /// `${file:…}`, this many bytes long.
    Closed(usize),
    /// A `${` inside the path; this many bytes up to the `}` that closes
    /// the outer reference (or the `${file:` alone when none does).
    Nested(usize),
    /// No `}` before the line, or the string the reference stands in, ends.
    Unclosed,
}

/// How long the `${file:…}` at the start of `rest` is. The path is taken as
/// written: it ends at the first `}`, and must not cross the end of its line
/// or of the string it stands in (whose quote no path holds, then).
fn file_reference(rest: &str, ctx: Context) -> FileReference {
    let ends_here = |c: char| {
        c == '\n'
            || match ctx {
                Context::Basic | Context::MultiBasic => c == '"',
                Context::Literal | Context::MultiLiteral => c == '\'',
                Context::Bare | Context::Comment => false,
            }
    };
    let mut depth = 0usize;
    let mut nested = false;
    let mut chars = rest.char_indices().skip(FILE_PREFIX.len()).peekable();
    while let Some((at, c)) = chars.next() {
        if ends_here(c) {
            break;
        }
        if c == '$' && chars.peek().is_some_and(|&(_, next)| next == '{') {
            nested = true;
            depth += 1;
            chars.next();
        } else if c == '}' {
            if depth == 0 {
                return if nested {
                    FileReference::Nested(at + 1)
                } else {
                    FileReference::Closed(at + 1)
                };
            }
            depth -= 1;
        }
    }
    if nested {
        FileReference::Nested(FILE_PREFIX.len())
    } else {
        FileReference::Unclosed
    }
}

/// Why a `${file:…}` gives no value: the problem at its `${`. Names the path
/// as written, never the content.
#[derive(Debug, thiserror::Error)]
enum FileValueError {
    #[error(
        "`${{file:}}` names no file: write its absolute path, like `${{file:/etc/callrelay/secret}}`"
    )]
    NoPath,
    #[error(
        "`${{file:{0}}}` needs an absolute path (one starting with `/`): a relative one would be read from wherever the relay was started"
    )]
    Relative(String),
    #[error("cannot read `${{file:{path}}}`: {reason}")]
    Unreadable { path: String, reason: FileError },
    #[error("`${{file:{0}}}` is over 64 KiB: a file value is a secret, a line long")]
    TooLarge(String),
    #[error("`${{file:{0}}}` is not UTF-8 text (save it as UTF-8)")]
    NotUtf8(String),
    /// U+FEFF first, as some Windows editors write: it would stay in the
    /// value, a credential that then never matches, with nothing to see.
    #[error("`${{file:{0}}}` starts with a byte-order mark (U+FEFF): save the file without one")]
    ByteOrderMark(String),
}

/// The value of `${file:path}`, or the problem to report at its `${`.
fn file_value(path: &str, read: &FileReader<'_>) -> Result<String, FileValueError> {
    if path.is_empty() {
        return Err(FileValueError::NoPath);
    }
    if !Path::new(path).is_absolute() {
        return Err(FileValueError::Relative(path.to_owned()));
    }
    let mut bytes = read(Path::new(path)).map_err(|reason| FileValueError::Unreadable {
        path: path.to_owned(),
        reason,
    })?;
    // One line ending, as `echo secret > file` writes it: only one, so a
    // value that ends in a newline of its own keeps it. The limit is the
    // value's, without it.
    if bytes.ends_with(b"\r\n") {
        bytes.truncate(bytes.len() - 2);
    } else if bytes.ends_with(b"\n") {
        bytes.truncate(bytes.len() - 1);
    }
    if bytes.len() > FILE_VALUE_LIMIT {
        return Err(FileValueError::TooLarge(path.to_owned()));
    }
    let value = String::from_utf8(bytes).map_err(|_| FileValueError::NotUtf8(path.to_owned()))?;
    if value.starts_with('\u{feff}') {
        return Err(FileValueError::ByteOrderMark(path.to_owned()));
    }
    Ok(value)
}

/// `value` as it is put where its reference stands; `what` it is, for the
/// problem when it cannot go there.
fn escape_for(
    ctx: Context,
    value: &str,
    what: &str,
    at: usize,
    problems: &mut Vec<(usize, String)>,
) -> String {
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
                    format!("{what} with a quote or newline cannot go in a '…' literal string; use \"…\""),
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
    fn the_offset_map_places_every_offset_as_the_expansion_does() {
        let text = "a = \"${PLAIN}\" # ${NOPE}\nb = \"$${x}${KEY}y\"\nc = ${NUM}\n";
        let e = expand(text, &env);
        let map = e.offset_map();
        for offset in 0..=e.text.len() {
            assert_eq!(
                map.original_offset(offset),
                e.original_offset(offset),
                "{offset}"
            );
        }
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

    /// The files of the `${file:…}` tests: content by path, or the reason
    /// it cannot be read.
    fn files(path: &Path) -> Result<Vec<u8>, FileError> {
        let os = |code| Err(FileError::Io(std::io::Error::from_raw_os_error(code)));
        match path.to_str() {
            Some("/run/secret") => Ok(b"s3cr\"et\\x\n".to_vec()),
            Some("/run/plain") => Ok(b"abc".to_vec()),
            Some("/run/two-newlines") => Ok(b"abc\n\n".to_vec()),
            Some("/run/crlf") => Ok(b"abc\r\n".to_vec()),
            Some("/run/cr") => Ok(b"abc\r".to_vec()),
            Some("/run/quote") => Ok(b"it's\n".to_vec()),
            Some("/run/latin1") => Ok(b"caf\xe9\n".to_vec()),
            Some("/run/large") => Ok(vec![b'a'; FILE_VALUE_LIMIT + 1]),
            Some("/run/just-fits") => Ok(vec![b'a'; FILE_VALUE_LIMIT]),
            Some("/run/fits-with-newline") => Ok([&[b'a'; FILE_VALUE_LIMIT][..], b"\n"].concat()),
            Some("/run/fits-with-crlf") => Ok([&[b'a'; FILE_VALUE_LIMIT][..], b"\r\n"].concat()),
            Some("/run/over-with-newline") => {
                Ok([&[b'a'; FILE_VALUE_LIMIT + 1][..], b"\n"].concat())
            }
            Some("/run/bom") => Ok("\u{feff}s3cret\n".as_bytes().to_vec()),
            Some("/run/denied") => os(13),
            Some("/run/dir") => Err(FileError::NotAFile),
            _ => os(2),
        }
    }

    fn with_files(text: &str) -> Expanded {
        expand_with_files(text, &env, &files)
    }

    #[test]
    fn a_file_value_is_escaped_like_an_environment_value() {
        let text = "a = \"${file:/run/secret}\"\nb = \"x-${file:/run/plain}-${PLAIN}\"\n\
                    c = '${file:/run/plain}'\nd = \"\"\"\n${file:/run/secret}\"\"\"\n";
        let e = with_files(text);
        assert!(e.problems.is_empty(), "{:?}", e.problems);
        let v: toml::Table = toml::from_str(&e.text).unwrap();
        assert_eq!(v["a"].as_str(), Some("s3cr\"et\\x"));
        assert_eq!(v["b"].as_str(), Some("x-abc-abc"));
        assert_eq!(v["c"].as_str(), Some("abc"));
        assert_eq!(v["d"].as_str(), Some("s3cr\"et\\x"));
    }

    #[test]
    fn one_trailing_line_ending_is_taken_off_and_only_one() {
        for (path, want) in [
            ("/run/secret", "s3cr\"et\\x"),
            ("/run/plain", "abc"),
            ("/run/two-newlines", "abc\n"),
            ("/run/crlf", "abc"),
            ("/run/cr", "abc\r"),
        ] {
            let e = with_files(&format!("a = \"${{file:{path}}}\"\n"));
            assert!(e.problems.is_empty(), "{path}: {:?}", e.problems);
            let v: toml::Table = toml::from_str(&e.text).unwrap();
            assert_eq!(v["a"].as_str(), Some(want), "{path}");
        }
    }

    #[test]
    fn a_file_that_cannot_be_used_is_a_problem_at_its_reference() {
        for (reference, want) in [
            (
                "${file:run/secret}",
                "`${file:run/secret}` needs an absolute path",
            ),
            ("${file:}", "`${file:}` names no file"),
            (
                "${file:/run/none}",
                "cannot read `${file:/run/none}`: No such file or directory (os error 2)",
            ),
            (
                "${file:/run/denied}",
                "cannot read `${file:/run/denied}`: Permission denied (os error 13)",
            ),
            (
                "${file:/run/dir}",
                "cannot read `${file:/run/dir}`: not a regular file",
            ),
            (
                "${file:/run/latin1}",
                "`${file:/run/latin1}` is not UTF-8 text",
            ),
            ("${file:/run/large}", "`${file:/run/large}` is over 64 KiB"),
            (
                "${file:/run/over-with-newline}",
                "`${file:/run/over-with-newline}` is over 64 KiB",
            ),
            (
                "${file:/run/bom}",
                "`${file:/run/bom}` starts with a byte-order mark",
            ),
            (
                "${file:/run/${DIR}/key}",
                "`${file:…}` takes its path as written: a `${` inside it is not expanded",
            ),
            ("${file:/run/open", "`${file:` is not closed by `}`"),
        ] {
            let text = format!("ok = \"${{PLAIN}}\"\na = \"x{reference}\"\nb = \"${{NOPE}}\"\n");
            let e = with_files(&text);
            assert_eq!(e.problems.len(), 2, "{reference}: {:?}", e.problems);
            let (at, message) = &e.problems[0];
            assert_eq!(*at, text.find("${file").unwrap(), "{reference}: {message}");
            assert!(message.starts_with(want), "{reference}: {message}");
            // The reference after it is still read as one.
            assert!(e.problems[1].1.contains("`NOPE`"), "{:?}", e.problems);
        }
        let e = with_files("a = \"${file:/run/just-fits}\"\n");
        assert!(e.problems.is_empty(), "{:?}", e.problems);
    }

    /// The limit is the value's: 64 KiB and the line ending `echo` or a
    /// Windows editor writes after it fit.
    #[test]
    fn a_value_at_the_limit_fits_with_its_line_ending() {
        for path in [
            "/run/just-fits",
            "/run/fits-with-newline",
            "/run/fits-with-crlf",
        ] {
            let value = file_value(path, &files).map_err(|e| e.to_string());
            assert_eq!(value.map(|v| v.len()), Ok(FILE_VALUE_LIMIT), "{path}");
        }
        // From the disk too: read up to a value at the limit with its
        // `\r\n`, and a longer file is not taken for one cut short.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let at_limit = [&[b'a'; FILE_VALUE_LIMIT][..], b"\r\n"].concat();
        std::fs::write(&path, &at_limit).unwrap();
        let disk = |path: &Path| file_value(path.to_str().unwrap(), &read_file);
        assert_eq!(disk(&path).map(|v| v.len()).ok(), Some(FILE_VALUE_LIMIT));
        std::fs::write(&path, [&at_limit[..], b"b"].concat()).unwrap();
        assert!(matches!(disk(&path), Err(FileValueError::TooLarge(_))));
    }

    /// A byte-order mark first (Notepad's "UTF-8 with BOM") would stay in
    /// the value, a credential that never matches: a problem, which shows
    /// nothing of the content.
    #[test]
    fn a_byte_order_mark_is_a_problem_that_shows_no_content() {
        let text = "a = \"${file:/run/bom}\"\n";
        let e = with_files(text);
        assert_eq!(e.problems.len(), 1, "{:?}", e.problems);
        assert_eq!(e.problems[0].0, text.find("${").unwrap());
        assert!(!e.problems[0].1.contains("s3cret"), "{:?}", e.problems);
        // Elsewhere than first it is the value's own.
        let inside = |_: &Path| Ok("s3\u{feff}cret\n".as_bytes().to_vec());
        assert_eq!(
            file_value("/run/x", &inside).map_err(|e| e.to_string()),
            Ok("s3\u{feff}cret".to_owned())
        );
    }

    #[test]
    fn each_file_problem_reads_in_full() {
        for (path, want) in [
            (
                "",
                "`${file:}` names no file: write its absolute path, like `${file:/etc/callrelay/secret}`",
            ),
            (
                "run/secret",
                "`${file:run/secret}` needs an absolute path (one starting with `/`): a relative one would be read from wherever the relay was started",
            ),
            (
                "/run/dir",
                "cannot read `${file:/run/dir}`: not a regular file",
            ),
            (
                "/run/large",
                "`${file:/run/large}` is over 64 KiB: a file value is a secret, a line long",
            ),
            (
                "/run/latin1",
                "`${file:/run/latin1}` is not UTF-8 text (save it as UTF-8)",
            ),
            (
                "/run/bom",
                "`${file:/run/bom}` starts with a byte-order mark (U+FEFF): save the file without one",
            ),
        ] {
            let shown = file_value(path, &files).map_err(|e| e.to_string());
            assert_eq!(shown, Err(want.to_owned()), "{path}");
        }
    }

    #[test]
    fn a_file_that_cannot_be_used_in_a_string_stays_as_written_for_the_later_checks() {
        let text = "a = \"${file:/run/none}\"\nb = '${file:rel}'\nc = ${file:/run/none}\n";
        let e = with_files(text);
        assert_eq!(e.problems.len(), 3, "{:?}", e.problems);
        assert_eq!(e.unset, ["${file:/run/none}", "${file:rel}"]);
        assert!(
            e.text
                .starts_with("a = \"${file:/run/none}\"\nb = '${file:rel}'\nc = \n")
        );
        // A nested or open reference is not one the checks can read past.
        for text in ["a = \"${file:/${X}}\"\n", "a = \"${file:/x\"\n"] {
            assert!(with_files(text).unset.is_empty(), "{text}");
        }
    }

    #[test]
    fn a_nested_reference_is_skipped_whole() {
        let text = "a = \"${file:${CREDENTIALS_DIRECTORY}/key}\" # ${NOPE}\n";
        let e = with_files(text);
        assert_eq!(e.problems.len(), 1, "{:?}", e.problems);
        assert_eq!(e.problems[0].0, text.find("${file").unwrap());
        // No second problem for the variable inside.
        assert!(
            !e.problems[0].1.contains("CREDENTIALS_DIRECTORY"),
            "{:?}",
            e.problems
        );
    }

    #[test]
    fn an_escaped_file_reference_is_literal_text() {
        let e = with_files("a = \"$${file:x}\" # ${file:rel}\nb = '$${file:/run/none}'\n");
        assert!(e.problems.is_empty(), "{:?}", e.problems);
        let v: toml::Table = toml::from_str(&e.text).unwrap();
        assert_eq!(v["a"].as_str(), Some("${file:x}"));
        assert_eq!(v["b"].as_str(), Some("${file:/run/none}"));
    }

    #[test]
    fn a_file_value_is_never_shown_only_its_reference() {
        let text = "a = \"${file:/run/plain}\"\nq = '${file:/run/quote}'\n";
        let e = with_files(text);
        let value = e.text.find("abc").unwrap();
        let written = e
            .original_span_if_expanded(value - 1..value + 4)
            .map(|r| &text[r]);
        assert_eq!(written, Some("\"${file:/run/plain}\""));
        assert_eq!(e.original_offset(value + 2), text.find("${file").unwrap());
        assert_eq!(
            e.redact("invalid value \"abc\" and `abc`", text),
            "invalid value \"${file:/run/plain}\" and `${file:/run/plain}`"
        );
        // A content that cannot go in a literal string is said as a file's.
        assert_eq!(e.problems.len(), 1, "{:?}", e.problems);
        assert!(
            e.problems[0]
                .1
                .starts_with("a file's content with a quote or newline"),
            "{:?}",
            e.problems
        );
        assert!(!e.problems[0].1.contains("it's"), "{:?}", e.problems);
    }

    #[test]
    fn the_disk_reader_reads_a_regular_file_only_and_no_more_than_its_read_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(read_file(&path).unwrap(), b"s3cret\n");
        std::fs::write(&path, vec![b'a'; 3 * FILE_VALUE_LIMIT]).unwrap();
        assert_eq!(read_file(&path).unwrap().len(), FILE_READ_LIMIT);
        assert!(matches!(read_file(dir.path()), Err(FileError::NotAFile)));
        let missing = read_file(&dir.path().join("none")).unwrap_err();
        assert!(
            matches!(&missing, FileError::Io(e) if e.kind() == std::io::ErrorKind::NotFound),
            "{missing}"
        );
    }

    /// A secret anyone on the host can read was taken without a word,
    /// while the journal's file gets such a warning. Warned, not refused:
    /// a config that started before must still start after an upgrade.
    #[test]
    fn a_file_secret_readable_by_everyone_is_warned_by_name_not_content() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "hunter2-s3cret\n").unwrap();
        let chmod = |mode| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
        chmod(0o644).unwrap();
        let mut read = None;
        let logged = crate::logging::tests_support::logged_json(|| read = Some(read_file(&path)));
        assert_eq!(read.unwrap().unwrap(), b"hunter2-s3cret\n");
        let line: serde_json::Value = serde_json::from_str(logged.trim()).expect(&logged);
        assert_eq!(line["level"], "WARN", "{logged}");
        assert_eq!(line["path"], path.display().to_string(), "{logged}");
        assert_eq!(line["mode"], "644", "{logged}");
        let message = line["message"].as_str().unwrap();
        // Both ways, by a group the service runs with: the fixed account's,
        // and under the shipped unit's `DynamicUser=yes` a static group it
        // is given. Not a `LoadCredential=` copy: its path under
        // /run/credentials/ is the unit's own, which `callrelay compact`
        // (the relay stopped) and a `systemd-run … check` cannot read.
        for said in [
            "readable by everyone",
            "chmod 0640",
            "root:callrelay",
            "fixed account",
            "DynamicUser=yes",
            "`SupplementaryGroups=",
            "groupadd --system",
            "deploy/README.md §3",
        ] {
            assert!(message.contains(said), "{said:?} in {message}");
        }
        for unsaid in ["LoadCredential", "/run/credentials"] {
            assert!(!message.contains(unsaid), "{unsaid:?} in {message}");
        }
        assert!(!logged.contains("hunter2"), "{logged}");
        for private in [0o640, 0o600, 0o400] {
            chmod(private).unwrap();
            let logged = crate::logging::tests_support::logged_json(|| {
                read_file(&path).unwrap();
            });
            assert_eq!(logged, "", "{private:o}");
        }
    }

    /// A file named twice (a credential rotated as a list's two values, one
    /// secret for two accounts) was warned once per reference: it is read,
    /// and warned, once per expansion, and both references get its value.
    #[test]
    fn a_file_named_twice_is_read_and_warned_once_per_load() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = format!(
            "a = \"${{file:{p}}}\"\nb = [\"${{file:{p}}}\"]\n",
            p = path.display()
        );
        let mut expanded = None;
        let logged = crate::logging::tests_support::logged_json(|| {
            expanded = Some(expand_with_files(&text, &|_| None, &read_file));
        });
        let expanded = expanded.unwrap();
        assert!(expanded.problems.is_empty(), "{:?}", expanded.problems);
        assert_eq!(expanded.text, "a = \"s3cret\"\nb = [\"s3cret\"]\n");
        assert_eq!(logged.lines().count(), 1, "{logged}");
        // The next load reads it again, and says it again.
        let again = crate::logging::tests_support::logged_json(|| {
            expand_with_files(&text, &|_| None, &read_file);
        });
        assert_eq!(again.lines().count(), 1, "{again}");
    }

    /// The once-per-load reads are keyed by the path as written: `Path`
    /// compares by component, so `${file:/etc/cs}` and `${file:/etc/cs/}`
    /// shared a read and the config loaded or not by their order. The one
    /// with a `/` names a directory, which a file is not, in either order.
    #[test]
    fn a_file_and_its_path_with_a_trailing_slash_are_read_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cs");
        std::fs::write(&path, "s3cret\n").unwrap();
        let p = path.display();
        for text in [
            format!("a = \"${{file:{p}}}\"\nb = \"${{file:{p}/}}\"\n"),
            format!("b = \"${{file:{p}/}}\"\na = \"${{file:{p}}}\"\n"),
        ] {
            let expanded = expand_with_files(&text, &|_| None, &read_file);
            assert_eq!(
                expanded.problems.len(),
                1,
                "{text}: {:?}",
                expanded.problems
            );
            let (at, why) = &expanded.problems[0];
            assert!(
                text[*at..].starts_with("${file:") && text[*at..].contains("/}"),
                "{text}"
            );
            assert!(why.contains(&format!("{p}/")), "{why}");
            assert!(
                expanded.text.contains("a = \"s3cret\""),
                "{}",
                expanded.text
            );
        }
    }

    /// A FIFO is refused (a reload would wait in `open` for a writer that
    /// never comes; that the open never waits, even for one swapped in
    /// after the check, is `regular_file`'s test, under a timeout).
    #[test]
    fn a_fifo_in_place_of_the_file_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("secret");
        crate::regular_file::hung_file::make(&fifo);
        assert!(matches!(read_file(&fifo), Err(FileError::NotAFile)));
    }

    #[test]
    fn escaped_quote_does_not_end_a_string() {
        let e = expand("a = \"x\\\" # ${PLAIN}\"\n", &env);
        assert!(e.text.contains("abc"));
    }
}
