//! Who is calling: the one path that authenticates a caller at every
//! endpoint of keyward's own (token, introspection, revocation, renewal, the
//! admin API). API.md section 2, "Credentials used at keyward's own
//! endpoints". A handler hands over the request's credentials and gets a
//! `Principal` or the contract's error; it never looks at a secret or a token
//! itself.
//!
//! What is checked, for every caller:
//! - a client secret: the client exists, is of kind `client_credentials`,
//!   uses a secret method, the secret is one of its live ones (constant
//!   time), the client is active, and the address is within its
//!   `allowed_ips`;
//! - a client assertion: signed by the client's registered keys
//!   (`private_key_jwt`) or by a trusted issuer for one of the client's
//!   federated subjects, its claims within the rules of `assertions::verify`,
//!   its (issuer, jti) not used before on any node, then as for a secret;
//! - a bearer token: it is active (signature by a key still in the JWKS,
//!   expiry, jti not revoked, client active; or a live API token), its `aud`
//!   contains the issuer (except for renewal, the holder's own act), the
//!   address is within its client's `allowed_ips`, and the tenant it was
//!   narrowed to is still within its client's subtree.
//!
//! A failed check is 401 `invalid_client` (client authentication) or
//! `invalid_token` (a bearer token), like any other bad credential.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::http::header::HeaderMap;

use super::client_auth::{bearer_token, presented, Presented};
use super::form::Form;
use super::throttle::FailureThrottle;
use super::OAuthError;
use crate::directory::{ClientEntry, Directory};
use crate::domain::{ClientKind, ShownStatus};
use crate::service::credentials::ApiTokenRecord;
use crate::service::scopes::ScopeSet;
use crate::service::Actor;
use crate::store::{Db, StoreError};
use crate::tokens::{jwt, opaque};

/// Where the credential is presented: each endpoint takes some forms of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Token,
    Introspection,
    Revocation,
    Renewal,
    Admin,
}

impl Endpoint {
    /// Client authentication (RFC 6749 2.3) is taken where RFC 7662 and
    /// RFC 7009 expect it; renewal and the admin API take bearer tokens.
    pub fn takes_client_secret(self) -> bool {
        matches!(
            self,
            Endpoint::Token | Endpoint::Introspection | Endpoint::Revocation
        )
    }

    fn takes_bearer(self) -> bool {
        self != Endpoint::Token
    }
}

/// Why a credential was refused, for the failure counter and the throttle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    NoCredentials,
    Malformed,
    UnknownClient,
    BadSecret,
    BadToken,
    ClientInactive,
    AddressNotAllowed,
    WrongAudience,
    TenantOutOfReach,
    /// A console session cookie that names no live session.
    SessionEnded,
    /// A console sign-in with a wrong email or password.
    BadPassword,
    /// A client assertion that does not verify or breaks a rule.
    BadAssertion,
    /// A client assertion whose (issuer, jti) was used before.
    ReplayedAssertion,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::NoCredentials => "no_credentials",
            FailureReason::Malformed => "malformed",
            FailureReason::UnknownClient => "unknown_client",
            FailureReason::BadSecret => "bad_secret",
            FailureReason::BadToken => "bad_token",
            FailureReason::ClientInactive => "client_inactive",
            FailureReason::AddressNotAllowed => "address_not_allowed",
            FailureReason::WrongAudience => "wrong_audience",
            FailureReason::TenantOutOfReach => "tenant_out_of_reach",
            FailureReason::SessionEnded => "session_ended",
            FailureReason::BadPassword => "bad_password",
            FailureReason::BadAssertion => "bad_assertion",
            FailureReason::ReplayedAssertion => "replayed_assertion",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The client as the directory keeps it: what the hot paths and the
    /// policy read. The admin API reads the rest from the store.
    pub client: Arc<ClientEntry>,
    /// What the presented credential holds: the client's scopes for a
    /// secret, the token's scope for a token.
    pub scopes: Arc<ScopeSet>,
    /// The tenant this credential acts for: the client's, or the sub-tenant
    /// its token was narrowed to. Its subtree is the caller's reach.
    pub tenant_id: String,
    pub tenant_path: String,
    pub ip: Option<IpAddr>,
    pub credential: Credential,
}

/// How the caller proved itself.
#[derive(Debug, Clone)]
pub enum Credential {
    /// Client authentication: a secret or a client assertion.
    Client(Arc<ClientEntry>),
    AccessToken(Arc<jwt::AccessClaims>, Arc<ClientEntry>),
    ApiToken(Arc<ApiTokenRecord>),
}

impl Principal {
    pub fn client_id(&self) -> &str {
        &self.client.client_id
    }

    pub fn can_reach(&self, tenant_path: &str) -> bool {
        tenant_path.starts_with(&self.tenant_path)
    }

    /// The caller as the service layer's policy sees it.
    pub fn actor(&self) -> Actor {
        Actor {
            name: self.client_id().to_string(),
            client_id: Some(self.client_id().to_string()),
            user_id: None,
            tenant_id: self.tenant_id.clone(),
            tenant_path: self.tenant_path.clone(),
            scopes: (*self.scopes).clone(),
            ip: self.ip.map(|ip| ip.to_string()),
        }
    }
}

/// An active token and what stands behind it.
pub enum TokenLookup {
    Access(Arc<jwt::AccessClaims>, Arc<ClientEntry>),
    Api(Arc<ApiTokenRecord>),
}

/// A refusal: counted, and answered 401.
struct Refusal {
    reason: FailureReason,
    error: OAuthError,
}

enum Failure {
    Refused(Refusal),
    /// Not the credential's fault: a bad request, a store outage.
    Other(OAuthError),
}

impl From<OAuthError> for Failure {
    fn from(e: OAuthError) -> Self {
        Failure::Other(e)
    }
}

/// The directory's store failures, answered as any other (503 or 500).
impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Other(e.into())
    }
}

pub struct Authenticator {
    pub directory: Arc<Directory>,
    pub db: Db,
    pub issuer: String,
    /// Failed authentications per source address: past the limit, the
    /// address is answered 429 before its credentials are looked at.
    pub throttle: Arc<FailureThrottle>,
    /// Remote key sets of `private_key_jwt` clients and trusted issuers.
    pub assertion_keys: Arc<crate::assertions::key_cache::KeyCache>,
    /// The token endpoint's URL: an assertion's `aud` may name it.
    pub token_endpoint: String,
}

/// The console's session cookie (API.md section 4, "Sessions").
pub const SESSION_COOKIE: &str = "keyward_session";
/// The header that must carry the session's CSRF token on a cookie-
/// authenticated change.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Who calls the admin API.
#[derive(Debug, Clone)]
pub struct AdminCaller {
    pub actor: Actor,
    pub who: Who,
}

#[derive(Debug, Clone)]
pub enum Who {
    /// A bearer credential of a client.
    Client(Arc<ClientEntry>),
    /// A person signed in to the console, and the session's CSRF token.
    User {
        user: Box<crate::domain::User>,
        csrf_token: String,
    },
}

/// The value of the session cookie, if the request carries one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(actix_web::http::header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

impl Authenticator {
    /// The one way in to the admin API: a bearer credential (checked by
    /// `authenticate`, like every other endpoint's) or, without an
    /// `Authorization` header, the console's session cookie. A cookie
    /// caller's change (any method but GET and HEAD) must carry the
    /// session's CSRF token in `X-CSRF-Token`, or `csrf_form` (a console
    /// form's hidden `csrf_token`).
    pub async fn authenticate_admin(
        &self,
        headers: &HeaderMap,
        method: &actix_web::http::Method,
        csrf_form: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Result<AdminCaller, OAuthError> {
        let Some(cookie) = session_cookie(headers)
            .filter(|_| !headers.contains_key(actix_web::http::header::AUTHORIZATION))
        else {
            let principal = self
                .authenticate(headers, None, ip, Endpoint::Admin)
                .await?;
            return Ok(AdminCaller {
                actor: principal.actor(),
                who: Who::Client(principal.client),
            });
        };
        self.throttle.check(ip)?;
        let cookie = cookie.to_string();
        let shown_ip = ip.map(|ip| ip.to_string());
        let now = self.directory.now();
        let found = self
            .db
            .run(move |conn| {
                let Some((user, csrf_token)) =
                    crate::service::sessions::authenticate_session(conn, &cookie, now)?
                else {
                    return Ok(None);
                };
                let actor = crate::service::users::actor_for(conn, &user, shown_ip)?;
                Ok::<_, crate::service::ServiceError>(Some((actor, user, csrf_token)))
            })
            .await?;
        let Some((actor, user, csrf_token)) = found else {
            self.throttle
                .record_failure(ip, FailureReason::SessionEnded);
            return Err(OAuthError::invalid_token(
                "the console session has ended; sign in again",
            ));
        };
        let safe = matches!(
            *method,
            actix_web::http::Method::GET | actix_web::http::Method::HEAD
        );
        if !safe {
            let given = headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .or(csrf_form)
                .unwrap_or_default();
            if !opaque::hashes_equal(given, &csrf_token) {
                return Err(OAuthError::csrf_refused(
                    "a change made with the session cookie needs the session's CSRF token (the X-CSRF-Token header, or the csrf_token field of a console form)",
                ));
            }
        }
        Ok(AdminCaller {
            actor,
            who: Who::User {
                user: Box::new(user),
                csrf_token,
            },
        })
    }

    /// A person signs in to the console: throttled like every other
    /// credential, and every failure is the same 401.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        ip: Option<IpAddr>,
    ) -> Result<(crate::service::sessions::SessionCookie, String), OAuthError> {
        use crate::service::sessions::{self, SignInError};
        self.throttle.check(ip)?;
        let (email, password) = (email.to_string(), password.to_string());
        let shown_ip = ip.map(|ip| ip.to_string());
        let now = self.directory.now();
        let outcome = self
            .db
            .run(move |conn| {
                Ok::<_, crate::service::ServiceError>(sessions::sign_in(
                    conn, &email, &password, shown_ip, now,
                ))
            })
            .await?;
        match outcome {
            Ok(session) => Ok(session),
            Err(SignInError::Refused) => {
                self.throttle.record_failure(ip, FailureReason::BadPassword);
                Err(OAuthError::sign_in_refused())
            }
            Err(SignInError::Store(e)) => Err(e.into()),
        }
    }

    /// The one way in. `form` is the request's form body where the endpoint
    /// has one (client authentication may sit in it); `ip` the caller's
    /// address as resolved through the trusted proxies (None: unknown).
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        form: Option<&Form>,
        ip: Option<IpAddr>,
        endpoint: Endpoint,
    ) -> Result<Principal, OAuthError> {
        self.throttle.check(ip)?;
        match self.check(headers, form, ip, endpoint).await {
            Ok(principal) => Ok(principal),
            Err(Failure::Refused(refusal)) => {
                // Counts the failure for the throttle and the metric.
                self.throttle.record_failure(ip, refusal.reason);
                Err(refusal.error)
            }
            Err(Failure::Other(error)) => Err(error),
        }
    }

    /// A refusal in the shape of what was presented: `invalid_client` for
    /// client authentication, `invalid_token` for a bearer token.
    fn refuse(&self, as_client: bool, reason: FailureReason, why: &str) -> Failure {
        let error = if as_client {
            OAuthError::invalid_client(why)
        } else {
            OAuthError::invalid_token(why)
        };
        Failure::Refused(Refusal { reason, error })
    }

    async fn check(
        &self,
        headers: &HeaderMap,
        form: Option<&Form>,
        ip: Option<IpAddr>,
        endpoint: Endpoint,
    ) -> Result<Principal, Failure> {
        let parsed = match form {
            Some(form) => presented(headers, form),
            None => bearer_token(headers).map(|t| t.map_or(Presented::Nothing, Presented::Bearer)),
        };
        let presented = match parsed {
            Ok(p) => p,
            Err(e) if e.status == actix_web::http::StatusCode::UNAUTHORIZED => {
                return Err(Failure::Refused(Refusal {
                    reason: FailureReason::Malformed,
                    error: e,
                }))
            }
            Err(e) => return Err(Failure::Other(e)),
        };
        match presented {
            Presented::Nothing => Err(self.refuse(
                endpoint.takes_client_secret(),
                FailureReason::NoCredentials,
                if endpoint.takes_client_secret() {
                    "client authentication is required"
                } else {
                    "send an access token or API token as a bearer token"
                },
            )),
            Presented::ClientSecret {
                client_id, secret, ..
            } => {
                if !endpoint.takes_client_secret() {
                    return Err(self.refuse(
                        false,
                        FailureReason::Malformed,
                        "send an access token or API token as a bearer token",
                    ));
                }
                self.by_secret(&client_id, &secret, ip, endpoint).await
            }
            Presented::Assertion {
                assertion,
                client_id,
            } => {
                if !endpoint.takes_client_secret() {
                    return Err(self.refuse(
                        false,
                        FailureReason::Malformed,
                        "send an access token or API token as a bearer token",
                    ));
                }
                self.by_assertion(&assertion, client_id.as_deref(), ip)
                    .await
            }
            Presented::Bearer(token) => {
                if !endpoint.takes_bearer() {
                    return Err(self.refuse(
                        true,
                        FailureReason::Malformed,
                        "the token endpoint takes client_secret_basic, client_secret_post or private_key_jwt",
                    ));
                }
                self.by_token(&token, ip, endpoint).await
            }
        }
    }

    async fn by_secret(
        &self,
        client_id: &str,
        secret: &str,
        ip: Option<IpAddr>,
        endpoint: Endpoint,
    ) -> Result<Principal, Failure> {
        let failed = |reason| self.refuse(true, reason, "client authentication failed");
        let Some(entry) = self.directory.client(&self.db, client_id).await? else {
            return Err(failed(FailureReason::UnknownClient));
        };
        // The directory's clock, so that tests can move it past a grace.
        let now = self.directory.now();
        if entry.kind == ClientKind::ApiToken {
            // RFC 6749 5.2 unauthorized_client: an api_token client that
            // presents its own token as a secret is known, but may not use
            // this grant. Anything else is a wrong secret.
            if endpoint == Endpoint::Token {
                let presented = self.directory.api_token(&self.db, secret).await?;
                if presented.is_some_and(|t| t.owner.client_id == entry.client_id) {
                    return Err(Failure::Other(OAuthError::unauthorized_client(
                        "an api_token client uses its API token directly, not at the token endpoint",
                    )));
                }
            }
            return Err(failed(FailureReason::BadSecret));
        }
        if !entry.auth_method.uses_secret() || !entry.secret_matches(secret, now) {
            return Err(failed(FailureReason::BadSecret));
        }
        self.admit(entry, ip)
    }

    /// The checks every authenticated client passes, however it proved
    /// itself: it is active, and the address is within its `allowed_ips`.
    fn admit(&self, entry: Arc<ClientEntry>, ip: Option<IpAddr>) -> Result<Principal, Failure> {
        let status = entry.shown_status(self.directory.now());
        if status != ShownStatus::Active {
            return Err(self.refuse(
                true,
                FailureReason::ClientInactive,
                &format!("the client is {status}"),
            ));
        }
        if !entry.allows(ip) {
            return Err(self.refuse(
                true,
                FailureReason::AddressNotAllowed,
                "requests from this address are not allowed for this client",
            ));
        }
        Ok(Principal {
            client: entry.clone(),
            scopes: entry.scopes.clone(),
            tenant_id: entry.tenant_id().to_string(),
            tenant_path: entry.tenant_path().to_string(),
            ip,
            credential: Credential::Client(entry),
        })
    }

    /// A client assertion (API.md section 2): `private_key_jwt` when `iss`
    /// and `sub` are both a client ID, federated otherwise. The assertion's
    /// id is taken last, so a refused assertion does not use it up.
    async fn by_assertion(
        &self,
        assertion: &str,
        named: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Result<Principal, Failure> {
        use crate::assertions::key_cache::KeySource;
        use crate::assertions::verify;
        let bad = |why: &str| self.refuse(true, FailureReason::BadAssertion, why);
        let unavailable = |e: crate::assertions::key_cache::KeysUnavailable| {
            log::warn!("client assertion refused for now: {e}");
            Failure::Other(OAuthError::keys_unavailable())
        };
        let peeked = verify::peek(assertion).map_err(|e| bad(&e.0))?;
        let own_client = peeked.iss == peeked.sub
            && peeked
                .iss
                .starts_with(crate::tokens::opaque::CLIENT_ID_PREFIX);
        let (entry, keys) = if own_client {
            if named.is_some_and(|id| id != peeked.iss) {
                return Err(bad("client_id does not match the client assertion's iss"));
            }
            let Some(entry) = self.directory.client(&self.db, &peeked.iss).await? else {
                return Err(self.refuse(
                    true,
                    FailureReason::UnknownClient,
                    "client authentication failed",
                ));
            };
            if entry.auth_method != crate::domain::AuthMethod::PrivateKeyJwt {
                return Err(bad("the client does not use private_key_jwt"));
            }
            let keys = match (&entry.assertion_keys, &entry.jwks_uri) {
                (Some(keys), _) => keys.clone(),
                (None, Some(uri)) => self
                    .assertion_keys
                    .keys(&KeySource::JwksUri(uri.to_string()), peeked.kid.as_deref())
                    .await
                    .map_err(unavailable)?,
                (None, None) => return Err(bad("the client has no keys registered")),
            };
            (entry, keys)
        } else {
            let trust = self.directory.issuer_trust(&self.db, &peeked.iss).await?;
            if trust.is_empty() {
                return Err(bad("the client assertion's issuer is not trusted"));
            }
            let ids = self
                .directory
                .federated_clients(&self.db, &peeked.iss, &peeked.sub)
                .await?;
            let id = match named {
                Some(id) => ids.iter().find(|c| *c == id),
                None if ids.len() > 1 => return Err(bad(
                    "several clients answer to this issuer and subject: name one with client_id",
                )),
                None => ids.first(),
            };
            let Some(id) = id else {
                return Err(bad("no client answers to this issuer and subject"));
            };
            let Some(entry) = self.directory.client(&self.db, id).await? else {
                return Err(bad("no client answers to this issuer and subject"));
            };
            // The tenant nearest the client's that trusts the issuer says
            // where the keys come from.
            let Some(trusted) = trust
                .iter()
                .filter(|t| entry.tenant_path().starts_with(&t.tenant_path))
                .max_by_key(|t| t.tenant_path.len())
            else {
                return Err(bad("the client's tenant does not trust this issuer"));
            };
            let source = KeySource::for_issuer(&peeked.iss, trusted.jwks_uri.as_deref());
            let keys = self
                .assertion_keys
                .keys(&source, peeked.kid.as_deref())
                .await
                .map_err(unavailable)?;
            (entry, keys)
        };
        let audiences = [self.issuer.as_str(), self.token_endpoint.as_str()];
        let claims = verify::verify(assertion, &peeked, &keys, &audiences, self.directory.now())
            .map_err(|e| bad(&e.0))?;
        let principal = self.admit(entry, ip)?;
        if let Some(jti) = claims.jti {
            // Namespaced by issuer: a client's own id for private_key_jwt.
            let issuer = claims.iss;
            let until = claims.exp.saturating_add(verify::LEEWAY);
            let now = self.directory.now();
            let first = self
                .db
                .run(move |conn| {
                    crate::store::assertion_jtis::take(conn, &issuer, &jti, until, now)
                        .map_err(StoreError::from)
                })
                .await?;
            if !first {
                return Err(self.refuse(
                    true,
                    FailureReason::ReplayedAssertion,
                    "the client assertion was used before (its jti is single-use)",
                ));
            }
        }
        Ok(principal)
    }

    async fn by_token(
        &self,
        token: &str,
        ip: Option<IpAddr>,
        endpoint: Endpoint,
    ) -> Result<Principal, Failure> {
        let Some(found) = self.active_token(token).await? else {
            return Err(self.refuse(
                false,
                FailureReason::BadToken,
                "the token is malformed, expired, revoked or unknown",
            ));
        };
        let (owner, scope, tenant, address_allowed, credential) = match found {
            TokenLookup::Access(claims, entry) => {
                // A token minted for a resource server is for that server.
                if endpoint != Endpoint::Renewal && !claims.aud.contains(&self.issuer) {
                    return Err(self.refuse(
                        false,
                        FailureReason::WrongAudience,
                        "the token is for another audience; ask the token endpoint for one with audience set to this server's issuer",
                    ));
                }
                (
                    entry.clone(),
                    self.directory.scope_set(&claims.scope),
                    claims.tenant.clone(),
                    entry.allows(ip),
                    Credential::AccessToken(claims, entry),
                )
            }
            TokenLookup::Api(record) => (
                record.owner.clone(),
                self.directory.scope_set(&record.token.scope),
                record.token.tenant_id.clone(),
                record.owner.allows(ip),
                Credential::ApiToken(record),
            ),
        };
        if !address_allowed {
            return Err(self.refuse(
                false,
                FailureReason::AddressNotAllowed,
                "requests from this address are not allowed for this client",
            ));
        }
        // The narrowed tenant must still be the client's or below it: a
        // tenant moved away takes the token's reach with it.
        let tenant_path = if tenant == owner.tenant_id() {
            owner.tenant_path().to_string()
        } else {
            match self.directory.tenant_path(&self.db, &tenant).await? {
                Some(path) if path.starts_with(owner.tenant_path()) => path,
                // Renewal refuses it itself, 403 (API.md section 2,
                // "Renewal"); the caller acts for nothing else there.
                _ if endpoint == Endpoint::Renewal => owner.tenant_path().to_string(),
                _ => {
                    return Err(self.refuse(
                        false,
                        FailureReason::TenantOutOfReach,
                        "the token's tenant is no longer within its client's reach",
                    ))
                }
            }
        };
        Ok(Principal {
            client: owner,
            scopes: scope,
            tenant_id: tenant,
            tenant_path,
            ip,
            credential,
        })
    }

    /// Finds an active token of this server: a JWT whose signature (by a key
    /// still published), expiry, client and jti all check out, or a live API
    /// token. None for anything else. This says nothing about who presents
    /// it: introspection uses it for the token it is asked about.
    pub async fn active_token(&self, token: &str) -> Result<Option<TokenLookup>, OAuthError> {
        let directory = &self.directory;
        if token.starts_with(opaque::API_TOKEN_PREFIX) {
            let found = directory.api_token(&self.db, token).await?;
            return Ok(found
                .filter(|r| {
                    r.is_active(directory.now())
                        && directory
                            .scope_set(&r.token.scope)
                            .is_subset(&r.owner.scopes)
                })
                .map(TokenLookup::Api));
        }
        let Some(claims) = directory.verify_jwt(token, &self.issuer) else {
            return Ok(None);
        };
        let Some(entry) = directory.client(&self.db, &claims.client_id).await? else {
            return Ok(None);
        };
        // A token carries its client's role and scopes as they were when it
        // was issued. Once the client holds less (its role's scopes narrowed,
        // a person's key given another role), the token stops at once rather
        // than at its `exp` (API.md section 4, "Personal API access key").
        if claims.role != entry.role()
            || !directory.scope_set(&claims.scope).is_subset(&entry.scopes)
        {
            return Ok(None);
        }
        if !entry.is_usable(directory.now()) || directory.jti_revoked(&self.db, &claims.jti).await?
        {
            return Ok(None);
        }
        Ok(Some(TokenLookup::Access(claims, entry)))
    }
}
