//! Blast radius (README, "Safety rails"): how many clusters a write takes inputs away from. Flux
//! garbage-collects whatever a feed stops listing (or lists as `enabled: false`), so a write
//! that empties a cluster's feed, or shrinks feeds on many clusters, prunes live workloads at
//! the next poll. Such a write needs `?confirm=<clusters>`. No I/O here.

use poem_openapi::Object;
use serde_json::Value;

/// The feeds, in `Feed::ALL` order, and the cluster field each is built from.
const FEEDS: [(&str, &str); 3] = [
    ("platform-components", "platform_components"),
    ("namespaces", "namespaces"),
    ("rolebindings", "rolebindings"),
];

/// Clusters named in a refusal or a dry run.
const LISTED: usize = 20;

/// The inputs a cluster's feed renders: platform components count only when enabled (a
/// disabled input renders nothing).
fn rendered(cluster: &Value, field: &str) -> Vec<String> {
    cluster[field]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|item| item["enabled"].as_bool() != Some(false))
                .filter_map(|item| item["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// One feed of one cluster that loses inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedShrink {
    pub feed: &'static str,
    /// Inputs rendered before and after the write.
    pub before: usize,
    pub after: usize,
    /// Inputs removed or disabled.
    pub lost: usize,
}

impl FeedShrink {
    pub fn emptied(&self) -> bool {
        self.before > 0 && self.after == 0
    }
}

/// The feeds a cluster write shrinks, from the cluster's states before and after (as the
/// audit trail records them). A new cluster shrinks nothing, and neither does a deleted one:
/// its feeds answer 404, on which Flux keeps its last inputs.
pub fn shrunk_feeds(before: Option<&Value>, after: Option<&Value>) -> Vec<FeedShrink> {
    let (Some(before), Some(after)) = (before, after) else {
        return Vec::new();
    };
    FEEDS
        .iter()
        .filter_map(|&(feed, field)| {
            let (was, now) = (rendered(before, field), rendered(after, field));
            let lost = was.iter().filter(|id| !now.contains(id)).count();
            (lost > 0).then_some(FeedShrink {
                feed,
                before: was.len(),
                after: now.len(),
                lost,
            })
        })
        .collect()
}

/// Per feed: clusters that lose inputs, inputs lost, feeds emptied.
#[derive(Object, Clone, Debug, Default, PartialEq)]
pub struct FeedLoss {
    pub feed: String,
    pub clusters: u64,
    pub inputs_lost: u64,
    pub emptied: u64,
}

/// `max_clusters_shrunk` unless configured.
pub const DEFAULT_MAX_CLUSTERS_SHRUNK: u64 = 10;

/// What a write takes away, over every cluster it touches.
#[derive(Object, Clone, Debug, PartialEq)]
pub struct BlastRadius {
    /// Clusters that lose at least one input (removed, or set `enabled: false`). This is the
    /// number `?confirm=` must carry.
    pub clusters_shrunk: u64,
    /// Clusters with a feed that goes from some inputs to none.
    pub clusters_emptied: u64,
    pub feeds: Vec<FeedLoss>,
    /// The first 20 clusters that lose inputs, with what they lose.
    pub examples: Vec<String>,
    /// `max_clusters_shrunk` of the configuration.
    pub max_clusters_shrunk: u64,
    /// `empty_feed_guard` of the configuration: emptying a feed needs confirming.
    pub empty_feed_guard: bool,
    /// Whether the write is refused without `?confirm=<clusters_shrunk>`.
    pub needs_confirm: bool,
    /// Whether this request would be refused: it needs confirming and carries no matching
    /// `?confirm=`.
    pub refused: bool,
}

/// When a write needs `?confirm=` (config `max_clusters_shrunk`, `empty_feed_guard`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guard {
    /// Clusters a write may take inputs from without confirming.
    pub max_clusters_shrunk: u64,
    /// Emptying a feed needs confirming even on one cluster (Flux prunes everything rendered
    /// from it). Off for clients of flux-resourceset that empty feeds on purpose.
    pub empty_feed_guard: bool,
}

impl Default for Guard {
    fn default() -> Self {
        Guard {
            max_clusters_shrunk: DEFAULT_MAX_CLUSTERS_SHRUNK,
            empty_feed_guard: true,
        }
    }
}

impl Default for BlastRadius {
    fn default() -> Self {
        BlastRadius::new(Guard::default())
    }
}

impl BlastRadius {
    pub fn new(guard: Guard) -> Self {
        BlastRadius {
            clusters_shrunk: 0,
            clusters_emptied: 0,
            feeds: FEEDS
                .iter()
                .map(|(feed, _)| FeedLoss {
                    feed: (*feed).into(),
                    ..FeedLoss::default()
                })
                .collect(),
            examples: Vec::new(),
            max_clusters_shrunk: guard.max_clusters_shrunk,
            empty_feed_guard: guard.empty_feed_guard,
            needs_confirm: false,
            refused: false,
        }
    }

    /// Sets the guard (and whether confirmation is needed under it).
    pub fn limit(&mut self, guard: Guard) {
        self.max_clusters_shrunk = guard.max_clusters_shrunk;
        self.empty_feed_guard = guard.empty_feed_guard;
        self.settle();
    }

    fn settle(&mut self) {
        self.needs_confirm = (self.empty_feed_guard && self.clusters_emptied > 0)
            || self.clusters_shrunk > self.max_clusters_shrunk;
    }

    /// Notes one cluster write.
    pub fn add(&mut self, cluster: &str, shrunk: &[FeedShrink]) {
        if shrunk.is_empty() {
            return;
        }
        self.clusters_shrunk += 1;
        if shrunk.iter().any(FeedShrink::emptied) {
            self.clusters_emptied += 1;
        }
        for shrink in shrunk {
            if let Some(loss) = self.feeds.iter_mut().find(|l| l.feed == shrink.feed) {
                loss.clusters += 1;
                loss.inputs_lost += shrink.lost as u64;
                loss.emptied += u64::from(shrink.emptied());
            }
        }
        if self.examples.len() < LISTED {
            let detail: Vec<String> = shrunk
                .iter()
                .map(|s| format!("{} {} → {}", s.feed, s.before, s.after))
                .collect();
            self.examples
                .push(format!("{cluster} ({})", detail.join(", ")));
        }
        self.settle();
    }

    /// `Err(message)` when the write needs a confirmation it does not carry.
    pub fn check(&mut self, confirm: Option<u64>) -> Result<(), String> {
        self.refused = self.needs_confirm && confirm != Some(self.clusters_shrunk);
        if !self.refused {
            return Ok(());
        }
        let why = if self.empty_feed_guard && self.clusters_emptied > 0 {
            format!(
                "it would empty a feed on {} cluster(s)",
                self.clusters_emptied
            )
        } else {
            format!(
                "it would remove or disable inputs on {} clusters, more than max_clusters_shrunk ({})",
                self.clusters_shrunk, self.max_clusters_shrunk
            )
        };
        let feeds: Vec<String> = self
            .feeds
            .iter()
            .filter(|l| l.clusters > 0)
            .map(|l| {
                format!(
                    "{}: {} clusters, {} inputs, {} emptied",
                    l.feed, l.clusters, l.inputs_lost, l.emptied
                )
            })
            .collect();
        let wrong = match confirm {
            Some(n) => format!(" (?confirm={n} does not match)"),
            None => String::new(),
        };
        Err(format!(
            "refused: {why}{wrong}; Flux prunes what it rendered from them at the next poll. \
             Feeds: {}. Clusters: {}{}. To go ahead, repeat it with ?confirm={n} (CLI: --confirm {n})",
            feeds.join("; "),
            self.examples.join(", "),
            if self.clusters_shrunk as usize > self.examples.len() {
                ", …"
            } else {
                ""
            },
            n = self.clusters_shrunk
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cluster(components: &[(&str, bool)], namespaces: &[&str]) -> Value {
        json!({
            "id": "a",
            "platform_components": components.iter().map(|(id, enabled)| json!({"id": id, "enabled": enabled})).collect::<Vec<_>>(),
            "namespaces": namespaces.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
            "rolebindings": [],
        })
    }

    #[test]
    fn removed_and_disabled_inputs_count_added_ones_do_not() {
        let before = cluster(&[("a", true), ("b", true), ("c", false)], &["x"]);
        let after = cluster(&[("a", false), ("d", true)], &["x", "y"]);
        let shrunk = shrunk_feeds(Some(&before), Some(&after));
        assert_eq!(
            shrunk,
            vec![FeedShrink {
                feed: "platform-components",
                before: 2,
                after: 1,
                lost: 2
            }]
        );
        assert!(shrunk_feeds(None, Some(&after)).is_empty(), "a new cluster");
        assert!(
            shrunk_feeds(Some(&before), None).is_empty(),
            "a deleted one: 404"
        );
        assert!(shrunk_feeds(Some(&before), Some(&before)).is_empty());
    }

    #[test]
    fn an_emptied_feed_needs_confirmation_even_on_one_cluster() {
        let before = cluster(&[("a", true)], &["x"]);
        let after = cluster(&[("a", false)], &["x"]);
        let mut radius = BlastRadius::default();
        radius.add("edge-qa-01", &shrunk_feeds(Some(&before), Some(&after)));
        assert_eq!((radius.clusters_shrunk, radius.clusters_emptied), (1, 1));
        let refusal = radius.check(None).unwrap_err();
        assert!(refusal.contains("empty a feed") && refusal.contains("?confirm=1"));
        assert!(refusal.contains("edge-qa-01 (platform-components 1 → 0)"));
        assert!(radius.check(Some(2)).is_err());
        assert!(radius.check(Some(1)).is_ok());
        // As flux-resourceset does: an emptied feed alone needs nothing.
        radius.limit(Guard {
            empty_feed_guard: false,
            ..Guard::default()
        });
        assert!(radius.check(None).is_ok());
    }

    #[test]
    fn many_shrunk_clusters_need_confirmation_a_few_do_not() {
        let before = cluster(&[("a", true), ("b", true)], &[]);
        let after = cluster(&[("a", true)], &[]);
        let shrunk = shrunk_feeds(Some(&before), Some(&after));
        let mut radius = BlastRadius::new(Guard {
            max_clusters_shrunk: 3,
            empty_feed_guard: true,
        });
        for i in 0..3 {
            radius.add(&format!("c{i}"), &shrunk);
        }
        assert!(radius.check(None).is_ok(), "at the limit");
        radius.add("c3", &shrunk);
        let refusal = radius.check(None).unwrap_err();
        assert!(refusal.contains("4 clusters, more than max_clusters_shrunk (3)"));
        assert!(radius.check(Some(4)).is_ok());
        assert_eq!(radius.feeds[0].inputs_lost, 4);
    }
}
