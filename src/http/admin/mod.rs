//! The admin API, `/admin/v1`: JSON in, JSON out, a bearer token of this
//! server with the scope each endpoint needs. A caller reaches its own tenant
//! and those below it; everything else is 404, exactly as if it did not exist.

pub mod audit;
pub mod clients;
pub mod device_groups;
pub mod me;
pub mod notices;
pub mod roles;
pub mod scope;
pub mod tenants;
pub mod trusted_issuers;
pub mod users;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use self::scope::{Admin, Scope};
use super::{client_ip, AppState};
use crate::oauth::authenticate::AdminCaller;
use crate::oauth::OAuthError;
use crate::service::Actor;

/// Authenticates the caller (a bearer token) and checks it holds `scope`.
/// What it may do beyond that is the service layer's policy.
pub async fn caller(
    req: &HttpRequest,
    state: &AppState,
    scope: Scope,
) -> Result<Actor, OAuthError> {
    let actor = signed_in(req, state).await?.actor;
    require_scope(&actor, scope)?;
    Ok(actor)
}

/// The scope check of every admin action, on the API and in the console
/// alike: 403 unless the caller's credential holds `scope`.
pub fn require_scope(actor: &Actor, scope: Scope) -> Result<(), OAuthError> {
    if actor.scopes.contains(scope.as_str()) {
        Ok(())
    } else {
        Err(OAuthError::insufficient_scope(format!(
            "this needs the {scope} scope"
        )))
    }
}

/// The admin caller, by bearer credential or console session, whatever it
/// holds (`/admin/v1/me` needs no scope).
pub async fn signed_in(req: &HttpRequest, state: &AppState) -> Result<AdminCaller, OAuthError> {
    let ip = client_ip(req, &state.trusted_proxies);
    state
        .auth
        .authenticate_admin(req.headers(), req.method(), None, ip)
        .await
}

const MAX_JSON_BYTES: usize = 64 * 1024;

/// Reads a JSON body. An empty body reads as `{}` where that is allowed.
pub async fn read_json<T: DeserializeOwned>(
    mut payload: web::Payload,
    empty_ok: bool,
) -> Result<T, OAuthError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| OAuthError::invalid_request("the body could not be read"))?;
        if body.len() + chunk.len() > MAX_JSON_BYTES {
            return Err(OAuthError::invalid_request(format!(
                "the body is larger than {MAX_JSON_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    let bytes: &[u8] = if body.iter().all(u8::is_ascii_whitespace) && empty_ok {
        b"{}"
    } else {
        &body
    };
    let mut value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| OAuthError::invalid_request(format!("invalid JSON body: {e}")))?;
    // An optional body may also be JSON `null`, as the document says.
    if value.is_null() && empty_ok {
        value = serde_json::Value::Object(Default::default());
    }
    if contains_nul(&value) {
        return Err(OAuthError::invalid_request(NUL_REFUSED));
    }
    integral_floats_as_integers(&mut value);
    // Every body is an object: serde would read an array as fields in order.
    if !value.is_object() {
        return Err(OAuthError::invalid_request(
            "the JSON body must be an object",
        ));
    }
    // The path names the field at fault: "can_renew: invalid type: ...".
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            OAuthError::invalid_request(format!("invalid JSON body: {}", e.inner()))
        } else {
            OAuthError::invalid_request(format!("invalid JSON body: {path}: {}", e.inner()))
        }
    })
}

/// PostgreSQL text cannot hold U+0000, so it is refused at the door, the same
/// way on every store.
const NUL_REFUSED: &str = "text must not contain NUL (U+0000)";

/// Fields kept as JSON text, whose content may hold any string.
const STORED_AS_JSON: [&str; 2] = ["metadata", "jwks"];

fn contains_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        // `metadata` and `jwks` are stored as JSON text, where a NUL is
        // escaped (a JWK Set's content is checked as keys, not as text).
        Value::Object(fields) => fields.iter().any(|(name, field)| {
            name.contains('\0') || (!STORED_AS_JSON.contains(&name.as_str()) && contains_nul(field))
        }),
        _ => false,
    }
}

/// `3600.0` is the same JSON number as `3600` (RFC 8259 6; JSON Schema counts
/// it an integer), but serde reads only the latter into an `i64`. Integral
/// numbers are rewritten as integers, except inside `metadata`, which is the
/// caller's own data and is kept as sent.
fn integral_floats_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| !n.is_i64() && !n.is_u64()) {
                // i64::MAX as f64 rounds up to 2^63, so the bound is exclusive.
                if f.fract() == 0.0 && f >= -(2f64.powi(63)) && f < 2f64.powi(63) {
                    *value = Value::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                if name != "metadata" {
                    integral_floats_as_integers(field);
                }
            }
        }
        _ => {}
    }
}

/// Query parameters: `limit` (1 to 500, default 50), `after`, and filters.
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(req: &HttpRequest, allowed: &[&str]) -> Result<Query, OAuthError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
            .map_err(|_| OAuthError::invalid_request("the query string is malformed"))?;
        let mut seen = std::collections::HashSet::new();
        if pairs
            .iter()
            .any(|(name, value)| name.contains('\0') || value.contains('\0'))
        {
            return Err(OAuthError::invalid_request(NUL_REFUSED));
        }
        for (name, _) in &pairs {
            if !seen.insert(name.clone()) {
                return Err(OAuthError::invalid_request(format!(
                    "query parameter {name:?} is given more than once"
                )));
            }
            if !allowed.contains(&name.as_str()) && name != "limit" && name != "after" {
                return Err(OAuthError::invalid_request(format!(
                    "unknown query parameter {name:?}"
                )));
            }
        }
        Ok(Query { pairs })
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.pairs
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.clone())
    }

    pub fn limit(&self) -> Result<i64, OAuthError> {
        // Unlike a filter, an empty `limit=` is not "absent": it is not a number.
        let given = self.pairs.iter().find(|(n, _)| n == "limit");
        match given.map(|(_, v)| v.clone()) {
            None => Ok(50),
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=500).contains(n))
                .ok_or_else(|| {
                    OAuthError::invalid_request("limit must be a whole number from 1 to 500")
                }),
        }
    }
}

/// One page of a list: `{"items": [...], "next": cursor or null}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Cursor of the next page, or null on the last.
    pub next: Option<String>,
}

/// Which part of a list a request asks for: the service is asked for
/// `limit` items after the cursor, one more than the page holds, so that
/// their count tells whether there is a next page.
pub struct Window {
    pub limit: i64,
    after: Option<String>,
}

impl Window {
    pub fn after(&self) -> Option<&str> {
        self.after.as_deref()
    }
}

/// A list endpoint: the query's `limit`, `after` and `filters` (anything
/// else is 400), one service call on the blocking pool, and the page.
pub async fn listed<T, F>(
    req: &HttpRequest,
    state: &AppState,
    filters: &[&str],
    cursor: impl Fn(&T) -> String,
    fetch: F,
) -> Result<HttpResponse, OAuthError>
where
    F: FnOnce(
            &mut crate::store::Conn<'_>,
            &Query,
            &Window,
        ) -> crate::service::ServiceResult<Vec<T>>
        + Send
        + 'static,
    T: Serialize + Send + 'static,
{
    let query = Query::parse(req, filters)?;
    let limit = query.limit()?;
    let window = Window {
        limit: limit + 1,
        after: query.get("after"),
    };
    let items = run(state, move |conn| fetch(conn, &query, &window)).await?;
    Ok(page(items, limit, cursor))
}

/// The service was asked for one more than `limit`: if it came, there is a
/// next page.
fn page<T: Serialize>(
    mut items: Vec<T>,
    limit: i64,
    cursor: impl Fn(&T) -> String,
) -> HttpResponse {
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next = if more { items.last().map(cursor) } else { None };
    HttpResponse::Ok().json(Page { items, next })
}

pub fn created(body: &impl Serialize) -> HttpResponse {
    HttpResponse::build(StatusCode::CREATED)
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// Runs a service call on the blocking pool with a pooled connection.
pub async fn run<T, F>(state: &AppState, f: F) -> Result<T, OAuthError>
where
    F: FnOnce(&mut crate::store::Conn<'_>) -> crate::service::ServiceResult<T> + Send + 'static,
    T: Send + 'static,
{
    state
        .db
        .run(move |conn| f(conn).map_err(OAuthError::from))
        .await
}
