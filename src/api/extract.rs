//! Request extraction: the admin caller, JSON bodies ([`JsonBody`], parsed into their request
//! type) and query strings, each refusing bad input with OpenAI's error body (never axum's
//! plain-text rejections).

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

use super::error::ApiError;
use super::AppState;
use crate::domain::{Actor, Id, IdKind, KeyId, Limit, Order, OrgId, PageRequest};

mod body;
#[cfg(test)]
mod tests;

pub use body::{field, JsonBody, LargeJsonBody, NoFields};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A caller whose admin key was verified. Handlers that take one cannot run unauthenticated.
pub struct AdminCaller {
    pub org_id: OrgId,
    /// The key the request was made with: the actor of the changes it makes.
    pub key_id: KeyId,
    /// The organization's write sequence when the key was checked (see `api::cache`).
    pub version: i64,
}

impl AdminCaller {
    /// Who the audit log says made a change.
    pub fn actor(&self) -> Actor {
        Actor::ApiKey(self.key_id.clone())
    }
}

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).ok_or_else(|| {
            ApiError::Unauthorized(
                "You didn't provide an API key. Provide your admin key in an Authorization header using Bearer auth (i.e. Authorization: Bearer sk-admin-...).".into(),
            )
        })?;
        let malformed = || {
            ApiError::Unauthorized(
                "The Authorization header must be 'Bearer sk-admin-...' with an admin key.".into(),
            )
        };
        let value = header.to_str().map_err(|_| malformed())?;
        let (scheme, key) = value.split_once(' ').ok_or_else(malformed)?;
        let key = key.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || key.is_empty() {
            return Err(malformed());
        }
        match state.store.authenticate(key).await? {
            Some(who) => Ok(AdminCaller {
                org_id: who.org_id,
                key_id: who.key_id,
                version: who.version,
            }),
            None => Err(ApiError::Unauthorized(format!(
                "Incorrect API key provided: {}. Use an admin key (sk-admin-...) issued by this certgate.",
                redact(key)
            ))),
        }
    }
}

/// Shows only the ends of a presented key, as OpenAI does.
fn redact(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 12 {
        return "*".repeat(chars.len().min(12));
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}***{tail}")
}

/// Query parameters, accepting both `x[]=v` and `x=v`.
pub struct Query(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let raw = parts.uri.query().unwrap_or("");
        let pairs = form_urlencoded::parse(raw.as_bytes())
            .map(|(k, v)| (k.trim_end_matches("[]").to_owned(), v.into_owned()))
            .collect();
        Ok(Query(pairs))
    }
}

impl Query {
    /// The last value given for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An integer parameter, e.g. `effective_at[gte]`; anything else is refused with its
    /// name as `param`.
    pub fn integer(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|raw| {
                raw.trim().parse::<i64>().map_err(|_| {
                    ApiError::bad_request(
                        Some(name),
                        format!(
                            "Invalid '{name}': expected an integer (Unix seconds), got '{}'.",
                            crate::domain::echo(raw)
                        ),
                    )
                })
            })
            .transpose()
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `limit`, `after` and `order` (with the given default order).
    pub fn page(&self, default_order: Order) -> Result<PageRequest, ApiError> {
        let order = self
            .get("order")
            .map(Order::parse)
            .transpose()?
            .unwrap_or(default_order);
        Ok(PageRequest {
            order,
            ..self.ascending_page()?
        })
    }

    /// `limit` and `after` of a list that has no `order` (always oldest first).
    pub fn ascending_page(&self) -> Result<PageRequest, ApiError> {
        let limit = self
            .get("limit")
            .map(Limit::parse)
            .transpose()?
            .unwrap_or(Limit::DEFAULT);
        let after = self
            .get("after")
            .filter(|a| !a.is_empty())
            .map(str::to_owned);
        Ok(PageRequest {
            limit,
            after,
            order: Order::Asc,
        })
    }

    pub fn bool(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("false" | "0") => Ok(false),
            Some("true" | "1") => Ok(true),
            Some(_) => Err(ApiError::bad_request(
                Some(name),
                format!("Invalid '{name}': expected true or false."),
            )),
        }
    }
}

/// The id in a route's single path parameter, parsed into its kind: a malformed one is
/// answered 404 like an unknown one, in OpenAI's shape, before any handler runs.
pub struct PathId<K>(pub Id<K>);

impl<S: Send + Sync, K: IdKind> FromRequestParts<S> for PathId<K> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                ApiError::bad_request(
                    None,
                    "The id in the URL is not valid percent-encoded UTF-8.",
                )
            })?;
        Ok(PathId(Id::parse(&raw)?))
    }
}
