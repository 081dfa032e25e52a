//! `/metrics` in Prometheus text format: requests, latency, the database pool, the feed cache,
//! the inventory, the last write.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use poem::web::Data;
use poem::{IntoResponse, Response, handler};

use super::observe::RequestMetrics;
use crate::store::{SqlResultExt, Store};

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// The metrics text. `per_cluster`: also a series per cluster (its last poll per feed and
/// whether it is stale): asked for, never by default, since at 100,000 clusters they are
/// most of the answer.
pub async fn render(store: &Store, requests: &RequestMetrics, per_cluster: bool) -> String {
    let mut out = String::new();
    requests.render(&mut out);
    gauge(
        &mut out,
        "flux_inputs_db_connections_in_use",
        "Pooled SQLite connections in use.",
        store.connections_in_use(),
    );
    gauge(
        &mut out,
        "flux_inputs_last_write_timestamp_seconds",
        "When the last API write committed (0: none since start).",
        store.last_write(),
    );
    let stats = store.feed_cache().stats();
    let _ = writeln!(
        out,
        "# HELP flux_inputs_feed_cache_total Flux feed answers by cache outcome.\n# TYPE flux_inputs_feed_cache_total counter\n\
         flux_inputs_feed_cache_total{{outcome=\"hit\"}} {}\nflux_inputs_feed_cache_total{{outcome=\"miss\"}} {}\n\
         flux_inputs_feed_cache_total{{outcome=\"stale\"}} {}",
        stats.hits(),
        stats.misses.load(Ordering::Relaxed),
        stats.stale.load(Ordering::Relaxed)
    );
    let reloads = &crate::net::tls::RELOADS;
    let _ = writeln!(
        out,
        "# HELP flux_inputs_tls_reloads_total SIGHUP reloads of the TLS certificates by outcome.\n# TYPE flux_inputs_tls_reloads_total counter\n\
         flux_inputs_tls_reloads_total{{outcome=\"loaded\"}} {}\nflux_inputs_tls_reloads_total{{outcome=\"refused\"}} {}",
        reloads[0].load(Ordering::Relaxed),
        reloads[1].load(Ordering::Relaxed)
    );
    if let Some(copy) = store.replica() {
        render_replica(&mut out, &copy.status(), store.clock().now());
        return out;
    }
    let counts = store
        .read(|conn| {
            [
                "clusters",
                "platform_components",
                "namespaces",
                "rolebindings",
                "overlays",
                "windows",
            ]
            .into_iter()
            .map(|table| {
                let n: i64 = conn
                    .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                    .db()?;
                Ok((table, n))
            })
            .collect::<crate::error::Result<Vec<_>>>()
        })
        .await;
    match counts {
        Ok(counts) => {
            out.push_str("# HELP flux_inputs_inventory_items Records in the inventory, by kind.\n# TYPE flux_inputs_inventory_items gauge\n");
            for (kind, n) in counts {
                let _ = writeln!(out, "flux_inputs_inventory_items{{kind=\"{kind}\"}} {n}");
            }
            gauge(
                &mut out,
                "flux_inputs_database_up",
                "1 when the database answers.",
                1,
            );
        }
        Err(_) => gauge(
            &mut out,
            "flux_inputs_database_up",
            "1 when the database answers.",
            0,
        ),
    }
    let summary = crate::store::summary::whole_fleet_summary(store).await;
    render_reports(&mut out, store, summary.as_deref().ok());
    render_rollouts(&mut out, store).await;
    let Ok(summary) = summary else {
        return out;
    };
    gauge(
        &mut out,
        "flux_inputs_clusters_stale",
        "Clusters that have not polled within poll_stale_after (per cluster: ?per_cluster=true).",
        summary.stale_count,
    );
    if per_cluster {
        let Ok(statuses) = crate::store::convergence::cluster_statuses(store).await else {
            return out;
        };
        out.push_str("# HELP flux_inputs_cluster_last_poll_timestamp_seconds When a cluster last polled a feed.\n");
        out.push_str("# TYPE flux_inputs_cluster_last_poll_timestamp_seconds gauge\n");
        for status in &statuses {
            let polls = [
                ("platform-components", &status.polls.platform_components),
                ("namespaces", &status.polls.namespaces),
                ("rolebindings", &status.polls.rolebindings),
            ];
            for (feed, poll) in polls {
                if let Some(poll) = poll {
                    let _ = writeln!(
                        out,
                        "flux_inputs_cluster_last_poll_timestamp_seconds{{cluster=\"{}\",feed=\"{feed}\"}} {}",
                        status.id, poll.at
                    );
                }
            }
        }
        out.push_str("# HELP flux_inputs_cluster_stale 1 when a cluster has not polled within poll_stale_after.\n");
        out.push_str("# TYPE flux_inputs_cluster_stale gauge\n");
        for status in &statuses {
            let _ = writeln!(
                out,
                "flux_inputs_cluster_stale{{cluster=\"{}\"}} {}",
                status.id,
                u8::from(status.stale)
            );
        }
    }
    out
}

/// Events received, and clusters per component and convergence state: bounded label sets
/// (kinds and reasons outside Flux's own lists count as `other`; no per-cluster series).
fn render_reports(
    out: &mut String,
    store: &Store,
    summary: Option<&crate::domain::convergence::FleetStatus>,
) {
    out.push_str("# HELP flux_inputs_events_received_total Flux events accepted, by object kind, reason and severity.\n");
    out.push_str("# TYPE flux_inputs_events_received_total counter\n");
    for ((kind, reason, severity), n) in store.reports().counts() {
        let _ = writeln!(
            out,
            "flux_inputs_events_received_total{{kind=\"{kind}\",reason=\"{reason}\",severity=\"{severity}\"}} {n}"
        );
    }
    let Some(summary) = summary else { return };
    out.push_str(
        "# HELP flux_inputs_component_clusters Clusters per component and convergence state.\n",
    );
    out.push_str("# TYPE flux_inputs_component_clusters gauge\n");
    for component in &summary.components {
        for state in crate::domain::report::State::ALL {
            let _ = writeln!(
                out,
                "flux_inputs_component_clusters{{component=\"{}\",state=\"{state}\"}} {}",
                component.component,
                component.counts.get(state)
            );
        }
    }
}

/// A replica's copy: loaded or not, its age by the hub's heartbeat, loads and failures.
fn render_replica(out: &mut String, status: &crate::store::replica::CopyStatus, now: i64) {
    gauge(
        out,
        "flux_inputs_replica_copy_loaded",
        "1 while a consistent copy of the inventory is served.",
        u8::from(status.loaded_at.is_some()),
    );
    if let Some(at) = status.heartbeat_at {
        gauge(
            out,
            "flux_inputs_replica_heartbeat_age_seconds",
            "Seconds since the hub wrote the heartbeat found in the copy served.",
            (now - at).max(0),
        );
    }
    if let Some(revision) = status.revision {
        gauge(
            out,
            "flux_inputs_replica_copy_revision",
            "The inventory revision of the copy served.",
            revision,
        );
    }
    let _ = writeln!(
        out,
        "# HELP flux_inputs_replica_loads_total Loads of the copy, by outcome.\n# TYPE flux_inputs_replica_loads_total counter\n\
         flux_inputs_replica_loads_total{{outcome=\"ok\"}} {}\nflux_inputs_replica_loads_total{{outcome=\"failed\"}} {}",
        status.loads, status.failures
    );
}

/// Rollouts per state, and per active rollout its current step and clusters per state.
async fn render_rollouts(out: &mut String, store: &Store) {
    use crate::domain::rollout::ClusterState;
    let Ok(gauges) = store.read(crate::store::rollouts::gauges).await else {
        return;
    };
    out.push_str(
        "# HELP flux_inputs_rollouts Rollouts by state.\n# TYPE flux_inputs_rollouts gauge\n",
    );
    for (state, n) in &gauges.by_state {
        let _ = writeln!(
            out,
            "flux_inputs_rollouts{{state=\"{}\"}} {n}",
            state.as_str()
        );
    }
    out.push_str("# HELP flux_inputs_rollout_current_step The step an active rollout is at.\n# TYPE flux_inputs_rollout_current_step gauge\n");
    for active in &gauges.active {
        if let Some(step) = active.current_step {
            let _ = writeln!(
                out,
                "flux_inputs_rollout_current_step{{rollout=\"{}\"}} {step}",
                active.id
            );
        }
    }
    out.push_str("# HELP flux_inputs_rollout_clusters Clusters of an active rollout by their state in it.\n# TYPE flux_inputs_rollout_clusters gauge\n");
    for active in &gauges.active {
        for state in ClusterState::ALL {
            let _ = writeln!(
                out,
                "flux_inputs_rollout_clusters{{rollout=\"{}\",state=\"{}\"}} {}",
                active.id,
                state.as_str(),
                active.clusters.get(state)
            );
        }
    }
}

/// `?per_cluster=true` of the dedicated listener.
#[derive(serde::Deserialize, Default)]
pub struct MetricsQuery {
    #[serde(default)]
    per_cluster: bool,
}

/// The metrics endpoint of the dedicated metrics listener (no token: bind it to loopback).
#[handler]
pub async fn endpoint(
    store: Data<&Store>,
    requests: Data<&Arc<RequestMetrics>>,
    poem::web::Query(query): poem::web::Query<MetricsQuery>,
) -> Response {
    render(&store, &requests, query.per_cluster)
        .await
        .with_content_type(CONTENT_TYPE)
        .into_response()
}
