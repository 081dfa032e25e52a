//! Named read tokens, stored as SHA-256 digests: scoped to one cluster's Flux feeds, or to
//! everything readable. The registry answers the per-request check from memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rusqlite::{Connection, params};

use super::sql::SqlResultExt;
use crate::error::{AppError, Result};

/// A token as listed (never its value).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenInfo {
    pub name: String,
    /// The cluster it may read; `None` = every read route.
    pub cluster: Option<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// What a presented token may do.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub name: Arc<str>,
    /// `Some(dns)`: only `/api/v2/flux/clusters/{dns}/...`.
    pub cluster_dns: Option<Arc<str>>,
}

/// The SHA-256 of a token: what is stored (as hex) and what a presented token is looked up by.
pub fn raw_digest(token: &str) -> [u8; 32] {
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut raw = [0u8; 32];
    raw.copy_from_slice(hash.as_ref());
    raw
}

/// The stored form: lowercase hex of the SHA-256.
pub fn digest(token: &str) -> String {
    raw_digest(token)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn from_hex(text: &str) -> Option<[u8; 32]> {
    let mut raw = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in raw.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(raw)
}

/// How a token appears in the audit trail: never its value nor its digest.
fn audit_state(name: &str, cluster: Option<&str>, created_at: i64) -> serde_json::Value {
    serde_json::json!({"name": name, "cluster": cluster, "created_at": created_at})
}

/// Creates a token and returns its value (shown once; only the digest is stored).
/// The creation is audited, without the value; `now` stamps it.
pub fn create(
    conn: &Connection,
    change: &super::audit::Change,
    now: i64,
    name: &str,
    cluster: Option<&str>,
) -> Result<String> {
    if let Some(cluster) = cluster
        && !super::sql::exists(conn, "clusters", cluster)?
    {
        return Err(AppError::Validation(format!(
            "cluster '{cluster}' does not exist"
        )));
    }
    let taken: bool = conn
        .prepare_cached("SELECT 1 FROM api_tokens WHERE name = ?1")
        .db()?
        .exists([name])
        .db()?;
    if taken {
        return Err(AppError::Conflict(format!(
            "a token named '{name}' exists; revoke it first"
        )));
    }
    let mut random = [0u8; 32];
    aws_lc_rs::rand::fill(&mut random)
        .map_err(|_| AppError::Internal("no randomness available".into()))?;
    let token: String = format!(
        "fi_{}",
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let created_at = now;
    conn.prepare_cached(
        "INSERT INTO api_tokens (name, token_sha256, scope_cluster_id, created_at) VALUES (?1, ?2, ?3, ?4)",
    )
    .db()?
    .execute(params![name, digest(&token), cluster, created_at])
    .map_err(|err| match err.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => {
            AppError::Validation(format!("token name '{name}': use 1-63 of a-z, 0-9, '.', '_', '-'"))
        }
        _ => super::storage_error(err),
    })?;
    let after = audit_state(name, cluster, created_at);
    super::audit::append(conn, change, now, TOKENS, name, None, Some(&after))?;
    Ok(token)
}

/// The audit trail's kind for token operations.
pub const TOKENS: &str = "tokens";

pub fn list(conn: &Connection) -> Result<Vec<TokenInfo>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT name, scope_cluster_id, created_at, last_used_at FROM api_tokens ORDER BY name",
        )
        .db()?;
    let rows = stmt
        .query_map([], |row| {
            Ok(TokenInfo {
                name: row.get(0)?,
                cluster: row.get(1)?,
                created_at: row.get(2)?,
                last_used_at: row.get(3)?,
            })
        })
        .db()?;
    rows.collect::<rusqlite::Result<Vec<_>>>().db()
}

/// Revokes a token; audited.
pub fn revoke(
    conn: &Connection,
    change: &super::audit::Change,
    now: i64,
    name: &str,
) -> Result<TokenInfo> {
    let found = list(conn)?.into_iter().find(|t| t.name == name);
    let info = found.ok_or_else(|| AppError::NotFound(format!("no token named '{name}'")))?;
    conn.prepare_cached("DELETE FROM api_tokens WHERE name = ?1")
        .db()?
        .execute([name])
        .db()?;
    let before = audit_state(name, info.cluster.as_deref(), info.created_at);
    super::audit::append(conn, change, now, TOKENS, name, Some(&before), None)?;
    Ok(info)
}

/// Every token's digest and grant, with the DNS name of its cluster.
fn load(conn: &Connection) -> Result<HashMap<[u8; 32], Arc<Known>>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT t.token_sha256, t.name, c.cluster_dns FROM api_tokens t \
             LEFT JOIN clusters c ON c.id = t.scope_cluster_id",
        )
        .db()?;
    let rows = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                Grant {
                    name: Arc::from(row.get::<_, String>(1)?),
                    cluster_dns: row.get::<_, Option<String>>(2)?.map(Arc::from),
                },
            ))
        })
        .db()?;
    let mut grants = HashMap::new();
    for row in rows {
        let (hex, grant) = row.db()?;
        if let Some(raw) = from_hex(&hex) {
            grants.insert(
                raw,
                Arc::new(Known {
                    grant,
                    used_at: AtomicI64::new(0),
                }),
            );
        }
    }
    Ok(grants)
}

/// A known token: its grant and when it was last presented (0: not since the last flush).
struct Known {
    grant: Grant,
    used_at: AtomicI64,
}

/// Token digest → what it may do.
type Grants = Arc<HashMap<[u8; 32], Arc<Known>>>;

/// The grant of `token` in `grants`, noting its use (at most one write a second per token,
/// so polls do not keep its cache line busy).
fn grant_of(grants: &HashMap<[u8; 32], Arc<Known>>, token: &str, now: i64) -> Option<Grant> {
    let known = grants.get(&raw_digest(token))?;
    let at = now;
    if known.used_at.load(Ordering::Relaxed) != at {
        known.used_at.store(at, Ordering::Relaxed);
    }
    Some(known.grant.clone())
}

/// The tokens in memory; reloaded after any write (a token change, or a cluster's DNS name).
/// A check hashes the presented token and reads one map entry. The map is shared through a
/// generation number: each worker thread keeps its own handle and takes the lock only when
/// the generation moved, so concurrent polls never meet at a lock.
#[derive(Clone)]
pub struct TokenRegistry {
    /// Unique in the process: names this registry in the threads' handles.
    id: usize,
    grants: Arc<RwLock<Option<Grants>>>,
    stale: Arc<AtomicBool>,
    /// Bumped whenever `grants` is replaced.
    generation: Arc<AtomicU64>,
    /// One load at a time: a burst of polls after a change must not build the map once each.
    loading: Arc<tokio::sync::Mutex<()>>,
}

impl Default for TokenRegistry {
    fn default() -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        TokenRegistry {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            grants: Arc::default(),
            stale: Arc::default(),
            generation: Arc::default(),
            loading: Arc::default(),
        }
    }
}

thread_local! {
    /// This thread's handle on the current map: (registry, generation, map).
    static LOCAL: std::cell::RefCell<Option<(usize, u64, Grants)>> = const { std::cell::RefCell::new(None) };
}

impl TokenRegistry {
    pub fn invalidate(&self) {
        self.stale.store(true, Ordering::Relaxed);
    }

    /// The grant of `token` from this thread's handle on the map (refreshed when the
    /// generation moved); `None` when the map must be (re)loaded first. The hit path borrows
    /// the handle: no lock, no shared reference count touched.
    fn lookup(&self, token: &str, now: i64) -> Option<Option<Grant>> {
        if self.stale.load(Ordering::Relaxed) {
            return None;
        }
        let generation = self.generation.load(Ordering::Acquire);
        LOCAL.with_borrow_mut(|local| {
            let fresh =
                matches!(local, Some((id, seen, _)) if *id == self.id && *seen == generation);
            if !fresh {
                let shared = self
                    .grants
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()?;
                *local = Some((self.id, generation, shared));
            }
            let (_, _, grants) = local.as_ref()?;
            Some(grant_of(grants, token, now))
        })
    }

    /// The grant of a presented token, if it is a known named token.
    pub async fn check(&self, store: &super::Store, token: &str) -> Result<Option<Grant>> {
        let now = store.clock().now();
        if let Some(found) = self.lookup(token, now) {
            return Ok(found);
        }
        let grants = self.reload(store).await?;
        Ok(grant_of(&grants, token, now))
    }

    /// Whether a named token with this SHA-256 still exists (a console session opened with it
    /// ends when it does not).
    pub async fn knows(&self, store: &super::Store, digest: &[u8; 32]) -> Result<bool> {
        let current = if self.stale.load(Ordering::Relaxed) {
            None
        } else {
            self.grants
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        };
        let grants = match current {
            Some(grants) => grants,
            None => self.reload(store).await?,
        };
        Ok(grants.contains_key(digest))
    }

    /// Loads the map after a change; concurrent callers wait for the one load.
    async fn reload(&self, store: &super::Store) -> Result<Grants> {
        let _guard = self.loading.lock().await;
        let previous = self
            .grants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(grants) = &previous
            && !self.stale.load(Ordering::Relaxed)
        {
            // Another caller loaded it while this one waited.
            return Ok(grants.clone());
        }
        self.stale.store(false, Ordering::Relaxed);
        let loaded = store.read(load).await?;
        // Use times not yet flushed move to the reloaded entries.
        if let Some(previous) = previous {
            let by_name: HashMap<&str, &Known> =
                loaded.values().map(|k| (&*k.grant.name, &**k)).collect();
            for known in previous.values() {
                let at = known.used_at.load(Ordering::Relaxed);
                if at > 0
                    && let Some(entry) = by_name.get(&*known.grant.name)
                {
                    entry.used_at.fetch_max(at, Ordering::Relaxed);
                }
            }
        }
        let loaded = Arc::new(loaded);
        *self.grants.write().unwrap_or_else(|e| e.into_inner()) = Some(loaded.clone());
        self.generation.fetch_add(1, Ordering::Release);
        Ok(loaded)
    }

    /// Replaces the map with the tokens `conn` reads (a replica's copy).
    pub fn load_from(&self, conn: &Connection) -> Result<()> {
        let loaded = Arc::new(load(conn)?);
        *self.grants.write().unwrap_or_else(|e| e.into_inner()) = Some(loaded);
        self.stale.store(false, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Writes last-used times noted since the last flush, inside the caller's transaction
    /// (the poll times' flush): one commit for all of them.
    pub fn flush_last_used(&self, conn: &Connection) -> Result<()> {
        let Some(grants) = self
            .grants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        else {
            return Ok(());
        };
        let mut update = conn
            .prepare_cached("UPDATE api_tokens SET last_used_at = ?2 WHERE name = ?1")
            .db()?;
        for known in grants.values() {
            let at = known.used_at.swap(0, Ordering::Relaxed);
            if at > 0 {
                update.execute(params![known.grant.name, at]).db()?;
            }
        }
        Ok(())
    }
}

impl super::Store {
    /// Creates a named token (audited) and returns its value; the process's token map is
    /// reloaded before the next check, so it works at once.
    pub async fn create_token(
        &self,
        change: super::audit::Change,
        name: String,
        cluster: Option<String>,
    ) -> Result<String> {
        let token = self
            .write({
                let now = self.clock().now();
                move |tx| create(tx, &change, now, &name, cluster.as_deref())
            })
            .await?;
        self.tokens.invalidate();
        Ok(token)
    }

    /// Revokes a named token (audited); it stops working at once in this process.
    pub async fn revoke_token(
        &self,
        change: super::audit::Change,
        name: String,
    ) -> Result<TokenInfo> {
        let now = self.clock().now();
        let revoked = self
            .write(move |tx| revoke(tx, &change, now, &name))
            .await?;
        self.tokens.invalidate();
        Ok(revoked)
    }
}
