//! `examples/flux/` parses, points at paths this service serves, and its templates use every
//! field of the feeds.

use serde::Deserialize;
use serde_yaml::Value;

use flux_inputs::api;
use flux_inputs::config::ApiMode;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/flux");

fn documents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{DIR}/{file}")).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .collect()
}

fn template(file: &str) -> String {
    let docs = documents(file);
    assert_eq!(docs[0]["kind"].as_str(), Some("ResourceSet"));
    docs[0]["spec"]["resourcesTemplate"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn every_provider_url_is_a_served_path() {
    let spec: Value = serde_yaml::from_str(&api::spec_yaml(ApiMode::ReadOnly)).unwrap();
    let mut seen = 0;
    for (file, scheme) in [
        ("providers-sidecar.yaml", "http://127.0.0.1:9180"),
        ("providers-https.yaml", "https://"),
    ] {
        for provider in documents(file) {
            assert_eq!(provider["kind"].as_str(), Some("ResourceSetInputProvider"));
            assert_eq!(provider["spec"]["type"].as_str(), Some("ExternalService"));
            assert!(
                provider["spec"]["secretRef"]["name"].is_string(),
                "a token is sent"
            );
            let url = provider["spec"]["url"].as_str().unwrap();
            assert!(url.starts_with(scheme), "{url}");
            assert_eq!(
                provider["spec"]["insecure"].as_bool(),
                Some(scheme.starts_with("http:")).filter(|i| *i),
                "{url}"
            );
            let path = url.split_once("://").unwrap().1;
            let path = &path[path.find('/').unwrap()..];
            let path = path
                .split('?')
                .next()
                .unwrap()
                .replace("${CLUSTER_DNS}", "{cluster_dns}");
            assert!(
                spec["paths"][path.as_str()]["get"].is_mapping(),
                "{path} is served"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 8, "four endpoints, two variants");
}

#[test]
fn templates_use_every_served_field_and_quote_free_text() {
    let components = template("resourceset-platform-components.yaml");
    for field in [
        "inputs.id",
        "inputs.enabled",
        "inputs.component_path",
        "inputs.component_version",
        "inputs.cluster_env_enabled",
        "inputs.depends_on",
        "inputs.values",
        "inputs.cluster.name",
        "inputs.cluster.environment",
        "inputs.source.oci_url",
        "inputs.source.oci_tag",
    ] {
        assert!(
            components.contains(field),
            "platform-components template uses {field}"
        );
    }
    assert!(
        components.contains("toYaml inputs.values"),
        "patches reach Helm typed, through toYaml"
    );
    let namespaces = template("resourceset-namespaces.yaml");
    for field in [
        "inputs.id",
        "inputs.labels",
        "inputs.annotations",
        "inputs.cluster",
    ] {
        assert!(
            namespaces.contains(field),
            "namespaces template uses {field}"
        );
    }
    let rolebindings = template("resourceset-rolebindings.yaml");
    for field in [
        "inputs.id",
        "inputs.role",
        "inputs.subjects",
        "apiGroup",
        "namespace",
        "inputs.cluster",
    ] {
        assert!(
            rolebindings.contains(field),
            "rolebindings template uses {field}"
        );
    }
    let clusters = template("resourceset-clusters.yaml");
    for field in [
        "inputs.id",
        "inputs.cluster_name",
        "inputs.cluster_dns",
        "inputs.environment",
    ] {
        assert!(clusters.contains(field), "clusters template uses {field}");
    }
}

#[test]
fn the_kubernetes_sidecar_example_parses_and_wires_probes_volume_and_secret() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/kubernetes/flux-inputs-sidecar.yaml"
    ))
    .unwrap();
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Secret", "PersistentVolumeClaim", "Deployment"]);
    let pod = &docs[2]["spec"]["template"]["spec"];
    let containers = pod["containers"].as_sequence().unwrap();
    assert!(containers.len() >= 2, "a sidecar next to its consumer");
    let sidecar = containers
        .iter()
        .find(|c| c["name"].as_str() == Some("flux-inputs"))
        .unwrap();
    // Loopback only, on a port the operator's manager does not bind (8080 metrics, 8081
    // probes, 9080 web UI), probed from inside the container.
    let probe = |which: &str| -> Vec<String> {
        sidecar[which]["exec"]["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(probe("livenessProbe"), ["/flux-inputs", "probe", "health"]);
    assert_eq!(probe("readinessProbe"), ["/flux-inputs", "probe", "ready"]);
    let manager = containers
        .iter()
        .find(|c| c["name"].as_str() == Some("manager"))
        .unwrap();
    let operator = manager["image"].as_str().unwrap();
    let version = operator.rsplit_once(":v").unwrap().1;
    let minor: u32 = version.split('.').nth(1).unwrap().parse().unwrap();
    assert!(
        minor >= 43,
        "{operator}: ExternalService needs v0.43.0 or later"
    );
    let env: Vec<(&str, &str)> = sidecar["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    assert!(
        env.contains(&("AUTH_TOKEN_FILE", "/secrets/auth_token")),
        "the token comes from the Secret as a file"
    );
    assert!(
        !env.iter().any(|(name, _)| *name == "AUTH_TOKEN"),
        "never a token in plain env"
    );
    let listen = env
        .iter()
        .find(|(name, _)| *name == "LISTEN_ADDR")
        .unwrap()
        .1;
    let port: u16 = listen.strip_prefix("127.0.0.1:").unwrap().parse().unwrap();
    assert!(![8080, 8081, 9080].contains(&port), "{listen}");
    let providers = std::fs::read_to_string(format!("{DIR}/providers-sidecar.yaml")).unwrap();
    assert!(
        providers.contains(&format!("http://{listen}/")),
        "the providers poll {listen}"
    );
    let image = sidecar["image"].as_str().unwrap();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains(&format!("podman push {image}")),
        "the README builds {image}"
    );
    let database = env
        .iter()
        .find(|(name, _)| *name == "DATABASE_PATH")
        .unwrap()
        .1;
    let mounts = sidecar["volumeMounts"].as_sequence().unwrap();
    let data_mount = mounts
        .iter()
        .find(|m| m["name"].as_str() == Some("data"))
        .unwrap();
    assert!(
        database.starts_with(data_mount["mountPath"].as_str().unwrap()),
        "the database is on the volume"
    );
    let volumes = pod["volumes"].as_sequence().unwrap();
    assert!(
        volumes
            .iter()
            .any(|v| v["persistentVolumeClaim"]["claimName"].as_str() == Some("flux-inputs-data"))
    );
    assert!(
        volumes
            .iter()
            .any(|v| v["secret"]["secretName"].as_str() == Some("flux-inputs-tokens"))
    );
    let secret_keys = docs[0]["stringData"].as_mapping().unwrap();
    assert!(secret_keys.contains_key("auth_token"));
}

#[test]
fn the_events_example_posts_every_event_to_the_events_route_with_a_bearer_header() {
    let docs = documents("events.yaml");
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Secret", "Provider", "Alert"]);
    let (secret, provider, alert) = (&docs[0], &docs[1], &docs[2]);

    // notification-controller reads the Secret's `headers` key as a YAML map of headers.
    let headers: Value =
        serde_yaml::from_str(secret["stringData"]["headers"].as_str().unwrap()).unwrap();
    assert!(
        headers["Authorization"]
            .as_str()
            .unwrap()
            .starts_with("Bearer ")
    );
    assert_eq!(provider["spec"]["type"].as_str(), Some("generic"));
    assert_eq!(
        provider["spec"]["secretRef"]["name"],
        secret["metadata"]["name"]
    );
    let address = provider["spec"]["address"].as_str().unwrap();
    let path = &address[address.find("/api/").unwrap()..];
    let spec: Value = serde_yaml::from_str(&api::spec_yaml(ApiMode::ReadOnly)).unwrap();
    let route = path.replace("${CLUSTER_DNS}", "{cluster_dns}");
    assert!(
        spec["paths"][route.as_str()]["post"].is_mapping(),
        "{route} is served, read-only mode included"
    );

    assert_eq!(
        alert["spec"]["providerRef"]["name"],
        provider["metadata"]["name"]
    );
    assert_eq!(
        alert["spec"]["eventSeverity"].as_str(),
        Some("info"),
        "successes settle a component's state too"
    );
    let sources: Vec<&str> = alert["spec"]["eventSources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "HelmRelease",
        "OCIRepository",
        "HelmRepository",
        "Kustomization",
        "ResourceSet",
        "ResourceSetInputProvider",
    ] {
        assert!(sources.contains(&kind), "{kind} events are sent");
    }
    assert!(alert["spec"]["eventMetadata"]["cluster"].is_string());

    // Each HelmRelease names its component in its events.
    let components = template("resourceset-platform-components.yaml");
    assert!(components.contains("event.toolkit.fluxcd.io/component: << inputs.id | quote >>"));
}
