//! What every signed-in console page and form shares: the signed-in person
//! (authenticated by the one path every caller takes, `authenticate_admin`,
//! with the form's `csrf_token` on changes), the scope check the admin API
//! makes (`admin::require_scope`, one policy), the navigation that offers
//! only what the person may read, and the mapping of errors to pages.

use std::future::Future;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::pages::{error_page_back, secured, PageQuery};
use super::see_other;
use crate::domain::User;
use crate::http::admin::{require_scope, Scope};
use crate::http::{client_ip, AppState};
use crate::oauth::authenticate::{session_cookie, Who};
use crate::oauth::form::Form;
use crate::oauth::OAuthError;
use crate::service::{Actor, ServiceResult};

/// The person signed in to the console, as a page sees them.
pub struct Person {
    pub actor: Actor,
    pub user: User,
    pub csrf_token: String,
}

impl Person {
    /// Whether the person's role holds `scope`: what a page offers.
    pub fn may(&self, scope: Scope) -> bool {
        require_scope(&self.actor, scope).is_ok()
    }

    /// Refused (403) unless the role holds `scope`: what a form is allowed.
    pub fn require(&self, scope: Scope) -> Result<(), OAuthError> {
        require_scope(&self.actor, scope)
    }

    pub fn nav(&self, current: Section) -> Nav {
        let links = Section::ALL
            .iter()
            .filter(|section| section.read_scope().is_none_or(|s| self.may(s)))
            .map(|section| NavLink {
                href: section.href(),
                label: section.label(),
                current: *section == current,
            })
            .collect();
        Nav {
            person: self.user.name.clone(),
            csrf_token: self.csrf_token.clone(),
            links,
            profile_current: current == Section::Profile,
        }
    }
}

/// The console's sections, in the order the navigation shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Clients,
    Tokens,
    Tenants,
    DeviceGroups,
    Roles,
    TrustedIssuers,
    Users,
    Audit,
    Notices,
    Profile,
}

impl Section {
    const ALL: [Section; 9] = [
        Section::Clients,
        Section::Tokens,
        Section::Tenants,
        Section::DeviceGroups,
        Section::Roles,
        Section::TrustedIssuers,
        Section::Users,
        Section::Audit,
        Section::Notices,
    ];

    fn href(self) -> &'static str {
        match self {
            Section::Clients => "/console",
            Section::Tokens => "/console/tokens",
            Section::Tenants => "/console/tenants",
            Section::DeviceGroups => "/console/device-groups",
            Section::Roles => "/console/roles",
            Section::TrustedIssuers => "/console/trusted-issuers",
            Section::Users => "/console/users",
            Section::Audit => "/console/audit",
            Section::Notices => "/console/notices",
            Section::Profile => "/console/profile",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Section::Clients => "Client credentials",
            Section::Tokens => "API tokens",
            Section::Tenants => "Tenants",
            Section::DeviceGroups => "Device groups",
            Section::Roles => "Roles",
            Section::TrustedIssuers => "Trusted issuers",
            Section::Users => "Users",
            Section::Audit => "Audit",
            Section::Notices => "Notices",
            Section::Profile => "My profile",
        }
    }

    /// The scope the section's list needs (the admin API's for the same list).
    fn read_scope(self) -> Option<Scope> {
        match self {
            Section::Clients | Section::Tokens => Some(Scope::ClientsRead),
            Section::Tenants | Section::DeviceGroups | Section::Roles | Section::TrustedIssuers => {
                Some(Scope::TenantsRead)
            }
            Section::Users => Some(Scope::UsersRead),
            Section::Audit | Section::Notices => Some(Scope::AuditRead),
            Section::Profile => None,
        }
    }
}

/// The top of every signed-in page.
pub struct Nav {
    pub person: String,
    pub csrf_token: String,
    pub links: Vec<NavLink>,
    pub profile_current: bool,
}

pub struct NavLink {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// "Are you sure?" before a change that cannot be undone: a page of its
/// own, so it works without JavaScript, naming what the change is about.
#[derive(askama::Template)]
#[template(path = "console/confirm.html")]
pub struct ConfirmPage {
    pub nav: Nav,
    pub title: String,
    pub message: String,
    /// The form's target (a POST with the session's csrf_token).
    pub action: String,
    pub button: String,
    pub cancel: String,
    pub danger: bool,
}

/// The person behind the request's session cookie; None without a cookie or
/// a live session (the page then sends the browser to sign in). `csrf` is
/// the form's `csrf_token`: required for every change, as on the admin API.
async fn person(
    req: &HttpRequest,
    state: &AppState,
    csrf: Option<&str>,
) -> Result<Option<Person>, OAuthError> {
    if session_cookie(req.headers()).is_none() {
        return Ok(None);
    }
    // The console is the session's: a bearer token sent along is ignored.
    let mut headers = req.headers().clone();
    headers.remove(header::AUTHORIZATION);
    let ip = client_ip(req, &state.trusted_proxies);
    let caller = match state
        .auth
        .authenticate_admin(&headers, req.method(), csrf, ip)
        .await
    {
        Ok(caller) => caller,
        Err(e) if e.status == StatusCode::UNAUTHORIZED => return Ok(None),
        Err(e) => return Err(e),
    };
    match caller.who {
        Who::User { user, csrf_token } => Ok(Some(Person {
            actor: caller.actor,
            user: *user,
            csrf_token,
        })),
        Who::Client(_) => Ok(None),
    }
}

fn to_sign_in() -> HttpResponse {
    see_other("/console/sign-in").finish()
}

/// A signed-in page: `render` gets the person and the query; a request
/// without a live session is sent to sign in, an error becomes a page.
pub async fn page<F, Fut>(req: HttpRequest, state: web::Data<AppState>, render: F) -> HttpResponse
where
    F: FnOnce(Person, PageQuery, web::Data<AppState>) -> Fut,
    Fut: Future<Output = Result<HttpResponse, OAuthError>>,
{
    let answer = async {
        let query = PageQuery::parse(&req)?;
        match person(&req, &state, None).await? {
            Some(person) => render(person, query, state.clone()).await,
            None => Ok(to_sign_in()),
        }
    }
    .await;
    secured(answer.unwrap_or_else(|e| error_page_back(&e, None)))
}

/// A console form: read as a form (fields named in `repeatable` may come
/// more than once), its `csrf_token` checked with the session, then `act`.
/// Errors become a page with a way back to `back`.
pub async fn action<F, Fut>(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    repeatable: &[&str],
    back: String,
    act: F,
) -> HttpResponse
where
    F: FnOnce(Person, Form, web::Data<AppState>) -> Fut,
    Fut: Future<Output = Result<HttpResponse, OAuthError>>,
{
    let answer = async {
        let form = Form::read(&req, payload, repeatable).await?;
        match person(&req, &state, Some(form.get("csrf_token").unwrap_or(""))).await? {
            Some(person) => act(person, form, state.clone()).await,
            None => Ok(to_sign_in()),
        }
    }
    .await;
    secured(answer.unwrap_or_else(|e| error_page_back(&e, Some(&back))))
}

/// After a change: back to `location`, which shows `notice` (one of the
/// fixed notices of `notice_text`, so nothing the caller wrote is echoed).
pub fn done(location: &str, notice: &str) -> HttpResponse {
    let separator = if location.contains('?') { '&' } else { '?' };
    see_other(&format!("{location}{separator}notice={notice}")).finish()
}

/// The fixed notices a page may show after a change.
pub fn notice_text(query: &PageQuery) -> Option<&'static str> {
    Some(match query.get("notice")?.as_str() {
        "created" => "Created.",
        "created-keys" => {
            "Created. It authenticates with signed client assertions (private_key_jwt): there is no secret to copy."
        }
        "saved" => "Saved.",
        "disabled" => "Disabled: it cannot get tokens, and its tokens do not work, until enabled.",
        "enabled" => "Enabled.",
        "revoked" => "Revoked. Its tokens stopped working; this cannot be undone.",
        "deleted" => "Deleted.",
        "password" => "Password changed. Your other sessions have ended.",
        "key-deleted" => {
            "Your personal API access key is deleted; it and its tokens stopped at once."
        }
        _ => return None,
    })
}

/// Runs store work for a page, as the admin API handlers do.
pub async fn run<T, F>(state: &AppState, f: F) -> Result<T, OAuthError>
where
    F: FnOnce(&mut crate::store::Conn<'_>) -> ServiceResult<T> + Send + 'static,
    T: Send + 'static,
{
    crate::http::admin::run(state, f).await
}

/// A list fetched one row longer than a page (`PAGE_SIZE + 1`): trimmed to
/// the page, and the next page's URL (`url_after` of the last row shown)
/// when there is more.
pub fn next_page<T>(rows: &mut Vec<T>, url_after: impl FnOnce(&T) -> String) -> Option<String> {
    let more = rows.len() as i64 > super::pages::PAGE_SIZE;
    rows.truncate(super::pages::PAGE_SIZE as usize);
    rows.last().filter(|_| more).map(url_after)
}

/// `base?after=<key>`.
pub fn after_url(base: &str, key: &str) -> String {
    format!(
        "{base}?{}",
        serde_urlencoded::to_string([("after", key)]).unwrap_or_default()
    )
}

/// A form field as given, trimmed; absent and empty alike are None.
pub fn field(form: &Form, name: &str) -> Option<String> {
    form.get(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A list field: one entry per line or comma, blanks dropped.
pub fn list_field(form: &Form, name: &str) -> Vec<String> {
    form.get(name)
        .unwrap_or_default()
        .split(['\n', ','])
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

/// A whole-number field; text that is not one is a 400 naming the field.
pub fn number_field(form: &Form, name: &str, label: &str) -> Result<Option<i64>, OAuthError> {
    match field(form, name) {
        None => Ok(None),
        Some(text) => text
            .parse::<i64>()
            .map(Some)
            .map_err(|_| OAuthError::invalid_request(format!("{label} must be a whole number"))),
    }
}

/// A request body built from form fields, read by the same type (and so the
/// same checks) as the admin API's JSON body.
pub fn request_from<T: serde::de::DeserializeOwned>(
    fields: serde_json::Map<String, serde_json::Value>,
) -> Result<T, OAuthError> {
    serde_json::from_value(serde_json::Value::Object(fields))
        .map_err(|e| OAuthError::invalid_request(e.to_string()))
}

/// A path segment as a URL path (`/console/clients/{id}`): ids are ours, but
/// role names and tenant ids may hold characters a URL path does not.
pub fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
