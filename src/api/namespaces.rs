//! CRUD for namespace definitions (crud mode only).

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::auth::{ReadAccess, WriteAccess};
use super::body::JsonBody;
use super::error::{ReadError, WriteError};
use super::preview::{WritePreview, warning_header};
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
    Created(
        Json<Namespace>,
        #[oai(header = "Location")] String,
        /// Accepted with warnings (a dependency not assigned, more than 100 inputs).
        #[oai(header = "Warning")]
        Option<String>,
    ),
    /// Dry run (`?dry_run=true`): what the write would do; nothing was stored.
    #[oai(status = 202)]
    Preview(Json<WritePreview<Namespace>>),
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
    Ok(
        Json<Namespace>,
        /// Accepted with warnings (a dependency not assigned, more than 100 inputs).
        #[oai(header = "Warning")]
        Option<String>,
    ),
    /// Dry run (`?dry_run=true`): what the write would do; nothing was stored.
    #[oai(status = 202)]
    Preview(Json<WritePreview<Namespace>>),
}

#[derive(ApiResponse)]
pub enum DeleteNamespace {
    /// Deleted; the body is the namespace as it was.
    #[oai(status = 200)]
    Ok(
        Json<Namespace>,
        /// Accepted with warnings.
        #[oai(header = "Warning")]
        Option<String>,
    ),
    /// Dry run (`?dry_run=true`): what the write would do; nothing was deleted.
    #[oai(status = 202)]
    Preview(Json<WritePreview<Namespace>>),
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
        #[oai(validator(minimum(value = "0"), maximum(value = "4294967295")))]
        limit: Query<Option<u32>>,
        /// Skip this many namespaces.
        #[oai(validator(minimum(value = "0"), maximum(value = "4294967295")))]
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
        /// Check and preview the write without storing anything.
        #[oai(default)]
        dry_run: Query<bool>,
        body: JsonBody<Namespace>,
    ) -> Result<CreateNamespace, WriteError> {
        let written = store.create(body.0, dry_run.0).await?;
        if dry_run.0 {
            return Ok(CreateNamespace::Preview(Json(WritePreview::new(
                201, written,
            ))));
        }
        let location = format!("/namespaces/{}", written.value.id);
        Ok(CreateNamespace::Created(
            Json(written.value),
            location,
            warning_header(&written.warnings),
        ))
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
        body: JsonBody<NamespaceUpdate>,
    ) -> Result<UpdateNamespace, WriteError> {
        let written = store.update::<Namespace>(id.0, body.0, dry_run.0).await?;
        if dry_run.0 {
            return Ok(UpdateNamespace::Preview(Json(WritePreview::new(
                200, written,
            ))));
        }
        Ok(UpdateNamespace::Ok(
            Json(written.value),
            warning_header(&written.warnings),
        ))
    }

    /// Delete a namespace
    #[oai(path = "/:id", method = "delete")]
    async fn delete(
        &self,
        _auth: WriteAccess,
        store: Data<&Store>,
        id: Path<String>,
        /// Check and preview the delete without deleting anything.
        #[oai(default)]
        dry_run: Query<bool>,
    ) -> Result<DeleteNamespace, WriteError> {
        let written = store.delete::<Namespace>(id.0, dry_run.0).await?;
        if dry_run.0 {
            return Ok(DeleteNamespace::Preview(Json(WritePreview::new(
                200, written,
            ))));
        }
        Ok(DeleteNamespace::Ok(
            Json(written.value),
            warning_header(&written.warnings),
        ))
    }
}
