//! Where this server stands in an edge topology: it decides how the database file is
//! opened and written.

use serde::{Deserialize, Serialize};

/// Where this server stands in an edge topology (README, "Edge replicas on Litestream").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// One server, one file: the default.
    #[default]
    Standalone,
    /// The inventory's writer, replicated by `litestream replicate`: Litestream alone
    /// checkpoints the WAL, and a heartbeat row is written every 30 s for the replicas.
    Hub,
    /// A read-only copy kept by `litestream restore -f`: opened read-only, reloaded when
    /// it advances, never migrated; writes answer 405 naming the hub.
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::Hub => "hub",
            Role::Replica => "replica",
        }
    }
}
