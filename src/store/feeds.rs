//! A cluster's three Flux feeds, built from the store and encoded exactly as served.
//!
//! `build` is the reference encoding through the typed merge (`domain::merge`); the feed
//! cache and the write path use the byte encoder (`domain::encode`), which tests hold to the
//! same bytes.

use poem_openapi::types::ToJSON;
use rusqlite::Connection;

use super::{components, namespaces, rolebindings};
use crate::domain::encode::Catalog;
use crate::domain::feed::FluxInputs;
use crate::domain::merge::{self, DanglingReference};
use crate::domain::model::Cluster;
use crate::error::{AppError, Result};

/// Flux Operator refuses a provider response over 900 KiB.
pub const FLUX_MAX_BODY_BYTES: usize = 921_600;
/// Flux keeps only the first `spec.filter.limit` inputs, 100 unless set.
pub const FLUX_DEFAULT_INPUT_LIMIT: usize = 100;

pub use crate::domain::encode::Feed;

/// The catalog as the encoder needs it, read in the caller's transaction.
pub fn load_catalog(conn: &Connection) -> Result<Catalog> {
    Ok(Catalog::new(
        &components::list(conn, None, Default::default())?,
        &namespaces::list(conn, Default::default())?,
        &rolebindings::list(conn, Default::default())?,
    )
    .with_overlays(super::overlays::all(conn)?))
}

/// One feed, encoded: the exact response body and the number of inputs in it.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedFeed {
    pub body: Vec<u8>,
    pub inputs: usize,
}

fn dangling(err: DanglingReference) -> AppError {
    AppError::Internal(err.to_string())
}

fn encode<T: ToJSON + poem_openapi::types::ParseFromJSON>(inputs: Vec<T>) -> EncodedFeed {
    let count = inputs.len();
    let value = FluxInputs { inputs }.to_json().unwrap_or_default();
    // Encoding a serde_json::Value cannot fail.
    let body = serde_json::to_vec(&value).unwrap_or_default();
    EncodedFeed {
        body,
        inputs: count,
    }
}

/// Builds and encodes one feed of `cluster` (its own entry, with the overlays that match it
/// layered in).
pub fn build(conn: &Connection, cluster: &Cluster, feed: Feed) -> Result<EncodedFeed> {
    let cluster = &crate::domain::overlay::apply(cluster, &super::overlays::all(conn)?);
    Ok(match feed {
        Feed::PlatformComponents => {
            let catalog = components::get_many(
                conn,
                cluster.platform_components.iter().map(|r| r.id.as_str()),
            )?;
            encode(merge::platform_components(cluster, &catalog).map_err(dangling)?)
        }
        Feed::Namespaces => {
            let definitions =
                namespaces::get_many(conn, cluster.namespaces.iter().map(|r| r.id.as_str()))?;
            encode(merge::namespaces(cluster, &definitions).map_err(dangling)?)
        }
        Feed::Rolebindings => {
            let definitions =
                rolebindings::get_many(conn, cluster.rolebindings.iter().map(|r| r.id.as_str()))?;
            encode(merge::rolebindings(cluster, &definitions).map_err(dangling)?)
        }
    })
}
