//! Failed authentication is rate-limited per client address: after `FAILURES_ALLOWED` wrong
//! tokens or sign-ins within `WINDOW`, every request from that address that presents a
//! credential is answered `429` (with `Retry-After`) unchecked until the window ends, so a
//! token cannot be guessed faster than that. Requests without a credential are not counted
//! (they are no guess). Loopback is exempt: in the sidecar layout Flux itself polls from
//! 127.0.0.1, and a lockout there would let any local process starve it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::http::{Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};

/// Wrong credentials an address may present per window.
pub const FAILURES_ALLOWED: u32 = 30;
/// The window failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at most: beyond, new addresses are not tracked until old windows end.
const TRACKED: usize = 4096;

#[derive(Clone, Default)]
pub struct FailedAuth(Arc<Mutex<HashMap<IpAddr, (Instant, u32)>>>);

impl FailedAuth {
    /// The seconds until `address` may try again, if it is locked out now.
    fn locked(&self, address: IpAddr) -> Option<u64> {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (start, failures) = all.get(&address)?;
        let left = WINDOW.checked_sub(start.elapsed())?;
        (*failures >= FAILURES_ALLOWED).then(|| left.as_secs().max(1))
    }

    fn fail(&self, address: IpAddr) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if all.len() >= TRACKED && !all.contains_key(&address) {
            all.retain(|_, (start, _)| start.elapsed() < WINDOW);
            if all.len() >= TRACKED {
                return;
            }
        }
        let entry = all.entry(address).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

/// The client's IP address, unless it is loopback (exempt) or unknown.
fn counted_address(req: &Request) -> Option<IpAddr> {
    let ip = crate::net::identity::peer_ip(req.remote_addr())?;
    (!ip.is_loopback()).then_some(ip)
}

/// Whether the request presents a credential: a bearer token, or a console sign-in.
fn presents_credential(req: &Request) -> bool {
    req.headers().contains_key(header::AUTHORIZATION)
        || (req.method() == Method::POST && req.uri().path() == "/ui/login")
}

pub async fn limit_failed_auth<E: Endpoint<Output = Response>>(
    ep: Arc<E>,
    req: Request,
) -> poem::Result<Response> {
    let Some(address) = counted_address(&req).filter(|_| presents_credential(&req)) else {
        return ep.call(req).await;
    };
    let failures = req.data::<FailedAuth>().cloned().unwrap_or_default();
    if let Some(seconds) = failures.locked(address) {
        let mut response = poem_openapi::payload::Json(super::error::ErrorBody {
            error: "too_many_requests".into(),
            message: format!("too many wrong tokens from this address; try again in {seconds} s"),
        })
        .with_status(StatusCode::TOO_MANY_REQUESTS)
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, seconds.into());
        return Ok(response);
    }
    let response = ep.call(req).await?;
    if response.status() == StatusCode::UNAUTHORIZED {
        failures.fail(address);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_locked_after_its_failures_and_others_are_not() {
        let failures = FailedAuth::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..FAILURES_ALLOWED - 1 {
            failures.fail(a);
        }
        assert_eq!(failures.locked(a), None);
        failures.fail(a);
        assert!(failures.locked(a).is_some_and(|s| (1..=60).contains(&s)));
        assert_eq!(failures.locked(b), None);
    }
}
