//! CRUD for namespace definitions (crud mode only).

use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;

use super::ApiTags;
use super::body::JsonBody;
use super::error::{ReadError, WriteError};
use super::responses::{Created, Deleted, Fetched, Listed, Updated, etag, write_request};
use crate::auth::{ReadAccess, WriteAccess};
use crate::domain::model::{Namespace, NamespaceUpdate};
use crate::store::{Page, Store, namespaces};

pub struct NamespacesApi;

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
    ) -> Result<Listed<Namespace>, ReadError> {
        let page = Page {
            limit: limit.0,
            offset: offset.0,
        };
        Ok(Listed::Ok(Json(
            store.read(move |conn| namespaces::list(conn, page)).await?,
        )))
    }

    /// Create a namespace
    #[oai(path = "/", method = "post")]
    async fn create(
        &self,
        auth: WriteAccess,
        store: Data<&Store>,
        /// Check and preview the write without storing anything.
        #[oai(default)]
        dry_run: Query<bool>,
        /// Dry run: list the changed clusters from this offset on (100 per answer).
        changes_offset: Query<Option<u32>>,
        /// The number of clusters closed by a maintenance window whose feeds the write
        /// changes, when there are any (409 `window_closed` names them).
        confirm_closed: Query<Option<u64>>,
        body: JsonBody<Namespace>,
    ) -> Result<Created<Namespace>, WriteError> {
        let request = write_request(
            auth,
            "POST",
            (dry_run.0, changes_offset.0, confirm_closed.0),
            None,
        )?;
        let written = store.create(body.0, request).await?;
        Ok(Created::new(written, dry_run.0, "/namespaces", |c| &c.id))
    }

    /// Get a namespace
    #[oai(path = "/:id", method = "get")]
    async fn get(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
        id: Path<String>,
    ) -> Result<Fetched<Namespace>, ReadError> {
        let (value, revision) = store.fetch_with_revision(id.0).await?;
        Ok(Fetched::Ok(Json(value), etag(revision)))
    }

    /// Update a namespace
    ///
    /// Fields present in the body replace the stored ones; omitted fields keep their values.
    #[oai(path = "/:id", method = "put")]
    // poem-openapi takes each query parameter and header as an argument of its own.
    #[allow(clippy::too_many_arguments)]
    async fn update(
        &self,
        auth: WriteAccess,
        store: Data<&Store>,
        id: Path<String>,
        /// Check and preview the write without storing anything.
        #[oai(default)]
        dry_run: Query<bool>,
        /// Dry run: list the changed clusters from this offset on (100 per answer).
        changes_offset: Query<Option<u32>>,
        /// The number of clusters closed by a maintenance window whose feeds the write
        /// changes, when there are any (409 `window_closed` names them).
        confirm_closed: Query<Option<u64>>,
        /// The ETag last read; a stale one is refused with 412.
        #[oai(name = "If-Match")]
        if_match_header: Header<Option<String>>,
        body: JsonBody<NamespaceUpdate>,
    ) -> Result<Updated<Namespace>, WriteError> {
        let request = write_request(
            auth,
            "PUT",
            (dry_run.0, changes_offset.0, confirm_closed.0),
            if_match_header.0.as_deref(),
        )?;
        let written = store.update::<Namespace>(id.0, body.0, request).await?;
        Ok(Updated::new(written, dry_run.0))
    }

    /// Delete a namespace
    #[oai(path = "/:id", method = "delete")]
    async fn delete(
        &self,
        auth: WriteAccess,
        store: Data<&Store>,
        id: Path<String>,
        /// Check and preview the delete without deleting anything.
        #[oai(default)]
        dry_run: Query<bool>,
        /// Dry run: list the changed clusters from this offset on (100 per answer).
        changes_offset: Query<Option<u32>>,
        /// The number of clusters closed by a maintenance window whose feeds the write
        /// changes, when there are any (409 `window_closed` names them).
        confirm_closed: Query<Option<u64>>,
        /// The ETag last read; a stale one is refused with 412.
        #[oai(name = "If-Match")]
        if_match_header: Header<Option<String>>,
    ) -> Result<Deleted<Namespace>, WriteError> {
        let request = write_request(
            auth,
            "DELETE",
            (dry_run.0, changes_offset.0, confirm_closed.0),
            if_match_header.0.as_deref(),
        )?;
        let written = store.delete::<Namespace>(id.0, request).await?;
        Ok(Deleted::new(written, dry_run.0))
    }
}
