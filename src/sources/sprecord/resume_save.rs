//! Stores the SPRecord accounts' resume ids in the journal: soon after one
//! changes (at most once per [`SAVE_GAP`]), durably within [`SYNC_WITHIN`]
//! of the first save that did not sync, and durably at the stop.
//!
//! Guarantees: an id is stored within about [`SAVE_GAP`] of its event being
//! journaled, and on disk with the writer's next durable commit or within
//! [`SYNC_WITHIN`], whichever comes first; so a crash leaves the stored id
//! a little behind at worst: a server that keeps history sends those events
//! again, and dedup finds them within `dedup.window` (after a longer outage
//! they are journaled again, with the same `id`). After a clean stop the stored ids are the
//! last ones handed on (the final save runs after the sources drained). A
//! failed save is tried again after [`RETRY_AFTER`] and said once per
//! [`FAILURE_LOG_INTERVAL`] with how many were held back (not while the
//! journal's file is gone or it is closed to be reopened: those are said
//! elsewhere); a failed final save is always said.
//!
//! Why not in the event's own commit: the ids change only on SSE events,
//! a few per second, and a crash within the gap costs only events sent
//! again; the webhook path's writer stays as it is.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::resume::{ResumeIds, Saving};
use crate::journal::{Journal, OffTheWorkersError, off_the_workers};
use crate::log_throttle::SharedLogThrottle;

/// The least time between two saves: events coming one after another are
/// one write, not one each.
pub const SAVE_GAP: Duration = Duration::from_millis(100);
/// How long a save may wait for a durable commit to carry it to the disk
/// (a quiet relay makes none) before it is synced on its own.
pub const SYNC_WITHIN: Duration = Duration::from_secs(1);
/// The wait after a failed save before the next try.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How often a failing save is said.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// Saves changed ids until `stop`; [`save_at_stop`] follows.
pub async fn keep_saved(ids: Arc<ResumeIds>, journal: Arc<Journal>, stop: CancellationToken) {
    let failures = SharedLogThrottle::new(FAILURE_LOG_INTERVAL);
    // When the saves that did not sync must be synced; set by the first of
    // them, so later changes do not put it off.
    let mut sync_by: Option<Instant> = None;
    loop {
        let sync_due = async {
            match sync_by {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending::<()>().await,
            }
        };
        let durable = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = sync_due => true,
            _ = ids.changed() => false,
        };
        let unsaved = if durable {
            Some(ids.all_to_save())
        } else {
            ids.to_save()
        };
        let Some(unsaved) = unsaved else {
            continue;
        };
        let pause = match save(&journal, unsaved, durable).await {
            Ok(()) => {
                sync_by = match (durable, sync_by) {
                    (true, _) => None,
                    (false, None) => Some(Instant::now() + SYNC_WITHIN),
                    (false, kept) => kept,
                };
                SAVE_GAP
            }
            Err(error) => {
                ids.not_saved();
                if !error.is_said_elsewhere()
                    && let Some(held_back) = failures.admit_now(())
                {
                    tracing::warn!(vendor = "sprecord", error = %error, retry_in_ms = crate::logging::millis(RETRY_AFTER), held_back,
                        "the SSE streams' resume ids could not be stored in the journal: a restart now would resume from older ones (dedup finds what is sent again)");
                }
                RETRY_AFTER
            }
        };
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Saves every id durably, once the sources drained: apart from
/// [`keep_saved`], so that it runs even when a stop came while that was
/// waiting to be restarted after a panic.
pub async fn save_at_stop(ids: &Arc<ResumeIds>, journal: &Arc<Journal>) {
    if let Err(error) = save(journal, ids.all_to_save(), true).await
        && !error.is_said_elsewhere()
    {
        tracing::warn!(vendor = "sprecord", error = %error,
            "the SSE streams' resume ids could not be stored in the journal at the stop: the next start resumes from older ones, or asks for no history");
    }
}

/// Stores `unsaved`.
async fn save(
    journal: &Arc<Journal>,
    unsaved: Saving,
    durable: bool,
) -> Result<(), OffTheWorkersError> {
    off_the_workers(journal.clone(), move |journal| {
        journal.save_sse_resume_ids(&unsaved.ids, &unsaved.kept, durable)
    })
    .await
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

    /// A start that could not read the stored ids knows none: its saves
    /// replaced the stored ids with the run's, so an account with no event
    /// in the run lost its resume point, and every later start opened its
    /// streams without history. Ids of accounts no longer configured are
    /// still dropped.
    #[tokio::test]
    async fn a_start_that_could_not_read_the_ids_keeps_the_stored_ones_it_did_not_change() {
        use super::super::resume::key;
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::open(options(dir.path())).unwrap());
        let (busy, quiet, gone) = (
            key("busy", "http://a/sys/events"),
            key("quiet", "http://b/sys/events"),
            key("gone", "http://c/sys/events"),
        );
        journal
            .save_sse_resume_ids(
                &[
                    (busy.clone(), "10".to_owned()),
                    (gone.clone(), "5".to_owned()),
                    (quiet.clone(), "20".to_owned()),
                ],
                &[],
                true,
            )
            .unwrap();
        let unread = Err(crate::journal::JournalError::Damaged {
            path: dir.path().join("journal.redb"),
            what: "the SPRecord resume ids",
        });
        let ids = Arc::new(ResumeIds::at_start(unread, &[busy.clone(), quiet.clone()]));
        let stop = CancellationToken::new();
        let saver = tokio::spawn(keep_saved(ids.clone(), journal.clone(), stop.clone()));
        ResumeId::in_ids(&ids, "busy", "http://a/sys/events").set("11");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut stored = journal.sse_resume_ids().unwrap();
        while !stored.contains(&(busy.clone(), "11".to_owned())) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never stored: {stored:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
            stored = journal.sse_resume_ids().unwrap();
        }
        assert!(
            stored.contains(&(quiet.clone(), "20".to_owned())),
            "{stored:?}"
        );
        stop.cancel();
        saver.await.unwrap();
        save_at_stop(&ids, &journal).await;
        assert_eq!(
            journal.sse_resume_ids().unwrap(),
            vec![(busy, "11".to_owned()), (quiet, "20".to_owned())]
        );
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
        save_at_stop(&ids, &journal).await;
        assert!(journal.close(Duration::from_secs(5)));
        drop(journal);
        let journal = Journal::open(options(dir.path())).unwrap();
        assert_eq!(
            journal.sse_resume_ids().unwrap(),
            vec![(
                super::super::resume::key("main", "http://a/sys/events"),
                "4".to_owned()
            )]
        );
    }
}
