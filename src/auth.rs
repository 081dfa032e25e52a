//! Who a request is, for the API and the console alike. Bearer tokens: the read token for
//! reads, the write token for writes (it may also read), named tokens for every read route or
//! for one cluster's feeds, status and events; client certificates as a cluster's identity.
//!
//! Comparison is constant-time over both tokens, so neither timing nor the order of checks
//! tells a client which token it came close to.

use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;
use subtle::ConstantTimeEq;

use poem::http::StatusCode;
use poem_openapi::error::AuthorizationError;

use std::sync::Arc;

use crate::config::Secret;
use crate::domain::report::Via;
use crate::store::Store;
use crate::store::tokens::Grant;

/// The tokens requests are checked against, attached to the app as request data.
#[derive(Clone, Debug)]
pub struct Tokens {
    pub read: Secret,
    pub write: Secret,
    /// Accept a cluster's events only with its own scoped token (README, "Flux reports back"): the fleet read
    /// token would let any cluster speak for any other.
    pub events_require_cluster_identity: bool,
}

fn matches(presented: &str, expected: &Secret) -> bool {
    // An empty token (the offline commands' placeholder) never matches.
    !expected.expose().is_empty()
        && presented
            .as_bytes()
            .ct_eq(expected.expose().as_bytes())
            .into()
}

impl Tokens {
    pub fn allows_read(&self, presented: &str) -> bool {
        // `|`, not `||`: both comparisons always run.
        matches(presented, &self.read) | matches(presented, &self.write)
    }

    pub fn allows_write(&self, presented: &str) -> bool {
        matches(presented, &self.write)
    }
}

/// The read token (`AUTH_TOKEN`) or the write token.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_read")]
pub struct ReadAccess(());

/// The write token (`CRUD_AUTH_TOKEN`, else `AUTH_TOKEN`).
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_write")]
pub struct WriteAccess(pub Actor);

/// Who wrote, as the audit trail names them.
#[derive(Clone, Debug)]
pub struct Actor(pub String);

/// Who a bearer token is.
#[derive(Clone, Debug, PartialEq)]
pub enum Identity {
    /// The write token.
    Write,
    /// The read token or an unscoped named token.
    Fleet,
    /// A named token scoped to the cluster with this DNS name.
    Cluster {
        name: Arc<str>,
        cluster_dns: Arc<str>,
    },
}

/// A cluster whose verified client certificate names it (set by `certificate_identity`).
#[derive(Clone, Debug)]
struct CertifiedCluster(Arc<str>);

/// The bearer token `certificate_identity` gives a request that a client certificate
/// authenticated: random per process, never sent anywhere, and honoured only together with
/// the request's `CertifiedCluster`.
fn certificate_token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).expect("the system's random source works");
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    })
}

/// The cluster DNS name of a route a cluster's certificate may use: its feeds and events.
fn certificate_route(path: &str) -> Option<&str> {
    let (dns, route) = path
        .strip_prefix("/api/v2/flux/clusters/")?
        .split_once('/')?;
    [
        "platform-components",
        "namespaces",
        "rolebindings",
        "events",
    ]
    .contains(&route)
    .then_some(dns)
}

/// A request with no bearer token, on a connection whose verified client certificate names
/// the cluster of the route (one of its feeds or its events), acts as that cluster's scoped
/// token; anything else is left to the bearer rules (README, "Safety rails").
pub async fn certificate_identity<E: poem::Endpoint>(
    ep: Arc<E>,
    mut req: Request,
) -> poem::Result<E::Output> {
    // A request with a token (every poll of a token-configured fleet) is decided here.
    if req
        .headers()
        .contains_key(poem::http::header::AUTHORIZATION)
    {
        return ep.call(req).await;
    }
    let certified = certificate_route(req.uri().path())
        .filter(|dns| crate::net::identity::certifies(req.remote_addr(), dns))
        .map(Arc::<str>::from);
    if let Some(dns) = certified
        && let Ok(value) =
            poem::http::HeaderValue::from_str(&format!("Bearer {}", certificate_token()))
    {
        req.extensions_mut().insert(CertifiedCluster(dns));
        req.headers_mut()
            .insert(poem::http::header::AUTHORIZATION, value);
    }
    ep.call(req).await
}

/// The static tokens first (constant time), then named tokens (looked up by SHA-256 digest,
/// which leaks nothing about the token). `None`: no such token.
pub async fn identify(req: &Request, token: &str) -> poem::Result<Option<Identity>> {
    if let Some(CertifiedCluster(dns)) = req.extensions().get::<CertifiedCluster>()
        && token == certificate_token()
    {
        return Ok(Some(Identity::Cluster {
            name: Arc::from("client-certificate"),
            cluster_dns: dns.clone(),
        }));
    }
    identify_token(req.data::<Tokens>(), req.data::<Store>(), token).await
}

/// Who a bearer token is, by the static tokens and the named tokens of `store`.
pub async fn identify_token(
    tokens: Option<&Tokens>,
    store: Option<&Store>,
    token: &str,
) -> poem::Result<Option<Identity>> {
    if let Some(tokens) = tokens {
        // Both comparisons always run.
        let (write, read) = (matches(token, &tokens.write), matches(token, &tokens.read));
        if write {
            return Ok(Some(Identity::Write));
        }
        if read {
            return Ok(Some(Identity::Fleet));
        }
    }
    let Some(store) = store else {
        return Ok(None);
    };
    let grant = store.tokens().check(store, token).await.map_err(|err| {
        tracing::error!(error = %err, "cannot check a named token");
        poem::Error::from_status(StatusCode::SERVICE_UNAVAILABLE)
    })?;
    Ok(grant.map(|grant| match grant {
        Grant {
            cluster_dns: None, ..
        } => Identity::Fleet,
        Grant {
            cluster_dns: Some(cluster_dns),
            name,
        } => Identity::Cluster { name, cluster_dns },
    }))
}

fn forbidden(message: String) -> poem::Error {
    poem::Error::from_string(message, StatusCode::FORBIDDEN)
}

/// A cluster-scoped token reads only its own feeds.
async fn check_read(req: &Request, bearer: Bearer) -> poem::Result<()> {
    match identify(req, &bearer.token).await? {
        None => Err(AuthorizationError.into()),
        Some(Identity::Write | Identity::Fleet) => Ok(()),
        Some(Identity::Cluster { cluster_dns, .. })
            if is_feed_of(req.uri().path(), &cluster_dns) =>
        {
            Ok(())
        }
        Some(Identity::Cluster { name, cluster_dns }) => Err(forbidden(format!(
            "token '{name}' may read only the Flux feeds and status of cluster {cluster_dns}"
        ))),
    }
}

/// The read token, the write token or a cluster-scoped token; the latter sees only its own
/// cluster (`Some(dns)`).
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_status")]
pub struct StatusAccess(pub Option<Arc<str>>);

async fn check_status(req: &Request, bearer: Bearer) -> poem::Result<Option<Arc<str>>> {
    match identify(req, &bearer.token).await? {
        None => Err(AuthorizationError.into()),
        Some(Identity::Write | Identity::Fleet) => Ok(None),
        Some(Identity::Cluster { cluster_dns, .. }) => Ok(Some(cluster_dns)),
    }
}

/// The cluster's own scoped token, or (unless `events_require_cluster_identity`) the read or
/// write token; says which, so a report records how it was authenticated.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_report")]
pub struct ReportAccess(pub Via);

/// The DNS name in `/api/v2/flux/clusters/{dns}/events`.
pub fn events_of(path: &str) -> Option<&str> {
    path.strip_prefix("/api/v2/flux/clusters/")?
        .strip_suffix("/events")
        .filter(|dns| !dns.is_empty() && !dns.contains('/'))
}

pub async fn check_report(req: &Request, bearer: Bearer) -> poem::Result<Via> {
    let path_dns = events_of(req.uri().path()).unwrap_or_default();
    let only_cluster = req
        .data::<Tokens>()
        .is_some_and(|t| t.events_require_cluster_identity);
    match identify(req, &bearer.token).await? {
        None => Err(AuthorizationError.into()),
        Some(Identity::Cluster { cluster_dns, .. }) if *cluster_dns == *path_dns => {
            Ok(Via::Cluster)
        }
        Some(Identity::Cluster { name, cluster_dns }) => Err(forbidden(format!(
            "token '{name}' may report only for cluster {cluster_dns}"
        ))),
        Some(_) if only_cluster => Err(forbidden(
            "events_require_cluster_identity is set: a cluster reports with its own scoped token"
                .into(),
        )),
        Some(Identity::Write) => Ok(Via::Write),
        Some(Identity::Fleet) => Ok(Via::Fleet),
    }
}

/// `/api/v2/flux/clusters/{dns}/{feed}` for this DNS name.
fn is_feed_of(path: &str, dns: &str) -> bool {
    path.strip_prefix("/api/v2/flux/clusters/")
        .and_then(|rest| rest.strip_prefix(dns))
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|feed| ["platform-components", "namespaces", "rolebindings"].contains(&feed))
}

async fn check_write(req: &Request, bearer: Bearer) -> Option<Actor> {
    req.data::<Tokens>()
        .filter(|tokens| tokens.allows_write(&bearer.token))
        .map(|_| Actor("write-token".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_token_reads_and_writes_read_token_only_reads() {
        let tokens = Tokens {
            read: Secret::new("r"),
            write: Secret::new("w"),
            events_require_cluster_identity: false,
        };
        assert!(tokens.allows_read("r") && tokens.allows_read("w"));
        assert!(tokens.allows_write("w") && !tokens.allows_write("r"));
        assert!(!tokens.allows_read("") && !tokens.allows_read("rr") && !tokens.allows_read("R"));
    }
}
