//! The checks of the whole [`Config`]: the sections its module owns
//! (`server`, `journal`, `dedup`), each source's and sink's own `validate`,
//! and what must hold across sections.
//!
//! Guarantees: a config that passes has a listen address that parses, its
//! sizes and durations within their ranges, a journal path that is not empty
//! nor an existing non-directory, a dedup window no longer than the journal's
//! retention, no account twice among the `[[voip24h]]`, among the
//! `[[sprecord]]` or among one vendor's `[[webhook]]`, no two Voip24h
//! accounts with one key on one server and no two SPRecord accounts of one
//! device (url and headers, header names in any case), and no WebSocket
//! token scoped to an account no source has. Secrets are compared here,
//! never quoted.
//!
//! [`Config::warnings`]: what the CONTRACT allows but leaves open to anyone
//! who can reach the listener, or a journal the shipped unit removes at
//! every stop, for `check` to say without refusing the file.
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use toml::Spanned;

use super::{
    ByteSize, Config, HumanDuration, JournalConfig, LoadedText, Problem, Secret, Validator,
};
use crate::event::Vendor;

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

impl Config {
    pub(super) fn validate(&self, v: &mut Validator) {
        if self.server.listen.get_ref().parse::<SocketAddr>().is_err() {
            let message = format!(
                "`listen` = {} is not an IP address and port like \"127.0.0.1:8080\" or \"[::1]:8080\" (a host name such as localhost is not looked up: write its address)",
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
        v.check_range(
            "max_connections",
            &self.server.max_connections,
            1,
            1_000_000,
            usize::to_string,
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
        self.websocket.validate_scopes_of(v, &self.accounts());
    }

    /// [`Config::warnings`], each as `FILE:LINE:COL: warning: message`, as
    /// `check` prints them and `run` logs them at start and at each reload.
    pub fn warning_lines(&self, file: &std::path::Path, text: &LoadedText) -> Vec<String> {
        self.warnings(text)
            .into_iter()
            .map(|w| {
                format!(
                    "{}:{}:{}: warning: {}",
                    file.display(),
                    w.line,
                    w.col,
                    w.message
                )
            })
            .collect()
    }

    /// What a loaded config allows that anyone who can reach the webhook
    /// could use, each placed in the file as written: an SPRecord webhook
    /// without `token` (the CONTRACT makes the token optional, so this is no
    /// error; a browser's requests to it are refused, any other sender's are
    /// not). Whatever the listener: a device is another host, so a loopback
    /// listener takes its posts through a reverse proxy on the same host,
    /// which is as open as the proxy (review, 2026-12-06). The account is
    /// not quoted: a `${VAR}` may stand in it, and the place names it.
    ///
    /// Also a credential carried in the URL's query (`token`, a Tel4vn
    /// `api_key` with `api_key_query`) holding a character a query reads
    /// otherwise unless percent-encoded (`openssl rand -base64` gives `+`):
    /// pasted as written into the vendor's URL, every delivery is refused
    /// 401 "wrong token", and nothing said why. Not an error: a vendor that
    /// percent-encodes it delivers. The value is never shown.
    ///
    /// And a Tel4vn `api_key` read from a header that the header's trimmed,
    /// unprefixed value can never give back (`"Bearer …"`, whitespace at
    /// either end).
    ///
    /// And a `journal.path` under /tmp or /var/tmp, which the shipped unit's
    /// `PrivateTmp=yes` removes at every stop: each restart then started an
    /// empty journal, saying only that at INFO.
    pub fn warnings(&self, text: &LoadedText) -> Vec<Problem> {
        let at = |start: usize, message: String| {
            let (line, col) = text.line_col(start);
            Problem { line, col, message }
        };
        let mut warnings = Vec::new();
        if let Some(tmp) = under_a_private_tmp(self.journal.path.get_ref()) {
            warnings.push(at(
                self.journal.path.span().start,
                format!(
                    "`journal.path` is under {tmp}: under systemd's `PrivateTmp=` (set in the \
                     shipped unit, deploy/callrelay.service) the service has a {tmp} of its \
                     own, removed at every stop with the journal in it (every event a sink \
                     has not had yet, the dedup log, the SPRecord resume ids): put the \
                     journal on a disk that is kept, like /var/lib/callrelay"
                ),
            ));
        }
        for hook in self.webhook.iter().map(Spanned::get_ref) {
            if hook.vendor == Vendor::Sprecord && hook.token.is_none() {
                warnings.push(at(
                    hook.account.span().start,
                    "[[webhook]] sprecord has no `token`: anyone who can reach it, \
                     directly or through a proxy in front, can post events to it; \
                     set `token` and add ?token= to the URL registered with SPRecord"
                        .to_owned(),
                ));
            }
            let api_key_in_query = hook
                .api_key
                .as_ref()
                .filter(|_| hook.api_key_query.is_some());
            let api_key_in_a_header = hook
                .api_key
                .as_ref()
                .filter(|_| hook.api_key_query.is_none());
            if let Some(value) = api_key_in_a_header
                && value.get_ref().any_written(never_matches_in_a_header)
            {
                warnings.push(at(
                    value.span().start,
                    format!(
                        "[[webhook]] {} `api_key` has whitespace at either end, or starts \
                         with `Bearer `: the header's value is read trimmed and without one \
                         `Bearer ` prefix, so it matches only a sender that doubles the \
                         prefix, and every other delivery is refused 401; write the key \
                         alone, here and in the vendor's `callback_apikey`",
                        hook.vendor.as_str()
                    ),
                ));
            }
            for (field, value) in [
                ("token", hook.token.as_ref()),
                ("api_key", api_key_in_query),
            ] {
                let Some(value) = value else { continue };
                if value.get_ref().any_written(read_otherwise_in_a_query) {
                    warnings.push(at(
                        value.span().start,
                        format!(
                            "[[webhook]] {} `{field}` holds a character a URL's query reads \
                             otherwise unless percent-encoded (`+`, `&`, `#`, `%`, a space, \
                             or one other than ASCII): a URL carrying it as written is refused \
                             401; use letters and digits (`openssl rand -hex 32`), or \
                             percent-encode it in the URL registered with the vendor",
                            hook.vendor.as_str()
                        ),
                    ));
                }
            }
        }
        warnings
    }

    /// Two accounts of one upstream identity would open two sessions where
    /// the vendor allows one: Voip24h keeps one session per key (a second
    /// sign takes it over, and every event would be journaled once per
    /// account), SPRecord counts every stream of a device against its three.
    /// A Voip24h server is its host and Engine.IO path, whatever the scheme
    /// and port (the vendor serves one realtime server on a plain and a TLS
    /// port; no path is `/socket.io/`); an SPRecord URL is
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
}

/// The server a Voip24h `url` names, for telling two accounts' sessions
/// apart: host and the Engine.IO path the session connects to (none
/// written is `/socket.io/`, and a path with or without its trailing `/` is
/// one path, as `wire::websocket_url` dials); a URL that
/// does not parse is compared as written. Not the port nor the scheme: the
/// vendor's realtime server is one host on two ports, `http://…:port` and
/// `https://…:portssl`, and one key on both passed `check` while the two
/// sessions took the key from each other.
fn voip24h_server(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let path = match u.path().trim_end_matches('/') {
                "" => "/socket.io",
                path => path,
            };
            format!(
                "{}{path}",
                u.host_str().unwrap_or_default().to_ascii_lowercase()
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

/// Whether an API key sent in a header matches almost nothing: the key a
/// header presents is read as [`crate::vendors::tel4vn::strip_bearer`] reads
/// it, so a key it would change is refused unless the sender doubles the
/// prefix.
fn never_matches_in_a_header(value: &str) -> bool {
    crate::vendors::tel4vn::strip_bearer(value.as_bytes()) != value.as_bytes()
}

/// Whether a credential pasted unencoded into a URL's query arrives as
/// another value (`+` as a space), cut short (`&`, `#`), or not as written
/// (`%`, a space, a control or non-ASCII character).
fn read_otherwise_in_a_query(value: &str) -> bool {
    value
        .chars()
        .any(|c| matches!(c, '+' | '&' | '#' | '%') || !c.is_ascii_graphic())
}

/// `/tmp` or `/var/tmp` if `path`, as written, is in it (`..` taken
/// lexically). A relative path is not looked at: it is resolved against the
/// service's working directory, which `check` does not know.
fn under_a_private_tmp(path: &std::path::Path) -> Option<&'static str> {
    use std::path::{Component, PathBuf};
    if !path.is_absolute() {
        return None;
    }
    let mut plain = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                plain.pop();
            }
            Component::CurDir => {}
            other => plain.push(other),
        }
    }
    ["/var/tmp", "/tmp"]
        .into_iter()
        .find(|tmp| plain.starts_with(tmp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warnings_of(text: &str) -> Vec<Problem> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, text).unwrap();
        let (config, loaded) = Config::load_with_text(&path).unwrap();
        config.warnings(&loaded)
    }

    /// `check` said nothing of an SPRecord webhook that anyone on the
    /// network could post events to (security review, 2026-12-06).
    #[test]
    fn an_sprecord_webhook_without_token_is_a_warning_on_any_listener() {
        let open = "[server]\nlisten = \"0.0.0.0:8080\"\n\n[websocket]\ntokens = [\"t\"]\n\n\
                    [[webhook]]\nvendor = \"sprecord\"\naccount = \"office\"\n\n\
                    [[webhook]]\nvendor = \"sprecord\"\naccount = \"hq\"\ntoken = \"s\"\n";
        let warnings = warnings_of(open);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!((warnings[0].line, warnings[0].col), (9, 11));
        assert!(
            warnings[0]
                .message
                .contains("anyone who can reach it, directly or through a proxy"),
            "{warnings:?}"
        );
        let loopback = open.replace("0.0.0.0", "127.0.0.1");
        assert_eq!(warnings_of(&loopback), warnings, "behind a proxy");
    }

    /// A token made with `openssl rand -base64` and pasted as written into
    /// the vendor's URL was refused 401 on every delivery, `check` silent
    /// (review of the vendors' webhooks, 2026-12-06).
    #[test]
    fn a_credential_a_query_reads_otherwise_is_a_warning_that_hides_it() {
        let hooks = "[[webhook]]\nvendor = \"voip24h\"\naccount = \"v\"\ntoken = \"ab+cd/ef=\"\n\n\
                     [[webhook]]\nvendor = \"sprecord\"\naccount = \"s\"\ntoken = [\"hex0123\", \"old&x\"]\n\n\
                     [[webhook]]\nvendor = \"tel4vn\"\naccount = \"t\"\napi_key = \"k y\"\napi_key_query = \"key\"\n\n\
                     [[webhook]]\nvendor = \"tel4vn\"\naccount = \"h\"\napi_key = \"k y\"\n\n\
                     [[webhook]]\nvendor = \"voip24h\"\naccount = \"fine\"\ntoken = \"A-z_0.9~/=:@?\"\n";
        let warnings = warnings_of(hooks);
        let placed: Vec<(usize, usize)> = warnings.iter().map(|w| (w.line, w.col)).collect();
        assert_eq!(placed, [(4, 9), (9, 9), (14, 11)], "{warnings:?}");
        assert!(
            warnings[0]
                .message
                .starts_with("[[webhook]] voip24h `token` holds")
        );
        assert!(
            warnings[2]
                .message
                .starts_with("[[webhook]] tel4vn `api_key` holds")
        );
        for warning in &warnings {
            for secret in ["ab+cd", "old&x", "k y"] {
                assert!(!warning.message.contains(secret), "{warning:?}");
            }
        }
    }

    /// A Tel4vn key pasted with its header's `Bearer ` or a stray space was
    /// refused 401 on every delivery, `check` silent: the header's value is
    /// trimmed and unprefixed before the comparison (vendors review, 2026-12-07).
    #[test]
    fn a_header_api_key_that_can_never_match_is_a_warning_that_hides_it() {
        let hooks = "[[webhook]]\nvendor = \"tel4vn\"\naccount = \"a\"\napi_key = \"Bearer k1\"\n\n\
                     [[webhook]]\nvendor = \"tel4vn\"\naccount = \"b\"\napi_key = [\"ok\", \" k2\"]\n\n\
                     [[webhook]]\nvendor = \"tel4vn\"\naccount = \"c\"\napi_key = \"k3 \"\n\n\
                     [[webhook]]\nvendor = \"tel4vn\"\naccount = \"d\"\napi_key = \"bearerless k4\"\n\n\
                     [[webhook]]\nvendor = \"tel4vn\"\naccount = \"q\"\napi_key = \"Bearer_k5\"\napi_key_query = \"key\"\n";
        let warnings = warnings_of(hooks);
        let placed: Vec<(usize, usize)> = warnings.iter().map(|w| (w.line, w.col)).collect();
        assert_eq!(placed, [(4, 11), (9, 11), (14, 11)], "{warnings:?}");
        for warning in &warnings {
            assert!(
                warning
                    .message
                    .contains("matches only a sender that doubles"),
                "{warning:?}"
            );
            for secret in ["k1", "k2", "k3"] {
                assert!(!warning.message.contains(secret), "{warning:?}");
            }
        }
    }

    /// A journal under /tmp or /var/tmp: the shipped unit's `PrivateTmp=yes`
    /// removes it at every stop, and `check` said nothing; each restart
    /// logged only "started an empty journal".
    #[test]
    fn a_journal_under_a_private_tmp_is_a_warning() {
        for dir in ["/tmp/callrelay", "/var/tmp/callrelay/data", "/tmp"] {
            let warnings = warnings_of(&format!("[journal]\npath = \"{dir}\"\n"));
            assert_eq!(warnings.len(), 1, "{dir}: {warnings:?}");
            assert_eq!((warnings[0].line, warnings[0].col), (2, 8), "{dir}");
            let message = &warnings[0].message;
            assert!(message.contains("PrivateTmp"), "{message}");
            assert!(message.contains("every stop"), "{message}");
            assert!(message.contains("deploy/callrelay.service"), "{message}");
        }
        for dir in [
            "/var/lib/callrelay",
            "/tmpfs/callrelay",
            "/tmp/../var/lib/x",
            "tmp/data",
        ] {
            let warnings = warnings_of(&format!("[journal]\npath = \"{dir}\"\n"));
            assert!(warnings.is_empty(), "{dir}: {warnings:?}");
        }
    }
}
