//! What a config reload (SIGHUP, `Relay::reload`) may change while the relay
//! runs, and what it reports.
//!
//! Guarantees: settings bound at start — the listener, the journal, the dedup
//! window, the WebSocket path and replay budget — never change under a
//! running relay. When the
//! new file changes one of them, the reload keeps the running value (so
//! `Context::config` always describes what is in effect) and says, per
//! setting, that it needs a restart. Everything else takes effect with the
//! reload, each where it is read: webhook settings from the next request (one
//! being read finishes under the old), WebSocket limits and timings for new
//! connections, tokens and origins checked again against the sessions
//! connected, and a source or the Kafka sink whose settings changed
//! restarted (operations.md has the table).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use crate::config::Config;
use crate::event::Vendor;
use crate::sources::SourceChanges;
use crate::sources::webhook::config::WebhookConfig;

/// What a successful reload did.
#[derive(Debug, Default)]
pub struct ReloadOutcome {
    /// Connection sources started, stopped, restarted and left running.
    pub sources: SourceChanges,
    /// Whether the Kafka sink was restarted (its `[kafka]` section changed).
    pub kafka_restarted: bool,
    /// One message per setting that changed in the file but needs a restart.
    pub needs_restart: Vec<String>,
    /// False when the relay began to stop first: nothing was applied.
    pub applied: bool,
}

/// Returns `new` with the running values of the settings that cannot change
/// live, and a warning for each one the file changed.
pub(crate) fn pin_restart_only(running: &Config, mut new: Config) -> (Config, Vec<String>) {
    let mut warnings = Vec::new();
    let w = &mut warnings;
    let quoted = |s: &String| format!("{s:?}");
    // Compared as what they name: `0.0.0.0:08080` for `0.0.0.0:8080`, or
    // `./data` for `data`, is no change, and must not wait for a restart
    // (nor raise `CallrelayRestartPending`).
    keep_running_unless_same(
        w,
        "server.listen",
        &running.server.listen,
        &mut new.server.listen,
        quoted,
        |a, b| same_listener(a, b),
    );
    let show_path = |p: &std::path::PathBuf| format!("{:?}", p.display().to_string());
    let asked = show_path(new.journal.path.get_ref());
    let pinned = keep_running_unless_same(
        w,
        "journal.path",
        &running.journal.path,
        &mut new.journal.path,
        show_path,
        |a, b| without_leading_dot(a) == without_leading_dot(b),
    );
    // The restart opens whatever is at the new path: with nothing there it
    // starts an empty journal, and what the old one holds stays behind.
    if pinned && let Some(warning) = w.last_mut() {
        let was = show_path(running.journal.path.get_ref());
        warning.push_str(&format!(
            "; before that restart, stop the relay and move journal.redb from {was} to {asked} \
             (keeping its owner: `mv`), else the relay starts an empty journal there and what \
             the old one holds (events a sink has not had, the dedup log, the SPRecord resume \
             ids) is not sent"
        ));
    }
    keep_running(
        w,
        "journal.retention",
        &running.journal.retention,
        &mut new.journal.retention,
        ToString::to_string,
    );
    keep_running(
        w,
        "journal.max_size",
        &running.journal.max_size,
        &mut new.journal.max_size,
        ToString::to_string,
    );
    keep_running(
        w,
        "dedup.window",
        &running.dedup.window,
        &mut new.dedup.window,
        ToString::to_string,
    );
    keep_running(
        w,
        "websocket.path",
        &running.websocket.path,
        &mut new.websocket.path,
        quoted,
    );
    // The replays' budget is one semaphore made at start, which sessions
    // already hold pages of.
    keep_running(
        w,
        "websocket.replay_memory",
        &running.websocket.replay_memory,
        &mut new.websocket.replay_memory,
        ToString::to_string,
    );
    (new, warnings)
}

/// Puts back the running value of a setting the file changed, and says so
/// in `warnings`.
fn keep_running<T: PartialEq + Clone>(
    warnings: &mut Vec<String>,
    setting: &str,
    running: &toml::Spanned<T>,
    new: &mut toml::Spanned<T>,
    show: impl Fn(&T) -> String,
) {
    keep_running_unless_same(warnings, setting, running, new, show, T::eq);
}

/// Whether two `server.listen` values name one address.
fn same_listener(a: &str, b: &str) -> bool {
    match (a.parse::<SocketAddr>(), b.parse::<SocketAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// A path without its leading `./`, which names the same place.
fn without_leading_dot(path: &Path) -> &Path {
    path.strip_prefix(".").unwrap_or(path)
}

/// As [`keep_running`], where `same` says whether two values name one thing;
/// returns whether it put the running value back (its warning is then the
/// last in `warnings`).
fn keep_running_unless_same<T: Clone>(
    warnings: &mut Vec<String>,
    setting: &str,
    running: &toml::Spanned<T>,
    new: &mut toml::Spanned<T>,
    show: impl Fn(&T) -> String,
    same: impl Fn(&T, &T) -> bool,
) -> bool {
    if same(new.get_ref(), running.get_ref()) {
        return false;
    }
    let (was, now) = (show(running.get_ref()), show(new.get_ref()));
    warnings.push(format!(
        "`{setting}` changed from {was} to {now}: it takes effect only after a restart; \
         the running relay keeps {was}"
    ));
    *new = running.clone();
    true
}

/// A rule of `check` that the pinned config breaks although the file alone
/// passes: the file may move the listener to loopback and drop the WebSocket
/// tokens, but the listener stays where it is, so the reload would open every
/// event to anyone who can reach it. Returns the problem's byte offset in the
/// file and its message.
pub(crate) fn unsafe_with_running_listener(
    pinned: &Config,
    new: &Config,
) -> Option<(usize, String)> {
    if !new.websocket.open_to_anyone(&pinned.server) {
        return None;
    }
    Some((
        new.websocket.open_fan_out_span(&new.server).start,
        format!(
            "`websocket.tokens` is empty but the running `server.listen` {:?} is not loopback \
             and a reload cannot move it: anyone could read every event; set tokens, or restart \
             to change the listener",
            pinned.server.listen.get_ref()
        ),
    ))
}

/// `[[webhook]]` routes a reload adds, removes and changes (credentials or
/// settings), as `vendor/account`: `config reloaded` lists them beside the
/// connection sources, where a webhook-only change listed nothing.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct WebhookChanges {
    pub added: Vec<(Vendor, String)>,
    pub removed: Vec<(Vendor, String)>,
    pub changed: Vec<(Vendor, String)>,
}

pub(crate) fn webhook_changes(before: &Config, after: &Config) -> WebhookChanges {
    let keyed = |c: &Config| -> BTreeMap<(Vendor, String), WebhookConfig> {
        c.webhook
            .iter()
            .map(|w| {
                let w = w.get_ref();
                ((w.vendor, w.account.get_ref().clone()), w.clone())
            })
            .collect()
    };
    let (before, after) = (keyed(before), keyed(after));
    let mut changes = WebhookChanges::default();
    for (key, hook) in &after {
        match before.get(key) {
            None => changes.added.push(key.clone()),
            Some(old) if old != hook => changes.changed.push(key.clone()),
            Some(_) => {}
        }
    }
    changes.removed = before
        .keys()
        .filter(|key| !after.contains_key(*key))
        .cloned()
        .collect();
    changes
}

/// A new file that configures no source at all while the running relay has
/// some: most likely a file read while it was being written (`>` empties it
/// first) or cut short, and applying it would answer every vendor 404 —
/// which no vendor documents retrying — with a 200 from
/// `/readyz` and nothing in the log but `config reloaded`. To run without
/// sources on purpose, restart. Returns the problem's offset and message.
pub(crate) fn takes_away_every_source(running: &Config, new: &Config) -> Option<(usize, String)> {
    let count = |c: &Config| c.webhook.len() + c.voip24h.len() + c.sprecord.len();
    let running_sources = count(running);
    if running_sources == 0 || count(new) > 0 {
        return None;
    }
    Some((
        0,
        format!(
            "the file configures no source ([[webhook]], [[voip24h]] or [[sprecord]]) while the \
             running relay has {running_sources}: an empty or half-written file? Write the new \
             config to another file and `mv` it into place; to run without sources, restart"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_text("relay.toml", text, &|_| None).expect("valid test config")
    }

    #[test]
    fn webhook_routes_added_removed_and_changed_are_named() {
        let hook = |account: &str, key: &str| {
            format!(
                "[[webhook]]\nvendor = \"tel4vn\"\naccount = \"{account}\"\napi_key = \"{key}\"\n"
            )
        };
        let before = config(&(hook("kept", "k") + &hook("gone", "k") + &hook("rekeyed", "k")));
        let after = config(&(hook("kept", "k") + &hook("rekeyed", "k2") + &hook("new", "k")));
        let tel4vn = |a: &str| (Vendor::Tel4vn, a.to_owned());
        assert_eq!(
            webhook_changes(&before, &after),
            WebhookChanges {
                added: vec![tel4vn("new")],
                removed: vec![tel4vn("gone")],
                changed: vec![tel4vn("rekeyed")],
            }
        );
        assert_eq!(webhook_changes(&after, &after), WebhookChanges::default());
    }

    #[test]
    fn a_file_without_sources_is_refused_only_when_sources_run() {
        let hook = "[[webhook]]\nvendor = \"tel4vn\"\naccount = \"a\"\napi_key = \"k\"\n";
        let running = config(hook);
        let (offset, message) = takes_away_every_source(&running, &config("")).expect("refused");
        assert_eq!(offset, 0);
        assert!(message.contains("running relay has 1"), "{message}");
        assert_eq!(takes_away_every_source(&running, &config(hook)), None);
        assert_eq!(takes_away_every_source(&config(""), &config("")), None);
        let sprecord = "[[sprecord]]\naccount = \"s\"\nurl = \"http://127.0.0.1:1\"\n";
        assert_eq!(takes_away_every_source(&running, &config(sprecord)), None);
        // Every kind of source counts toward what the message says is running.
        let voip24h = "[[voip24h]]\naccount = \"v\"\nurl = \"http://127.0.0.1:1\"\nkey = \"k\"\n";
        let all_kinds = config(&format!("{hook}{voip24h}{sprecord}"));
        let (_, message) = takes_away_every_source(&all_kinds, &config("")).expect("refused");
        assert!(message.contains("running relay has 3"), "{message}");
    }

    #[test]
    fn live_settings_pass_and_restart_only_ones_are_pinned() {
        let running = config(
            "[server]\nlisten = \"127.0.0.1:8080\"\nmax_body = \"1MiB\"\n\
             [journal]\npath = \"/a\"\n[dedup]\nwindow = \"10m\"\n[websocket]\npath = \"/ws\"\n",
        );
        let new = config(
            "[server]\nlisten = \"127.0.0.1:9090\"\nmax_body = \"2MiB\"\n\
             [journal]\npath = \"/b\"\nretention = \"48h\"\n[dedup]\nwindow = \"5m\"\n\
             [websocket]\npath = \"/events\"\nreplay_memory = \"8MiB\"\n",
        );
        let (effective, warnings) = pin_restart_only(&running, new);
        assert_eq!(effective.server.listen.get_ref(), "127.0.0.1:8080");
        assert_eq!(
            effective.journal.path.get_ref(),
            &std::path::PathBuf::from("/a")
        );
        assert_eq!(
            effective.journal.retention.get_ref(),
            running.journal.retention.get_ref()
        );
        assert_eq!(
            effective.dedup.window.get_ref(),
            running.dedup.window.get_ref()
        );
        assert_eq!(effective.websocket.path.get_ref(), "/ws");
        assert_eq!(
            effective.websocket.replay_memory.get_ref(),
            running.websocket.replay_memory.get_ref()
        );
        // max_body is read per request: it changes live.
        assert_eq!(effective.server.max_body.get_ref().0, 2 * 1024 * 1024);
        let settings: Vec<&str> = warnings
            .iter()
            .map(|w| w.split('`').nth(1).unwrap_or(""))
            .collect();
        assert_eq!(
            settings,
            [
                "server.listen",
                "journal.path",
                "journal.retention",
                "dedup.window",
                "websocket.path",
                "websocket.replay_memory"
            ]
        );
        assert!(warnings[0].contains("\"127.0.0.1:9090\"") && warnings[0].contains("restart"));
    }

    #[test]
    fn dropping_the_tokens_is_refused_while_the_listener_stays_public() {
        let running =
            config("[server]\nlisten = \"0.0.0.0:8080\"\n[websocket]\ntokens = [\"t\"]\n");
        let new = config("[server]\nlisten = \"127.0.0.1:8080\"\n[websocket]\ntokens = []\n");
        let (pinned, _) = pin_restart_only(&running, new.clone());
        let (offset, message) = unsafe_with_running_listener(&pinned, &new).expect("refused");
        assert_eq!(offset, new.websocket.tokens.span().start);
        assert!(message.contains("\"0.0.0.0:8080\""), "{message}");
        // Tokens kept, or a loopback listener kept: nothing to refuse.
        let kept = config("[server]\nlisten = \"127.0.0.1:8080\"\n[websocket]\ntokens = [\"t\"]\n");
        let (pinned, _) = pin_restart_only(&running, kept.clone());
        assert_eq!(unsafe_with_running_listener(&pinned, &kept), None);
        let local = config("[server]\nlisten = \"127.0.0.1:9090\"\n");
        let (pinned, _) = pin_restart_only(&local, new.clone());
        assert_eq!(unsafe_with_running_listener(&pinned, &new), None);
    }

    #[test]
    fn an_unchanged_file_warns_nothing() {
        let text = "[server]\nlisten = \"127.0.0.1:8080\"\n";
        let (_, warnings) = pin_restart_only(&config(text), config(text));
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    /// Two spellings of one address or one directory are no change: before,
    /// they waited for a restart and raised `CallrelayRestartPending`.
    #[test]
    fn another_spelling_of_the_listener_or_the_journal_path_is_no_change() {
        let running = config("[server]\nlisten = \"[::1]:8080\"\n[journal]\npath = \"./data\"\n");
        let new =
            config("[server]\nlisten = \"[0:0:0:0:0:0:0:1]:08080\"\n[journal]\npath = \"data\"\n");
        let (_, warnings) = pin_restart_only(&running, new);
        assert!(warnings.is_empty(), "{warnings:?}");
        let moved = config("[server]\nlisten = \"[::1]:8081\"\n[journal]\npath = \"./data2\"\n");
        let (_, warnings) = pin_restart_only(&running, moved);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
    }

    /// "takes effect only after a restart" alone led operators to restart
    /// onto an empty journal, stranding what the old one held.
    #[test]
    fn a_changed_journal_path_says_to_move_the_journal_file_before_the_restart() {
        let running = config("[journal]\npath = \"/var/lib/callrelay\"\n");
        let moved = config("[journal]\npath = \"/srv/callrelay\"\n");
        let (pinned, warnings) = pin_restart_only(&running, moved);
        assert_eq!(
            pinned.journal.path.get_ref(),
            Path::new("/var/lib/callrelay")
        );
        let [warning] = warnings.as_slice() else {
            panic!("{warnings:?}")
        };
        assert!(
            warning.contains("takes effect only after a restart"),
            "{warning}"
        );
        for said in [
            "stop the relay",
            "move journal.redb from \"/var/lib/callrelay\" to \"/srv/callrelay\"",
            "keeping its owner",
            "starts an empty journal",
            "not sent",
        ] {
            assert!(warning.contains(said), "{said:?} in {warning}");
        }
        // The other settings keep their plain warning.
        let running = config("[dedup]\nwindow = \"10m\"\n");
        let (_, warnings) = pin_restart_only(&running, config("[dedup]\nwindow = \"20m\"\n"));
        assert!(!warnings.concat().contains("journal.redb"), "{warnings:?}");
    }
}
