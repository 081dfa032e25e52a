//! The rollout controller: it looks at every running rollout, lets the domain decide what
//! comes next (`domain::rollout::decide`), and applies the decision through the store, one
//! transaction per move. It runs in the crud-mode server, woken by new events, verbs and
//! window writes, and looks at each rollout again when its clock says so (`next_look`): a
//! rollout waiting hours for a maintenance window costs nothing meanwhile. All its state and
//! deadlines are rows, so a server killed at any moment resumes every rollout where it stood.

use std::collections::HashMap;
use std::time::Duration;

use crate::domain::rollout::{Decision, Next, OnFailure, RolloutRecord, next_look};
use crate::error::{AppError, Result};
use crate::store::{Store, revision};

/// How often the controller checks which rollouts are due (a cheap read); a rollout is
/// looked at when due: every tick while its clusters are judged, otherwise at its bake's end
/// or when the first window of its waiting clusters opens.
pub const TICK: Duration = Duration::from_secs(1);

/// The controller's loop. Every rollout is looked at when it is due, and all of them when
/// something may have moved them: a wake-up (events, verbs, a window written here) or an
/// inventory revision written by another process (the CLI).
pub async fn run(store: Store) {
    let mut ticker = tokio::time::interval(TICK);
    let mut due: HashMap<String, i64> = HashMap::new();
    let mut seen_revision = None;
    loop {
        let woken = tokio::select! {
            _ = ticker.tick() => false,
            () = store.rollouts_woken() => true,
        };
        let now = store.clock().now();
        let looked = async {
            let revision = store.read(revision::revision).await?;
            let everything = woken || seen_revision != Some(revision);
            seen_revision = Some(revision);
            let running = store.running_rollouts().await?;
            due.retain(|id, _| running.contains(id));
            let ids: Vec<String> = running
                .into_iter()
                .filter(|id| everything || due.get(id).is_none_or(|at| *at <= now))
                .collect();
            let (_, next) = advance(&store, &ids, now).await?;
            for (id, at) in next {
                // Nothing but a wake-up moves it: look again in an hour anyway.
                due.insert(id, at.unwrap_or(now + 3600));
            }
            Ok::<_, AppError>(())
        };
        if let Err(err) = looked.await {
            tracing::warn!(error = %err, "the rollout controller could not look at the rollouts");
            due.clear();
        }
    }
}

/// One look at every running rollout at `now`: gate verdicts, timeouts, the next step, a
/// pause, a rollback or the promotion, each in its own transaction. Returns the number of
/// transactions written.
pub async fn advance_rollouts(store: &Store, now: i64) -> Result<usize> {
    let ids = store.running_rollouts().await?;
    Ok(advance(store, &ids, now).await?.0)
}

/// `advance_rollouts` for the rollouts `ids`; also when each needs its next look.
async fn advance(
    store: &Store,
    ids: &[String],
    now: i64,
) -> Result<(usize, HashMap<String, Option<i64>>)> {
    let mut written = 0;
    let mut next = HashMap::new();
    for id in ids {
        // A few passes: a gate that passes with no bake goes on to the next step at once.
        let mut due = Some(now);
        for _ in 0..4 {
            match advance_rollout(store, id, now).await {
                Ok(Look::Moved) => written += 1,
                Ok(Look::Stayed(at)) => {
                    due = at;
                    break;
                }
                // Another writer moved it first: look again next time.
                Err(AppError::PreconditionFailed(message)) => {
                    tracing::debug!(rollout = %id, %message, "rollout step deferred");
                    break;
                }
                Err(err) => return Err(err),
            }
        }
        next.insert(id.clone(), due);
    }
    Ok((written, next))
}

/// What one look at a rollout did.
enum Look {
    Moved,
    /// Nothing to do now; when it is next due (`None`: only a wake-up moves it).
    Stayed(Option<i64>),
}

/// One look at one rollout, and the move it calls for.
async fn advance_rollout(store: &Store, id: &str, now: i64) -> Result<Look> {
    let Some((record, mut decision)) = store.look_at_rollout(id, now).await? else {
        return Ok(Look::Stayed(None));
    };
    let due = next_look(&record, now, TICK.as_secs() as i64);
    let started = std::time::Instant::now();
    let next = std::mem::take(&mut decision.next);
    let action = format!("{next:?}");
    let moved = act(store, record, decision, next, now).await?;
    if !moved {
        return Ok(Look::Stayed(due));
    }
    tracing::debug!(
        rollout = id,
        action,
        took_ms = started.elapsed().as_millis() as u64,
        "rollout moved"
    );
    Ok(Look::Moved)
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
