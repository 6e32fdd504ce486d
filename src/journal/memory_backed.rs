//! Whether the journal's file lives in memory (tmpfs, ramfs): there an
//! `fsync` is free and a reboot, or a container recreated, loses the file,
//! with every event no sink had yet, the dedup log and the SPRecord resume
//! ids. `journal.path` under `/run`, `/dev/shm` or a memory-backed volume
//! passed `check` and said nothing.
//!
//! Guarantees: a file system the relay cannot look at is not called memory.

use std::path::Path;

/// `TMPFS_MAGIC` and `RAMFS_MAGIC` of `statfs(2)`.
const TMPFS: u64 = 0x0102_1994;
const RAMFS: u64 = 0x8584_58f6;

/// The name of the memory file system `path` is on, if it is on one.
pub fn memory_file_system(path: &Path) -> Option<&'static str> {
    let stat = rustix::fs::statfs(path).ok()?;
    // `f_type`'s integer type differs between targets.
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    let kind = stat.f_type as u64;
    named(kind)
}

fn named(kind: u64) -> Option<&'static str> {
    match kind {
        TMPFS => Some("tmpfs"),
        RAMFS => Some("ramfs"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_and_ramfs_are_memory_and_a_disk_or_nothing_is_not() {
        assert_eq!(named(TMPFS), Some("tmpfs"));
        assert_eq!(named(RAMFS), Some("ramfs"));
        assert_eq!(named(0xEF53), None, "ext4");
        assert_eq!(memory_file_system(Path::new("/no/such/dir")), None);
        assert_eq!(memory_file_system(Path::new("/proc")), None);
        // Where the machine has one, `/dev/shm` is tmpfs.
        if std::fs::read_to_string("/proc/mounts")
            .is_ok_and(|m| m.lines().any(|l| l.starts_with("tmpfs /dev/shm ")))
        {
            assert_eq!(memory_file_system(Path::new("/dev/shm")), Some("tmpfs"));
        }
    }
}
