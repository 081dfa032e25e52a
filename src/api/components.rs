//! CRUD for the platform component catalog (crud mode only).

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::auth::{ReadAccess, WriteAccess};
use super::body::JsonBody;
use super::error::{ReadError, WriteError};
use crate::domain::model::{PlatformComponent, PlatformComponentUpdate};
use crate::store::{Page, Store, components};

pub struct PlatformComponentsApi;

#[derive(ApiResponse)]
pub enum ListPlatformComponents {
    /// The platform component catalog ordered by id.
    #[oai(status = 200)]
    Ok(Json<Vec<PlatformComponent>>),
}

#[derive(ApiResponse)]
pub enum CreatePlatformComponent {
    /// Created; the body is the stored platform component.
    #[oai(status = 201)]
    Created(Json<PlatformComponent>, #[oai(header = "Location")] String),
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
    Ok(Json<PlatformComponent>),
}

#[derive(ApiResponse)]
pub enum DeletePlatformComponent {
    /// Deleted; the body is the platform component as it was.
    #[oai(status = 200)]
    Ok(Json<PlatformComponent>),
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
        limit: Query<Option<u32>>,
        /// Skip this many components.
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
        body: JsonBody<PlatformComponent>,
    ) -> Result<CreatePlatformComponent, WriteError> {
        let created = store.create(body.0).await?;
        let location = format!("/platform_components/{}", created.id);
        Ok(CreatePlatformComponent::Created(Json(created), location))
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
        body: JsonBody<PlatformComponentUpdate>,
    ) -> Result<UpdatePlatformComponent, WriteError> {
        Ok(UpdatePlatformComponent::Ok(Json(
            store.update::<PlatformComponent>(id.0, body.0).await?,
        )))
    }

    /// Delete a platform component
    #[oai(path = "/:id", method = "delete")]
    async fn delete(
        &self,
        _auth: WriteAccess,
        store: Data<&Store>,
        id: Path<String>,
    ) -> Result<DeletePlatformComponent, WriteError> {
        Ok(DeletePlatformComponent::Ok(Json(store.delete(id.0).await?)))
    }
}
