//! Whether the file the journal has open is still the one at its path.
//!
//! Guarantees: once [`FilePresence::check`] has found the path missing or
//! naming another file (the file deleted, moved or replaced while the relay
//! runs), [`FilePresence::gone`] says so for good, and the journal refuses
//! appends and reopens: events acknowledged into the open file would be lost
//! at the next stop, and a reopen would create an empty journal whose seqs
//! start again at 1. A path the relay cannot look at for another reason (a
//! directory made unreadable) is not taken as gone: the open file still works.
//! A file that could not be looked at when it was opened is looked at again
//! at each check until it can be (said once, as a warning): watched from
//! then on, rather than never; then it is the open file that is looked at
//! (through the descriptor `/proc/self/fd` shows at its path, deleted or
//! not), so a deletion or replacement in between is found too.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct FileId {
    dev: u64,
    ino: u64,
}

fn id_of(path: &Path) -> std::io::Result<FileId> {
    let meta = std::fs::metadata(path)?;
    Ok(FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

#[derive(Default)]
pub(super) struct FilePresence {
    /// The file opened at the path, once it could be looked at; `None`
    /// until then (each check tries again).
    opened: Mutex<Option<FileId>>,
    /// Set, for good, when the file was found gone: where its events can
    /// still be read. Read by every append, without a lock.
    gone: OnceLock<String>,
}

impl FilePresence {
    /// Remembers the file just opened at `path`; when it cannot be looked
    /// at, the next check that can look takes it.
    pub(super) fn opened(&self, path: &Path) {
        let id = id_of(path);
        if let Err(e) = &id {
            // Kept as none for good, a deletion after it was never found.
            tracing::warn!(path = %path.display(), error = %e,
                "cannot look at the journal file just opened: a deletion or replacement of it is not noticed until it can be (tried again every second)");
        }
        *self.opened.lock().unwrap_or_else(PoisonError::into_inner) = id.ok();
    }

    /// Looks at `path` again; returns where the open file's events can still
    /// be read the first time it finds the file gone, `None` otherwise.
    pub(super) fn check(&self, path: &Path) -> Option<String> {
        let opened = {
            let mut opened = self.opened.lock().unwrap_or_else(PoisonError::into_inner);
            if opened.is_none() {
                // The open file itself, so that a deletion or replacement
                // since the open is found too; taken from the path only
                // when no descriptor names it (a replacement in between is
                // then not told apart).
                match open_at(path) {
                    Some(id) => *opened = Some(id),
                    None => {
                        *opened = id_of(path).ok();
                        return None;
                    }
                }
            }
            (*opened)?
        };
        if self.gone.get().is_some() {
            return None;
        }
        match id_of(path) {
            Ok(now) if now == opened => return None,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // ENOTDIR: the directory itself was replaced by a file.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => {}
            Err(_) => return None,
        }
        // Two checks finding it at once: only the first says so.
        self.gone.set(held_at(opened)).ok()?;
        self.gone()
    }

    /// Where the events of a file found gone can still be read, once it was.
    pub(super) fn gone(&self) -> Option<String> {
        self.gone.get().cloned()
    }

    pub(super) fn is_gone(&self) -> bool {
        self.gone.get().is_some()
    }
}

/// The file this process has open at `path`, found through
/// `/proc/self/fd`: a descriptor's link reads the file's path, with
/// " (deleted)" once it is unlinked.
fn open_at(path: &Path) -> Option<FileId> {
    let mut names = vec![std::path::absolute(path).ok()?];
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        // The kernel's name has the directory's symlinks resolved.
        if let Ok(dir) = std::fs::canonicalize(dir) {
            names.push(dir.join(name));
        }
    }
    let deleted: Vec<PathBuf> = names
        .iter()
        .map(|name| {
            let mut deleted = name.clone().into_os_string();
            deleted.push(" (deleted)");
            PathBuf::from(deleted)
        })
        .collect();
    std::fs::read_dir("/proc/self/fd")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let target = std::fs::read_link(entry.path()).ok()?;
            if names.contains(&target) || deleted.contains(&target) {
                id_of(&entry.path()).ok()
            } else {
                None
            }
        })
}

/// The `/proc` entry through which the open file can still be copied while
/// the process runs (a deleted file has no other name), found by comparing
/// each open descriptor's file with `opened`.
fn held_at(opened: FileId) -> String {
    let pid = std::process::id();
    let found = std::fs::read_dir("/proc/self/fd").ok().and_then(|entries| {
        entries.flatten().find_map(|entry| {
            let fd = entry.file_name().to_string_lossy().into_owned();
            (id_of(&entry.path()).ok() == Some(opened)).then_some(fd)
        })
    });
    match found {
        Some(fd) => format!(
            "its events can still be copied from /proc/{pid}/fd/{fd} until the relay stops: copy that file, stop the relay, put the copy at the journal's path, give it the owner of the journal's directory (`chown --reference=<directory> <copy>`: a copy made as root is root's, and the relay's user cannot open it), start it"
        ),
        None => "the relay found no descriptor of the file it had open".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// `data/journal.redb` under `dir`, created, held open and watched.
    fn watched_journal(dir: &Path) -> (PathBuf, PathBuf, std::fs::File, FilePresence) {
        let sub = dir.join("data");
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join("journal.redb");
        let held_open = std::fs::File::create(&path).unwrap();
        let presence = FilePresence::default();
        presence.opened(&path);
        (sub, path, held_open, presence)
    }

    #[test]
    fn a_file_deleted_moved_or_replaced_is_gone_and_says_where_it_is_held() {
        let changes = [
            "delete",
            "move",
            "replace",
            "move the directory",
            "replace the directory with a file",
        ];
        for change in changes {
            let dir = tempfile::tempdir().unwrap();
            let (sub, path, held_open, presence) = watched_journal(dir.path());
            assert_eq!(presence.check(&path), None, "{change}: unchanged");
            match change {
                "delete" => std::fs::remove_file(&path).unwrap(),
                "move" => std::fs::rename(&path, sub.join("old.redb")).unwrap(),
                "replace" => {
                    std::fs::remove_file(&path).unwrap();
                    std::fs::File::create(&path).unwrap();
                }
                "move the directory" => {
                    std::fs::rename(&sub, dir.path().join("data.old")).unwrap();
                }
                _ => {
                    // The path's lookup now fails with ENOTDIR.
                    std::fs::rename(&sub, dir.path().join("data.old")).unwrap();
                    std::fs::write(&sub, "").unwrap();
                }
            }
            let held = presence.check(&path).expect(change);
            // The descriptor it names is the file the relay has open.
            let prefix = format!("/proc/{}/fd/", std::process::id());
            let fd: String = held
                .split_once(&prefix)
                .map(|(_, rest)| rest.chars().take_while(char::is_ascii_digit).collect())
                .unwrap_or_default();
            let named = id_of(Path::new(&format!("/proc/self/fd/{fd}")));
            let meta = held_open.metadata().unwrap();
            let open = FileId {
                dev: meta.dev(),
                ino: meta.ino(),
            };
            assert_eq!(named.ok(), Some(open), "{change}: {held}");
            assert_eq!(presence.gone(), Some(held), "{change}: for good");
            assert_eq!(presence.check(&path), None, "{change}: said once");
            drop(held_open);
        }
    }

    /// A path that cannot be looked at for another reason than the file or
    /// a directory being gone (here a symlink loop; a directory made
    /// unreadable is the same) says nothing about the file: not gone.
    #[test]
    fn a_path_that_cannot_be_looked_at_is_not_taken_as_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (sub, path, _held_open, presence) = watched_journal(dir.path());
        std::fs::rename(&sub, dir.path().join("data.old")).unwrap();
        std::os::unix::fs::symlink(&sub, &sub).unwrap();
        let error = std::fs::metadata(&path).unwrap_err();
        assert_eq!(
            error.raw_os_error(),
            Some(rustix::io::Errno::LOOP.raw_os_error())
        );
        assert_eq!(presence.check(&path), None);
        assert_eq!(presence.gone(), None);
    }

    /// A stat that failed right after the open (EIO, a permission
    /// changed; here the file not there yet) left nothing to compare with,
    /// for good: a deletion after it was never found, and webhooks were
    /// answered 200 for events written into a deleted file.
    #[test]
    fn a_file_not_looked_at_when_opened_is_looked_at_at_the_next_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.redb");
        let presence = FilePresence::default();
        presence.opened(&path);
        let _held_open = std::fs::File::create(&path).unwrap();
        assert_eq!(presence.check(&path), None, "taken now");
        std::fs::remove_file(&path).unwrap();
        assert!(presence.check(&path).is_some(), "deleted after");
        assert!(presence.gone().is_some());
    }

    /// At the check after a failed first look, what was at the path was
    /// taken as the file opened: one deleted in between was never found
    /// gone (nothing at the path, nothing remembered, for good).
    #[test]
    fn a_file_deleted_before_it_could_be_looked_at_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.redb");
        let presence = FilePresence::default();
        presence.opened(&path);
        let _held_open = std::fs::File::create(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let held = presence.check(&path).expect("found gone");
        assert!(held.contains("/fd/"), "{held}");
    }

    #[test]
    fn a_file_never_looked_at_is_not_taken_as_gone() {
        let presence = FilePresence::default();
        // Never opened (its stat failed): nothing to compare with.
        presence.opened(Path::new("/nonexistent/journal.redb"));
        assert_eq!(presence.check(Path::new("/nonexistent/journal.redb")), None);
        assert_eq!(presence.gone(), None);
    }
}
