//! HTTP: the route table, shared state and request helpers. Handlers parse,
//! call `service`, and shape the answer.

pub mod admin;
pub mod console;
pub mod discovery;
pub mod introspect;
pub mod openapi;
pub mod ops;
pub mod renew;
pub mod revoke;
pub mod token;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use actix_web::dev::{AppService, HttpServiceFactory};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::{
    web, FromRequest, Handler, HttpRequest, HttpResponse, Resource, Responder, ResponseError as _,
};
use ipnet::IpNet;

use crate::oauth::OAuthError;
use crate::store::Db;
use crate::tokens::keys::KeyRing;

pub struct AppState {
    pub db: Db,
    pub keys: Arc<KeyRing>,
    pub directory: Arc<crate::directory::Directory>,
    /// Keeps this process's change subscription alive.
    pub changes: Arc<crate::store::changes::Subscriber>,
    /// The one way every endpoint authenticates its caller.
    pub auth: crate::oauth::authenticate::Authenticator,
    pub issuer: String,
    pub trusted_proxies: Vec<IpNet>,
    pub last_used: LastUsed,
    /// Failed authentications per source address (`oauth::throttle`).
    pub throttle: Arc<crate::oauth::throttle::FailureThrottle>,
    /// Access-token renewals, committed in batches on PostgreSQL.
    pub renewals: crate::service::renewals::Renewals,
}

/// `last_used_at`, gathered in memory and written in batches, so that the
/// token endpoint does not pay a database write per request. A client's time
/// is written again only once it has moved by `LAST_USED_RESOLUTION`: with
/// many busy clients, writing every client every few seconds would cost a row
/// update per request all the same. The stored value lags real use by at most
/// that resolution plus one flush interval.
#[derive(Default)]
pub struct LastUsed(Mutex<LastUsedMaps>);

#[derive(Default)]
struct LastUsedMaps {
    seen: HashMap<String, i64>,
    written: HashMap<String, i64>,
}

pub const LAST_USED_RESOLUTION: i64 = 15;

impl LastUsed {
    pub fn record(&self, client_id: &str, at: i64) {
        if let Ok(mut maps) = self.0.lock() {
            match maps.seen.get_mut(client_id) {
                Some(seen) => *seen = at,
                None => {
                    maps.seen.insert(client_id.to_string(), at);
                }
            }
        }
    }

    /// The times worth writing now (`now` from the node's clock).
    pub fn drain(&self, now: i64) -> Vec<(String, i64)> {
        // The maps are walked outside the lock that `record` takes on the
        // token endpoint: at a million clients a walk takes milliseconds.
        // Taking them is O(1); only `drain` (one task) touches `written`.
        let (mut seen, mut written) = match self.0.lock() {
            Ok(mut maps) => (
                std::mem::take(&mut maps.seen),
                std::mem::take(&mut maps.written),
            ),
            Err(_) => return Vec::new(),
        };
        // A time written a resolution or more ago no longer holds anything
        // back: any later use is due either way. Forgetting it keeps the map
        // to the clients used lately instead of every client ever used
        // (some 80 MB at a million).
        written.retain(|_, at| now - *at < LAST_USED_RESOLUTION);
        let mut due = Vec::new();
        seen.retain(|id, at| {
            let stale = written
                .get(id)
                .is_none_or(|written| *at - written >= LAST_USED_RESOLUTION);
            if stale {
                due.push((id.clone(), *at));
            }
            // Keep the ones not yet due, so a later flush can still write them.
            !stale
        });
        for (id, at) in &due {
            written.insert(id.clone(), *at);
        }
        if let Ok(mut maps) = self.0.lock() {
            maps.written = written;
            // Uses recorded during the walk are newer than the kept ones:
            // put the kept map back and those few over it.
            let during = std::mem::replace(&mut maps.seen, seen);
            maps.seen.extend(during);
        }
        due
    }
}

/// `endpoints!(table; route module::{handler, ...}, admin module::{...})`:
/// `table.route::<module::__path_handler, _, _>(module::handler)` for each.
macro_rules! endpoints {
    ($table:ident; $($kind:ident $($module:ident)::+ :: { $($handler:ident),* $(,)? }),* $(,)?) => {
        $( endpoints!(@group $table $kind [$($module)::+] $($handler)*); )*
    };
    (@group $table:ident $kind:ident $module:tt $($handler:ident)*) => {
        $( endpoints!(@one $table $kind $module $handler); )*
    };
    (@one $table:ident $kind:ident [$($module:ident)::+] $handler:ident) => {
        pastey::paste! {
            $table.$kind::<$($module)::+::[<__path_ $handler>], _, _>($($module)::+::$handler);
        }
    };
}

/// Every endpoint, once: each line registers the handler at the path and
/// methods of its `#[utoipa::path]` and adds that operation to the OpenAPI
/// document. `admin` lines also document the scope the handler's
/// `Admin<S>` argument checks. Within a path, the order of the lines is the
/// order of the methods in `Allow`.
pub fn table() -> Table {
    let mut table = Table::default();
    endpoints!(table;
        route discovery::{metadata, openid_configuration, jwks},
        route token::{token},
        route introspect::{introspect},
        route revoke::{revoke},
        route renew::{renew},
        admin admin::tenants::{list, create, get, update, delete},
        admin admin::device_groups::{list, create, get, delete},
        admin admin::trusted_issuers::{list, create, get, delete},
        admin admin::roles::{list, create, update, delete},
        admin admin::clients::{
            list, create, get, update, delete, disable, enable, revoke, rotate_secret,
            list_tokens, reissue_token
        },
        admin admin::users::{list, create, get, update, delete, setup_link},
        route admin::me::{
            me, change_password, personal_key, create_personal_key, personal_key_secret,
            delete_personal_key
        },
        admin admin::audit::{list},
        admin admin::notices::{list},
        route console::pages::{sign_in_page, setup_page, stylesheet, script},
        route console::{sign_in, sign_out, setup},
        route console::clients::{
            clients_page, tokens_page, new_page, details_page, create, form_page, change
        },
        route console::settings::{
            tenants_page, create_tenant, change_tenant, device_groups_page, create_device_group,
            change_device_group, roles_page, create_role, change_role, trusted_issuers_page,
            create_trusted_issuer, trusted_issuer_form_page, change_trusted_issuer
        },
        route console::people::{
            users_page, create_user, change_user, audit_page, notices_page, profile_page,
            profile_confirm_page, change_profile
        },
        route ops::{healthz, readyz, metrics},
        route openapi::{document},
    );
    table
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    table().register(cfg);
}

type Schemas = Vec<(
    String,
    utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
)>;

/// The route table and the documented operations, built together.
#[derive(Default)]
pub struct Table {
    resources: Vec<(String, PathRoutes)>,
    paths: utoipa::openapi::path::Paths,
    schemas: Schemas,
}

impl Table {
    /// A public endpoint.
    pub fn route<P, F, Args>(&mut self, handler: F)
    where
        P: utoipa::Path + utoipa::__dev::SchemaReferences + for<'t> utoipa::__dev::Tags<'t>,
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add::<P, F, Args>(handler, None);
    }

    /// An admin endpoint: its first argument, `Admin<S>`, names the scope.
    pub fn admin<P, F, Args>(&mut self, handler: F)
    where
        P: utoipa::Path + utoipa::__dev::SchemaReferences + for<'t> utoipa::__dev::Tags<'t>,
        F: Handler<Args>,
        Args: FromRequest + admin::scope::AdminArgs + 'static,
        F::Output: Responder + 'static,
    {
        self.add::<P, F, Args>(handler, Some(Args::SCOPE));
    }

    fn add<P, F, Args>(&mut self, handler: F, scope: Option<admin::scope::Scope>)
    where
        P: utoipa::Path + utoipa::__dev::SchemaReferences + for<'t> utoipa::__dev::Tags<'t>,
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        use utoipa::openapi::path::HttpMethod;
        let path = P::path();
        let methods = P::methods();
        let mut operation = P::operation();
        // `tag = ...` lives apart from the operation (utoipa's OpenApi derive
        // merges the two the same way).
        let tags = <P as utoipa::__dev::Tags>::tags();
        if !tags.is_empty() {
            operation
                .tags
                .get_or_insert_with(Vec::new)
                .extend(tags.iter().map(ToString::to_string));
        }
        if let Some(scope) = scope {
            operation.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
                "bearer",
                [scope.as_str()],
            )]);
        }
        let index = match self.resources.iter().position(|(p, _)| *p == path) {
            Some(index) => index,
            None => {
                self.resources.push((path.clone(), at(&path)));
                self.resources.len() - 1
            }
        };
        for method in &methods {
            let method = match method {
                HttpMethod::Get => Method::GET,
                HttpMethod::Post => Method::POST,
                HttpMethod::Put => Method::PUT,
                HttpMethod::Delete => Method::DELETE,
                HttpMethod::Options => Method::OPTIONS,
                HttpMethod::Head => Method::HEAD,
                HttpMethod::Patch => Method::PATCH,
                HttpMethod::Trace => Method::TRACE,
            };
            let (_, routes) = &mut self.resources[index];
            let taken = std::mem::replace(routes, at(&path));
            *routes = taken.on(method, handler.clone());
        }
        self.paths.add_path_operation(&path, methods, operation);
        P::schemas(&mut self.schemas);
    }

    /// The documented paths, and the schemas their operations name.
    pub fn documented(self) -> (utoipa::openapi::path::Paths, Schemas) {
        (self.paths, self.schemas)
    }

    /// The routed paths and their methods, in registration order.
    pub fn routed(&self) -> Vec<(String, Vec<String>)> {
        self.resources
            .iter()
            .map(|(path, routes)| (path.clone(), routes.allow.clone()))
            .collect()
    }

    pub fn register(self, cfg: &mut web::ServiceConfig) {
        for (_, routes) in self.resources {
            cfg.service(routes);
        }
    }
}

/// A path and the methods it takes, built with [`at`]. Any other method on
/// the path answers 405 with an `Allow` header naming the methods it does
/// take (RFC 9110 15.5.6); the header is made from the routes themselves, so
/// the two cannot disagree. A path that does not exist stays 404.
pub struct PathRoutes {
    resource: Resource,
    allow: Vec<String>,
}

pub fn at(path: &str) -> PathRoutes {
    PathRoutes {
        resource: web::resource(path),
        allow: Vec::new(),
    }
}

impl PathRoutes {
    pub fn get<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::GET, handler)
    }

    pub fn post<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::POST, handler)
    }

    pub fn patch<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::PATCH, handler)
    }

    pub fn delete<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::DELETE, handler)
    }

    pub fn on<F, Args>(mut self, method: Method, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.allow.push(method.to_string());
        self.resource = self.resource.route(web::method(method).to(handler));
        self
    }
}

impl HttpServiceFactory for PathRoutes {
    fn register(self, config: &mut AppService) {
        let allow = self.allow.join(", ");
        self.resource
            .default_service(web::to(move || {
                let allow = allow.clone();
                async move { method_not_allowed(&allow) }
            }))
            .register(config);
    }
}

/// 405 in the contract's error shape, with `Allow` (RFC 9110 15.5.6).
fn method_not_allowed(allow: &str) -> HttpResponse {
    let mut error = OAuthError::method_not_allowed();
    error.description = format!("this path takes {allow}");
    let mut response = error.error_response();
    if let Ok(value) = HeaderValue::from_str(allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

pub async fn not_found() -> HttpResponse {
    OAuthError::not_found("no such endpoint").error_response()
}

/// The form of a request to an OAuth endpoint and its authenticated caller
/// (introspection and revocation; the token endpoint checks `grant_type`
/// between the two, as RFC 6749 5.2 orders its errors).
pub async fn form_and_caller(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    endpoint: crate::oauth::authenticate::Endpoint,
) -> Result<
    (
        crate::oauth::form::Form,
        crate::oauth::authenticate::Principal,
    ),
    OAuthError,
> {
    let form = crate::oauth::form::Form::read(req, payload, &[]).await?;
    let ip = client_ip(req, &state.trusted_proxies);
    let caller = state
        .auth
        .authenticate(req.headers(), Some(&form), ip, endpoint)
        .await?;
    Ok((form, caller))
}

/// The address the request came from (see `resolve_client_ip`).
pub fn client_ip(req: &HttpRequest, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    resolve_client_ip(
        peer,
        req.headers()
            .get_all("x-forwarded-for")
            .map(HeaderValue::as_bytes),
        trusted,
    )
}

/// The caller's address: the peer address, unless the peer is a trusted
/// proxy; then `X-Forwarded-For` (every value, in order) is read from the
/// right, skipping trusted proxies, and the first address that is not one is
/// the client. Fails closed: an entry that is not a bare IP address (a port,
/// brackets, `unknown`, bytes that are not ASCII) makes the address unknown
/// (None), which no `allowed_ips` matches; taking the proxy's own address
/// instead would let any caller behind it pass an allowlist that names it.
pub fn resolve_client_ip<'a>(
    peer: IpAddr,
    forwarded: impl IntoIterator<Item = &'a [u8]>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut hops: Vec<&str> = Vec::new();
    for value in forwarded {
        let text = std::str::from_utf8(value).ok().filter(|t| t.is_ascii())?;
        hops.extend(text.split(','));
    }
    let mut client = peer;
    for hop in hops.iter().rev() {
        client = hop.trim().parse::<IpAddr>().ok()?.to_canonical();
        if !is_trusted(&client) {
            break;
        }
    }
    Some(client)
}

/// A JSON 200 that must not be cached (RFC 6749 5.1).
pub fn no_store_json(body: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")))
        .json(body)
}

#[cfg(test)]
mod tests {
    use super::{LastUsed, LAST_USED_RESOLUTION};

    #[test]
    fn a_use_is_written_once_per_resolution_and_old_writes_are_forgotten() {
        let last_used = LastUsed::default();
        last_used.record("kwc_a", 100);
        last_used.record("kwc_b", 100);
        let mut first = last_used.drain(100);
        first.sort();
        assert_eq!(first, vec![("kwc_a".into(), 100), ("kwc_b".into(), 100)]);
        // Within the resolution: kept back, not lost.
        last_used.record("kwc_a", 105);
        assert!(last_used.drain(105).is_empty());
        assert_eq!(last_used.0.lock().unwrap().written.len(), 2);
        // A resolution later the held-back use is written, and the client
        // not used since is no longer remembered.
        let later = 100 + LAST_USED_RESOLUTION;
        assert_eq!(last_used.drain(later), vec![("kwc_a".into(), 105)]);
        let maps = last_used.0.lock().unwrap();
        assert_eq!(maps.written.len(), 1, "kwc_b is forgotten");
        assert!(maps.seen.is_empty());
        drop(maps);
        // Forgetting changes nothing for the next use: it is due.
        last_used.record("kwc_b", later + 1);
        assert_eq!(
            last_used.drain(later + 1),
            vec![("kwc_b".into(), later + 1)]
        );
    }
}
