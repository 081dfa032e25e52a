//! The audit trail over HTTP: `GET /audit` and `POST /audit/{revision}/revert` (write token).

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;

use super::ApiTags;
use super::error::WriteError;
use super::preview::warning_header;
use crate::auth::WriteAccess;
use crate::store::Store;
use crate::store::audit::{self, Filter};

pub struct AuditApi;

/// One committed write.
#[derive(Object, Clone, Debug)]
pub struct AuditEntry {
    /// Monotonic; the resource's ETag after this write.
    pub revision: i64,
    /// Unix seconds.
    pub at: i64,
    /// The token's name, or `write-token`.
    pub actor: String,
    /// `POST`, `PUT`, `DELETE`, `REVERT` or `IMPORT`.
    pub method: String,
    /// `clusters`, `platform_components`, `namespaces`, `rolebindings`, `tokens`, `overlays`,
    /// `windows`, or `cluster_components`: one component's entry written on many clusters
    /// (a rollout's step, rollback or promotion; `id` is the component, `before` and `after`
    /// map each changed cluster to its entry, `null` where it had none).
    pub kind: String,
    pub id: String,
    /// The resource before the write; `null` for a create.
    #[oai(nullable)]
    pub before: Option<Value>,
    /// The resource after the write; `null` for a delete.
    #[oai(nullable)]
    pub after: Option<Value>,
    /// Present when the write overrode maintenance windows (`?confirm_closed=`): the number
    /// of closed clusters it changed, and the first of them with their windows.
    #[oai(skip_serializing_if_is_none)]
    pub window_override: Option<Value>,
}

impl From<audit::Entry> for AuditEntry {
    fn from(e: audit::Entry) -> Self {
        AuditEntry {
            revision: e.revision,
            at: e.at,
            actor: e.actor,
            method: e.method,
            kind: e.kind,
            id: e.resource_id,
            before: e.before,
            after: e.after,
            window_override: e.window_override,
        }
    }
}

/// What a revert did.
#[derive(Object, Clone, Debug)]
pub struct RevertResult {
    /// The revision of the revert itself (it is audited too).
    pub revision: i64,
    pub kind: String,
    pub id: String,
}

#[derive(ApiResponse)]
pub enum AuditList {
    /// Entries in revision order.
    #[oai(status = 200)]
    Ok(Json<Vec<AuditEntry>>),
}

#[derive(ApiResponse)]
pub enum RevertResponse {
    /// Reverted: the resource is back to its state before the revision.
    #[oai(status = 200)]
    Ok(
        Json<RevertResult>,
        /// Accepted with warnings.
        #[oai(header = "Warning")]
        Option<String>,
    ),
}

#[OpenApi(tag = "ApiTags::Audit")]
impl AuditApi {
    /// The audit trail
    #[oai(path = "/audit", method = "get")]
    async fn list(
        &self,
        _auth: WriteAccess,
        store: Data<&Store>,
        /// Only this kind: `clusters`, `platform_components`, `namespaces`, `rolebindings`,
        /// `tokens`, `overlays`, `windows`, `cluster_components`.
        kind: Query<Option<String>>,
        /// Only this resource id (a cluster's id also finds the `cluster_components` entries
        /// that changed it).
        id: Query<Option<String>>,
        /// Only entries after this revision.
        #[oai(validator(minimum(value = "0")))]
        since_revision: Query<Option<i64>>,
        /// At most this many entries.
        #[oai(validator(minimum(value = "0"), maximum(value = "4294967295")))]
        limit: Query<Option<u32>>,
    ) -> Result<AuditList, WriteError> {
        let filter = Filter {
            kind: kind.0,
            resource_id: id.0,
            since_revision: since_revision.0,
            limit: limit.0,
        };
        let entries = store.read(move |conn| audit::list(conn, &filter)).await?;
        Ok(AuditList::Ok(Json(
            entries.into_iter().map(AuditEntry::from).collect(),
        )))
    }

    /// Undo one write
    ///
    /// Restores the resource to its state before `revision` (for a `cluster_components`
    /// entry: every cluster's entry of the component, leaving out clusters deleted since), as
    /// a new write that passes every integrity check (409/422 when it cannot) and is itself
    /// audited.
    #[oai(path = "/audit/:revision/revert", method = "post")]
    async fn revert(
        &self,
        auth: WriteAccess,
        store: Data<&Store>,
        /// The revision to undo.
        revision: Path<i64>,
        /// The number of clusters the revert takes inputs from, when it needs confirming
        /// (409 `blast_radius` names it).
        confirm: Query<Option<u64>>,
        /// The number of clusters closed by a maintenance window whose feeds the revert
        /// changes, when there are any (409 `window_closed` names them).
        confirm_closed: Query<Option<u64>>,
    ) -> Result<RevertResponse, WriteError> {
        let options = crate::store::RevertOptions {
            confirm: confirm.0,
            confirm_closed: confirm_closed.0,
            dry_run: false,
        };
        let reverted = store.revert(revision.0, auth.0.0, options).await?;
        let result = RevertResult {
            revision: reverted.revision,
            kind: reverted.kind.to_owned(),
            id: reverted.id,
        };
        Ok(RevertResponse::Ok(
            Json(result),
            warning_header(&reverted.warnings),
        ))
    }
}
