//! Console sessions (README, "Web console"): signing in with a token opens a server-side session whose
//! random id travels in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` under TLS); it ends
//! after 12 h idle, on sign-out, or within a request when the named token it was opened with is
//! revoked. The token itself is never kept: a named token's session holds its SHA-256. Every
//! form carries the session's CSRF token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

/// The session cookie.
pub const COOKIE: &str = "flux_inputs_session";
/// A session unused this long is gone.
pub const IDLE: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most: signing in past it ends the session unused the longest, so
/// repeated sign-ins cannot grow the server's memory.
pub const MAX_SESSIONS: usize = 1000;

/// What a session may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read pages (the read token, or a named token for every read route).
    Read,
    /// Read and write (the write token).
    Write,
}

/// The token a session was opened with, as much as is needed to notice its revocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// `AUTH_TOKEN` / `CRUD_AUTH_TOKEN`: valid while the process runs.
    Configured,
    /// A named token: its name and SHA-256.
    Named { name: Arc<str>, digest: [u8; 32] },
}

#[derive(Clone, Debug)]
pub struct Session {
    pub access: Access,
    pub credential: Credential,
    /// Hidden in every form; a POST without it is refused.
    pub csrf: String,
    last_seen: Instant,
}

impl Session {
    /// Who the audit trail names for this session's writes.
    pub fn actor(&self) -> String {
        match &self.credential {
            Credential::Configured => "console".into(),
            Credential::Named { name, .. } => format!("console:{name}"),
        }
    }

    pub fn csrf_matches(&self, presented: &str) -> bool {
        presented.as_bytes().ct_eq(self.csrf.as_bytes()).into()
    }
}

/// Open sessions, by the SHA-256 of their id (the id itself is only in the browser).
#[derive(Clone, Default)]
pub struct Sessions(Arc<Mutex<HashMap<[u8; 32], Session>>>);

/// The session id in a request's `Cookie` headers, if any.
pub fn cookie_value(headers: &poem::http::HeaderMap) -> Option<String> {
    headers
        .get_all(poem::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim_matches('"').to_owned())
        .filter(|value| !value.is_empty())
}

/// 32 random bytes, hex.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system's random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn key(id: &str) -> [u8; 32] {
    crate::store::tokens::raw_digest(id)
}

impl Sessions {
    /// Opens a session; returns its id (for the cookie) and the session.
    pub fn open(&self, access: Access, credential: Credential) -> (String, Session) {
        let id = random_hex();
        let session = Session {
            access,
            credential,
            csrf: random_hex(),
            last_seen: Instant::now(),
        };
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Expired sessions go whenever one is opened: the map never grows past the live ones.
        all.retain(|_, s| s.last_seen.elapsed() < IDLE);
        if all.len() >= MAX_SESSIONS
            && let Some(oldest) = all.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| *k)
        {
            all.remove(&oldest);
        }
        all.insert(key(&id), session.clone());
        (id, session)
    }

    /// The live session with this id, its idle clock restarted.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let key = key(id);
        match all.get_mut(&key) {
            Some(session) if session.last_seen.elapsed() < IDLE => {
                session.last_seen = Instant::now();
                Some(session.clone())
            }
            Some(_) => {
                all.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn close(&self, id: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key(id));
    }

    /// Ends every session opened with this named token.
    pub fn close_named(&self, digest: &[u8; 32]) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).retain(
            |_, s| !matches!(&s.credential, Credential::Named { digest: d, .. } if d == digest),
        );
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_found_by_id_and_closed() {
        let sessions = Sessions::default();
        let (id, session) = sessions.open(Access::Read, Credential::Configured);
        assert_eq!(id.len(), 64);
        assert_ne!(id, session.csrf);
        assert_eq!(sessions.get(&id).unwrap().access, Access::Read);
        assert!(sessions.get(&random_hex()).is_none());
        sessions.close(&id);
        assert!(sessions.get(&id).is_none());
    }

    #[test]
    fn sessions_are_capped_and_the_longest_unused_goes_first() {
        let sessions = Sessions::default();
        let (first, _) = sessions.open(Access::Read, Credential::Configured);
        let (second, _) = sessions.open(Access::Read, Credential::Configured);
        // The first is used again: the second is now the longest unused.
        assert!(sessions.get(&first).is_some());
        for _ in 0..MAX_SESSIONS - 1 {
            sessions.open(Access::Read, Credential::Configured);
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(sessions.get(&first).is_some(), "recently used: kept");
        assert!(sessions.get(&second).is_none(), "the longest unused went");
    }

    #[test]
    fn a_named_tokens_sessions_close_together() {
        let sessions = Sessions::default();
        let named = Credential::Named {
            name: "ops".into(),
            digest: [7; 32],
        };
        let (a, _) = sessions.open(Access::Read, named.clone());
        let (b, _) = sessions.open(Access::Read, named);
        let (c, _) = sessions.open(Access::Write, Credential::Configured);
        sessions.close_named(&[7; 32]);
        assert!(sessions.get(&a).is_none() && sessions.get(&b).is_none());
        assert!(sessions.get(&c).is_some());
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = poem::http::HeaderMap::new();
        headers.insert(
            poem::http::header::COOKIE,
            format!("theme=dark; {COOKIE}=abc123; other=1")
                .parse()
                .unwrap(),
        );
        assert_eq!(cookie_value(&headers).as_deref(), Some("abc123"));
        headers.insert(poem::http::header::COOKIE, "theme=dark".parse().unwrap());
        assert_eq!(cookie_value(&headers), None);
    }

    #[test]
    fn the_csrf_token_must_match_exactly() {
        let sessions = Sessions::default();
        let (_, session) = sessions.open(Access::Write, Credential::Configured);
        assert!(session.csrf_matches(&session.csrf.clone()));
        assert!(!session.csrf_matches(""));
        assert!(!session.csrf_matches(&session.csrf[1..]));
    }
}
