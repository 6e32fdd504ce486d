//! Every TOML type error in a config file, not only the first: serde stops at
//! the first value it cannot take, so `check` would show one mistake per run.
//!
//! The document is parsed once into its spanned tree, then each top-level
//! entry, each `[[array]]` element and each key inside them is deserialized
//! on its own, alone in an otherwise empty file. Spans stay those of the
//! whole text. A lone key's "missing field" errors belong to its table, not
//! to it, so from the per-key passes only errors inside the key itself are
//! kept; the per-entry and per-element passes keep theirs whole.
//!
//! Guarantees: never panics, whatever the text; the errors are all real
//! (each is what serde says of a part of the file as written); a text that
//! does not parse as TOML yields none (its syntax error is the caller's).

use std::collections::HashSet;
use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeArray, DeString, DeTable, DeValue, Deserializer, Error};

/// The type errors of each part of `text` as `T` (the whole file's model),
/// deduplicated, in no particular order.
pub fn every_type_error<T: DeserializeOwned>(text: &str) -> Vec<Error> {
    let Ok(root) = DeTable::parse(text) else {
        return Vec::new();
    };
    let root_span = root.span();
    let mut found = Found::default();
    for (name, entry) in root.get_ref().iter() {
        // A document holding only this entry, as `value` placed at `span`.
        let alone = |value, span| {
            Spanned::new(
                root_span.clone(),
                single_entry(name, Spanned::new(span, value)),
            )
        };
        found.whole::<T>(alone(entry.get_ref().clone(), entry.span()));
        match entry.get_ref() {
            DeValue::Table(table) => {
                for (key, value) in table.iter() {
                    found.inside::<T>(alone(lone_key(key, value), nowhere(text)), key, value);
                }
            }
            DeValue::Array(items) => {
                for item in items.iter() {
                    let DeValue::Table(table) = item.get_ref() else {
                        continue;
                    };
                    found.whole::<T>(alone(array_of(item.clone()), entry.span()));
                    for (key, value) in table.iter() {
                        let element = Spanned::new(nowhere(text), lone_key(key, value));
                        found.inside::<T>(alone(array_of(element), entry.span()), key, value);
                    }
                }
            }
            _ => {}
        }
    }
    found.errors
}

#[derive(Default)]
struct Found {
    errors: Vec<Error>,
    /// Place and message of each kept error: a file of thousands of bad
    /// entries must not cost a scan of the list per error.
    seen: HashSet<(Option<Range<usize>>, String)>,
}

impl Found {
    /// Keeps the error of a document holding one entry or element.
    fn whole<T: DeserializeOwned>(&mut self, document: Spanned<DeTable<'_>>) {
        if let Err(e) = T::deserialize(Deserializer::from(document)) {
            self.keep(e);
        }
    }

    /// Keeps the error of a document holding one key, if it lies in that key.
    fn inside<T: DeserializeOwned>(
        &mut self,
        document: Spanned<DeTable<'_>>,
        key: &Spanned<DeString<'_>>,
        value: &Spanned<DeValue<'_>>,
    ) {
        let own = key.span().start..value.span().end;
        if let Err(e) = T::deserialize(Deserializer::from(document))
            && e.span().is_some_and(|span| own.contains(&span.start))
        {
            self.keep(e);
        }
    }

    fn keep(&mut self, error: Error) {
        if self.seen.insert((error.span(), error.message().to_owned())) {
            self.errors.push(error);
        }
    }
}

fn array_of<'i>(element: Spanned<DeValue<'i>>) -> DeValue<'i> {
    let mut array = DeArray::new();
    array.push(element);
    DeValue::Array(array)
}

/// A span past the end of the text: errors reported there belong to a table
/// built here, not to anything in the file, and are dropped.
fn nowhere(text: &str) -> Range<usize> {
    text.len() + 1..text.len() + 1
}

fn single_entry<'i>(key: &Spanned<DeString<'i>>, value: Spanned<DeValue<'i>>) -> DeTable<'i> {
    let mut table = DeTable::new();
    table.insert(key.clone(), value);
    table
}

/// A table holding only `key`.
fn lone_key<'i>(key: &Spanned<DeString<'i>>, value: &Spanned<DeValue<'i>>) -> DeValue<'i> {
    DeValue::Table(single_entry(key, value.clone()))
}
