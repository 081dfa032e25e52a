//! The rollout controller: it looks at every running rollout, lets the domain decide what
//! comes next (`domain::rollout::decide`), and applies the decision through the store, one
//! transaction per move. It runs in the crud-mode server, woken by new events and by verbs,
//! and at least every `TICK`; all its state and deadlines are rows, so a server killed at any
//! moment resumes every rollout where it stood.

use std::time::Duration;

use crate::domain::rollout::{Decision, Next, OnFailure, RolloutRecord};
use crate::error::{AppError, Result};
use crate::store::Store;

/// How often the controller looks at running rollouts when nothing wakes it (deadlines and
/// bakes end by the clock).
pub const TICK: Duration = Duration::from_secs(1);

/// The controller's loop: a look at every running rollout on each wake-up or tick.
pub async fn run(store: Store) {
    let mut ticker = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = store.rollouts_woken() => {}
        }
        if let Err(err) = advance_rollouts(&store, store.clock().now()).await {
            tracing::warn!(error = %err, "the rollout controller could not look at the rollouts");
        }
    }
}

/// One look at every running rollout at `now`: gate verdicts, timeouts, the next step, a
/// pause, a rollback or the promotion, each in its own transaction. Returns the number of
/// transactions written.
pub async fn advance_rollouts(store: &Store, now: i64) -> Result<usize> {
    let mut written = 0;
    for id in store.running_rollouts().await? {
        // A few passes: a gate that passes with no bake goes on to the next step at once.
        for _ in 0..4 {
            match advance_rollout(store, &id, now).await {
                Ok(true) => written += 1,
                Ok(false) => break,
                // Another writer moved it first: look again next time.
                Err(AppError::PreconditionFailed(message)) => {
                    tracing::debug!(rollout = %id, %message, "rollout step deferred");
                    break;
                }
                Err(err) => return Err(err),
            }
        }
    }
    Ok(written)
}

/// One look at one rollout, and the move it calls for; whether anything was written.
async fn advance_rollout(store: &Store, id: &str, now: i64) -> Result<bool> {
    let Some((record, mut decision)) = store.look_at_rollout(id, now).await? else {
        return Ok(false);
    };
    let started = std::time::Instant::now();
    let next = std::mem::take(&mut decision.next);
    let action = format!("{next:?}");
    let moved = act(store, record, decision, next, now).await;
    if moved.as_ref().is_ok_and(|moved| *moved) {
        tracing::debug!(
            rollout = id,
            action,
            took_ms = started.elapsed().as_millis() as u64,
            "rollout moved"
        );
    }
    moved
}

/// Writes what `decide` found, each kind of move in its own transaction.
async fn act(
    store: &Store,
    record: RolloutRecord,
    decision: Decision,
    next: Next,
    now: i64,
) -> Result<bool> {
    let held = record.clone();
    match next {
        Next::Stay if decision.clusters.is_empty() && decision.step.is_none() => Ok(false),
        Next::Stay => {
            store.record_rollout_decision(record, decision, now).await?;
            Ok(true)
        }
        Next::StartStep(step) => {
            let written = store.start_rollout_step(record, decision, step, now).await;
            pause_if_refused(
                store,
                written,
                held,
                &format!("step {step} cannot start"),
                now,
            )
            .await
        }
        Next::Promote => {
            let written = store.promote_rollout(record, decision, now).await;
            pause_if_refused(store, written, held, "the promotion cannot be written", now).await
        }
        Next::Fail(reason) => match record.spec.on_failure {
            OnFailure::Pause => {
                store
                    .pause_rollout(record, Some(decision), &reason, now)
                    .await?;
                Ok(true)
            }
            OnFailure::Rollback => {
                let written = store
                    .roll_back_failed_rollout(record, decision, reason.clone(), now)
                    .await;
                let what = format!("{reason}; the rollback cannot be written");
                pause_if_refused(store, written, held, &what, now).await
            }
        },
    }
}

/// A write of the rollout that the inventory's rules refuse (a feed over Flux's limit, a
/// catalog rule) cannot succeed by retrying: the rollout pauses and says why.
async fn pause_if_refused(
    store: &Store,
    written: Result<()>,
    record: RolloutRecord,
    what: &str,
    now: i64,
) -> Result<bool> {
    match written {
        Ok(()) => Ok(true),
        Err(
            err @ (AppError::Validation(_)
            | AppError::BlastRadius(_)
            | AppError::WindowClosed(_)
            | AppError::Conflict(_)),
        ) => {
            tracing::warn!(rollout = %record.spec.id, error = %err, "rollout paused: {what}");
            store
                .pause_rollout(record, None, &format!("{what}: {err}"), now)
                .await?;
            Ok(true)
        }
        Err(err) => Err(err),
    }
}
