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
    Ok(
        Json<T>,
        /// The resource's revision; send it back as `If-Match` to update safely.
        #[oai(header = "ETag")]
        String,
    ),
}

/// How a CRUD write was asked for: the caller, the method, `?dry_run` with its
/// `changes_offset` and `?confirm_closed`, and `If-Match`.
pub fn write_request(
    auth: crate::auth::WriteAccess,
    method: &'static str,
    (dry_run, changes_offset, confirm_closed): (bool, Option<u32>, Option<u64>),
    if_match_header: Option<&str>,
) -> crate::error::Result<crate::store::WriteRequest> {
    Ok(crate::store::WriteRequest {
        dry_run,
        changes_offset: changes_offset.unwrap_or(0) as usize,
        if_match: if_match(if_match_header)?,
        confirm_closed,
        ..crate::store::WriteRequest::new(crate::store::audit::Change {
            actor: auth.0.0,
            method,
        })
    })
}

/// `"12"`: a revision as an ETag.
pub fn etag(revision: i64) -> String {
    format!("\"{revision}\"")
}

/// The revision an `If-Match` header names (`"12"`, `W/"12"`, `12`); `*` and absence mean
/// "any". Anything else is a 400.
pub fn if_match(header: Option<&str>) -> crate::error::Result<Option<i64>> {
    let Some(value) = header.map(str::trim) else {
        return Ok(None);
    };
    if value == "*" {
        return Ok(None);
    }
    let bare = value.strip_prefix("W/").unwrap_or(value).trim_matches('"');
    bare.parse().map(Some).map_err(|_| {
        crate::error::AppError::BadRequest(format!(
            "If-Match '{value}' is not a revision ETag such as \"12\""
        ))
    })
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
        /// The resource's revision.
        #[oai(header = "ETag")]
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
        /// The resource's new revision.
        #[oai(header = "ETag")]
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
            etag(written.revision),
            warning_header(&written.warnings),
        )
    }
}

impl<T: ParseFromJSON + ToJSON + Send + Sync> Updated<T> {
    pub fn new(written: Written<T>, dry_run: bool) -> Self {
        if dry_run {
            return Updated::Preview(Json(WritePreview::new(200, written)));
        }
        Updated::Ok(
            Json(written.value),
            etag(written.revision),
            warning_header(&written.warnings),
        )
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
