//! How a write changes feeds, computed from compact digests so that a write touching every
//! cluster of a large fleet is compared without keeping any feed body: per input, a hash of
//! its id (or the id itself, for the clusters a preview lists), a hash of its JSON, and
//! whether it is enabled.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use super::encode::{Catalog, ClusterRefs, Feed, Fragments};
use super::feed::FeedChange;

fn hash<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// What a diff needs of one input.
#[derive(Clone, Debug, PartialEq)]
pub struct InputDigest {
    pub id: u64,
    /// The id itself, kept only when names are asked for.
    pub name: Option<Box<str>>,
    pub content: u64,
    pub enabled: bool,
}

/// One feed of one cluster, input by input, in feed order.
pub type FeedDigest = Vec<InputDigest>;

/// Digests `feed` of `cluster`; `names` keeps the input ids for listing.
pub fn digest(
    cluster: &ClusterRefs,
    catalog: &Catalog,
    fragments: &Fragments,
    feed: Feed,
    scratch: &mut Vec<u8>,
    names: bool,
) -> FeedDigest {
    let mut digest = Vec::new();
    cluster.for_each_input(catalog, fragments, feed, scratch, |input| {
        digest.push(InputDigest {
            id: hash(input.id),
            name: names.then(|| input.id.into()),
            content: hash(input.json),
            enabled: input.enabled,
        })
    });
    digest
}

/// Input-level change of one feed; `None` when the feed is byte-for-byte the same.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delta {
    pub added: Vec<usize>,
    /// Indices into `before`.
    pub removed: Vec<usize>,
    /// Indices into `after`: content or position changed.
    pub changed: Vec<usize>,
    /// Indices into `after`: enabled before, disabled now (Flux deletes what it rendered).
    pub disabled: Vec<usize>,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Compares a feed before and after (a missing side is an absent cluster: no inputs).
pub fn compare(before: &[InputDigest], after: &[InputDigest]) -> Delta {
    let old: HashMap<u64, usize> = before.iter().enumerate().map(|(i, d)| (d.id, i)).collect();
    let new: HashMap<u64, usize> = after.iter().enumerate().map(|(i, d)| (d.id, i)).collect();
    let mut delta = Delta::default();
    for (index, input) in after.iter().enumerate() {
        match old.get(&input.id) {
            None => delta.added.push(index),
            Some(&was) => {
                let previous = &before[was];
                if previous.content != input.content || was != index {
                    delta.changed.push(index);
                }
                if previous.enabled && !input.enabled {
                    delta.disabled.push(index);
                }
            }
        }
    }
    delta.removed = before
        .iter()
        .enumerate()
        .filter(|(_, d)| !new.contains_key(&d.id))
        .map(|(i, _)| i)
        .collect();
    delta
}

/// The listed form of a delta; the digests must carry names.
pub fn feed_change(
    cluster_dns: &str,
    feed: Feed,
    before: &[InputDigest],
    after: &[InputDigest],
    delta: &Delta,
) -> FeedChange {
    let names = |side: &[InputDigest], indices: &[usize]| -> Vec<String> {
        indices
            .iter()
            .map(|&i| side[i].name.as_deref().unwrap_or_default().to_owned())
            .collect()
    };
    FeedChange {
        cluster_dns: cluster_dns.to_owned(),
        feed: feed.segment().to_owned(),
        added: names(after, &delta.added),
        removed: names(before, &delta.removed),
        changed: names(after, &delta.changed),
        disabled: names(after, &delta.disabled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(id: &str, content: &str, enabled: bool) -> InputDigest {
        InputDigest {
            id: hash(id),
            name: Some(id.into()),
            content: hash(content),
            enabled,
        }
    }

    #[test]
    fn additions_removals_changes_moves_and_disables_are_told_apart() {
        let before = [
            input("a", "1", true),
            input("b", "1", true),
            input("c", "1", true),
        ];
        let after = [
            input("b", "1", true),
            input("a", "2", false),
            input("d", "1", true),
        ];
        let delta = compare(&before, &after);
        let change = feed_change("x", Feed::PlatformComponents, &before, &after, &delta);
        assert_eq!(change.added, ["d"]);
        assert_eq!(change.removed, ["c"]);
        assert_eq!(change.changed, ["b", "a"], "b moved, a changed");
        assert_eq!(change.disabled, ["a"]);
        assert!(compare(&before, &before).is_empty());
    }
}
