//! CRUD for rolebinding definitions (crud mode only).

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::auth::{ReadAccess, WriteAccess};
use super::body::JsonBody;
use super::error::{ReadError, WriteError};
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
    Created(Json<Rolebinding>, #[oai(header = "Location")] String),
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
    Ok(Json<Rolebinding>),
}

#[derive(ApiResponse)]
pub enum DeleteRolebinding {
    /// Deleted; the body is the rolebinding as it was.
    #[oai(status = 200)]
    Ok(Json<Rolebinding>),
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
        limit: Query<Option<u32>>,
        /// Skip this many rolebindings.
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
        body: JsonBody<Rolebinding>,
    ) -> Result<CreateRolebinding, WriteError> {
        let created = store.create(body.0).await?;
        let location = format!("/rolebindings/{}", created.id);
        Ok(CreateRolebinding::Created(Json(created), location))
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
    /// Top-level fields present in the body replace the stored ones; omitted fields keep
    /// their values.
    #[oai(path = "/:id", method = "put")]
    async fn update(
        &self,
        _auth: WriteAccess,
        store: Data<&Store>,
        id: Path<String>,
        body: JsonBody<RolebindingUpdate>,
    ) -> Result<UpdateRolebinding, WriteError> {
        Ok(UpdateRolebinding::Ok(Json(
            store.update::<Rolebinding>(id.0, body.0).await?,
        )))
    }

    /// Delete a rolebinding
    #[oai(path = "/:id", method = "delete")]
    async fn delete(
        &self,
        _auth: WriteAccess,
        store: Data<&Store>,
        id: Path<String>,
    ) -> Result<DeleteRolebinding, WriteError> {
        Ok(DeleteRolebinding::Ok(Json(store.delete(id.0).await?)))
    }
}
