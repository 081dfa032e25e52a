//! Progressive rollouts over HTTP (README, "Progressive rollouts", crud mode): create (or plan), list, show,
//! and the verbs. The controller that moves them runs in the server (`server.rs`).

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::body::JsonBody;
use super::error::{ReadError, WriteError};
use crate::auth::{ReadAccess, WriteAccess};
use crate::domain::rollout::{Rollout, RolloutSpec, Verb};
use crate::store::Store;

pub struct RolloutsApi;

#[derive(ApiResponse)]
pub enum RolloutCreated {
    /// Stored as `planned`; `POST /rollouts/{id}/start` runs it.
    #[oai(status = 201)]
    Created(
        Json<Rollout>,
        /// Where the rollout lives.
        #[oai(header = "Location")]
        String,
    ),
    /// Dry run (`?dry_run=true`): the plan (steps and their clusters, pinned, unselected and
    /// stale clusters); nothing was stored.
    #[oai(status = 200)]
    Plan(Json<Rollout>),
}

#[derive(ApiResponse)]
pub enum RolloutFound {
    /// The rollout.
    #[oai(status = 200)]
    Ok(Json<Rollout>),
}

#[derive(ApiResponse)]
pub enum RolloutList {
    /// Every rollout, newest first, with counts per step but without the clusters.
    #[oai(status = 200)]
    Ok(Json<Vec<Rollout>>),
}

#[OpenApi(prefix_path = "/rollouts", tag = "ApiTags::Rollouts")]
impl RolloutsApi {
    /// Create a rollout
    ///
    /// Plans the waves over the clusters that have the component enabled and stores the
    /// rollout as `planned`. 409 when the component already has an active rollout; 422 when
    /// the component is unknown, the target changes nothing, or no wave selects a cluster.
    #[oai(path = "/", method = "post")]
    async fn create(
        &self,
        auth: WriteAccess,
        store: Data<&Store>,
        /// Answer the plan and store nothing.
        #[oai(default)]
        dry_run: Query<bool>,
        body: JsonBody<RolloutSpec>,
    ) -> Result<RolloutCreated, WriteError> {
        let rollout = store.create_rollout(body.0, auth.0.0, dry_run.0).await?;
        Ok(if dry_run.0 {
            RolloutCreated::Plan(Json(rollout))
        } else {
            let location = format!("/rollouts/{}", rollout.spec.id);
            RolloutCreated::Created(Json(rollout), location)
        })
    }

    /// List rollouts
    #[oai(path = "/", method = "get")]
    async fn list(&self, _auth: ReadAccess, store: Data<&Store>) -> Result<RolloutList, ReadError> {
        Ok(RolloutList::Ok(Json(store.rollouts().await?)))
    }

    /// Get a rollout
    ///
    /// State, current step, every step with its clusters (state and reason), counts,
    /// timestamps and the reason of every transition.
    #[oai(path = "/:id", method = "get")]
    async fn get(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
        id: Path<String>,
    ) -> Result<RolloutFound, ReadError> {
        Ok(RolloutFound::Ok(Json(store.rollout(id.0).await?)))
    }

    /// Start a planned rollout
    #[oai(path = "/:id/start", method = "post")]
    async fn start(
        &self,
        auth: WriteAccess,
        store: Data<&Store>,
        id: Path<String>,
    ) -> Result<RolloutFound, WriteError> {
        verb(&store, id.0, Verb::Start, auth).await
    }

    /// Pause a running rollout
    ///
    /// Nothing moves until it is resumed; clusters keep what they have.
    #[oai(path = "/:id/pause", method = "post")]
    async fn pause(
        &self,
        auth: WriteAccess,
        store: Data<&Store>,
        id: Path<String>,
    ) -> Result<RolloutFound, WriteError> {
        verb(&store, id.0, Verb::Pause, auth).await
    }

    /// Resume a paused rollout
    ///
    /// Failed clusters are judged again from what they report now, and clusters not passed
    /// yet get a new `wave_timeout_seconds`: a cluster still failing pauses it again.
    #[oai(path = "/:id/resume", method = "post")]
    async fn resume(
        &self,
        auth: WriteAccess,
        store: Data<&Store>,
        id: Path<String>,
    ) -> Result<RolloutFound, WriteError> {
        verb(&store, id.0, Verb::Resume, auth).await
    }

    /// Abort a rollout
    ///
    /// It stops for good where it stands: clusters it moved keep the target as their own
    /// overrides (roll back instead to undo them).
    #[oai(path = "/:id/abort", method = "post")]
    async fn abort(
        &self,
        auth: WriteAccess,
        store: Data<&Store>,
        id: Path<String>,
    ) -> Result<RolloutFound, WriteError> {
        verb(&store, id.0, Verb::Abort, auth).await
    }

    /// Roll a rollout back
    ///
    /// Every cluster it changed gets its previous values back, in one audited write;
    /// clusters edited by hand since keep the edit.
    #[oai(path = "/:id/rollback", method = "post")]
    async fn rollback(
        &self,
        auth: WriteAccess,
        store: Data<&Store>,
        id: Path<String>,
    ) -> Result<RolloutFound, WriteError> {
        verb(&store, id.0, Verb::Rollback, auth).await
    }
}

async fn verb(
    store: &Store,
    id: String,
    verb: Verb,
    auth: WriteAccess,
) -> Result<RolloutFound, WriteError> {
    let rollout = store.rollout_verb(id, verb, auth.0.0).await?;
    Ok(RolloutFound::Ok(Json(rollout)))
}
