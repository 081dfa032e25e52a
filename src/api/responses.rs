//! Success answers of the CRUD operations, shared by the four resources. Errors are
//! `ReadError` / `WriteError` (error.rs); together they document every status in the spec.

use poem_openapi::ApiResponse;
use poem_openapi::payload::Json;
use poem_openapi::types::{ParseFromJSON, ToJSON};

use super::preview::{WritePreview, warning_header};
use crate::store::Written;

#[derive(ApiResponse)]
pub enum Listed<T: ParseFromJSON + ToJSON + Send + Sync> {
    /// The resources, ordered by id.
    #[oai(status = 200)]
    Ok(Json<Vec<T>>),
}

#[derive(ApiResponse)]
pub enum Fetched<T: ParseFromJSON + ToJSON + Send + Sync> {
    /// The resource.
    #[oai(status = 200)]
    Ok(Json<T>),
}

#[derive(ApiResponse)]
pub enum Created<T: ParseFromJSON + ToJSON + Send + Sync> {
    /// Created; the body is the stored resource.
    #[oai(status = 201)]
    Created(
        Json<T>,
        /// Where the new resource lives.
        #[oai(header = "Location")]
        String,
        /// Accepted with warnings (a dependency not assigned, more than 100 inputs).
        #[oai(header = "Warning")]
        Option<String>,
    ),
    /// Dry run (`?dry_run=true`): what the write would do; nothing was stored.
    #[oai(status = 202)]
    Preview(Json<WritePreview<T>>),
}

#[derive(ApiResponse)]
pub enum Updated<T: ParseFromJSON + ToJSON + Send + Sync> {
    /// Updated; the body is the stored resource.
    #[oai(status = 200)]
    Ok(
        Json<T>,
        /// Accepted with warnings (a dependency not assigned, more than 100 inputs).
        #[oai(header = "Warning")]
        Option<String>,
    ),
    /// Dry run (`?dry_run=true`): what the write would do; nothing was stored.
    #[oai(status = 202)]
    Preview(Json<WritePreview<T>>),
}

#[derive(ApiResponse)]
pub enum Deleted<T: ParseFromJSON + ToJSON + Send + Sync> {
    /// Deleted; the body is the resource as it was.
    #[oai(status = 200)]
    Ok(
        Json<T>,
        /// Accepted with warnings.
        #[oai(header = "Warning")]
        Option<String>,
    ),
    /// Dry run (`?dry_run=true`): what the delete would do; nothing was deleted.
    #[oai(status = 202)]
    Preview(Json<WritePreview<T>>),
}

impl<T: ParseFromJSON + ToJSON + Send + Sync> Created<T> {
    /// `collection` is the path the resource was posted to; `id` names it there.
    pub fn new(
        written: Written<T>,
        dry_run: bool,
        collection: &str,
        id: impl Fn(&T) -> &str,
    ) -> Self {
        if dry_run {
            return Created::Preview(Json(WritePreview::new(201, written)));
        }
        let location = format!("{collection}/{}", id(&written.value));
        Created::Created(
            Json(written.value),
            location,
            warning_header(&written.warnings),
        )
    }
}

impl<T: ParseFromJSON + ToJSON + Send + Sync> Updated<T> {
    pub fn new(written: Written<T>, dry_run: bool) -> Self {
        if dry_run {
            return Updated::Preview(Json(WritePreview::new(200, written)));
        }
        Updated::Ok(Json(written.value), warning_header(&written.warnings))
    }
}

impl<T: ParseFromJSON + ToJSON + Send + Sync> Deleted<T> {
    pub fn new(written: Written<T>, dry_run: bool) -> Self {
        if dry_run {
            return Deleted::Preview(Json(WritePreview::new(200, written)));
        }
        Deleted::Ok(Json(written.value), warning_header(&written.warnings))
    }
}
