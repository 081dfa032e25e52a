//! Start-up and shutdown: open and migrate the database, seed a new one, serve until told
//! to stop, then checkpoint the WAL so the file is whole on its own.

use std::future::Future;
use std::io;
use std::time::Duration;

use poem::listener::{
    Acceptor, AcceptorExt, BoxAcceptor, IntoTlsConfigStream, Listener, RustlsCertificate,
    RustlsConfig, TcpListener,
};
use poem::{EndpointExt, Server};

use crate::api::{self, auth::Tokens};
use crate::config::{Config, SeedSource, TlsFiles};
use crate::error::AppError;
use crate::store::migrate::{self, Migration};
use crate::store::seed::{self, Seed};
use crate::store::{Store, clusters};
use crate::systemd;

/// In-flight requests get this long to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Opens the database, brings its schema up to date and, if it was new, loads the seed,
/// all in one transaction: a bad seed leaves no half-initialised file behind.
pub fn open_store(config: &Config) -> Result<Store, AppError> {
    let seed = match &config.seed {
        SeedSource::Demo => Some(("built-in demo seed".to_owned(), seed::DEMO.to_owned())),
        SeedSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|err| {
                AppError::BadRequest(format!("cannot read seed file {}: {err}", path.display()))
            })?;
            Some((path.display().to_string(), text))
        }
        SeedSource::None => None,
    };
    let store = Store::open(&config.database_path)?
        .with_strict_dependencies(config.strict_dependencies)
        .with_stale_after(config.poll_stale_after);
    let mut conn = store.connection()?;
    // A large seed is one transaction; a bigger page cache keeps its index pages in memory.
    conn.pragma_update(None, "cache_size", -131_072)
        .map_err(crate::store::storage_error)?;
    let outcome = migrate::migrate(&mut conn, |tx| {
        let Some((origin, text)) = &seed else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let parsed = Seed::parse(text).map_err(|err| with_origin(origin, err))?;
        let parse_time = started.elapsed();
        parsed.load(tx).map_err(|err| with_origin(origin, err))?;
        tracing::info!(
            source = %origin,
            counts = ?seed::summary(&parsed),
            ?parse_time,
            load_time = ?started.elapsed() - parse_time,
            "seeded the new database"
        );
        Ok(())
    })?;
    conn.pragma_update(None, "cache_size", -crate::store::PAGE_CACHE_KIB)
        .map_err(crate::store::storage_error)?;
    store.polls().load(&conn)?;
    drop(conn);
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
    };
    let requests = std::sync::Arc::new(api::observe::RequestMetrics::default());
    let app = api::build_app_with_metrics(store.clone(), tokens, config.api_mode, requests.clone());
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
    let watcher = tokio::spawn(background(store.clone(), retention));
    let watchdog = tokio::spawn(systemd::watchdog(store.clone()));
    let clusters = store.read(clusters::count).await.unwrap_or_default();
    systemd::ready(&format!("serving {clusters} clusters"));
    let shutdown = async {
        shutdown.await;
        systemd::stopping();
    };
    let served = Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app, shutdown, Some(SHUTDOWN_GRACE))
        .await;
    watcher.abort();
    watchdog.abort();
    if let Some(listener) = metrics_listener {
        listener.abort();
    }
    served?;
    flush_polls(&store).await;
    checkpoint(&store).await;
    Ok(())
}

/// Binds `config.listen_addr`.
/// Binds `config.listen_addr`, with TLS when `config.tls` is set. Certificates are read now
/// (a bad file stops start-up) and again on every SIGHUP; a reload that fails keeps the
/// certificates in use. Established connections keep theirs; new handshakes get the new ones.
pub async fn bind(config: &Config) -> io::Result<BoxAcceptor> {
    let tcp = TcpListener::bind(config.listen_addr);
    let Some(files) = config.tls.clone() else {
        return Ok(tcp.into_acceptor().await?.boxed());
    };
    let initial = checked_tls_config(&files)?;
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let reloads = futures_util::stream::unfold(
        (Some(initial), hangup, files),
        |(first, mut hangup, files)| async move {
            if let Some(config) = first {
                return Some((config, (None, hangup, files)));
            }
            loop {
                hangup.recv().await?;
                match checked_tls_config(&files) {
                    Ok(config) => {
                        tracing::info!(cert = %files.cert.display(), "SIGHUP: TLS certificates reloaded");
                        return Some((config, (None, hangup, files)));
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "SIGHUP: cannot reload TLS certificates; keeping the current ones")
                    }
                }
            }
        },
    );
    Ok(tcp.rustls(Box::pin(reloads)).into_acceptor().await?.boxed())
}

/// Reads the files twice: once to validate them as rustls will use them (a key that does not
/// match, a bad CA), once for the configuration handed to the listener.
fn checked_tls_config(files: &TlsFiles) -> io::Result<RustlsConfig> {
    let _validated = tls_config(files)?.into_stream()?;
    tls_config(files)
}

/// Reads the PEM files into a rustls configuration.
fn tls_config(files: &TlsFiles) -> io::Result<RustlsConfig> {
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("cannot read TLS {what} {}: {err}", path.display()),
            )
        })
    };
    let certificate = RustlsCertificate::new()
        .cert(read(&files.cert, "certificate")?)
        .key(read(&files.key, "key")?);
    let mut config = RustlsConfig::new().fallback(certificate);
    if let Some(ca) = &files.client_ca {
        config = config.client_auth_required(read(ca, "client CA")?);
    }
    Ok(config)
}

/// Writes the poll times recorded since the last flush.
async fn flush_polls(store: &Store) {
    let polls = store.polls().clone();
    let flushed = store
        .blocking_with_connection(move |conn| polls.flush(conn))
        .await;
    if let Err(err) = flushed {
        tracing::warn!(error = %err, "cannot save poll times");
    }
}

/// Folds the WAL back into the database file, so a copied file is complete.
async fn checkpoint(store: &Store) {
    if let Err(err) = store.checkpoint().await {
        tracing::warn!(error = %err, "WAL checkpoint at shutdown failed");
    }
}

/// How often the background task looks for commits made by other processes (the CLI, sqlite3).
pub const EXTERNAL_WRITE_POLL: Duration = Duration::from_secs(1);
/// How often recorded poll times are written to the database.
pub const POLL_FLUSH_EVERY: u32 = 30;

/// The server's background work, on a connection of its own: every second, drop the feed
/// cache if another connection committed (`PRAGMA data_version` changes only for commits made
/// elsewhere, so the poll-time flushes below, made on this same connection, never trigger it);
/// every 30 seconds, write the poll times recorded since the last flush.
async fn background(store: Store, retention: (Option<u64>, Option<u64>)) {
    let mut ticker = tokio::time::interval(EXTERNAL_WRITE_POLL);
    let mut state: Option<(rusqlite::Connection, i64)> = None;
    for tick in 1u32.. {
        ticker.tick().await;
        let path = store.path().to_owned();
        let polls = store.polls().clone();
        let tokens = store.tokens().clone();
        let flush = tick % POLL_FLUSH_EVERY == 0;
        let prune = flush && (retention.0.is_some() || retention.1.is_some());
        let previous = state.take();
        let polled = tokio::task::spawn_blocking(
            move || -> Result<(rusqlite::Connection, i64, bool), AppError> {
                let (mut conn, last) = match previous {
                    Some((conn, last)) => (conn, Some(last)),
                    None => {
                        let conn = rusqlite::Connection::open(&path)
                            .map_err(crate::store::storage_error)?;
                        conn.busy_timeout(Duration::from_secs(5))
                            .map_err(crate::store::storage_error)?;
                        (conn, None)
                    }
                };
                let version: i64 = conn
                    .query_row("PRAGMA data_version", [], |row| row.get(0))
                    .map_err(crate::store::storage_error)?;
                if flush {
                    polls.flush(&mut conn)?;
                    tokens.flush_last_used(&conn)?;
                }
                // A few hundred rows per pass: pruning never holds the write lock for long.
                if prune {
                    let days = retention.1.map(|d| d * 86_400);
                    while crate::store::audit::prune(&conn, retention.0, days, 500)? == 500 {}
                }
                Ok((conn, version, last.is_some_and(|last| last != version)))
            },
        )
        .await;
        match polled {
            Ok(Ok((conn, version, changed))) => {
                if changed {
                    store.feed_cache().invalidate();
                    store.tokens().invalidate();
                }
                state = Some((conn, version));
            }
            Ok(Err(err)) => tracing::warn!(error = %err, "background database check failed"),
            Err(err) => tracing::warn!(error = %err, "background task failed"),
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
