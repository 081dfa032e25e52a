//! What writes say besides their result: `Warning` headers, and dry-run previews.

use poem_openapi::Object;
use poem_openapi::types::{ParseFromJSON, ToJSON};

use crate::domain::feed::FeedChange;
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
    /// Per affected cluster and feed: input ids added, removed and changed.
    pub changes: Vec<FeedChange>,
}

impl<T: ParseFromJSON + ToJSON> WritePreview<T> {
    pub fn new(status: u16, written: Written<T>) -> Self {
        WritePreview {
            dry_run: true,
            status,
            result: written.value,
            warnings: written.warnings,
            changes: written.changes.unwrap_or_default(),
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
