//! Crash safety: SIGKILL the real binary while concurrent writers run, restart, and check
//! that every acknowledged write survived, no refused write appeared, and the file is whole.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::process::{Rng, Server, get, request};

const ROUNDS: usize = 5;
const WRITERS: usize = 4;
const ENVS: [(&str, &str); 2] = [("AUTH_TOKEN", "t"), ("API_MODE", "crud")];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    /// 2xx: must be durable.
    Acknowledged,
    /// A 4xx/5xx answer: must not be stored.
    Refused,
    /// No answer (the process died mid-request): either is fine.
    Unknown,
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("crash test seed {seed}");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    let outcomes: Arc<Mutex<BTreeMap<String, Outcome>>> = Arc::default();

    for round in 0..ROUNDS {
        let server = Server::ready(&database, &ENVS);
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let (outcomes, stop, port) = (outcomes.clone(), stop.clone(), server.port);
                std::thread::spawn(move || {
                    for n in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        // Every fifth write is invalid on purpose (an unknown label syntax).
                        let id = format!("r{round}-w{writer}-{n}");
                        let labels = if n % 5 == 4 {
                            r#"{"bad key": "x"}"#
                        } else {
                            r#"{"ok": "yes"}"#
                        };
                        let body = format!(r#"{{"id": "{id}", "labels": {labels}}}"#);
                        let outcome =
                            match request(port, "POST", "/namespaces", Some("t"), Some(&body)) {
                                Ok((status, _)) if (200..300).contains(&status) => {
                                    Outcome::Acknowledged
                                }
                                Ok((status, _)) => {
                                    assert!(status < 500, "{id}: a write got {status}");
                                    Outcome::Refused
                                }
                                Err(_) => Outcome::Unknown,
                            };
                        outcomes.lock().unwrap().insert(id, outcome);
                        if outcome == Outcome::Unknown {
                            break;
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(150 + rng.below(450)));
        server.signal("-KILL");
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            writer.join().unwrap();
        }
        drop(server);

        let conn = rusqlite::Connection::open(&database).unwrap();
        let integrity: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(integrity, "ok", "round {round}");
        let fk_violations: i64 = conn
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(fk_violations, 0, "round {round}");
        for (id, outcome) in outcomes.lock().unwrap().iter() {
            let stored: bool = conn
                .query_row("SELECT count(*) FROM namespaces WHERE id = ?1", [id], |r| {
                    r.get::<_, i64>(0)
                })
                .unwrap()
                == 1;
            match outcome {
                Outcome::Acknowledged => assert!(stored, "round {round}: acknowledged {id} lost"),
                Outcome::Refused => assert!(!stored, "round {round}: refused {id} stored"),
                Outcome::Unknown => {}
            }
        }
    }

    let acknowledged = outcomes
        .lock()
        .unwrap()
        .values()
        .filter(|o| **o == Outcome::Acknowledged)
        .count();
    eprintln!("{ROUNDS} kill rounds, {acknowledged} acknowledged writes");
    assert!(
        acknowledged >= ROUNDS * WRITERS,
        "the writers got work done ({acknowledged} acknowledged)"
    );
    // After the last kill, the service comes back and serves what was acknowledged.
    let server = Server::ready(&database, &ENVS);
    for (id, outcome) in outcomes.lock().unwrap().iter() {
        if *outcome == Outcome::Acknowledged {
            assert_eq!(
                get(server.port, &format!("/namespaces/{id}"), Some("t"))
                    .unwrap()
                    .0,
                200,
                "{id}"
            );
        }
    }
}

/// An event answered `202` is in the database: posters run against the real binary, which is
/// SIGKILLed right after a burst of answers; after restart, the newest acknowledged events of
/// every cluster are stored (a cluster keeps its newest 100).
#[test]
fn acknowledged_events_survive_sigkill() {
    const CLUSTERS: [&str; 4] = [
        "lab-dev-01.k8s.example.com",
        "edge-qa-01.k8s.example.com",
        "edge-prod-01.k8s.example.com",
        "edge-prod-02.k8s.example.com",
    ];
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("inventory.db");
    // Per poster (one cluster each), the messages answered 202, in the order answered.
    let acknowledged: Arc<Mutex<Vec<Vec<String>>>> =
        Arc::new(Mutex::new(vec![Vec::new(); CLUSTERS.len()]));
    let total = |acknowledged: &Mutex<Vec<Vec<String>>>| -> usize {
        acknowledged.lock().unwrap().iter().map(Vec::len).sum()
    };
    for round in 0..3 {
        let server = Server::ready(&database, &ENVS);
        let stop = Arc::new(AtomicBool::new(false));
        let posters: Vec<_> = CLUSTERS
            .iter()
            .enumerate()
            .map(|(poster, dns)| {
                let (acknowledged, stop, port) = (acknowledged.clone(), stop.clone(), server.port);
                std::thread::spawn(move || {
                    for n in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        // Distinct messages: each event is its own row (no redelivery).
                        let message = format!("r{round}-p{poster}-{n}");
                        let event = serde_json::json!({
                            "involvedObject": {"kind": "Kustomization", "namespace": "flux-system", "name": "apps"},
                            "severity": "info", "timestamp": "2026-12-01T10:00:00Z",
                            "message": message, "reason": "ReconciliationSucceeded",
                        });
                        let path = format!("/api/v2/flux/clusters/{dns}/events");
                        match request(port, "POST", &path, Some("t"), Some(&event.to_string())) {
                            Ok((202, _)) => acknowledged.lock().unwrap()[poster].push(message),
                            Ok((status, body)) => assert_eq!(status, 503, "{body}"),
                            Err(_) => break,
                        }
                    }
                })
            })
            .collect();
        // Kill as soon as the posters have had a burst of answers: no pause for a flush.
        while total(&acknowledged) < (round + 1) * 200 {
            std::thread::yield_now();
        }
        server.signal("-KILL");
        stop.store(true, Ordering::Relaxed);
        for poster in posters {
            poster.join().unwrap();
        }
        drop(server);
        let conn = rusqlite::Connection::open(&database).unwrap();
        for (poster, messages) in acknowledged.lock().unwrap().iter().enumerate() {
            // The newest 100 rows are kept; at most one unanswered event per round (the one
            // in flight at the kill) may be among them, so the last 97 answered must be.
            for message in messages.iter().rev().take(97) {
                let stored: i64 = conn
                    .query_row(
                        "SELECT count(*) FROM reported_events WHERE cluster_dns = ?1 AND message = ?2",
                        [CLUSTERS[poster], message.as_str()],
                        |r| r.get(0),
                    )
                    .unwrap();
                assert_eq!(
                    stored, 1,
                    "round {round}: the acknowledged event {message} was lost"
                );
            }
        }
    }
    eprintln!("{} events acknowledged over 3 kills", total(&acknowledged));
}
