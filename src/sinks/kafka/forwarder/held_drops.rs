//! What `max_size` dropped while this sink held it in memory, counted as
//! lost once the sink lets go of that memory (at its start, at every
//! recovery, and at a stop for a reload, after which the process goes on;
//! a process stop leaves them to the next start): the journal's record of
//! those drops is taken and cleared.
//!
//! Guarantees: each such event is counted once, in
//! `callrelay_journal_dropped_events_total{reason="undelivered"}` and in one
//! error line (or, if the relay dies before the line, at its next start:
//! the journal counts them among the losses no line has named, in the
//! transaction that takes them). While the record cannot be taken (the
//! journal refuses the write), the sink does not go on: were its cursor to
//! pass the dropped seqs, retention would forget the record as delivered
//! and the loss would be counted nowhere.

use super::super::CURSOR;
use super::super::reader::ReadError;
use super::Forwarder;
use crate::journal::Journal;
use crate::journal::off_the_workers;

impl Forwarder {
    /// Takes the record of the held drops after the cursor and counts them;
    /// on an error, leaves `held_drops_untaken` set for [`Forwarder::pump`]
    /// to try again before it reads on.
    pub(super) async fn count_held_drops_let_go(&mut self) -> Result<(), ReadError> {
        let cursor = self.cursor;
        let journal = self.ctx.journal.clone();
        let taken = tokio::task::spawn_blocking(move || journal.take_held_drops(CURSOR, cursor))
            .await
            .map_err(ReadError::from)
            .and_then(|taken| taken.map_err(ReadError::from));
        let lost = match taken {
            Ok(lost) => lost,
            Err(e) => {
                if !self.held_drops_untaken {
                    tracing::warn!(error = %e, "cannot read which held events journal.max_size dropped; the Kafka sink reads on once it can");
                }
                self.held_drops_untaken = true;
                return Err(e);
            }
        };
        self.held_drops_untaken = false;
        if lost == 0 {
            return Ok(());
        }
        // Counts them in `journal_dropped_events_total{reason="undelivered"}` too.
        self.ctx.status.dropped_undelivered(lost);
        tracing::error!(
            lost,
            cursor,
            "events journal.max_size dropped while the Kafka sink held them were let go of before delivery (the sink restarted, recovered or was stopped by a reload): they are lost for Kafka; raise journal.max_size"
        );
        let said = move |journal: &Journal| journal.undelivered_said(lost);
        if let Err(e) = off_the_workers(self.ctx.journal.clone(), said).await {
            crate::app::not_noted(&e.to_string());
        }
        Ok(())
    }
}
