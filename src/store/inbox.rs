//! The event inbox: received events wait here for their group commit (the committer is
//! `Store::record_report`'s), each with the request that waits for its outcome. Bounded by
//! count and bytes, beyond which a new event is refused with `503` at once; it counts the
//! committed events by (kind, reason, severity) for the metrics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::reports::Report;
use crate::domain::report::Severity;
use crate::error::{AppError, Result};

/// Events waiting for their commit beyond which a new one is refused (`503`, retry).
pub const INBOX_MAX_EVENTS: usize = 10_000;
/// Bytes of events waiting for their commit beyond which a new one is refused.
pub const INBOX_MAX_BYTES: usize = 8 * 1024 * 1024;

/// The object kinds counted by name in metrics; anything else counts as `other`.
const KINDS: [&str; 4] = [
    "HelmRelease",
    "Kustomization",
    "ResourceSet",
    "ResourceSetInputProvider",
];

/// Reasons Flux controllers emit, counted by name in metrics (bounded cardinality: a cluster
/// cannot create series by inventing reasons); anything else counts as `other`.
const REASONS: [&str; 24] = [
    "InstallSucceeded",
    "InstallFailed",
    "UpgradeSucceeded",
    "UpgradeFailed",
    "TestSucceeded",
    "TestFailed",
    "RollbackSucceeded",
    "RollbackFailed",
    "UninstallSucceeded",
    "UninstallFailed",
    "DriftCorrected",
    "DependencyNotReady",
    "PendingRelease",
    "ArtifactFailed",
    "ReconciliationSucceeded",
    "ReconciliationFailed",
    "Progressing",
    "HealthCheckFailed",
    "BuildFailed",
    "PruneFailed",
    "ValidationFailed",
    "InitFailed",
    "RetriesExceeded",
    "MissingRollbackTarget",
];

fn known(list: &'static [&'static str], value: &str) -> &'static str {
    list.iter()
        .find(|k| **k == value)
        .copied()
        .unwrap_or("other")
}

/// Received events by (kind, reason, severity), names from the bounded lists above.
pub type EventCounts = Vec<((&'static str, &'static str, &'static str), u64)>;

/// A report waiting for its commit, and the request waiting for the outcome.
pub struct Queued {
    pub report: Report,
    answer: oneshot::Sender<Result<()>>,
}

impl Queued {
    /// Tells the waiting request how its batch ended.
    pub fn answer(self, outcome: Result<()>) {
        let _ = self.answer.send(outcome);
    }
}

#[derive(Default)]
struct Waiting {
    queue: Vec<Queued>,
    bytes: usize,
    /// A committer is draining the queue; a new report need not start one.
    committing: bool,
}

#[derive(Default)]
struct Inbox {
    waiting: Mutex<Waiting>,
    counts: Mutex<HashMap<(&'static str, &'static str, Severity), u64>>,
    accepted: AtomicU64,
}

/// Shared by every request; cheap to clone.
#[derive(Clone, Default)]
pub struct ReportInbox(Arc<Inbox>);

/// A queued report: the outcome of its commit, and whether the caller must start a committer.
pub struct Ticket {
    pub outcome: oneshot::Receiver<Result<()>>,
    pub start_committer: bool,
}

impl ReportInbox {
    /// Queues a report for the next group commit. Refused (`503`) when the reports already
    /// waiting pass the inbox's bounds, whatever the state of the committer.
    pub fn push(&self, report: Report) -> Result<Ticket> {
        let footprint = report.footprint();
        let (answer, outcome) = oneshot::channel();
        let mut waiting = self.lock();
        if waiting.queue.len() >= INBOX_MAX_EVENTS || waiting.bytes + footprint > INBOX_MAX_BYTES {
            return Err(AppError::Unavailable(format!(
                "{} events ({} KiB) are waiting to be saved; retry shortly",
                waiting.queue.len(),
                waiting.bytes / 1024
            )));
        }
        waiting.bytes += footprint;
        waiting.queue.push(Queued { report, answer });
        let start_committer = !std::mem::replace(&mut waiting.committing, true);
        Ok(Ticket {
            outcome,
            start_committer,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.0.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything waiting, in arrival order.
    pub fn take(&self) -> Vec<Queued> {
        let mut waiting = self.lock();
        waiting.bytes = 0;
        std::mem::take(&mut waiting.queue)
    }

    /// Whether the committer has more to do; when not, it ends (and the next report starts
    /// a new one): decided under the lock, so no report is left without a committer.
    pub fn keep_committing(&self) -> bool {
        let mut waiting = self.lock();
        waiting.committing = !waiting.queue.is_empty();
        waiting.committing
    }

    /// Events waiting for their commit.
    pub fn waiting(&self) -> usize {
        self.lock().queue.len()
    }

    /// Counts a committed batch in the metrics.
    pub fn count(&self, batch: &[Queued]) {
        let mut counts = self.0.counts.lock().unwrap_or_else(|e| e.into_inner());
        for queued in batch {
            let event = &queued.report.event;
            let key = (
                known(&KINDS, &event.kind),
                known(&REASONS, &event.reason),
                event.severity,
            );
            *counts.entry(key).or_default() += 1;
        }
        self.0
            .accepted
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
    }

    /// Events committed since start.
    pub fn accepted(&self) -> u64 {
        self.0.accepted.load(Ordering::Relaxed)
    }

    pub fn counts(&self) -> EventCounts {
        let counts = self.0.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut list: EventCounts = counts
            .iter()
            .map(|(&(kind, reason, severity), &n)| ((kind, reason, severity.as_str()), n))
            .collect();
        list.sort_unstable();
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::report::Severity;
    use crate::store::reports::MESSAGE_BYTES;
    use crate::store::reports::tests::report;

    #[test]
    fn counts_committed_events_by_bounded_names() {
        let inbox = ReportInbox::default();
        let mut odd = report(1, Severity::Info, "SomethingNew", "v1");
        odd.event.kind = "GitRepository".into();
        assert!(inbox.push(odd).unwrap().start_committer);
        assert!(
            !inbox
                .push(report(2, Severity::Error, "UpgradeFailed", "v1"))
                .unwrap()
                .start_committer,
            "one committer at a time"
        );
        assert!(
            inbox.counts().is_empty(),
            "nothing counted before its commit"
        );
        let batch = inbox.take();
        inbox.count(&batch);
        assert_eq!(
            inbox.counts(),
            vec![
                (("HelmRelease", "UpgradeFailed", "error"), 1),
                (("other", "other", "info"), 1)
            ]
        );
        assert_eq!(inbox.accepted(), 2);
        assert!(
            !inbox.keep_committing(),
            "the committer ends on an empty inbox"
        );
        assert!(
            inbox
                .push(report(3, Severity::Info, "x", "v1"))
                .unwrap()
                .start_committer
        );
    }

    #[test]
    fn the_inbox_refuses_beyond_its_bounds_and_takes_again_once_drained() {
        let inbox = ReportInbox::default();
        let mut tickets = Vec::new();
        for at in 0..INBOX_MAX_EVENTS as i64 {
            tickets.push(inbox.push(report(at, Severity::Info, "x", "v1")).unwrap());
        }
        let refused = inbox.push(report(-1, Severity::Info, "x", "v1"));
        assert!(matches!(refused, Err(AppError::Unavailable(_))));
        drop(inbox.take());
        let mut big = report(0, Severity::Info, "x", "v1");
        big.event.message = "m".repeat(MESSAGE_BYTES);
        let mut taken = 0;
        while inbox.push(big.clone()).is_ok() {
            taken += 1;
        }
        assert!(
            taken < INBOX_MAX_BYTES / MESSAGE_BYTES,
            "bounded by bytes: {taken}"
        );
        assert!(taken > INBOX_MAX_BYTES / (4 * MESSAGE_BYTES), "{taken}");
    }
}
