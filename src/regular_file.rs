//! Opening a file the config names (a `${file:…}` secret, a CA bundle)
//! without ever waiting on what is not a regular file.
//!
//! Guarantees: [`open`] returns an open regular file or says it is not one.
//! A path that names another kind of file when it is looked at is not
//! opened (opening a device may act on it: a tape rewinds; one swapped in
//! after the look is opened, then refused), and `open(2)` never blocks: a path checked and then swapped for a FIFO (whose open waits for
//! a writer, and a reload or a start with it) is opened with `O_NONBLOCK`,
//! and the file opened is the one checked (`fstat`). The flag is cleared
//! before the file is handed back, so its reads block as usual (a FUSE
//! filesystem may answer a non-blocking read `EAGAIN`). `O_NOCTTY` keeps
//! a terminal from becoming the relay's; the descriptor is close-on-exec.

use std::fs::File;
use std::path::Path;

/// The file at `path` if what it opens is a regular file (`Ok(None)`: it is
/// something else, a directory, a FIFO, a device).
pub fn open(path: &Path) -> std::io::Result<Option<File>> {
    use rustix::fs::{Mode, OFlags};
    if !std::fs::metadata(path)?.is_file() {
        return Ok(None);
    }
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let file = File::from(rustix::fs::open(path, flags, Mode::empty())?);
    if !file.metadata()?.is_file() {
        return Ok(None);
    }
    rustix::fs::fcntl_setfl(&file, OFlags::empty())?;
    Ok(Some(file))
}

/// Test-only: a FIFO standing for a file on a hung mount, which a reader
/// that is not [`open`] (librdkafka's `fopen`) waits on.
#[cfg(test)]
pub(crate) mod hung_file {
    use std::path::{Path, PathBuf};

    /// A FIFO made at `path`.
    pub(crate) fn make(path: &Path) {
        use rustix::fs::{CWD, Mode};
        rustix::fs::mkfifoat(CWD, path, Mode::RUSR | Mode::WUSR).unwrap();
    }

    /// Opens the FIFO at `path` to write once a reader has opened it (what
    /// a test waits on), in a task: tried with `O_NONBLOCK`, which fails
    /// (`ENXIO`) while no reader has it, so that no thread is left waiting
    /// when none comes (after 20 s the task ends with that error, and
    /// removes the FIFO, so that a reader coming later finds no file rather
    /// than waiting for a writer for good). The writer, held open, makes the
    /// reader's reads wait until it is dropped (the end of the file).
    pub(crate) fn writer(path: &Path) -> tokio::task::JoinHandle<std::io::Result<std::fs::File>> {
        use rustix::fs::{Mode, OFlags};
        let path: PathBuf = path.to_path_buf();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                let flags = OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
                match rustix::fs::open(&path, flags, Mode::empty()) {
                    Ok(fd) => {
                        rustix::fs::fcntl_setfl(&fd, OFlags::empty())?;
                        return Ok(std::fs::File::from(fd));
                    }
                    Err(e)
                        if e == rustix::io::Errno::NXIO
                            && tokio::time::Instant::now() < deadline =>
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                    Err(e) => {
                        // Held across the removal: a reader that came in
                        // between finds a writer, then the end of the file.
                        let rdwr = OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC;
                        let last_writer = rustix::fs::open(&path, rdwr, Mode::empty());
                        let _ = std::fs::remove_file(&path);
                        drop(last_writer);
                        return Err(e.into());
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO is refused at once (a plain `File::open` waits for a writer),
    /// a regular file opens, without `O_NONBLOCK` left on it.
    #[test]
    fn a_fifo_is_refused_without_waiting_and_a_regular_file_opens() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        hung_file::make(&fifo);
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || tx.send(open(&path).map(|f| f.is_some())));
        match rx.recv_timeout(std::time::Duration::from_secs(10)) {
            Ok(opened) => assert!(matches!(opened, Ok(false)), "{opened:?}"),
            Err(_) => {
                // Let the opener go: it waits for a writer.
                let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
                panic!("opening a FIFO waited for a writer");
            }
        }
        assert!(matches!(open(dir.path()), Ok(None)));
        let path = dir.path().join("regular");
        std::fs::write(&path, "pem").unwrap();
        let mut file = open(&path).unwrap().unwrap();
        let flags = rustix::fs::fcntl_getfl(&file).unwrap();
        assert!(!flags.contains(rustix::fs::OFlags::NONBLOCK), "{flags:?}");
        let mut read = String::new();
        file.read_to_string(&mut read).unwrap();
        assert_eq!(read, "pem");
    }
}
