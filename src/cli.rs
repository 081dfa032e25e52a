//! The offline commands. They open the database file directly and are safe while a server
//! runs on it (SQLite's locking; a running server notices their writes within a second).
//!
//! Exit codes: 0 done; 1 the command could not run (I/O, database); 3 the input or the
//! inventory is invalid (the message names the record). clap uses 2 for usage errors.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rusqlite::Connection;

use crate::config::{Config, SeedSource};
use crate::error::AppError;
use crate::server;
use crate::store::WriteRequest;
use crate::store::migrate::{SCHEMA_VERSION, schema_version};
use crate::store::seed::{self, Mode, SeedInput};
use crate::store::{SqlResultExt, Store, storage_error};

/// A command's failure, with the exit code it means.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl From<AppError> for Failure {
    fn from(err: AppError) -> Self {
        let code = match err {
            AppError::BadRequest(_)
            | AppError::PreconditionFailed(_)
            | AppError::Validation(_)
            | AppError::Conflict(_)
            | AppError::BlastRadius(_)
            | AppError::WindowClosed(_)
            | AppError::NotFound(_) => 3,
            AppError::Unavailable(_) | AppError::Internal(_) => 1,
        };
        Failure {
            code,
            message: err.to_string(),
        }
    }
}

impl Failure {
    fn io(message: String) -> Self {
        Failure { code: 1, message }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }
}

/// Opens (and migrates) the database. Offline commands never seed: `import` into a new file
/// starts from an empty inventory; the others need an existing file.
fn open(config: &Config, must_exist: bool) -> Result<Store, Failure> {
    if must_exist && !config.database_path.is_file() {
        return Err(Failure::io(format!(
            "database {} does not exist",
            config.database_path.display()
        )));
    }
    let config = Config {
        seed: SeedSource::None,
        ..config.clone()
    };
    Ok(server::open_store(&config)?)
}

/// `import FILE [--dry-run] [--changes-offset N]`: create or replace every record of a seed
/// file, all or nothing, streamed through the same write pipeline as the API (actor
/// `import`). A dry run prints the bounded preview and stores nothing.
pub fn import(
    config: &Config,
    file: &Path,
    dry_run: bool,
    changes_offset: usize,
    confirm: Confirm,
) -> Result<(), Failure> {
    // The file is read twice (catalog, then clusters): a pipe or `-` (standard input) is
    // first copied to a private temporary file.
    let spooled = spool_if_stream(file)?;
    let file = spooled.as_ref().map_or(file, |s| s.path.as_path());
    // A dry run into a database that does not exist yet previews against an empty inventory
    // in a scratch file, and leaves no file behind.
    let scratch = (dry_run && !config.database_path.exists()).then(|| Spooled {
        path: std::env::temp_dir().join(format!("flux-inputs-dry-run-{}.db", std::process::id())),
    });
    let scratch_config;
    let config = match &scratch {
        Some(scratch) => {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", scratch.path.display()));
            }
            scratch_config = Config {
                database_path: scratch.path.clone(),
                ..config.clone()
            };
            &scratch_config
        }
        None => config,
    };
    let store = open(config, false)?;
    let request = WriteRequest {
        dry_run,
        changes_offset,
        confirm: confirm.confirm,
        confirm_closed: confirm.confirm_closed,
        ..WriteRequest::new(crate::store::audit::Change {
            actor: "import".into(),
            method: "IMPORT",
        })
    };
    let path = file.to_owned();
    let written = runtime()?
        .block_on(store.inventory_write(request, move |pipeline| {
            seed::apply(SeedInput::File(&path), pipeline, Mode::Upsert)
        }))
        .map_err(|err| with_file(file, err))?;
    for warning in &written.warnings {
        eprintln!("warning: {warning}");
    }
    if let Some(preview) = written.preview {
        use poem_openapi::types::ToJSON;
        let mut document = preview.to_json().unwrap_or_default();
        document["dry_run"] = true.into();
        document["warnings"] = written.warnings.to_json().unwrap_or_default();
        println!(
            "{}",
            serde_json::to_string_pretty(&document).unwrap_or_default()
        );
        return Ok(());
    }
    eprintln!(
        "imported {} ({:?}) into {}",
        file.display(),
        written.value,
        config.database_path.display()
    );
    Ok(())
}

/// A temporary file (a copy of a stream, a scratch database), removed when dropped.
struct Spooled {
    path: std::path::PathBuf,
}

impl Drop for Spooled {
    fn drop(&mut self) {
        // A scratch database leaves its WAL files too.
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
    }
}

/// `None` for a regular file; for `-` or anything that can be read only once (a pipe, a
/// process substitution), a private temporary copy.
fn spool_if_stream(file: &Path) -> Result<Option<Spooled>, Failure> {
    let stdin = file == Path::new("-");
    if !stdin {
        match std::fs::metadata(file) {
            Ok(meta) if meta.is_file() => return Ok(None),
            Ok(_) => {}
            Err(err) => {
                return Err(Failure::io(format!(
                    "cannot read {}: {err}",
                    file.display()
                )));
            }
        }
    }
    let path = std::env::temp_dir().join(format!("flux-inputs-import-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut copy = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
    }
    .map_err(|err| {
        Failure::io(format!(
            "cannot spool the input to {}: {err}",
            path.display()
        ))
    })?;
    let spooled = Spooled { path };
    let copied = if stdin {
        std::io::copy(&mut std::io::stdin().lock(), &mut copy)
    } else {
        std::fs::File::open(file).and_then(|mut input| std::io::copy(&mut input, &mut copy))
    };
    copied.map_err(|err| Failure::io(format!("cannot read {}: {err}", file.display())))?;
    Ok(Some(spooled))
}

/// `probe health|ready`: one plain HTTP GET to the server on `listen_addr` (loopback when it
/// listens on every address), answered 200 within two seconds, or a failure.
pub fn probe(config: &Config, path: &str) -> Result<(), Failure> {
    use std::io::{Read, Write};
    if config.tls.is_some() {
        return Err(Failure::io(
            "the server speaks HTTPS: probe it with an httpGet probe (scheme: HTTPS)".into(),
        ));
    }
    let mut addr = config.listen_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let limit = std::time::Duration::from_secs(2);
    let failed = |err: std::io::Error| Failure::io(format!("{addr}{path}: {err}"));
    let mut stream = std::net::TcpStream::connect_timeout(&addr, limit).map_err(failed)?;
    stream.set_read_timeout(Some(limit)).map_err(failed)?;
    stream.set_write_timeout(Some(limit)).map_err(failed)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(failed)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(failed)?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.lines().next().unwrap_or_default();
    if status.starts_with("HTTP/1.1 200") {
        println!("{path}: ok");
        return Ok(());
    }
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Err(Failure::io(format!("{addr}{path}: {status} {body}")))
}

/// A runtime for the offline commands that share the server's async store API.
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| Failure::io(format!("cannot start a runtime: {err}")))
}

fn with_file(file: &Path, err: AppError) -> AppError {
    match err {
        AppError::Internal(m) => AppError::Internal(m),
        AppError::Unavailable(m) => AppError::Unavailable(m),
        other => AppError::Validation(format!("{}: {other}", file.display())),
    }
}

/// `audit [--kind K] [--id ID] [--since REVISION] [--limit N]`: entries as JSON lines.
pub fn audit(config: &Config, filter: crate::store::audit::Filter) -> Result<(), Failure> {
    let store = open(config, true)?;
    let conn = store.connection()?;
    let mut stdout = std::io::stdout().lock();
    for entry in crate::store::audit::list(&conn, &filter)? {
        let line = serde_json::json!({
            "revision": entry.revision, "at": entry.at, "actor": entry.actor, "method": entry.method,
            "kind": entry.kind, "id": entry.resource_id, "before": entry.before, "after": entry.after,
        });
        writeln!(stdout, "{line}").map_err(|err| Failure::io(format!("cannot write: {err}")))?;
    }
    Ok(())
}

/// What `status` shows.
pub struct StatusQuery {
    /// One component's clusters instead of the fleet summary.
    pub component: Option<String>,
    /// Only (cluster, component) pairs in this state.
    pub state: Option<crate::domain::report::State>,
    /// The same JSON as `/status/fleet` (or `/status/components/{id}`'s counts and items).
    pub json: bool,
}

/// `status [--component ID] [--state STATE] [--json]`: convergence as the server computes it,
/// from the file (events a running server received in the last second may not be in it yet).
pub fn status(config: &Config, query: StatusQuery) -> Result<(), Failure> {
    use crate::domain::convergence::StateCounts;
    use crate::domain::report::State;
    use crate::store::convergence::Scope;
    use crate::store::reports;
    use crate::store::summary::fleet_summary;

    let store = open(config, true)?;
    let conn = store.connection()?;
    if let Some(component) = &query.component
        && !reports::component_exists(&conn, component)?
    {
        return Err(
            AppError::NotFound(format!("no platform component with id '{component}'")).into(),
        );
    }
    let now = store.clock().now_u64();
    let scope = Scope {
        component: query.component.clone(),
        ..Scope::default()
    };
    // What clusters reported reaches the operator's terminal: nothing in it may act on the
    // terminal (a database written before events were checked may hold escape sequences).
    let write = |text: String| {
        writeln!(std::io::stdout().lock(), "{}", escape_unprintable(&text))
            .map_err(|err| Failure::io(format!("cannot write: {err}")))
    };
    let listing = query.component.is_some() || query.state.is_some();
    if !listing {
        let summary = fleet_summary(&conn, &scope, store.polls(), now)?;
        if query.json {
            use poem_openapi::types::ToJSON;
            return write(summary.to_json().unwrap_or_default().to_string());
        }
        let header = |first: &str| {
            format!(
                "{first:<28} {:<6} {:>9} {:>11} {:>6} {:>7} {:>8} {:>5}",
                "ENV", "CONVERGED", "PROGRESSING", "FAILED", "UNKNOWN", "DISABLED", "STALE"
            )
        };
        let line = |name: &str, env: &str, c: &StateCounts| {
            format!(
                "{name:<28} {env:<6} {:>9} {:>11} {:>6} {:>7} {:>8} {:>5}",
                c.converged, c.progressing, c.failed, c.unknown, c.disabled, c.stale
            )
        };
        write(header("COMPONENT"))?;
        for component in &summary.components {
            write(line(&component.component, "all", &component.counts))?;
            for env in &component.environments {
                write(line("", &env.environment, &env.counts))?;
            }
        }
        let listed = summary.stale_clusters.join(", ");
        return write(format!(
            "{} clusters, {} stale{}",
            summary.clusters,
            summary.stale_count,
            if listed.is_empty() {
                String::new()
            } else {
                format!(": {listed}")
            }
        ));
    }
    let mut selected = Vec::new();
    crate::store::convergence::for_each_component(&conn, &scope, store.polls(), now, |row| {
        if query.state.is_none_or(|wanted| row.state == wanted) {
            selected.push(crate::store::convergence::ComponentState::from(row));
        }
    })?;
    if query.json {
        for row in &selected {
            let line = serde_json::json!({
                "cluster": row.cluster_id, "cluster_dns": row.cluster_dns,
                "environment": row.environment, "component": row.component,
                "state": row.state.as_str(), "desired_version": row.desired,
                "reported_revision": row.reported_revision, "reason": row.reason,
                "message": row.message,
                "event_time": row.event_at.map(crate::domain::report::format_timestamp),
            });
            write(line.to_string())?;
        }
        return Ok(());
    }
    write(format!(
        "{:<28} {:<24} {:<6} {:<12} {:<16} {:<16} REASON",
        "CLUSTER", "COMPONENT", "ENV", "STATE", "DESIRED", "REPORTED"
    ))?;
    for row in &selected {
        let first_line = row
            .message
            .as_deref()
            .and_then(|m| m.lines().next())
            .map(|m| crate::domain::report::truncate(m, 100))
            .unwrap_or("");
        write(format!(
            "{:<28} {:<24} {:<6} {:<12} {:<16} {:<16} {}{}",
            row.cluster_id,
            row.component,
            row.environment,
            row.state.as_str(),
            row.desired,
            row.reported_revision.as_deref().unwrap_or("-"),
            row.reason.as_deref().unwrap_or("-"),
            if first_line.is_empty() || row.state != State::Failed {
                String::new()
            } else {
                format!(": {first_line}")
            }
        ))?;
    }
    Ok(())
}

/// `revert REVISION`: put the resource back to its state before that revision (audited).
pub fn revert(config: &Config, revision: i64, confirm: Confirm) -> Result<(), Failure> {
    let store = open(config, true)?;
    let reverted = runtime()?.block_on(store.revert(
        revision,
        "cli".into(),
        crate::store::RevertOptions {
            confirm: confirm.confirm,
            confirm_closed: confirm.confirm_closed,
            dry_run: false,
        },
    ))?;
    for warning in &reverted.warnings {
        eprintln!("warning: {warning}");
    }
    eprintln!(
        "reverted {} '{}' to its state before revision {revision} (revision {})",
        reverted.kind, reverted.id, reverted.revision
    );
    Ok(())
}

/// `token create|list|revoke`: named read tokens. `create` prints the token once.
pub fn token(config: &Config, command: TokenCommand) -> Result<(), Failure> {
    let store = open(config, true)?;
    let mut conn = store.connection()?;
    match command {
        TokenCommand::Create { name, cluster } => {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(storage_error)?;
            let token = crate::store::tokens::create(
                &tx,
                &cli_change("POST"),
                store.clock().now(),
                &name,
                cluster.as_deref(),
            )?;
            tx.commit().map_err(storage_error)?;
            println!("{token}");
            let scope = cluster.map_or("every read route".to_owned(), |c| {
                format!("the Flux feeds and status of cluster '{c}' and report its events")
            });
            eprintln!("token '{name}' may read {scope}; it is shown only this once");
        }
        TokenCommand::List => {
            for token in crate::store::tokens::list(&conn)? {
                let line = serde_json::json!({"name": token.name, "cluster": token.cluster,
                    "created_at": token.created_at, "last_used_at": token.last_used_at});
                println!("{line}");
            }
        }
        TokenCommand::Revoke { name } => {
            crate::store::tokens::revoke(&conn, &cli_change("DELETE"), store.clock().now(), &name)?;
            eprintln!("revoked token '{name}'");
        }
    }
    Ok(())
}

/// A write made from the command line, as the audit trail records it.
fn cli_change(method: &'static str) -> crate::store::audit::Change {
    crate::store::audit::Change {
        actor: "cli".into(),
        method,
    }
}

/// The `token` subcommands.
pub enum TokenCommand {
    Create {
        name: String,
        cluster: Option<String>,
    },
    List,
    Revoke {
        name: String,
    },
}

/// `export`: the inventory in seed format on stdout.
pub fn export(config: &Config) -> Result<(), Failure> {
    let store = open(config, true)?;
    let conn = store.connection()?;
    let tx = conn.unchecked_transaction().map_err(storage_error)?;
    let document = seed::export(&tx)?;
    let mut stdout = std::io::stdout().lock();
    let failed =
        |err: &dyn std::fmt::Display| Failure::io(format!("cannot write the export: {err}"));
    serde_json::to_writer_pretty(&mut stdout, &document).map_err(|e| failed(&e))?;
    writeln!(stdout).map_err(|e| failed(&e))
}

/// `backup PATH`: a consistent copy of the live database (`VACUUM INTO`), safe while serving.
pub fn backup(config: &Config, target: &Path) -> Result<(), Failure> {
    if target.exists() {
        return Err(Failure {
            code: 3,
            message: format!("{} exists; refusing to overwrite it", target.display()),
        });
    }
    let store = open(config, true)?;
    let conn = store.connection()?;
    let target_text = target.to_str().ok_or_else(|| Failure {
        code: 3,
        message: "the backup path is not UTF-8".into(),
    })?;
    crate::store::create_private_file(target)
        .map_err(|err| Failure::io(format!("cannot create {}: {err}", target.display())))?;
    conn.execute("VACUUM INTO ?1", [target_text])
        .map_err(|err| Failure::io(format!("backup to {} failed: {err}", target.display())))?;
    eprintln!(
        "backed up {} to {}",
        config.database_path.display(),
        target.display()
    );
    Ok(())
}

/// `check`: configuration, file integrity, schema version, and Flux's contract on every
/// cluster's feeds. Problems make the exit code 3; warnings are listed and do not.
pub fn check(config: &Config) -> Result<(), Failure> {
    if config.database_path.is_file() {
        check_pages(&config.database_path)?;
    }
    let store = open(config, true)?;
    let mut conn = store.connection()?;
    let mut problems = Vec::new();
    let mut warnings = config.warnings();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .db()?;
    if integrity != "ok" {
        problems.push(format!("integrity_check: {integrity}"));
    }
    let version = schema_version(&conn)?;
    if version != SCHEMA_VERSION {
        problems.push(format!(
            "schema version {version}, expected {SCHEMA_VERSION}"
        ));
    }
    let fk_violations: i64 = conn
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .db()?;
    if fk_violations > 0 {
        problems.push(format!("{fk_violations} foreign key violation(s)"));
    }
    // A read transaction: one consistent view of every cluster.
    let fleet = read_transaction(&mut conn, |tx| crate::store::write::check_fleet(tx))?;
    problems.extend(fleet.problems);
    warnings.extend(fleet.warnings);
    let clusters_checked = fleet.clusters;
    // Records written before today's rules: they serve, but Kubernetes may refuse them.
    problems.extend(read_transaction(&mut conn, |tx| {
        crate::store::rules::violations(tx)
    })?);
    for warning in &warnings {
        println!("warning: {warning}");
    }
    for problem in &problems {
        println!("problem: {problem}");
    }
    println!(
        "{}: {} clusters checked, {} problem(s), {} warning(s)",
        config.database_path.display(),
        clusters_checked,
        problems.len(),
        warnings.len()
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure {
            code: 3,
            message: format!("{} problem(s) found", problems.len()),
        })
    }
}

/// A damaged file is described page by page before anything else opens it (start-up would
/// refuse it with a one-line summary).
fn check_pages(path: &Path) -> Result<(), Failure> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|err| Failure::io(format!("cannot open {}: {err}", path.display())))?;
    let found: rusqlite::Result<Vec<String>> = conn
        .prepare("PRAGMA integrity_check(100)")
        .and_then(|mut stmt| stmt.query_map([], |row| row.get(0))?.collect());
    let problems = match found {
        Ok(lines) if lines.iter().all(|l| l == "ok") => return Ok(()),
        Ok(lines) => lines,
        Err(err) => vec![err.to_string()],
    };
    for problem in &problems {
        println!("problem: integrity_check: {problem}");
    }
    Err(Failure {
        code: 3,
        message: format!(
            "{} is damaged ({} problem(s)); restore the latest backup (`flux-inputs backup`)",
            path.display(),
            problems.len()
        ),
    })
}

/// Runs `f` in a transaction that is rolled back: a consistent read of many tables.
fn read_transaction<T>(
    conn: &mut Connection,
    f: impl FnOnce(&rusqlite::Transaction) -> crate::error::Result<T>,
) -> crate::error::Result<T> {
    let tx = conn.transaction().map_err(storage_error)?;
    let value = f(&tx)?;
    tx.rollback().map_err(storage_error)?;
    Ok(value)
}

/// The `rollout` subcommands.
pub enum RolloutCommand {
    /// Check and plan a rollout file; store nothing.
    Plan { file: PathBuf },
    /// Store a rollout file as a planned rollout.
    Create { file: PathBuf },
    /// A verb on a stored rollout.
    Verb {
        id: String,
        verb: crate::domain::rollout::Verb,
    },
    /// One rollout in detail, or every rollout.
    Status { id: Option<String>, json: bool },
}

/// `--confirm` and `--confirm-closed` of a write.
#[derive(Clone, Copy, Debug, Default)]
pub struct Confirm {
    /// The number of clusters the write takes inputs from (blast radius).
    pub confirm: Option<u64>,
    /// The number of closed clusters (maintenance windows) whose feeds it changes.
    pub confirm_closed: Option<u64>,
}

/// The `overlay` and `window` subcommands.
pub enum ResourceCommand {
    List,
    Get {
        id: String,
    },
    Apply {
        file: PathBuf,
        dry_run: bool,
        confirm: Confirm,
    },
    Delete {
        id: String,
        dry_run: bool,
        confirm: Confirm,
    },
}

/// A collection the CLI lists, gets, applies and deletes like its API does.
pub trait Managed: crate::store::Resource {
    /// Every record, in id order.
    fn all(conn: &rusqlite::Connection) -> crate::error::Result<Vec<Self>>;
    /// The line `list` prints for one record.
    fn line(
        &self,
        conn: &rusqlite::Connection,
        now: i64,
    ) -> crate::error::Result<serde_json::Value>;
}

impl Managed for crate::domain::overlay::Overlay {
    fn all(conn: &rusqlite::Connection) -> crate::error::Result<Vec<Self>> {
        crate::store::overlays::all(conn)
    }
    fn line(
        &self,
        conn: &rusqlite::Connection,
        _now: i64,
    ) -> crate::error::Result<serde_json::Value> {
        use poem_openapi::types::ToJSON;
        let matched = crate::store::overlays::count_matching(conn, &self.selector)?;
        Ok(serde_json::json!({"id": self.id, "priority": self.priority,
            "selector": self.selector.to_json(), "clusters": matched,
            "description": self.description}))
    }
}

impl Managed for crate::domain::window::Window {
    fn all(conn: &rusqlite::Connection) -> crate::error::Result<Vec<Self>> {
        crate::store::windows::all(conn)
    }
    fn line(
        &self,
        conn: &rusqlite::Connection,
        now: i64,
    ) -> crate::error::Result<serde_json::Value> {
        use poem_openapi::types::ToJSON;
        let matched = crate::store::overlays::count_matching(conn, &self.selector)?;
        let schedule = crate::domain::window::schedule(self).ok();
        let active = schedule.is_some_and(|s| s.is_open(now));
        Ok(
            serde_json::json!({"id": self.id, "kind": self.kind.as_str(),
            "selector": self.selector.to_json(), "clusters": matched, "active": active,
            "description": self.description}),
        )
    }
}

/// `overlay|window list|get|apply -f|delete`: the same writes as `/overlays` and `/windows`
/// (actor `cli`, every check of the write pipeline), on the file. `apply` creates the record
/// or replaces it whole; with `--dry-run` it prints what would change instead.
pub fn resource<R: Managed>(config: &Config, command: ResourceCommand) -> Result<(), Failure> {
    use crate::store::WriteRequest;
    use poem_openapi::types::ToJSON;

    let store = open(config, true)?;
    let runtime = runtime()?;
    let request = |method, dry_run, confirm: Confirm| WriteRequest {
        dry_run,
        confirm: confirm.confirm,
        confirm_closed: confirm.confirm_closed,
        ..WriteRequest::new(cli_change(method))
    };
    let written = match command {
        ResourceCommand::List => {
            let now = store.clock().now();
            let listed = runtime.block_on(store.read(move |conn| {
                R::all(conn)?
                    .iter()
                    .map(|record| record.line(conn, now))
                    .collect::<crate::error::Result<Vec<_>>>()
            }))?;
            for line in listed {
                println!("{line}");
            }
            return Ok(());
        }
        ResourceCommand::Get { id } => {
            let (record, _) = runtime.block_on(store.fetch_with_revision::<R>(id))?;
            println!("{}", record.to_json().unwrap_or_default());
            return Ok(());
        }
        ResourceCommand::Apply {
            file,
            dry_run,
            confirm,
        } => {
            let text = if file == Path::new("-") {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(&file)
            }
            .map_err(|err| Failure::io(format!("cannot read {}: {err}", file.display())))?;
            let value: serde_json::Value = serde_json::from_str(&text).map_err(|err| {
                AppError::BadRequest(format!("{}: not JSON: {err}", file.display()))
            })?;
            let record = R::parse_from_json(Some(value)).map_err(|err| {
                AppError::BadRequest(format!("{}: {}", file.display(), err.into_message()))
            })?;
            runtime.block_on(store.create_or_replace(record, request("PUT", dry_run, confirm)))?
        }
        ResourceCommand::Delete {
            id,
            dry_run,
            confirm,
        } => runtime.block_on(store.delete::<R>(id, request("DELETE", dry_run, confirm)))?,
    };
    for warning in &written.warnings {
        eprintln!("warning: {}", escape_unprintable(warning));
    }
    match written.preview {
        Some(preview) => println!("{}", preview.to_json().unwrap_or_default()),
        None => eprintln!(
            "{} '{}' stored at revision {}",
            R::KIND,
            escape_unprintable(written.value.id()),
            written.revision
        ),
    }
    Ok(())
}

/// `rollout plan|create|start|pause|resume|abort|rollback|status`: the same operations as
/// `/rollouts` (actor `cli`), on the file. A running server's controller picks up what is
/// stored here within a second.
pub fn rollout(config: &Config, command: RolloutCommand) -> Result<(), Failure> {
    use crate::domain::rollout::RolloutSpec;
    use poem_openapi::types::{ParseFromJSON, ToJSON};

    let store = open(config, true)?;
    let read_spec = |file: &Path| -> Result<RolloutSpec, Failure> {
        let text = if file == Path::new("-") {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(file)
        }
        .map_err(|err| Failure::io(format!("cannot read {}: {err}", file.display())))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|err| AppError::BadRequest(format!("{}: not JSON: {err}", file.display())))?;
        RolloutSpec::parse_from_json(Some(value)).map_err(|err| {
            AppError::BadRequest(format!("{}: {}", file.display(), err.into_message())).into()
        })
    };
    let runtime = runtime()?;
    let (rollout, json) = match command {
        RolloutCommand::Plan { file } => (
            runtime.block_on(store.create_rollout(read_spec(&file)?, "cli".into(), true))?,
            false,
        ),
        RolloutCommand::Create { file } => (
            runtime.block_on(store.create_rollout(read_spec(&file)?, "cli".into(), false))?,
            false,
        ),
        RolloutCommand::Verb { id, verb } => (
            runtime.block_on(store.rollout_verb(id, verb, "cli".into()))?,
            false,
        ),
        RolloutCommand::Status { id: Some(id), json } => {
            (runtime.block_on(store.rollout(id))?, json)
        }
        RolloutCommand::Status { id: None, json } => {
            let all = runtime.block_on(store.rollouts())?;
            if json {
                println!("{}", all.to_json().unwrap_or_default());
                return Ok(());
            }
            println!(
                "{:<28} {:<24} {:<11} {:>4} {:>6} {:>6} {:>6}  TARGET",
                "ROLLOUT", "COMPONENT", "STATE", "STEP", "PASSED", "FAILED", "TOTAL"
            );
            for r in &all {
                let total: u64 = r.steps.iter().map(|s| s.clusters_total()).sum();
                println!(
                    "{:<28} {:<24} {:<11} {:>4} {:>6} {:>6} {:>6}  {}",
                    r.spec.id,
                    r.spec.component,
                    r.state.as_str(),
                    r.current_step.map_or("-".to_owned(), |s| s.to_string()),
                    r.counts.passed,
                    r.counts.failed,
                    total,
                    r.spec.target.oci_tag
                );
            }
            return Ok(());
        }
    };
    if json {
        println!("{}", rollout.to_json().unwrap_or_default());
    } else {
        print!("{}", describe(&rollout));
    }
    Ok(())
}

/// A rollout for people: its state, its steps with counts, the clusters that need a look,
/// and the last transitions.
fn describe(r: &crate::domain::rollout::Rollout) -> String {
    use crate::domain::rollout::ClusterState;
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "rollout {}: {} -> oci_tag {} ({}), step {}",
        r.spec.id,
        r.spec.component,
        r.spec.target.oci_tag,
        r.state.as_str(),
        r.current_step.map_or("-".to_owned(), |s| s.to_string())
    );
    let _ = writeln!(
        out,
        "{:>4} {:>4} {:<8} {:>7} {:>11} {:>6} {:>6} {:>7} {:>11}",
        "STEP",
        "WAVE",
        "STATE",
        "PENDING",
        "PROGRESSING",
        "PASSED",
        "FAILED",
        "SKIPPED",
        "ROLLED_BACK"
    );
    for s in &r.steps {
        let c = &s.counts;
        let _ = writeln!(
            out,
            "{:>4} {:>4} {:<8} {:>7} {:>11} {:>6} {:>6} {:>7} {:>11}",
            s.step,
            s.wave,
            s.state.as_str(),
            c.pending,
            c.progressing,
            c.passed,
            c.failed,
            c.skipped + c.pinned,
            c.rolled_back
        );
    }
    for s in r.steps.iter().filter(|s| !s.clusters.is_empty()) {
        let ids: Vec<&str> = s.clusters.iter().take(8).map(|c| c.id.as_str()).collect();
        let more = s.clusters.len().saturating_sub(ids.len());
        let _ = writeln!(
            out,
            "  step {}: {}{}",
            s.step,
            ids.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
    if !r.stale.is_empty() {
        let _ = writeln!(
            out,
            "  stale (skipped when their step starts): {}",
            r.stale.join(", ")
        );
    }
    let notable = r
        .steps
        .iter()
        .flat_map(|s| &s.clusters)
        .chain(&r.not_in_steps)
        .filter(|c| {
            matches!(
                c.state,
                ClusterState::Failed
                    | ClusterState::Skipped
                    | ClusterState::Pinned
                    | ClusterState::Unselected
            )
        });
    for c in notable {
        let _ = writeln!(
            out,
            "  {:<11} {} {}",
            c.state.as_str(),
            c.id,
            c.reason.as_deref().unwrap_or_default()
        );
    }
    for k in &r.kept_previous {
        let _ = writeln!(out, "  kept       {} oci_tag {}", k.cluster, k.oci_tag);
    }
    for t in r.transitions.iter().rev().take(5).rev() {
        let _ = writeln!(out, "  {} {:<8} {}", t.at, t.actor, t.reason);
    }
    out
}

/// `text` with every character that could act on a terminal (controls, bidirectional and
/// invisible ones) shown as its `\u{…}` escape.
fn escape_unprintable(text: &str) -> std::borrow::Cow<'_, str> {
    if crate::domain::names::unprintable(text, false).is_none() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if crate::domain::names::unprintable(c.encode_utf8(&mut [0; 4]), false).is_some() {
            escaped.push_str(&c.escape_unicode().to_string());
        } else {
            escaped.push(c);
        }
    }
    std::borrow::Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    #[test]
    fn terminal_sequences_are_shown_escaped() {
        assert_eq!(super::escape_unprintable("UpgradeFailed"), "UpgradeFailed");
        assert_eq!(
            super::escape_unprintable("a\u{1b}[2Jb\u{202E}c"),
            "a\\u{1b}[2Jb\\u{202e}c"
        );
    }
}
