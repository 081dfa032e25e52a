//! Configuration: built-in defaults < TOML file (`--config PATH`) < environment.
//!
//! Environment names are flux-resourceset's (`API_MODE`, `LISTEN_ADDR`, `DATABASE_URL`,
//! `SEED_FILE`, `AUTH_TOKEN`, `CRUD_AUTH_TOKEN`) plus `DATABASE_PATH`. Tokens bypass figment:
//! it parses environment values as TOML-like scalars, which would turn `AUTH_TOKEN=0123` into
//! the integer 123.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use crate::store::Role;

/// Environment variables read through figment (tokens are read separately).
const ENV_KEYS: &[&str] = &[
    "METRICS_ADDR",
    "POLL_STALE_AFTER",
    "EVENTS_REQUIRE_CLUSTER_IDENTITY",
    "MAX_CLUSTERS_SHRUNK",
    "EMPTY_FEED_GUARD",
    "AUDIT_KEEP_ENTRIES",
    "AUDIT_KEEP_DAYS",
    "API_MODE",
    "LISTEN_ADDR",
    "DATABASE_PATH",
    "SEED_FILE",
    "STRICT_DEPENDENCIES",
    "HEADER_TIMEOUT_SECONDS",
    "BODY_TIMEOUT_SECONDS",
    "IDLE_TIMEOUT_SECONDS",
    "MAX_CONNECTIONS",
    "ACCESS_LOG",
    "ROLE",
    "HUB_URL",
];

/// Write bodies above this are refused with 413 (write routes only: a limit on GETs would
/// break Flux's polls, which send no Content-Length). The console's forms carry as much.
pub const MAX_WRITE_BODY_BYTES: usize = 1024 * 1024;

/// Which routes exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ApiMode {
    /// Flux and service endpoints only; CRUD paths answer 404.
    #[default]
    #[serde(rename = "read-only", alias = "readonly", alias = "read_only")]
    ReadOnly,
    /// Everything, including the CRUD API.
    #[serde(rename = "crud")]
    Crud,
}

/// Which requests get an access line: every one (the default), those answered with an
/// error status, or none. Metrics count every request either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLog {
    #[default]
    All,
    Errors,
    Off,
}

/// Where the initial inventory of a new database comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedSource {
    /// `seed/demo.json`, compiled in: the default, so a first start shows something.
    Demo,
    /// A seed file (flux-resourceset format).
    File(PathBuf),
    /// Start empty (`SEED_FILE=none` or empty).
    None,
}

/// A bearer token. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// PEM files for HTTPS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
    /// CA that client certificates must chain to; set it to require client certificates.
    pub client_ca: Option<PathBuf>,
}

/// The file and environment layers, as figment extracts them.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Layered {
    api_mode: ApiMode,
    listen_addr: SocketAddr,
    database_path: PathBuf,
    /// Path, `demo`, or `none`/empty; unset means `demo`.
    seed_file: Option<String>,
    /// Refuse writes that leave a dependency unassigned on some cluster.
    strict_dependencies: bool,
    /// A second listener serving only `/metrics`, without a token.
    metrics_addr: Option<SocketAddr>,
    /// Seconds without a poll after which `/status/clusters` reports a cluster stale.
    poll_stale_after: u64,
    /// Accept a cluster's events only with its own scoped token.
    events_require_cluster_identity: bool,
    /// A write may remove or disable inputs on this many clusters without `?confirm=`.
    max_clusters_shrunk: u64,
    /// Emptying a cluster's feed needs `?confirm=`.
    empty_feed_guard: bool,
    /// HTTPS: `[tls] cert`, `key` and, for client certificates, `client_ca` (PEM files).
    tls: Option<TlsFiles>,
    /// Keep at most this many audit entries (the newest).
    audit_keep_entries: Option<u64>,
    /// Keep audit entries at most this many days.
    audit_keep_days: Option<u64>,
    /// A client must send a request's headers within this many seconds.
    header_timeout_seconds: u64,
    /// ... and its body within this many seconds after the headers.
    body_timeout_seconds: u64,
    /// A connection with no traffic for this long is closed.
    idle_timeout_seconds: u64,
    /// Connections served at once; more wait in the kernel's accept queue.
    max_connections: usize,
    /// `all`, `errors` or `off`.
    access_log: AccessLog,
    /// `standalone`, `hub` or `replica`.
    role: Role,
    /// A replica's hub, named in its answers to writes.
    hub_url: Option<String>,
    /// Tokens may sit in a root-only config file; the environment overrides them.
    auth_token: Option<String>,
    crud_auth_token: Option<String>,
}

impl Default for Layered {
    fn default() -> Self {
        Layered {
            api_mode: ApiMode::ReadOnly,
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            // Under systemd (`StateDirectory=`) the database lives in the state directory.
            database_path: env_var("STATE_DIRECTORY")
                .map(|dir| PathBuf::from(dir).join("flux-inputs.db"))
                .unwrap_or_else(|| PathBuf::from("flux-inputs.db")),
            seed_file: None,
            strict_dependencies: false,
            metrics_addr: None,
            poll_stale_after: crate::store::polls::DEFAULT_STALE_AFTER_SECONDS,
            events_require_cluster_identity: false,
            max_clusters_shrunk: crate::domain::blast::DEFAULT_MAX_CLUSTERS_SHRUNK,
            empty_feed_guard: true,
            tls: None,
            audit_keep_entries: None,
            audit_keep_days: None,
            header_timeout_seconds: Limits::default().header_timeout.as_secs(),
            body_timeout_seconds: Limits::default().body_timeout.as_secs(),
            idle_timeout_seconds: Limits::default().idle_timeout.as_secs(),
            max_connections: Limits::default().max_connections,
            access_log: AccessLog::All,
            role: Role::Standalone,
            hub_url: None,
            auth_token: None,
            crud_auth_token: None,
        }
    }
}

/// The resolved configuration the service runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub api_mode: ApiMode,
    pub listen_addr: SocketAddr,
    pub database_path: PathBuf,
    pub seed: SeedSource,
    pub strict_dependencies: bool,
    /// Where `/metrics` is also served without a token (keep it on loopback).
    pub metrics_addr: Option<SocketAddr>,
    /// Seconds without a poll after which a cluster is reported stale.
    pub poll_stale_after: u64,
    /// Accept a cluster's events only with its own scoped token (the read token would let
    /// any cluster report for any other).
    pub events_require_cluster_identity: bool,
    /// A write may remove or disable inputs on this many clusters without `?confirm=`
    /// (emptying a feed always needs it, unless `empty_feed_guard` is off).
    pub max_clusters_shrunk: u64,
    /// Emptying a cluster's feed needs `?confirm=` (off: as flux-resourceset, for clients
    /// that empty feeds on purpose; the count-based limit still applies).
    pub empty_feed_guard: bool,
    /// Serve HTTPS with these files (re-read on SIGHUP).
    pub tls: Option<TlsFiles>,
    /// Audit retention: the newest N entries, and/or entries younger than D days.
    pub audit_keep_entries: Option<u64>,
    pub audit_keep_days: Option<u64>,
    /// Timeouts and the connection cap.
    pub limits: Limits,
    /// Which requests get an access log line.
    pub access_log: AccessLog,
    /// Standalone, hub or replica (README, "Edge replicas on Litestream").
    pub role: Role,
    /// For a replica: the hub writes go to.
    pub hub_url: Option<String>,
    /// Reads (GET/HEAD).
    pub read_token: Secret,
    /// Writes; `CRUD_AUTH_TOKEN`, else `AUTH_TOKEN`. It may also read.
    pub write_token: Secret,
}

/// What every connection lives under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_timeout: std::time::Duration,
    pub body_timeout: std::time::Duration,
    pub idle_timeout: std::time::Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    /// Generous for Flux and CI over a slow uplink; short enough that idle or stalled
    /// clients cannot pile up (the unit's `LimitNOFILE` is well above the cap).
    fn default() -> Self {
        Limits {
            header_timeout: std::time::Duration::from_secs(10),
            body_timeout: std::time::Duration::from_secs(30),
            idle_timeout: std::time::Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// A configuration problem, phrased to name the key and where its value came from.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

fn env_var(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

impl Config {
    /// What the store needs of the configuration.
    pub fn store_settings(&self) -> crate::store::StoreSettings {
        crate::store::StoreSettings {
            strict_dependencies: self.strict_dependencies,
            guard: crate::domain::blast::Guard {
                max_clusters_shrunk: self.max_clusters_shrunk,
                empty_feed_guard: self.empty_feed_guard,
            },
            poll_stale_after: self.poll_stale_after,
            rollout_gate_needs_identity: self.events_require_cluster_identity,
        }
    }

    /// The config file used when `--config` is not given: `flux-inputs.toml` in systemd's
    /// `$CONFIGURATION_DIRECTORY`, if it exists.
    pub fn default_file() -> Option<PathBuf> {
        env_var("CONFIGURATION_DIRECTORY")
            .map(|dir| PathBuf::from(dir).join("flux-inputs.toml"))
            .filter(|path| path.is_file())
    }

    /// Loads defaults, then `file` (which must exist when given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with(file, true)
    }

    /// The same, for the offline commands (import, export, backup, check): they need the
    /// database settings, not the tokens. Missing tokens become empty ones that match nothing.
    pub fn load_offline(file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with(file, false)
    }

    fn load_with(file: Option<&Path>, tokens_required: bool) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Layered::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::raw().only(ENV_KEYS));
        // TLS_CERT, TLS_KEY, TLS_CLIENT_CA → tls.cert, tls.key, tls.client_ca.
        figment = figment.merge(
            Env::raw()
                .only(&["TLS_CERT", "TLS_KEY", "TLS_CLIENT_CA"])
                .map(|key| {
                    key.as_str()
                        .to_ascii_lowercase()
                        .replacen("tls_", "tls.", 1)
                        .into()
                })
                .split("."),
        );
        let mut layered: Layered = figment.extract().map_err(redacted)?;
        let seconds = |key: &str, value: u64| {
            if value == 0 {
                return Err(ConfigError(format!("{key} must be at least 1")));
            }
            Ok(std::time::Duration::from_secs(value))
        };
        let limits = Limits {
            header_timeout: seconds("header_timeout_seconds", layered.header_timeout_seconds)?,
            body_timeout: seconds("body_timeout_seconds", layered.body_timeout_seconds)?,
            idle_timeout: seconds("idle_timeout_seconds", layered.idle_timeout_seconds)?,
            max_connections: layered.max_connections.max(1),
        };

        // flux-resourceset's DATABASE_URL=sqlite://PATH?mode=rwc, used unless DATABASE_PATH is set.
        if env_var("DATABASE_PATH").is_none()
            && let Some(url) = env_var("DATABASE_URL")
        {
            layered.database_path = database_url_path(&url).ok_or_else(|| {
                ConfigError(format!(
                    "DATABASE_URL '{url}' is not a sqlite:// URL (environment variable)"
                ))
            })?;
        }

        let read_token = match token("AUTH_TOKEN", layered.auth_token.take())? {
            Some(token) => token,
            None if !tokens_required => Secret::new(""),
            None => {
                return Err(ConfigError(
                    "AUTH_TOKEN is not set: set the AUTH_TOKEN environment variable (or AUTH_TOKEN_FILE, \
                     a systemd credential auth_token, or auth_token in the config file); \
                     flux-inputs does not serve without a token"
                        .into(),
                ));
            }
        };
        let write_token = token("CRUD_AUTH_TOKEN", layered.crud_auth_token.take())?
            .unwrap_or_else(|| read_token.clone());

        if layered.role == Role::Replica && layered.api_mode == ApiMode::Crud {
            return Err(ConfigError(
                "role = \"replica\" serves a read-only copy: api_mode must be read-only \
                 (writes go to the hub)"
                    .into(),
            ));
        }
        let seed = match layered.seed_file.as_deref().map(str::trim) {
            None | Some("demo") => SeedSource::Demo,
            Some("" | "none") => SeedSource::None,
            Some(path) => SeedSource::File(PathBuf::from(path)),
        };
        Ok(Config {
            api_mode: layered.api_mode,
            listen_addr: layered.listen_addr,
            database_path: layered.database_path,
            seed,
            strict_dependencies: layered.strict_dependencies,
            metrics_addr: layered.metrics_addr,
            poll_stale_after: layered.poll_stale_after,
            events_require_cluster_identity: layered.events_require_cluster_identity,
            max_clusters_shrunk: layered.max_clusters_shrunk,
            empty_feed_guard: layered.empty_feed_guard,
            tls: layered.tls,
            audit_keep_entries: layered.audit_keep_entries,
            audit_keep_days: layered.audit_keep_days,
            limits,
            access_log: layered.access_log,
            role: layered.role,
            hub_url: layered.hub_url.filter(|url| !url.trim().is_empty()),
            read_token,
            write_token,
        })
    }
}

impl Config {
    /// Settings that work but are probably not what the operator meant; logged at start and
    /// listed by `flux-inputs check`.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.api_mode == ApiMode::Crud
            && !self.read_token.expose().is_empty()
            && self.write_token == self.read_token
        {
            warnings.push(
                "crud mode without a distinct write token: CRUD_AUTH_TOKEN is unset or equal to \
                 AUTH_TOKEN, so every cluster holding the read token can change the inventory; \
                 set CRUD_AUTH_TOKEN to a different secret"
                    .into(),
            );
        }
        if self.role == Role::Replica && self.hub_url.is_none() {
            warnings.push(
                "role = \"replica\" without hub_url: answers to writes cannot say where the \
                 hub is; set HUB_URL"
                    .into(),
            );
        }
        warnings
    }
}

/// A figment error without the values of secrets: a mistyped `auth_token = 123456789` must
/// not print the token into a log or a terminal history.
fn redacted(err: figment::Error) -> ConfigError {
    let messages: Vec<String> = err
        .into_iter()
        .map(|e| {
            // A syntax error's text quotes the line it is on, which may hold a token: only
            // where it is, never what it says.
            if let figment::error::Kind::Message(message) = &e.kind
                && message.contains("TOML parse error")
            {
                let at = message
                    .lines()
                    .next()
                    .and_then(|first| first.split_once(" at "))
                    .map_or("", |(_, at)| at);
                let file = e
                    .metadata
                    .as_ref()
                    .and_then(|m| m.source.as_ref())
                    .map(|source| format!(" in {source}"))
                    .unwrap_or_default();
                return format!(
                    "TOML syntax error{file} at {at} (the line is not shown: it may hold a secret)"
                );
            }
            let secret = e.path.iter().any(|key| key.ends_with("auth_token"));
            if !secret {
                return e.to_string();
            }
            let source = e
                .metadata
                .as_ref()
                .and_then(|m| m.source.as_ref())
                .map(|source| format!(" in {source}"))
                .unwrap_or_default();
            format!(
                "{}{source} must be a quoted string (its value is not shown)",
                e.path.join(".")
            )
        })
        .collect();
    ConfigError(messages.join("; "))
}

/// The environment wins over the file; an empty token is a mistake, not "no token".
/// A token, from the first source that has it: the systemd credential
/// `$CREDENTIALS_DIRECTORY/<key in lower case>`, the file named by `<KEY>_FILE`, the
/// environment variable `<KEY>`, the config file. A trailing newline is dropped.
fn token(key: &str, from_file: Option<String>) -> Result<Option<Secret>, ConfigError> {
    let read = |path: PathBuf, source: String| {
        std::fs::read_to_string(&path)
            .map(|value| (value, source.clone()))
            .map_err(|err| {
                ConfigError(format!(
                    "{key}: cannot read {source} {}: {err}",
                    path.display()
                ))
            })
    };
    let credential = env_var("CREDENTIALS_DIRECTORY")
        .map(|dir| PathBuf::from(dir).join(key.to_ascii_lowercase()))
        .filter(|path| path.is_file());
    let (value, source) = if let Some(path) = credential {
        read(path, "systemd credential".into())?
    } else if let Some(path) = env_var(&format!("{key}_FILE")) {
        read(PathBuf::from(path), format!("file named by {key}_FILE"))?
    } else if let Some(value) = env_var(key) {
        (value, "environment variable".to_owned())
    } else if let Some(value) = from_file {
        (value, "config file".to_owned())
    } else {
        return Ok(None);
    };
    let value = value.trim_end_matches(['\r', '\n']);
    if value.trim().is_empty() {
        return Err(ConfigError(format!("{key} is empty ({source})")));
    }
    Ok(Some(Secret::new(value)))
}

/// `sqlite://PATH?opts`, `sqlite:PATH` → `PATH`.
fn database_url_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty()).then(|| PathBuf::from(path))
}

#[cfg(test)]
// figment::Jail's closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use figment::Jail;

    use super::*;

    fn load(file: Option<&str>) -> Result<Config, ConfigError> {
        Config::load(file.map(Path::new))
    }

    #[test]
    fn defaults_need_only_a_token() {
        Jail::expect_with(|jail| {
            jail.set_env("AUTH_TOKEN", "read");
            let config = load(None).unwrap();
            assert_eq!(config.api_mode, ApiMode::ReadOnly);
            assert_eq!(config.listen_addr.to_string(), "127.0.0.1:8080");
            assert_eq!(config.database_path, PathBuf::from("flux-inputs.db"));
            assert_eq!(config.seed, SeedSource::Demo);
            assert_eq!(
                config.write_token.expose(),
                "read",
                "write token falls back to AUTH_TOKEN"
            );
            Ok(())
        });
    }

    #[test]
    fn missing_token_is_refused_with_the_key_named() {
        Jail::expect_with(|_| {
            let err = load(None).unwrap_err().to_string();
            assert!(err.contains("AUTH_TOKEN is not set"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn toml_syntax_errors_never_show_the_line() {
        for text in [
            "auth_token = \"Secret-abc123\n",
            "auth_token = \"Secret-abc123\" trailing\n",
            "auth_token = \"Secret-abc123\"\nauth_token = \"Secret-abc123\"\n",
            "auth_token = Secret-abc123\n",
        ] {
            Jail::expect_with(|jail| {
                jail.create_file("flux-inputs.toml", text)?;
                let err = load(Some("flux-inputs.toml")).unwrap_err().to_string();
                assert!(!err.contains("Secret"), "{err}");
                assert!(err.contains("line 1") || err.contains("line 2"), "{err}");
                Ok(())
            });
        }
    }

    #[test]
    fn numeric_tokens_stay_strings() {
        Jail::expect_with(|jail| {
            jail.set_env("AUTH_TOKEN", "0123");
            jail.set_env("CRUD_AUTH_TOKEN", "true");
            let config = load(None).unwrap();
            assert_eq!(config.read_token.expose(), "0123");
            assert_eq!(config.write_token.expose(), "true");
            Ok(())
        });
    }

    #[test]
    fn environment_overrides_file_overrides_defaults() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "flux-inputs.toml",
                "api_mode = \"crud\"\nlisten_addr = \"127.0.0.1:9000\"\ndatabase_path = \"file.db\"\nauth_token = \"from-file\"\n",
            )?;
            jail.set_env("LISTEN_ADDR", "127.0.0.1:9100");
            let config = load(Some("flux-inputs.toml")).unwrap();
            assert_eq!(config.api_mode, ApiMode::Crud);
            assert_eq!(config.listen_addr.port(), 9100);
            assert_eq!(config.database_path, PathBuf::from("file.db"));
            assert_eq!(config.read_token.expose(), "from-file");
            jail.set_env("AUTH_TOKEN", "from-env");
            assert_eq!(
                load(Some("flux-inputs.toml")).unwrap().read_token.expose(),
                "from-env"
            );
            Ok(())
        });
    }

    #[test]
    fn a_replica_is_read_only_and_should_name_its_hub() {
        Jail::expect_with(|jail| {
            jail.set_env("AUTH_TOKEN", "t");
            jail.set_env("ROLE", "replica");
            let config = load(None).unwrap();
            assert_eq!(config.role, Role::Replica);
            assert!(config.warnings()[0].contains("without hub_url"));
            jail.set_env("HUB_URL", "https://hub.example.com");
            let config = load(None).unwrap();
            assert_eq!(config.hub_url.as_deref(), Some("https://hub.example.com"));
            assert!(config.warnings().is_empty());
            jail.set_env("API_MODE", "crud");
            let err = load(None).unwrap_err().to_string();
            assert!(err.contains("api_mode must be read-only"), "{err}");
            jail.set_env("ROLE", "leader");
            assert!(load(None).unwrap_err().to_string().contains("leader"));
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_the_key_and_the_source() {
        Jail::expect_with(|jail| {
            jail.set_env("AUTH_TOKEN", "t");
            jail.set_env("API_MODE", "write-everything");
            let err = load(None).unwrap_err().to_string();
            assert!(
                err.contains("API_MODE") && err.contains("write-everything"),
                "{err}"
            );
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("AUTH_TOKEN", "t");
            jail.create_file("c.toml", "listen_adress = \"127.0.0.1:1\"\n")?;
            let err = load(Some("c.toml")).unwrap_err().to_string();
            assert!(
                err.contains("listen_adress") && err.contains("c.toml"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn peer_mode_spellings_and_database_url_are_accepted() {
        Jail::expect_with(|jail| {
            jail.set_env("AUTH_TOKEN", "t");
            jail.set_env("API_MODE", "readonly");
            jail.set_env("DATABASE_URL", "sqlite:///var/lib/x/data.db?mode=rwc");
            let config = load(None).unwrap();
            assert_eq!(config.api_mode, ApiMode::ReadOnly);
            assert_eq!(config.database_path, PathBuf::from("/var/lib/x/data.db"));
            jail.set_env("DATABASE_PATH", "explicit.db");
            assert_eq!(
                load(None).unwrap().database_path,
                PathBuf::from("explicit.db")
            );
            Ok(())
        });
    }

    #[test]
    fn seed_file_selects_demo_file_or_nothing() {
        for (value, expected) in [
            ("none", SeedSource::None),
            ("demo", SeedSource::Demo),
            ("data/seed.json", SeedSource::File("data/seed.json".into())),
        ] {
            Jail::expect_with(|jail| {
                jail.set_env("AUTH_TOKEN", "t");
                jail.set_env("SEED_FILE", value);
                assert_eq!(load(None).unwrap().seed, expected);
                Ok(())
            });
        }
    }

    #[test]
    fn tokens_come_from_credentials_then_files_then_environment() {
        Jail::expect_with(|jail| {
            jail.create_dir("credentials")?;
            jail.create_file("credentials/auth_token", "from-credential\n")?;
            jail.create_file("write-token", "from-file\n")?;
            jail.set_env(
                "CREDENTIALS_DIRECTORY",
                jail.directory().join("credentials").display(),
            );
            jail.set_env("AUTH_TOKEN", "from-env");
            jail.set_env(
                "CRUD_AUTH_TOKEN_FILE",
                jail.directory().join("write-token").display(),
            );
            jail.set_env("CRUD_AUTH_TOKEN", "from-env");
            let config = load(None).unwrap();
            assert_eq!(config.read_token.expose(), "from-credential");
            assert_eq!(config.write_token.expose(), "from-file");
            jail.set_env("AUTH_TOKEN_FILE", "/no/such/file");
            jail.set_env("CREDENTIALS_DIRECTORY", "/no/such/dir");
            let err = load(None).unwrap_err().to_string();
            assert!(
                err.contains("AUTH_TOKEN") && err.contains("/no/such/file"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn tls_comes_from_a_table_or_the_environment() {
        Jail::expect_with(|jail| {
            jail.set_env("AUTH_TOKEN", "t");
            jail.create_file(
                "c.toml",
                "[tls]\ncert = \"/etc/x/cert.pem\"\nkey = \"/etc/x/key.pem\"\n",
            )?;
            let tls = load(Some("c.toml")).unwrap().tls.unwrap();
            assert_eq!(tls.cert, PathBuf::from("/etc/x/cert.pem"));
            assert_eq!(tls.client_ca, None);
            jail.set_env("TLS_CLIENT_CA", "/etc/x/ca.pem");
            jail.set_env("TLS_KEY", "/run/key.pem");
            let tls = load(Some("c.toml")).unwrap().tls.unwrap();
            assert_eq!(tls.client_ca, Some(PathBuf::from("/etc/x/ca.pem")));
            assert_eq!(tls.key, PathBuf::from("/run/key.pem"));
            Ok(())
        });
    }

    #[test]
    fn a_mistyped_token_in_the_file_is_not_echoed() {
        Jail::expect_with(|jail| {
            jail.create_file("c.toml", "auth_token = 123456789\ncrud_auth_token = true\n")?;
            let err = load(Some("c.toml")).unwrap_err().to_string();
            assert!(!err.contains("123456789"), "{err}");
            assert!(
                err.contains("auth_token") && err.contains("c.toml"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn crud_mode_with_only_the_read_token_is_warned_about() {
        Jail::expect_with(|jail| {
            jail.set_env("AUTH_TOKEN", "shared");
            jail.set_env("API_MODE", "crud");
            let warnings = load(None).unwrap().warnings();
            assert_eq!(warnings.len(), 1);
            assert!(warnings[0].contains("CRUD_AUTH_TOKEN"), "{warnings:?}");
            jail.set_env("CRUD_AUTH_TOKEN", "distinct");
            assert!(load(None).unwrap().warnings().is_empty());
            jail.set_env("API_MODE", "read-only");
            jail.set_env("CRUD_AUTH_TOKEN", "shared");
            assert!(
                load(None).unwrap().warnings().is_empty(),
                "no writes in read-only mode"
            );
            Ok(())
        });
    }

    #[test]
    fn timeouts_and_the_connection_cap_are_configurable() {
        Jail::expect_with(|jail| {
            jail.set_env("AUTH_TOKEN", "t");
            assert_eq!(load(None).unwrap().limits, Limits::default());
            jail.set_env("HEADER_TIMEOUT_SECONDS", "3");
            jail.set_env("MAX_CONNECTIONS", "16");
            let limits = load(None).unwrap().limits;
            assert_eq!(limits.header_timeout.as_secs(), 3);
            assert_eq!(limits.max_connections, 16);
            jail.set_env("BODY_TIMEOUT_SECONDS", "0");
            assert!(load(None).is_err());
            Ok(())
        });
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
