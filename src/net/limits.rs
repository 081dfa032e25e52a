//! Limits every connection lives under, applied by wrapping the acceptor (plain or TLS):
//!
//! - at most `max_connections` served at once; the rest wait in the kernel's accept queue;
//! - a request's headers must arrive within `header_timeout` of its first byte, so a client
//!   that trickles or stalls its headers cannot hold a connection (poem has no such timeout);
//! - hyper answers unparseable requests (400, 414, 431) on its own with an empty body: those
//!   answers are replaced by the service's JSON error body.
//!
//! Idle connections are closed by poem's `idle_timeout`, bodies are bounded in size and time by
//! the HTTP layer (`api::limit_write_bodies`).

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
use tokio::time::Sleep;

use crate::config::Limits;

/// An acceptor whose connections obey [`Limits`].
pub struct LimitedAcceptor<A> {
    inner: A,
    permits: Arc<Semaphore>,
    header_timeout: Duration,
}

impl<A: Acceptor> LimitedAcceptor<A> {
    pub fn new(inner: A, limits: &Limits) -> Self {
        LimitedAcceptor {
            inner,
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            header_timeout: limits.header_timeout,
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
            LimitedIo::new(io, permit, self.header_timeout),
            local,
            remote,
            scheme,
        ))
    }
}

/// Where a connection stands, as far as its bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request in progress: idle keep-alive (poem's idle timeout applies).
    Between,
    /// A request's first bytes arrived; its headers are not complete yet.
    Headers,
    /// Headers complete (or HTTP/2): the request is the HTTP layer's business now.
    Request,
}

const END_OF_HEADERS: u32 = u32::from_be_bytes(*b"\r\n\r\n");

/// A connection's stream with the header deadline and the JSON rewrite of hyper's own errors.
pub struct LimitedIo<T> {
    inner: T,
    _permit: OwnedSemaphorePermit,
    header_timeout: Duration,
    phase: Phase,
    /// The last four bytes read while in `Headers`.
    window: u32,
    deadline: Option<Pin<Box<Sleep>>>,
    /// Bytes still to send in place of what hyper asked to write.
    pending: Vec<u8>,
}

impl<T> LimitedIo<T> {
    fn new(inner: T, permit: OwnedSemaphorePermit, header_timeout: Duration) -> Self {
        LimitedIo {
            inner,
            _permit: permit,
            header_timeout,
            phase: Phase::Between,
            window: 0,
            deadline: None,
            pending: Vec::new(),
        }
    }

    /// Follows the bytes of a request head until the blank line that ends it.
    fn scan(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.phase == Phase::Between {
            self.phase = Phase::Headers;
            self.window = 0;
            let deadline = tokio::time::Instant::now() + self.header_timeout;
            match &mut self.deadline {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => self.deadline = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
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
                this.scan(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                if this.phase == Phase::Headers
                    && let Some(deadline) = &mut this.deadline
                    && deadline.as_mut().poll(cx).is_ready()
                {
                    // Best effort: tell the client why before closing.
                    let answer = json_response(
                        408,
                        "Request Timeout",
                        "request_timeout",
                        "the request headers did not arrive in time",
                    );
                    let _ = Pin::new(&mut this.inner).poll_write(cx, &answer);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request headers not received in time",
                    )));
                }
                Poll::Pending
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
