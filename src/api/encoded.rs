//! `Encoded<T>`: a JSON response body encoded ahead of time, documented as `T`.
//!
//! Flux feeds are built and encoded by the store (the same bytes the write path measures
//! against Flux's 900 KiB limit); the handler only sends them.

use std::marker::PhantomData;

use poem::{IntoResponse, Response};
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::Type;

pub struct Encoded<T> {
    body: Vec<u8>,
    _schema: PhantomData<fn() -> T>,
}

impl<T> Encoded<T> {
    /// `body` must be the JSON encoding of a `T`.
    pub fn new(body: Vec<u8>) -> Self {
        Encoded {
            body,
            _schema: PhantomData,
        }
    }
}

impl<T: Type> Payload for Encoded<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type> IntoResponse for Encoded<T> {
    fn into_response(self) -> Response {
        Response::builder()
            .content_type(<Self as Payload>::CONTENT_TYPE)
            .body(self.body)
    }
}
