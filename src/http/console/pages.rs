//! The console's pages (API.md section 4, "The console"): server-rendered
//! HTML from askama templates (`templates/console/`), checked at compile
//! time, with every asset in the binary. Pages call the service layer as the
//! admin API handlers do, with the session's `Actor`; no page needs
//! JavaScript.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;

use crate::oauth::OAuthError;

/// No inline script or style anywhere: the stylesheet and one small script
/// (the copy button) are the assets, both in the binary.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLESHEET: &str = include_str!("console.css");
const SCRIPT: &str = include_str!("console.js");

/// Rows on one page of a list.
pub const PAGE_SIZE: i64 = 50;
/// Credentials that expire within this many seconds are marked (API.md 4).
pub const EXPIRING_SOON: i64 = 14 * 86_400;

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
pub struct PageQuery(Vec<(String, String)>);

impl PageQuery {
    pub fn parse(req: &HttpRequest) -> Result<PageQuery, OAuthError> {
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
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn get(&self, name: &str) -> Option<String> {
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
    /// Where a "Back" link leads; None: to the sign-in page.
    pub back: Option<&'a str>,
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
                back: None,
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

/// An error as a page: the status and the same words the JSON error has
/// (a 500 says only "internal error").
pub fn error_page(e: &OAuthError) -> HttpResponse {
    error_page_back(e, None)
}

#[utoipa::path(
    get,
    path = "/console/assets/console.js",
    tag = "console",
    summary = "The console's one script: the copy buttons (pages work without it)",
    responses((status = 200, description = "the script", content_type = "text/javascript", body = String)),
    security(())
)]
pub async fn script() -> HttpResponse {
    secured(
        HttpResponse::Ok()
            .content_type("text/javascript; charset=utf-8")
            .body(SCRIPT),
    )
}

/// An error as a page, with a way back to `back` (the page a form came from).
pub fn error_page_back(e: &OAuthError, back: Option<&str>) -> HttpResponse {
    let title = match e.status.as_u16() {
        400 => "That did not work",
        403 => "Not allowed",
        404 => "Not found",
        409 => "That did not work",
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
            back,
        },
    );
    if let Some(seconds) = e.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}
