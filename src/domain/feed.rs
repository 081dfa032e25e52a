//! The inputs served to Flux Operator's ResourceSetInputProvider (`type: ExternalService`).
//!
//! Field order follows the reference examples. Every input of a feed carries the same keys:
//! ResourceSet templates render with `missingkey=error`, so an empty value is `{}` or `[]`,
//! never an omitted key.

use std::collections::BTreeMap;

use poem_openapi::Object;
use poem_openapi::types::{ParseFromJSON, ToJSON};
use serde_json::Value;

use super::model::Subject;

/// The ExternalService envelope: `{"inputs": [...]}`.
#[derive(Object, Clone, Debug, PartialEq)]
pub struct FluxInputs<T: ParseFromJSON + ToJSON> {
    pub inputs: Vec<T>,
}

/// The cluster an input is rendered for.
#[derive(Object, Clone, Debug, PartialEq)]
pub struct ClusterInfo {
    pub name: String,
    pub dns: String,
    pub environment: String,
}

/// Where the component's chart comes from.
#[derive(Object, Clone, Debug, PartialEq)]
pub struct ComponentSource {
    /// Helm repository or OCI registry URL (catalog).
    pub oci_url: String,
    /// The cluster's tag override, else the catalog tag.
    pub oci_tag: String,
}

/// One platform component as deployed on one cluster.
#[derive(Object, Clone, Debug, PartialEq)]
pub struct PlatformComponentInput {
    pub id: String,
    /// The cluster's path override, else the catalog path.
    pub component_path: String,
    pub component_version: String,
    pub cluster_env_enabled: bool,
    pub depends_on: Vec<String>,
    pub enabled: bool,
    /// The cluster's Helm value patches for this component, `{}` when none.
    pub patches: BTreeMap<String, Value>,
    /// The same patches as the nested object a HelmRelease's `spec.values` takes: dotted
    /// keys expanded (`\.` is a literal dot), JSON types kept; `{}` when none.
    pub values: BTreeMap<String, Value>,
    pub cluster: ClusterInfo,
    pub source: ComponentSource,
}

/// One namespace as created on one cluster.
#[derive(Object, Clone, Debug, PartialEq)]
pub struct NamespaceInput {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub cluster: ClusterInfo,
}

/// One rolebinding as created on one cluster.
#[derive(Object, Clone, Debug, PartialEq)]
pub struct RolebindingInput {
    pub id: String,
    pub role: String,
    pub subjects: Vec<Subject>,
    pub cluster: ClusterInfo,
}

/// One entry of the fleet list served to management clusters.
#[derive(Object, Clone, Debug, PartialEq)]
pub struct ClusterListInput {
    pub id: String,
    pub cluster_name: String,
    pub cluster_dns: String,
    pub environment: String,
}

/// How one feed of one cluster would change (dry-run preview).
#[derive(Object, Clone, Debug, PartialEq)]
pub struct FeedChange {
    pub cluster_dns: String,
    /// `platform-components`, `namespaces` or `rolebindings`.
    pub feed: String,
    /// Input ids that would appear.
    pub added: Vec<String>,
    /// Input ids that would disappear (Flux garbage-collects what they rendered).
    pub removed: Vec<String>,
    /// Input ids whose content or position would change.
    pub changed: Vec<String>,
    /// Platform components that would go from enabled to disabled (Flux deletes what they
    /// rendered).
    pub disabled: Vec<String>,
}

/// Per feed, how many clusters and inputs a write changes.
#[derive(Object, Clone, Debug, Default, PartialEq)]
pub struct FeedCount {
    /// `platform-components`, `namespaces` or `rolebindings`.
    pub feed: String,
    /// Clusters whose feed changes.
    pub clusters: u64,
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
    pub disabled: u64,
    /// Clusters whose non-empty feed would become empty.
    pub emptied: u64,
}

/// The bounded account of a dry run: counts over every cluster, the changes of at most
/// `PREVIEW_PAGE` clusters.
#[derive(Object, Clone, Debug, Default, PartialEq)]
pub struct Preview {
    /// Clusters with at least one changed feed.
    pub clusters_changed: u64,
    /// Counts per feed.
    pub feeds: Vec<FeedCount>,
    /// Per listed cluster and feed: input ids added, removed, changed and disabled.
    pub changes: Vec<FeedChange>,
    /// More changed clusters than listed: ask again with `changes_offset`.
    pub truncated: bool,
    /// The `changes_offset` of the next page, when `truncated`.
    #[oai(nullable)]
    pub next_changes_offset: Option<u64>,
    /// What the write takes away from Flux; a real write with `needs_confirm` is refused
    /// with 409 `blast_radius` unless it carries `?confirm=<clusters_shrunk>`.
    pub blast_radius: crate::domain::blast::BlastRadius,
    /// Clusters a maintenance window closes now whose feeds the write changes; a real write
    /// with any is refused with 409 `window_closed` unless it carries
    /// `?confirm_closed=<clusters>`.
    pub window_closed: WindowClosed,
}

/// The closed clusters a write changes (README, "Maintenance windows").
#[derive(Object, Clone, Debug, Default, PartialEq)]
pub struct WindowClosed {
    /// How many; the number `?confirm_closed=` must carry.
    pub clusters: u64,
    /// The first of them, each with the windows that close it.
    pub listed: Vec<ClosedCluster>,
    /// Whether this request would be refused: it changes closed clusters and carries no
    /// matching `?confirm_closed=`.
    pub refused: bool,
}

#[derive(Object, Clone, Debug, Default, PartialEq)]
pub struct ClosedCluster {
    pub cluster_id: String,
    pub windows: Vec<String>,
}

impl WindowClosed {
    /// Clusters named in a refusal or a preview.
    pub const LISTED: usize = 20;

    /// Counts one closed cluster the write changes (named while fewer than `LISTED` are).
    pub fn add(&mut self, cluster_id: &str, windows: &[String]) {
        self.clusters += 1;
        if self.listed.len() < Self::LISTED {
            self.listed.push(ClosedCluster {
                cluster_id: cluster_id.to_owned(),
                windows: windows.to_vec(),
            });
        }
    }

    /// Refuses the write unless `confirm` states the number of closed clusters it changes.
    pub fn check(&self, confirm: Option<u64>) -> Result<(), String> {
        if self.clusters == 0 || confirm == Some(self.clusters) {
            return Ok(());
        }
        let named: Vec<String> = self
            .listed
            .iter()
            .map(|c| format!("{} ({})", c.cluster_id, c.windows.join(", ")))
            .collect();
        let more = self.clusters as usize - self.listed.len().min(self.clusters as usize);
        Err(format!(
            "the write changes the feeds of {} cluster(s) a maintenance window closes now: {}{}; \
             send it again with ?confirm_closed={} to override the window(s){}",
            self.clusters,
            named.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            },
            self.clusters,
            match confirm {
                Some(given) => format!(" (it carried {given})"),
                None => String::new(),
            }
        ))
    }
}

/// Clusters listed per dry-run answer.
pub const PREVIEW_PAGE: usize = 100;
