//! systemd's notify protocol: `READY=1` once the service answers, `STOPPING=1` on shutdown,
//! and `WATCHDOG=1` pings that first prove the database answers. Outside systemd
//! (`NOTIFY_SOCKET` unset) every call is a silent no-op, so sidecars need no switch.

use sd_notify::NotifyState;

use crate::store::Store;
use crate::store::migrate::{SCHEMA_VERSION, schema_version};

fn send(states: &[NotifyState]) {
    if let Err(err) = sd_notify::notify(states) {
        tracing::warn!(error = %err, "cannot notify systemd");
    }
}

/// The database is migrated and seeded and the listener is bound: `/ready` answers ok.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("finishing in-flight requests"),
    ]);
}

/// Pings the watchdog at half its interval, but only while the database answers a query
/// with the current schema: a wedged pool or store gets the service restarted.
pub async fn watchdog(store: Store) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut ticker = tokio::time::interval(interval / 2);
    loop {
        ticker.tick().await;
        // A replica serves from memory whatever its follower does: being alive is enough.
        if store.is_replica() {
            send(&[NotifyState::Watchdog]);
            continue;
        }
        match store.read(schema_version).await {
            Ok(SCHEMA_VERSION) => send(&[NotifyState::Watchdog]),
            Ok(version) => {
                tracing::error!(version, "watchdog: unexpected schema version; not pinging")
            }
            Err(err) => {
                tracing::error!(error = %err, "watchdog: database check failed; not pinging")
            }
        }
    }
}
