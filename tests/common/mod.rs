//! Shared harness for integration tests: an in-process relay on 127.0.0.1
//! with its journal in a temporary directory, and ways to await its events.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use callrelay::app::{Context, Relay};
use callrelay::config::Config;
use callrelay::journal::JournaledEvent;

pub mod proxy;
pub mod tls;

/// A relay started for one test; stopped (drained) on `stop`. Nothing stops
/// it on drop: a `TestRelay` dropped without `stop` leaves the relay's task
/// running detached (still serving, its journal open) until the test's
/// runtime shuts down and drops its tasks mid-flight, without a drain; its
/// temporary directory is removed at once. Call `stop` for a clean end.
pub struct TestRelay {
    pub relay: Option<Relay>,
    pub addr: std::net::SocketAddr,
    pub ctx: Arc<Context>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

/// `[server]` and `[journal]` for a test: port 0 and a temporary journal.
pub fn base_config(dir: &std::path::Path) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[journal]\npath = {:?}\n\n",
        dir.join("journal").display().to_string()
    )
}

/// The relay's binary, `callrelay`, as a command without the host's proxy
/// variables. A spawned relay (and `check`) reads them for its sources, so
/// a developer's `HTTP_PROXY` or `ALL_PROXY` took its connections to the
/// 127.0.0.1 peers through that proxy (and one it cannot use refused the
/// source); [`start_relay_tuned`] starts the in-process relays without them
/// too. A test that wants one sets it on the command.
pub fn relay_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_callrelay"));
    without_host_proxies(&mut command);
    command
}

/// Takes the host's proxy variables (`HTTPS_PROXY`, `no_proxy`, …: those
/// the relay reads) out of `command`'s environment, for a command that runs
/// the relay through a wrapper (`prlimit`, `sh -c … exec`).
pub fn without_host_proxies(command: &mut std::process::Command) -> &mut std::process::Command {
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(callrelay::sources::proxy::is_proxy_variable)
        {
            command.env_remove(name);
        }
    }
    command
}

/// Starts a relay whose config is `base_config` followed by `rest`.
pub async fn start_relay(rest: &str) -> TestRelay {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!("{}{}", base_config(dir.path()), rest);
    start_relay_in(dir, &text).await
}

/// Starts a relay with the full config `text`, in `dir` (kept alive by the result).
pub async fn start_relay_in(dir: tempfile::TempDir, text: &str) -> TestRelay {
    start_relay_tuned(dir, text, |_| {}).await
}

/// As `start_relay_in`, with `tune` applied to the loaded config before start:
/// for values a user may not set but a test must (intervals shorter than the
/// vendor allows).
pub async fn start_relay_tuned(
    dir: tempfile::TempDir,
    text: &str,
    tune: impl FnOnce(&mut Config),
) -> TestRelay {
    let config_path = dir.path().join("relay.toml");
    std::fs::write(&config_path, text).expect("write config");
    // The host's proxy variables do not reach a test relay: a test that wants
    // a proxy says so in `[proxy]`.
    let without_proxies = |name: &str| {
        (!callrelay::sources::proxy::is_proxy_variable(name))
            .then(|| std::env::var(name).ok())
            .flatten()
    };
    let mut config = Config::from_text(&config_path.display().to_string(), text, &without_proxies)
        .unwrap_or_else(|e| panic!("test config:\n{e}"));
    tune(&mut config);
    let relay = Relay::start(config, config_path.clone())
        .await
        .unwrap_or_else(|e| panic!("relay start: {e}"));
    TestRelay {
        addr: relay.addr,
        ctx: relay.ctx.clone(),
        relay: Some(relay),
        dir,
        config_path,
    }
}

/// Starts a relay whose config is `base_config` followed by `rest`, with the
/// HTTP server's connection bounds set to `timeouts` (not keys of the file).
pub async fn start_relay_with_http_timeouts(
    rest: &str,
    timeouts: callrelay::http_serve::HttpTimeouts,
) -> TestRelay {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!("{}{}", base_config(dir.path()), rest);
    start_relay_tuned(dir, &text, |config| config.server.http_timeouts = timeouts).await
}

/// Reads (and discards) what the server sends on `stream` until it closes the
/// connection (end of stream, or a reset); false if it is still open after
/// `within`.
pub async fn await_close(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await
    .is_ok()
}

/// Every event a stopped relay left in its journal, read from disk (a stop
/// closes the journal: its handle in `ctx` reads nothing any more).
/// Opens the journal a test relay kept under `dir` (its `journal`
/// directory, the default window and limits), as a restart would.
pub fn reopen_journal(
    dir: &std::path::Path,
) -> Result<callrelay::journal::Journal, callrelay::journal::JournalError> {
    callrelay::journal::Journal::open(callrelay::journal::JournalOptions {
        dir: dir.join("journal"),
        dedup_window: Duration::from_secs(600),
        retention: Duration::from_secs(86_400),
        max_size: 1 << 30,
    })
}

pub fn events_on_disk(ctx: &Context) -> Vec<JournaledEvent> {
    callrelay::journal::Journal::open(ctx.journal.options().clone())
        .expect("reopen the journal")
        .read_after(0, usize::MAX)
        .expect("read journal")
}

impl TestRelay {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `callrelay_events_duplicate_total{vendor, account}`.
    pub fn duplicates(&self, vendor: &str, account: &str) -> u64 {
        self.ctx
            .metrics
            .events_duplicate
            .with_label_values(&[vendor, account])
            .get()
    }

    /// `callrelay_http_connections_closed_total{reason}`.
    pub fn connections_closed(&self, reason: &str) -> u64 {
        self.ctx
            .metrics
            .http_connections_closed
            .with_label_values(&[reason])
            .get()
    }

    /// Waits until the journal's last seq is at least `seq`.
    pub async fn wait_for_seq(&self, seq: u64, within: Duration) {
        let mut committed = self.ctx.hub.committed();
        let result = tokio::time::timeout(within, async {
            while *committed.borrow_and_update() < seq {
                if committed.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        assert!(
            result.is_ok(),
            "timed out waiting for seq {seq}; last seq is {}",
            self.ctx.journal.last_seq()
        );
    }

    /// Re-reads the config file, as SIGHUP does; panics if it is refused.
    pub async fn reload(&self) -> callrelay::app::ReloadOutcome {
        self.relay
            .as_ref()
            .expect("running")
            .reload_with_outcome()
            .await
            .expect("reload")
    }

    /// Every event held in the journal, in seq order.
    pub fn events(&self) -> Vec<JournaledEvent> {
        self.ctx
            .journal
            .read_after(0, usize::MAX)
            .expect("read journal")
    }

    /// The events' CloudEvent JSON, parsed.
    pub fn event_values(&self) -> Vec<serde_json::Value> {
        self.events()
            .iter()
            .map(|e| serde_json::from_slice(&e.json).expect("journaled JSON"))
            .collect()
    }

    /// Drains and stops the relay, returning its journal directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(relay) = self.relay.take() {
            relay.shutdown();
            // Bounded: a stop that hangs fails this test, by name, rather
            // than holding the whole run.
            tokio::time::timeout(Duration::from_secs(60), relay.wait())
                .await
                .expect("the relay stopped within 60 s")
                .expect("relay stopped cleanly");
        }
        self.dir
    }
}

/// What the relay logs on this thread at `filter` (an env-filter directive,
/// `callrelay::sources=info`), from now until the guard is dropped. A
/// `#[tokio::test]` runs on one thread, the in-process relay's tasks with
/// it: the capture holds that relay's lines and none of the relays other
/// tests run meanwhile (a multi-thread runtime's workers are not covered).
pub fn capture_log(filter: &str) -> (CapturedLog, tracing::subscriber::DefaultGuard) {
    static ANCHORED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    ANCHORED.get_or_init(|| {
        // Another global subscriber (a test binary's own) is left in place.
        let _ = tracing::subscriber::set_global_default(Anchor);
    });
    let log = CapturedLog::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter(filter)
        .with_writer(move || writer.clone())
        .finish();
    (log, tracing::subscriber::set_default(subscriber))
}

/// The global default under [`capture_log`]: asks to be asked about every
/// log line, and takes none. tracing caches each callsite's interest for the
/// whole process, decided on the thread that first reaches it: a sibling
/// test's thread, with no subscriber, cached `never`, and the captured
/// relay's line was then never written (seen: its `session connected`
/// missing under a parallel run).
struct Anchor;

impl tracing::Subscriber for Anchor {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        false
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        // With no capture on, every line stops at the level check.
        Some(tracing::level_filters::LevelFilter::OFF)
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, _: &tracing::Event<'_>) {}

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// The lines [`capture_log`] took.
#[derive(Clone, Default)]
pub struct CapturedLog(Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLog {
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut bytes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Polls `check` until it returns true (for states that have no event to await,
/// such as a peer's own counters); fails after `within`.
pub async fn eventually<F: FnMut() -> bool>(within: Duration, what: &str, mut check: F) {
    let deadline = tokio::time::Instant::now() + within;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Where a copy of an event is in Kafka, and when its producer stamped it
/// (librdkafka stamps a record when it is produced; the relay sets no time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
}

/// A second copy in Kafka of an event read before.
pub struct SecondCopy {
    pub seq: u64,
    pub first: Place,
    pub again: Place,
}

impl std::fmt::Debug for SecondCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (a, b) = (self.first, self.again);
        write!(
            f,
            "seq {} at {}:{} and {}:{} (stamped {:?} and {:?})",
            self.seq, a.partition, a.offset, b.partition, b.offset, a.timestamp, b.timestamp
        )
    }
}

/// Whether a second copy in Kafka, after every broker of librdkafka's mock
/// cluster went down and came back, is the mock's rather than the relay's.
/// The mock checks an idempotent producer's sequence numbers only for a
/// transactional producer (`rd_kafka_mock_validate_records` in librdkafka's
/// `rdkafka_mock.c`), so a batch it appended whose answer the outage cut off
/// is appended again when librdkafka retries it, where a Kafka broker
/// acknowledges the retry without writing it. Seen: seqs 220 and 221 at
/// partition 2 offsets 59-60 and again at 61-62, the cursor at 204, nothing
/// replaced or read back. Such a copy is the same record: stamped when it
/// was produced, as its first copy (a copy the relay sent again is a new
/// record, stamped then), later in the same partition; and it is of an
/// event in flight when the brokers went down: journaled by then
/// (`down_at`, the last seq then) and past the cursor as the outage ended
/// (`cursor_at_end`: nothing is acknowledged while every broker is down,
/// and a batch whose answer was cut off moves it only after its retry).
pub fn copied_by_the_mock(copy: &SecondCopy, cursor_at_end: u64, down_at: u64) -> bool {
    let (first, again) = (copy.first, copy.again);
    first.timestamp.is_some()
        && first.timestamp == again.timestamp
        && first.partition == again.partition
        && first.offset < again.offset
        && cursor_at_end < copy.seq
        && copy.seq <= down_at
}

/// Fails on a second copy the relay made across an outage of every broker
/// of the mock cluster; the mock's own ([`copied_by_the_mock`]) are written
/// to stderr, which the harness shows (it keeps a passing test's prints).
pub fn assert_none_is_the_relays(copies: &[SecondCopy], cursor_at_end: u64, down_at: u64) {
    let (the_mocks, the_relays): (Vec<_>, Vec<_>) = copies
        .iter()
        .partition(|copy| copied_by_the_mock(copy, cursor_at_end, down_at));
    assert!(
        the_relays.is_empty(),
        "{} events sent to Kafka twice by the relay across the outage (not the same record \
         written again by the mock; its own copies: {the_mocks:?}), e.g. {:?}",
        the_relays.len(),
        &the_relays[..the_relays.len().min(5)]
    );
    if !the_mocks.is_empty() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "the mock's own copies (docs/kafka.md): {the_mocks:?}"
        );
    }
}
