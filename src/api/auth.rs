//! Bearer tokens: the read token for reads, the write token for writes (it may also read).
//!
//! Comparison is constant-time over both tokens, so neither timing nor the order of checks
//! tells a client which token it came close to.

use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;
use subtle::ConstantTimeEq;

use poem::http::StatusCode;
use poem_openapi::error::AuthorizationError;

use crate::config::Secret;
use crate::store::Store;
use crate::store::tokens::Grant;

/// The tokens requests are checked against, attached to the app as request data.
#[derive(Clone, Debug)]
pub struct Tokens {
    pub read: Secret,
    pub write: Secret,
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

/// The static tokens first (constant time), then named tokens (looked up by SHA-256 digest,
/// which leaks nothing about the token). A cluster-scoped token reads only its own feeds.
async fn check_read(req: &Request, bearer: Bearer) -> poem::Result<()> {
    if req
        .data::<Tokens>()
        .is_some_and(|tokens| tokens.allows_read(&bearer.token))
    {
        return Ok(());
    }
    let Some(store) = req.data::<Store>() else {
        return Err(AuthorizationError.into());
    };
    let grant = store
        .tokens()
        .check(store, &bearer.token)
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "cannot check a named token");
            poem::Error::from_status(StatusCode::SERVICE_UNAVAILABLE)
        })?;
    match grant {
        None => Err(AuthorizationError.into()),
        Some(Grant {
            cluster_dns: None, ..
        }) => Ok(()),
        Some(Grant {
            cluster_dns: Some(dns),
            name,
        }) if is_feed_of(req.uri().path(), &dns) => {
            let _ = name;
            Ok(())
        }
        Some(Grant {
            cluster_dns: Some(dns),
            name,
        }) => Err(poem::Error::from_string(
            format!("token '{name}' may read only the Flux feeds of cluster {dns}"),
            StatusCode::FORBIDDEN,
        )),
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
        };
        assert!(tokens.allows_read("r") && tokens.allows_read("w"));
        assert!(tokens.allows_write("w") && !tokens.allows_write("r"));
        assert!(!tokens.allows_read("") && !tokens.allows_read("rr") && !tokens.allows_read("R"));
    }
}
