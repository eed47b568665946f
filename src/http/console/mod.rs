//! The console (API.md section 4): the session endpoints ("Sessions":
//! sign-in, sign-out and the one-time setup link) here, the pages in
//! `pages`. Every answer carries the console's security headers
//! (`pages::secured`).

pub mod clients;
pub mod frame;
pub mod pages;
pub mod people;
pub mod settings;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError as _};

use super::{client_ip, AppState};
use crate::oauth::authenticate::{session_cookie, SESSION_COOKIE};
use crate::oauth::form::Form;
use crate::oauth::OAuthError;
use crate::service::{sessions, users};
use pages::{html, secured, wants_html, SetupPage, SignInPage};

/// The `Set-Cookie` value (RFC 6265) of the session cookie. The value is
/// our own token (URL-safe characters only), so it needs no quoting; one
/// fixed header is simpler than actix's cookie feature and its dependencies.
/// `Secure` when the issuer is served over https: a plain-http issuer (a
/// laptop, a test) would never get the cookie back otherwise.
fn session_cookie_for(state: &AppState, value: &str, max_age: i64) -> String {
    let secure = if state.issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{SESSION_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    )
}

pub fn see_other(location: &str) -> actix_web::HttpResponseBuilder {
    let mut response = HttpResponse::SeeOther();
    response
        .insert_header((header::LOCATION, location.to_string()))
        .insert_header((header::CACHE_CONTROL, "no-store"));
    response
}

/// The sign-in form.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the form `Form` reads
pub struct SignInForm {
    #[schema(min_length = 1)]
    email: String,
    #[schema(min_length = 1)]
    password: String,
}

#[utoipa::path(
    post,
    path = "/console/sign-in",
    tag = "people",
    summary = "Sign in: 303 to /console with the session cookie",
    request_body(content = SignInForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "signed in; `keyward_session` is set"),
        (status = 400, description = "invalid_request", body = crate::http::openapi::ErrorBody),
        (status = 401, description = "access_denied: wrong email or password (the same answer for both); a browser form (`Accept: text/html`) gets the sign-in page again, saying so", content(
            (crate::http::openapi::ErrorBody = "application/json"),
            (String = "text/html")
        )),
        (status = 429, description = "slow_down: too many failed sign-ins from this address (Retry-After); a page for a browser form", content(
            (crate::http::openapi::ErrorBody = "application/json"),
            (String = "text/html")
        )),
        (status = 500, description = "server_error", body = crate::http::openapi::ErrorBody),
        (status = 503, description = "temporarily_unavailable", body = crate::http::openapi::ErrorBody)
    ),
    security(())
)]
pub async fn sign_in(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let form = match Form::read(&req, payload, &[]).await {
        Ok(form) => form,
        Err(e) => return secured(e.error_response()),
    };
    let answer = match signed_in(&req, &form, &state).await {
        Ok(answer) => answer,
        // A person at the sign-in page gets the page back, not JSON.
        Err(e) if wants_html(&req) && e.status == StatusCode::UNAUTHORIZED => html(
            e.status,
            &SignInPage {
                error: Some("Wrong email or password."),
                email: form.get("email").unwrap_or_default(),
            },
        ),
        Err(e) if wants_html(&req) && e.status == StatusCode::TOO_MANY_REQUESTS => {
            pages::error_page(&e)
        }
        Err(e) => e.error_response(),
    };
    secured(answer)
}

async fn signed_in(
    req: &HttpRequest,
    form: &Form,
    state: &AppState,
) -> Result<HttpResponse, OAuthError> {
    let email = form
        .get("email")
        .ok_or_else(|| OAuthError::invalid_request("email is required"))?;
    let password = form
        .get("password")
        .ok_or_else(|| OAuthError::invalid_request("password is required"))?;
    let ip = client_ip(req, &state.trusted_proxies);
    let (session, _csrf) = state.auth.sign_in(email, password, ip).await?;
    let cookie = session_cookie_for(state, session.value.expose(), sessions::ABSOLUTE_TTL);
    Ok(see_other("/console")
        .insert_header((header::SET_COOKIE, cookie))
        .finish())
}

/// The sign-out form: a console page sends the session's CSRF token as a
/// hidden field (a script may send `X-CSRF-Token` instead, and no body).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the form `Form` reads
pub struct SignOutForm {
    csrf_token: String,
}

#[utoipa::path(
    post,
    path = "/console/sign-out",
    tag = "people",
    summary = "Sign out: the session ends on every node; 303 to the sign-in page",
    request_body(content = Option<SignOutForm>, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "signed out; the cookie is cleared"),
        (status = 400, description = "invalid_request: the body is not a form", body = crate::http::openapi::ErrorBody),
        (status = 401, description = "invalid_token: no live session", body = crate::http::openapi::ErrorBody),
        (status = 403, description = "invalid_request: the session's csrf_token is missing or wrong", body = crate::http::openapi::ErrorBody),
        (status = 500, description = "server_error", body = crate::http::openapi::ErrorBody),
        (status = 503, description = "temporarily_unavailable", body = crate::http::openapi::ErrorBody)
    ),
    security(("session" = []))
)]
pub async fn sign_out(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    secured(
        signed_out(req, payload, state)
            .await
            .unwrap_or_else(|e| e.error_response()),
    )
}

async fn signed_out(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    // A console form carries the CSRF token as a hidden field; a script
    // sends the header and may send no body at all.
    let has_body = req.headers().contains_key(header::CONTENT_TYPE);
    let form = if has_body {
        Some(Form::read(&req, payload, &[]).await?)
    } else {
        None
    };
    let ip = client_ip(&req, &state.trusted_proxies);
    let caller = state
        .auth
        .authenticate_admin(
            req.headers(),
            req.method(),
            form.as_ref().and_then(|f| f.get("csrf_token")),
            ip,
        )
        .await?;
    if let Some(cookie) = session_cookie(req.headers()).map(str::to_string) {
        let shown_ip = caller.actor.ip.clone();
        super::admin::run(&state, move |conn| {
            sessions::sign_out(conn, &cookie, shown_ip)
        })
        .await?;
    }
    let cleared = session_cookie_for(&state, "", 0);
    Ok(see_other("/console/sign-in")
        .insert_header((header::SET_COOKIE, cleared))
        .finish())
}

/// The setup form: the link's token and the password chosen.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the form `Form` reads
pub struct SetupForm {
    #[schema(min_length = 1)]
    token: String,
    /// 12 to 1024 characters, not the email.
    #[schema(min_length = 12, max_length = 1024)]
    password: String,
}

#[utoipa::path(
    post,
    path = "/console/setup",
    tag = "people",
    summary = "A person opens their one-time setup link and chooses a password: 303 to sign-in",
    request_body(content = SetupForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "password set; the link is used up"),
        (status = 400, description = "invalid_request: a password the rules refuse; a browser form (`Accept: text/html`) gets the form again, saying why", content(
            (crate::http::openapi::ErrorBody = "application/json"),
            (String = "text/html")
        )),
        (status = 404, description = "not_found: an unknown, used or expired link (one answer for all three); a page for a browser form", content(
            (crate::http::openapi::ErrorBody = "application/json"),
            (String = "text/html")
        )),
        (status = 500, description = "server_error", body = crate::http::openapi::ErrorBody),
        (status = 503, description = "temporarily_unavailable", body = crate::http::openapi::ErrorBody)
    ),
    security(())
)]
pub async fn setup(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let form = match Form::read(&req, payload, &[]).await {
        Ok(form) => form,
        Err(e) => return secured(e.error_response()),
    };
    let answer = match set_up(&req, &form, &state).await {
        Ok(answer) => answer,
        Err(e) if wants_html(&req) && e.status == StatusCode::BAD_REQUEST => html(
            e.status,
            &SetupPage {
                token: form.get("token").unwrap_or_default(),
                error: Some(e.description.as_str()),
            },
        ),
        Err(e) if wants_html(&req) && e.status == StatusCode::NOT_FOUND => html(
            e.status,
            &pages::MessagePage {
                title: "This link no longer works",
                message: "The setup link is unknown, already used or expired. Ask an administrator for a new one.",
                back: None,
            },
        ),
        Err(e) => e.error_response(),
    };
    secured(answer)
}

async fn set_up(
    req: &HttpRequest,
    form: &Form,
    state: &AppState,
) -> Result<HttpResponse, OAuthError> {
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?
        .to_string();
    let password = form
        .get("password")
        .ok_or_else(|| OAuthError::invalid_request("password is required"))?
        .to_string();
    let ip = client_ip(req, &state.trusted_proxies).map(|ip| ip.to_string());
    let now = state.directory.now();
    super::admin::run(state, move |conn| {
        users::complete_setup(conn, &token, &password, now, ip)
    })
    .await?;
    Ok(see_other("/console/sign-in").finish())
}
