//! The inventory as clients see it: the CRUD documents and their partial-update forms.
//!
//! These types are the wire format (poem-openapi `Object`s, so the spec is derived from them)
//! and the domain model at once: storage reads and writes them, the merge consumes them.
//! Field names and defaults are those of flux-resourceset, so its clients and seed files work.

use std::collections::BTreeMap;

use poem_openapi::types::MaybeUndefined;
use poem_openapi::{Enum, Object};
use serde_json::Value;

/// Environment tier of a cluster.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[oai(rename_all = "lowercase")]
pub enum Environment {
    Dev,
    Qa,
    Uat,
    Prod,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Dev => "dev",
            Environment::Qa => "qa",
            Environment::Uat => "uat",
            Environment::Prod => "prod",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "dev" => Some(Environment::Dev),
            "qa" => Some(Environment::Qa),
            "uat" => Some(Environment::Uat),
            "prod" => Some(Environment::Prod),
            _ => None,
        }
    }
}

/// A catalog entry: where a platform component's chart comes from and what it needs.
#[derive(Object, Clone, Debug, PartialEq)]
#[oai(deny_unknown_fields)]
pub struct PlatformComponent {
    /// Component id (RFC 1123 label); becomes part of Flux resource names.
    #[oai(validator(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length = 63))]
    pub id: String,
    /// Chart name or path inside the OCI artifact.
    pub component_path: String,
    /// Upstream version; `latest` means no pinning.
    pub component_version: String,
    /// Helm repository or OCI registry URL.
    pub oci_url: String,
    /// Chart or artifact tag.
    pub oci_tag: String,
    /// Ids of catalog components that must be ready first.
    #[oai(default)]
    pub depends_on: Vec<String>,
    /// When true the ResourceSet template appends `/{environment}` to the path.
    #[oai(default)]
    pub cluster_env_enabled: bool,
}

/// Partial update of a catalog entry: present fields replace, omitted fields are kept.
#[derive(Object, Clone, Debug, Default)]
#[oai(deny_unknown_fields)]
pub struct PlatformComponentUpdate {
    /// Must equal the path id when present.
    pub id: Option<String>,
    pub component_path: Option<String>,
    pub component_version: Option<String>,
    pub oci_url: Option<String>,
    pub oci_tag: Option<String>,
    pub depends_on: Option<Vec<String>>,
    pub cluster_env_enabled: Option<bool>,
}

impl PlatformComponent {
    pub fn apply(mut self, update: PlatformComponentUpdate) -> Self {
        replace_if_some(&mut self.component_path, update.component_path);
        replace_if_some(&mut self.component_version, update.component_version);
        replace_if_some(&mut self.oci_url, update.oci_url);
        replace_if_some(&mut self.oci_tag, update.oci_tag);
        replace_if_some(&mut self.depends_on, update.depends_on);
        replace_if_some(&mut self.cluster_env_enabled, update.cluster_env_enabled);
        self
    }
}

/// A namespace definition clusters can reference.
#[derive(Object, Clone, Debug, PartialEq)]
#[oai(deny_unknown_fields)]
pub struct Namespace {
    /// Namespace name (RFC 1123 label).
    #[oai(validator(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length = 63))]
    pub id: String,
    /// Kubernetes labels.
    #[oai(default)]
    pub labels: BTreeMap<String, String>,
    /// Kubernetes annotations.
    #[oai(default)]
    pub annotations: BTreeMap<String, String>,
}

/// Partial update of a namespace definition.
#[derive(Object, Clone, Debug, Default)]
#[oai(deny_unknown_fields)]
pub struct NamespaceUpdate {
    /// Must equal the path id when present.
    pub id: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Namespace {
    pub fn apply(mut self, update: NamespaceUpdate) -> Self {
        replace_if_some(&mut self.labels, update.labels);
        replace_if_some(&mut self.annotations, update.annotations);
        self
    }
}

/// Kind of a RoleBinding subject.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubjectKind {
    User,
    Group,
    ServiceAccount,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::User => "User",
            SubjectKind::Group => "Group",
            SubjectKind::ServiceAccount => "ServiceAccount",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "User" => Some(SubjectKind::User),
            "Group" => Some(SubjectKind::Group),
            "ServiceAccount" => Some(SubjectKind::ServiceAccount),
            _ => None,
        }
    }
}

/// A RoleBinding subject, as in `rbac.authorization.k8s.io/v1`.
#[derive(Object, Clone, Debug, PartialEq)]
#[oai(deny_unknown_fields)]
pub struct Subject {
    pub kind: SubjectKind,
    #[oai(validator(min_length = 1))]
    pub name: String,
    /// API group, e.g. `rbac.authorization.k8s.io` for users and groups.
    #[oai(rename = "apiGroup", skip_serializing_if_is_none, nullable)]
    pub api_group: Option<String>,
    /// Namespace of a ServiceAccount subject.
    #[oai(skip_serializing_if_is_none, nullable)]
    pub namespace: Option<String>,
}

/// A rolebinding definition clusters can reference.
#[derive(Object, Clone, Debug, PartialEq)]
#[oai(deny_unknown_fields)]
pub struct Rolebinding {
    /// Rolebinding name (RFC 1123 label).
    #[oai(validator(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length = 63))]
    pub id: String,
    /// The ClusterRole bound.
    #[oai(validator(min_length = 1))]
    pub role: String,
    pub subjects: Vec<Subject>,
}

/// Partial update of a rolebinding definition.
#[derive(Object, Clone, Debug, Default)]
#[oai(deny_unknown_fields)]
pub struct RolebindingUpdate {
    /// Must equal the path id when present.
    pub id: Option<String>,
    #[oai(validator(min_length = 1))]
    pub role: Option<String>,
    pub subjects: Option<Vec<Subject>>,
}

impl Rolebinding {
    pub fn apply(mut self, update: RolebindingUpdate) -> Self {
        replace_if_some(&mut self.role, update.role);
        replace_if_some(&mut self.subjects, update.subjects);
        self
    }
}

/// A cluster's reference to a catalog component, with per-cluster overrides.
#[derive(Object, Clone, Debug, PartialEq)]
#[oai(deny_unknown_fields)]
pub struct ComponentRef {
    /// Catalog component id.
    pub id: String,
    /// `false` makes Flux garbage-collect the component on this cluster.
    pub enabled: bool,
    /// Overrides the catalog `oci_tag`; `null` uses the catalog value.
    #[oai(nullable)]
    pub oci_tag: Option<String>,
    /// Overrides the catalog `component_path`; `null` uses the catalog value.
    #[oai(nullable)]
    pub component_path: Option<String>,
}

/// A reference to a namespace or rolebinding definition.
#[derive(Object, Clone, Debug, PartialEq)]
#[oai(deny_unknown_fields)]
pub struct IdRef {
    pub id: String,
}

/// Helm value patches of one component: key → any JSON value.
pub type Patch = BTreeMap<String, Value>;

/// A managed cluster and everything assigned to it.
#[derive(Object, Clone, Debug, PartialEq)]
#[oai(deny_unknown_fields)]
pub struct Cluster {
    /// Cluster id (lowercase DNS subdomain).
    #[oai(validator(
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        max_length = 253
    ))]
    pub id: String,
    /// Human-facing cluster name.
    #[oai(validator(min_length = 1))]
    pub cluster_name: String,
    /// The cluster's DNS name; unique; the key of its Flux feeds.
    #[oai(validator(
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        max_length = 253
    ))]
    pub cluster_dns: String,
    pub environment: Environment,
    /// Free-form Kubernetes-style labels (`canary: "true"`, `region: eu-west`) that rollouts
    /// select waves by (`GET /clusters?label=key=value`); not part of any feed.
    #[oai(default)]
    pub labels: BTreeMap<String, String>,
    /// Assigned catalog components, in the order Flux receives them.
    pub platform_components: Vec<ComponentRef>,
    /// Assigned namespaces, in order.
    #[oai(default)]
    pub namespaces: Vec<IdRef>,
    /// Assigned rolebindings, in order.
    #[oai(default)]
    pub rolebindings: Vec<IdRef>,
    /// Helm value patches: component id → (key → JSON value).
    #[oai(default)]
    pub patches: BTreeMap<String, Patch>,
    /// Optional inventory detail; `null` and absent mean unknown.
    #[oai(skip_serializing_if_is_none, nullable, validator(minimum(value = "0")))]
    pub node_count: Option<i64>,
    #[oai(skip_serializing_if_is_none, nullable)]
    pub vm_image: Option<String>,
    #[oai(skip_serializing_if_is_none, nullable)]
    pub k0s_version: Option<String>,
}

/// Partial update of a cluster: present top-level fields replace, omitted ones are kept.
#[derive(Object, Clone, Debug, Default)]
#[oai(deny_unknown_fields)]
pub struct ClusterUpdate {
    /// Must equal the path id when present.
    pub id: Option<String>,
    #[oai(validator(min_length = 1))]
    pub cluster_name: Option<String>,
    #[oai(validator(
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        max_length = 253
    ))]
    pub cluster_dns: Option<String>,
    pub environment: Option<Environment>,
    pub labels: Option<BTreeMap<String, String>>,
    pub platform_components: Option<Vec<ComponentRef>>,
    pub namespaces: Option<Vec<IdRef>>,
    pub rolebindings: Option<Vec<IdRef>>,
    pub patches: Option<BTreeMap<String, Patch>>,
    /// `null` clears the value; absent keeps it.
    #[oai(validator(minimum(value = "0")))]
    pub node_count: MaybeUndefined<i64>,
    /// `null` clears the value; absent keeps it.
    pub vm_image: MaybeUndefined<String>,
    /// `null` clears the value; absent keeps it.
    pub k0s_version: MaybeUndefined<String>,
}

impl Cluster {
    pub fn apply(mut self, update: ClusterUpdate) -> Self {
        replace_if_some(&mut self.cluster_name, update.cluster_name);
        replace_if_some(&mut self.cluster_dns, update.cluster_dns);
        replace_if_some(&mut self.environment, update.environment);
        replace_if_some(&mut self.labels, update.labels);
        replace_if_some(&mut self.platform_components, update.platform_components);
        replace_if_some(&mut self.namespaces, update.namespaces);
        replace_if_some(&mut self.rolebindings, update.rolebindings);
        replace_if_some(&mut self.patches, update.patches);
        update.node_count.update_to(&mut self.node_count);
        update.vm_image.update_to(&mut self.vm_image);
        update.k0s_version.update_to(&mut self.k0s_version);
        self
    }
}

fn replace_if_some<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}
