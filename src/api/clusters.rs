//! CRUD for clusters (crud mode only).

use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::body::JsonBody;
use super::error::{ReadError, WriteError};
use super::responses::{Created, Deleted, Fetched, Listed, Updated, etag, write_request};
use crate::auth::{ReadAccess, WriteAccess};
use crate::domain::model::{Cluster, ClusterUpdate, Environment};
use crate::domain::overlay::EffectiveCluster;
use crate::store::clusters::{self, ClusterFilter};
use crate::store::{Page, Store};

pub struct ClustersApi;

#[derive(ApiResponse)]
pub enum EffectiveResponse {
    /// The cluster's effective values.
    #[oai(status = 200)]
    Ok(Json<EffectiveCluster>),
}

#[derive(ApiResponse)]
pub enum WindowsResponse {
    /// Whether the cluster may change now, and when that changes.
    #[oai(status = 200)]
    Ok(Json<crate::domain::window::ClusterWindows>),
}

#[OpenApi(prefix_path = "/clusters", tag = "ApiTags::Clusters")]
impl ClustersApi {
    /// List clusters
    #[oai(path = "/", method = "get")]
    async fn list(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
        /// Only the cluster with this DNS name.
        cluster_dns: Query<Option<String>>,
        /// Only clusters of this environment tier.
        environment: Query<Option<Environment>>,
        /// Only clusters with this label, as `key=value` (`?label=canary=true`); repeat it
        /// for several, all of which must match.
        label: Query<Vec<String>>,
        /// At most this many clusters.
        #[oai(validator(minimum(value = "0"), maximum(value = "4294967295")))]
        limit: Query<Option<u32>>,
        /// Skip this many clusters.
        #[oai(validator(minimum(value = "0"), maximum(value = "4294967295")))]
        offset: Query<Option<u32>>,
    ) -> Result<Listed<Cluster>, ReadError> {
        let labels = label
            .0
            .iter()
            .map(|wanted| {
                wanted
                    .split_once('=')
                    .map(|(key, value)| (key.to_owned(), value.to_owned()))
                    .ok_or_else(|| {
                        crate::error::AppError::BadRequest(format!(
                            "label: '{wanted}' is not key=value"
                        ))
                    })
            })
            .collect::<crate::error::Result<Vec<_>>>()?;
        let filter = ClusterFilter {
            cluster_dns: cluster_dns.0,
            environment: environment.0,
            labels,
            page: Page {
                limit: limit.0,
                offset: offset.0,
            },
        };
        let found = store
            .read(move |conn| clusters::list(conn, &filter))
            .await?;
        Ok(Listed::Ok(Json(found)))
    }

    /// Create a cluster
    #[oai(path = "/", method = "post")]
    async fn create(
        &self,
        auth: WriteAccess,
        store: Data<&Store>,
        /// Check and preview the write without storing anything.
        #[oai(default)]
        dry_run: Query<bool>,
        /// Dry run: list the changed clusters from this offset on (100 per answer).
        changes_offset: Query<Option<u32>>,
        /// The number of clusters closed by a maintenance window whose feeds the write
        /// changes, when there are any (409 `window_closed` names them).
        confirm_closed: Query<Option<u64>>,
        body: JsonBody<Cluster>,
    ) -> Result<Created<Cluster>, WriteError> {
        let request = write_request(
            auth,
            "POST",
            (dry_run.0, changes_offset.0, confirm_closed.0),
            None,
        )?;
        let written = store.create(body.0, request).await?;
        Ok(Created::new(written, dry_run.0, "/clusters", |c| &c.id))
    }

    /// Get a cluster
    #[oai(path = "/:id", method = "get")]
    async fn get(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
        id: Path<String>,
    ) -> Result<Fetched<Cluster>, ReadError> {
        let (value, revision) = store.fetch_with_revision(id.0).await?;
        Ok(Fetched::Ok(Json(value), etag(revision)))
    }

    /// Whether a cluster may change now
    ///
    /// The maintenance windows whose selector matches the cluster, whether it is open now
    /// (no deny window open; an allow window open when any matches it), the windows that
    /// close it, and when that changes next.
    #[oai(path = "/:id/windows", method = "get")]
    async fn windows(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
        id: Path<String>,
    ) -> Result<WindowsResponse, ReadError> {
        let (id, now) = (id.0, store.clock().now());
        let view = store
            .read(move |conn| crate::store::windows::for_cluster(conn, &id, now))
            .await?;
        Ok(WindowsResponse::Ok(Json(view)))
    }

    /// A cluster's effective values
    ///
    /// Each effective platform component (its own and those overlays assign), every field
    /// and patch key with the layer it came from (`catalog`, `overlay:<id>`, `cluster`), and
    /// the namespaces and rolebindings it gets. `GET /clusters/{id}` shows what the cluster
    /// itself sets.
    #[oai(path = "/:id/effective", method = "get")]
    async fn effective(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
        id: Path<String>,
    ) -> Result<EffectiveResponse, ReadError> {
        let id = id.0;
        let view = store
            .read(move |conn| crate::store::overlays::effective_view(conn, &id))
            .await?;
        Ok(EffectiveResponse::Ok(Json(view)))
    }

    /// Update a cluster
    ///
    /// Top-level fields present in the body replace the stored ones; omitted fields keep
    /// their values.
    #[oai(path = "/:id", method = "put")]
    // poem-openapi takes each query parameter and header as an argument of its own.
    #[allow(clippy::too_many_arguments)]
    async fn update(
        &self,
        auth: WriteAccess,
        store: Data<&Store>,
        id: Path<String>,
        /// Check and preview the write without storing anything.
        #[oai(default)]
        dry_run: Query<bool>,
        /// Dry run: list the changed clusters from this offset on (100 per answer).
        changes_offset: Query<Option<u32>>,
        /// The number of clusters closed by a maintenance window whose feeds the write
        /// changes, when there are any (409 `window_closed` names them).
        confirm_closed: Query<Option<u64>>,
        /// The ETag last read; a stale one is refused with 412.
        #[oai(name = "If-Match")]
        if_match_header: Header<Option<String>>,
        /// The number of clusters the write takes inputs from (1 here), when it needs
        /// confirming: an emptied feed (409 `blast_radius` says so).
        confirm: Query<Option<u64>>,
        body: JsonBody<ClusterUpdate>,
    ) -> Result<Updated<Cluster>, WriteError> {
        let mut request = write_request(
            auth,
            "PUT",
            (dry_run.0, changes_offset.0, confirm_closed.0),
            if_match_header.0.as_deref(),
        )?;
        request.confirm = confirm.0;
        let written = store.update::<Cluster>(id.0, body.0, request).await?;
        Ok(Updated::new(written, dry_run.0))
    }

    /// Delete a cluster
    #[oai(path = "/:id", method = "delete")]
    async fn delete(
        &self,
        auth: WriteAccess,
        store: Data<&Store>,
        id: Path<String>,
        /// Check and preview the delete without deleting anything.
        #[oai(default)]
        dry_run: Query<bool>,
        /// Dry run: list the changed clusters from this offset on (100 per answer).
        changes_offset: Query<Option<u32>>,
        /// The number of clusters closed by a maintenance window whose feeds the write
        /// changes, when there are any (409 `window_closed` names them).
        confirm_closed: Query<Option<u64>>,
        /// The ETag last read; a stale one is refused with 412.
        #[oai(name = "If-Match")]
        if_match_header: Header<Option<String>>,
    ) -> Result<Deleted<Cluster>, WriteError> {
        let request = write_request(
            auth,
            "DELETE",
            (dry_run.0, changes_offset.0, confirm_closed.0),
            if_match_header.0.as_deref(),
        )?;
        let written = store.delete::<Cluster>(id.0, request).await?;
        Ok(Deleted::new(written, dry_run.0))
    }
}
