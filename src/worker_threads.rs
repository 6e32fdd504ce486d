//! How many worker threads `run`'s runtime has: `TOKIO_WORKER_THREADS`, read
//! here rather than by tokio. Left to tokio, a value that is not a positive
//! whole number (`0`, `auto`, empty, not UTF-8) was a panic (exit 101) when
//! the runtime was built, which systemd's `Restart=` turned into a restart
//! loop that `callrelay check` could not see coming.
//!
//! Guarantees: [`from_env`] gives the count to pass to
//! `Builder::worker_threads` (so tokio never reads the variable), or the
//! error that `check` and `run` both report. Unset, or empty as
//! `TOKIO_WORKER_THREADS=` in an env file leaves it, means tokio's own
//! default: one per CPU the process may use.

use std::ffi::OsString;
use std::num::NonZeroUsize;

/// The variable, as tokio names it.
pub const VAR: &str = "TOKIO_WORKER_THREADS";

/// Why the variable's value cannot be a worker thread count.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WorkerThreadsError {
    #[error(
        "{0:?} is not a number of worker threads: set a positive whole number, or leave it unset or empty for one per CPU"
    )]
    NotACount(String),
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
    trimmed
        .parse()
        .map(Some)
        .map_err(|_| WorkerThreadsError::NotACount(value))
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

    #[test]
    fn unset_or_empty_leaves_the_default() {
        assert_eq!(parse(None), Ok(None));
        assert_eq!(parsed(""), Ok(None));
        assert_eq!(parsed("  "), Ok(None));
    }

    #[test]
    fn anything_else_is_refused_with_the_value_as_written() {
        for bad in [
            "0",
            "auto",
            "-1",
            "2.5",
            "4 threads",
            "99999999999999999999999",
        ] {
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
