//! `relay.toml`: the model of the whole file, `${ENV}` and `${file:…}`
//! expansion, and validation that reports every problem it finds as
//! `FILE:LINE:COL: message`.
//!
//! Guarantees: loading never touches the network and never panics on any input;
//! a `Config` that loads is range-checked and internally consistent, so the
//! components can trust it. Each component's own section lives next to its code
//! (Vector's way) and validates itself through [`Validator`].
//!
//! Here: the file's model, loading and the checks across sections;
//! `validator` (collecting and placing problems), `checks` (account names and
//! URLs, shared by sections), `env` (`${ENV}`, `${file:…}`), `values`
//! (durations, sizes, secrets), `type_errors` (TOML type errors without the
//! value).

mod checks;
pub mod env;
mod type_errors;
mod validator;
pub mod values;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::event::Vendor;

/// The config file read when none is named (`--config`, `CALLRELAY_CONFIG`).
pub const DEFAULT_CONFIG: &str = "relay.toml";

pub use checks::{shown_url, url_without_credentials, validate_account, validate_http_url};
pub use validator::{ConfigError, Problem, Validator, line_col};
pub use values::{Accepted, ByteSize, HumanDuration, Secret};

use crate::sinks::kafka::config::KafkaConfig;
use crate::sinks::websocket::config::WebSocketConfig;
use crate::sources::proxy::{ProxyConfig, ProxySettings};
use crate::sources::sprecord::config::SprecordConfig;
use crate::sources::voip24h::config::Voip24hConfig;
use crate::sources::webhook::config::WebhookConfig;

/// The whole `relay.toml`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub journal: JournalConfig,
    #[serde(default)]
    pub dedup: DedupConfig,
    #[serde(default)]
    pub kafka: Option<KafkaConfig>,
    #[serde(default)]
    pub websocket: WebSocketConfig,
    #[serde(default)]
    pub voip24h: Vec<Spanned<Voip24hConfig>>,
    #[serde(default)]
    pub sprecord: Vec<Spanned<SprecordConfig>>,
    #[serde(default)]
    pub webhook: Vec<Spanned<WebhookConfig>>,
    /// Outbound proxy for the connection sources; the environment
    /// (`HTTPS_PROXY`, `NO_PROXY`, …) fills in what it leaves unset.
    #[serde(default)]
    pub proxy: ProxyConfig,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "ServerConfig::default_listen")]
    pub listen: Spanned<String>,
    #[serde(default = "ServerConfig::default_max_body")]
    pub max_body: Spanned<ByteSize>,
    /// Not a key of the file (the contract lists those): the defaults, which
    /// tests shorten. Read once, when the server starts.
    #[serde(skip)]
    pub http_timeouts: crate::http_serve::HttpTimeouts,
    /// Not a key of the file either: the memory that webhook bodies being
    /// received may hold together (see [`ServerConfig::body_memory_limit`]);
    /// tests lower it.
    #[serde(skip, default = "ServerConfig::default_body_memory")]
    pub body_memory: u64,
}

impl ServerConfig {
    fn default_listen() -> Spanned<String> {
        unspanned("127.0.0.1:8080".to_owned())
    }
    fn default_max_body() -> Spanned<ByteSize> {
        unspanned(ByteSize(1024 * 1024))
    }
    fn default_body_memory() -> u64 {
        64 * 1024 * 1024
    }
    /// What webhook bodies being received may hold together: 64 MiB, or two
    /// `max_body` when that is larger, so that one account's half can take
    /// any body within the limit when nothing else is arriving.
    pub fn body_memory_limit(&self) -> u64 {
        self.body_memory
            .max(self.max_body.get_ref().get().saturating_mul(2))
    }
    /// The listen address; valid once the config has loaded.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
            .get_ref()
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }
    pub fn is_loopback(&self) -> bool {
        self.listen_addr().ip().is_loopback()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: Self::default_listen(),
            max_body: Self::default_max_body(),
            http_timeouts: Default::default(),
            body_memory: Self::default_body_memory(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    #[serde(default = "JournalConfig::default_path")]
    pub path: Spanned<PathBuf>,
    #[serde(default = "JournalConfig::default_retention")]
    pub retention: Spanned<HumanDuration>,
    #[serde(default = "JournalConfig::default_max_size")]
    pub max_size: Spanned<ByteSize>,
}

impl JournalConfig {
    fn default_path() -> Spanned<PathBuf> {
        unspanned(PathBuf::from("./data"))
    }
    fn default_retention() -> Spanned<HumanDuration> {
        unspanned(HumanDuration::from_secs(24 * 3600))
    }
    fn default_max_size() -> Spanned<ByteSize> {
        unspanned(ByteSize(1024 * 1024 * 1024))
    }
}

impl JournalConfig {
    /// The journal's directory: created at start if missing, so only what
    /// can never work is refused here (`check` changes nothing on disk).
    fn validate_path(&self, v: &mut Validator) {
        let path = self.path.get_ref();
        if path.as_os_str().is_empty() {
            v.error(
                self.path.span(),
                "`path` must not be empty: it is the journal's directory, like \"/var/lib/callrelay\"",
            );
        } else if path.exists() && !path.is_dir() {
            let message = format!(
                "`path` = {} exists and is not a directory: it is the journal's directory",
                v.shown(&self.path)
            );
            v.error(self.path.span(), message);
        }
    }
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            path: Self::default_path(),
            retention: Self::default_retention(),
            max_size: Self::default_max_size(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    #[serde(default = "DedupConfig::default_window")]
    pub window: Spanned<HumanDuration>,
}

impl DedupConfig {
    fn default_window() -> Spanned<HumanDuration> {
        unspanned(HumanDuration::from_secs(600))
    }
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            window: Self::default_window(),
        }
    }
}

/// A value with no place in the file (a default).
pub fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

/// The config file as a load read it, and where each `${NAME}` or
/// `${file:…}` replacement stood in it: a problem found after the load (a
/// reload's refusal) is placed in the file as written without expanding it
/// again, which would read every `${file:…}` again, on the caller's thread,
/// and could find another content by then.
#[derive(Clone, Debug)]
pub struct LoadedText {
    /// The file's text as read, before expansion.
    pub text: String,
    offsets: env::OffsetMap,
}

impl LoadedText {
    /// The line and column in the file as written of `offset`, a place in
    /// the expanded text (a span of the loaded config).
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(&self.text, self.offsets.original_offset(offset))
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with_text(path).map(|(config, _)| config)
    }

    /// [`Config::load`], with the text it read and where its `${…}` stood
    /// (where a later refusal is placed).
    pub fn load_with_text(path: &Path) -> Result<(Config, LoadedText), ConfigError> {
        let text = Config::read(path)?;
        let (config, offsets) = Config::from_text_mapped(
            &path.display().to_string(),
            &text,
            &|name| std::env::var(name).ok(),
            &env::read_file,
        )?;
        Ok((config, LoadedText { text, offsets }))
    }

    /// The config file's text, or why it cannot be read (as a problem at 1:1,
    /// or where the text stops being UTF-8).
    fn read(path: &Path) -> Result<String, ConfigError> {
        let bytes = std::fs::read(path).map_err(|e| Config::unreadable(path, e))?;
        String::from_utf8(bytes).map_err(|e| {
            // Placed at the first byte that is not UTF-8 (a Latin-1 `é` in a
            // comment): at 1:1, the reader had the whole file to search.
            let valid = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(&e.as_bytes()[..valid]);
            let (line, col) = line_col(&text, valid);
            ConfigError {
                file: path.display().to_string(),
                problems: vec![Problem {
                    line,
                    col,
                    message: "the config file is not UTF-8 text here (save it as UTF-8)".into(),
                }],
            }
        })
    }

    /// Why the config file cannot be read, as a problem at 1:1.
    fn unreadable(path: &Path, e: std::io::Error) -> ConfigError {
        let mut message = format!("cannot read the config file: {e}");
        // A relative path is read from the working directory, which a
        // newcomer starting the relay elsewhere does not think of. The way
        // to the demo config is for the default name only: whoever named
        // another file (a typo) has passed --config already.
        if e.kind() == std::io::ErrorKind::NotFound && path.is_relative() {
            let cwd = std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| "the working directory".into());
            message.push_str(&not_found_hint(path, &cwd));
        }
        ConfigError {
            file: path.display().to_string(),
            problems: vec![Problem {
                line: 1,
                col: 1,
                message,
            }],
        }
    }

    /// Parses, expands `${ENV}` with `lookup` and `${file:…}` from the disk
    /// (read again at each call: a reload sees a changed file), and
    /// validates `text`.
    pub fn from_text(
        file: &str,
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Config::from_text_with_files(file, text, lookup, &env::read_file)
    }

    /// [`Config::from_text`], with `${file:…}` read by `read_file`.
    pub fn from_text_with_files(
        file: &str,
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
        read_file: &env::ReadFile,
    ) -> Result<Config, ConfigError> {
        Config::from_text_mapped(file, text, lookup, read_file).map(|(config, _)| config)
    }

    /// [`Config::from_text_with_files`], with where each `${…}` stood in
    /// `text` (the config's spans are in the expanded text).
    fn from_text_mapped(
        file: &str,
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
        read_file: &env::ReadFile,
    ) -> Result<(Config, env::OffsetMap), ConfigError> {
        let expanded = env::expand_with_files(text, lookup, read_file);
        let mut v = Validator::new(text);
        v.problems.clone_from(&expanded.problems);
        if expanded.problems.len() > expanded.unset.len() {
            return Err(v.into_error(file).unwrap_or_else(|| ConfigError {
                file: file.to_owned(),
                problems: vec![],
            }));
        }
        // An unset variable or a file that cannot be used in a string stays
        // as written (see `env::Expanded::unset`): what the later checks say on its line, or quoting it (a
        // check of another field that reads it: `tls.ca_file` against the
        // url's scheme), follows from that placeholder, not from the file,
        // and is left out; the rest of the file is checked as usual, so
        // `check` shows every problem at once.
        let unset_lines: Vec<usize> = expanded
            .problems
            .iter()
            .map(|(offset, _)| line_col(text, *offset).0)
            .collect();
        let mut later = Vec::new();
        // Spans from here on are in the expanded text: problems are placed in
        // the file the user wrote by mapping them back.
        let config = match toml::from_str::<Config>(&expanded.text) {
            Ok(mut config) => {
                let mut found = Validator::over_expansion(&expanded, text);
                config.validate(&mut found);
                config.route_through_proxies(lookup, &mut found);
                later.extend(found.problems.into_iter().map(|(offset, message)| {
                    (
                        expanded.original_offset(offset),
                        expanded.redact(&message, text),
                    )
                }));
                Some(config)
            }
            Err(first) => {
                let mut errors = type_errors::every_type_error::<Config>(&expanded.text);
                if errors.is_empty() {
                    // A syntax error: nothing after it can be read.
                    errors.push(first);
                }
                later.extend(errors.iter().map(|e| type_problem(&expanded, text, e)));
                None
            }
        };
        later.retain(|(offset, message)| {
            !unset_lines.contains(&line_col(text, *offset).0)
                && !expanded
                    .unset
                    .iter()
                    .any(|written| message.contains(written.as_str()))
        });
        v.problems.extend(later);
        match (v.into_error(file), config) {
            (None, Some(config)) => Ok((config, expanded.offset_map())),
            (error, _) => Err(error.unwrap_or_else(|| ConfigError {
                file: file.to_owned(),
                problems: vec![],
            })),
        }
    }

    /// Decides, once per load, which proxy (if any) each connection source
    /// goes through: a changed route restarts the source on reload.
    fn route_through_proxies(
        &mut self,
        lookup: &dyn Fn(&str) -> Option<String>,
        v: &mut Validator,
    ) {
        let proxies = ProxySettings::resolve(&self.proxy, lookup, v);
        let mut route = |account: &Spanned<String>, url: &Spanned<String>| {
            proxies.route_for(url.get_ref()).unwrap_or_else(|why| {
                let message = format!("{}: {why}", v.shown(account));
                v.error(url.span(), message);
                None
            })
        };
        for source in &mut self.voip24h {
            let source = source.get_mut();
            source.proxy = route(&source.account, &source.url);
        }
        for source in &mut self.sprecord {
            let source = source.get_mut();
            source.proxy = route(&source.account, &source.url);
        }
    }

    /// Two accounts of one upstream identity would open two sessions where
    /// the vendor allows one: Voip24h keeps one session per key (a second
    /// sign takes it over, and every event would be journaled once per
    /// account), SPRecord counts every stream of a device against its three.
    /// A Voip24h server is its host, port and Engine.IO path (`:80` is
    /// `http://`'s own, no path is `/socket.io/`); an SPRecord URL is
    /// compared as `url` writes it out (host case, default port), without
    /// a trailing slash. Secrets are compared, never printed.
    fn validate_one_session_per_upstream(&self, v: &mut Validator) {
        let mut keys: Vec<(String, &str, &Spanned<String>)> = Vec::new();
        for source in &self.voip24h {
            let s = source.get_ref();
            let url = voip24h_server(s.url.get_ref());
            if let Some((_, _, first)) = keys
                .iter()
                .find(|(u, key, _)| *u == url && *key == s.key.expose())
            {
                let message = format!(
                    "[[voip24h]] {} uses the same key on the same server as {}: \
                     the vendor allows one session per key, and each event would be \
                     journaled once per account",
                    v.shown(&s.account),
                    v.shown(first)
                );
                v.error(s.account.span(), message);
            } else {
                keys.push((url, s.key.expose(), &s.account));
            }
        }
        // Header names in any case are one name: `Authorization` in one
        // account and `authorization` in another passed as two devices.
        let comparable_headers = |headers: &BTreeMap<String, Secret>| {
            headers
                .iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), value.expose().to_owned()))
                .collect::<BTreeMap<String, String>>()
        };
        let mut devices: Vec<(String, BTreeMap<String, String>, &Spanned<String>)> = Vec::new();
        for source in &self.sprecord {
            let s = source.get_ref();
            let url = comparable_url(s.url.get_ref());
            let headers = comparable_headers(&s.headers);
            if let Some((_, _, first)) = devices.iter().find(|(u, h, _)| *u == url && *h == headers)
            {
                let message = format!(
                    "[[sprecord]] {} has the same url and headers as {}: one \
                     device, whose streams (three at most) the two accounts would share",
                    v.shown(&s.account),
                    v.shown(first)
                );
                v.error(s.account.span(), message);
            } else {
                devices.push((url, headers, &s.account));
            }
        }
    }

    /// Every configured source's vendor and account, in the file's order.
    pub fn accounts(&self) -> Vec<(Vendor, &Spanned<String>)> {
        self.voip24h
            .iter()
            .map(|s| (Vendor::Voip24h, &s.get_ref().account))
            .chain(
                self.sprecord
                    .iter()
                    .map(|s| (Vendor::Sprecord, &s.get_ref().account)),
            )
            .chain(
                self.webhook
                    .iter()
                    .map(|h| (h.get_ref().vendor, &h.get_ref().account)),
            )
            .collect()
    }

    fn validate(&self, v: &mut Validator) {
        if self.server.listen.get_ref().parse::<SocketAddr>().is_err() {
            let message = format!(
                "`listen` = {} is not an address like \"127.0.0.1:8080\"",
                v.shown(&self.server.listen)
            );
            v.error(self.server.listen.span(), message);
        }
        v.check_range(
            "max_body",
            &self.server.max_body,
            ByteSize(1),
            ByteSize(1 << 30),
            ByteSize::to_string,
        );
        self.journal.validate_path(v);
        v.check_range(
            "retention",
            &self.journal.retention,
            HumanDuration::from_secs(60),
            HumanDuration::from_secs(365 * 24 * 3600),
            HumanDuration::to_string,
        );
        v.check_range(
            "max_size",
            &self.journal.max_size,
            ByteSize(1024 * 1024),
            ByteSize(1 << 50),
            ByteSize::to_string,
        );
        v.check_range(
            "window",
            &self.dedup.window,
            HumanDuration::from_secs(1),
            HumanDuration::from_secs(365 * 24 * 3600),
            HumanDuration::to_string,
        );
        if self.dedup.window.get_ref() > self.journal.retention.get_ref() {
            // At whichever of the two the file wrote (the window when both).
            let at = [&self.dedup.window, &self.journal.retention]
                .into_iter()
                .map(Spanned::span)
                .find(|span| !span.is_empty())
                .unwrap_or_default();
            v.error(
                at,
                format!(
                    "`dedup.window` ({}) must not exceed `journal.retention` ({}): the dedup index lives with the events",
                    v.as_written(&self.dedup.window),
                    v.as_written(&self.journal.retention)
                ),
            );
        }
        if let Some(kafka) = &self.kafka {
            kafka.validate(v);
        }
        self.websocket.validate(v, &self.server);

        let mut seen = BTreeSet::new();
        for source in &self.voip24h {
            source.get_ref().validate(v);
            if !seen.insert(("voip24h", source.get_ref().account.get_ref().clone())) {
                let message = format!(
                    "duplicate [[voip24h]] account {}",
                    v.shown(&source.get_ref().account)
                );
                v.error(source.get_ref().account.span(), message);
            }
        }
        for source in &self.sprecord {
            source.get_ref().validate(v);
            if !seen.insert(("sprecord", source.get_ref().account.get_ref().clone())) {
                let message = format!(
                    "duplicate [[sprecord]] account {}",
                    v.shown(&source.get_ref().account)
                );
                v.error(source.get_ref().account.span(), message);
            }
        }
        self.validate_one_session_per_upstream(v);
        let mut hooks = BTreeSet::new();
        for hook in &self.webhook {
            let hook_ref = hook.get_ref();
            hook_ref.validate(v);
            if !hooks.insert((hook_ref.vendor, hook_ref.account.get_ref().clone())) {
                let message = format!(
                    "duplicate [[webhook]] {} account {}",
                    hook_ref.vendor,
                    v.shown(&hook_ref.account)
                );
                v.error(hook_ref.account.span(), message);
            }
        }
        if let Some(kafka) = &self.kafka {
            kafka.validate_topics_of(v, &self.accounts());
        }
    }
}

/// What a relative config path that is not found is told: where it was
/// looked for, and, for the default name only, how to name one (whoever
/// named another file, a typo, has passed `--config` already).
fn not_found_hint(path: &Path, cwd: &str) -> String {
    let mut hint = format!(" (looked in {cwd})");
    if path == Path::new(DEFAULT_CONFIG) {
        hint.push_str("; pass --config FILE or set CALLRELAY_CONFIG, or start the relay in the repository's top directory, whose relay.toml is the demo config");
    }
    hint
}

/// A TOML error placed in the file as written, its message without the
/// value it refused (see [`without_literal`]) and with any value from the
/// environment replaced by its `${VAR}`.
fn type_problem(expanded: &env::Expanded, text: &str, e: &toml::de::Error) -> (usize, String) {
    let offset = expanded.original_offset(e.span().map(|s| s.start).unwrap_or(0));
    let mut message =
        in_the_files_terms(&without_literal(e.message().trim()), key_at(text, offset));
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
    (offset, expanded.redact(&message, text))
}

/// The key a `key = value` line at `offset` names, if the line is one.
fn key_at(text: &str, offset: usize) -> Option<&str> {
    let line_start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    // The last `key =` before the value: also inside an inline table.
    let (before, _) = text.get(line_start..offset)?.rsplit_once('=')?;
    let key = before.rsplit(['{', ',']).next()?.trim().trim_matches('"');
    (!key.is_empty()).then_some(key)
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
fn replace_whole(message: &str, token: &str, written: &str) -> String {
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
fn without_literal(message: &str) -> String {
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

/// The server a Voip24h `url` names, for telling two accounts' sessions
/// apart: host, port and the Engine.IO path the session connects to (none
/// written is `/socket.io/`, as `wire::websocket_url` dials); a URL that
/// does not parse is compared as written.
fn voip24h_server(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let path = match u.path().trim_end_matches('/') {
                "" => "/socket.io",
                path => path,
            };
            format!(
                "{}:{}{path}",
                u.host_str().unwrap_or_default().to_ascii_lowercase(),
                u.port_or_known_default().unwrap_or_default()
            )
        }
        Err(_) => comparable_url(url),
    }
}

/// `url` as the `url` crate writes it out (lower-case host, no default
/// port), without a trailing slash.
fn comparable_url(url: &str) -> String {
    let written = url::Url::parse(url).map_or_else(|_| url.to_ascii_lowercase(), String::from);
    written.trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod tests;
