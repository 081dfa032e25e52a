//! How a write changes feeds, computed from compact digests so that a write touching every
//! cluster of a large fleet is compared without keeping any feed body: per input, a hash of
//! its id, a hash of its JSON, and whether it is enabled. Ids are named again from the
//! catalogs for the clusters a preview lists.

use std::collections::HashMap;

use super::encode::{Catalog, ClusterRefs, Feed, Fragments};
use super::feed::FeedChange;

/// A 64-bit hash of bytes, word by word (a dry run hashes every input of every cluster it
/// touches on both sides, megabytes at fleet size); not for adversarial input.
pub fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        h = (h ^ word).wrapping_mul(K).rotate_left(29);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    h ^ (h >> 32)
}

/// What a diff needs of one input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputDigest {
    /// `hash` of the input's id.
    pub id: u64,
    pub content: u64,
    pub enabled: bool,
}

/// Input ids by their hash, from the catalogs on both sides of a write, to name the inputs
/// of the clusters a preview lists.
pub fn names<'a>(catalogs: impl IntoIterator<Item = &'a Catalog>) -> HashMap<u64, &'a str> {
    catalogs
        .into_iter()
        .flat_map(Catalog::ids)
        .map(|id| (hash(id.as_bytes()), id))
        .collect()
}

/// One feed of one cluster, input by input, in feed order.
pub type FeedDigest = Vec<InputDigest>;

/// Digests `feed` of `cluster`.
pub fn digest(
    cluster: &ClusterRefs,
    catalog: &Catalog,
    fragments: &Fragments,
    feed: Feed,
    scratch: &mut Vec<u8>,
) -> FeedDigest {
    let mut digest = Vec::new();
    cluster.for_each_input(catalog, fragments, feed, scratch, |input| {
        digest.push(InputDigest {
            id: hash(input.id.as_bytes()),
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

/// The listed form of a delta, its inputs named through `ids` (see `names`).
pub fn feed_change(
    cluster_dns: &str,
    feed: Feed,
    (before, after): (&[InputDigest], &[InputDigest]),
    delta: &Delta,
    ids: &HashMap<u64, &str>,
) -> FeedChange {
    let names = |side: &[InputDigest], indices: &[usize]| -> Vec<String> {
        indices
            .iter()
            .map(|&i| ids.get(&side[i].id).copied().unwrap_or_default().to_owned())
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
            id: hash(id.as_bytes()),
            content: hash(content.as_bytes()),
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
        let ids = ["a", "b", "c", "d"]
            .map(|id| (hash(id.as_bytes()), id))
            .into();
        let change = feed_change(
            "x",
            Feed::PlatformComponents,
            (&before, &after),
            &delta,
            &ids,
        );
        assert_eq!(change.added, ["d"]);
        assert_eq!(change.removed, ["c"]);
        assert_eq!(change.changed, ["b", "a"], "b moved, a changed");
        assert_eq!(change.disabled, ["a"]);
        assert!(compare(&before, &before).is_empty());
    }
}
