//! `/status/clusters`: which clusters poll, how recently, with which Flux Operator version,
//! and which stopped (no poll within `poll_stale_after`).

use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use std::collections::BTreeMap;

use poem_openapi::param::Path;

use super::ApiTags;
use super::error::{ErrorBody, ReadError};
use crate::auth::{ReadAccess, StatusAccess};
use crate::domain::convergence::*;
use crate::domain::model::Environment;
use crate::domain::report::State;
use crate::domain::report::format_timestamp;
use crate::error::AppError;
use crate::store::Store;
use crate::store::clusters;
use crate::store::convergence::Scope;
use crate::store::convergence::{cluster_convergence, cluster_statuses, with_convergence};
use crate::store::reports;
use crate::store::summary::{fleet_summary, whole_fleet_summary};

pub struct StatusApi;

#[derive(ApiResponse)]
pub enum StatusResponse {
    /// Every cluster (or the stale ones), ordered by id.
    #[oai(status = 200)]
    Ok(Json<Vec<ClusterStatus>>),
}

#[derive(ApiResponse)]
pub enum ClusterConvergenceResponse {
    #[oai(status = 200)]
    Ok(Json<ClusterConvergence>),
}

#[derive(ApiResponse)]
pub enum ComponentStatusResponse {
    #[oai(status = 200)]
    Ok(Json<ComponentFleetStatus>),
}

#[derive(ApiResponse)]
pub enum FleetStatusResponse {
    #[oai(status = 200)]
    Ok(Json<FleetStatus>),
}

fn forbidden(message: String) -> ReadError {
    ReadError::Forbidden(Json(ErrorBody {
        error: "forbidden".into(),
        message,
    }))
}

#[OpenApi(tag = "ApiTags::Service")]
impl StatusApi {
    /// Poll liveness of every cluster
    ///
    /// When each cluster last fetched each feed, with which client, and whether it stopped
    /// polling. Kept in memory and saved every 30 s, so it survives restarts.
    #[oai(path = "/status/clusters", method = "get")]
    async fn clusters(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
        /// Only stale (`true`) or only live (`false`) clusters.
        stale: Query<Option<bool>>,
    ) -> Result<StatusResponse, ReadError> {
        let mut statuses = cluster_statuses(&store).await?;
        if let Some(wanted) = stale.0 {
            statuses.retain(|s| s.stale == wanted);
        }
        Ok(StatusResponse::Ok(Json(statuses)))
    }

    /// Desired against reported state of one cluster
    ///
    /// Per component: the desired version (the feed's `oci_tag`), the latest reported
    /// revision, the state, and the reason and message of the report that decided it; the
    /// last poll of each feed; the last events. A cluster-scoped token sees only its own.
    #[oai(path = "/status/clusters/:id", method = "get", tag = "ApiTags::Status")]
    async fn cluster(
        &self,
        auth: StatusAccess,
        store: Data<&Store>,
        /// The cluster's id.
        id: Path<String>,
    ) -> Result<ClusterConvergenceResponse, ReadError> {
        let lookup = id.0.clone();
        let cluster = store
            .read(move |conn| clusters::get(conn, &lookup))
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no cluster with id '{}'", id.0)))?;
        if let Some(own) = &auth.0
            && **own != *cluster.cluster_dns
        {
            return Err(forbidden(format!(
                "this token may see only the cluster with cluster_dns {own}"
            )));
        }
        Ok(ClusterConvergenceResponse::Ok(Json(
            cluster_convergence(&store, cluster).await?,
        )))
    }

    /// One component across the fleet
    ///
    /// Counts per state and per reported revision over the clusters that have the component
    /// (optionally of one environment), and those clusters, filtered by `state` and paged.
    #[oai(
        path = "/status/components/:id",
        method = "get",
        tag = "ApiTags::Status"
    )]
    async fn component(
        &self,
        auth: StatusAccess,
        store: Data<&Store>,
        /// The component's id.
        id: Path<String>,
        /// Only clusters in this state.
        state: Query<Option<State>>,
        /// Only clusters of this environment tier.
        environment: Query<Option<Environment>>,
        /// At most this many clusters in `items` (default 100).
        #[oai(validator(minimum(value = "0"), maximum(value = "10000")))]
        limit: Query<Option<u32>>,
        /// Skip this many of the matching clusters.
        #[oai(validator(minimum(value = "0"), maximum(value = "4294967295")))]
        offset: Query<Option<u32>>,
    ) -> Result<ComponentStatusResponse, ReadError> {
        let lookup = id.0.clone();
        if !store
            .read(move |conn| reports::component_exists(conn, &lookup))
            .await?
        {
            return Err(
                AppError::NotFound(format!("no platform component with id '{}'", id.0)).into(),
            );
        }
        let scope = Scope {
            component: Some(id.0.clone()),
            cluster_dns: auth.0.as_deref().map(str::to_owned),
            ..Scope::default()
        };
        let wanted = state.0;
        let environment = environment.0;
        let (skip, take) = (
            offset.0.unwrap_or(0) as usize,
            limit.0.unwrap_or(100) as usize,
        );
        // Counted while streaming; only the requested page is kept.
        let (clusters, counts, revisions, items) =
            with_convergence(&store, scope, move |conn, scope, polls, now| {
                let mut clusters = 0u64;
                let mut counts = StateCounts::default();
                let mut revisions: BTreeMap<String, u64> = BTreeMap::new();
                let mut matching = 0usize;
                let mut items = Vec::new();
                crate::store::convergence::for_each_component(conn, scope, polls, now, |row| {
                    if environment.is_some_and(|e| e.as_str() != row.environment) {
                        return;
                    }
                    clusters += 1;
                    counts.add(row.state);
                    if let Some(revision) = row.reported_revision {
                        match revisions.get_mut(revision) {
                            Some(n) => *n += 1,
                            None => {
                                revisions.insert(revision.to_owned(), 1);
                            }
                        }
                    }
                    if wanted.is_none_or(|w| row.state == w) {
                        if matching >= skip && items.len() < take {
                            items.push(ClusterComponentState {
                                cluster: row.cluster_id.to_owned(),
                                cluster_dns: row.cluster_dns.to_owned(),
                                environment: row.environment.to_owned(),
                                convergence: row.into(),
                            });
                        }
                        matching += 1;
                    }
                })?;
                Ok((clusters, counts, revisions, items))
            })
            .await?;
        Ok(ComponentStatusResponse::Ok(Json(ComponentFleetStatus {
            component: id.0,
            clusters,
            counts,
            revisions,
            items,
        })))
    }

    /// The fleet at a glance
    ///
    /// Per component and environment, clusters per state; and the clusters that stopped
    /// polling. A cluster-scoped token sees its own cluster only.
    #[oai(path = "/status/fleet", method = "get", tag = "ApiTags::Status")]
    async fn fleet(
        &self,
        auth: StatusAccess,
        store: Data<&Store>,
    ) -> Result<FleetStatusResponse, ReadError> {
        let summary = match auth.0 {
            None => whole_fleet_summary(&store).await?.as_ref().clone(),
            Some(dns) => {
                let scope = Scope {
                    cluster_dns: Some(dns.to_string()),
                    ..Scope::default()
                };
                let polls = store.polls().clone();
                let now = store.clock().now_u64();
                store
                    .read(move |conn| fleet_summary(conn, &scope, &polls, now))
                    .await?
            }
        };
        Ok(FleetStatusResponse::Ok(Json(summary)))
    }

    /// Where this server stands in an edge topology
    ///
    /// `role`: `standalone`, `hub` (replicated by Litestream; writes a heartbeat every 30 s)
    /// or `replica` (serves a read-only copy). A replica says which copy it serves and how
    /// old the hub's heartbeat in it is; a hub, when it last wrote one.
    #[oai(path = "/status/replica", method = "get")]
    async fn replica(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
    ) -> Result<ReplicaStatusResponse, ReadError> {
        let now = store.clock().now();
        let time = |at: Option<i64>| at.map(format_timestamp);
        let status = match store.replica() {
            Some(copy) => {
                let copy_status = copy.status();
                ReplicaStatus {
                    role: store.role().as_str().to_owned(),
                    hub_url: copy.hub_url.clone(),
                    loaded: copy_status.loaded_at.is_some(),
                    loaded_at: time(copy_status.loaded_at),
                    revision: copy_status.revision,
                    txid: copy_status.txid,
                    clusters: Some(copy_status.clusters as u64),
                    heartbeat_at: time(copy_status.heartbeat_at),
                    heartbeat_age_seconds: copy_status.heartbeat_at.map(|at| (now - at).max(0)),
                    last_error: copy_status.last_error,
                }
            }
            None => {
                let (revision, heartbeat_at) = store
                    .read(|conn| {
                        Ok((
                            crate::store::revision::revision(conn)?,
                            crate::store::replica::heartbeat(conn)?,
                        ))
                    })
                    .await?;
                ReplicaStatus {
                    role: store.role().as_str().to_owned(),
                    hub_url: None,
                    loaded: true,
                    loaded_at: None,
                    revision: Some(revision),
                    txid: None,
                    clusters: None,
                    heartbeat_at: time(heartbeat_at),
                    heartbeat_age_seconds: heartbeat_at.map(|at| (now - at).max(0)),
                    last_error: None,
                }
            }
        };
        Ok(ReplicaStatusResponse::Ok(Json(status)))
    }
}

/// `GET /status/replica`.
#[derive(Object, Clone, Debug)]
pub struct ReplicaStatus {
    /// `standalone`, `hub` or `replica`.
    pub role: String,
    /// A replica: where writes go.
    #[oai(skip_serializing_if_is_none)]
    pub hub_url: Option<String>,
    /// A replica: a consistent copy is loaded and served (`/ready` is 200).
    pub loaded: bool,
    /// A replica: when the copy served was loaded.
    #[oai(skip_serializing_if_is_none)]
    pub loaded_at: Option<String>,
    /// The inventory revision served.
    #[oai(skip_serializing_if_is_none)]
    pub revision: Option<i64>,
    /// A replica: Litestream's position (`<db>-txid`) when the copy was loaded.
    #[oai(skip_serializing_if_is_none)]
    pub txid: Option<String>,
    /// A replica: clusters in the copy.
    #[oai(skip_serializing_if_is_none)]
    pub clusters: Option<u64>,
    /// When the hub last wrote its heartbeat (on a replica: the one in its copy).
    #[oai(skip_serializing_if_is_none)]
    pub heartbeat_at: Option<String>,
    /// Seconds since then: how far behind the hub a replica's copy may be.
    #[oai(skip_serializing_if_is_none)]
    pub heartbeat_age_seconds: Option<i64>,
    /// A replica: why the last load failed (the last good copy is still served).
    #[oai(skip_serializing_if_is_none)]
    pub last_error: Option<String>,
}

#[derive(ApiResponse)]
pub enum ReplicaStatusResponse {
    /// This server's role and, for a replica, its copy.
    #[oai(status = 200)]
    Ok(Json<ReplicaStatus>),
}
