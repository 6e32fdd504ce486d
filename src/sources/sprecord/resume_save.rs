//! Stores the SPRecord accounts' resume ids in the journal: soon after one
//! changes (at most once per [`SAVE_GAP`]), durably once they stay
//! unchanged for [`SETTLE_AFTER`], and durably at the stop.
//!
//! Guarantees: while events flow, an id is stored within about [`SAVE_GAP`]
//! of its event being journaled (the save rides on the writer's next durable
//! commit); once they stop, the last ids reach the disk within
//! [`SETTLE_AFTER`]. So a crash leaves the stored id a little behind at
//! worst: a server that keeps history sends those events again, and dedup
//! finds them. After a clean stop the stored ids are the last ones handed
//! on. A failed save is tried again after [`RETRY_AFTER`], and said once per
//! [`FAILURE_LOG_INTERVAL`] (not while the journal's file is gone or it is
//! closed to be reopened: those are said elsewhere).
//!
//! Why not in the event's own commit: the ids change only on SSE events,
//! a few per second, and a crash within the gap costs only events sent
//! again; the webhook path's writer stays as it is.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::resume::ResumeIds;
use crate::journal::{Journal, JournalError, SavedResumeId};
use crate::log_throttle::SharedLogThrottle;

/// The least time between two saves: events coming one after another are
/// one write, not one each.
pub const SAVE_GAP: Duration = Duration::from_millis(100);
/// How long the ids stay unchanged before a save that did not sync is
/// synced (a quiet device: no commit of the writer's carries it).
pub const SETTLE_AFTER: Duration = Duration::from_secs(1);
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// Saves changed ids until `stop`, then saves them durably.
pub async fn keep_saved(ids: Arc<ResumeIds>, journal: Arc<Journal>, stop: CancellationToken) {
    let failures = SharedLogThrottle::new(FAILURE_LOG_INTERVAL);
    // Whether a save since the last durable one may not be on disk yet.
    let mut saved_lightly = false;
    loop {
        let settle = async {
            if saved_lightly {
                tokio::time::sleep(SETTLE_AFTER).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let durable = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = ids.changed() => false,
            _ = settle => true,
        };
        let unsaved = if durable {
            Some(ids.all())
        } else {
            ids.unsaved()
        };
        let Some(unsaved) = unsaved else {
            continue;
        };
        let pause = if save(&ids, &journal, unsaved, durable, &failures).await {
            saved_lightly = !durable;
            SAVE_GAP
        } else {
            RETRY_AFTER
        };
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
    let last = if saved_lightly {
        Some(ids.all())
    } else {
        ids.unsaved()
    };
    if let Some(last) = last {
        save(&ids, &journal, last, true, &failures).await;
    }
}

/// Stores `unsaved`; whether it was stored. A failure reports the ids
/// unsaved again.
async fn save(
    ids: &Arc<ResumeIds>,
    journal: &Arc<Journal>,
    unsaved: Vec<SavedResumeId>,
    durable: bool,
    failures: &SharedLogThrottle<()>,
) -> bool {
    let owned = journal.clone();
    let saved =
        tokio::task::spawn_blocking(move || owned.save_sse_resume_ids(&unsaved, durable)).await;
    let error = match saved {
        Ok(Ok(())) => return true,
        Ok(Err(JournalError::FileGone { .. } | JournalError::Closed)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    ids.not_saved();
    if let Some(error) = error
        && failures.admit_now(()).is_some()
    {
        tracing::warn!(vendor = "sprecord", error = %error, retry_in_ms = crate::logging::millis(RETRY_AFTER),
            "the SSE streams' resume ids could not be stored in the journal: a restart now would resume from older ones (dedup finds what is sent again)");
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::tests_support::options;
    use crate::sources::sprecord::resume::ResumeId;

    async fn stored(journal: &Journal, want: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let ids = journal.sse_resume_ids().unwrap();
            if ids.len() == 1 && ids[0].1 == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{want} never stored: {ids:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Each change is stored while the relay runs, not only at the stop,
    /// and the stop's save is there after a reopen.
    #[tokio::test]
    async fn changed_ids_are_stored_while_running_and_kept_after_the_stop() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::open(options(dir.path())).unwrap());
        let ids = Arc::new(ResumeIds::default());
        let stop = CancellationToken::new();
        let saver = tokio::spawn(keep_saved(ids.clone(), journal.clone(), stop.clone()));
        let stream = ResumeId::in_ids(&ids, "main", "http://a/sys/events");
        stream.set("1");
        stored(&journal, "1").await;
        stream.set("2");
        stream.set("3");
        stored(&journal, "3").await;
        stream.set("4");
        stop.cancel();
        saver.await.unwrap();
        assert!(journal.close(Duration::from_secs(5)));
        drop(journal);
        let journal = Journal::open(options(dir.path())).unwrap();
        assert_eq!(
            journal.sse_resume_ids().unwrap(),
            vec![(
                ("main".to_owned(), "http://a/sys/events".to_owned()),
                "4".to_owned()
            )]
        );
    }
}
