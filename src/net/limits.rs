//! Limits every connection lives under, applied by wrapping the acceptor (plain or TLS):
//!
//! - at most `max_connections` served at once; the rest wait in the kernel's accept queue;
//! - a connection's first request must be complete (its headers) within `header_timeout` of
//!   the accept, and every later request within `header_timeout` of its first byte, so a
//!   client that connects and says nothing, trickles or stalls its headers cannot hold a
//!   slot (poem has no such timeout);
//! - between requests a connection is closed after `idle_timeout` without a byte either way
//!   (poem's idle timeout: hyper does not read an idle connection, so only a timer of its
//!   own can end it);
//! - HTTP/1.1 only: a connection opening with the HTTP/2 preface (h2c, or h2 by prior
//!   knowledge over TLS, where ALPN offers only `http/1.1`) is told `HTTP_1_1_REQUIRED` and
//!   closed. Flux and notification-controller speak HTTP/1.1; HTTP/2 would bring streams
//!   and frames these deadlines cannot see;
//! - hyper answers unparseable requests (400, 414, 431) on its own with an empty body: those
//!   answers are replaced by the service's JSON error body.
//!
//! Bodies are bounded in size and time by the HTTP layer (`api::limit_write_bodies`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::config::Limits;

/// An acceptor whose connections obey [`Limits`].
pub struct LimitedAcceptor<A> {
    inner: A,
    permits: Arc<Semaphore>,
    deadlines: Deadlines,
}

/// How long a connection may take over each part of its life.
#[derive(Clone, Copy, Debug)]
struct Deadlines {
    header: Duration,
}

impl<A: Acceptor> LimitedAcceptor<A> {
    pub fn new(inner: A, limits: &Limits) -> Self {
        LimitedAcceptor {
            inner,
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            deadlines: Deadlines {
                header: limits.header_timeout,
            },
        }
    }
}

impl<A: Acceptor> Acceptor for LimitedAcceptor<A> {
    type Io = LimitedIo<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        // Wait for a free slot before taking the next connection off the queue.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(io::Error::other)?;
        let (io, local, remote, scheme) = self.inner.accept().await?;
        Ok((
            LimitedIo::new(io, permit, self.deadlines),
            local,
            remote,
            scheme,
        ))
    }
}

/// Where a connection stands, as far as its bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepted, nothing received: the first request's deadline runs from the accept.
    Opened,
    /// No request in progress: idle keep-alive (poem's idle timeout applies).
    Between,
    /// A request's first bytes arrived; its headers are not complete yet.
    Headers,
    /// Headers complete: the request is the HTTP layer's business now.
    Request,
}

const END_OF_HEADERS: u32 = u32::from_be_bytes(*b"\r\n\r\n");

/// The start of the HTTP/2 connection preface (RFC 9113 §3.4); no HTTP/1 method looks so.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// An HTTP/2 server preface (an empty SETTINGS frame) and a GOAWAY frame with error code
/// `HTTP_1_1_REQUIRED` (0xd), last stream 0: an HTTP/2 client learns to use HTTP/1.1.
const HTTP2_REFUSAL: [u8; 26] = [
    0, 0, 0, 0x4, 0, 0, 0, 0, 0, // SETTINGS, empty
    0, 0, 8, 0x7, 0, 0, 0, 0, 0, // GOAWAY, 8 bytes
    0, 0, 0, 0, 0, 0, 0, 0xd, // last stream id 0, HTTP_1_1_REQUIRED
];

/// A connection's stream with its deadlines and the JSON rewrite of hyper's own errors.
pub struct LimitedIo<T> {
    inner: T,
    _permit: OwnedSemaphorePermit,
    deadlines: Deadlines,
    phase: Phase,
    /// Bytes of the connection's start matched against the HTTP/2 preface so far; `None`
    /// once a byte did not match (the connection is HTTP/1).
    preface: Option<usize>,
    /// The last four bytes read while in `Headers`.
    window: u32,
    /// The deadline of the request head being read (`Opened`, `Headers`).
    deadline: Pin<Box<Sleep>>,
    /// Bytes still to send in place of what hyper asked to write.
    pending: Vec<u8>,
}

impl<T> LimitedIo<T> {
    fn new(inner: T, permit: OwnedSemaphorePermit, deadlines: Deadlines) -> Self {
        LimitedIo {
            inner,
            _permit: permit,
            deadlines,
            phase: Phase::Opened,
            preface: Some(0),
            window: 0,
            deadline: Box::pin(tokio::time::sleep(deadlines.header)),
            pending: Vec::new(),
        }
    }

    /// Follows the bytes of a request head until the blank line that ends it. Answers
    /// whether the bytes open an HTTP/2 connection.
    fn scan(&mut self, bytes: &[u8]) -> bool {
        if bytes.is_empty() {
            return false;
        }
        if let Some(matched) = self.preface {
            let wanted = &HTTP2_PREFACE[matched..];
            let n = wanted.len().min(bytes.len());
            if bytes[..n] == wanted[..n] {
                if matched + n == HTTP2_PREFACE.len() {
                    return true;
                }
                self.preface = Some(matched + n);
            } else {
                self.preface = None;
            }
        }
        match self.phase {
            // The first request keeps the deadline set at the accept.
            Phase::Opened => {
                self.phase = Phase::Headers;
                self.window = 0;
            }
            Phase::Between => {
                self.phase = Phase::Headers;
                self.window = 0;
                self.deadline
                    .as_mut()
                    .reset(Instant::now() + self.deadlines.header);
            }
            Phase::Headers | Phase::Request => {}
        }
        if self.phase == Phase::Headers {
            for &byte in bytes {
                self.window = (self.window << 8) | u32::from(byte);
                if self.window == END_OF_HEADERS {
                    self.phase = Phase::Request;
                    break;
                }
            }
        }
        false
    }

    /// Whether the request head being read is past its deadline.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        matches!(self.phase, Phase::Opened | Phase::Headers)
            && self.deadline.as_mut().poll(cx).is_ready()
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for LimitedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.scan(&buf.filled()[before..]) {
                    // Best effort, as the connection closes either way.
                    let _ = Pin::new(&mut this.inner).poll_write(cx, &HTTP2_REFUSAL);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "HTTP/2 is not served; use HTTP/1.1",
                    )));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                if !this.expired(cx) {
                    return Poll::Pending;
                }
                // Best effort: tell the client why before closing.
                let answer = json_response(
                    408,
                    "Request Timeout",
                    "request_timeout",
                    "the request headers did not arrive in time",
                );
                let _ = Pin::new(&mut this.inner).poll_write(cx, &answer);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request headers not received in time",
                )))
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> LimitedIo<T> {
    /// Sends what is left of a replaced answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let written =
                std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..written);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LimitedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        std::task::ready!(this.poll_pending(cx))?;
        // A response is going out: the request is over as far as the header deadline goes.
        this.phase = Phase::Between;
        if let Some(replacement) = replace_bare_error(buf) {
            this.pending = replacement;
            // hyper's bytes count as written; ours go out now or on the next flush.
            return match this.poll_pending(cx) {
                Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
                _ => Poll::Ready(Ok(buf.len())),
            };
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// hyper's automatic answer to a request it could not parse is a bare status line with no
/// `Content-Type` (every answer of the service has one): the same status with the JSON body.
fn replace_bare_error(buf: &[u8]) -> Option<Vec<u8>> {
    let rest = buf
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    let status = std::str::from_utf8(rest.get(..3)?).ok()?;
    let (reason, code, message) = match status {
        "400" => (
            "Bad Request",
            "bad_request",
            "the request is not valid HTTP (request line or a header)",
        ),
        "414" => (
            "URI Too Long",
            "uri_too_long",
            "the request URI is too long",
        ),
        "431" => (
            "Request Header Fields Too Large",
            "headers_too_large",
            "the request headers are too large",
        ),
        _ => return None,
    };
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if head.contains("\ncontent-type:") || buf.len() > head_end + 4 {
        return None;
    }
    Some(json_response(status.parse().ok()?, reason, code, message))
}

/// A complete HTTP/1.1 answer with the service's error body; the connection closes after it.
fn json_response(status: u16, reason: &str, code: &str, message: &str) -> Vec<u8> {
    let body = serde_json::json!({"error": code, "message": message}).to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json; charset=utf-8\r\n\
         content-length: {}\r\ncache-control: no-store\r\nx-content-type-options: nosniff\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_bare_errors_get_a_json_body_and_service_answers_are_untouched() {
        let bare =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let replaced = String::from_utf8(replace_bare_error(bare).unwrap()).unwrap();
        assert!(replaced.starts_with("HTTP/1.1 431 "), "{replaced}");
        assert!(replaced.ends_with(
            r#"{"error":"headers_too_large","message":"the request headers are too large"}"#
        ));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        assert!(replace_bare_error(ours).is_none());
        assert!(replace_bare_error(b"HTTP/1.1 200 OK\r\n\r\n").is_none());
    }
}
