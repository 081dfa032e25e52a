//! Checks on a single document that need no database: name syntax, duplicates, and
//! references inside the document. Checks against the rest of the inventory run in the
//! store's write transaction.

use std::collections::{BTreeMap, HashSet};

use super::model::{Cluster, IdRef, Namespace, PlatformComponent, Rolebinding};
use super::names::{
    HELM_RELEASE_NAME_MAX, is_chart_tag, is_dns_name, is_label_value, is_metadata_key,
    is_rfc1123_label, unprintable,
};
use crate::error::AppError;

/// Collects every problem in a document, so one answer names them all.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            self.0.push(message());
        }
    }

    fn into_result(self) -> Result<(), AppError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(AppError::Validation(self.0.join("; ")))
        }
    }
}

fn duplicates<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    let mut repeated: Vec<&str> = ids.filter(|id| !seen.insert(*id)).collect();
    repeated.dedup();
    repeated
}

/// Names and values reach feeds, logs, terminals and the console: no control characters,
/// no text that displays in another order than it is stored (the same rule for the API,
/// import and the seed).
fn check_text(problems: &mut Problems, field: &str, value: &str, multiline: bool) {
    if let Some(bad) = unprintable(value, multiline) {
        problems.0.push(format!(
            "{field}: contains the character U+{:04X} (a control, bidirectional or invisible \
             character); names and values must be printable",
            u32::from(bad)
        ));
    }
}

fn check_tag(problems: &mut Problems, field: &str, tag: &str) {
    check_text(problems, field, tag, false);
    problems.check(is_chart_tag(tag), || {
        format!(
            "{field} '{tag}' is not a chart tag: 1 to 128 of A-Z, a-z, 0-9, '_', '.', '-' \
             (and '+' in a SemVer build), starting with a letter, digit or '_'"
        )
    });
}

fn check_label(problems: &mut Problems, field: &str, id: &str) {
    problems.check(is_rfc1123_label(id), || {
        format!("{field} '{id}' is not a lowercase RFC 1123 label (a-z, 0-9, '-', at most 63)")
    });
}

pub fn component(component: &PlatformComponent) -> Result<(), AppError> {
    let mut problems = Problems::default();
    check_label(&mut problems, "id", &component.id);
    problems.check(component.id.len() <= HELM_RELEASE_NAME_MAX, || {
        format!(
            "id '{}' is longer than {HELM_RELEASE_NAME_MAX} characters: a component id becomes \
             its HelmRelease's releaseName, which Helm limits to {HELM_RELEASE_NAME_MAX}",
            component.id
        )
    });
    problems.check(
        ["oci://", "https://", "http://"]
            .iter()
            .any(|scheme| component.oci_url.starts_with(scheme)),
        || {
            format!(
                "oci_url '{}' is neither an OCI registry (oci://) nor a Helm repository \
                 (https://, http://)",
                component.oci_url
            )
        },
    );
    for (field, value) in [
        ("component_path", &component.component_path),
        ("component_version", &component.component_version),
        ("oci_url", &component.oci_url),
    ] {
        check_text(&mut problems, field, value, false);
    }
    check_tag(&mut problems, "oci_tag", &component.oci_tag);
    problems.check(!component.depends_on.contains(&component.id), || {
        format!(
            "depends_on: component '{}' cannot depend on itself",
            component.id
        )
    });
    for id in duplicates(component.depends_on.iter().map(String::as_str)) {
        problems.push_duplicate("depends_on", id);
    }
    problems.into_result()
}

pub fn namespace(namespace: &Namespace) -> Result<(), AppError> {
    let mut problems = Problems::default();
    check_label(&mut problems, "id", &namespace.id);
    check_metadata(&mut problems, "labels", &namespace.labels, true);
    check_metadata(&mut problems, "annotations", &namespace.annotations, false);
    problems.into_result()
}

fn check_metadata(
    problems: &mut Problems,
    field: &str,
    map: &BTreeMap<String, String>,
    values_are_labels: bool,
) {
    for (key, value) in map {
        check_text(problems, field, key, false);
        problems.check(is_metadata_key(key), || {
            format!("{field}: '{key}' is not a valid Kubernetes key ([prefix/]name)")
        });
        if values_are_labels {
            problems.check(is_label_value(value), || {
                format!("{field}.{key}: '{value}' is not a valid Kubernetes label value")
            });
        } else {
            check_text(problems, &format!("{field}.{key}"), value, true);
        }
    }
}

pub fn rolebinding(rolebinding: &Rolebinding) -> Result<(), AppError> {
    let mut problems = Problems::default();
    check_label(&mut problems, "id", &rolebinding.id);
    problems.check(!rolebinding.role.trim().is_empty(), || {
        "role must not be empty".into()
    });
    check_text(&mut problems, "role", &rolebinding.role, false);
    for (index, subject) in rolebinding.subjects.iter().enumerate() {
        problems.check(!subject.name.trim().is_empty(), || {
            format!("subjects[{index}].name must not be empty")
        });
        check_text(
            &mut problems,
            &format!("subjects[{index}].name"),
            &subject.name,
            false,
        );
        for (field, value) in [
            ("apiGroup", &subject.api_group),
            ("namespace", &subject.namespace),
        ] {
            if let Some(value) = value {
                check_text(
                    &mut problems,
                    &format!("subjects[{index}].{field}"),
                    value,
                    false,
                );
            }
        }
    }
    problems.into_result()
}

pub fn overlay(overlay: &super::overlay::Overlay) -> Result<(), AppError> {
    let mut problems = Problems::default();
    check_label(&mut problems, "id", &overlay.id);
    check_text(&mut problems, "description", &overlay.description, true);
    check_metadata(
        &mut problems,
        "selector.labels",
        &overlay.selector.labels,
        true,
    );
    for id in duplicates(overlay.platform_components.iter().map(|c| c.id.as_str())) {
        problems.push_duplicate("platform_components", id);
    }
    for (index, entry) in overlay.platform_components.iter().enumerate() {
        if let Some(tag) = &entry.oci_tag {
            check_tag(
                &mut problems,
                &format!("platform_components[{index}].oci_tag"),
                tag,
            );
        }
        if let Some(path) = &entry.component_path {
            let field = format!("platform_components[{index}].component_path");
            check_text(&mut problems, &field, path, false);
        }
    }
    for (field, ids) in [
        ("namespaces", &overlay.namespaces),
        ("rolebindings", &overlay.rolebindings),
    ] {
        for id in duplicates(ids.iter().map(String::as_str)) {
            problems.push_duplicate(field, id);
        }
    }
    for (component, patch) in &overlay.patches {
        for key in patch.keys() {
            check_text(&mut problems, &format!("patches.{component}"), key, false);
        }
        for (outer, inner) in super::values::conflicts(patch.keys().map(String::as_str)) {
            problems.0.push(format!(
                "patches.{component}: keys '{outer}' and '{inner}' overlap (one is inside the other)"
            ));
        }
    }
    problems.into_result()
}

/// A window: its id, description, selector labels and schedule (`window::schedule` names
/// every problem of the schedule: weekdays, start, duration, time zone, instants).
pub fn window(window: &super::window::Window) -> Result<(), AppError> {
    let mut problems = Problems::default();
    check_label(&mut problems, "id", &window.id);
    check_text(&mut problems, "description", &window.description, true);
    check_metadata(
        &mut problems,
        "selector.labels",
        &window.selector.labels,
        true,
    );
    if let Err(schedule) = super::window::schedule(window) {
        problems.0.extend(schedule);
    }
    problems.into_result()
}

pub fn cluster(cluster: &Cluster) -> Result<(), AppError> {
    let mut problems = Problems::default();
    problems.check(is_dns_name(&cluster.id), || {
        format!("id '{}' is not a lowercase DNS name", cluster.id)
    });
    problems.check(is_dns_name(&cluster.cluster_dns), || {
        format!(
            "cluster_dns '{}' is not a lowercase DNS name",
            cluster.cluster_dns
        )
    });
    problems.check(!cluster.cluster_name.trim().is_empty(), || {
        "cluster_name must not be empty".into()
    });
    check_text(&mut problems, "cluster_name", &cluster.cluster_name, false);
    for (field, value) in [
        ("vm_image", &cluster.vm_image),
        ("k0s_version", &cluster.k0s_version),
    ] {
        if let Some(value) = value {
            check_text(&mut problems, field, value, false);
        }
    }
    for (index, entry) in cluster.platform_components.iter().enumerate() {
        if let Some(tag) = &entry.oci_tag {
            check_tag(
                &mut problems,
                &format!("platform_components[{index}].oci_tag"),
                tag,
            );
        }
        if let Some(path) = &entry.component_path {
            let field = format!("platform_components[{index}].component_path");
            check_text(&mut problems, &field, path, false);
        }
    }
    problems.check(cluster.node_count.is_none_or(|n| n >= 0), || {
        "node_count must be at least 0".into()
    });
    check_metadata(&mut problems, "labels", &cluster.labels, true);
    let component_ids = cluster.platform_components.iter().map(|c| c.id.as_str());
    for id in duplicates(component_ids) {
        problems.push_duplicate("platform_components", id);
    }
    for (field, refs) in [
        ("namespaces", &cluster.namespaces),
        ("rolebindings", &cluster.rolebindings),
    ] {
        for id in duplicates(refs.iter().map(|r: &IdRef| r.id.as_str())) {
            problems.push_duplicate(field, id);
        }
    }
    let unreferenced: Vec<&str> = cluster
        .patches
        .keys()
        .filter(|id| !cluster.platform_components.iter().any(|c| &c.id == *id))
        .map(String::as_str)
        .collect();
    problems.check(unreferenced.is_empty(), || {
        format!(
            "patches: the cluster does not reference component(s) {}",
            quoted_list(&unreferenced)
        )
    });
    for (component, patch) in &cluster.patches {
        for key in patch.keys() {
            check_text(&mut problems, &format!("patches.{component}"), key, false);
        }
        for (outer, inner) in super::values::conflicts(patch.keys().map(String::as_str)) {
            problems.0.push(format!(
                "patches.{component}: keys '{outer}' and '{inner}' overlap (one is inside the \
                 other), so the typed `values` could hold only one of them; merge them into one key"
            ));
        }
    }
    problems.into_result()
}

impl Problems {
    fn push_duplicate(&mut self, field: &str, id: &str) {
        self.0
            .push(format!("{field}: '{id}' appears more than once"));
    }
}

/// `'a', 'b'` — for messages that name several ids.
pub fn quoted_list<S: AsRef<str>>(ids: &[S]) -> String {
    ids.iter()
        .map(|id| format!("'{}'", id.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{ComponentRef, Environment};

    fn cluster_with(components: &[&str], patches: &[&str]) -> Cluster {
        Cluster {
            id: "c1".into(),
            cluster_name: "c1".into(),
            cluster_dns: "c1.example.com".into(),
            environment: Environment::Dev,
            labels: Default::default(),
            platform_components: components
                .iter()
                .map(|id| ComponentRef {
                    id: (*id).into(),
                    enabled: true,
                    oci_tag: None,
                    component_path: None,
                })
                .collect(),
            namespaces: vec![],
            rolebindings: vec![],
            patches: patches
                .iter()
                .map(|id| ((*id).to_string(), Default::default()))
                .collect(),
            node_count: None,
            vm_image: None,
            k0s_version: None,
        }
    }

    fn message(result: Result<(), AppError>) -> String {
        match result {
            Err(AppError::Validation(message)) => message,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn patch_for_unreferenced_component_is_named() {
        let text = message(cluster(&cluster_with(&["a"], &["a", "ghost"])));
        assert!(text.contains("'ghost'"), "{text}");
        assert!(!text.contains("'a'"), "{text}");
    }

    #[test]
    fn duplicate_component_reference_is_named() {
        let text = message(cluster(&cluster_with(&["a", "b", "a"], &[])));
        assert!(
            text.contains("platform_components: 'a' appears more than once"),
            "{text}"
        );
    }

    #[test]
    fn self_dependency_is_refused() {
        let component = PlatformComponent {
            id: "a".into(),
            component_path: "a".into(),
            component_version: "1".into(),
            oci_url: "oci://x".into(),
            oci_tag: "1".into(),
            depends_on: vec!["a".into()],
            cluster_env_enabled: false,
        };
        assert!(message(super::component(&component)).contains("itself"));
    }

    #[test]
    fn label_syntax_is_checked() {
        let ns = Namespace {
            id: "ns".into(),
            labels: BTreeMap::from([("bad key".into(), "v".into()), ("ok".into(), "-bad".into())]),
            annotations: BTreeMap::from([("note".into(), "any text at all".into())]),
        };
        let text = message(namespace(&ns));
        assert!(
            text.contains("'bad key'") && text.contains("'-bad'"),
            "{text}"
        );
        assert!(!text.contains("annotations"), "{text}");
    }
}
