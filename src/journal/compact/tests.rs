use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use serde_json::json;

use super::*;
use crate::event::IncomingEvent;
use crate::journal::dedup::DEDUP_LOG;
use crate::journal::resume_ids::SSE_RESUME;
use crate::journal::tests_support::{
    event, kafka_holding_nothing, options, record_held_drops, store_format,
};
use crate::journal::{AppendOutcome, CURSOR_STATES, CURSORS, EVENTS, HELD_DROPS, META};

/// When the old events were journaled; the recent ones come an hour later,
/// past `retention` (1 h in [`options`]) for the old ones.
const T0: u64 = 9_000_000_000;
const T1: u64 = T0 + 3_600_000;
const OLD: u64 = 4_000;
const RECENT: u64 = 100;

/// An event with a 2 KiB payload, so that a few thousand fill megabytes.
fn padded(identity: &str) -> IncomingEvent {
    let mut e = event(identity);
    e.raw = json!({"call_id": identity, "pad": "x".repeat(2048)}).into();
    e
}

/// A journal after an outage: `OLD` events that retention has removed
/// since, then `RECENT` still held with their dedup entries, the Kafka
/// cursor and its state, a cursor of a sink no longer configured, a record
/// of held drops and an SPRecord resume id. Returned open.
fn after_an_outage(dir: &Path) -> Journal {
    let j = Journal::open(options(dir)).unwrap();
    for chunk in 0..OLD / 500 {
        let batch: Vec<_> = (0..500)
            .map(|i| padded(&format!("old-{}", chunk * 500 + i)))
            .collect();
        j.append_batch_at(&batch, T0).unwrap();
    }
    let batch: Vec<_> = (0..RECENT)
        .map(|i| padded(&format!("recent-{i}")))
        .collect();
    j.append_batch_at(&batch, T1).unwrap();
    j.set_cursor_with_state("kafka", OLD + 50, b"offsets", true)
        .unwrap();
    j.set_cursor("removed-sink", OLD + 20, true).unwrap();
    record_held_drops(&j, "kafka", OLD + 60..=OLD + 62);
    let resume = [(
        ("office".to_owned(), "https://h".to_owned()),
        "id-7".to_owned(),
    )];
    j.save_sse_resume_ids(&resume, &[], true).unwrap();
    let removed = j
        .enforce_retention_at(&[kafka_holding_nothing()], T1 + 1_000)
        .unwrap();
    assert_eq!(removed.expired, OLD);
    assert_eq!(j.dedup_entries(), RECENT as usize);
    j
}

/// Every row of every table of the journal, and the tables' names.
#[derive(Debug, PartialEq)]
struct Tables {
    names: Vec<String>,
    events: Vec<(u64, Vec<u8>)>,
    dedup: Vec<(u64, Vec<u8>)>,
    cursors: Vec<(String, u64)>,
    cursor_states: Vec<(String, Vec<u8>)>,
    meta: Vec<(String, u64)>,
    held_drops: Vec<((String, u64), u64)>,
    resume_ids: Vec<((String, String), String)>,
}

fn rows<K: redb::Key + 'static, V: redb::Value + 'static, T>(
    read: &redb::ReadTransaction,
    table: TableDefinition<K, V>,
    row: impl for<'a> Fn(K::SelfType<'a>, V::SelfType<'a>) -> T,
) -> Vec<T> {
    let table = read.open_table(table).unwrap();
    table
        .iter()
        .unwrap()
        .map(|entry| {
            let (k, v) = entry.unwrap();
            row(k.value(), v.value())
        })
        .collect()
}

fn tables(j: &Journal) -> Tables {
    let db = j.db().unwrap();
    let read = db.begin_read().unwrap();
    let mut names: Vec<String> = read
        .list_tables()
        .unwrap()
        .map(|t| t.name().to_owned())
        .collect();
    names.sort();
    Tables {
        names,
        events: rows(&read, EVENTS, |k, v| (k, v.to_vec())),
        dedup: rows(&read, DEDUP_LOG, |k, v| (k, v.to_vec())),
        cursors: rows(&read, CURSORS, |k, v| (k.to_owned(), v)),
        cursor_states: rows(&read, CURSOR_STATES, |k, v| (k.to_owned(), v.to_vec())),
        meta: rows(&read, META, |k, v| (k.to_owned(), v)),
        held_drops: rows(&read, HELD_DROPS, |(sink, seq), v| {
            ((sink.to_owned(), seq), v)
        }),
        resume_ids: rows(&read, SSE_RESUME, |(account, url), v| {
            ((account.to_owned(), url.to_owned()), v.to_owned())
        }),
    }
}

/// The tables of the closed journal in `dir`, read through a start's open.
fn tables_in(dir: &Path) -> Tables {
    tables(&Journal::open(options(dir)).unwrap())
}

fn file_size(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("journal.redb")).unwrap().len()
}

/// (seq, CloudEvent JSON) of every event held.
fn events(j: &Journal) -> Vec<(u64, bytes::Bytes)> {
    j.read_after(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, e.json))
        .collect()
}

/// After an outage the file is several times what it holds; compaction
/// gives the rest back, and every event (seq and JSON), cursor, cursor
/// state, dedup entry, counter, held-drop record and resume id reads back
/// the same: a vendor's retry of a recent event is still a duplicate of its
/// seq, and the next event gets the next seq.
#[test]
fn compaction_gives_the_space_back_and_changes_nothing_held() {
    let dir = tempfile::tempdir().unwrap();
    let j = after_an_outage(dir.path());
    let held = tables(&j);
    let held_events = events(&j);
    assert_eq!(held_events.len() as u64, RECENT);
    assert_eq!(
        held.held_drops,
        [(("kafka".to_owned(), OLD + 60), OLD + 62)]
    );
    drop(j);
    let before = file_size(dir.path());

    let done = compact(options(dir.path())).unwrap();
    assert_eq!(done.path, file_in(dir.path()));
    assert_eq!(done.before, before);
    assert_eq!(done.after, file_size(dir.path()));
    // 8 MiB of removed events against 200 KiB held.
    assert!(
        done.after * 4 < done.before,
        "{} -> {} bytes",
        done.before,
        done.after
    );

    let j = Journal::open(options(dir.path())).unwrap();
    assert!(tables(&j) == held, "the tables changed");
    assert_eq!(events(&j), held_events);
    assert_eq!(j.cursor("kafka").unwrap(), Some(OLD + 50));
    assert_eq!(
        j.cursor_state("kafka").unwrap().as_deref(),
        Some(&b"offsets"[..])
    );
    assert_eq!(j.cursor("removed-sink").unwrap(), Some(OLD + 20));
    assert_eq!(j.dedup_entries(), RECENT as usize);
    let last = OLD + RECENT;
    let out = j
        .append_batch_at(&[padded("recent-7"), padded("new")], T1 + 2_000)
        .unwrap();
    assert!(
        matches!(out[0], AppendOutcome::Duplicate { seq, .. } if seq == OLD + 8),
        "{:?}",
        out[0]
    );
    assert!(
        matches!(&out[1], AppendOutcome::Appended(e) if e.seq == last + 1),
        "{:?}",
        out[1]
    );
}

/// Compacting again finds nothing to free, and says so.
#[test]
fn a_compacted_journal_has_nothing_more_to_free() {
    let dir = tempfile::tempdir().unwrap();
    drop(after_an_outage(dir.path()));
    let first = compact(options(dir.path())).unwrap();
    assert!(first.after < first.before, "{first:?}");
    assert!(!first.to_string().contains("nothing"), "{first}");
    let again = compact(options(dir.path())).unwrap();
    assert!(again.after >= again.before, "{again:?}");
    assert!(again.to_string().contains("nothing was freed"), "{again}");
}

/// No journal at the path: said, and nothing is created (neither the
/// file nor the directory); an empty file, which redb would take as a new
/// journal, is said as such and left empty.
#[test]
fn no_journal_is_said_and_none_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("journal");
    let error = compact(options(&missing)).unwrap_err();
    assert!(matches!(error, CompactError::NoJournal { .. }), "{error}");
    assert!(
        error.to_string().contains("there is no journal at"),
        "{error}"
    );
    assert!(!missing.exists());

    std::fs::write(dir.path().join("journal.redb"), b"").unwrap();
    let error = compact(options(dir.path())).unwrap_err();
    assert!(matches!(error, CompactError::Empty { .. }), "{error}");
    assert_eq!(file_size(dir.path()), 0);
}

/// A blank file (a first start that failed as it set the file up): no
/// journal, said so, and left as it is; the open compact goes through
/// started a journal in it.
#[test]
fn a_blank_file_is_said_and_no_journal_is_made_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    std::fs::write(&path, vec![0u8; 64 << 10]).unwrap();
    let error = compact(options(dir.path())).unwrap_err();
    assert!(matches!(error, CompactError::Blank { .. }), "{error}");
    assert!(error.to_string().contains("holds no journal"), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), vec![0u8; 64 << 10]);
}

/// `journal.path` naming a regular file (a path through a file): no
/// journal there, said as such, and nothing created or changed; before,
/// the open was reached and said it could not create the directory.
#[test]
fn a_journal_path_naming_a_file_has_no_journal() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"something else").unwrap();
    let error = compact(options(&file)).unwrap_err();
    assert!(matches!(error, CompactError::NoJournal { .. }), "{error}");
    assert!(
        error.to_string().contains("there is no journal at"),
        "{error}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"something else");
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["not-a-directory"]);
}

/// A path the first look fails on for another reason (here a name too
/// long; in service a directory the user running it cannot enter, which
/// adds whom to run it as) is said as such, and nothing is created.
#[test]
fn a_journal_it_cannot_look_at_is_said_and_none_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("d".repeat(300));
    let error = compact(options(&long)).unwrap_err();
    assert!(matches!(error, CompactError::CannotLook { .. }), "{error}");
    let said = error.to_string();
    assert!(said.contains("cannot look at the journal file"), "{said}");
    assert!(said.contains("File name too long"), "{said}");
    // Not a question of permission: no word of whom to run it as.
    assert!(!said.contains("as the service's user"), "{said}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// A journal another process has open (here this one, which redb refuses
/// the same way) is refused at once, with what to do.
#[test]
fn a_journal_in_use_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let _running = after_an_outage(dir.path());
    let before = file_size(dir.path());
    let error = compact(options(dir.path())).unwrap_err();
    assert!(matches!(error, CompactError::InUse { .. }), "{error}");
    let said = error.to_string();
    assert!(
        said.contains(&file_in(dir.path()).display().to_string()),
        "{said}"
    );
    assert!(said.contains("systemctl stop callrelay"), "{said}");
    assert_eq!(file_size(dir.path()), before);
}

/// A journal a start refuses is refused here with the start's words, and
/// not compacted.
#[test]
fn a_journal_of_a_newer_format_is_refused_as_at_a_start() {
    let dir = tempfile::tempdir().unwrap();
    drop(after_an_outage(dir.path()));
    store_format(&dir.path().join("journal.redb"), Some(99));
    let before = file_size(dir.path());
    let at_start = Journal::open(options(dir.path()))
        .err()
        .unwrap()
        .to_string();
    let error = compact(options(dir.path())).unwrap_err();
    assert!(
        matches!(
            error,
            CompactError::Open(JournalError::NewerFormat { found: 99, .. })
        ),
        "{error}"
    );
    assert_eq!(error.to_string(), at_start);
    // Not compacted: most of the file is free pages.
    assert_eq!(file_size(dir.path()), before);
}

#[test]
fn sizes_are_said_in_binary_units() {
    let said = |n| Size(n).to_string();
    assert_eq!(said(900), "900 B");
    assert_eq!(said(1536), "1.5 KiB");
    assert_eq!(said(10_952_166_605), "10.2 GiB");
    let done = Compacted {
        path: "/var/lib/callrelay/journal.redb".into(),
        before: 10_952_166_605,
        after: 1_395_864_371,
        took: Duration::from_millis(12_400),
    };
    assert_eq!(
        done.to_string(),
        "compacted /var/lib/callrelay/journal.redb: 10.2 GiB -> 1.3 GiB in 12.4 s"
    );
}

const CHILD_DIR: &str = "CALLRELAY_COMPACT_CHILD_DIR";

/// The child of [`a_killed_compaction_loses_nothing`]: opens the journal in
/// `CALLRELAY_COMPACT_CHILD_DIR`, says `COMPACTING`, compacts, closes and
/// says `DONE`. Ignored, so a plain run does not list it; the parent runs
/// it with `--ignored`.
#[test]
#[ignore = "the child process of a_killed_compaction_loses_nothing"]
fn compaction_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let dir = Path::new(&dir);
    let (mut db, _dir_lock) = open_alone(options(dir)).unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "COMPACTING").unwrap();
    out.flush().unwrap();
    compact_fully(&mut db).unwrap();
    db.close().unwrap();
    writeln!(out, "DONE").unwrap();
    out.flush().unwrap();
}

/// A child process, killed and reaped when dropped: a test that fails or
/// times out half-way does not leave it running.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How long a child may take to say `COMPACTING`, and then to end.
const CHILD_DEADLINE: Duration = Duration::from_secs(30);

/// One run of [`compaction_child`] on `dir`, SIGKILLed `kill_after` after
/// it said `COMPACTING` (never, with `None`). Returns whether it said
/// `DONE`, and how long after `COMPACTING`. Fails if the child takes more
/// than [`CHILD_DEADLINE`] for either, with the child killed.
fn compact_in_a_child(dir: &Path, kill_after: Option<Duration>) -> (bool, Duration) {
    let mut child = Reaped(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "journal::compact::tests::compaction_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Ends when the child's stdout closes (it ended or was killed); not
    // joined, so that a failure here cannot wait on it.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send((line, Instant::now())).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + CHILD_DEADLINE;
    let compacting = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (line, at) = rx
            .recv_timeout(left)
            .expect("the child said COMPACTING within the deadline");
        // libtest's `test … ... ` comes first on the line.
        if line.ends_with("COMPACTING") {
            break at;
        }
    };
    let mut done = None;
    if let Some(after) = kill_after {
        // The moment of the kill is the fault injected, not a wait for
        // something to happen; a child that said DONE before it is killed
        // then, without waiting longer (a range much longer than the
        // compaction would otherwise cost that whole wait each round).
        let kill_at = compacting + after;
        loop {
            let left = kill_at.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((line, at)) if line.ends_with("DONE") => {
                    done = Some(at);
                    break;
                }
                Ok(_) => {}
                // The moment came, or the child ended.
                Err(_) => break,
            }
        }
        let _ = child.0.kill(); // SIGKILL
    }
    let deadline = Instant::now() + CHILD_DEADLINE;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the child did not end within {CHILD_DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    if kill_after.is_none() {
        assert!(status.success(), "the child failed: {status}");
    }
    // Every line the child wrote, its stdout being closed: the reader
    // drops its sender at the end.
    let done = done.or_else(|| {
        std::iter::from_fn(|| rx.recv_timeout(CHILD_DEADLINE).ok())
            .find(|(line, _)| line.ends_with("DONE"))
            .map(|(_, at)| at)
    });
    // A child that never said DONE counts as killed midway only if the
    // kill ended it: one that failed on its own (a panic after COMPACTING)
    // must fail the test, not pass for a kill that landed.
    if done.is_none() {
        use std::os::unix::process::ExitStatusExt;
        const SIGKILL: i32 = 9;
        assert_eq!(status.signal(), Some(SIGKILL), "the child failed: {status}");
    }
    match done {
        Some(at) => (true, at - compacting),
        None => (false, Duration::ZERO),
    }
}

/// Rounds of [`a_killed_compaction_loses_nothing`]: at least, and at most
/// while no kill has landed before the compaction's end.
const KILL_ROUNDS: usize = 10;
const MAX_KILL_ROUNDS: usize = 30;

/// A compaction SIGKILLed at random moments leaves a journal that opens
/// (after the check of a file not closed cleanly) with every table as it
/// was: each of redb's compaction commits is atomic, and relocating pages
/// changes no key or value. Each round kills a fresh copy of the same
/// journal, at a moment within how long a whole compaction took; a round
/// whose child had finished before the kill (a machine faster now than
/// at the timing run) halves that range, and rounds go on (at most
/// [`MAX_KILL_ROUNDS`]) until one kill has come before the end.
#[test]
fn a_killed_compaction_loses_nothing() {
    let template = tempfile::tempdir().unwrap();
    drop(after_an_outage(template.path()));
    let held = tables_in(template.path());
    let copy_into = |dir: &Path| {
        std::fs::copy(
            template.path().join("journal.redb"),
            dir.join("journal.redb"),
        )
        .unwrap();
    };

    let whole = tempfile::tempdir().unwrap();
    copy_into(whole.path());
    let (done, took) = compact_in_a_child(whole.path(), None);
    assert!(done);
    assert!(file_size(whole.path()) * 4 < file_size(template.path()));
    assert!(tables_in(whole.path()) == held, "the tables changed");

    let mut rng_state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut range = u64::try_from(took.as_micros()).unwrap().max(1);
    let mut killed_midway = 0;
    let mut rounds = 0;
    while rounds < KILL_ROUNDS || (killed_midway == 0 && rounds < MAX_KILL_ROUNDS) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        let kill_after = Duration::from_micros(rng_state % range);
        let dir = tempfile::tempdir().unwrap();
        copy_into(dir.path());
        let (done, _) = compact_in_a_child(dir.path(), Some(kill_after));
        // Shortened only until a kill lands midway: later rounds keep the
        // range, so their kills spread over the compaction, not its start.
        if done && killed_midway == 0 {
            range = (range / 2).max(1);
        } else if !done {
            killed_midway += 1;
        }
        assert!(
            tables_in(dir.path()) == held,
            "round {rounds}: killed {kill_after:?} in (done: {done}), the tables changed"
        );
        rounds += 1;
    }
    assert!(
        killed_midway > 0,
        "no kill came before the compaction's end in {rounds} rounds"
    );
}
