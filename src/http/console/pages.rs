//! The console's pages (API.md section 4, "The console"): server-rendered
//! HTML from askama templates (`templates/console/`), checked at compile
//! time, with every asset in the binary. Pages call the service layer as the
//! admin API handlers do, with the session's `Actor`; no page needs
//! JavaScript.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::see_other;
use crate::http::{client_ip, AppState};
use crate::oauth::authenticate::{session_cookie, Who};
use crate::oauth::OAuthError;
use crate::service::clients::{self, ClientFilter, ClientView};

/// No inline script or style anywhere: the stylesheet is the one asset.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLESHEET: &str = include_str!("console.css");

/// Rows on one page of a list.
const PAGE_SIZE: i64 = 50;
/// Credentials that expire within this many seconds are marked (API.md 4).
const EXPIRING_SOON: i64 = 14 * 86_400;

/// The headers every console answer carries, pages, redirects and errors
/// alike.
pub fn secured(mut response: HttpResponse) -> HttpResponse {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Whether the caller is a browser that wants a page back rather than the
/// JSON error (a form post from the sign-in page sends `Accept: text/html`).
pub fn wants_html(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

/// A rendered page. A template that fails to render is a 500 with the fixed
/// text, as every other internal error.
pub fn html(status: StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(body) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(body),
        Err(e) => {
            use actix_web::ResponseError as _;
            OAuthError::server_error(&e).error_response()
        }
    }
}

/// A page's query string as pairs. The console reads only the parameters it
/// knows and ignores the rest, and an empty value counts as absent. A NUL
/// anywhere is refused (400), as the admin API refuses it: PostgreSQL text
/// cannot hold one.
struct PageQuery(Vec<(String, String)>);

impl PageQuery {
    fn parse(req: &HttpRequest) -> Result<PageQuery, OAuthError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
        if pairs
            .iter()
            .any(|(name, value)| name.contains('\0') || value.contains('\0'))
        {
            return Err(OAuthError::invalid_request(
                "text must not contain NUL (U+0000)",
            ));
        }
        Ok(PageQuery(pairs))
    }

    /// The value as given, empty included.
    fn raw(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn get(&self, name: &str) -> Option<String> {
        self.raw(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }
}

#[derive(Template)]
#[template(path = "console/sign_in.html")]
pub struct SignInPage<'a> {
    pub error: Option<&'a str>,
    pub email: &'a str,
}

#[utoipa::path(
    get,
    path = "/console/sign-in",
    tag = "console",
    summary = "The console's sign-in page (HTML)",
    responses(
        (status = 200, description = "the sign-in form, posting to /console/sign-in", content_type = "text/html", body = String)
    ),
    security(())
)]
pub async fn sign_in_page() -> HttpResponse {
    secured(html(
        StatusCode::OK,
        &SignInPage {
            error: None,
            email: "",
        },
    ))
}

#[derive(Template)]
#[template(path = "console/setup.html")]
pub struct SetupPage<'a> {
    pub token: &'a str,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "console/message.html")]
pub struct MessagePage<'a> {
    pub title: &'a str,
    pub message: &'a str,
}

#[utoipa::path(
    get,
    path = "/console/setup",
    tag = "console",
    summary = "The one-time setup link's page: choose a password (HTML)",
    params(("token" = String, Query, description = "the link's one-time token")),
    responses(
        (status = 200, description = "the choose-a-password form, posting to /console/setup", content_type = "text/html", body = String),
        (status = 400, description = "the link has no token, or a query value holds NUL", content_type = "text/html", body = String)
    ),
    security(())
)]
pub async fn setup_page(req: HttpRequest) -> HttpResponse {
    let query = match PageQuery::parse(&req) {
        Ok(query) => query,
        Err(e) => return secured(error_page(&e)),
    };
    secured(match query.raw("token") {
        // Whether the link is still good is told when the form is sent:
        // one answer for unknown, used and expired links.
        Some(token) => html(
            StatusCode::OK,
            &SetupPage {
                token,
                error: None,
            },
        ),
        None => html(
            StatusCode::BAD_REQUEST,
            &MessagePage {
                title: "Incomplete link",
                message: "This setup link is incomplete. Copy the whole link you were given, or ask an administrator for a new one.",
            },
        ),
    })
}

#[utoipa::path(
    get,
    path = "/console/assets/console.css",
    tag = "console",
    summary = "The console's stylesheet",
    responses((status = 200, description = "the stylesheet", content_type = "text/css", body = String)),
    security(())
)]
pub async fn stylesheet() -> HttpResponse {
    secured(
        HttpResponse::Ok()
            .content_type("text/css; charset=utf-8")
            .body(STYLESHEET),
    )
}

/// One client in the table, formatted.
pub struct Row {
    pub name: String,
    pub client_id: String,
    pub role: String,
    pub tenant_id: String,
    pub status: String,
    pub expires: String,
    /// "in 3 days" when active and expiring within 14 days.
    pub expires_soon: Option<String>,
    pub last_used: String,
    pub personal: bool,
}

fn timestamp(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp())
}

fn shown_time(rfc3339: Option<&str>, none: &str) -> String {
    match rfc3339.and_then(timestamp) {
        Some(ts) => chrono::DateTime::from_timestamp(ts, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default(),
        None => none.to_string(),
    }
}

impl Row {
    fn new(view: ClientView, now: i64) -> Row {
        let left = view
            .expires_at
            .as_deref()
            .and_then(timestamp)
            .map(|at| at - now);
        let expires_soon = match left {
            Some(left) if view.status == "active" && left > 0 && left <= EXPIRING_SOON => {
                let days = (left + 86_399) / 86_400;
                Some(match days {
                    1 if left < 86_400 => "in less than a day".to_string(),
                    1 => "in 1 day".to_string(),
                    n => format!("in {n} days"),
                })
            }
            _ => None,
        };
        Row {
            expires: shown_time(view.expires_at.as_deref(), "never"),
            last_used: shown_time(view.last_used_at.as_deref(), "never"),
            personal: view.user_id.is_some(),
            name: view.name,
            client_id: view.client_id,
            role: view.role,
            tenant_id: view.tenant_id,
            status: view.status,
            expires_soon,
        }
    }
}

/// The filters of the clients page, as they stay in the URL.
#[derive(Default)]
pub struct Filters {
    /// "", active, disabled, expired or revoked.
    pub status: String,
    pub role: String,
    pub show_revoked: bool,
}

impl Filters {
    const STATUSES: [&'static str; 4] = ["active", "disabled", "expired", "revoked"];

    fn from_query(query: &PageQuery) -> Filters {
        Filters {
            // An unknown status shows everything but revoked, as no status does.
            status: query
                .get("status")
                .filter(|s| Self::STATUSES.contains(&s.as_str()))
                .unwrap_or_default(),
            role: query.get("role").unwrap_or_default(),
            show_revoked: query.get("show_revoked").is_some_and(|v| v != "0"),
        }
    }

    fn service_filter(&self) -> ClientFilter {
        let status = if !self.status.is_empty() {
            Some(self.status.clone())
        } else if self.show_revoked {
            Some("all".to_string())
        } else {
            None
        };
        ClientFilter {
            status,
            kind: Some(clients::KIND_CLIENT_CREDENTIALS.to_string()),
            role: Some(self.role.clone()).filter(|r| !r.is_empty()),
            ..ClientFilter::default()
        }
    }

    /// This page's URL with the filters and `after`.
    fn url(&self, after: Option<&str>) -> String {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        if !self.status.is_empty() {
            pairs.push(("status", &self.status));
        }
        if !self.role.is_empty() {
            pairs.push(("role", &self.role));
        }
        if self.show_revoked {
            pairs.push(("show_revoked", "1"));
        }
        if let Some(after) = after {
            pairs.push(("after", after));
        }
        match serde_urlencoded::to_string(&pairs) {
            Ok(query) if !query.is_empty() => format!("/console?{query}"),
            _ => "/console".to_string(),
        }
    }

    pub fn is_status(&self, status: &&str) -> bool {
        self.status == *status
    }

    pub fn statuses(&self) -> [&'static str; 4] {
        Self::STATUSES
    }
}

/// The clients in reach, one page of them.
pub struct Listing {
    pub rows: Vec<Row>,
    pub next: Option<String>,
    /// Whether this is a later page (a link back to the first).
    pub paged: bool,
    pub first: String,
}

#[derive(Template)]
#[template(path = "console/clients.html")]
pub struct ClientsPage {
    pub person: String,
    pub csrf_token: String,
    pub filters: Filters,
    /// None: the person may not read clients.
    pub listing: Option<Listing>,
}

#[utoipa::path(
    get,
    path = "/console",
    tag = "console",
    summary = "The console's client credentials page (HTML); without a live session, 303 to the sign-in page",
    params(
        ("status" = Option<String>, Query, description = "active, disabled, expired or revoked; otherwise everything but revoked"),
        ("role" = Option<String>, Query, description = "only this role"),
        ("show_revoked" = Option<String>, Query, description = "1: revoked clients too"),
        ("after" = Option<String>, Query, description = "cursor: the page after this client id")
    ),
    responses(
        (status = 200, description = "the signed-in person's clients page", content_type = "text/html", body = String),
        (status = 303, description = "no live session: to /console/sign-in"),
        (status = 400, description = "a query value holds NUL", content_type = "text/html", body = String),
        (status = 429, description = "too many failed authentications from this address (Retry-After)", content_type = "text/html", body = String),
        (status = 500, description = "internal error", content_type = "text/html", body = String),
        (status = 503, description = "the store is unavailable", content_type = "text/html", body = String)
    ),
    // Open to all: without the session cookie a browser is sent to sign in
    // (303) rather than refused (401), so the session is not a requirement
    // of the request in the document's sense.
    security(())
)]
pub async fn clients_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    secured(match clients_answer(&req, &state).await {
        Ok(response) => response,
        Err(e) if e.status == StatusCode::UNAUTHORIZED => see_other("/console/sign-in").finish(),
        Err(e) => error_page(&e),
    })
}

async fn clients_answer(req: &HttpRequest, state: &AppState) -> Result<HttpResponse, OAuthError> {
    let query = PageQuery::parse(req)?;
    if session_cookie(req.headers()).is_none() {
        return Ok(see_other("/console/sign-in").finish());
    }
    // The console is the session's: a bearer token sent along is not.
    let mut headers = req.headers().clone();
    headers.remove(header::AUTHORIZATION);
    let ip = client_ip(req, &state.trusted_proxies);
    let caller = state
        .auth
        .authenticate_admin(&headers, req.method(), None, ip)
        .await?;
    let Who::User { user, csrf_token } = caller.who else {
        return Ok(see_other("/console/sign-in").finish());
    };
    let filters = Filters::from_query(&query);
    let listing = if caller.actor.scopes.contains("clients:read") {
        let (actor, filter, after) = (caller.actor, filters.service_filter(), query.get("after"));
        let paged = after.is_some();
        let mut views = crate::http::admin::run(state, move |conn| {
            clients::list(conn, &actor, &filter, PAGE_SIZE + 1, after.as_deref())
        })
        .await?;
        let more = views.len() as i64 > PAGE_SIZE;
        views.truncate(PAGE_SIZE as usize);
        let next = views
            .last()
            .filter(|_| more)
            .map(|last| filters.url(Some(&last.client_id)));
        let now = state.directory.now();
        Some(Listing {
            rows: views.into_iter().map(|v| Row::new(v, now)).collect(),
            next,
            paged,
            first: filters.url(None),
        })
    } else {
        None
    };
    Ok(html(
        StatusCode::OK,
        &ClientsPage {
            person: user.name.clone(),
            csrf_token,
            filters,
            listing,
        },
    ))
}

/// An error as a page: the status and the same words the JSON error has
/// (a 500 says only "internal error").
pub fn error_page(e: &OAuthError) -> HttpResponse {
    let title = match e.status.as_u16() {
        429 => "Too many attempts",
        503 => "Temporarily unavailable",
        500 => "Something went wrong",
        _ => "Cannot show this page",
    };
    let mut response = html(
        e.status,
        &MessagePage {
            title,
            message: &e.description,
        },
    );
    if let Some(seconds) = e.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}
