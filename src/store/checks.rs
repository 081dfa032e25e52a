//! Checks run inside a write transaction, after the change and before commit, on every
//! cluster the write touches: Flux's body limit (refused), more inputs than Flux's default
//! `filter.limit` (warned), and the `depends_on` closure (warned, or refused when strict).
//! The same snapshots give a dry run its preview.

use std::collections::{BTreeMap, HashSet};

use rusqlite::Connection;
use serde_json::Value;

use super::clusters;
use super::components;
use super::feeds::{self, EncodedFeed, FLUX_DEFAULT_INPUT_LIMIT, FLUX_MAX_BODY_BYTES, Feed};
use crate::domain::feed::FeedChange;
use crate::domain::model::Cluster;
use crate::domain::validate::quoted_list;
use crate::error::{AppError, Result};

/// The feeds of one cluster at one moment.
pub struct ClusterFeeds {
    pub cluster_dns: String,
    pub feeds: Vec<(Feed, EncodedFeed)>,
}

/// Feeds of the clusters with these ids (those that exist).
pub fn snapshot(
    conn: &Connection,
    cluster_ids: &[String],
) -> Result<BTreeMap<String, ClusterFeeds>> {
    let mut snapshot = BTreeMap::new();
    for id in cluster_ids {
        if let Some(cluster) = clusters::get(conn, id)? {
            let feeds = Feed::ALL
                .into_iter()
                .map(|feed| Ok((feed, feeds::build(conn, &cluster, feed)?)))
                .collect::<Result<_>>()?;
            snapshot.insert(
                id.clone(),
                ClusterFeeds {
                    cluster_dns: cluster.cluster_dns.clone(),
                    feeds,
                },
            );
        }
    }
    Ok(snapshot)
}

/// Refuses oversized feeds; returns warnings (and refuses them when `strict_dependencies`).
pub fn check(
    conn: &Connection,
    after: &BTreeMap<String, ClusterFeeds>,
    strict_dependencies: bool,
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    for (id, cluster_feeds) in after {
        for (feed, encoded) in &cluster_feeds.feeds {
            let path = feed.path(&cluster_feeds.cluster_dns);
            if encoded.body.len() > FLUX_MAX_BODY_BYTES {
                return Err(AppError::Validation(format!(
                    "cluster '{id}': GET {path} would be {} bytes, over Flux's limit of {FLUX_MAX_BODY_BYTES}",
                    encoded.body.len()
                )));
            }
            if encoded.inputs > FLUX_DEFAULT_INPUT_LIMIT {
                warnings.push(format!(
                    "cluster '{id}': GET {path} has {} inputs; Flux keeps only the first {FLUX_DEFAULT_INPUT_LIMIT} \
                     unless the provider sets spec.filter.limit",
                    encoded.inputs
                ));
            }
        }
        let Some(cluster) = clusters::get(conn, id)? else {
            continue;
        };
        if let Some(problem) = missing_dependencies(conn, &cluster)? {
            if strict_dependencies {
                return Err(AppError::Validation(problem));
            }
            warnings.push(problem);
        }
    }
    for warning in &warnings {
        tracing::warn!(%warning, "write accepted with a warning");
    }
    Ok(warnings)
}

/// Names the components an enabled component of `cluster` needs (transitively) that are not
/// assigned and enabled on it: their HelmReleases would wait forever.
pub fn missing_dependencies(conn: &Connection, cluster: &Cluster) -> Result<Option<String>> {
    let enabled: HashSet<&str> = cluster
        .platform_components
        .iter()
        .filter(|r| r.enabled)
        .map(|r| r.id.as_str())
        .collect();
    let mut missing: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut queue: Vec<String> = enabled.iter().map(|id| (*id).to_owned()).collect();
    while let Some(id) = queue.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        let Some(component) = components::get(conn, &id)? else {
            continue;
        };
        for dependency in component.depends_on {
            if !enabled.contains(dependency.as_str()) && !missing.contains(&dependency) {
                missing.push(dependency.clone());
            }
            queue.push(dependency);
        }
    }
    if missing.is_empty() {
        return Ok(None);
    }
    missing.sort();
    Ok(Some(format!(
        "cluster '{}': enabled components depend on {} which {} not assigned and enabled on it",
        cluster.id,
        quoted_list(&missing),
        if missing.len() == 1 { "is" } else { "are" }
    )))
}

/// Per cluster and feed, the input ids added, removed and changed between two snapshots.
pub fn diff(
    before: &BTreeMap<String, ClusterFeeds>,
    after: &BTreeMap<String, ClusterFeeds>,
) -> Vec<FeedChange> {
    let ids: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let mut changes = Vec::new();
    for id in ids {
        let (old, new) = (before.get(id), after.get(id));
        let cluster_dns = new
            .or(old)
            .map(|f| f.cluster_dns.clone())
            .unwrap_or_default();
        for feed in Feed::ALL {
            let inputs = |side: Option<&ClusterFeeds>| -> Vec<(String, Value)> {
                side.and_then(|f| f.feeds.iter().find(|(k, _)| *k == feed))
                    .map(|(_, encoded)| parse_inputs(&encoded.body))
                    .unwrap_or_default()
            };
            let (old_inputs, new_inputs) = (inputs(old), inputs(new));
            let position =
                |list: &[(String, Value)], id: &str| list.iter().position(|(i, _)| i == id);
            let added: Vec<String> = new_inputs
                .iter()
                .filter(|(i, _)| position(&old_inputs, i).is_none())
                .map(|(i, _)| i.clone())
                .collect();
            let removed: Vec<String> = old_inputs
                .iter()
                .filter(|(i, _)| position(&new_inputs, i).is_none())
                .map(|(i, _)| i.clone())
                .collect();
            let changed: Vec<String> = new_inputs
                .iter()
                .enumerate()
                .filter(|(index, (i, value))| {
                    position(&old_inputs, i)
                        .is_some_and(|old| old_inputs[old].1 != *value || old != *index)
                })
                .map(|(_, (i, _))| i.clone())
                .collect();
            if !(added.is_empty() && removed.is_empty() && changed.is_empty()) {
                changes.push(FeedChange {
                    cluster_dns: cluster_dns.clone(),
                    feed: feed.segment().to_owned(),
                    added,
                    removed,
                    changed,
                });
            }
        }
    }
    changes
}

fn parse_inputs(body: &[u8]) -> Vec<(String, Value)> {
    let value: Value = serde_json::from_slice(body).unwrap_or_default();
    value["inputs"]
        .as_array()
        .map(|inputs| {
            inputs
                .iter()
                .map(|input| {
                    (
                        input["id"].as_str().unwrap_or_default().to_owned(),
                        input.clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
