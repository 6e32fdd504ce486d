//! Journal work run on the blocking pool, off the runtime's workers: a
//! journal call may wait out a reopen or a slow disk for minutes, and a
//! worker held that long stalls every task on it.
//!
//! Guarantees: the work's own error and its task's failure (a panic) come
//! back as one typed error, each said as its own text.

use std::sync::Arc;

use super::{Journal, JournalError};

/// Why journal work run [`off_the_workers`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OffTheWorkersError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

impl OffTheWorkersError {
    /// A failure the relay says elsewhere: the journal's file gone, or the
    /// journal closed to be reopened.
    pub fn is_said_elsewhere(&self) -> bool {
        matches!(
            self,
            OffTheWorkersError::Journal(JournalError::FileGone { .. } | JournalError::Closed)
        )
    }
}

/// Runs `work` on `journal` on the blocking pool; its result, or its task's error.
pub async fn off_the_workers<T: Send + 'static>(
    journal: Arc<Journal>,
    work: impl FnOnce(&Journal) -> Result<T, JournalError> + Send + 'static,
) -> Result<T, OffTheWorkersError> {
    Ok(tokio::task::spawn_blocking(move || work(&journal)).await??)
}
