//! CRUD for namespace definitions (crud mode only).

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::auth::{ReadAccess, WriteAccess};
use super::body::JsonBody;
use super::error::{ReadError, WriteError};
use crate::domain::model::{Namespace, NamespaceUpdate};
use crate::store::{Page, Store, namespaces};

pub struct NamespacesApi;

#[derive(ApiResponse)]
pub enum ListNamespaces {
    /// Namespace definitions ordered by id.
    #[oai(status = 200)]
    Ok(Json<Vec<Namespace>>),
}

#[derive(ApiResponse)]
pub enum CreateNamespace {
    /// Created; the body is the stored namespace.
    #[oai(status = 201)]
    Created(Json<Namespace>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
pub enum GetNamespace {
    /// The namespace.
    #[oai(status = 200)]
    Ok(Json<Namespace>),
}

#[derive(ApiResponse)]
pub enum UpdateNamespace {
    /// Updated; the body is the stored namespace.
    #[oai(status = 200)]
    Ok(Json<Namespace>),
}

#[derive(ApiResponse)]
pub enum DeleteNamespace {
    /// Deleted; the body is the namespace as it was.
    #[oai(status = 200)]
    Ok(Json<Namespace>),
}

#[OpenApi(prefix_path = "/namespaces", tag = "ApiTags::Namespaces")]
impl NamespacesApi {
    /// List namespace definitions
    #[oai(path = "/", method = "get")]
    async fn list(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
        /// At most this many namespaces.
        limit: Query<Option<u32>>,
        /// Skip this many namespaces.
        offset: Query<Option<u32>>,
    ) -> Result<ListNamespaces, ReadError> {
        let page = Page {
            limit: limit.0,
            offset: offset.0,
        };
        Ok(ListNamespaces::Ok(Json(
            store.read(move |conn| namespaces::list(conn, page)).await?,
        )))
    }

    /// Create a namespace
    #[oai(path = "/", method = "post")]
    async fn create(
        &self,
        _auth: WriteAccess,
        store: Data<&Store>,
        body: JsonBody<Namespace>,
    ) -> Result<CreateNamespace, WriteError> {
        let created = store.create(body.0).await?;
        let location = format!("/namespaces/{}", created.id);
        Ok(CreateNamespace::Created(Json(created), location))
    }

    /// Get a namespace
    #[oai(path = "/:id", method = "get")]
    async fn get(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
        id: Path<String>,
    ) -> Result<GetNamespace, ReadError> {
        Ok(GetNamespace::Ok(Json(store.fetch(id.0).await?)))
    }

    /// Update a namespace
    ///
    /// Top-level fields present in the body replace the stored ones; omitted fields keep
    /// their values.
    #[oai(path = "/:id", method = "put")]
    async fn update(
        &self,
        _auth: WriteAccess,
        store: Data<&Store>,
        id: Path<String>,
        body: JsonBody<NamespaceUpdate>,
    ) -> Result<UpdateNamespace, WriteError> {
        Ok(UpdateNamespace::Ok(Json(
            store.update::<Namespace>(id.0, body.0).await?,
        )))
    }

    /// Delete a namespace
    #[oai(path = "/:id", method = "delete")]
    async fn delete(
        &self,
        _auth: WriteAccess,
        store: Data<&Store>,
        id: Path<String>,
    ) -> Result<DeleteNamespace, WriteError> {
        Ok(DeleteNamespace::Ok(Json(store.delete(id.0).await?)))
    }
}
