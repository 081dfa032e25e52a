//! Catalog + a cluster's references and overrides → the cluster's Flux inputs.
//!
//! Pure functions of their arguments, so every rule of the feed table (README, "API") is tested
//! here without HTTP or SQLite. A reference whose definition is missing is an error, never a
//! silently dropped input: to Flux a missing input is a deletion.

use std::collections::HashMap;

use super::feed::{
    ClusterInfo, ClusterListInput, ComponentSource, NamespaceInput, PlatformComponentInput,
    RolebindingInput,
};
use super::model::{Cluster, Namespace, PlatformComponent, Rolebinding};

/// A reference without a definition: the store is inconsistent.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("cluster '{cluster}' references unknown {kind} '{id}'")]
pub struct DanglingReference {
    pub cluster: String,
    pub kind: &'static str,
    pub id: String,
}

pub fn cluster_info(cluster: &Cluster) -> ClusterInfo {
    ClusterInfo {
        name: cluster.cluster_name.clone(),
        dns: cluster.cluster_dns.clone(),
        environment: cluster.environment.as_str().to_owned(),
    }
}

fn lookup<'a, T>(
    catalog: &'a HashMap<String, T>,
    cluster: &Cluster,
    kind: &'static str,
    id: &str,
) -> Result<&'a T, DanglingReference> {
    catalog.get(id).ok_or_else(|| DanglingReference {
        cluster: cluster.id.clone(),
        kind,
        id: id.to_owned(),
    })
}

pub fn platform_components(
    cluster: &Cluster,
    catalog: &HashMap<String, PlatformComponent>,
) -> Result<Vec<PlatformComponentInput>, DanglingReference> {
    let info = cluster_info(cluster);
    cluster
        .platform_components
        .iter()
        .map(|reference| {
            let entry = lookup(catalog, cluster, "platform component", &reference.id)?;
            Ok(PlatformComponentInput {
                id: reference.id.clone(),
                component_path: reference
                    .component_path
                    .clone()
                    .unwrap_or_else(|| entry.component_path.clone()),
                component_version: entry.component_version.clone(),
                cluster_env_enabled: entry.cluster_env_enabled,
                depends_on: entry.depends_on.clone(),
                enabled: reference.enabled,
                patches: cluster
                    .patches
                    .get(&reference.id)
                    .cloned()
                    .unwrap_or_default(),
                values: cluster
                    .patches
                    .get(&reference.id)
                    .map(|patch| super::values::expand(patch).into_iter().collect())
                    .unwrap_or_default(),
                cluster: info.clone(),
                source: ComponentSource {
                    oci_url: entry.oci_url.clone(),
                    oci_tag: reference
                        .oci_tag
                        .clone()
                        .unwrap_or_else(|| entry.oci_tag.clone()),
                },
            })
        })
        .collect()
}

pub fn namespaces(
    cluster: &Cluster,
    definitions: &HashMap<String, Namespace>,
) -> Result<Vec<NamespaceInput>, DanglingReference> {
    let info = cluster_info(cluster);
    cluster
        .namespaces
        .iter()
        .map(|reference| {
            let namespace = lookup(definitions, cluster, "namespace", &reference.id)?;
            Ok(NamespaceInput {
                id: namespace.id.clone(),
                labels: namespace.labels.clone(),
                annotations: namespace.annotations.clone(),
                cluster: info.clone(),
            })
        })
        .collect()
}

pub fn rolebindings(
    cluster: &Cluster,
    definitions: &HashMap<String, Rolebinding>,
) -> Result<Vec<RolebindingInput>, DanglingReference> {
    let info = cluster_info(cluster);
    cluster
        .rolebindings
        .iter()
        .map(|reference| {
            let rolebinding = lookup(definitions, cluster, "rolebinding", &reference.id)?;
            Ok(RolebindingInput {
                id: rolebinding.id.clone(),
                role: rolebinding.role.clone(),
                subjects: rolebinding.subjects.clone(),
                cluster: info.clone(),
            })
        })
        .collect()
}

pub fn cluster_list_entry(cluster: &Cluster) -> ClusterListInput {
    ClusterListInput {
        id: cluster.id.clone(),
        cluster_name: cluster.cluster_name.clone(),
        cluster_dns: cluster.cluster_dns.clone(),
        environment: cluster.environment.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::domain::model::{ComponentRef, Environment, IdRef, Subject, SubjectKind};

    fn catalog_entry(id: &str, depends_on: &[&str]) -> PlatformComponent {
        PlatformComponent {
            id: id.into(),
            component_path: format!("charts/{id}"),
            component_version: "1.2.3".into(),
            oci_url: format!("oci://registry.example.com/{id}"),
            oci_tag: "1.2.3".into(),
            depends_on: depends_on.iter().map(|d| (*d).to_string()).collect(),
            cluster_env_enabled: false,
        }
    }

    fn catalog() -> HashMap<String, PlatformComponent> {
        let mut traefik = catalog_entry("traefik", &["cert-manager"]);
        traefik.cluster_env_enabled = true;
        [catalog_entry("cert-manager", &[]), traefik]
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect()
    }

    fn reference(id: &str, oci_tag: Option<&str>, component_path: Option<&str>) -> ComponentRef {
        ComponentRef {
            id: id.into(),
            enabled: true,
            oci_tag: oci_tag.map(Into::into),
            component_path: component_path.map(Into::into),
        }
    }

    fn cluster(components: Vec<ComponentRef>) -> Cluster {
        Cluster {
            id: "edge-01".into(),
            cluster_name: "Edge 01".into(),
            cluster_dns: "edge-01.example.com".into(),
            environment: Environment::Qa,
            labels: Default::default(),
            platform_components: components,
            namespaces: vec![],
            rolebindings: vec![],
            patches: BTreeMap::new(),
            node_count: None,
            vm_image: None,
            k0s_version: None,
        }
    }

    fn single(cluster: &Cluster) -> PlatformComponentInput {
        let mut inputs = platform_components(cluster, &catalog()).unwrap();
        assert_eq!(inputs.len(), 1);
        inputs.remove(0)
    }

    #[test]
    fn id_comes_from_the_reference() {
        assert_eq!(
            single(&cluster(vec![reference("traefik", None, None)])).id,
            "traefik"
        );
    }

    #[test]
    fn enabled_comes_from_the_reference() {
        let mut disabled = reference("traefik", None, None);
        disabled.enabled = false;
        assert!(!single(&cluster(vec![disabled])).enabled);
        assert!(single(&cluster(vec![reference("traefik", None, None)])).enabled);
    }

    #[test]
    fn null_path_override_uses_the_catalog_path() {
        let input = single(&cluster(vec![reference("traefik", None, None)]));
        assert_eq!(input.component_path, "charts/traefik");
    }

    #[test]
    fn path_override_wins_over_the_catalog() {
        let input = single(&cluster(vec![reference(
            "traefik",
            None,
            Some("custom/traefik"),
        )]));
        assert_eq!(input.component_path, "custom/traefik");
    }

    #[test]
    fn component_version_comes_from_the_catalog() {
        let input = single(&cluster(vec![reference("traefik", Some("9.9.9"), None)]));
        assert_eq!(input.component_version, "1.2.3");
    }

    #[test]
    fn cluster_env_enabled_comes_from_the_catalog() {
        assert!(single(&cluster(vec![reference("traefik", None, None)])).cluster_env_enabled);
        assert!(!single(&cluster(vec![reference("cert-manager", None, None)])).cluster_env_enabled);
    }

    #[test]
    fn depends_on_comes_from_the_catalog_and_is_empty_when_none() {
        let traefik = single(&cluster(vec![reference("traefik", None, None)]));
        assert_eq!(traefik.depends_on, vec!["cert-manager"]);
        let cert_manager = single(&cluster(vec![reference("cert-manager", None, None)]));
        assert!(cert_manager.depends_on.is_empty());
    }

    #[test]
    fn patches_come_from_the_cluster() {
        let mut c = cluster(vec![reference("traefik", None, None)]);
        let patch = BTreeMap::from([
            ("replicas".to_string(), json!(3)),
            ("service".to_string(), json!({"type": "ClusterIP"})),
        ]);
        c.patches.insert("traefik".into(), patch.clone());
        assert_eq!(single(&c).patches, patch);
    }

    #[test]
    fn absent_patches_are_an_empty_object() {
        let mut c = cluster(vec![reference("traefik", None, None)]);
        c.patches.insert(
            "cert-manager".into(),
            BTreeMap::from([("x".into(), json!(1))]),
        );
        assert!(single(&c).patches.is_empty());
    }

    #[test]
    fn cluster_block_names_the_cluster() {
        let input = single(&cluster(vec![reference("traefik", None, None)]));
        assert_eq!(input.cluster.name, "Edge 01");
        assert_eq!(input.cluster.dns, "edge-01.example.com");
        assert_eq!(input.cluster.environment, "qa");
    }

    #[test]
    fn source_url_comes_from_the_catalog() {
        let input = single(&cluster(vec![reference("traefik", Some("2.0.0"), None)]));
        assert_eq!(input.source.oci_url, "oci://registry.example.com/traefik");
    }

    #[test]
    fn null_tag_override_uses_the_catalog_tag() {
        let input = single(&cluster(vec![reference("traefik", None, None)]));
        assert_eq!(input.source.oci_tag, "1.2.3");
    }

    #[test]
    fn tag_override_wins_over_the_catalog() {
        let input = single(&cluster(vec![reference("traefik", Some("2.0.0"), None)]));
        assert_eq!(input.source.oci_tag, "2.0.0");
    }

    #[test]
    fn inputs_keep_the_reference_order() {
        let c = cluster(vec![
            reference("traefik", None, None),
            reference("cert-manager", None, None),
        ]);
        let ids: Vec<_> = platform_components(&c, &catalog())
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(ids, ["traefik", "cert-manager"]);
    }

    #[test]
    fn unknown_component_is_an_error_not_a_silent_drop() {
        let c = cluster(vec![
            reference("traefik", None, None),
            reference("ghost", None, None),
        ]);
        let err = platform_components(&c, &catalog()).unwrap_err();
        assert_eq!(err.id, "ghost");
    }

    #[test]
    fn namespaces_carry_labels_annotations_and_cluster() {
        let mut c = cluster(vec![]);
        c.namespaces = vec![IdRef { id: "apps".into() }];
        let definitions = HashMap::from([(
            "apps".to_string(),
            Namespace {
                id: "apps".into(),
                labels: BTreeMap::from([("team".into(), "platform".into())]),
                annotations: BTreeMap::new(),
            },
        )]);
        let inputs = namespaces(&c, &definitions).unwrap();
        assert_eq!(inputs[0].labels["team"], "platform");
        assert!(inputs[0].annotations.is_empty());
        assert_eq!(inputs[0].cluster.dns, "edge-01.example.com");
    }

    #[test]
    fn rolebindings_carry_role_and_subjects() {
        let mut c = cluster(vec![]);
        c.rolebindings = vec![IdRef {
            id: "admins".into(),
        }];
        let subject = Subject {
            kind: SubjectKind::ServiceAccount,
            name: "deployer".into(),
            api_group: None,
            namespace: Some("ci".into()),
        };
        let definitions = HashMap::from([(
            "admins".to_string(),
            Rolebinding {
                id: "admins".into(),
                role: "cluster-admin".into(),
                subjects: vec![subject.clone()],
            },
        )]);
        let inputs = rolebindings(&c, &definitions).unwrap();
        assert_eq!(inputs[0].role, "cluster-admin");
        assert_eq!(inputs[0].subjects, vec![subject]);
    }

    #[test]
    fn cluster_list_entry_has_the_four_fields() {
        let entry = cluster_list_entry(&cluster(vec![]));
        assert_eq!(
            (
                entry.id.as_str(),
                entry.cluster_name.as_str(),
                entry.cluster_dns.as_str(),
                entry.environment.as_str()
            ),
            ("edge-01", "Edge 01", "edge-01.example.com", "qa")
        );
    }
}
