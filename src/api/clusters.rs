//! CRUD for clusters (crud mode only).

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::auth::{ReadAccess, WriteAccess};
use super::body::JsonBody;
use super::error::{ReadError, WriteError};
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
    Created(Json<Cluster>, #[oai(header = "Location")] String),
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
    Ok(Json<Cluster>),
}

#[derive(ApiResponse)]
pub enum DeleteCluster {
    /// Deleted; the body is the cluster as it was.
    #[oai(status = 200)]
    Ok(Json<Cluster>),
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
        limit: Query<Option<u32>>,
        /// Skip this many clusters.
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
        body: JsonBody<Cluster>,
    ) -> Result<CreateCluster, WriteError> {
        let created = store.create(body.0).await?;
        let location = format!("/clusters/{}", created.id);
        Ok(CreateCluster::Created(Json(created), location))
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
        body: JsonBody<ClusterUpdate>,
    ) -> Result<UpdateCluster, WriteError> {
        Ok(UpdateCluster::Ok(Json(
            store.update::<Cluster>(id.0, body.0).await?,
        )))
    }

    /// Delete a cluster
    #[oai(path = "/:id", method = "delete")]
    async fn delete(
        &self,
        _auth: WriteAccess,
        store: Data<&Store>,
        id: Path<String>,
    ) -> Result<DeleteCluster, WriteError> {
        Ok(DeleteCluster::Ok(Json(store.delete(id.0).await?)))
    }
}
