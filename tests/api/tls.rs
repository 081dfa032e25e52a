//! HTTPS and client certificates, with a CA and certificates generated here, checked with curl.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

use crate::process::Server;

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    Ca {
        issuer: Issuer::new(params, key),
        pem,
    }
}

/// A certificate signed by `ca`: (certificate PEM, key PEM).
fn leaf(ca: &Ca, name: &str, client: bool) -> (String, String) {
    let mut params = CertificateParams::new(vec![name.to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = KeyPair::generate().unwrap();
    (
        params.signed_by(&key, &ca.issuer).unwrap().pem(),
        key.serialize_pem(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// curl's exit code and the HTTP status (0 when no answer).
fn curl(port: u16, ca: &Path, client: Option<(&Path, &Path)>) -> (i32, u16) {
    let mut command = Command::new("curl");
    command
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            "--cacert",
        ])
        .arg(ca);
    if let Some((cert, key)) = client {
        command.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    let output = command
        .arg(format!("https://localhost:{port}/health"))
        .output()
        .expect("curl is installed");
    let status = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (output.status.code().unwrap_or(-1), status)
}

fn start_tls(dir: &Path, envs: &[(&str, String)]) -> Server {
    let mut all: Vec<(&str, &str)> = vec![("AUTH_TOKEN", "t")];
    all.extend(envs.iter().map(|(k, v)| (*k, v.as_str())));
    let server = Server::start(&dir.join("inventory.db"), &all);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // Plain HTTP on a TLS port gets no HTTP answer; wait for the port to accept.
    while std::net::TcpStream::connect(("127.0.0.1", server.port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "the TLS port opens");
        std::thread::sleep(Duration::from_millis(25));
    }
    server
}

#[test]
fn https_with_and_without_client_certificates_and_reload_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let authority = ca("flux-inputs test CA");
    let (cert, key) = leaf(&authority, "localhost", false);
    let ca_file = write(d, "ca.pem", &authority.pem);
    let cert_file = write(d, "server.pem", &cert);
    let key_file = write(d, "server.key", &key);

    // HTTPS only.
    let envs = [
        ("TLS_CERT", cert_file.display().to_string()),
        ("TLS_KEY", key_file.display().to_string()),
    ];
    let server = start_tls(d, &envs);
    assert_eq!(
        curl(server.port, &ca_file, None),
        (0, 200),
        "https with the CA"
    );
    let other = ca("some other CA");
    let other_file = write(d, "other-ca.pem", &other.pem);
    assert_ne!(
        curl(server.port, &other_file, None).0,
        0,
        "a client that does not trust the CA refuses"
    );
    drop(server);

    // mTLS: a client certificate from the client CA is required.
    let client_authority = ca("flux clients");
    let client_ca_file = write(d, "client-ca.pem", &client_authority.pem);
    let (client_cert, client_key) = leaf(&client_authority, "edge-qa-01.k8s.example.com", true);
    let client_cert_file = write(d, "client.pem", &client_cert);
    let client_key_file = write(d, "client.key", &client_key);
    let (rogue_cert, rogue_key) = leaf(&other, "rogue.example.com", true);
    let rogue_cert_file = write(d, "rogue.pem", &rogue_cert);
    let rogue_key_file = write(d, "rogue.key", &rogue_key);
    let mut envs = envs.to_vec();
    envs.push(("TLS_CLIENT_CA", client_ca_file.display().to_string()));
    let server = start_tls(d, &envs);
    assert_eq!(
        curl(
            server.port,
            &ca_file,
            Some((&client_cert_file, &client_key_file))
        ),
        (0, 200)
    );
    assert_eq!(
        curl(server.port, &ca_file, None).1,
        0,
        "no client certificate: no answer"
    );
    assert_eq!(
        curl(
            server.port,
            &ca_file,
            Some((&rogue_cert_file, &rogue_key_file))
        )
        .1,
        0,
        "rejected client certificate"
    );

    // SIGHUP re-reads the files: a certificate from a new CA takes over for new connections.
    let renewed = ca("renewed CA");
    let (cert, key) = leaf(&renewed, "localhost", false);
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let renewed_file = write(d, "renewed-ca.pem", &renewed.pem);
    server.signal("-HUP");
    let client = Some((client_cert_file.as_path(), client_key_file.as_path()));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while curl(server.port, &renewed_file, client) != (0, 200) {
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate is served after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_ne!(
        curl(server.port, &ca_file, client).0,
        0,
        "the old certificate is gone"
    );

    // A broken pair on reload keeps the current certificates: a garbage key, an empty
    // certificate, and a valid certificate with the key of another one.
    let (good_cert, _) = leaf(&renewed, "localhost", false);
    let (_, stranger_key) = leaf(&renewed, "localhost", false);
    // The count of refused reloads (`/metrics`) is the evidence that each reload ran.
    let refused = || -> u64 {
        let (_, metrics) = request(
            server.port,
            &renewed_file,
            client,
            Some("t"),
            "GET",
            "/metrics",
            None,
        );
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("flux_inputs_tls_reloads_total{outcome=\"refused\"} "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(u64::MAX)
    };
    assert_eq!(refused(), 0, "no reload refused yet");
    for (expected, (cert, key)) in (1..).zip([
        (good_cert.as_str(), "not a key"),
        ("", stranger_key.as_str()),
        (good_cert.as_str(), stranger_key.as_str()),
    ]) {
        std::fs::write(&cert_file, cert).unwrap();
        std::fs::write(&key_file, key).unwrap();
        server.signal("-HUP");
        crate::process::eventually(
            "the reload ran and was refused",
            Duration::from_secs(10),
            || refused() == expected,
        );
        assert_eq!(
            curl(server.port, &renewed_file, client),
            (0, 200),
            "still serving the last good certificate"
        );
    }
}

#[test]
fn empty_garbage_or_mismatched_files_stop_start_up_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let authority = ca("start-up CA");
    let (cert, key) = leaf(&authority, "localhost", false);
    let (_, other_key) = leaf(&authority, "localhost", false);
    for (name, cert, key, expected) in [
        ("empty", "", key.as_str(), "no certificate"),
        (
            "garbage",
            "not a certificate",
            key.as_str(),
            "no certificate",
        ),
        (
            "mismatched",
            cert.as_str(),
            other_key.as_str(),
            "does not belong",
        ),
    ] {
        let cert = write(dir.path(), &format!("{name}.pem"), cert);
        let key = write(dir.path(), &format!("{name}.key"), key);
        let stderr = start_failure(dir.path(), &cert, &key);
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
}

fn start_failure(dir: &Path, cert: &Path, key: &Path) -> String {
    let output = Command::new(crate::process::BINARY)
        .env_clear()
        .env("AUTH_TOKEN", "t")
        .env("DATABASE_PATH", dir.join("x.db"))
        .env(
            "LISTEN_ADDR",
            format!("127.0.0.1:{}", crate::process::free_port()),
        )
        .env("TLS_CERT", cert)
        .env("TLS_KEY", key)
        .output()
        .unwrap();
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_bad_certificate_stops_start_up_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "server.pem", "not a certificate");
    let key = write(dir.path(), "server.key", "not a key");
    let output = Command::new(crate::process::BINARY)
        .env_clear()
        .env("AUTH_TOKEN", "t")
        .env("DATABASE_PATH", dir.path().join("x.db"))
        .env(
            "LISTEN_ADDR",
            format!("127.0.0.1:{}", crate::process::free_port()),
        )
        .env("TLS_CERT", &cert)
        .env("TLS_KEY", &key)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot listen"), "{stderr}");
}

/// One request through curl over HTTPS: the HTTP status and the body (with curl's errors).
/// HTTP/1.1: over h2, an answer sent before the request body was read (401 comes before
/// the body) ends the stream with RST_STREAM(NO_ERROR), which RFC 9113 §8.1 allows and Go's
/// client (notification-controller's) accepts, but which curl 7.88 reports as an error.
fn request(
    port: u16,
    ca: &Path,
    client: Option<(&Path, &Path)>,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let mut command = Command::new("curl");
    command
        .args([
            "-sS",
            "--http1.1",
            "-w",
            "\n%{http_code}",
            "--max-time",
            "5",
            "-X",
            method,
        ])
        .arg("--cacert")
        .arg(ca);
    if let Some((cert, key)) = client {
        command.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    if let Some(body) = body {
        command.args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ]);
    }
    let output = command
        .arg(format!("https://localhost:{port}{path}"))
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let body = format!("{body}{}", String::from_utf8_lossy(&output.stderr));
    (status.trim().parse().unwrap_or(0), body)
}

#[test]
fn a_client_certificate_naming_a_cluster_acts_as_its_scoped_token_and_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let authority = ca("flux-inputs test CA");
    let (cert, key) = leaf(&authority, "localhost", false);
    let ca_file = write(d, "ca.pem", &authority.pem);
    let envs = [
        (
            "TLS_CERT",
            write(d, "server.pem", &cert).display().to_string(),
        ),
        (
            "TLS_KEY",
            write(d, "server.key", &key).display().to_string(),
        ),
        ("TLS_CLIENT_CA", ca_file.display().to_string()),
    ];
    let client = |name: &str, file: &str| {
        let (cert, key) = leaf(&authority, name, true);
        (
            write(d, &format!("{file}.pem"), &cert),
            write(d, &format!("{file}.key"), &key),
        )
    };
    let qa = client("edge-qa-01.k8s.example.com", "qa");
    let stranger = client("build-agent.example.com", "stranger");
    let wildcard = client("*.k8s.example.com", "wildcard");
    let server = start_tls(d, &envs);
    let port = server.port;
    let as_qa = Some((qa.0.as_path(), qa.1.as_path()));
    let qa_feed = "/api/v2/flux/clusters/edge-qa-01.k8s.example.com/platform-components";
    let dev_feed = "/api/v2/flux/clusters/lab-dev-01.k8s.example.com/platform-components";
    let event = r#"{"involvedObject":{"kind":"HelmRelease","namespace":"flux-system","name":"traefik"},
        "severity":"info","timestamp":"2026-08-20T10:00:00Z","message":"ok","reason":"InstallSucceeded",
        "metadata":{"revision":"33.2.1"}}"#;

    // Its own feeds and events, without a token.
    let (status, body) = request(port, &ca_file, as_qa, None, "GET", qa_feed, None);
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with(r#"{"inputs":["#));
    let qa_events = "/api/v2/flux/clusters/edge-qa-01.k8s.example.com/events";
    assert_eq!(
        request(port, &ca_file, as_qa, None, "POST", qa_events, Some(event)).0,
        202
    );
    // Nothing more.
    assert_eq!(
        request(port, &ca_file, as_qa, None, "GET", dev_feed, None).0,
        401
    );
    let dev_events = "/api/v2/flux/clusters/lab-dev-01.k8s.example.com/events";
    let refused = request(port, &ca_file, as_qa, None, "POST", dev_events, Some(event));
    assert_eq!(refused.0, 401, "{}", refused.1);
    for path in [
        "/status/fleet",
        "/status/clusters",
        "/api/v2/flux/clusters",
        "/metrics",
    ] {
        assert_eq!(
            request(port, &ca_file, as_qa, None, "GET", path, None).0,
            401,
            "{path}"
        );
    }
    // A bearer token is judged by the bearer rules, certificate or not.
    assert_eq!(
        request(port, &ca_file, as_qa, Some("t"), "GET", dev_feed, None).0,
        200
    );
    assert_eq!(
        request(port, &ca_file, as_qa, Some("nope"), "GET", qa_feed, None).0,
        401
    );
    // The report was stored as the cluster's own.
    let (status, body) = request(
        port,
        &ca_file,
        as_qa,
        Some("t"),
        "GET",
        "/status/clusters/edge-qa-01",
        None,
    );
    assert_eq!(status, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let traefik = status["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == "traefik")
        .unwrap();
    assert_eq!(traefik["authenticated_as"], "cluster");

    // Certificates that name no cluster, or every cluster, get what their token gives.
    for (cert, key) in [&stranger, &wildcard] {
        let who = Some((cert.as_path(), key.as_path()));
        assert_eq!(
            request(port, &ca_file, who, None, "GET", qa_feed, None).0,
            401
        );
        assert_eq!(
            request(port, &ca_file, who, Some("t"), "GET", qa_feed, None).0,
            200
        );
    }
}

/// Sockets that never start a handshake do not keep TLS clients out, HTTPS is HTTP/1.1
/// (ALPN offers nothing else, so an HTTP/2 client falls back), and answers carry HSTS.
#[test]
fn idle_sockets_do_not_delay_a_tls_client_and_alpn_offers_http1_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let authority = ca("flux-inputs test CA");
    let (cert, key) = leaf(&authority, "localhost", false);
    let ca_file = write(d, "ca.pem", &authority.pem);
    let envs = [
        (
            "TLS_CERT",
            write(d, "server.pem", &cert).display().to_string(),
        ),
        (
            "TLS_KEY",
            write(d, "server.key", &key).display().to_string(),
        ),
        ("HEADER_TIMEOUT_SECONDS", "60".to_owned()),
    ];
    let server = start_tls(d, &envs);
    let idle: Vec<std::net::TcpStream> = (0..300)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap())
        .collect();
    let headers = d.join("headers.txt");
    let output = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-D"])
        .arg(&headers)
        .args(["-w", "%{http_code} %{http_version}"])
        .args(["--http2", "--max-time", "10", "--cacert"])
        .arg(&ca_file)
        .arg(format!("https://localhost:{}/health", server.port))
        .output()
        .expect("curl is installed");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "200 1.1",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let headers = std::fs::read_to_string(&headers)
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        headers.contains("strict-transport-security: max-age=31536000"),
        "HSTS under TLS: {headers}"
    );
    // The answer did not wait for the idle sockets to be cut off: they are all still open.
    for mut socket in idle {
        use std::io::Read;
        socket.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(
            socket.read(&mut byte).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock),
            "an idle socket is still open"
        );
    }
}
