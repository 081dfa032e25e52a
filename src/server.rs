//! Start-up and shutdown: open and migrate the database, seed a new one, serve until told
//! to stop, then checkpoint the WAL so the file is whole on its own.

use std::future::Future;
use std::io;
use std::time::Duration;

use poem::listener::{Acceptor, AcceptorExt, BoxAcceptor, Listener, TcpListener};
use poem::{EndpointExt, Server};

use crate::api;
use crate::auth::Tokens;
use crate::config::{Config, Role, SeedSource};
use crate::error::AppError;
use crate::net::limits::LimitedAcceptor;
use crate::store::migrate::{self, Migration};
use crate::store::polls::Flush;
use crate::store::seed::{self, Mode, SeedInput};
use crate::store::write::{Finish, Pipeline};
use crate::store::{Store, clusters};
use crate::systemd;

/// In-flight requests get this long to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Opens the database, brings its schema up to date and, if it was new, loads the seed,
/// all in one transaction: a bad seed leaves no half-initialised file behind.
pub fn open_store(config: &Config) -> Result<Store, AppError> {
    if config.role == Role::Replica {
        return Ok(open_replica(config));
    }
    let (origin, input) = match &config.seed {
        SeedSource::Demo => (
            "built-in demo seed".to_owned(),
            Some(SeedInput::Text(seed::DEMO)),
        ),
        SeedSource::File(path) => (path.display().to_string(), Some(SeedInput::File(path))),
        SeedSource::None => (String::new(), None),
    };
    // Large files are checked after start-up, so `/ready` still comes within a second.
    let large = std::fs::metadata(&config.database_path)
        .is_ok_and(|m| m.len() > INTEGRITY_CHECK_AT_START_MAX_BYTES);
    if !large {
        integrity_check(&config.database_path)?;
    }
    let store =
        Store::open_as(&config.database_path, config.role)?.with_settings(config.store_settings());
    let mut conn = store.connection()?;
    // A large seed is one transaction; a bigger page cache keeps its index pages in memory.
    conn.pragma_update(None, "cache_size", -8192)
        .map_err(crate::store::storage_error)?;
    let outcome = migrate::migrate(&mut conn, |tx| {
        let Some(input) = input else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        // The seed is the record of where a new inventory came from: not audited.
        let mut pipeline = Pipeline::new(tx, None, store.clock().now());
        let counts = seed::apply(input, &mut pipeline, Mode::Create)
            .map_err(|err| with_origin(&origin, err))?;
        pipeline
            .finish(Finish {
                strict_dependencies: config.strict_dependencies,
                ..Finish::default()
            })
            .map_err(|err| with_origin(&origin, err))?;
        tracing::info!(source = %origin, ?counts, took = ?started.elapsed(), "seeded the new database");
        Ok(())
    })?;
    conn.pragma_update(None, "cache_size", -crate::store::PAGE_CACHE_KIB)
        .map_err(crate::store::storage_error)?;
    store.polls().load(&conn)?;
    drop(conn);
    if large {
        let (store, path) = (store.clone(), config.database_path.clone());
        std::thread::spawn(move || {
            if let Err(err) = integrity_check(&path) {
                store.mark_damaged(err.to_string());
            }
        });
    }
    log_rule_violations(&store);
    match outcome {
        Migration::Created => {
            tracing::info!(path = %config.database_path.display(), "created database")
        }
        Migration::Upgraded { from } => {
            tracing::info!(
                from,
                to = migrate::SCHEMA_VERSION,
                "upgraded database schema"
            )
        }
        Migration::Current => {}
    }
    Ok(store)
}

/// Records written before today's write rules keep serving; the log says which (after
/// start-up, so `/ready` is not delayed at fleet size), as `flux-inputs check` does.
fn log_rule_violations(store: &Store) {
    const LOGGED: usize = 20;
    let store = store.clone();
    std::thread::spawn(move || {
        let found = store
            .connection()
            .and_then(|conn| crate::store::rules::violations(&conn));
        match found {
            Ok(found) if found.is_empty() => {}
            Ok(found) => {
                for violation in found.iter().take(LOGGED) {
                    tracing::warn!(%violation, "a stored record breaks a write rule; Kubernetes may refuse what Flux renders from it");
                }
                if found.len() > LOGGED {
                    tracing::warn!(
                        more = found.len() - LOGGED,
                        "more stored records break write rules; `flux-inputs check` lists them all"
                    );
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot check stored records against the write rules")
            }
        }
    });
}

/// A replica opens nothing at start: it loads its copy (or waits for Litestream to make one)
/// and serves from memory.
fn open_replica(config: &Config) -> Store {
    let store = Store::open_replica(&config.database_path, config.hub_url.clone())
        .with_settings(config.store_settings());
    match store.load_copy() {
        Ok(_) => {
            let status = store
                .replica()
                .map(|copy| copy.status())
                .unwrap_or_default();
            tracing::info!(
                path = %config.database_path.display(),
                clusters = status.clusters,
                revision = status.revision,
                txid = status.txid,
                "replica: loaded the copy"
            );
        }
        Err(err) => tracing::warn!(
            path = %config.database_path.display(),
            error = %err,
            "replica: no copy to load yet; /ready answers 503 until one is"
        ),
    }
    store
}

/// Files up to this size are checked before start-up goes on (about 0.15 s for 10,000
/// clusters); larger ones right after, in the background.
const INTEGRITY_CHECK_AT_START_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// `PRAGMA quick_check` on an existing file, before the pool opens it: a file with damaged
/// pages is refused at start rather than served half-broken (reads failing, writes landing in
/// a damaged file). Past `INTEGRITY_CHECK_AT_START_MAX_BYTES` it runs after start-up and a
/// failure turns `/ready` and writes into `503`.
fn integrity_check(path: &std::path::Path) -> Result<(), AppError> {
    if std::fs::metadata(path).map_or(true, |m| m.len() == 0) {
        return Ok(());
    }
    let checked: rusqlite::Result<Vec<String>> =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|conn| {
                conn.busy_timeout(Duration::from_secs(5))?;
                let mut stmt = conn.prepare("PRAGMA quick_check(5)")?;
                let rows = stmt.query_map([], |row| row.get(0))?;
                rows.collect()
            });
    let problems = match checked {
        Ok(lines) if lines.iter().all(|l| l == "ok") => return Ok(()),
        Ok(lines) => lines,
        Err(err) if err.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
            return Err(AppError::Unavailable(format!(
                "database {} is locked by another process",
                path.display()
            )));
        }
        Err(err) => vec![err.to_string()],
    };
    Err(AppError::Internal(format!(
        "database {} is damaged ({}); refusing to start. `flux-inputs check` describes it; \
         restore the latest backup (`flux-inputs backup` makes them) or start on a new file",
        path.display(),
        problems.join("; ")
    )))
}

fn with_origin(origin: &str, err: AppError) -> AppError {
    match err {
        AppError::Internal(m) => AppError::Internal(m),
        other => AppError::Validation(format!("{origin}: {other}")),
    }
}

/// Serves on an already bound listener until `shutdown` resolves, then drains in-flight
/// requests (up to [`SHUTDOWN_GRACE`]) and checkpoints the WAL.
pub async fn serve<A: Acceptor + 'static>(
    config: &Config,
    store: Store,
    acceptor: A,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let tokens = Tokens {
        read: config.read_token.clone(),
        write: config.write_token.clone(),
        events_require_cluster_identity: config.events_require_cluster_identity,
    };
    let requests = std::sync::Arc::new(api::observe::RequestMetrics::default());
    let app = crate::app::build_app_with_metrics(
        store.clone(),
        tokens,
        config.api_mode,
        requests.clone(),
    );
    let metrics_listener = match config.metrics_addr {
        Some(addr) => {
            let acceptor = TcpListener::bind(addr).into_acceptor().await?;
            let endpoint = poem::Route::new()
                .at("/metrics", api::metrics::endpoint)
                .data(store.clone())
                .data(requests);
            Some(tokio::spawn(async move {
                Server::new_with_acceptor(acceptor).run(endpoint).await
            }))
        }
        None => None,
    };
    let retention = (config.audit_keep_entries, config.audit_keep_days);
    let watcher = match config.role {
        Role::Replica => tokio::spawn(follow_copy(store.clone())),
        Role::Hub => {
            let (store, beat) = (store.clone(), store.clone());
            tokio::spawn(async move {
                tokio::join!(background(store, retention), write_heartbeat(beat));
            })
        }
        Role::Standalone => tokio::spawn(background(store.clone(), retention)),
    };
    // Rollouts move only where the inventory is written (crud mode), never on a read-only
    // server or from the CLI.
    let controller = (config.api_mode == crate::config::ApiMode::Crud)
        .then(|| tokio::spawn(crate::controller::run(store.clone())));
    let watchdog = tokio::spawn(systemd::watchdog(store.clone()));
    let clusters = match store.replica() {
        Some(copy) => copy.status().clusters as i64,
        None => store.read(clusters::count).await.unwrap_or_default(),
    };
    systemd::ready(&format!("serving {clusters} clusters"));
    let shutdown = async {
        shutdown.await;
        systemd::stopping();
    };
    let served = Server::new_with_acceptor(LimitedAcceptor::new(acceptor, &config.limits))
        .idle_timeout(config.limits.idle_timeout)
        .run_with_graceful_shutdown(
            app.data(config.limits).data(config.access_log),
            shutdown,
            Some(SHUTDOWN_GRACE),
        )
        .await;
    watcher.abort();
    watchdog.abort();
    if let Some(controller) = controller {
        controller.abort();
    }
    if let Some(listener) = metrics_listener {
        listener.abort();
    }
    served?;
    if store.is_replica() {
        return Ok(());
    }
    flush_polls(&store, Flush::Everything).await;
    // Under Litestream (a hub) the WAL is Litestream's to checkpoint.
    if config.role == Role::Standalone {
        checkpoint(&store).await;
    }
    Ok(())
}

/// Binds `config.listen_addr`, with TLS when `config.tls` is set. Certificates are read now
/// (a bad file stops start-up) and again on every SIGHUP; a reload that fails keeps the
/// certificates in use. Established connections keep theirs; new handshakes get the new ones.
pub async fn bind(config: &Config) -> io::Result<BoxAcceptor> {
    let tcp = TcpListener::bind(config.listen_addr);
    let Some(files) = config.tls.clone() else {
        return Ok(tcp.into_acceptor().await?.boxed());
    };
    let (configs, current) = tokio::sync::watch::channel(crate::net::tls::load(&files)?);
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            match crate::net::tls::load(&files) {
                Ok(config) => {
                    crate::net::tls::RELOADS[0].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(cert = %files.cert.display(), "SIGHUP: TLS certificates reloaded");
                    if configs.send(config).is_err() {
                        return;
                    }
                }
                Err(err) => {
                    crate::net::tls::RELOADS[1].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!(error = %err, "SIGHUP: cannot reload TLS certificates; keeping the current ones")
                }
            }
        }
    });
    let tcp = tcp.into_acceptor().await?;
    Ok(crate::net::tls::TlsAcceptor::new(tcp, current, &config.limits).boxed())
}

/// Writes the poll times `which` chooses and the token last-used times recorded since the
/// last flush.
async fn flush_polls(store: &Store, which: Flush) {
    if let Err(err) = store.flush_usage(which).await {
        tracing::warn!(error = %err, "cannot save poll times");
    }
}

/// Folds the WAL back into the database file, so a copied file is complete.
async fn checkpoint(store: &Store) {
    if let Err(err) = store.checkpoint().await {
        tracing::warn!(error = %err, "WAL checkpoint at shutdown failed");
    }
}

/// How often the background task looks for commits made by other processes (the CLI, sqlite3)
/// and checks that the database file is still the one opened.
pub const EXTERNAL_WRITE_POLL: Duration = Duration::from_secs(1);
/// How often recorded poll times are looked at for writing to the database (a part every
/// `POLL_FLUSH_EVERY / polls::FLUSH_PARTS`; a poll time already written is written again
/// once it moved on by a tenth of `poll_stale_after`, at most five minutes).
pub const POLL_FLUSH_EVERY: Duration = Duration::from_secs(30);
/// How soon a poll that made a cluster's feed fresh is written.
pub const FRESH_POLL_FLUSH_AFTER: Duration = Duration::from_secs(1);

/// The server's background work: a watcher for outside commits and the file's identity
/// (every second), and the batched writes (a part of the polls about every second, each
/// part every 30 s). They run apart so that a flush waiting for a lock never delays
/// noticing a revoked token.
async fn background(store: Store, retention: (Option<u64>, Option<u64>)) {
    let flusher = tokio::spawn(flush_and_prune(store.clone(), retention));
    watch_outside_commits(store).await;
    flusher.abort();
}

async fn watch_outside_commits(store: Store) {
    let mut ticker = tokio::time::interval(EXTERNAL_WRITE_POLL);
    loop {
        ticker.tick().await;
        store.check_file_identity();
        match store.outside_commit().await {
            Ok(true) => store.forget_cached(),
            Ok(false) => {}
            // The last version seen is kept; the next tick compares with it.
            Err(err) => tracing::debug!(error = %err, "outside-commit check deferred"),
        }
    }
}

async fn flush_and_prune(store: Store, retention: (Option<u64>, Option<u64>)) {
    use crate::store::polls::FLUSH_PARTS;
    // One part of the polls at a time, every part once per POLL_FLUSH_EVERY.
    let mut ticker = tokio::time::interval(POLL_FLUSH_EVERY / FLUSH_PARTS as u32);
    ticker.tick().await;
    let mut part = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            // A cluster's feed became fresh: written within a second (one write for every
            // cluster that turned fresh meanwhile), so `flux-inputs status` agrees.
            () = store.polls().freshened() => {
                tokio::time::sleep(FRESH_POLL_FLUSH_AFTER).await;
                flush_polls(&store, Flush::Due).await;
                continue;
            }
        }
        flush_polls(&store, Flush::Part(part)).await;
        part = (part + 1) % FLUSH_PARTS;
        // Pruning once a round.
        if part != 0 || (retention.0.is_none() && retention.1.is_none()) {
            continue;
        }
        let now = store.clock().now();
        let pruned = store
            .write(move |tx| {
                // A few hundred rows per pass: pruning never holds the write lock for long.
                let days = retention.1.map(|d| d * 86_400);
                crate::store::audit::prune(tx, retention.0, days, 500, now)
            })
            .await;
        match pruned {
            Ok(500) => ticker.reset_immediately(),
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "audit pruning failed"),
        }
    }
}

/// How often a hub writes its heartbeat for the replicas.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(30);
/// How often a replica looks at Litestream's position file and the copy's file.
pub const COPY_CHECK_EVERY: Duration = Duration::from_millis(250);
/// A replica reloads at least this often (the heartbeat, tokens), whatever the files say.
pub const COPY_RELOAD_AT_LEAST: Duration = Duration::from_secs(30);

/// A hub's heartbeat row, so an edge replica knows how old its copy is.
async fn write_heartbeat(store: Store) {
    let mut ticker = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        ticker.tick().await;
        let now = store.clock().now();
        if let Err(err) = store
            .write(move |tx| crate::store::replica::beat(tx, now))
            .await
        {
            tracing::warn!(error = %err, "cannot write the hub heartbeat");
        }
    }
}

/// A replica follows its copy: whenever Litestream's `<db>-txid` or the file itself changes
/// (and at least every `COPY_RELOAD_AT_LEAST`), it loads the copy from a fresh read-only
/// connection. A failed load keeps the last good copy and is retried on the next change
/// or within a second.
async fn follow_copy(store: Store) {
    let Some(txid_path) = store.replica().map(|copy| copy.txid_path()) else {
        return;
    };
    let path = store.path().to_owned();
    let marker = move || {
        use std::os::unix::fs::MetadataExt;
        let file = std::fs::metadata(&path)
            .ok()
            .map(|m| (m.ino(), m.len(), m.mtime(), m.mtime_nsec()));
        (std::fs::read(&txid_path).ok(), file)
    };
    let mut loaded = marker();
    let mut last_try = std::time::Instant::now();
    let mut failing = store
        .replica()
        .is_some_and(|copy| copy.status().loaded_at.is_none());
    let mut last_error = String::new();
    loop {
        tokio::time::sleep(COPY_CHECK_EVERY).await;
        let now = marker();
        let due = now != loaded
            || last_try.elapsed() >= COPY_RELOAD_AT_LEAST
            || (failing && last_try.elapsed() >= Duration::from_secs(1));
        if !due {
            continue;
        }
        last_try = std::time::Instant::now();
        let handle = store.clone();
        match tokio::task::spawn_blocking(move || handle.load_copy()).await {
            Ok(Ok(changed)) => {
                if failing || changed {
                    let status = store.replica().map(|c| c.status()).unwrap_or_default();
                    tracing::info!(
                        revision = status.revision,
                        txid = status.txid,
                        clusters = status.clusters,
                        "replica: loaded the copy"
                    );
                }
                loaded = now;
                failing = false;
                last_error.clear();
            }
            Ok(Err(err)) => {
                failing = true;
                let message = err.to_string();
                if message != last_error {
                    tracing::warn!(error = %message, "replica: cannot load the copy; serving the last good one");
                    last_error = message;
                }
            }
            Err(err) => tracing::error!(error = %err, "replica: the load task failed"),
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
