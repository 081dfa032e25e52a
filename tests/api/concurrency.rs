//! 8 writers and 8 readers against the real binary on 127.0.0.1 for a few seconds: no 5xx
//! (a busy database must never surface), and the final state is exactly the acknowledged
//! writes.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::process::{Server, get, request};

const WRITERS: usize = 8;
const READERS: usize = 8;
const DURATION: Duration = Duration::from_secs(3);

#[test]
fn concurrent_writers_and_readers_see_no_server_errors_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::ready(
        &dir.path().join("inventory.db"),
        &[("AUTH_TOKEN", "t"), ("API_MODE", "crud")],
    );
    let port = server.port;
    let (_, before) = get(port, "/namespaces", Some("t")).unwrap();
    let initial: BTreeSet<String> = ids(&before);

    let deadline = Instant::now() + DURATION;
    let expected: Arc<Mutex<BTreeSet<String>>> = Arc::new(Mutex::new(initial.clone()));
    let failed = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for writer in 0..WRITERS {
        let (expected, failed) = (expected.clone(), failed.clone());
        threads.push(std::thread::spawn(move || {
            let mut n = 0;
            while Instant::now() < deadline {
                let id = format!("w{writer}-{n}");
                let body = format!(r#"{{"id": "{id}", "labels": {{"writer": "w{writer}"}}}}"#);
                let (status, text) =
                    request(port, "POST", "/namespaces", Some("t"), Some(&body)).unwrap();
                assert_eq!(status, 201, "{id}: {text}");
                expected.lock().unwrap().insert(id.clone());
                // Every third namespace is deleted again; the cluster edit contends on one row.
                if n % 3 == 0 {
                    let (status, text) = request(
                        port,
                        "DELETE",
                        &format!("/namespaces/{id}"),
                        Some("t"),
                        None,
                    )
                    .unwrap();
                    assert_eq!(status, 200, "{id}: {text}");
                    expected.lock().unwrap().remove(&id);
                }
                let edit = format!(r#"{{"node_count": {n}}}"#);
                let (status, text) =
                    request(port, "PUT", "/clusters/edge-qa-01", Some("t"), Some(&edit)).unwrap();
                if status != 200 {
                    failed.store(true, Ordering::Relaxed);
                    panic!("cluster edit: {status} {text}");
                }
                n += 1;
            }
        }));
    }
    for reader in 0..READERS {
        let reads = reads.clone();
        threads.push(std::thread::spawn(move || {
            let paths = [
                "/api/v2/flux/clusters/edge-qa-01.k8s.example.com/platform-components",
                "/api/v2/flux/clusters/lab-dev-01.k8s.example.com/namespaces",
                "/api/v2/flux/clusters",
                "/namespaces",
            ];
            let mut i = reader;
            while Instant::now() < deadline {
                let path = paths[i % paths.len()];
                let (status, _) = get(port, path, Some("t")).unwrap();
                assert_eq!(status, 200, "{path}");
                reads.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    for thread in threads {
        thread.join().expect("no request failed");
    }
    assert!(!failed.load(Ordering::Relaxed));
    let (_, after) = get(port, "/namespaces", Some("t")).unwrap();
    let expected = expected.lock().unwrap().clone();
    eprintln!(
        "{} namespaces stored, {} reads",
        expected.len(),
        reads.load(Ordering::Relaxed)
    );
    assert!(expected.len() > initial.len(), "writes happened");
    assert!(reads.load(Ordering::Relaxed) > READERS, "reads happened");
    assert_eq!(
        ids(&after),
        expected,
        "the final state is the sum of acknowledged writes"
    );
}

fn ids(body: &str) -> BTreeSet<String> {
    let list: serde_json::Value = serde_json::from_str(body).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect()
}
