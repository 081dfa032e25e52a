//! Named read tokens over HTTP (write token): `POST /tokens`, `GET /tokens`,
//! `DELETE /tokens/{name}`. A token's value is shown once, at creation.

use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use super::body::JsonBody;
use super::error::WriteError;
use crate::auth::WriteAccess;
use crate::store::Store;
use crate::store::tokens::{self, TokenInfo};

pub struct TokensApi;

/// A token to create.
#[derive(Object, Clone, Debug)]
#[oai(deny_unknown_fields)]
pub struct NewToken {
    /// 1-63 of a-z, 0-9, '.', '_', '-'.
    #[oai(validator(pattern = r"^[a-z0-9._-]{1,63}$"))]
    pub name: String,
    /// The cluster id whose Flux feeds the token may read; omit for every read route.
    pub cluster: Option<String>,
}

/// A token as listed; its value is never shown again.
#[derive(Object, Clone, Debug)]
pub struct Token {
    pub name: String,
    /// The cluster it may read, or `null` for every read route.
    #[oai(nullable)]
    pub cluster: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, saved every 30 s; `null` before the first use.
    #[oai(nullable)]
    pub last_used_at: Option<i64>,
}

impl From<TokenInfo> for Token {
    fn from(t: TokenInfo) -> Self {
        Token {
            name: t.name,
            cluster: t.cluster,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
        }
    }
}

/// A created token, with its value: store it now, it cannot be read back.
#[derive(Object, Clone, Debug)]
pub struct CreatedToken {
    pub name: String,
    #[oai(nullable)]
    pub cluster: Option<String>,
    /// The bearer token.
    pub token: String,
}

#[derive(ApiResponse)]
pub enum TokenCreated {
    /// Created; the only time the value is shown.
    #[oai(status = 201)]
    Created(Json<CreatedToken>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
pub enum TokenList {
    /// The tokens, ordered by name.
    #[oai(status = 200)]
    Ok(Json<Vec<Token>>),
}

#[derive(ApiResponse)]
pub enum TokenRevoked {
    /// Revoked: the token stops working at once.
    #[oai(status = 200)]
    Ok(Json<Token>),
}

#[OpenApi(prefix_path = "/tokens", tag = "ApiTags::Tokens")]
impl TokensApi {
    /// Create a read token
    #[oai(path = "/", method = "post")]
    async fn create(
        &self,
        auth: WriteAccess,
        store: Data<&Store>,
        body: JsonBody<NewToken>,
    ) -> Result<TokenCreated, WriteError> {
        let NewToken { name, cluster } = body.0;
        let token = store
            .create_token(change(auth, "POST"), name.clone(), cluster.clone())
            .await?;
        let location = format!("/tokens/{name}");
        Ok(TokenCreated::Created(
            Json(CreatedToken {
                name,
                cluster,
                token,
            }),
            location,
        ))
    }

    /// List read tokens
    #[oai(path = "/", method = "get")]
    async fn list(&self, _auth: WriteAccess, store: Data<&Store>) -> Result<TokenList, WriteError> {
        let found = store.read(tokens::list).await?;
        Ok(TokenList::Ok(Json(
            found.into_iter().map(Token::from).collect(),
        )))
    }

    /// Revoke a read token
    #[oai(path = "/:name", method = "delete")]
    async fn revoke(
        &self,
        auth: WriteAccess,
        store: Data<&Store>,
        name: Path<String>,
    ) -> Result<TokenRevoked, WriteError> {
        let revoked = store.revoke_token(change(auth, "DELETE"), name.0).await?;
        Ok(TokenRevoked::Ok(Json(revoked.into())))
    }
}

fn change(auth: WriteAccess, method: &'static str) -> crate::store::audit::Change {
    crate::store::audit::Change {
        actor: auth.0.0,
        method,
    }
}
