//! The one error type of the domain and storage layers. The HTTP layer maps each variant to
//! a status and the `{"error", "message"}` body (src/api/error.rs).

/// What went wrong, phrased for the client (except `Internal`, which is logged, not shown).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the request is malformed (wrong id in the body, bad query parameter).
    #[error("{0}")]
    BadRequest(String),
    /// 404: the named resource does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 409: the write collides with existing data (duplicate id, still referenced).
    #[error("{0}")]
    Conflict(String),
    /// 422: well-formed but breaks an inventory rule (unknown reference, bad name, cycle).
    #[error("{0}")]
    Validation(String),
    /// 409 `blast_radius`: the write would empty a feed or shrink feeds on more clusters
    /// than allowed, and does not carry the matching `?confirm=`.
    #[error("{0}")]
    BlastRadius(String),
    /// 409 `window_closed`: the write changes the feeds of clusters a maintenance window
    /// closes now, and does not carry the matching `?confirm_closed=`.
    #[error("{0}")]
    WindowClosed(String),
    /// 412: `If-Match` names a revision that is no longer current.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 503: the store cannot serve right now (not migrated, busy beyond the timeout).
    #[error("{0}")]
    Unavailable(String),
    /// 500: a real server fault. The text goes to the log only.
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = AppError> = std::result::Result<T, E>;
