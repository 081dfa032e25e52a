//! CRUD for rolebinding definitions (crud mode only).

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::auth::{ReadAccess, WriteAccess};
use super::body::JsonBody;
use super::error::{ReadError, WriteError};
use super::preview::{WritePreview, warning_header};
use crate::domain::model::{Rolebinding, RolebindingUpdate};
use crate::store::{Page, Store, rolebindings};

pub struct RolebindingsApi;

#[derive(ApiResponse)]
pub enum ListRolebindings {
    /// Rolebinding definitions ordered by id.
    #[oai(status = 200)]
    Ok(Json<Vec<Rolebinding>>),
}

#[derive(ApiResponse)]
pub enum CreateRolebinding {
    /// Created; the body is the stored rolebinding.
    #[oai(status = 201)]
    Created(
        Json<Rolebinding>,
        #[oai(header = "Location")] String,
        /// Accepted with warnings (a dependency not assigned, more than 100 inputs).
        #[oai(header = "Warning")]
        Option<String>,
    ),
    /// Dry run (`?dry_run=true`): what the write would do; nothing was stored.
    #[oai(status = 202)]
    Preview(Json<WritePreview<Rolebinding>>),
}

#[derive(ApiResponse)]
pub enum GetRolebinding {
    /// The rolebinding.
    #[oai(status = 200)]
    Ok(Json<Rolebinding>),
}

#[derive(ApiResponse)]
pub enum UpdateRolebinding {
    /// Updated; the body is the stored rolebinding.
    #[oai(status = 200)]
    Ok(
        Json<Rolebinding>,
        /// Accepted with warnings (a dependency not assigned, more than 100 inputs).
        #[oai(header = "Warning")]
        Option<String>,
    ),
    /// Dry run (`?dry_run=true`): what the write would do; nothing was stored.
    #[oai(status = 202)]
    Preview(Json<WritePreview<Rolebinding>>),
}

#[derive(ApiResponse)]
pub enum DeleteRolebinding {
    /// Deleted; the body is the rolebinding as it was.
    #[oai(status = 200)]
    Ok(
        Json<Rolebinding>,
        /// Accepted with warnings.
        #[oai(header = "Warning")]
        Option<String>,
    ),
    /// Dry run (`?dry_run=true`): what the write would do; nothing was deleted.
    #[oai(status = 202)]
    Preview(Json<WritePreview<Rolebinding>>),
}

#[OpenApi(prefix_path = "/rolebindings", tag = "ApiTags::Rolebindings")]
impl RolebindingsApi {
    /// List rolebinding definitions
    #[oai(path = "/", method = "get")]
    async fn list(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
        /// At most this many rolebindings.
        #[oai(validator(minimum(value = "0"), maximum(value = "4294967295")))]
        limit: Query<Option<u32>>,
        /// Skip this many rolebindings.
        #[oai(validator(minimum(value = "0"), maximum(value = "4294967295")))]
        offset: Query<Option<u32>>,
    ) -> Result<ListRolebindings, ReadError> {
        let page = Page {
            limit: limit.0,
            offset: offset.0,
        };
        Ok(ListRolebindings::Ok(Json(
            store
                .read(move |conn| rolebindings::list(conn, page))
                .await?,
        )))
    }

    /// Create a rolebinding
    #[oai(path = "/", method = "post")]
    async fn create(
        &self,
        _auth: WriteAccess,
        store: Data<&Store>,
        /// Check and preview the write without storing anything.
        #[oai(default)]
        dry_run: Query<bool>,
        body: JsonBody<Rolebinding>,
    ) -> Result<CreateRolebinding, WriteError> {
        let written = store.create(body.0, dry_run.0).await?;
        if dry_run.0 {
            return Ok(CreateRolebinding::Preview(Json(WritePreview::new(
                201, written,
            ))));
        }
        let location = format!("/rolebindings/{}", written.value.id);
        Ok(CreateRolebinding::Created(
            Json(written.value),
            location,
            warning_header(&written.warnings),
        ))
    }

    /// Get a rolebinding
    #[oai(path = "/:id", method = "get")]
    async fn get(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
        id: Path<String>,
    ) -> Result<GetRolebinding, ReadError> {
        Ok(GetRolebinding::Ok(Json(store.fetch(id.0).await?)))
    }

    /// Update a rolebinding
    ///
    /// Fields present in the body replace the stored ones; omitted fields keep their values.
    #[oai(path = "/:id", method = "put")]
    async fn update(
        &self,
        _auth: WriteAccess,
        store: Data<&Store>,
        id: Path<String>,
        /// Check and preview the write without storing anything.
        #[oai(default)]
        dry_run: Query<bool>,
        body: JsonBody<RolebindingUpdate>,
    ) -> Result<UpdateRolebinding, WriteError> {
        let written = store.update::<Rolebinding>(id.0, body.0, dry_run.0).await?;
        if dry_run.0 {
            return Ok(UpdateRolebinding::Preview(Json(WritePreview::new(
                200, written,
            ))));
        }
        Ok(UpdateRolebinding::Ok(
            Json(written.value),
            warning_header(&written.warnings),
        ))
    }

    /// Delete a rolebinding
    #[oai(path = "/:id", method = "delete")]
    async fn delete(
        &self,
        _auth: WriteAccess,
        store: Data<&Store>,
        id: Path<String>,
        /// Check and preview the delete without deleting anything.
        #[oai(default)]
        dry_run: Query<bool>,
    ) -> Result<DeleteRolebinding, WriteError> {
        let written = store.delete::<Rolebinding>(id.0, dry_run.0).await?;
        if dry_run.0 {
            return Ok(DeleteRolebinding::Preview(Json(WritePreview::new(
                200, written,
            ))));
        }
        Ok(DeleteRolebinding::Ok(
            Json(written.value),
            warning_header(&written.warnings),
        ))
    }
}
