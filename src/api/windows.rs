//! CRUD for maintenance windows (crud mode only; README, "Maintenance windows"): when the
//! clusters a selector matches may change. A window changes no feed; it is audited and
//! reverted like every inventory record, and every later write is judged against it.

use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;

use super::ApiTags;
use super::body::JsonBody;
use super::error::{ReadError, WriteError};
use super::responses::{Created, Deleted, Fetched, Listed, Updated, etag, write_request};
use crate::auth::{ReadAccess, WriteAccess};
use crate::domain::window::{Window, WindowUpdate};
use crate::store::{Page, Store, windows};

pub struct WindowsApi;

#[OpenApi(prefix_path = "/windows", tag = "ApiTags::Windows")]
impl WindowsApi {
    /// List windows
    #[oai(path = "/", method = "get")]
    async fn list(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
        /// At most this many windows.
        #[oai(validator(minimum(value = "0"), maximum(value = "4294967295")))]
        limit: Query<Option<u32>>,
        /// Skip this many windows.
        #[oai(validator(minimum(value = "0"), maximum(value = "4294967295")))]
        offset: Query<Option<u32>>,
    ) -> Result<Listed<Window>, ReadError> {
        let page = Page {
            limit: limit.0,
            offset: offset.0,
        };
        Ok(Listed::Ok(Json(
            store.read(move |conn| windows::list(conn, page)).await?,
        )))
    }

    /// Create a window
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
        body: JsonBody<Window>,
    ) -> Result<Created<Window>, WriteError> {
        let request = write_request(auth, "POST", (dry_run.0, changes_offset.0, None), None)?;
        let written = store.create(body.0, request).await?;
        Ok(Created::new(written, dry_run.0, "/windows", |c| &c.id))
    }

    /// Get a window
    #[oai(path = "/:id", method = "get")]
    async fn get(
        &self,
        _auth: ReadAccess,
        store: Data<&Store>,
        id: Path<String>,
    ) -> Result<Fetched<Window>, ReadError> {
        let (value, revision) = store.fetch_with_revision(id.0).await?;
        Ok(Fetched::Ok(Json(value), etag(revision)))
    }

    /// Update a window
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
        /// The ETag last read; a stale one is refused with 412.
        #[oai(name = "If-Match")]
        if_match_header: Header<Option<String>>,
        body: JsonBody<WindowUpdate>,
    ) -> Result<Updated<Window>, WriteError> {
        let request = write_request(
            auth,
            "PUT",
            (dry_run.0, changes_offset.0, None),
            if_match_header.0.as_deref(),
        )?;
        let written = store.update::<Window>(id.0, body.0, request).await?;
        Ok(Updated::new(written, dry_run.0))
    }

    /// Delete a window
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
        /// The ETag last read; a stale one is refused with 412.
        #[oai(name = "If-Match")]
        if_match_header: Header<Option<String>>,
    ) -> Result<Deleted<Window>, WriteError> {
        let request = write_request(
            auth,
            "DELETE",
            (dry_run.0, changes_offset.0, None),
            if_match_header.0.as_deref(),
        )?;
        let written = store.delete::<Window>(id.0, request).await?;
        Ok(Deleted::new(written, dry_run.0))
    }
}
