//! `/status/clusters`: which clusters poll, how recently, with which Flux Operator version,
//! and which stopped (no poll within `poll_stale_after`).

use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use super::auth::ReadAccess;
use super::error::ReadError;
use super::observe::unix_now;
use crate::store::Store;
use crate::store::clusters;
use crate::store::polls::{Poll, operator_version};

pub struct StatusApi;

/// The last poll of one feed.
#[derive(Object, Clone, Debug)]
pub struct FeedPoll {
    /// When, in Unix seconds.
    pub at: u64,
    /// Seconds before this answer.
    pub seconds_ago: u64,
    /// The client's `User-Agent` (Flux sends `flux-operator/<version>`).
    pub user_agent: String,
}

/// The last poll of each feed; `null` when the feed was never polled.
#[derive(Object, Clone, Debug)]
pub struct FeedPolls {
    #[oai(rename = "platform-components", nullable)]
    pub platform_components: Option<FeedPoll>,
    #[oai(nullable)]
    pub namespaces: Option<FeedPoll>,
    #[oai(nullable)]
    pub rolebindings: Option<FeedPoll>,
}

#[derive(Object, Clone, Debug)]
pub struct ClusterStatus {
    pub id: String,
    pub cluster_dns: String,
    pub environment: String,
    pub polls: FeedPolls,
    /// From the most recent poll's `User-Agent`, when it is Flux Operator's.
    #[oai(nullable)]
    pub operator_version: Option<String>,
    /// No poll within the configured window (`poll_stale_after`), or never polled.
    pub stale: bool,
}

#[derive(ApiResponse)]
pub enum StatusResponse {
    /// Every cluster (or the stale ones), ordered by id.
    #[oai(status = 200)]
    Ok(Json<Vec<ClusterStatus>>),
}

/// Every cluster's poll status, ordered by id.
pub async fn cluster_statuses(store: &Store) -> crate::error::Result<Vec<ClusterStatus>> {
    let headers = store
        .read(|conn| clusters::list_headers(conn, &Default::default()))
        .await?;
    let tracker = store.polls();
    let now = unix_now() as u64;
    let view = |poll: &Option<Poll>| {
        poll.as_ref().map(|p| FeedPoll {
            at: p.at,
            seconds_ago: now.saturating_sub(p.at),
            user_agent: p.user_agent.to_string(),
        })
    };
    Ok(headers
        .into_iter()
        .map(|cluster| {
            let polls = tracker.get(&cluster.cluster_dns);
            let latest = polls.iter().flatten().max_by_key(|p| p.at);
            ClusterStatus {
                operator_version: latest
                    .and_then(|p| operator_version(&p.user_agent))
                    .map(str::to_owned),
                stale: tracker.is_stale(&polls, now),
                polls: FeedPolls {
                    platform_components: view(&polls[0]),
                    namespaces: view(&polls[1]),
                    rolebindings: view(&polls[2]),
                },
                environment: cluster.environment.as_str().to_owned(),
                cluster_dns: cluster.cluster_dns,
                id: cluster.id,
            }
        })
        .collect())
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
}
