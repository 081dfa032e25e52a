//! The example ResourceSets rendered by Go's text/template with sprig, the way Flux Operator
//! renders them (tests/render/render.go; tests/prerequisites.sh installs Go and the two
//! libraries from Debian), for every cluster of the demo seed and of a generated fleet with
//! free-text names, `+` versions, HTTPS repositories and 53-character ids; every object is
//! then read as the Kubernetes API server, Flux Operator and helm-controller would read it.

use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use serde_json::{Value, json};

use flux_inputs::config::{ApiMode, SeedSource};

use crate::helpers::TestApp;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The renderer, built once per test process (a `go run` per feed would compile each time).
fn renderer() -> &'static Path {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = Path::new(ROOT).join("target/render");
        std::fs::create_dir_all(&dir).unwrap();
        let binary = dir.join(format!("render-{}", std::process::id()));
        let output = Command::new("go")
            .args(["build", "-o"])
            .arg(&binary)
            .arg(format!("{ROOT}/tests/render/render.go"))
            .env("GOPATH", "/usr/share/gocode")
            .env("GO111MODULE", "off")
            .env("GOFLAGS", "")
            .env("GOCACHE", dir.join("go-cache"))
            .output()
            .expect("go is installed (tests/prerequisites.sh installs golang-go)");
        assert!(
            output.status.success(),
            "go build render.go: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        binary
    })
}

/// Renders `resourceset` (a file of examples/flux) for every input of `feed`.
fn render(dir: &Path, resourceset: &str, feed: &[u8]) -> Vec<Value> {
    let feed_file = dir.join(format!("{resourceset}.json"));
    std::fs::write(&feed_file, feed).unwrap();
    let output = Command::new(renderer())
        .arg(format!("{ROOT}/examples/flux/{resourceset}"))
        .arg(&feed_file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "render {resourceset}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_json::to_value(serde_yaml::Value::deserialize(doc).unwrap()).unwrap())
        .filter(|doc| !doc.is_null())
        .collect()
}

fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} in {docs:?}"))
}

#[tokio::test]
async fn helm_releases_receive_patches_as_typed_values() {
    let app = TestApp::new();
    let dir = tempfile::tempdir().unwrap();
    let feed = app
        .get("/api/v2/flux/clusters/edge-prod-01.k8s.example.com/platform-components")
        .await;
    let docs = render(
        dir.path(),
        "resourceset-platform-components.yaml",
        &feed.bytes,
    );

    let prometheus = object(&docs, "HelmRelease", "kube-prometheus-stack");
    assert_eq!(
        prometheus["spec"]["values"],
        json!({"prometheus": {"prometheusSpec": {
            "retention": "15d",
            "resources": {"requests": {"cpu": "500m", "memory": "2Gi"}}
        }}}),
        "an object patch arrives as an object, not a list of string fragments"
    );
    let traefik = object(&docs, "HelmRelease", "traefik");
    assert_eq!(
        traefik["spec"]["values"],
        json!({"deployment": {"replicas": 3}, "ports": {"websecure": {"tls": {"enabled": true}}},
               "service": {"type": "LoadBalancer"}}),
        "numbers and booleans keep their types"
    );
    // No patches: an empty object, which Helm treats as no values.
    let cert_manager = object(&docs, "HelmRelease", "cert-manager");
    assert_eq!(cert_manager["spec"]["values"], json!({}));
    assert_eq!(
        cert_manager["metadata"]["annotations"]["event.toolkit.fluxcd.io/component"],
        "cert-manager"
    );
    assert_eq!(
        object(&docs, "OCIRepository", "cert-manager")["spec"]["ref"]["tag"],
        "v1.15.4",
        "the cluster's pinned tag"
    );
}

#[tokio::test]
async fn both_source_kinds_render_and_latest_means_unpinned() {
    let app = TestApp::new();
    let dir = tempfile::tempdir().unwrap();
    let feed = app
        .get("/api/v2/flux/clusters/edge-qa-01.k8s.example.com/platform-components")
        .await;
    let docs = render(
        dir.path(),
        "resourceset-platform-components.yaml",
        &feed.bytes,
    );
    // https:// → a HelmRepository, and the release names the chart.
    let repository = object(&docs, "HelmRepository", "external-secrets");
    assert_eq!(
        repository["spec"]["url"],
        "https://charts.external-secrets.io"
    );
    let chart = &object(&docs, "HelmRelease", "external-secrets")["spec"]["chart"]["spec"];
    assert_eq!(chart["chart"], "external-secrets");
    assert_eq!(chart["version"], "0.10.7");
    assert_eq!(
        chart["sourceRef"],
        json!({"kind": "HelmRepository", "name": "external-secrets"})
    );
    // "latest": the newest chart, not a tag named latest.
    let podinfo = object(&docs, "OCIRepository", "podinfo");
    assert_eq!(podinfo["spec"]["ref"], json!({"semver": "*"}));
    // A per-environment chart in a registry that holds one per environment.
    assert_eq!(
        object(&docs, "OCIRepository", "traefik")["spec"]["url"],
        "oci://registry.example.com/platform/charts/traefik/qa"
    );
    let release = object(&docs, "HelmRelease", "traefik");
    assert_eq!(release["spec"]["install"]["createNamespace"], true);
}

/// A fleet generated by bench/generate.py, as a seed file.
fn generated_fleet(dir: &Path, clusters: usize) -> std::path::PathBuf {
    let output = Command::new("python3")
        .arg(format!("{ROOT}/bench/generate.py"))
        .args(["--clusters", &clusters.to_string(), "--components", "60"])
        .args([
            "--per-cluster",
            "12",
            "--namespaces",
            "4",
            "--rolebindings",
            "3",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let path = dir.join("fleet.json");
    std::fs::write(&path, output.stdout).unwrap();
    path
}

#[tokio::test]
async fn every_example_renders_into_objects_kubernetes_and_flux_accept() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = generated_fleet(dir.path(), 150);
    let mut checked = 0;
    for seed in [SeedSource::Demo, SeedSource::File(fleet)] {
        let app = TestApp::with(ApiMode::ReadOnly, seed);
        let list = app.get("/api/v2/flux/clusters?limit=10000").await.json;
        let providers = kubernetes::Providers::read(ROOT);
        let clusters = list["inputs"].as_array().unwrap();
        for cluster in clusters {
            let dns = cluster["cluster_dns"].as_str().unwrap();
            let mut objects = Vec::new();
            for (feed, resourceset) in [
                ("namespaces", "resourceset-namespaces.yaml"),
                (
                    "platform-components",
                    "resourceset-platform-components.yaml",
                ),
                ("rolebindings", "resourceset-rolebindings.yaml"),
            ] {
                let body = app
                    .get(&format!("/api/v2/flux/clusters/{dns}/{feed}"))
                    .await;
                let inputs = body.json["inputs"].as_array().unwrap().len();
                providers.keeps(feed, inputs);
                objects.extend(render(dir.path(), resourceset, &body.bytes));
            }
            let problems = kubernetes::problems(&objects);
            assert!(problems.is_empty(), "{dns}:\n{}", problems.join("\n"));
            checked += 1;
        }
        // The management cluster's fleet list, shard by shard as the providers ask for it.
        for (url, limit) in providers.shards() {
            let answer = app.get(&url).await;
            assert_eq!(answer.status, poem::http::StatusCode::OK, "{url}");
            let inputs = answer.json["inputs"].as_array().unwrap().len();
            assert!(
                inputs <= limit,
                "{url}: {inputs} inputs, filter.limit {limit}"
            );
            let objects = render(dir.path(), "resourceset-clusters.yaml", &answer.bytes);
            let problems = kubernetes::problems(&objects);
            assert!(problems.is_empty(), "{url}:\n{}", problems.join("\n"));
        }
    }
    eprintln!("{checked} clusters rendered and checked");
}

/// What the Kubernetes API server, Flux Operator and helm-controller refuse, for the kinds
/// the examples render. Rules as Kubernetes states them (apimachinery's validation), not
/// flux-inputs' own functions.
mod kubernetes {
    use std::collections::HashSet;

    use regex::Regex;
    use serde_json::Value;

    fn matches(pattern: &str, text: &str) -> bool {
        Regex::new(pattern).unwrap().is_match(text)
    }

    fn dns_label(name: &str) -> bool {
        name.len() <= 63 && matches(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", name)
    }

    fn dns_subdomain(name: &str) -> bool {
        name.len() <= 253
            && matches(
                r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                name,
            )
    }

    fn qualified_name(key: &str) -> bool {
        let (prefix, name) = key
            .rsplit_once('/')
            .map_or((None, key), |(p, n)| (Some(p), n));
        prefix.is_none_or(dns_subdomain)
            && name.len() <= 63
            && matches(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$", name)
    }

    fn label_value(value: &str) -> bool {
        value.len() <= 63 && matches(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", value)
    }

    /// Every problem found in one cluster's rendered objects.
    pub fn problems(objects: &[Value]) -> Vec<String> {
        let mut found = Vec::new();
        let mut fail = |what: String| found.push(what);
        let names = |kind: &str| -> HashSet<&str> {
            objects
                .iter()
                .filter(|o| o["kind"] == kind)
                .filter_map(|o| o["metadata"]["name"].as_str())
                .collect()
        };
        let (namespaces, releases) = (names("Namespace"), names("HelmRelease"));
        let (oci, helm_repositories) = (names("OCIRepository"), names("HelmRepository"));
        let mut seen = HashSet::new();
        for object in objects {
            let kind = object["kind"].as_str().unwrap_or_default();
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            let at = format!("{kind} {name}");
            if !seen.insert((kind, name)) {
                fail(format!("{at}: twice in one set"));
            }
            let named = if kind == "Namespace" {
                dns_label(name)
            } else {
                dns_subdomain(name)
            };
            if !named {
                fail(format!("{at}: not a valid {kind} name"));
            }
            let metadata = &object["metadata"];
            for (key, value) in metadata["labels"].as_object().into_iter().flatten() {
                let value = value.as_str().unwrap_or("<not a string>");
                if !qualified_name(key) || !label_value(value) {
                    fail(format!("{at}: label {key}={value:?}"));
                }
            }
            for (key, value) in metadata["annotations"].as_object().into_iter().flatten() {
                if !qualified_name(key) || !value.is_string() {
                    fail(format!("{at}: annotation {key}"));
                }
            }
            let spec = &object["spec"];
            match kind {
                "HelmRelease" => {
                    let release = spec["releaseName"].as_str().unwrap_or(name);
                    if release.len() > 53 || !dns_subdomain(release) {
                        fail(format!("{at}: releaseName {release:?} (Helm: at most 53)"));
                    }
                    if !spec["interval"].is_string() {
                        fail(format!("{at}: no interval"));
                    }
                    let target = spec["targetNamespace"].as_str();
                    let created = spec["install"]["createNamespace"] == true;
                    if let Some(target) = target
                        && !namespaces.contains(target)
                        && !created
                    {
                        fail(format!(
                            "{at}: targetNamespace {target} neither exists nor is created"
                        ));
                    }
                    match (spec["chartRef"].is_object(), spec["chart"].is_object()) {
                        (true, false) => {
                            let source = spec["chartRef"]["name"].as_str().unwrap_or_default();
                            if spec["chartRef"]["kind"] != "OCIRepository" || !oci.contains(source)
                            {
                                fail(format!(
                                    "{at}: chartRef to a missing OCIRepository {source}"
                                ));
                            }
                        }
                        (false, true) => {
                            let chart = &spec["chart"]["spec"];
                            let source = chart["sourceRef"]["name"].as_str().unwrap_or_default();
                            if chart["sourceRef"]["kind"] != "HelmRepository"
                                || !helm_repositories.contains(source)
                            {
                                fail(format!(
                                    "{at}: chart from a missing HelmRepository {source}"
                                ));
                            }
                            if chart["chart"].as_str().is_none_or(str::is_empty) {
                                fail(format!("{at}: no chart name"));
                            }
                            if chart["version"]
                                .as_str()
                                .is_none_or(|v| v.is_empty() || v == "latest")
                            {
                                fail(format!(
                                    "{at}: chart version {:?} is not a version or range",
                                    chart["version"]
                                ));
                            }
                        }
                        _ => fail(format!("{at}: exactly one of chart and chartRef")),
                    }
                    for dependency in spec["dependsOn"].as_array().into_iter().flatten() {
                        let dependency = dependency["name"].as_str().unwrap_or_default();
                        if !releases.contains(dependency) {
                            fail(format!("{at}: dependsOn {dependency}, not in this set"));
                        }
                    }
                    if !spec["values"].is_object() {
                        fail(format!("{at}: values is not an object"));
                    }
                }
                "OCIRepository" => {
                    let url = spec["url"].as_str().unwrap_or_default();
                    if !url.starts_with("oci://") {
                        fail(format!("{at}: url {url:?}"));
                    }
                    let reference = &spec["ref"];
                    match (reference["tag"].as_str(), reference["semver"].as_str()) {
                        (Some(tag), None)
                            if matches(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", tag) => {}
                        (None, Some(range)) if !range.is_empty() => {}
                        _ => fail(format!(
                            "{at}: ref {reference} is no OCI tag or semver range"
                        )),
                    }
                    if !spec["interval"].is_string() {
                        fail(format!("{at}: no interval"));
                    }
                }
                "HelmRepository" => {
                    let url = spec["url"].as_str().unwrap_or_default();
                    if !url.starts_with("https://") && !url.starts_with("http://") {
                        fail(format!("{at}: url {url:?}"));
                    }
                    if !spec["interval"].is_string() {
                        fail(format!("{at}: no interval"));
                    }
                }
                "ClusterRoleBinding" => {
                    if object["roleRef"]["name"].as_str().is_none_or(str::is_empty) {
                        fail(format!("{at}: roleRef.name"));
                    }
                    for subject in object["subjects"].as_array().into_iter().flatten() {
                        let kind = subject["kind"].as_str().unwrap_or_default();
                        if !["User", "Group", "ServiceAccount"].contains(&kind)
                            || subject["name"].as_str().is_none_or(str::is_empty)
                            || (kind == "ServiceAccount" && !subject["namespace"].is_string())
                        {
                            fail(format!("{at}: subject {subject}"));
                        }
                    }
                }
                "Namespace" | "ConfigMap" => {}
                other => fail(format!("{at}: an unexpected kind {other}")),
            }
        }
        found
    }

    /// The providers of examples/flux: what each keeps (`filter.limit`, default 100).
    pub struct Providers {
        /// Per-cluster feed ("platform-components", ...) → the smallest filter.limit of the
        /// provider files that poll it.
        feeds: Vec<(String, usize)>,
        /// The fleet list shards: (path and query, filter.limit).
        shards: Vec<(String, usize)>,
    }

    impl Providers {
        pub fn read(root: &str) -> Providers {
            use serde::Deserialize;
            let (mut feeds, mut shards) = (Vec::new(), Vec::new());
            for file in ["providers-sidecar.yaml", "providers-https.yaml"] {
                let text = std::fs::read_to_string(format!("{root}/examples/flux/{file}")).unwrap();
                for doc in serde_yaml::Deserializer::from_str(&text) {
                    let provider = serde_yaml::Value::deserialize(doc).unwrap();
                    let url = provider["spec"]["url"].as_str().unwrap();
                    let limit =
                        provider["spec"]["filter"]["limit"].as_u64().unwrap_or(100) as usize;
                    let path = &url[url.find("/api/").unwrap()..];
                    match path.rsplit_once("${CLUSTER_DNS}/") {
                        Some((_, feed)) => feeds.push((feed.to_owned(), limit)),
                        None => {
                            let asked: usize = path
                                .split(['?', '&'])
                                .find_map(|p| p.strip_prefix("limit="))
                                .unwrap_or_else(|| panic!("{file}: {url} asks no limit"))
                                .parse()
                                .unwrap();
                            assert!(
                                asked <= limit,
                                "{file}: {url} asks for {asked} clusters, filter.limit keeps {limit}"
                            );
                            shards.push((path.to_owned(), limit));
                        }
                    }
                }
            }
            Providers { feeds, shards }
        }

        /// Asserts that every provider of `feed` keeps `inputs` inputs.
        pub fn keeps(&self, feed: &str, inputs: usize) {
            for (polled, limit) in &self.feeds {
                if polled == feed {
                    assert!(
                        inputs <= *limit,
                        "{feed}: {inputs} inputs, filter.limit {limit}"
                    );
                }
            }
        }

        pub fn shards(&self) -> Vec<(String, usize)> {
            self.shards.clone()
        }
    }
}
