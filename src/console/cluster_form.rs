//! A cluster's components as a form — per component: enabled, tag, path, and its patches as
//! key/value rows — instead of the whole cluster as JSON (which stays, as "advanced"). The
//! posted fields become the same update document the JSON editor sends, so both take one
//! path: preview (a dry run), then save.

use std::collections::BTreeMap;

use maud::{Markup, html};
use serde_json::{Value, json};

use super::session::Session;
use crate::domain::model::Cluster;

/// Empty patch rows offered per component.
const SPARE_PATCH_ROWS: usize = 1;

/// The form: one fieldset per component of the cluster's own entry, a row to add one more,
/// and the JSON editor folded away.
pub fn render(session: &Session, cluster: &Cluster, catalog: &[String], json: Markup) -> Markup {
    let base = format!("/ui/clusters/{}", cluster.id);
    let unused: Vec<&String> = catalog
        .iter()
        .filter(|id| !cluster.platform_components.iter().any(|c| &c.id == *id))
        .collect();
    html! {
        form method="post" action=(format!("{base}/preview")) {
            input type="hidden" name="csrf" value=(session.csrf);
            @for (i, c) in cluster.platform_components.iter().enumerate() {
                @let patches = cluster.patches.get(&c.id);
                fieldset {
                    legend { (c.id) }
                    input type="hidden" name=(format!("c.{i}.id")) value=(c.id);
                    label.inline { input type="checkbox" name=(format!("c.{i}.enabled")) checked[c.enabled]; " enabled" }
                    label { "oci_tag (empty: the catalog's)" input type="text" name=(format!("c.{i}.oci_tag")) value=(c.oci_tag.as_deref().unwrap_or("")); }
                    label { "component_path (empty: the catalog's)" input type="text" name=(format!("c.{i}.component_path")) value=(c.component_path.as_deref().unwrap_or("")); }
                    @let rows = patches.map(|p| p.iter().collect::<Vec<_>>()).unwrap_or_default();
                    @for (j, (key, value)) in rows.iter().enumerate() {
                        div.pair {
                            label { "patch key" input type="text" name=(format!("c.{i}.key.{j}")) value=(key); }
                            label { "value (JSON, or text)" input type="text" name=(format!("c.{i}.value.{j}")) value=(value.to_string()); }
                        }
                    }
                    @for j in rows.len()..rows.len() + SPARE_PATCH_ROWS {
                        div.pair {
                            label { "new patch key" input type="text" name=(format!("c.{i}.key.{j}")); }
                            label { "value (JSON, or text)" input type="text" name=(format!("c.{i}.value.{j}")); }
                        }
                    }
                }
            }
            @if !unused.is_empty() {
                fieldset {
                    legend { "Add a component" }
                    @let i = cluster.platform_components.len();
                    label {
                        "component"
                        select name=(format!("c.{i}.id")) {
                            option value="" { "—" }
                            @for id in &unused { option value=(id) { (id) } }
                        }
                    }
                    input type="hidden" name=(format!("c.{i}.enabled")) value="on";
                }
            }
            p { button type="submit" { "Preview the change" } }
        }
        details {
            summary { "Advanced: the whole cluster as JSON" }
            (json)
        }
    }
}

/// The update document (`platform_components` and `patches`) the posted fields describe; a
/// message naming the field when a row is half filled.
pub fn document(fields: &BTreeMap<String, String>) -> Result<String, String> {
    let mut components: BTreeMap<usize, BTreeMap<&str, &str>> = BTreeMap::new();
    for (name, value) in fields {
        let mut parts = name.splitn(3, '.');
        let (Some("c"), Some(index), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Ok(index) = index.parse::<usize>() else {
            continue;
        };
        components.entry(index).or_default().insert(rest, value);
    }
    let mut entries = Vec::new();
    let mut patches = serde_json::Map::new();
    for fields in components.values() {
        let id = fields.get("id").copied().unwrap_or_default().trim();
        if id.is_empty() {
            continue;
        }
        let optional = |key: &str| {
            let text = fields.get(key).copied().unwrap_or_default().trim();
            if text.is_empty() {
                Value::Null
            } else {
                Value::from(text)
            }
        };
        entries.push(json!({
            "id": id,
            "enabled": fields.contains_key("enabled"),
            "oci_tag": optional("oci_tag"),
            "component_path": optional("component_path"),
        }));
        let mut patch = serde_json::Map::new();
        for (name, key) in fields.iter().filter(|(n, _)| n.starts_with("key.")) {
            let row = &name["key.".len()..];
            let key = key.trim();
            let value = fields
                .get(format!("value.{row}").as_str())
                .copied()
                .unwrap_or_default()
                .trim();
            match (key.is_empty(), value.is_empty()) {
                (true, true) => continue,
                (true, false) => {
                    return Err(format!("{id}: a patch value without a key ({value})"));
                }
                (false, true) => return Err(format!("{id}: patch key '{key}' has no value")),
                (false, false) => {}
            }
            // JSON when it reads as JSON (3, true, {"a": 1}, "text"), else the text itself.
            let typed = serde_json::from_str(value).unwrap_or_else(|_| Value::from(value));
            patch.insert(key.to_owned(), typed);
        }
        if !patch.is_empty() {
            patches.insert(id.to_owned(), Value::Object(patch));
        }
    }
    Ok(json!({"platform_components": entries, "patches": patches}).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_form_becomes_the_update_document() {
        let posted = fields(&[
            ("c.0.id", "traefik"),
            ("c.0.enabled", "on"),
            ("c.0.oci_tag", " 33.2.2 "),
            ("c.0.component_path", ""),
            ("c.0.key.0", "deployment.replicas"),
            ("c.0.value.0", "3"),
            ("c.0.key.1", "ingressClass.name"),
            ("c.0.value.1", "edge"),
            ("c.0.key.2", ""),
            ("c.0.value.2", ""),
            ("c.1.id", "loki"),
            ("c.2.id", ""),
            ("c.2.enabled", "on"),
        ]);
        let built: Value = serde_json::from_str(&document(&posted).unwrap()).unwrap();
        assert_eq!(
            built,
            json!({
                "platform_components": [
                    {"id": "traefik", "enabled": true, "oci_tag": "33.2.2", "component_path": null},
                    {"id": "loki", "enabled": false, "oci_tag": null, "component_path": null}],
                "patches": {"traefik": {"deployment.replicas": 3, "ingressClass.name": "edge"}}
            })
        );
        let half = fields(&[("c.0.id", "traefik"), ("c.0.key.0", "replicas")]);
        assert!(
            document(&half)
                .unwrap_err()
                .contains("'replicas' has no value")
        );
    }
}
