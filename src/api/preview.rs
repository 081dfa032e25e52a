//! What writes say besides their result: `Warning` headers, and dry-run previews.

use poem_openapi::Object;
use poem_openapi::types::{ParseFromJSON, ToJSON};

use crate::domain::feed::{FeedChange, FeedCount};
use crate::store::Written;

/// The answer to a write sent with `?dry_run=true`: nothing was stored.
#[derive(Object)]
pub struct WritePreview<T: ParseFromJSON + ToJSON> {
    /// Always `true`.
    pub dry_run: bool,
    /// The status the real write would answer (a refused write answers its error instead).
    pub status: u16,
    /// The resource as it would be stored (for a delete: as it would be deleted).
    pub result: T,
    /// Warnings the real write would carry.
    pub warnings: Vec<String>,
    /// Clusters with at least one changed feed (all of them, however many are listed).
    pub clusters_changed: u64,
    /// Per feed: clusters changed, and inputs added, removed, changed, disabled; feeds that
    /// would become empty.
    pub summary: Vec<FeedCount>,
    /// Per listed cluster and feed: input ids added, removed, changed and disabled; at most
    /// 100 clusters per answer, in id order.
    pub changes: Vec<FeedChange>,
    /// More changed clusters than listed: ask again with `changes_offset`.
    pub truncated: bool,
    /// The `changes_offset` of the next page.
    #[oai(nullable)]
    pub next_changes_offset: Option<u64>,
    /// What the write takes away from Flux (inputs removed or disabled, feeds emptied), and
    /// whether it needs `?confirm=`.
    pub blast_radius: crate::domain::blast::BlastRadius,
    /// Clusters a maintenance window closes now whose feeds the write changes, and whether
    /// it needs `?confirm_closed=`.
    pub window_closed: crate::domain::feed::WindowClosed,
}

impl<T: ParseFromJSON + ToJSON> WritePreview<T> {
    pub fn new(status: u16, written: Written<T>) -> Self {
        let preview = written.preview.unwrap_or_default();
        WritePreview {
            dry_run: true,
            // A write the blast-radius rail refuses would answer 409.
            status: if preview.blast_radius.refused || preview.window_closed.refused {
                409
            } else {
                status
            },
            result: written.value,
            warnings: written.warnings,
            clusters_changed: preview.clusters_changed,
            summary: preview.feeds,
            changes: preview.changes,
            truncated: preview.truncated,
            next_changes_offset: preview.next_changes_offset,
            blast_radius: preview.blast_radius,
            window_closed: preview.window_closed,
        }
    }
}

/// RFC 9111 `Warning` values (code 299, "miscellaneous persistent warning"), or `None`.
pub fn warning_header(warnings: &[String]) -> Option<String> {
    (!warnings.is_empty()).then(|| {
        warnings
            .iter()
            .map(|w| format!("299 flux-inputs \"{}\"", w.replace(['"', '\\'], "'")))
            .collect::<Vec<_>>()
            .join(", ")
    })
}
