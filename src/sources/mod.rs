//! Sources: the connections callrelay holds (Voip24h socket.io, SPRecord SSE)
//! and the webhook routes. They hand events to ingest and never talk to sinks.
//!
//! [`SourceManager`] owns the running connection sources. Guarantees: the
//! CA files are read before anything changes ([`WantedSources::read`]); a
//! source whose config or CA file changed (or that started while its CA
//! file could not be read, once it is read: see [`FilesDigest`]), or that
//! was removed, is stopped, and its task has returned (its sockets closed),
//! before a replacement starts — so one key never has two sessions; other
//! sources keep running across a reload.
//! The sources a reload stops are asked to stop together, so a reload takes
//! the slowest stop, not the sum of them (before, 70 changed sources took
//! 11.8 s, one at a time, and the first one stopped waited all of it).

pub mod deadline;
pub mod masked;
pub mod proxy;
pub mod retry_log;
pub mod sprecord;
pub mod tls;
pub mod unread_dates;
pub mod voip24h;
pub mod webhook;

#[cfg(test)]
mod tests_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::Context;
use crate::config::Config;
use crate::event::Vendor;
use crate::files_digest::{self, FilesDigest};
use sprecord::config::SprecordConfig;
use voip24h::config::Voip24hConfig;

/// One connection source's config.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceConfig {
    Voip24h(Voip24hConfig),
    Sprecord(SprecordConfig),
}

impl SourceConfig {
    pub fn key(&self) -> (Vendor, String) {
        match self {
            SourceConfig::Voip24h(c) => (Vendor::Voip24h, c.account.get_ref().clone()),
            SourceConfig::Sprecord(c) => (Vendor::Sprecord, c.account.get_ref().clone()),
        }
    }

    fn tls(&self) -> &tls::TlsSettings {
        match self {
            SourceConfig::Voip24h(c) => &c.tls,
            SourceConfig::Sprecord(c) => &c.tls,
        }
    }

    fn proxy(&self) -> Option<&proxy::ProxyRoute> {
        match self {
            SourceConfig::Voip24h(c) => c.proxy.as_ref(),
            SourceConfig::Sprecord(c) => c.proxy.as_ref(),
        }
    }

    /// Every connection source a config declares.
    pub fn all(config: &Config) -> Vec<SourceConfig> {
        let voip = config
            .voip24h
            .iter()
            .map(|c| SourceConfig::Voip24h(c.get_ref().clone()));
        let sp = config
            .sprecord
            .iter()
            .map(|c| SourceConfig::Sprecord(c.get_ref().clone()));
        voip.chain(sp).collect()
    }
}

/// A source's config and the digest of its CA file as read before it
/// started: a source runs on while neither calls for a restart
/// ([`SourceSetup::runs_on_as`]).
#[derive(Clone, Debug)]
struct SourceSetup {
    config: SourceConfig,
    /// The CA file's contents (`tls::file_digest`): a renewed CA file
    /// restarts the source even when relay.toml did not change.
    ca_digest: FilesDigest,
}

impl SourceSetup {
    /// Whether a source running on `self` runs on as `wanted`: the same
    /// config, and its CA file not a reason to restart it
    /// ([`FilesDigest::calls_for_restart`]).
    fn runs_on_as(&self, wanted: &SourceSetup) -> bool {
        self.config == wanted.config && !self.ca_digest.calls_for_restart(&wanted.ca_digest)
    }
}

/// The connection sources a config declares, each with what it read from
/// its CA file: what [`SourceManager::apply`] brings the running ones in
/// line with. Made by [`WantedSources::read`], which does the reading, so
/// that a reload reads every file before it changes anything.
#[derive(Debug)]
pub(crate) struct WantedSources {
    setups: BTreeMap<SourceKey, SourceSetup>,
}

impl WantedSources {
    /// The sources' CA files read whole on the blocking pool, each file
    /// once however many accounts name it, by `deadline`
    /// ([`files_digest::read_each_by`]): seconds on a cold, slow disk (an
    /// NFS mount), which held one of the two runtime workers (webhook
    /// answers, WebSocket pings) through a reload, as the Kafka option files
    /// did. A file not read by then is unknown, and no source is restarted
    /// for it by this reload. The sources are taken from `config` at the
    /// call; the reads start when the future is first polled.
    pub(crate) fn read(
        config: &Config,
        deadline: tokio::time::Instant,
    ) -> impl std::future::Future<Output = WantedSources> + use<> {
        let configs = SourceConfig::all(config);
        async move {
            let mut named: BTreeMap<std::path::PathBuf, Vec<String>> = BTreeMap::new();
            for config in &configs {
                if let Some(path) = &config.tls().ca_file {
                    let (vendor, account) = config.key();
                    let accounts = named.entry(path.get_ref().clone()).or_default();
                    accounts.push(format!("{}/{account}", vendor.as_str()));
                }
            }
            let digests = files_digest::read_each_by(named, deadline, tls::file_digest).await;
            let setups = configs
                .into_iter()
                .map(|config| {
                    let ca_digest = match &config.tls().ca_file {
                        None => FilesDigest::Read(None),
                        Some(path) => digests
                            .get(path.get_ref())
                            .copied()
                            .unwrap_or(FilesDigest::Unknown),
                    };
                    (config.key(), SourceSetup { config, ca_digest })
                })
                .collect();
            WantedSources { setups }
        }
    }
}

struct Running {
    setup: SourceSetup,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// How long a source may take to close its sockets when asked to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The running connection sources, keyed by (vendor, account).
#[derive(Default)]
pub struct SourceManager {
    running: BTreeMap<SourceKey, Running>,
    /// Outlives the Voip24h sources it restarts (see [`voip24h::DetectedEngines`]).
    voip24h_engines: voip24h::DetectedEngines,
}

/// A connection source's name: its vendor and account.
type SourceKey = (Vendor, String);

/// What bringing the sources `running` in line with those `wanted` does to
/// each: one whose setup is the same keeps running, one whose setup differs
/// is restarted, one no longer wanted is stopped, a new one is started.
/// Each list is in key order.
fn plan_changes<'a>(
    running: impl Iterator<Item = (&'a SourceKey, &'a SourceSetup)>,
    wanted: &BTreeMap<SourceKey, SourceSetup>,
) -> SourceChanges {
    let mut changes = SourceChanges::default();
    let mut seen = std::collections::BTreeSet::new();
    for (key, setup) in running {
        seen.insert(key);
        match wanted.get(key) {
            Some(wanted) if setup.runs_on_as(wanted) => changes.unchanged.push(key.clone()),
            Some(_) => changes.restarted.push(key.clone()),
            None => changes.stopped.push(key.clone()),
        }
    }
    changes.started = wanted
        .keys()
        .filter(|key| !seen.contains(key))
        .cloned()
        .collect();
    changes
}

/// What `apply` changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SourceChanges {
    pub started: Vec<(Vendor, String)>,
    pub stopped: Vec<(Vendor, String)>,
    pub restarted: Vec<(Vendor, String)>,
    pub unchanged: Vec<(Vendor, String)>,
}

/// How many sources a log line names before "and N more": a relay of
/// thousands of accounts wrote one `serving` line of hundreds of KB, which
/// journald splits (past its 48 KiB `LineMax`) into pieces that are no
/// longer JSON. `/status` lists them all.
const LISTED: usize = 20;

impl SourceChanges {
    /// `sources` as the log shows them: `voip24h/main, sprecord/office`, the
    /// first [`LISTED`] then how many more.
    pub fn listed(sources: &[(Vendor, String)]) -> String {
        let named = sources
            .iter()
            .map(|(vendor, account)| format!("{}/{account}", vendor.as_str()));
        crate::logging::first_then_more(named, LISTED)
    }
}

impl SourceManager {
    /// Brings the running sources in line with `wanted` (no file is read
    /// here: [`WantedSources::read`] did it).
    pub(crate) async fn apply(
        &mut self,
        wanted: WantedSources,
        ctx: &Arc<Context>,
    ) -> SourceChanges {
        let mut wanted = wanted.setups;
        let running = self.running.iter().map(|(key, r)| (key, &r.setup));
        let changes = plan_changes(running, &wanted);
        let stopping = changes.restarted.iter().chain(&changes.stopped);
        let stopping: Vec<_> = stopping
            .filter_map(|key| Some((key.clone(), self.running.remove(key)?)))
            .map(|(key, r)| (key, r.cancel, r.task))
            .collect();
        stop_together(stopping).await;
        for key in changes.restarted.iter().chain(&changes.started) {
            let Some(setup) = wanted.remove(key) else {
                continue;
            };
            let cancel = ctx.shutdown.child_token();
            let engines = self.voip24h_engines.clone();
            let task = spawn_source(setup.config.clone(), ctx.clone(), cancel.clone(), engines);
            self.running.insert(
                key.clone(),
                Running {
                    setup,
                    cancel,
                    task,
                },
            );
        }
        changes
    }

    /// Stops every source and waits until each has closed its connections.
    pub async fn stop_all(&mut self) {
        let all = std::mem::take(&mut self.running);
        stop_together(
            all.into_iter()
                .map(|(key, r)| (key, r.cancel, r.task))
                .collect(),
        )
        .await;
    }
}

fn spawn_source(
    cfg: SourceConfig,
    ctx: Arc<Context>,
    cancel: CancellationToken,
    voip24h_engines: voip24h::DetectedEngines,
) -> JoinHandle<()> {
    if let Some(proxy) = cfg.proxy() {
        let (vendor, account) = cfg.key();
        tracing::info!(%vendor, %account, %proxy, "connecting through the proxy");
    }
    match cfg {
        SourceConfig::Voip24h(c) => tokio::spawn(voip24h::run(c, ctx, cancel, voip24h_engines)),
        SourceConfig::Sprecord(c) => tokio::spawn(sprecord::run(c, ctx, cancel)),
    }
}

/// Cancels every task first, then waits for each, all within one
/// [`STOP_TIMEOUT`]; a task still running then is aborted (and logged).
/// Returns once every task has returned, so no key has two sessions.
async fn stop_together(tasks: Vec<((Vendor, String), CancellationToken, JoinHandle<()>)>) {
    for (_, cancel, _) in &tasks {
        cancel.cancel();
    }
    let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
    for (key, _, mut task) in tasks {
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            tracing::error!(vendor = %key.0, account = %key.1, "source did not stop in time; aborting it");
            task.abort();
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `serving` and `config reloaded` lines named every account: past
    /// about 2,500, journald split them into pieces that are not JSON
    /// (review of the operator's day, 2026-12-06, eighth round).
    #[test]
    fn a_log_line_names_the_first_sources_then_how_many_more() {
        let sources: Vec<(Vendor, String)> = (0..LISTED + 3)
            .map(|i| (Vendor::Sprecord, format!("a{i}")))
            .collect();
        assert_eq!(
            SourceChanges::listed(&sources[..2]),
            "sprecord/a0, sprecord/a1"
        );
        let all = SourceChanges::listed(&sources);
        assert!(all.starts_with("sprecord/a0, sprecord/a1, "), "{all}");
        assert!(all.ends_with("sprecord/a19 and 3 more"), "{all}");
        assert_eq!(all.matches("sprecord/").count(), LISTED);
        assert_eq!(
            SourceChanges::listed(&sources[..LISTED])
                .matches(", ")
                .count(),
            LISTED - 1
        );
    }

    /// The setups of the sources `text` (a relay.toml) declares, by key.
    fn setups(text: &str) -> BTreeMap<SourceKey, SourceSetup> {
        let config = Config::from_text("relay.toml", text, &|_| None);
        let config = config.unwrap_or_else(|e| panic!("{e}"));
        let read = |config: SourceConfig| SourceSetup {
            ca_digest: FilesDigest::Read(
                config
                    .tls()
                    .ca_file
                    .as_ref()
                    .and_then(|f| tls::file_digest(f.get_ref())),
            ),
            config,
        };
        SourceConfig::all(&config)
            .into_iter()
            .map(|c| (c.key(), read(c)))
            .collect()
    }

    fn voip24h(account: &str, key: &str) -> String {
        format!(
            "[[voip24h]]\naccount = \"{account}\"\nurl = \"http://127.0.0.1:1\"\nkey = \"{key}\"\n"
        )
    }

    fn sprecord(account: &str, port: u16) -> String {
        format!("[[sprecord]]\naccount = \"{account}\"\nurl = \"http://127.0.0.1:{port}\"\n")
    }

    fn keys(vendor: Vendor, accounts: &[&str]) -> Vec<SourceKey> {
        accounts.iter().map(|a| (vendor, (*a).to_owned())).collect()
    }

    #[test]
    fn a_reload_keeps_the_same_restarts_the_changed_stops_the_gone_and_starts_the_new() {
        let before = [
            voip24h("same", "k1"),
            voip24h("changed", "k2"),
            voip24h("gone", "k3"),
            sprecord("office", 1),
        ];
        let after = [
            voip24h("same", "k1"),
            voip24h("changed", "k2-rotated"),
            voip24h("new", "k4"),
            sprecord("office", 1),
            sprecord("branch", 2),
        ];
        let running = setups(&before.concat());
        let changes = plan_changes(running.iter(), &setups(&after.concat()));
        let mut unchanged = keys(Vendor::Voip24h, &["same"]);
        unchanged.extend(keys(Vendor::Sprecord, &["office"]));
        let mut started = keys(Vendor::Voip24h, &["new"]);
        started.extend(keys(Vendor::Sprecord, &["branch"]));
        assert_eq!(
            changes,
            SourceChanges {
                started,
                stopped: keys(Vendor::Voip24h, &["gone"]),
                restarted: keys(Vendor::Voip24h, &["changed"]),
                unchanged,
            }
        );
    }

    #[test]
    fn the_same_config_changes_nothing_and_an_empty_one_stops_everything() {
        let text = [voip24h("a", "k"), sprecord("b", 1)].concat();
        let running = setups(&text);
        let changes = plan_changes(running.iter(), &setups(&text));
        assert_eq!(changes.unchanged.len(), 2);
        assert_eq!(changes.started.len() + changes.stopped.len(), 0);
        assert!(changes.restarted.is_empty());
        let changes = plan_changes(running.iter(), &BTreeMap::new());
        assert_eq!(changes.stopped.len(), 2);
        assert_eq!(changes.unchanged.len() + changes.restarted.len(), 0);
    }

    /// A renewed CA file restarts the source though relay.toml is the same,
    /// so that its next connection trusts the new CA.
    #[test]
    fn a_changed_ca_file_restarts_the_source() {
        let running = setups(&voip24h("a", "k"));
        let mut wanted = running.clone();
        for setup in wanted.values_mut() {
            setup.ca_digest = FilesDigest::Read(Some([7; 32]));
        }
        let changes = plan_changes(running.iter(), &wanted);
        assert_eq!(changes.restarted, keys(Vendor::Voip24h, &["a"]));
        assert!(changes.unchanged.is_empty());
    }

    /// A CA file not read now (the read did not end within its bound, or
    /// failed) restarts no source whose config is the same: before, a
    /// failed read read as "no file" and restarted every source that has
    /// one. A source started while its file could not be read is restarted
    /// once, at the first reload that reads it (it loaded the file itself,
    /// at some moment since). A source whose config changed is restarted, a
    /// new one started, as ever.
    #[test]
    fn a_ca_file_not_read_now_restarts_no_source_whose_config_is_the_same() {
        let digest = |d| FilesDigest::Read(Some([d; 32]));
        let with_digest = |text: &str, digest: FilesDigest| {
            let mut setups = setups(text);
            for setup in setups.values_mut() {
                setup.ca_digest = digest;
            }
            setups
        };
        let before = [voip24h("same", "k1"), voip24h("changed", "k2")].concat();
        let after = [
            voip24h("same", "k1"),
            voip24h("changed", "k3"),
            voip24h("new", "k4"),
        ]
        .concat();
        let restarted = |running: FilesDigest, now: FilesDigest| {
            let changes = plan_changes(
                with_digest(&before, running).iter(),
                &with_digest(&after, now),
            );
            assert_eq!(changes.started, keys(Vendor::Voip24h, &["new"]));
            changes.restarted
        };
        let unknown = FilesDigest::Unknown;
        for running in [digest(7), unknown] {
            assert_eq!(
                restarted(running, unknown),
                keys(Vendor::Voip24h, &["changed"])
            );
        }
        assert_eq!(
            restarted(digest(7), digest(7)),
            keys(Vendor::Voip24h, &["changed"])
        );
        let both = keys(Vendor::Voip24h, &["changed", "same"]);
        assert_eq!(restarted(digest(7), digest(8)), both, "read, and changed");
        assert_eq!(
            restarted(unknown, digest(8)),
            both,
            "never read by the source"
        );
    }

    /// Every account naming a CA file gets that file's digest (each file is
    /// read once, however many accounts name it); one naming none, `None`.
    #[tokio::test]
    async fn each_account_gets_the_digest_of_the_ca_file_it_names() {
        use sha2::Digest;
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).unwrap().pem();
        let (shared, own) = (dir.path().join("shared.pem"), dir.path().join("own.pem"));
        let mut text = String::new();
        for (account, ca) in [
            ("a", Some(&shared)),
            ("b", Some(&shared)),
            ("c", Some(&own)),
            ("d", None),
        ] {
            text += &format!(
                "[[sprecord]]\naccount = \"{account}\"\nurl = \"https://{account}.rec.local\"\n"
            );
            if let Some(path) = ca {
                std::fs::write(path, &pem).unwrap();
                text += &format!("tls = {{ ca_file = {:?} }}\n", path.display().to_string());
            }
        }
        let config = Config::from_text("relay.toml", &text, &|_| None);
        let config = config.unwrap_or_else(|e| panic!("{e}"));
        // Other contents than the check read: the digests are of these.
        std::fs::write(&shared, "shared").unwrap();
        std::fs::write(&own, "own").unwrap();
        let wanted = WantedSources::read(&config, files_digest::deadline_from_now()).await;
        let digest = |account: &str| {
            let setup = wanted.setups.get(&(Vendor::Sprecord, account.to_owned()));
            match setup.map(|s| s.ca_digest) {
                Some(FilesDigest::Read(digest)) => digest,
                other => panic!("{account}: {other:?}"),
            }
        };
        let of = |contents: &str| Some(<[u8; 32]>::from(sha2::Sha256::digest(contents)));
        assert_eq!(digest("a"), of("shared"));
        assert_eq!(digest("b"), of("shared"));
        assert_eq!(digest("c"), of("own"));
        assert_eq!(digest("d"), None);
    }

    /// Each task returns only once every task was asked to stop: stopped one
    /// at a time, the first would wait its whole timeout and be aborted.
    #[tokio::test(start_paused = true)]
    async fn sources_are_asked_to_stop_together() {
        const N: usize = 5;
        let barrier = Arc::new(tokio::sync::Barrier::new(N));
        let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks = (0..N)
            .map(|i| {
                let cancel = CancellationToken::new();
                let (barrier, finished, stop) = (barrier.clone(), finished.clone(), cancel.clone());
                let task = tokio::spawn(async move {
                    stop.cancelled().await;
                    barrier.wait().await;
                    finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                });
                ((Vendor::Sprecord, format!("d{i}")), cancel, task)
            })
            .collect();
        let started = tokio::time::Instant::now();
        stop_together(tasks).await;
        assert_eq!(finished.load(std::sync::atomic::Ordering::SeqCst), N);
        assert!(
            started.elapsed() < STOP_TIMEOUT,
            "nothing waited for a timeout"
        );
    }

    /// A task that ignores its cancel is aborted at the one deadline, and the
    /// others still stop normally.
    #[tokio::test(start_paused = true)]
    async fn a_source_that_does_not_stop_is_aborted_at_the_deadline() {
        let stuck = CancellationToken::new();
        let polite = CancellationToken::new();
        let polite_stop = polite.clone();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done_in_task = done.clone();
        let tasks = vec![
            (
                (Vendor::Voip24h, "stuck".to_owned()),
                stuck,
                tokio::spawn(std::future::pending::<()>()),
            ),
            (
                (Vendor::Voip24h, "polite".to_owned()),
                polite,
                tokio::spawn(async move {
                    polite_stop.cancelled().await;
                    done_in_task.store(true, std::sync::atomic::Ordering::SeqCst);
                }),
            ),
        ];
        let started = tokio::time::Instant::now();
        stop_together(tasks).await;
        assert_eq!(started.elapsed(), STOP_TIMEOUT);
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn changed_sources_are_listed_as_vendor_slash_account() {
        let sources = [
            (Vendor::Voip24h, "main".to_owned()),
            (Vendor::Sprecord, "office".to_owned()),
        ];
        assert_eq!(
            SourceChanges::listed(&sources),
            "voip24h/main, sprecord/office"
        );
        assert_eq!(SourceChanges::listed(&[]), "");
    }
}
