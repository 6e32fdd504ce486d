//! The secrets a source sends a server, masked in the text that server sends
//! back (a refusal, an error event): a server that echoes its request, or the
//! credentials it refuses, would otherwise put them in WARN lines and
//! `/status`. Shared by Voip24h (its `key` and `secret`) and SPRecord (its
//! headers, its url's password and query values).
//!
//! Guarantees: every secret given to [`Masked::new`] is `***` in what
//! [`Masked::mask`] returns, as written or as JSON escapes it. A caller
//! that cuts the text must cut after masking, and read at least
//! [`Masked::widest`] bytes past its cut, or the cut could leave the start of
//! one; a text read up to a limit, with more after it, is masked by
//! [`Masked::mask_read`], which also drops the start of a secret at its end
//! (masking shortens the text, so what follows a masked secret moves into
//! what a cut keeps).

use crate::config::Secret;

#[derive(Clone, Default)]
pub struct Masked(Vec<Secret>);

impl Masked {
    /// Empty secrets are left out: they would match everywhere.
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Masked {
        let mut secrets: Vec<Secret> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        // The longer first: one inside the other leaves no part of either.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
        Masked(secrets)
    }

    /// `text` with every secret in it shown as `***`, as written or as JSON
    /// escapes it (an object echoed back: `"`, `\`, and PHP's `\/` for `/`).
    pub fn mask(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.0 {
            for form in forms(secret) {
                if !form.is_empty() {
                    text = text.replace(&form, "***");
                }
            }
        }
        text
    }

    /// As [`mask`](Self::mask), for a text read up to a limit with more
    /// after it (`cut`): a secret's start at its end, whose rest was not
    /// read, is dropped rather than shown. Masked first: a whole secret at
    /// the end whose last bytes are also a secret's start (its own first
    /// letter) would lose them and then not be found.
    pub fn mask_read(&self, text: &str, cut: bool) -> String {
        let mut masked = self.mask(text);
        if !cut {
            return masked;
        }
        // A character cut in two by the limit reads as U+FFFD; what is
        // before it may be a secret's start.
        masked.truncate(masked.trim_end_matches('\u{FFFD}').len());
        // Each start as masking left it: a secret's start holding another
        // whole secret (`abcd` of `abcdef`, with `cd`) reads `ab***`.
        let partial = self
            .0
            .iter()
            .flat_map(forms)
            .filter_map(|form| longest_masked_start_at_end(&masked, &form, self))
            .max()
            .unwrap_or(0);
        masked.truncate(masked.len() - partial);
        masked
    }

    /// The most bytes one secret takes in a text, in any form [`mask`](Self::mask)
    /// finds: how far past a cut to read so that no secret straddles it.
    pub fn widest(&self) -> usize {
        self.0
            .iter()
            .flat_map(forms)
            .map(|form| form.len())
            .max()
            .unwrap_or(0)
    }
}

/// The length, as `masked` shows it, of the longest proper start of `form`
/// that the masked text ends with, if any.
fn longest_masked_start_at_end(text: &str, form: &str, masked: &Masked) -> Option<usize> {
    (1..form.len())
        .filter(|len| form.is_char_boundary(*len))
        .map(|len| masked.mask(&form[..len]))
        .filter(|start| text.ends_with(start.as_str()))
        .map(|start| start.len())
        .max()
}

/// The forms of `secret` looked for: as written, JSON-escaped, and that
/// with PHP's `\/`.
fn forms(secret: &Secret) -> [String; 3] {
    let plain = secret.expose();
    let quoted = serde_json::to_string(plain).unwrap_or_default();
    let escaped = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(plain);
    let slashes_escaped = escaped.replace('/', "\\/");
    [plain.to_owned(), escaped.to_owned(), slashes_escaped]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_widest_form_counts_the_escapes() {
        let masked = Masked::new([Secret::new("a/\"b"), Secret::new("")]);
        // `a\/\"b`: six bytes against four as written.
        assert_eq!(masked.widest(), 6);
        assert_eq!(masked.mask(r#"{"k":"a\/\"b"} a/"b"#), r#"{"k":"***"} ***"#);
        assert_eq!(Masked::default().widest(), 0);
        assert_eq!(Masked::new([Secret::new("")]).mask("text"), "text");
    }

    #[test]
    fn a_read_cut_drops_a_secrets_start_at_its_end() {
        let masked = Masked::new([Secret::new("b-secret-1")]);
        let read = "sent b-secret-1, then b-secr";
        assert_eq!(masked.mask_read(read, true), "sent ***, then ");
        assert_eq!(
            masked.mask_read(read, false),
            "sent ***, then b-secr",
            "all of it was read"
        );
        assert_eq!(masked.mask_read("x b-secret-1", true), "x ***");
        assert_eq!(masked.mask_read("b-s\u{FFFD}", true), "");
        assert_eq!(masked.mask_read("nothing", true), "nothing");
        // A whole secret ending with its own first letter, at the end.
        let masked = Masked::new([Secret::new("k9aZ3k")]);
        assert_eq!(
            masked.mask_read("invalid token k9aZ3k", true),
            "invalid token ***"
        );
        // A secret's start that holds another whole secret.
        let masked = Masked::new([Secret::new("abcdef"), Secret::new("cd")]);
        assert_eq!(masked.mask_read("x abcd", true), "x ");
    }
}
