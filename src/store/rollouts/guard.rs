//! What an active rollout forbids: a write to the layer it promotes into (its component's
//! catalog entry, or its overlay) by anyone but itself.
//! Asked by the write pipeline through the resource (`Resource::guard_write`), so this holds
//! for every write path; it depends on nothing of the pipeline.

use rusqlite::{Connection, OptionalExtension};

use super::{actor, parse_state};
use crate::domain::rollout::RolloutState;
use crate::error::{AppError, Result};
use crate::store::SqlResultExt;

/// A catalog write to a component held by an active rollout is refused, unless the rollout
/// itself makes it (its promotion).
pub fn check_catalog_write(conn: &Connection, component: &str, writer: &str) -> Result<()> {
    let Some((id, state)) = active_for(conn, component)? else {
        return Ok(());
    };
    if writer == actor(&id) {
        return Ok(());
    }
    Err(AppError::Conflict(format!(
        "platform component '{component}' is being rolled out by rollout '{id}' ({}): catalog \
         writes to it wait until the rollout ends; abort or roll it back to change it now",
        state.as_str()
    )))
}

/// A write to an overlay an active rollout promotes into is refused, unless the rollout
/// itself makes it.
pub fn check_overlay_write(conn: &Connection, overlay: &str, writer: &str) -> Result<()> {
    let active: Option<(String, String)> = conn
        .prepare_cached(&format!(
            "SELECT id, state FROM rollouts WHERE json_extract(spec, '$.overlay') = ?1 AND state IN {}",
            RolloutState::ACTIVE_SQL
        ))
        .db()?
        .query_row([overlay], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
        .db()?;
    let Some((id, state)) = active else {
        return Ok(());
    };
    if writer == actor(&id) {
        return Ok(());
    }
    Err(AppError::Conflict(format!(
        "overlay '{overlay}' is what rollout '{id}' ({}) promotes into: writes to it wait until \
         the rollout ends; abort or roll it back to change it now",
        parse_state(&state).as_str()
    )))
}

pub(in crate::store) fn active_for(
    conn: &Connection,
    component: &str,
) -> Result<Option<(String, RolloutState)>> {
    conn.prepare_cached(&format!(
        "SELECT id, state FROM rollouts WHERE component = ?1 AND state IN {}",
        RolloutState::ACTIVE_SQL
    ))
    .db()?
    .query_row([component], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })
    .optional()
    .db()
    .map(|found| found.map(|(id, state)| (id, parse_state(&state))))
}
