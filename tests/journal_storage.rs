//! The journal on storage that fails under it: a real ext4 filesystem on a
//! loop device whose backing file lives on a small tmpfs, so that filling the
//! tmpfs makes the disk fail the writes of new blocks (as thin-provisioned or
//! SAN storage does) while the filesystem stays mounted read-write.
//!
//! Needs root (mount, losetup), or passwordless `sudo` as the README allows,
//! and e2fsprogs; where they are missing the test says so on stderr and
//! returns (the CI machine has them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callrelay::event::{IncomingEvent, Transport, Vendor, VendorEvent};
use callrelay::ingest::{Hub, Ingest, IngestOptions};
use callrelay::journal::{AppendOutcome, Journal, JournalOptions};
use callrelay::metrics::Metrics;
use serde_json::json;

/// A filesystem whose disk can be made to refuse new blocks, and unmounted
/// and mounted again (which is how the test drops the kernel's cache of it,
/// as a reboot would). Everything is undone on drop, also after a panic.
struct FailingDisk {
    _dir: tempfile::TempDir,
    backing: PathBuf,
    mount: PathBuf,
    loop_device: Option<String>,
    /// This process's effective uid: whether the mounts go through `sudo`.
    euid: u32,
}

/// The command that runs `program` as root for a process whose effective
/// uid is `euid`: itself as root, else through `sudo -n` (the README allows a
/// user with passwordless sudo; `-n` fails at once where sudo would ask for
/// a password, and the test says why instead of hanging).
fn as_root(euid: u32, program: &str, args: &[&str]) -> (String, Vec<String>) {
    let args = args.iter().map(|a| a.to_string());
    if euid == 0 {
        (program.to_owned(), args.collect())
    } else {
        let via_sudo = ["-n".to_owned(), program.to_owned()].into_iter();
        ("sudo".to_owned(), via_sudo.chain(args).collect())
    }
}

fn run(euid: u32, program: &str, args: &[&str]) -> Result<String, String> {
    let (program, args) = as_root(euid, program, args);
    let out = Command::new(&program)
        .args(&args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

impl FailingDisk {
    fn set_up() -> Result<FailingDisk, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let backing = dir.path().join("backing");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&backing).map_err(|e| e.to_string())?;
        std::fs::create_dir(&mount).map_err(|e| e.to_string())?;
        let mut disk = FailingDisk {
            _dir: dir,
            backing,
            mount,
            loop_device: None,
            euid: rustix::process::geteuid().as_raw(),
        };
        run(
            disk.euid,
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                "size=48m",
                "tmpfs",
                text(&disk.backing),
            ],
        )?;
        let image = disk.backing.join("image");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(40 << 20))
            .map_err(|e| e.to_string())?;
        // No ext4 journal and errors=continue: a failed data write stays a
        // failed write (with a journal, ext4 would abort it and go read-only,
        // which the journal already survives). The root directory is this
        // process's (mke2fs run through sudo would make it root's), so that
        // the journal can make its directory there.
        let extended = format!(
            "lazy_itable_init=0,root_owner={}:{}",
            disk.euid,
            rustix::process::getegid().as_raw()
        );
        run(
            disk.euid,
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-O",
                "^has_journal",
                "-E",
                &extended,
                text(&image),
            ],
        )?;
        disk.loop_device = Some(run(disk.euid, "losetup", &["-f", "--show", text(&image)])?);
        disk.mount_fs()?;
        Ok(disk)
    }

    /// The disk, or `None` after saying on stderr why this machine cannot
    /// make one; under `CALLRELAY_REQUIRE_TOOLS` (the README's test command
    /// sets it) a machine that cannot fails the test instead, as a missing
    /// tool does in tests/ops.rs.
    fn or_skip() -> Option<FailingDisk> {
        FailingDisk::set_up()
            .map_err(|why| {
                assert!(
                    std::env::var_os("CALLRELAY_REQUIRE_TOOLS").is_none(),
                    "CALLRELAY_REQUIRE_TOOLS is set and this test cannot make its failing disk (it needs root or passwordless sudo, tmpfs, loop devices and mkfs.ext4): {why}"
                );
                eprintln!(
                    "SKIPPED: this test needs root or passwordless sudo, tmpfs, loop devices and mkfs.ext4: {why}"
                );
            })
            .ok()
    }

    fn mount_fs(&self) -> Result<(), String> {
        let device = self.loop_device.as_deref().ok_or("no loop device")?;
        run(
            self.euid,
            "mount",
            &["-o", "errors=continue", device, text(&self.mount)],
        )
        .map(drop)
    }

    fn remount(&self) {
        run(self.euid, "umount", &[text(&self.mount)]).unwrap();
        self.mount_fs().unwrap();
    }

    fn journal_dir(&self) -> PathBuf {
        self.mount.join("data")
    }

    fn filler(&self) -> PathBuf {
        self.backing.join("filler")
    }

    /// Takes every free byte of the tmpfs under the loop device.
    fn fill(&self) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.filler()).unwrap();
        let chunk = vec![0u8; 1 << 20];
        while file.write_all(&chunk).is_ok() {}
    }

    fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for FailingDisk {
    fn drop(&mut self) {
        let _ = run(self.euid, "umount", &[text(&self.mount)]);
        if let Some(device) = &self.loop_device {
            let _ = run(self.euid, "losetup", &["-d", device]);
        }
        let _ = run(self.euid, "umount", &[text(&self.backing)]);
    }
}

/// Unmounts and mounts the disk (dropping the kernel's cache of it, as a
/// reboot would) and checks that each identity is at the seq it was given.
fn assert_on_the_disk(disk: &FailingDisk, given: &BTreeMap<String, u64>) {
    disk.remount();
    let journal = Journal::open(options(disk.journal_dir()))
        .expect("the journal opens from the disk after the fault");
    let on_disk: BTreeMap<u64, String> = journal
        .read_after(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, e.header.subject.clone().unwrap()))
        .collect();
    for (identity, seq) in given {
        assert_eq!(
            on_disk.get(seq),
            Some(identity),
            "{identity} was given seq {seq}, which the disk does not hold"
        );
    }
    assert!(journal.close(Duration::from_secs(5)));
}

fn options(dir: PathBuf) -> JournalOptions {
    JournalOptions {
        dir,
        dedup_window: Duration::from_secs(600),
        retention: Duration::from_secs(3600),
        max_size: 1 << 30,
    }
}

fn event(identity: &str) -> IncomingEvent {
    IncomingEvent {
        vendor: Vendor::Voipex,
        account: "storage".into(),
        transport: Transport::Webhook,
        received_at: time::OffsetDateTime::now_utc(),
        event: VendorEvent {
            event_type: "call.ringing".into(),
            subject: Some(identity.to_owned()),
            time: None,
            unread_time: None,
            fields: Default::default(),
            identity: identity.to_owned(),
        },
        raw: json!({"UniqueId": identity, "pad": "x".repeat(2000)}).into(),
    }
}

/// Linux marks a page whose write-back failed clean and keeps serving it
/// from its cache. Opened through that cache after a failed commit, the
/// journal took the commit as landed (a retry of its events was answered
/// "duplicate" with a seq that never reached the disk) and built the next
/// commits on it; once the cache was dropped the journal had lost events
/// acknowledged before the fault, or could not be opened at all.
#[test]
fn a_commit_whose_write_failed_is_not_read_back_from_the_kernel_cache() {
    let Some(disk) = FailingDisk::or_skip() else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // identity → the seq its acknowledgement named (fresh or duplicate).
    let acked: BTreeMap<String, u64> = runtime.block_on(async {
        let journal = Arc::new(Journal::open(options(disk.journal_dir())).unwrap());
        let hub = Hub::new(journal.last_seq(), 16);
        let ingest = Ingest::start(
            journal.clone(),
            hub,
            Arc::new(Metrics::new()),
            IngestOptions::default(),
        )
        .unwrap();
        let handle = ingest.handle();
        let mut acked = BTreeMap::new();
        for i in 0..50 {
            let identity = format!("before-{i}");
            let ack = handle.submit(event(&identity)).await.unwrap();
            acked.insert(identity, ack.seq);
        }

        disk.fill();
        let mut refused = Vec::new();
        for i in 0..5_000 {
            let identity = format!("during-{i}");
            match handle.submit(event(&identity)).await {
                Ok(ack) => {
                    acked.insert(identity, ack.seq);
                }
                Err(_) => refused.push(identity),
            }
            if refused.len() == 3 {
                break;
            }
        }
        assert_eq!(refused.len(), 3, "the full disk refused no commit");
        disk.free();

        // The vendor's retries, until the journal has been opened again.
        let deadline = Instant::now() + Duration::from_secs(60);
        for identity in refused {
            loop {
                match handle.submit(event(&identity)).await {
                    Ok(ack) => {
                        acked.insert(identity, ack.seq);
                        break;
                    }
                    Err(e) => {
                        assert!(Instant::now() < deadline, "still refused: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        for i in 0..50 {
            let identity = format!("after-{i}");
            let ack = handle.submit(event(&identity)).await.unwrap();
            acked.insert(identity, ack.seq);
        }
        ingest.shutdown().await;
        assert!(journal.close(Duration::from_secs(5)), "the journal closes");
        acked
    });

    assert_on_the_disk(&disk, &acked);
}

/// The seq `identity` was journaled under, by a direct append.
fn appended(journal: &Journal, identity: &str) -> Option<u64> {
    match journal.append_batch(&[event(identity)]).ok()?.first()? {
        AppendOutcome::Appended(e) => Some(e.seq),
        other => panic!("{identity}: {other:?}"),
    }
}

/// The same failed write, but the relay stops (or is killed) before it
/// opens the journal again: redb leaves a file whose write failed marked for
/// repair, and the next start must not read the failed commit from the
/// kernel's cache either. A start after a clean stop keeps the cache.
#[test]
fn a_start_after_a_failed_write_reads_the_disk() {
    let Some(disk) = FailingDisk::or_skip() else {
        return;
    };
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    {
        let journal = Journal::open(options(disk.journal_dir())).unwrap();
        for i in 0..50 {
            let identity = format!("before-{i}");
            let seq = appended(&journal, &identity).expect("appended before the fault");
            acked.insert(identity, seq);
        }
        disk.fill();
        let failed = (0..5_000).any(|i| {
            let identity = format!("during-{i}");
            match appended(&journal, &identity) {
                Some(seq) => {
                    acked.insert(identity, seq);
                    false
                }
                None => true,
            }
        });
        assert!(failed, "the full disk refused no commit");
        // Stopped here, before any reopen.
    }
    disk.free();
    {
        let journal = Journal::open(options(disk.journal_dir())).expect("a start after the fault");
        for i in 0..50 {
            let identity = format!("after-{i}");
            let seq = appended(&journal, &identity).expect("appended after the fault");
            acked.insert(identity, seq);
        }
        assert!(journal.close(Duration::from_secs(5)));
    }
    assert_on_the_disk(&disk, &acked);
}

/// The README allows running the suite as a user with passwordless sudo:
/// the disk's commands then go through `sudo -n`, and root runs them as
/// they are.
#[test]
fn the_disk_commands_go_through_sudo_unless_root() {
    let args = ["-f", "--show", "/tmp/image"];
    assert_eq!(
        as_root(0, "losetup", &args),
        (
            "losetup".to_owned(),
            vec!["-f".into(), "--show".into(), "/tmp/image".into()]
        )
    );
    assert_eq!(
        as_root(1000, "losetup", &args),
        (
            "sudo".to_owned(),
            vec![
                "-n".into(),
                "losetup".into(),
                "-f".into(),
                "--show".into(),
                "/tmp/image".into()
            ]
        )
    );
}
