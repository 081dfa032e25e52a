//! The ExternalService feeds Flux Operator polls.
//!
//! An unknown cluster is a 404, never `{"inputs": []}`: an empty list makes Flux prune
//! everything it rendered from the provider, while any non-2xx keeps its last good inputs.

use poem::Request;
use poem::http::header;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::encoded::Encoded;
use super::error::{ErrorBody, ReadError};
use crate::auth::ReadAccess;
use crate::domain::feed::{
    ClusterListInput, FluxInputs, NamespaceInput, PlatformComponentInput, RolebindingInput,
};
use crate::domain::model::Environment;
use crate::error::Result;
use crate::store::feeds::{FLUX_MAX_BODY_BYTES, Feed};
use crate::store::{Page, Store};

pub struct FluxApi;

#[derive(ApiResponse)]
pub enum PlatformComponentsFeed {
    /// The cluster's platform components, catalog defaults merged with its overrides.
    #[oai(status = 200)]
    Ok(Encoded<FluxInputs<PlatformComponentInput>>),
}

#[derive(ApiResponse)]
pub enum NamespacesFeed {
    /// The cluster's namespaces.
    #[oai(status = 200)]
    Ok(Encoded<FluxInputs<NamespaceInput>>),
}

#[derive(ApiResponse)]
pub enum RolebindingsFeed {
    /// The cluster's rolebindings.
    #[oai(status = 200)]
    Ok(Encoded<FluxInputs<RolebindingInput>>),
}

#[derive(ApiResponse)]
pub enum ClusterListFeed {
    /// Every cluster (or the selected shard), ordered by id.
    #[oai(status = 200)]
    Ok(Encoded<FluxInputs<ClusterListInput>>),
    /// The answer would pass Flux's 900 KiB limit: select a smaller shard with
    /// `environment`, `limit` and `offset` (error `response_too_large`).
    #[oai(status = 422)]
    TooLarge(Json<ErrorBody>),
}

/// One feed of the cluster with this DNS name (from the feed cache), or the 404 Flux must see.
/// A successful poll is noted for `/status/clusters`.
pub(super) async fn feed(
    store: &Store,
    req: &Request,
    cluster_dns: &str,
    feed: Feed,
) -> Result<Vec<u8>> {
    let body = store.feed(cluster_dns, feed).await?;
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    store
        .polls()
        .record(cluster_dns, feed, user_agent, store.clock().now_u64());
    Ok(body)
}

#[OpenApi(tag = "ApiTags::Flux")]
impl FluxApi {
    /// Platform components of one cluster
    #[oai(
        path = "/api/v2/flux/clusters/:cluster_dns/platform-components",
        method = "get"
    )]
    async fn platform_components(
        &self,
        _auth: ReadAccess,
        req: &Request,
        store: Data<&Store>,
        /// The cluster's DNS name.
        cluster_dns: Path<String>,
    ) -> Result<PlatformComponentsFeed, ReadError> {
        let body = feed(&store, req, &cluster_dns.0, Feed::PlatformComponents).await?;
        Ok(PlatformComponentsFeed::Ok(Encoded::new(body)))
    }

    /// Namespaces of one cluster
    #[oai(path = "/api/v2/flux/clusters/:cluster_dns/namespaces", method = "get")]
    async fn namespaces(
        &self,
        _auth: ReadAccess,
        req: &Request,
        store: Data<&Store>,
        /// The cluster's DNS name.
        cluster_dns: Path<String>,
    ) -> Result<NamespacesFeed, ReadError> {
        let body = feed(&store, req, &cluster_dns.0, Feed::Namespaces).await?;
        Ok(NamespacesFeed::Ok(Encoded::new(body)))
    }

    /// Rolebindings of one cluster
    #[oai(
        path = "/api/v2/flux/clusters/:cluster_dns/rolebindings",
        method = "get"
    )]
    async fn rolebindings(
        &self,
        _auth: ReadAccess,
        req: &Request,
        store: Data<&Store>,
        /// The cluster's DNS name.
        cluster_dns: Path<String>,
    ) -> Result<RolebindingsFeed, ReadError> {
        let body = feed(&store, req, &cluster_dns.0, Feed::Rolebindings).await?;
        Ok(RolebindingsFeed::Ok(Encoded::new(body)))
    }

    /// All clusters, for management-cluster provisioners
    ///
    /// `environment`, `limit` and `offset` select a shard: Flux sends the provider URL
    /// verbatim, so a large fleet is polled with one provider per shard.
    #[oai(path = "/api/v2/flux/clusters", method = "get")]
    async fn clusters(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
        /// Only clusters of this environment tier.
        environment: Query<Option<Environment>>,
        /// At most this many clusters.
        #[oai(validator(minimum(value = "0"), maximum(value = "4294967295")))]
        limit: Query<Option<u32>>,
        /// Skip this many clusters (after filtering, ordered by id).
        #[oai(validator(minimum(value = "0"), maximum(value = "4294967295")))]
        offset: Query<Option<u32>>,
    ) -> Result<ClusterListFeed, ReadError> {
        let page = Page {
            limit: limit.0,
            offset: offset.0,
        };
        let (count, body) = store.fleet_feed(environment.0, page).await?;
        if body.len() > FLUX_MAX_BODY_BYTES {
            let message = format!(
                "the cluster list would be {} bytes ({count} clusters), over Flux's limit of {FLUX_MAX_BODY_BYTES}; \
                 poll it in shards with ?environment=, ?limit= and ?offset= (about {} clusters fit in one)",
                body.len(),
                FLUX_MAX_BODY_BYTES * count / body.len()
            );
            return Ok(ClusterListFeed::TooLarge(Json(ErrorBody {
                error: "response_too_large".into(),
                message,
            })));
        }
        Ok(ClusterListFeed::Ok(Encoded::new(body)))
    }
}
