//! Progressive rollouts in SQLite (README, "Progressive rollouts"): planning and storing a
//! rollout (`plan`), reading it back (`read`), and its transitions (`transitions`). The
//! decisions are the domain's (`domain::rollout::decide`); the controller that looks at
//! running rollouts and applies them lives above the store (`controller`).
//!
//! Every transition is one transaction: a step's writes to the clusters, a rollback and the
//! promotion are inventory writes through the one write pipeline (actor `rollout:<id>`) that
//! also move the rollout's own rows; gate verdicts and pauses are plain writes. Each one
//! re-reads, inside its transaction, that the rollout still stands where the decision was
//! made, so a decision is applied once even when a verb or a second process got there first,
//! and a process killed at any moment resumes from the rows.

pub mod guard;
mod plan;
mod read;
mod transitions;

use crate::domain::rollout::RolloutState;

pub(super) use guard::active_for;
pub use read::{ActiveGauges, Gauges, gauges};

/// The actor of the controller's own transitions.
pub const CONTROLLER: &str = "rollout";

/// The audit actor of a rollout's writes.
pub fn actor(id: &str) -> String {
    format!("rollout:{id}")
}

pub(super) fn parse_state(text: &str) -> RolloutState {
    RolloutState::parse(text).unwrap_or(RolloutState::Aborted)
}
