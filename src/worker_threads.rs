//! How many worker threads `run`'s runtime has: `TOKIO_WORKER_THREADS`, read
//! here rather than by tokio. Left to tokio, a value that is not a positive
//! whole number (`0`, `auto`, empty, not UTF-8) was a panic (exit 101) when
//! the runtime was built, which systemd's `Restart=` turned into a restart
//! loop that `callrelay check` could not see coming.
//!
//! A count tokio takes but cannot build a runtime with (one that overflows
//! its thread arithmetic or allocation, or exhausts memory or the unit's
//! task limit) ended the same way, so a count above [`MAX`] is refused too.
//!
//! Guarantees: [`from_env`] gives a count that was set, at most [`MAX`], to
//! pass to `Builder::worker_threads` (so tokio never reads the variable), or
//! the error that `check` and `run` both report. Unset, or empty as
//! `TOKIO_WORKER_THREADS=` in an env file leaves it, means tokio's own
//! default: one per CPU the process may use, which [`MAX`] does not cap (on
//! a machine with more than 1,024 CPUs it is more). A count under [`MAX`]
//! is no promise the threads start: see [`MAX`] for a small host's limit.

use std::ffi::OsString;
use std::num::{IntErrorKind, NonZeroUsize, ParseIntError};

/// The variable, as tokio names it.
pub const VAR: &str = "TOKIO_WORKER_THREADS";

/// The most worker threads `run` starts. tokio takes any count and fails
/// only when it builds the runtime: `usize::MAX` overflows its thread
/// arithmetic, ~2^60 panics allocating, ~10^8 gives every worker a run
/// queue until the process is killed for memory. Far below those, the
/// unit sets no `TasksMax=`, so systemd's `DefaultTasksMax` holds: 15% of
/// the smallest of the kernel's `pid_max`, its `threads-max` (about RAM
/// ÷ 128 KiB) and the root cgroup's `pids.max` (4,915 with the common
/// `pid_max` of 32,768 on a large host, but about 1,228 on a 1 GiB one),
/// past which threads fail to start. Under it the relay also needs up to
/// tokio's 512 blocking threads (journal reads, Kafka), the journal writer
/// and librdkafka's threads, so on a small host a count well under this
/// cap can still fail to start its threads: the cap only refuses counts no
/// host could run, and no machine the relay runs on has a CPU for each of
/// 1,024 workers.
pub const MAX: usize = 1024;

/// Why the variable's value cannot be a worker thread count.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WorkerThreadsError {
    #[error(
        "{0:?} is not a number of worker threads: set a positive whole number, or leave it unset or empty for one per CPU"
    )]
    NotACount(String),
    #[error(
        "{0:?} is more worker threads than the relay starts: set a positive whole number up to {MAX}, or leave it unset or empty for one per CPU"
    )]
    TooMany(String),
    #[error(
        "its value is not UTF-8: set a positive whole number, or leave it unset or empty for one per CPU"
    )]
    NotUtf8,
}

/// The worker thread count the environment asks for, else one per CPU.
pub fn from_env() -> Result<NonZeroUsize, WorkerThreadsError> {
    Ok(parse(std::env::var_os(VAR))?.unwrap_or_else(one_per_cpu))
}

/// The count a value of the variable sets; `None` when it sets none.
/// Whitespace around the number is let through: a quoted value in an env
/// file keeps it, and it cannot mean anything else.
fn parse(value: Option<OsString>) -> Result<Option<NonZeroUsize>, WorkerThreadsError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let value = value
        .into_string()
        .map_err(|_| WorkerThreadsError::NotUtf8)?;
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    // A number too large for a usize is a count over the cap, not a
    // non-number.
    let count: NonZeroUsize = trimmed.parse().map_err(|e: ParseIntError| match e.kind() {
        IntErrorKind::PosOverflow => WorkerThreadsError::TooMany(value.clone()),
        _ => WorkerThreadsError::NotACount(value.clone()),
    })?;
    if count.get() > MAX {
        return Err(WorkerThreadsError::TooMany(value));
    }
    Ok(Some(count))
}

/// tokio's default when the variable is unset.
fn one_per_cpu() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    fn parsed(value: &str) -> Result<Option<usize>, WorkerThreadsError> {
        parse(Some(value.into())).map(|n| n.map(NonZeroUsize::get))
    }

    #[test]
    fn a_positive_whole_number_is_the_count() {
        assert_eq!(parsed("1"), Ok(Some(1)));
        assert_eq!(parsed("16"), Ok(Some(16)));
        assert_eq!(parsed(" 4\t"), Ok(Some(4)));
    }

    /// A count tokio takes but cannot start with (it overflowed, panicked
    /// or ran out of memory building the runtime, a restart loop `check`
    /// did not see coming) or that passes the unit's task limit is refused
    /// as too many, with the value as written; the cap itself is a count.
    #[test]
    fn a_count_over_the_cap_is_refused_as_too_many() {
        assert_eq!(parsed("1024"), Ok(Some(MAX)));
        for over in [
            "1025",
            " 1025",
            "100000000",
            "18446744073709551615",
            "99999999999999999999999",
        ] {
            assert_eq!(
                parsed(over),
                Err(WorkerThreadsError::TooMany(over.to_owned())),
                "{over:?}"
            );
        }
    }

    #[test]
    fn unset_or_empty_leaves_the_default() {
        assert_eq!(parse(None), Ok(None));
        assert_eq!(parsed(""), Ok(None));
        assert_eq!(parsed("  "), Ok(None));
    }

    #[test]
    fn anything_else_is_refused_with_the_value_as_written() {
        for bad in ["0", "auto", "-1", "2.5", "4 threads"] {
            assert_eq!(
                parsed(bad),
                Err(WorkerThreadsError::NotACount(bad.to_owned())),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse(Some(OsString::from_vec(b"\xff4".to_vec()))),
            Err(WorkerThreadsError::NotUtf8)
        );
    }
}
