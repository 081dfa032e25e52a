//! Typed Helm values (README, "Safety rails"). A cluster's patches for a component are keyed by dotted
//! paths (`resources.requests.cpu`; `\.` is a literal dot), the way `--set` and
//! `valuesFrom.targetPath` name them. Helm applies those as strings; `values` is the same
//! patches expanded into the nested object a HelmRelease's `spec.values` takes, with every
//! JSON type kept (objects stay objects, `0.5` stays a number). No I/O here.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// The path segments of a patch key: split at dots, `\.` kept as a dot.
pub fn segments(key: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = key.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'.') => {
                chars.next();
                parts.last_mut().expect("never empty").push('.');
            }
            '.' => parts.push(String::new()),
            c => parts.last_mut().expect("never empty").push(c),
        }
    }
    parts
}

/// Pairs of keys of one patch that name the same value or one inside the other (`a` and
/// `a.b`): the expansion could keep only one of them, so a write with them is refused.
pub fn conflicts<'a>(keys: impl IntoIterator<Item = &'a str>) -> Vec<(String, String)> {
    let mut paths: Vec<(Vec<String>, &str)> = keys.into_iter().map(|k| (segments(k), k)).collect();
    paths.sort();
    paths
        .windows(2)
        .filter(|pair| pair[1].0.starts_with(&pair[0].0))
        .map(|pair| (pair[0].1.to_owned(), pair[1].1.to_owned()))
        .collect()
}

enum Node {
    Leaf(Value),
    Branch(BTreeMap<String, Node>),
}

impl Node {
    fn into_value(self) -> Value {
        match self {
            Node::Leaf(value) => value,
            Node::Branch(children) => Value::Object(
                children
                    .into_iter()
                    .map(|(key, child)| (key, child.into_value()))
                    .collect::<Map<String, Value>>(),
            ),
        }
    }
}

/// The nested object of a patch, keys in sorted order at every level it creates. Keys that
/// conflict (refused on write; possible only in data stored before the rule) resolve to the
/// later key in sorted order.
pub fn expand<'a>(patch: impl IntoIterator<Item = (&'a String, &'a Value)>) -> Map<String, Value> {
    let mut root: BTreeMap<String, Node> = BTreeMap::new();
    for (key, value) in patch {
        let path = segments(key);
        let (last, parents) = path.split_last().expect("at least one segment");
        let mut level = &mut root;
        for parent in parents {
            let node = level
                .entry(parent.clone())
                .or_insert_with(|| Node::Branch(BTreeMap::new()));
            if let Node::Leaf(_) = node {
                *node = Node::Branch(BTreeMap::new());
            }
            let Node::Branch(children) = node else {
                unreachable!("made a branch above")
            };
            level = children;
        }
        level.insert(last.clone(), Node::Leaf(value.clone()));
    }
    root.into_iter()
        .map(|(key, node)| (key, node.into_value()))
        .collect()
}

/// `expand` of a stored patch's JSON text, as JSON text; `{}` for none.
pub fn expand_text(patch: Option<&[u8]>) -> Option<Box<[u8]>> {
    let patch: BTreeMap<String, Value> = serde_json::from_slice(patch?).ok()?;
    let values = Value::Object(expand(&patch));
    Some(serde_json::to_vec(&values).ok()?.into_boxed_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(value: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn dotted_keys_become_nested_objects_with_types_kept() {
        let p = patch(json!({
            "resources": {"requests": {"cpu": "500m"}},
            "replicaCount": 2,
            "ui.color": "#2f855a",
            "ui.ratio": 0.5,
            "crds.enabled": true,
            "podAnnotations.prometheus\\.io/scrape": "true",
        }));
        assert_eq!(
            Value::Object(expand(&p)),
            json!({
                "crds": {"enabled": true},
                "podAnnotations": {"prometheus.io/scrape": "true"},
                "replicaCount": 2,
                "resources": {"requests": {"cpu": "500m"}},
                "ui": {"color": "#2f855a", "ratio": 0.5},
            })
        );
        assert_eq!(Value::Object(expand(&BTreeMap::new())), json!({}));
    }

    #[test]
    fn keys_inside_each_other_conflict() {
        assert_eq!(
            conflicts(["ui", "ui.color", "uid"]),
            vec![("ui".to_owned(), "ui.color".to_owned())]
        );
        assert!(conflicts(["a.b", "a.c", "a\\.b"]).is_empty());
        assert_eq!(segments("a\\.b.c"), ["a.b", "c"]);
        assert_eq!(segments("a\\b"), ["a\\b"]);
    }

    #[test]
    fn the_text_form_matches_the_value_form() {
        let text = br#"{"a.b":1,"a.c":{"z":1,"y":2}}"#;
        assert_eq!(
            &*expand_text(Some(text)).unwrap(),
            br#"{"a":{"b":1,"c":{"z":1,"y":2}}}"#
        );
        assert_eq!(expand_text(None), None);
    }
}
