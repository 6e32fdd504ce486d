//! How problems in a config file are collected and reported: each with its
//! byte span, turned into `FILE:LINE:COL: message` lines, sorted, with a
//! total at the end of a long list.
//!
//! Guarantees: a value that came from `${ENV}` or `${file:…}` is quoted as
//! the config file writes it, never as the environment's value or the named
//! file's content (it may hold a password).

use std::fmt;
use std::ops::Range;

use toml::Spanned;

use super::env;

/// One problem in a config file, with its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Every problem found in one config file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// One problem with the file as a whole (it cannot be read, it is
    /// gone), placed at 1:1.
    pub fn of_whole_file(path: &std::path::Path, message: String) -> ConfigError {
        ConfigError {
            file: path.display().to_string(),
            problems: vec![Problem {
                line: 1,
                col: 1,
                message,
            }],
        }
    }

    /// Each problem as `FILE:LINE:COL: message`, then the total of a list of
    /// several. A log writes each as its own line: one record holding them
    /// all is one line with `\n` escaped in it.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .problems
            .iter()
            .map(|p| format!("{}:{}:{}: {}", self.file, p.line, p.col, p.message))
            .collect();
        // A long list is read from its end first (scale audit: 270 lines
        // and no total); `check`, a refused start and a refused reload all
        // print it.
        if self.problems.len() > 1 {
            lines.push(format!("{}: {} problems", self.file, self.problems.len()));
        }
        lines
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines().join("\n"))
    }
}

/// Collects problems with their byte spans and turns them into lines and columns.
pub struct Validator<'a> {
    text: &'a str,
    pub(super) problems: Vec<(usize, String)>,
    /// When `text` is the result of `${ENV}` expansion: the expansion and the
    /// text as written, so values from the environment are never shown.
    written: Option<(&'a env::Expanded, &'a str)>,
}

impl<'a> Validator<'a> {
    pub fn new(text: &'a str) -> Self {
        Validator {
            text,
            problems: Vec::new(),
            written: None,
        }
    }

    /// A validator of `expanded.text`, whose messages show values as `written`.
    pub(super) fn over_expansion(expanded: &'a env::Expanded, written: &'a str) -> Self {
        Validator {
            written: Some((expanded, written)),
            ..Validator::new(&expanded.text)
        }
    }

    /// `value` quoted for a message: as the file has it when a `${VAR}` stands
    /// in it (`"${LISTEN}"`, `"https://${HOST}/x"`), so the environment's
    /// value (it may hold a password, as in a URL's userinfo) never appears.
    pub fn shown<T: std::fmt::Debug>(&self, value: &Spanned<T>) -> String {
        self.written_if_expanded(value.span())
            .unwrap_or_else(|| format!("{:?}", value.get_ref()))
    }

    /// The file's text at `span` when a `${VAR}` or `${file:…}` stands in it.
    fn written_if_expanded(&self, span: Range<usize>) -> Option<String> {
        let (expanded, written) = self.written?;
        let span = expanded.original_span_if_expanded(span)?;
        Some(written.get(span).map_or_else(
            || "(a value from the environment or a file)".to_owned(),
            str::to_owned,
        ))
    }

    /// `value` for a message as the file writes it (`"24h"`, not its
    /// `Display` `"1d"`); its `Display` when it is a default; [`Self::shown`]
    /// when a `${VAR}` stands in it.
    pub fn as_written<T: std::fmt::Debug + std::fmt::Display>(&self, value: &Spanned<T>) -> String {
        let span = value.span();
        let expanded = self.written.is_some_and(|(expanded, _)| {
            expanded.original_span_if_expanded(span.clone()).is_some()
        });
        if expanded {
            return self.shown(value);
        }
        match self.text.get(span) {
            Some(text) if !text.is_empty() => text.to_owned(),
            _ => value.get_ref().to_string(),
        }
    }

    /// Reports a problem at the start of `span` (a default value reports at 1:1).
    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.problems.push((span.start, message.into()));
    }

    /// Reports a problem unless `lo <= value <= hi`; the value is shown as
    /// the file writes it when a `${VAR}` stands in it (a bare number from
    /// the environment is not quoted, so no later redaction would find it).
    pub fn check_range<T: PartialOrd + fmt::Display>(
        &mut self,
        field: &str,
        value: &Spanned<T>,
        lo: T,
        hi: T,
        shown: impl Fn(&T) -> String,
    ) {
        let v = value.get_ref();
        if *v < lo || *v > hi {
            let value_shown = self
                .written_if_expanded(value.span())
                .unwrap_or_else(|| shown(v));
            self.error(
                value.span(),
                format!(
                    "`{field}` = {value_shown} is out of range ({}..{})",
                    shown(&lo),
                    shown(&hi)
                ),
            );
        }
    }

    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn into_error(mut self, file: &str) -> Option<ConfigError> {
        if self.problems.is_empty() {
            return None;
        }
        self.problems.sort_by_key(|(offset, _)| *offset);
        let mut places = Places::new(self.text);
        let problems = self
            .problems
            .into_iter()
            .map(|(offset, message)| {
                let (line, col) = places.of(offset);
                Problem { line, col, message }
            })
            .collect();
        Some(ConfigError {
            file: file.to_owned(),
            problems,
        })
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// [`line_col`] of increasing offsets in one pass over the text: a file with
/// thousands of problems is not counted from its start for each.
struct Places<'a> {
    text: &'a str,
    at: usize,
    line: usize,
    line_start: usize,
}

impl<'a> Places<'a> {
    fn new(text: &'a str) -> Self {
        Places {
            text,
            at: 0,
            line: 1,
            line_start: 0,
        }
    }

    fn of(&mut self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        // Not after the last offset, or not on a character boundary.
        let Some(passed) = self.text.get(self.at..offset) else {
            return line_col(self.text, offset);
        };
        for (i, _) in passed.match_indices('\n') {
            self.line += 1;
            self.line_start = self.at + i + 1;
        }
        self.at = offset;
        let col = self.text[self.line_start..offset].chars().count() + 1;
        (self.line, col)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é=\nx", 3), (1, 3));
    }

    #[test]
    fn places_in_one_pass_agree_with_line_col() {
        let text = "ab\ncdé\n\nxyz\n";
        let mut places = Places::new(text);
        for offset in [0, 1, 2, 3, 5, 7, 8, 9, 10, 13, 14, 99] {
            assert_eq!(places.of(offset), line_col(text, offset), "{offset}");
        }
        // Not in order, or inside a character: still right.
        assert_eq!(places.of(4), line_col(text, 4));
        assert_eq!(places.of(6), line_col(text, 6));
    }
}
