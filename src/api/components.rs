//! CRUD for the platform component catalog (crud mode only).

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::auth::{ReadAccess, WriteAccess};
use super::body::JsonBody;
use super::error::{ReadError, WriteError};
use super::preview::{WritePreview, warning_header};
use crate::domain::model::{PlatformComponent, PlatformComponentUpdate};
use crate::store::{Page, Store, components};

pub struct PlatformComponentsApi;

#[derive(ApiResponse)]
pub enum ListPlatformComponents {
    /// Catalog components ordered by id.
    #[oai(status = 200)]
    Ok(Json<Vec<PlatformComponent>>),
}

#[derive(ApiResponse)]
pub enum CreatePlatformComponent {
    /// Created; the body is the stored platform component.
    #[oai(status = 201)]
    Created(
        Json<PlatformComponent>,
        #[oai(header = "Location")] String,
        /// Accepted with warnings (a dependency not assigned, more than 100 inputs).
        #[oai(header = "Warning")]
        Option<String>,
    ),
    /// Dry run (`?dry_run=true`): what the write would do; nothing was stored.
    #[oai(status = 202)]
    Preview(Json<WritePreview<PlatformComponent>>),
}

#[derive(ApiResponse)]
pub enum GetPlatformComponent {
    /// The platform component.
    #[oai(status = 200)]
    Ok(Json<PlatformComponent>),
}

#[derive(ApiResponse)]
pub enum UpdatePlatformComponent {
    /// Updated; the body is the stored platform component.
    #[oai(status = 200)]
    Ok(
        Json<PlatformComponent>,
        /// Accepted with warnings (a dependency not assigned, more than 100 inputs).
        #[oai(header = "Warning")]
        Option<String>,
    ),
    /// Dry run (`?dry_run=true`): what the write would do; nothing was stored.
    #[oai(status = 202)]
    Preview(Json<WritePreview<PlatformComponent>>),
}

#[derive(ApiResponse)]
pub enum DeletePlatformComponent {
    /// Deleted; the body is the platform component as it was.
    #[oai(status = 200)]
    Ok(
        Json<PlatformComponent>,
        /// Accepted with warnings.
        #[oai(header = "Warning")]
        Option<String>,
    ),
    /// Dry run (`?dry_run=true`): what the write would do; nothing was deleted.
    #[oai(status = 202)]
    Preview(Json<WritePreview<PlatformComponent>>),
}

#[OpenApi(
    prefix_path = "/platform_components",
    tag = "ApiTags::PlatformComponents"
)]
impl PlatformComponentsApi {
    /// List catalog components
    #[oai(path = "/", method = "get")]
    async fn list(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
        /// Only components with this component_version.
        component_version: Query<Option<String>>,
        /// At most this many components.
        #[oai(validator(minimum(value = "0"), maximum(value = "4294967295")))]
        limit: Query<Option<u32>>,
        /// Skip this many components.
        #[oai(validator(minimum(value = "0"), maximum(value = "4294967295")))]
        offset: Query<Option<u32>>,
    ) -> Result<ListPlatformComponents, ReadError> {
        let page = Page {
            limit: limit.0,
            offset: offset.0,
        };
        let found = store
            .read(move |conn| components::list(conn, component_version.0.as_deref(), page))
            .await?;
        Ok(ListPlatformComponents::Ok(Json(found)))
    }

    /// Create a platform component
    #[oai(path = "/", method = "post")]
    async fn create(
        &self,
        _auth: WriteAccess,
        store: Data<&Store>,
        /// Check and preview the write without storing anything.
        #[oai(default)]
        dry_run: Query<bool>,
        body: JsonBody<PlatformComponent>,
    ) -> Result<CreatePlatformComponent, WriteError> {
        let written = store.create(body.0, dry_run.0).await?;
        if dry_run.0 {
            return Ok(CreatePlatformComponent::Preview(Json(WritePreview::new(
                201, written,
            ))));
        }
        let location = format!("/platform_components/{}", written.value.id);
        Ok(CreatePlatformComponent::Created(
            Json(written.value),
            location,
            warning_header(&written.warnings),
        ))
    }

    /// Get a platform component
    #[oai(path = "/:id", method = "get")]
    async fn get(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
        id: Path<String>,
    ) -> Result<GetPlatformComponent, ReadError> {
        Ok(GetPlatformComponent::Ok(Json(store.fetch(id.0).await?)))
    }

    /// Update a platform component
    ///
    /// Top-level fields present in the body replace the stored ones; omitted fields keep
    /// their values.
    #[oai(path = "/:id", method = "put")]
    async fn update(
        &self,
        _auth: WriteAccess,
        store: Data<&Store>,
        id: Path<String>,
        /// Check and preview the write without storing anything.
        #[oai(default)]
        dry_run: Query<bool>,
        body: JsonBody<PlatformComponentUpdate>,
    ) -> Result<UpdatePlatformComponent, WriteError> {
        let written = store
            .update::<PlatformComponent>(id.0, body.0, dry_run.0)
            .await?;
        if dry_run.0 {
            return Ok(UpdatePlatformComponent::Preview(Json(WritePreview::new(
                200, written,
            ))));
        }
        Ok(UpdatePlatformComponent::Ok(
            Json(written.value),
            warning_header(&written.warnings),
        ))
    }

    /// Delete a platform component
    #[oai(path = "/:id", method = "delete")]
    async fn delete(
        &self,
        _auth: WriteAccess,
        store: Data<&Store>,
        id: Path<String>,
        /// Check and preview the delete without deleting anything.
        #[oai(default)]
        dry_run: Query<bool>,
    ) -> Result<DeletePlatformComponent, WriteError> {
        let written = store.delete::<PlatformComponent>(id.0, dry_run.0).await?;
        if dry_run.0 {
            return Ok(DeletePlatformComponent::Preview(Json(WritePreview::new(
                200, written,
            ))));
        }
        Ok(DeletePlatformComponent::Ok(
            Json(written.value),
            warning_header(&written.warnings),
        ))
    }
}
