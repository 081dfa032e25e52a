//! The limit server of `bench/run.sh`: what this machine can serve at all. Hyper on tokio
//! answering `/health` with flux-inputs' 15-byte answer and every other request with one
//! fixed body of the size given (the platform-components feed's), nothing else: no routing
//! beyond that, no middleware, no database. The benchmark reports every row as a ratio of it,
//! measured in the same run.
//!
//!   cargo run --release --example limit-server -- 127.0.0.1:PORT BODY_BYTES

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "127.0.0.1:8090".to_owned());
    let size: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(12_000);
    // A JSON document of that many bytes, as a feed is.
    let feed = Bytes::from(format!(
        "{{\"inputs\":\"{}\"}}",
        "x".repeat(size.saturating_sub(14))
    ));
    let health = Bytes::from_static(br#"{"status":"ok"}"#);
    let listener = TcpListener::bind(&address).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let (feed, health) = (feed.clone(), health.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let body = if request.uri().path() == "/health" {
                    health.clone()
                } else {
                    feed.clone()
                };
                let response = Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(body))
                    .expect("a static response is valid");
                async move { Ok::<_, Infallible>(response) }
            });
            // A client that goes away mid-response is not this server's concern.
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
