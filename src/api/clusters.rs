//! CRUD for clusters (crud mode only).

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::auth::{ReadAccess, WriteAccess};
use super::body::JsonBody;
use super::error::{ReadError, WriteError};
use super::preview::{WritePreview, warning_header};
use crate::domain::model::{Cluster, ClusterUpdate, Environment};
use crate::store::clusters::{self, ClusterFilter};
use crate::store::{Page, Store};

pub struct ClustersApi;

#[derive(ApiResponse)]
pub enum ListClusters {
    /// Clusters ordered by id.
    #[oai(status = 200)]
    Ok(Json<Vec<Cluster>>),
}

#[derive(ApiResponse)]
pub enum CreateCluster {
    /// Created; the body is the stored cluster.
    #[oai(status = 201)]
    Created(
        Json<Cluster>,
        #[oai(header = "Location")] String,
        /// Accepted with warnings (a dependency not assigned, more than 100 inputs).
        #[oai(header = "Warning")]
        Option<String>,
    ),
    /// Dry run (`?dry_run=true`): what the write would do; nothing was stored.
    #[oai(status = 202)]
    Preview(Json<WritePreview<Cluster>>),
}

#[derive(ApiResponse)]
pub enum GetCluster {
    /// The cluster.
    #[oai(status = 200)]
    Ok(Json<Cluster>),
}

#[derive(ApiResponse)]
pub enum UpdateCluster {
    /// Updated; the body is the stored cluster.
    #[oai(status = 200)]
    Ok(
        Json<Cluster>,
        /// Accepted with warnings (a dependency not assigned, more than 100 inputs).
        #[oai(header = "Warning")]
        Option<String>,
    ),
    /// Dry run (`?dry_run=true`): what the write would do; nothing was stored.
    #[oai(status = 202)]
    Preview(Json<WritePreview<Cluster>>),
}

#[derive(ApiResponse)]
pub enum DeleteCluster {
    /// Deleted; the body is the cluster as it was.
    #[oai(status = 200)]
    Ok(
        Json<Cluster>,
        /// Accepted with warnings.
        #[oai(header = "Warning")]
        Option<String>,
    ),
    /// Dry run (`?dry_run=true`): what the write would do; nothing was deleted.
    #[oai(status = 202)]
    Preview(Json<WritePreview<Cluster>>),
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
        /// At most this many clusters.
        #[oai(validator(minimum(value = "0"), maximum(value = "4294967295")))]
        limit: Query<Option<u32>>,
        /// Skip this many clusters.
        #[oai(validator(minimum(value = "0"), maximum(value = "4294967295")))]
        offset: Query<Option<u32>>,
    ) -> Result<ListClusters, ReadError> {
        let filter = ClusterFilter {
            cluster_dns: cluster_dns.0,
            environment: environment.0,
            page: Page {
                limit: limit.0,
                offset: offset.0,
            },
        };
        let found = store
            .read(move |conn| clusters::list(conn, &filter))
            .await?;
        Ok(ListClusters::Ok(Json(found)))
    }

    /// Create a cluster
    #[oai(path = "/", method = "post")]
    async fn create(
        &self,
        _auth: WriteAccess,
        store: Data<&Store>,
        /// Check and preview the write without storing anything.
        #[oai(default)]
        dry_run: Query<bool>,
        body: JsonBody<Cluster>,
    ) -> Result<CreateCluster, WriteError> {
        let written = store.create(body.0, dry_run.0).await?;
        if dry_run.0 {
            return Ok(CreateCluster::Preview(Json(WritePreview::new(
                201, written,
            ))));
        }
        let location = format!("/clusters/{}", written.value.id);
        Ok(CreateCluster::Created(
            Json(written.value),
            location,
            warning_header(&written.warnings),
        ))
    }

    /// Get a cluster
    #[oai(path = "/:id", method = "get")]
    async fn get(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
        id: Path<String>,
    ) -> Result<GetCluster, ReadError> {
        Ok(GetCluster::Ok(Json(store.fetch(id.0).await?)))
    }

    /// Update a cluster
    ///
    /// Top-level fields present in the body replace the stored ones; omitted fields keep
    /// their values.
    #[oai(path = "/:id", method = "put")]
    async fn update(
        &self,
        _auth: WriteAccess,
        store: Data<&Store>,
        id: Path<String>,
        /// Check and preview the write without storing anything.
        #[oai(default)]
        dry_run: Query<bool>,
        body: JsonBody<ClusterUpdate>,
    ) -> Result<UpdateCluster, WriteError> {
        let written = store.update::<Cluster>(id.0, body.0, dry_run.0).await?;
        if dry_run.0 {
            return Ok(UpdateCluster::Preview(Json(WritePreview::new(
                200, written,
            ))));
        }
        Ok(UpdateCluster::Ok(
            Json(written.value),
            warning_header(&written.warnings),
        ))
    }

    /// Delete a cluster
    #[oai(path = "/:id", method = "delete")]
    async fn delete(
        &self,
        _auth: WriteAccess,
        store: Data<&Store>,
        id: Path<String>,
        /// Check and preview the delete without deleting anything.
        #[oai(default)]
        dry_run: Query<bool>,
    ) -> Result<DeleteCluster, WriteError> {
        let written = store.delete::<Cluster>(id.0, dry_run.0).await?;
        if dry_run.0 {
            return Ok(DeleteCluster::Preview(Json(WritePreview::new(
                200, written,
            ))));
        }
        Ok(DeleteCluster::Ok(
            Json(written.value),
            warning_header(&written.warnings),
        ))
    }
}
