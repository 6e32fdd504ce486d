//! `[websocket]`: the fan-out endpoint.
//!
//! Guarantees: a config that validates can be served. `path` is a route axum
//! accepts and that no other route of the relay holds (the operational
//! endpoints, `/hooks/...`), so `run` cannot panic building its router; the
//! ping settings are within 1 s..1 h (a zero period would panic every
//! session's timer); an open fan-out (no tokens) is refused on a listener
//! that is not loopback.
//!
//! Each entry of `tokens` is a string (the token opens every account's
//! events) or a table `{ token = "…", accounts = ["hn", "sg"] }` (it opens
//! those accounts' only; see [`super::auth::Scope`]). `${VAR}` and
//! `${file:…}` are expanded in the text before it is parsed, so they work in
//! a table's `token` as in a string. A config that validates has no empty
//! token, no empty `accounts` (which would show a screen nothing), no
//! account in a scope that no configured source has (a typo would show a
//! screen nothing, silently; checked by [`WebSocketConfig::validate_scopes_of`],
//! which needs the sources), and no token given twice where either entry
//! has `accounts` (two scopes for one token would be ambiguous). Tokens are
//! never quoted, nor their digests shown; [`Tokens`] keys each by its
//! SHA-256 digest when the config is read, so that a check, and the search
//! for a token given twice, look a digest up rather than compare tokens
//! with one another.

use std::collections::HashMap;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use sha2::Digest;
use toml::Spanned;

use crate::config::{ByteSize, HumanDuration, Secret, ServerConfig, Validator, unspanned};
use crate::event::Vendor;

/// The relay's own routes beside the fan-out (see `crate::server::router`).
const FIXED_ROUTES: [&str; 4] = ["/healthz", "/readyz", "/metrics", "/status"];
/// Where the webhooks are served (`/hooks/{vendor}/{account}`).
const HOOKS: &str = "/hooks";
/// The shortest and longest ping settings accepted: a zero period panics
/// tokio's interval, and an hour is already far past any proxy's idle timeout.
const PING_RANGE: (HumanDuration, HumanDuration) =
    (HumanDuration::from_secs(1), HumanDuration::from_secs(3600));
/// The least `replay_memory`: one replay page (a smaller budget could
/// never hold the page a replay reads).
const LEAST_REPLAY_MEMORY: ByteSize = ByteSize(1024 * 1024);
/// The most `replay_memory`: past this, the bound no longer bounds anything
/// a host that runs the relay has.
const MOST_REPLAY_MEMORY: ByteSize = ByteSize(64 * 1024 * 1024 * 1024);

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketConfig {
    #[serde(default = "default_path")]
    pub path: Spanned<String>,
    /// Accepted bearer tokens, each with the accounts it opens; empty: no
    /// auth (allowed only on a loopback listener).
    #[serde(default = "default_tokens")]
    pub tokens: Spanned<Tokens>,
    #[serde(default = "default_max_clients")]
    pub max_clients: Spanned<usize>,
    /// Events matching a client's filters buffered for it before it is closed as slow (4008).
    #[serde(default = "default_client_queue")]
    pub client_queue: Spanned<usize>,
    #[serde(default = "default_ping_interval")]
    pub ping_interval: Spanned<HumanDuration>,
    #[serde(default = "default_pong_timeout")]
    pub pong_timeout: Spanned<HumanDuration>,
    /// With no tokens: the browser origins (`scheme://host[:port]`) besides
    /// this machine's whose pages may open the fan-out; `"*"` for any.
    #[serde(default = "default_allowed_origins")]
    pub allowed_origins: Spanned<Vec<String>>,
    /// Journal history every session's replay holds in memory at once, at
    /// most (a page is up to 1 MiB): read at start.
    #[serde(default = "default_replay_memory")]
    pub replay_memory: Spanned<ByteSize>,
}

fn default_path() -> Spanned<String> {
    unspanned("/ws".to_owned())
}
fn default_tokens() -> Spanned<Tokens> {
    unspanned(Tokens::default())
}
/// `max_clients` when the config leaves it unset.
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;

fn default_max_clients() -> Spanned<usize> {
    unspanned(DEFAULT_MAX_CLIENTS)
}
fn default_client_queue() -> Spanned<usize> {
    unspanned(1024)
}
fn default_ping_interval() -> Spanned<HumanDuration> {
    unspanned(HumanDuration::from_secs(25))
}
fn default_pong_timeout() -> Spanned<HumanDuration> {
    unspanned(HumanDuration::from_secs(10))
}
fn default_allowed_origins() -> Spanned<Vec<String>> {
    unspanned(Vec::new())
}
fn default_replay_memory() -> Spanned<ByteSize> {
    unspanned(ByteSize(64 * 1024 * 1024))
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            path: default_path(),
            tokens: default_tokens(),
            max_clients: default_max_clients(),
            client_queue: default_client_queue(),
            ping_interval: default_ping_interval(),
            pong_timeout: default_pong_timeout(),
            allowed_origins: default_allowed_origins(),
            replay_memory: default_replay_memory(),
        }
    }
}

/// `websocket.tokens`: its entries in the order written (a slice, through
/// `Deref`), and the SHA-256 digest of each token keyed to the first entry
/// that gives it. Built once per config read (at start and at each reload),
/// so that a check costs one digest of the presented token and one look-up,
/// however many tokens there are: compared with every entry, 10,000 tokens
/// (one per screen, as docs/websocket.md advises) cost each upgrade, and
/// each running session at each reload, about 0.5 ms (cost audit,
/// 2026-12-07). Equal when the entries are; its `Debug` shows the entries
/// only (whose tokens show as `***`): a digest would let a weak token be
/// guessed offline.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<TokenEntry>,
    first_by_digest: HashMap<TokenDigest, usize>,
}

/// A token's SHA-256 digest.
pub type TokenDigest = [u8; 32];

/// The digest [`Tokens`] keys a token by.
pub fn token_digest(token: &[u8]) -> TokenDigest {
    sha2::Sha256::digest(token).into()
}

impl Tokens {
    /// The first entry whose token has `digest`, if any.
    pub fn first_with_digest(&self, digest: &TokenDigest) -> Option<usize> {
        self.first_by_digest.get(digest).copied()
    }

    /// Whether `other` accepts the same tokens, each with the same scope,
    /// however its entries are ordered or its accounts listed: what a
    /// running session's check depends on.
    pub fn admit_alike(&self, other: &Tokens) -> bool {
        let scope_at = |tokens: &Tokens, at: usize| tokens.get(at).map(super::auth::Scope::of);
        self.first_by_digest.len() == other.first_by_digest.len()
            && self.first_by_digest.iter().all(|(digest, &at)| {
                other
                    .first_with_digest(digest)
                    .is_some_and(|theirs| scope_at(self, at) == scope_at(other, theirs))
            })
    }

    /// The first entry before entry `i` that gives the same token, if one does.
    pub fn earlier_alike(&self, i: usize) -> Option<usize> {
        let token = self.entries.get(i)?.token.get_ref().expose().as_bytes();
        let first = self.first_with_digest(&token_digest(token))?;
        (first < i).then_some(first)
    }
}

impl From<Vec<TokenEntry>> for Tokens {
    fn from(entries: Vec<TokenEntry>) -> Tokens {
        let mut first_by_digest = HashMap::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let token = entry.token.get_ref().expose().as_bytes();
            first_by_digest.entry(token_digest(token)).or_insert(i);
        }
        Tokens {
            entries,
            first_by_digest,
        }
    }
}

impl std::ops::Deref for Tokens {
    type Target = [TokenEntry];
    fn deref(&self) -> &[TokenEntry] {
        &self.entries
    }
}

impl PartialEq for Tokens {
    fn eq(&self, other: &Tokens) -> bool {
        self.entries == other.entries
    }
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.entries).finish()
    }
}

impl<'de> Deserialize<'de> for Tokens {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Tokens, D::Error> {
        Vec::<TokenEntry>::deserialize(d).map(Tokens::from)
    }
}

/// One entry of `websocket.tokens`: a string, which opens every account's
/// events, or `{ token = "…", accounts = ["hn", "sg"] }`, which opens those
/// accounts' only (`accounts` left out: every account). Its `Debug` hides the
/// token ([`Secret`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TokenEntry {
    /// The string itself, or the table's `token`: where a problem with the
    /// token is placed.
    pub token: Spanned<Secret>,
    /// `None`: every account.
    pub accounts: Option<Spanned<AccountList>>,
}

impl TokenEntry {
    /// A token that opens every account, as a string entry does.
    #[cfg(test)]
    pub fn every_account(token: impl Into<String>) -> TokenEntry {
        TokenEntry {
            token: unspanned(Secret::new(token)),
            accounts: None,
        }
    }

    /// A token that opens `accounts` only, as a table entry does.
    #[cfg(test)]
    pub fn scoped(token: impl Into<String>, accounts: &[&str]) -> TokenEntry {
        let accounts = accounts
            .iter()
            .map(|a| unspanned((*a).to_owned()))
            .collect();
        TokenEntry {
            token: unspanned(Secret::new(token)),
            accounts: Some(unspanned(AccountList(accounts))),
        }
    }

    /// Whether it opens only some accounts.
    pub fn is_scoped(&self) -> bool {
        self.accounts.is_some()
    }
}

/// The table form of an entry, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenTable {
    token: Spanned<Secret>,
    #[serde(default)]
    accounts: Option<Spanned<AccountList>>,
}

/// A token's `accounts`, each with its place. Its own type for the words of
/// a refusal: serde's "expected a sequence" says nothing to the file's reader.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountList(pub Vec<Spanned<String>>);

impl std::ops::Deref for AccountList {
    type Target = [Spanned<String>];
    fn deref(&self) -> &[Spanned<String>] {
        &self.0
    }
}

impl<'de> Deserialize<'de> for AccountList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AccountList, D::Error> {
        struct List;
        impl<'de> Visitor<'de> for List {
            type Value = AccountList;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of account names, like [\"hn\", \"sg\"]")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<AccountList, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<Spanned<String>>()? {
                    names.push(name);
                }
                Ok(AccountList(names))
            }
        }
        d.deserialize_seq(List)
    }
}

/// An entry before its place is known: a string, or a table.
enum EntryForm {
    String(Secret),
    Table(TokenTable),
}

impl<'de> Deserialize<'de> for EntryForm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<EntryForm, D::Error> {
        struct Form;
        impl<'de> Visitor<'de> for Form {
            type Value = EntryForm;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a token string, or a table { token = \"…\", accounts = [\"…\"] }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EntryForm, E> {
                Ok(EntryForm::String(Secret::new(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<EntryForm, A::Error> {
                // The map's own keys and values are still the TOML
                // deserializer's: unknown keys and type errors keep their place.
                TokenTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(EntryForm::Table)
            }
        }
        d.deserialize_any(Form)
    }
}

impl<'de> Deserialize<'de> for TokenEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TokenEntry, D::Error> {
        let entry = Spanned::<EntryForm>::deserialize(d)?;
        let span = entry.span();
        Ok(match entry.into_inner() {
            EntryForm::String(token) => TokenEntry {
                token: Spanned::new(span, token),
                accounts: None,
            },
            EntryForm::Table(table) => TokenEntry {
                token: table.token,
                accounts: table.accounts,
            },
        })
    }
}

impl WebSocketConfig {
    /// No tokens on a listener that is not loopback: anyone who can reach it
    /// could read every event.
    pub fn open_to_anyone(&self, server: &ServerConfig) -> bool {
        self.tokens.get_ref().is_empty() && !server.is_loopback()
    }

    /// Whether `other` lets in the clients this lets in, each with the same
    /// scope: the same tokens and scopes, or, with no tokens, the same
    /// `allowed_origins` (what a running session is judged by again after
    /// a reload, see `session::Session::still_authorized`).
    pub fn admits_as(&self, other: &WebSocketConfig) -> bool {
        let (mine, theirs) = (self.tokens.get_ref(), other.tokens.get_ref());
        mine.admit_alike(theirs)
            && (!mine.is_empty() || self.allowed_origins == other.allowed_origins)
    }

    /// Where an open fan-out is reported: the tokens when written; tokens left
    /// out have no place in the file, so the listener that makes their
    /// absence a problem.
    pub fn open_fan_out_span(&self, server: &ServerConfig) -> std::ops::Range<usize> {
        if self.tokens.span().is_empty() {
            server.listen.span()
        } else {
            self.tokens.span()
        }
    }

    pub fn validate(&self, v: &mut Validator, server: &ServerConfig) {
        let path = self.path.get_ref();
        if let Err(why) = check_path(path) {
            let message = format!("`path` = {} {why}", v.shown(&self.path));
            v.error(self.path.span(), message);
        }
        if self.open_to_anyone(server) {
            v.error(
                self.open_fan_out_span(server),
                "`websocket.tokens` is empty but `server.listen` is not loopback: anyone could read every event; set tokens",
            );
        }
        if self
            .tokens
            .get_ref()
            .iter()
            .any(|t| t.token.get_ref().is_empty())
        {
            v.error(self.tokens.span(), "a websocket token must not be empty");
        }
        self.validate_entries(v);
        for origin in self.allowed_origins.get_ref() {
            if let Err(why) = super::auth::check_allowed_origin(origin) {
                v.error(
                    self.allowed_origins.span(),
                    format!("`allowed_origins` entry {origin:?} {why}"),
                );
            }
        }
        v.check_range(
            "max_clients",
            &self.max_clients,
            1,
            1_000_000,
            usize::to_string,
        );
        v.check_range(
            "client_queue",
            &self.client_queue,
            1,
            1_000_000,
            usize::to_string,
        );
        v.check_range(
            "replay_memory",
            &self.replay_memory,
            LEAST_REPLAY_MEMORY,
            MOST_REPLAY_MEMORY,
            ByteSize::to_string,
        );
        for (field, value) in [
            ("ping_interval", &self.ping_interval),
            ("pong_timeout", &self.pong_timeout),
        ] {
            v.check_range(
                field,
                value,
                PING_RANGE.0,
                PING_RANGE.1,
                HumanDuration::to_string,
            );
        }
    }
}

impl WebSocketConfig {
    /// What each entry of `tokens` must hold on its own, and across
    /// entries: an `accounts` list that names some account, and no token
    /// given twice with a scope (which of the two scopes would apply?). A
    /// token given twice with no scope at all (a rotation half done) opens
    /// every account either way, and is accepted as it always was.
    fn validate_entries(&self, v: &mut Validator) {
        let entries = self.tokens.get_ref();
        for (i, entry) in entries.iter().enumerate() {
            if let Some(accounts) = &entry.accounts
                && accounts.get_ref().is_empty()
            {
                v.error(
                    accounts.span(),
                    "`accounts` is empty: a screen with this token would see no event; \
                     leave `accounts` out to allow every account",
                );
            }
            if entry.token.get_ref().is_empty() {
                continue;
            }
            // A `Bearer` token is taken without the spaces around it: a
            // scoped token with them could never be sent that way, and with
            // them trimmed it might be another entry's token of every account.
            let text = entry.token.get_ref().expose();
            if entry.is_scoped() && text.trim_ascii() != text {
                v.error(
                    entry.token.span(),
                    "this token begins or ends with whitespace, which `Authorization: Bearer` \
                     drops: write it without",
                );
            }
            // By digest: compared with every earlier entry, 10,000 tokens
            // took `check`, and each reload, seconds. The message says
            // where the first is, never the value.
            if let Some(first) = entries.earlier_alike(i)
                && (entry.is_scoped() || entries[first].is_scoped())
            {
                v.error(
                    entry.token.span(),
                    format!(
                        "this token is also entry {} of `websocket.tokens`: one token with \
                         two entries, one of them with `accounts`, would leave unclear which \
                         accounts it opens; give each token once",
                        first + 1
                    ),
                );
            }
        }
    }

    /// Each account a token's `accounts` names must be one a configured
    /// source (`[[voip24h]]`, `[[sprecord]]`, `[[webhook]]`) has: a typo
    /// would show the token's screens nothing, silently. `sources` is
    /// `Config::accounts()`.
    pub fn validate_scopes_of(&self, v: &mut Validator, sources: &[(Vendor, &Spanned<String>)]) {
        let scoped = self
            .tokens
            .get_ref()
            .iter()
            .filter_map(|e| e.accounts.as_ref());
        for account in scoped.flat_map(|a| a.get_ref().iter()) {
            let known = sources
                .iter()
                .any(|(_, source)| source.get_ref() == account.get_ref());
            if !known {
                let message = format!(
                    "`accounts` names {}, which no [[voip24h]], [[sprecord]] or [[webhook]] \
                     has: a screen with this token would never see an event of it",
                    v.shown(account)
                );
                v.error(account.span(), message);
            }
        }
    }
}

/// Why `path` cannot be the fan-out's route; said after "`path` = …".
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum PathError {
    #[error("must start with '/'")]
    NoLeadingSlash,
    /// One of [`FIXED_ROUTES`].
    #[error("is the relay's own {0} endpoint; use another path, e.g. \"/ws\"")]
    RelaysOwn(&'static str),
    #[error("is under {HOOKS}/, where the webhooks are served")]
    UnderHooks,
    #[error(
        "must be segments of letters, digits, '-', '.', '_' and '~' between single '/'s \
         (no parameters like \":id\", \"{{id}}\" or \"*\")"
    )]
    NotPlain,
}

/// Why `path` cannot be the fan-out's route, if it cannot.
fn check_path(path: &str) -> Result<(), PathError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError::NoLeadingSlash);
    };
    if let Some(own) = FIXED_ROUTES.iter().find(|route| **route == path) {
        return Err(PathError::RelaysOwn(own));
    }
    if path == HOOKS || path.starts_with(&format!("{HOOKS}/")) {
        return Err(PathError::UnderHooks);
    }
    // "/" alone is a route; otherwise every segment must be plain text. axum
    // reads ':' and '*' at a segment's start and '{' '}' anywhere as
    // parameters (or panics on them), and an empty, "." or ".." segment is
    // one that browsers and proxies normalise away (`/a/../ws` is sent as
    // `/ws`, nginx merges `//`), so requests would miss the route.
    if rest.is_empty() {
        return Ok(());
    }
    let plain = |segment: &str| {
        !matches!(segment, "" | "." | "..")
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'))
    };
    if rest.split('/').all(plain) {
        Ok(())
    } else {
        Err(PathError::NotPlain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::{any, get};

    /// A source of account `hn` and one of `sg`, for the scopes to name.
    const SOURCES: &str = "[[webhook]]\nvendor = \"tel4vn\"\naccount = \"hn\"\napi_key = \"k\"\n\
                           [[voip24h]]\naccount = \"sg\"\nurl = \"http://127.0.0.1:1\"\nkey = \"k\"\n";

    fn env(name: &str) -> Option<String> {
        match name {
            "WS_TOKEN" => Some("token-from-env-918273645".to_owned()),
            _ => None,
        }
    }

    /// The config of `SOURCES` and `websocket`, or its problems as `check`
    /// prints them (the total line left out).
    fn load(websocket: &str) -> Result<crate::config::Config, Vec<String>> {
        let text = format!("{SOURCES}[websocket]\n{websocket}");
        let read = |path: &std::path::Path| match path.to_str() {
            Some("/run/secrets/ws") => Ok(b"token-from-file-5550123\n".to_vec()),
            _ => Err(crate::config::env::FileError::NotAFile),
        };
        crate::config::Config::from_text_with_files("relay.toml", &text, &env, &read).map_err(|e| {
            e.problems
                .iter()
                .map(|p| format!("{}:{}: {}", p.line, p.col, p.message))
                .collect()
        })
    }

    /// The tokens' scopes and values, in the list's order.
    fn scopes(config: &crate::config::Config) -> Vec<(String, Option<Vec<String>>)> {
        let tokens = config.websocket.tokens.get_ref();
        tokens
            .iter()
            .map(|t| {
                let accounts = t
                    .accounts
                    .as_ref()
                    .map(|a| a.get_ref().iter().map(|n| n.get_ref().clone()).collect());
                (t.token.get_ref().expose().to_owned(), accounts)
            })
            .collect()
    }

    /// The contract's plain strings and the table form, mixed in one list
    /// (TOML 1.0 allows it; toml 0.9 reads it), `${VAR}` and `${file:…}`
    /// inside a table's `token` as in a string; the token shows as `***`.
    #[test]
    fn tokens_are_strings_or_tables_with_accounts() {
        let config = load(
            "tokens = [\"plain\", { token = \"team-hn\", accounts = [\"hn\"] }, \
             { token = \"${WS_TOKEN}\", accounts = [\"sg\", \"hn\"] }, \
             { token = \"${file:/run/secrets/ws}\" }, \"${WS_TOKEN}x\"]\n",
        )
        .unwrap();
        let owned = |names: &[&str]| Some(names.iter().map(|n| n.to_string()).collect());
        assert_eq!(
            scopes(&config),
            [
                ("plain".to_owned(), None),
                ("team-hn".to_owned(), owned(&["hn"])),
                ("token-from-env-918273645".to_owned(), owned(&["sg", "hn"])),
                ("token-from-file-5550123".to_owned(), None),
                ("token-from-env-918273645x".to_owned(), None),
            ]
        );
        let shown = format!("{:?}", config.websocket);
        for secret in ["plain", "team-hn", "918273645", "5550123"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        // Nor a token's digest, which would let a weak token be guessed offline.
        let digest = format!("{:?}", token_digest(b"plain"));
        let digest_start: Vec<&str> = digest.split(", ").take(3).collect();
        assert!(!shown.contains(&digest_start.join(", ")), "{shown}");
        // The contract's form alone is read as it always was.
        let plain = load("tokens = [\"a\", \"b\"]\n").unwrap();
        assert_eq!(
            scopes(&plain),
            [("a".to_owned(), None), ("b".to_owned(), None)]
        );
    }

    /// Each refusal of a table entry, at its place (line 10, at `marker`),
    /// in `check`'s words.
    #[test]
    fn a_bad_token_table_is_refused_at_its_place() {
        for (websocket, marker, said) in [
            (
                "tokens = [{ token = \"t\", accounts = [] }]\n",
                "[]",
                "`accounts` is empty: a screen with this token would see no event; \
                 leave `accounts` out to allow every account",
            ),
            (
                "tokens = [{ token = \"t\", acounts = [\"hn\"] }]\n",
                "acounts",
                "unknown field `acounts`, expected `token` or `accounts`",
            ),
            (
                "tokens = [{ accounts = [\"hn\"] }]\n",
                "{",
                "`tokens`: missing field `token`",
            ),
            (
                "tokens = [{ token = \"t\", accounts = [\"hn\", \"hm\"] }]\n",
                "\"hm\"",
                "`accounts` names \"hm\", which no [[voip24h]], [[sprecord]] or \
                 [[webhook]] has: a screen with this token would never see an event of it",
            ),
            (
                "tokens = [{ token = \"t\", accounts = \"hn\" }]\n",
                "\"hn\"",
                "`accounts`: invalid type: string, expected a list of account names, like [\"hn\", \"sg\"]",
            ),
            (
                "tokens = [7]\n",
                "7",
                "`tokens`: invalid type: integer, expected a token string, or a table \
                 { token = \"…\", accounts = [\"…\"] }",
            ),
            (
                "tokens = [{ token = \"\", accounts = [\"hn\"] }]\n",
                "[",
                "a websocket token must not be empty",
            ),
            (
                "tokens = [\"abc\", { token = \"abc \", accounts = [\"hn\"] }]\n",
                "\"abc \"",
                "this token begins or ends with whitespace, which `Authorization: Bearer` \
                 drops: write it without",
            ),
        ] {
            let col = websocket.find(marker).unwrap() + 1;
            let said = format!("10:{col}: {said}");
            assert_eq!(load(websocket).unwrap_err(), [said], "{websocket}");
        }
    }

    /// One token given twice where either entry has `accounts` is refused
    /// at the second, naming the first's place in the list, never the
    /// value (compared as written and as read from `${VAR}`). Twice without
    /// `accounts` (a rotation half done) opens every account either way,
    /// and passes as it always did.
    #[test]
    fn a_token_given_twice_with_a_scope_is_refused_without_its_value() {
        // At the second one's `token = "…"` value, the `count`th string
        // beginning with `starts`.
        let col = |websocket: &str, starts: &str, count: usize| {
            websocket.match_indices(starts).nth(count - 1).unwrap().0 + 1
        };
        let said = |entry: usize, col: usize| {
            vec![format!(
                "10:{col}: this token is also entry {entry} of `websocket.tokens`: one token \
                 with two entries, one of them with `accounts`, would leave unclear which \
                 accounts it opens; give each token once"
            )]
        };
        let twice = "tokens = [\"dup\", { token = \"dup\", accounts = [\"hn\"] }]\n";
        assert_eq!(load(twice).unwrap_err(), said(1, col(twice, "\"dup", 2)));
        let from_env = "tokens = [\"other\", { token = \"${WS_TOKEN}\", accounts = [\"hn\"] }, \
                        { token = \"token-from-env-918273645\", accounts = [\"hn\"] }]\n";
        let refused = load(from_env).unwrap_err();
        assert_eq!(refused, said(2, col(from_env, "\"token-from", 1)));
        load("tokens = [\"dup\", \"dup\", { token = \"dup\" }]\n").unwrap();
        // Empty ones are said once, as empty.
        assert_eq!(
            load("tokens = [{ token = \"\", accounts = [\"hn\"] }, \"\"]\n").unwrap_err(),
            ["10:10: a websocket token must not be empty"]
        );
    }

    /// What `check_path` refuses, said as `check` says it after the path.
    #[test]
    fn refused_paths_are_said_in_full() {
        for (path, said) in [
            ("ws", "must start with '/'"),
            (
                "/status",
                "is the relay's own /status endpoint; use another path, e.g. \"/ws\"",
            ),
            (
                "/hooks/x",
                "is under /hooks/, where the webhooks are served",
            ),
            (
                "/ws/{id}",
                "must be segments of letters, digits, '-', '.', '_' and '~' between single \
                 '/'s (no parameters like \":id\", \"{id}\" or \"*\")",
            ),
        ] {
            let refused = check_path(path).map_err(|e| e.to_string());
            assert_eq!(refused, Err(said.to_owned()), "{path}");
        }
    }

    /// What `check_path` accepts can be routed beside the relay's other
    /// routes: axum panics on an overlapping or malformed route.
    #[test]
    fn accepted_paths_route_beside_the_relays_own() {
        for path in ["/", "/ws", "/api/v1/events", "/ws-2.0_~x", "/hooksocket"] {
            assert_eq!(check_path(path), Ok(()), "{path}");
            let fixed = FIXED_ROUTES
                .iter()
                .fold(Router::<()>::new(), |r, p| r.route(p, get(|| async {})));
            let _ = fixed
                .merge(Router::new().route("/hooks/{vendor}/{account}", any(|| async {})))
                .merge(Router::new().route(path, get(|| async {})));
        }
    }
}
