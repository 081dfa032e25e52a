//! `TestApp`: the real application over a fresh temp-dir database seeded with the demo seed,
//! driven in process through `poem::test::TestClient`.

use poem::http::{HeaderMap, Method, StatusCode};
use poem::test::TestClient;
use poem::{EndpointExt, Response};
use serde_json::Value;
use tempfile::TempDir;

use flux_inputs::auth::Tokens;
use flux_inputs::config::{ApiMode, Config, Secret, SeedSource};
use flux_inputs::server;
use flux_inputs::store::Store;

pub const READ: &str = "read-token";
pub const WRITE: &str = "write-token";

/// Flux Operator's limit on a provider response body.
pub const FLUX_MAX_BODY: usize = 921_600;

pub struct TestApp {
    pub client: TestClient<poem::endpoint::BoxEndpoint<'static, Response>>,
    pub store: Store,
    _dir: TempDir,
}

/// One answer: status, headers and the body parsed as JSON (`Null` when empty or not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
    pub json: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status and the error body `{"error", "message"}` with this code; returns the message.
    #[track_caller]
    pub fn expect_error(&self, status: StatusCode, code: &str) -> String {
        let body = String::from_utf8_lossy(&self.bytes[..self.bytes.len().min(600)]).into_owned();
        assert_eq!(self.status, status, "body: {body}");
        assert_eq!(self.json["error"], code, "body: {body}");
        let message = self.json["message"].as_str().expect("message is a string");
        assert!(!message.is_empty());
        assert_eq!(
            self.json.as_object().unwrap().len(),
            2,
            "only error and message: {}",
            self.json
        );
        message.to_owned()
    }
}

pub fn test_config(dir: &TempDir, mode: ApiMode, seed: SeedSource) -> Config {
    Config {
        api_mode: mode,
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        database_path: dir.path().join("inventory.db"),
        seed,
        strict_dependencies: false,
        metrics_addr: None,
        poll_stale_after: 1800,
        events_require_cluster_identity: false,
        max_clusters_shrunk: 10,
        empty_feed_guard: true,
        tls: None,
        audit_keep_entries: None,
        audit_keep_days: None,
        limits: Default::default(),
        access_log: Default::default(),
        role: Default::default(),
        hub_url: None,
        read_token: Secret::new(READ),
        write_token: Secret::new(WRITE),
    }
}

impl TestApp {
    /// crud mode, demo seed.
    pub fn new() -> TestApp {
        TestApp::with(ApiMode::Crud, SeedSource::Demo)
    }

    pub fn with(mode: ApiMode, seed: SeedSource) -> TestApp {
        TestApp::configured(|config| {
            config.api_mode = mode;
            config.seed = seed;
        })
    }

    /// crud mode, demo seed, then `adjust`.
    pub fn configured(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(&dir, ApiMode::Crud, SeedSource::Demo);
        adjust(&mut config);
        let mode = config.api_mode;
        // A clock the test can move on instead of sleeping (`app.store.clock().advance(s)`).
        let store = server::open_store(&config)
            .expect("store opens")
            .with_clock(flux_inputs::clock::Clock::adjustable());
        let tokens = Tokens {
            read: config.read_token.clone(),
            write: config.write_token.clone(),
            events_require_cluster_identity: config.events_require_cluster_identity,
        };
        let app = flux_inputs::app::build_app(store.clone(), tokens, mode).boxed();
        TestApp {
            client: TestClient::new(app),
            store,
            _dir: dir,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let mut request = self.client.request(method, path);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        if let Some(body) = body {
            request = request.body_json(body);
        }
        answer(request.send().await.0).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, Some(READ), None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.call(Method::POST, path, Some(WRITE), Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Answer {
        self.call(Method::PUT, path, Some(WRITE), Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.call(Method::DELETE, path, Some(WRITE), None).await
    }

    /// A raw request, for malformed bodies and odd headers.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        let mut request = self.client.request(method, path).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        answer(request.send().await.0).await
    }

    /// Every feed of every cluster plus the fleet list, as raw bytes: a fingerprint of
    /// everything Flux can see.
    pub async fn all_feeds(&self) -> Vec<(String, StatusCode, Vec<u8>)> {
        let mut feeds = Vec::new();
        let list = self.get("/api/v2/flux/clusters").await;
        for input in list.json["inputs"].as_array().unwrap() {
            let dns = input["cluster_dns"].as_str().unwrap();
            for feed in ["platform-components", "namespaces", "rolebindings"] {
                let path = format!("/api/v2/flux/clusters/{dns}/{feed}");
                let answer = self.get(&path).await;
                feeds.push((path, answer.status, answer.bytes));
            }
        }
        feeds.push(("/api/v2/flux/clusters".into(), list.status, list.bytes));
        feeds
    }
}

pub async fn answer(response: Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().into_vec().await.unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        bytes,
        json,
    }
}

/// Flux Operator's client checks on an ExternalService response (README, "What Flux is guaranteed").
#[track_caller]
pub fn assert_flux_accepts(answer: &Answer) {
    assert!(answer.status.is_success(), "status {}", answer.status);
    assert!(
        answer.bytes.len() <= FLUX_MAX_BODY,
        "body of {} bytes",
        answer.bytes.len()
    );
    let inputs = answer.json["inputs"]
        .as_array()
        .expect("top-level inputs array");
    let mut ids = std::collections::HashSet::new();
    let mut key_set: Option<Vec<String>> = None;
    for input in inputs {
        let object = input.as_object().expect("input is an object");
        let id = object.get("id").and_then(Value::as_str).expect("string id");
        assert!(ids.insert(id.to_owned()), "duplicate id {id}");
        assert!(
            !object.contains_key("provider"),
            "Flux overwrites `provider`"
        );
        let mut keys: Vec<String> = object.keys().cloned().collect();
        keys.sort();
        match &key_set {
            None => key_set = Some(keys),
            Some(expected) => assert_eq!(&keys, expected, "every input has the same keys"),
        }
    }
}
