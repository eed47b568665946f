//! The console's people pages (API.md section 4): users (with the one-time
//! setup link shown once), the audit log with its filters, and "My
//! profile": the person's details, password change and their personal API
//! access key.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde_json::{json, Map, Value};

use super::clients::{shown_once, shown_time, ShownOncePage, DURATIONS};
use super::frame::{
    action, after_url, done, field, next_page, notice_text, page, request_from, run, segment,
    ConfirmPage, Nav, Person, Section,
};
use super::pages::{html, PageQuery, PAGE_SIZE};
use crate::http::admin::Scope;
use crate::http::AppState;
use crate::oauth::authenticate::session_cookie;
use crate::oauth::OAuthError;
use crate::service::audit::{self, AuditFilter, AuditView};
use crate::service::clients::{self, ClientView, CreatedClient, IssuedCredential};
use crate::service::durations::DurationSpec;
use crate::service::personal_keys;
use crate::service::roles::{self, RoleView};
use crate::service::tenants::{self, TenantView};
use crate::service::users::{self, NewUser, UserFilter, UserPatch, UserView};

/// At most this many roles or tenants are offered in a form's list.
const CHOICES: i64 = 500;

pub struct UserRow {
    pub user: UserView,
    pub href: String,
    pub last_login: String,
    /// Whether this row is the signed-in person (who cannot disable or
    /// delete themselves from here).
    pub me: bool,
}

impl UserRow {
    pub fn is_role(&self, role: &str) -> bool {
        self.user.role == role
    }
}

#[derive(Template)]
#[template(path = "console/users.html")]
pub struct UsersPage {
    pub nav: Nav,
    pub rows: Vec<UserRow>,
    pub roles: Vec<RoleView>,
    pub tenants: Vec<TenantView>,
    pub own_tenant: String,
    pub status: String,
    pub can_write: bool,
    pub can_see_keys: bool,
    pub next: Option<String>,
    pub notice: Option<&'static str>,
}

impl UsersPage {
    pub fn is_own(&self, tenant: &str) -> bool {
        self.own_tenant == tenant
    }
}

#[utoipa::path(
    get,
    path = "/console/users",
    tag = "console",
    summary = "The people in reach, with create, edit, setup link and delete (HTML)",
    params(
        ("status" = Option<String>, Query, description = "active or disabled; otherwise both"),
        ("after" = Option<String>, Query, description = "cursor: the page after this user id")
    ),
    responses(crate::http::openapi::ConsolePageAnswers),
    security(())
)]
pub async fn users_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    page(req, state, |person, query, state| async move {
        person.require(Scope::UsersRead)?;
        let status = query
            .get("status")
            .filter(|s| s == "active" || s == "disabled")
            .unwrap_or_default();
        let filter = UserFilter {
            status: Some(status.clone()).filter(|s| !s.is_empty()),
            ..UserFilter::default()
        };
        let actor = person.actor.clone();
        let after = query.get("after");
        let with_choices = person.may(Scope::TenantsRead) && person.may(Scope::UsersWrite);
        let (mut users, roles, tenants) = run(&state, move |conn| {
            let users = users::list(conn, &actor, &filter, PAGE_SIZE + 1, after.as_deref())?;
            let (roles, tenants) = if with_choices {
                (
                    // Only the roles the person may give (no escalation).
                    roles::list(conn, &actor, CHOICES, None)?
                        .into_iter()
                        .filter(|r| crate::service::policy::may_hand_out(&actor, &r.scopes))
                        .collect(),
                    tenants::list(conn, &actor, CHOICES, None)?,
                )
            } else {
                (Vec::new(), Vec::new())
            };
            Ok((users, roles, tenants))
        })
        .await?;
        let next = next_page(&mut users, |last| {
            let mut pairs = vec![("after", last.user_id.as_str())];
            if !status.is_empty() {
                pairs.push(("status", status.as_str()));
            }
            format!(
                "/console/users?{}",
                serde_urlencoded::to_string(&pairs).unwrap_or_default()
            )
        });
        let me = person.user.user_id.to_string();
        Ok(html(
            StatusCode::OK,
            &UsersPage {
                nav: person.nav(Section::Users),
                rows: users
                    .into_iter()
                    .map(|user| UserRow {
                        href: format!("/console/users/{}", segment(&user.user_id)),
                        last_login: shown_time(user.last_login_at.as_deref(), "never"),
                        me: user.user_id == me,
                        user,
                    })
                    .collect(),
                roles,
                tenants,
                own_tenant: person.actor.tenant_id.clone(),
                status,
                can_write: person.may(Scope::UsersWrite),
                can_see_keys: person.may(Scope::ClientsRead),
                next,
                notice: notice_text(&query),
            },
        ))
    })
    .await
}

/// A setup link, shown once, as the credential pages show a secret.
fn setup_link_page(
    person: &Person,
    state: &AppState,
    user: &UserView,
    link: &users::SetupLink,
    title: &str,
) -> ShownOncePage {
    ShownOncePage {
        nav: person.nav(Section::Users),
        title: title.to_string(),
        name: user.name.clone(),
        client_id: user.email.clone(),
        label: "Setup link",
        noun: "setup link",
        value: link.url(&state.issuer),
        expires: None,
        note: Some(format!(
            "It works once, until {}. Send it to the person by a channel you trust.",
            shown_time(Some(&crate::service::rfc3339(link.expires_at)), "")
        )),
        next_href: "/console/users".to_string(),
        next_label: "Back to users",
    }
}

#[utoipa::path(
    post,
    path = "/console/users",
    tag = "console",
    summary = "Create a person from the users page: their one-time setup link is shown this once",
    request_body(content = crate::http::openapi::ConsoleForm, content_type = "application/x-www-form-urlencoded"),
    responses(crate::http::openapi::ConsoleFormAnswers),
    security(())
)]
pub async fn create_user(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let back = "/console/users".to_string();
    action(
        req,
        payload,
        state,
        &[],
        back,
        |person, form, state| async move {
            person.require(Scope::UsersWrite)?;
            let mut fields = Map::new();
            for name in ["email", "name", "role"] {
                fields.insert(
                    name.into(),
                    json!(form.get(name).unwrap_or_default().trim()),
                );
            }
            if let Some(tenant) = field(&form, "tenant_id") {
                fields.insert("tenant_id".into(), Value::String(tenant));
            }
            let body: NewUser = request_from(fields)?;
            let actor = person.actor.clone();
            let (user, link) = run(&state, move |conn| users::create(conn, &actor, body)).await?;
            match link {
                Some(link) => Ok(shown_once(&setup_link_page(
                    &person,
                    &state,
                    &user,
                    &link,
                    "Person created",
                ))),
                None => Ok(done("/console/users", "created")),
            }
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/console/users/{user_id}/{action}",
    tag = "console",
    summary = "A change to one person: edit (name, role, status), setup-link (a new one, shown once) or delete",
    params(
        ("user_id" = String, Path, description = "the person"),
        ("action" = String, Path, description = "edit, setup-link or delete")
    ),
    request_body(content = crate::http::openapi::ConsoleForm, content_type = "application/x-www-form-urlencoded"),
    responses(crate::http::openapi::ConsoleFormAnswers),
    security(())
)]
pub async fn change_user(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (user_id, what) = path.into_inner();
    let back = "/console/users".to_string();
    action(
        req,
        payload,
        state,
        &[],
        back,
        |person, form, state| async move {
            person.require(Scope::UsersWrite)?;
            let actor = person.actor.clone();
            match what.as_str() {
                "edit" => {
                    let mut fields = Map::new();
                    for name in ["name", "role", "status"] {
                        if let Some(value) = field(&form, name) {
                            fields.insert(name.into(), Value::String(value));
                        }
                    }
                    let patch: UserPatch = request_from(fields)?;
                    run(&state, move |conn| {
                        users::update(conn, &actor, &user_id, patch)
                    })
                    .await?;
                    Ok(done("/console/users", "saved"))
                }
                "setup-link" => {
                    let (user, link) = run(&state, move |conn| {
                        let link = users::new_setup_link(conn, &actor, &user_id)?;
                        Ok((users::get(conn, &actor, &user_id)?, link))
                    })
                    .await?;
                    Ok(shown_once(&setup_link_page(
                        &person,
                        &state,
                        &user,
                        &link,
                        "New setup link",
                    )))
                }
                "delete" => {
                    run(&state, move |conn| users::delete(conn, &actor, &user_id)).await?;
                    Ok(done("/console/users", "deleted"))
                }
                _ => Err(OAuthError::not_found("no such change")),
            }
        },
    )
    .await
}

pub struct AuditRow {
    pub event: AuditView,
    pub at: String,
    pub details: String,
}

/// The audit filters, as they stay in the URL.
#[derive(Default)]
pub struct AuditFilters {
    pub action: String,
    pub target: String,
    /// A day, `YYYY-MM-DD`: events from its start (UTC).
    pub since: String,
}

impl AuditFilters {
    fn url(&self, after: Option<&str>) -> String {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for (name, value) in [
            ("action", &self.action),
            ("target", &self.target),
            ("since", &self.since),
        ] {
            if !value.is_empty() {
                pairs.push((name, value));
            }
        }
        if let Some(after) = after {
            pairs.push(("after", after));
        }
        match serde_urlencoded::to_string(&pairs) {
            Ok(query) if !query.is_empty() => format!("/console/audit?{query}"),
            _ => "/console/audit".to_string(),
        }
    }
}

#[derive(Template)]
#[template(path = "console/audit.html")]
pub struct AuditPage {
    pub nav: Nav,
    pub filters: AuditFilters,
    pub rows: Vec<AuditRow>,
    pub next: Option<String>,
    pub paged: bool,
    pub first: String,
}

#[utoipa::path(
    get,
    path = "/console/audit",
    tag = "console",
    summary = "The audit log of the tenants in reach, newest first, with filters (HTML)",
    params(
        ("action" = Option<String>, Query, description = "only this action, say client.revoke"),
        ("target" = Option<String>, Query, description = "only events about this id"),
        ("since" = Option<String>, Query, description = "a day, YYYY-MM-DD: events from its start (UTC)"),
        ("after" = Option<String>, Query, description = "cursor: the page after this event id")
    ),
    responses(crate::http::openapi::ConsolePageAnswers),
    security(())
)]
pub async fn audit_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    page(req, state, |person, query, state| async move {
        person.require(Scope::AuditRead)?;
        let filters = AuditFilters {
            action: query.get("action").unwrap_or_default(),
            target: query.get("target").unwrap_or_default(),
            since: query.get("since").unwrap_or_default(),
        };
        let since = if filters.since.is_empty() {
            None
        } else {
            let day = chrono::NaiveDate::parse_from_str(&filters.since, "%Y-%m-%d")
                .map_err(|_| OAuthError::invalid_request("since must be a day, YYYY-MM-DD"))?;
            Some(format!("{day}T00:00:00Z"))
        };
        let filter = AuditFilter {
            action: Some(filters.action.clone()).filter(|a| !a.is_empty()),
            target: Some(filters.target.clone()).filter(|t| !t.is_empty()),
            since,
        };
        let actor = person.actor.clone();
        let after = query.get("after");
        let paged = after.is_some();
        let mut events = run(&state, move |conn| {
            audit::list(conn, &actor, &filter, PAGE_SIZE + 1, after.as_deref())
        })
        .await?;
        let next = next_page(&mut events, |last| filters.url(Some(&last.id)));
        Ok(html(
            StatusCode::OK,
            &AuditPage {
                nav: person.nav(Section::Audit),
                rows: events
                    .into_iter()
                    .map(|event| AuditRow {
                        at: shown_time(Some(&event.at), ""),
                        details: match &event.details {
                            Value::Object(map) if map.is_empty() => String::new(),
                            other => other.to_string(),
                        },
                        event,
                    })
                    .collect(),
                next,
                paged,
                first: filters.url(None),
                filters,
            },
        ))
    })
    .await
}

pub struct NoticeRow {
    pub notice: crate::service::notices::NoticeView,
    pub created: String,
    pub sent: String,
}

#[derive(Template)]
#[template(path = "console/notices.html")]
pub struct NoticesPage {
    pub nav: Nav,
    pub rows: Vec<NoticeRow>,
    pub next: Option<String>,
    pub paged: bool,
}

#[utoipa::path(
    get,
    path = "/console/notices",
    tag = "console",
    summary = "The expiry notices of the tenants in reach, newest first: to whom, about what, sent or not (HTML)",
    params(("after" = Option<String>, Query, description = "cursor: the page after this notice id")),
    responses(crate::http::openapi::ConsolePageAnswers),
    security(())
)]
pub async fn notices_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    page(req, state, |person, query, state| async move {
        person.require(Scope::AuditRead)?;
        let actor = person.actor.clone();
        let after = query.get("after");
        let paged = after.is_some();
        let mut notices = run(&state, move |conn| {
            crate::service::notices::list(conn, &actor, PAGE_SIZE + 1, after.as_deref())
        })
        .await?;
        let next = next_page(&mut notices, |last| after_url("/console/notices", &last.id));
        Ok(html(
            StatusCode::OK,
            &NoticesPage {
                nav: person.nav(Section::Notices),
                rows: notices
                    .into_iter()
                    .map(|notice| NoticeRow {
                        created: shown_time(Some(&notice.created_at), ""),
                        sent: shown_time(notice.sent_at.as_deref(), "not yet"),
                        notice,
                    })
                    .collect(),
                next,
                paged,
            },
        ))
    })
    .await
}

#[derive(Template)]
#[template(path = "console/profile.html")]
pub struct ProfilePage {
    pub nav: Nav,
    pub user: UserView,
    pub last_login: String,
    pub key: Option<ClientView>,
    pub key_expires: String,
    pub key_last_used: String,
    pub durations: [(&'static str, &'static str); 7],
    pub notice: Option<&'static str>,
}

#[utoipa::path(
    get,
    path = "/console/profile",
    tag = "console",
    summary = "My profile: the signed-in person's details, password change and personal API access key (HTML)",
    params(("notice" = Option<String>, Query, description = "a fixed notice after a change")),
    responses(crate::http::openapi::ConsolePageAnswers),
    security(())
)]
pub async fn profile_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    page(req, state, |person, query, state| async move {
        profile(person, &query, &state).await
    })
    .await
}

async fn profile(
    person: Person,
    query: &PageQuery,
    state: &AppState,
) -> Result<HttpResponse, OAuthError> {
    let user = person.user.clone();
    let key = run(state, move |conn| personal_keys::find(conn, &user)).await?;
    let key = key.map(|k| ClientView::new(&k, state.directory.now()));
    let user = UserView::new(&person.user);
    Ok(html(
        StatusCode::OK,
        &ProfilePage {
            nav: person.nav(Section::Profile),
            last_login: shown_time(user.last_login_at.as_deref(), "never"),
            key_expires: shown_time(key.as_ref().and_then(|k| k.expires_at.as_deref()), "never"),
            key_last_used: shown_time(
                key.as_ref().and_then(|k| k.last_used_at.as_deref()),
                "never",
            ),
            user,
            key,
            durations: DURATIONS,
            notice: notice_text(query),
        },
    ))
}

fn personal_key_page(person: &Person, title: &str, created: CreatedClient) -> ShownOncePage {
    let mut page = ShownOncePage::new(person.nav(Section::Profile), title, created);
    page.next_href = "/console/profile".to_string();
    page.next_label = "Back to my profile";
    page
}

#[utoipa::path(
    get,
    path = "/console/profile/{action}",
    tag = "console",
    summary = "The confirmation before regenerating (key-secret) or deleting (key-delete) the personal API access key (HTML)",
    params(("action" = String, Path, description = "key-secret or key-delete")),
    responses(crate::http::openapi::ConsolePageAnswers),
    security(())
)]
pub async fn profile_confirm_page(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let what = path.into_inner();
    page(req, state, |person, _, _| async move {
        let (title, message, button) = match what.as_str() {
            "key-secret" => (
                "Regenerate your key's secret?",
                "The current secret stops working at once; scripts that use it need the new one, shown once on the next page.",
                "Regenerate secret",
            ),
            "key-delete" => (
                "Delete your personal API access key?",
                "The key and every token it was issued stop working at once. This cannot be undone; you may create a new key later.",
                "Delete key",
            ),
            _ => return Err(OAuthError::not_found("no such page")),
        };
        Ok(html(
            StatusCode::OK,
            &ConfirmPage {
                nav: person.nav(Section::Profile),
                title: title.into(),
                message: message.into(),
                action: format!("/console/profile/{what}"),
                button: button.into(),
                cancel: "/console/profile".into(),
                danger: what == "key-delete",
            },
        ))
    })
    .await
}

#[utoipa::path(
    post,
    path = "/console/profile/{action}",
    tag = "console",
    summary = "A change to the signed-in person's own account: password, key-create, key-secret (both shown once) or key-delete",
    params(("action" = String, Path, description = "password, key-create, key-secret or key-delete")),
    request_body(content = crate::http::openapi::ConsoleForm, content_type = "application/x-www-form-urlencoded"),
    responses(crate::http::openapi::ConsoleFormAnswers),
    security(())
)]
pub async fn change_profile(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let what = path.into_inner();
    let session = session_cookie(req.headers()).map(str::to_string);
    let back = "/console/profile".to_string();
    action(
        req,
        payload,
        state,
        &[],
        back,
        |person, form, state| async move {
            // One's own account needs no scope (API.md 4, "Personal API access key").
            let user = person.user.clone();
            let ip = person.actor.ip.clone();
            match what.as_str() {
                "password" => {
                    let current = form.get("current_password").unwrap_or_default().to_string();
                    let new = form.get("new_password").unwrap_or_default().to_string();
                    if form.get("confirm_password").is_some_and(|c| c != new) {
                        return Err(OAuthError::invalid_request(
                            "the new password and its confirmation differ",
                        ));
                    }
                    run(&state, move |conn| {
                        users::change_password(
                            conn,
                            &user.user_id,
                            session.as_deref(),
                            &current,
                            &new,
                            ip,
                        )
                    })
                    .await?;
                    Ok(done("/console/profile", "password"))
                }
                "key-create" => {
                    let expires_in = field(&form, "expires_in").map(DurationSpec::Named);
                    let (view, secret) = run(&state, move |conn| {
                        personal_keys::create(conn, &user, expires_in.as_ref(), ip)
                    })
                    .await?;
                    Ok(shown_once(&personal_key_page(
                        &person,
                        "Personal API access key created",
                        clients::with_credential(&view, &IssuedCredential::ClientSecret(secret)),
                    )))
                }
                "key-secret" => {
                    let (view, secret) = run(&state, move |conn| {
                        personal_keys::new_secret(conn, &user, ip)
                    })
                    .await?;
                    Ok(shown_once(&personal_key_page(
                        &person,
                        "New personal key secret",
                        clients::with_credential(&view, &IssuedCredential::ClientSecret(secret)),
                    )))
                }
                "key-delete" => {
                    run(&state, move |conn| personal_keys::delete(conn, &user, ip)).await?;
                    Ok(done("/console/profile", "key-deleted"))
                }
                _ => Err(OAuthError::not_found("no such change")),
            }
        },
    )
    .await
}
