//! The console's organisation pages (API.md section 4, "The console"):
//! tenants as a tree, device groups, roles and trusted issuers, each with
//! the changes the admin API offers, through the same service functions and
//! request types.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde_json::{json, Map, Value};

use super::clients::shown_time;
use super::frame::{
    action, after_url, done, field, list_field, next_page, notice_text, page, request_from, run,
    segment, ConfirmPage, Nav, Section,
};
use super::pages::{html, PAGE_SIZE};
use crate::http::admin::Scope;
use crate::http::AppState;
use crate::oauth::form::Form;
use crate::oauth::OAuthError;
use crate::service::device_groups::{self, DeviceGroupView, NewDeviceGroup};
use crate::service::patch::TenantPatch;
use crate::service::roles::{self, NewRole, RolePatch, RoleView};
use crate::service::tenants::{self, TenantView};
use crate::service::trusted_issuers::{self, NewTrustedIssuer, TrustedIssuerView};

/// At most this many tenants, groups or roles are shown on one page.
const SHOWN: i64 = 1000;

/// A tenant in the tree: its depth below the top of the person's reach.
pub struct TreeRow {
    pub tenant: TenantView,
    pub depth: usize,
    pub owner_emails: String,
    pub created: String,
    /// The top of the reach cannot be deleted or moved from here.
    pub top: bool,
}

impl TreeRow {
    /// The indentation class (CSS, no inline style under the CSP).
    pub fn indent(&self) -> usize {
        self.depth.min(6)
    }
}

/// The tenants in depth-first order, children after their parent by name.
fn tree(mut all: Vec<TenantView>) -> Vec<TreeRow> {
    all.sort_by_key(|a| a.name.to_lowercase());
    let ids: std::collections::HashSet<String> = all.iter().map(|t| t.id.clone()).collect();
    let mut rows = Vec::with_capacity(all.len());
    // The tops: tenants whose parent is outside the reach.
    let tops: Vec<TenantView> = all
        .iter()
        .filter(|t| t.parent_id.as_ref().is_none_or(|p| !ids.contains(p)))
        .cloned()
        .collect();
    fn visit(tenant: TenantView, depth: usize, all: &[TenantView], rows: &mut Vec<TreeRow>) {
        let children: Vec<TenantView> = all
            .iter()
            .filter(|t| t.parent_id.as_deref() == Some(tenant.id.as_str()))
            .cloned()
            .collect();
        rows.push(TreeRow {
            owner_emails: tenant.owner_emails.join(", "),
            created: shown_time(Some(&tenant.created_at), ""),
            top: depth == 0,
            tenant,
            depth,
        });
        for child in children {
            visit(child, depth + 1, all, rows);
        }
    }
    for top in tops {
        visit(top, 0, &all, &mut rows);
    }
    rows
}

#[derive(Template)]
#[template(path = "console/tenants.html")]
pub struct TenantsPage {
    pub nav: Nav,
    pub rows: Vec<TreeRow>,
    /// The tree is cut at `SHOWN` tenants; then the page says so.
    pub cut: bool,
    pub can_write: bool,
    pub notice: Option<&'static str>,
}

#[utoipa::path(
    get,
    path = "/console/tenants",
    tag = "console",
    summary = "The tenants in reach, as a tree, with create, rename and delete (HTML)",
    responses(crate::http::openapi::ConsolePageAnswers),
    security(())
)]
pub async fn tenants_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    page(req, state, |person, query, state| async move {
        person.require(Scope::TenantsRead)?;
        let actor = person.actor.clone();
        let all = run(&state, move |conn| tenants::list(conn, &actor, SHOWN, None)).await?;
        Ok(html(
            StatusCode::OK,
            &TenantsPage {
                nav: person.nav(Section::Tenants),
                cut: all.len() as i64 >= SHOWN,
                rows: tree(all),
                can_write: person.may(Scope::TenantsWrite),
                notice: notice_text(&query),
            },
        ))
    })
    .await
}

#[utoipa::path(
    post,
    path = "/console/tenants",
    tag = "console",
    summary = "Create a tenant from the tenants page",
    request_body(content = crate::http::openapi::ConsoleForm, content_type = "application/x-www-form-urlencoded"),
    responses(crate::http::openapi::ConsoleFormAnswers),
    security(())
)]
pub async fn create_tenant(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let back = "/console/tenants".to_string();
    action(
        req,
        payload,
        state,
        &[],
        back,
        |person, form, state| async move {
            person.require(Scope::TenantsWrite)?;
            let actor = person.actor.clone();
            let name = form.get("name").unwrap_or_default().to_string();
            let parent = field(&form, "parent_id");
            let emails = list_field(&form, "owner_emails");
            run(&state, move |conn| {
                tenants::create(conn, &actor, &name, parent.as_deref(), &emails)
            })
            .await?;
            Ok(done("/console/tenants", "created"))
        },
    )
    .await
}

fn tenant_patch(form: &Form) -> Result<TenantPatch, OAuthError> {
    let mut fields = Map::new();
    fields.insert(
        "name".into(),
        json!(form.get("name").unwrap_or_default().trim()),
    );
    fields.insert(
        "owner_emails".into(),
        json!(list_field(form, "owner_emails")),
    );
    if let Some(parent) = field(form, "parent_id") {
        fields.insert("parent_id".into(), Value::String(parent));
    }
    request_from(fields)
}

#[utoipa::path(
    post,
    path = "/console/tenants/{tenant_id}/{action}",
    tag = "console",
    summary = "A change to one tenant from the tenants page: edit (name, owner emails, parent) or delete",
    params(
        ("tenant_id" = String, Path, description = "the tenant"),
        ("action" = String, Path, description = "edit or delete")
    ),
    request_body(content = crate::http::openapi::ConsoleForm, content_type = "application/x-www-form-urlencoded"),
    responses(crate::http::openapi::ConsoleFormAnswers),
    security(())
)]
pub async fn change_tenant(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (id, what) = path.into_inner();
    let back = "/console/tenants".to_string();
    action(
        req,
        payload,
        state,
        &[],
        back,
        |person, form, state| async move {
            person.require(Scope::TenantsWrite)?;
            let actor = person.actor.clone();
            match what.as_str() {
                "edit" => {
                    let patch = tenant_patch(&form)?;
                    run(&state, move |conn| {
                        tenants::update(conn, &actor, &id, patch)
                    })
                    .await?;
                    Ok(done("/console/tenants", "saved"))
                }
                "delete" => {
                    run(&state, move |conn| tenants::delete(conn, &actor, &id)).await?;
                    Ok(done("/console/tenants", "deleted"))
                }
                _ => Err(OAuthError::not_found("no such change")),
            }
        },
    )
    .await
}

pub struct GroupRow {
    pub group: DeviceGroupView,
    pub created: String,
    pub delete_href: String,
}

#[derive(Template)]
#[template(path = "console/device_groups.html")]
pub struct DeviceGroupsPage {
    pub nav: Nav,
    pub rows: Vec<GroupRow>,
    pub tenants: Vec<TenantView>,
    pub own_tenant: String,
    pub can_write: bool,
    pub notice: Option<&'static str>,
    pub next: Option<String>,
    pub paged: bool,
}

impl DeviceGroupsPage {
    pub fn is_own(&self, tenant: &str) -> bool {
        self.own_tenant == tenant
    }
}

#[utoipa::path(
    get,
    path = "/console/device-groups",
    tag = "console",
    summary = "The device groups in reach, 50 a page, with create and delete (HTML)",
    params(("after" = Option<String>, Query, description = "cursor: the page after this device group id")),
    responses(crate::http::openapi::ConsolePageAnswers),
    security(())
)]
pub async fn device_groups_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    page(req, state, |person, query, state| async move {
        person.require(Scope::TenantsRead)?;
        let actor = person.actor.clone();
        let after = query.get("after");
        let paged = after.is_some();
        let (mut groups, tenants) = run(&state, move |conn| {
            Ok((
                device_groups::list(conn, &actor, None, PAGE_SIZE + 1, after.as_deref())?,
                tenants::list(conn, &actor, SHOWN, None)?,
            ))
        })
        .await?;
        let next = next_page(&mut groups, |g| after_url("/console/device-groups", &g.id));
        Ok(html(
            StatusCode::OK,
            &DeviceGroupsPage {
                nav: person.nav(Section::DeviceGroups),
                rows: groups
                    .into_iter()
                    .map(|group| GroupRow {
                        created: shown_time(Some(&group.created_at), ""),
                        delete_href: format!(
                            "/console/device-groups/{}/delete",
                            segment(&group.id)
                        ),
                        group,
                    })
                    .collect(),
                tenants,
                own_tenant: person.actor.tenant_id.clone(),
                can_write: person.may(Scope::TenantsWrite),
                notice: notice_text(&query),
                next,
                paged,
            },
        ))
    })
    .await
}

#[utoipa::path(
    post,
    path = "/console/device-groups",
    tag = "console",
    summary = "Create a device group from the device groups page",
    request_body(content = crate::http::openapi::ConsoleForm, content_type = "application/x-www-form-urlencoded"),
    responses(crate::http::openapi::ConsoleFormAnswers),
    security(())
)]
pub async fn create_device_group(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let back = "/console/device-groups".to_string();
    action(
        req,
        payload,
        state,
        &[],
        back,
        |person, form, state| async move {
            person.require(Scope::TenantsWrite)?;
            let mut fields = Map::new();
            fields.insert(
                "name".into(),
                json!(form.get("name").unwrap_or_default().trim()),
            );
            for name in ["tenant_id", "description"] {
                if let Some(value) = field(&form, name) {
                    fields.insert(name.into(), Value::String(value));
                }
            }
            let body: NewDeviceGroup = request_from(fields)?;
            let actor = person.actor.clone();
            run(&state, move |conn| {
                device_groups::create(conn, &actor, body)
            })
            .await?;
            Ok(done("/console/device-groups", "created"))
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/console/device-groups/{id}/{action}",
    tag = "console",
    summary = "A change to one device group: delete",
    params(
        ("id" = String, Path, description = "the device group"),
        ("action" = String, Path, description = "delete")
    ),
    request_body(content = crate::http::openapi::ConsoleForm, content_type = "application/x-www-form-urlencoded"),
    responses(crate::http::openapi::ConsoleFormAnswers),
    security(())
)]
pub async fn change_device_group(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (id, what) = path.into_inner();
    let back = "/console/device-groups".to_string();
    action(
        req,
        payload,
        state,
        &[],
        back,
        |person, _, state| async move {
            person.require(Scope::TenantsWrite)?;
            if what != "delete" {
                return Err(OAuthError::not_found("no such change"));
            }
            let actor = person.actor.clone();
            run(&state, move |conn| device_groups::delete(conn, &actor, &id)).await?;
            Ok(done("/console/device-groups", "deleted"))
        },
    )
    .await
}

pub struct RoleRow {
    pub role: RoleView,
    pub scopes: String,
    pub href: String,
}

#[derive(Template)]
#[template(path = "console/roles.html")]
pub struct RolesPage {
    pub nav: Nav,
    pub rows: Vec<RoleRow>,
    pub tenants: Vec<TenantView>,
    pub own_tenant: String,
    pub can_write: bool,
    pub notice: Option<&'static str>,
    pub next: Option<String>,
    pub paged: bool,
}

impl RolesPage {
    pub fn is_own(&self, tenant: &str) -> bool {
        self.own_tenant == tenant
    }
}

#[utoipa::path(
    get,
    path = "/console/roles",
    tag = "console",
    summary = "The roles in reach (built-in and custom), 50 a page, with create, edit and delete (HTML)",
    params(("after" = Option<String>, Query, description = "cursor: the page after this role name")),
    responses(crate::http::openapi::ConsolePageAnswers),
    security(())
)]
pub async fn roles_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    page(req, state, |person, query, state| async move {
        person.require(Scope::TenantsRead)?;
        let actor = person.actor.clone();
        let after = query.get("after");
        let paged = after.is_some();
        let (mut roles, tenants) = run(&state, move |conn| {
            Ok((
                roles::list(conn, &actor, PAGE_SIZE + 1, after.as_deref())?,
                tenants::list(conn, &actor, SHOWN, None)?,
            ))
        })
        .await?;
        let next = next_page(&mut roles, |r| after_url("/console/roles", &r.name));
        Ok(html(
            StatusCode::OK,
            &RolesPage {
                nav: person.nav(Section::Roles),
                rows: roles
                    .into_iter()
                    .map(|role| RoleRow {
                        scopes: role.scopes.join(" "),
                        href: format!("/console/roles/{}", segment(&role.name)),
                        role,
                    })
                    .collect(),
                tenants,
                own_tenant: person.actor.tenant_id.clone(),
                can_write: person.may(Scope::TenantsWrite),
                notice: notice_text(&query),
                next,
                paged,
            },
        ))
    })
    .await
}

fn scopes_field(form: &Form) -> Vec<String> {
    form.get("scopes")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[utoipa::path(
    post,
    path = "/console/roles",
    tag = "console",
    summary = "Create a custom role from the roles page",
    request_body(content = crate::http::openapi::ConsoleForm, content_type = "application/x-www-form-urlencoded"),
    responses(crate::http::openapi::ConsoleFormAnswers),
    security(())
)]
pub async fn create_role(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let back = "/console/roles".to_string();
    action(
        req,
        payload,
        state,
        &[],
        back,
        |person, form, state| async move {
            person.require(Scope::TenantsWrite)?;
            let mut fields = Map::new();
            fields.insert(
                "name".into(),
                json!(form.get("name").unwrap_or_default().trim()),
            );
            fields.insert("scopes".into(), json!(scopes_field(&form)));
            if let Some(tenant) = field(&form, "tenant_id") {
                fields.insert("tenant_id".into(), Value::String(tenant));
            }
            let body: NewRole = request_from(fields)?;
            let actor = person.actor.clone();
            run(&state, move |conn| roles::create(conn, &actor, body)).await?;
            Ok(done("/console/roles", "created"))
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/console/roles/{name}/{action}",
    tag = "console",
    summary = "A change to one custom role: edit (its scopes) or delete",
    params(
        ("name" = String, Path, description = "the role"),
        ("action" = String, Path, description = "edit or delete")
    ),
    request_body(content = crate::http::openapi::ConsoleForm, content_type = "application/x-www-form-urlencoded"),
    responses(crate::http::openapi::ConsoleFormAnswers),
    security(())
)]
pub async fn change_role(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (name, what) = path.into_inner();
    let back = "/console/roles".to_string();
    action(
        req,
        payload,
        state,
        &[],
        back,
        |person, form, state| async move {
            person.require(Scope::TenantsWrite)?;
            let actor = person.actor.clone();
            match what.as_str() {
                "edit" => {
                    let mut fields = Map::new();
                    fields.insert("scopes".into(), json!(scopes_field(&form)));
                    let patch: RolePatch = request_from(fields)?;
                    run(&state, move |conn| {
                        roles::update(conn, &actor, &name, patch)
                    })
                    .await?;
                    Ok(done("/console/roles", "saved"))
                }
                "delete" => {
                    run(&state, move |conn| roles::delete(conn, &actor, &name)).await?;
                    Ok(done("/console/roles", "deleted"))
                }
                _ => Err(OAuthError::not_found("no such change")),
            }
        },
    )
    .await
}

pub struct IssuerRow {
    pub issuer: TrustedIssuerView,
    pub created: String,
    pub delete_href: String,
}

#[derive(Template)]
#[template(path = "console/trusted_issuers.html")]
pub struct TrustedIssuersPage {
    pub nav: Nav,
    pub rows: Vec<IssuerRow>,
    pub tenants: Vec<TenantView>,
    pub own_tenant: String,
    pub can_write: bool,
    pub notice: Option<&'static str>,
    pub next: Option<String>,
    pub paged: bool,
}

impl TrustedIssuersPage {
    pub fn is_own(&self, tenant: &str) -> bool {
        self.own_tenant == tenant
    }
}

#[utoipa::path(
    get,
    path = "/console/trusted-issuers",
    tag = "console",
    summary = "The trusted issuers in reach (workload identity federation), 50 a page, with create and delete (HTML)",
    params(("after" = Option<String>, Query, description = "cursor: the page after this trusted issuer id")),
    responses(crate::http::openapi::ConsolePageAnswers),
    security(())
)]
pub async fn trusted_issuers_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    page(req, state, |person, query, state| async move {
        person.require(Scope::TenantsRead)?;
        let actor = person.actor.clone();
        let after = query.get("after");
        let paged = after.is_some();
        let (mut issuers, tenants) = run(&state, move |conn| {
            Ok((
                trusted_issuers::list(conn, &actor, PAGE_SIZE + 1, after.as_deref())?,
                tenants::list(conn, &actor, SHOWN, None)?,
            ))
        })
        .await?;
        let next = next_page(&mut issuers, |i| {
            after_url("/console/trusted-issuers", &i.id)
        });
        Ok(html(
            StatusCode::OK,
            &TrustedIssuersPage {
                nav: person.nav(Section::TrustedIssuers),
                rows: issuers
                    .into_iter()
                    .map(|issuer| IssuerRow {
                        created: shown_time(Some(&issuer.created_at), ""),
                        delete_href: format!(
                            "/console/trusted-issuers/{}/delete",
                            segment(&issuer.id)
                        ),
                        issuer,
                    })
                    .collect(),
                tenants,
                own_tenant: person.actor.tenant_id.clone(),
                can_write: person.may(Scope::TenantsWrite),
                notice: notice_text(&query),
                next,
                paged,
            },
        ))
    })
    .await
}

#[utoipa::path(
    post,
    path = "/console/trusted-issuers",
    tag = "console",
    summary = "Trust an issuer from the trusted issuers page; its keys are fetched first",
    request_body(content = crate::http::openapi::ConsoleForm, content_type = "application/x-www-form-urlencoded"),
    responses(crate::http::openapi::ConsoleFormAnswers),
    security(())
)]
pub async fn create_trusted_issuer(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let back = "/console/trusted-issuers".to_string();
    action(
        req,
        payload,
        state,
        &[],
        back,
        |person, form, state| async move {
            person.require(Scope::TenantsWrite)?;
            let mut fields = Map::new();
            fields.insert(
                "issuer".into(),
                json!(form.get("issuer").unwrap_or_default().trim()),
            );
            for name in ["jwks_uri", "tenant_id", "description"] {
                if let Some(value) = field(&form, name) {
                    fields.insert(name.into(), Value::String(value));
                }
            }
            let body: NewTrustedIssuer = request_from(fields)?;
            // The keys first, off-thread and outside the transaction, as the
            // admin API does: an issuer whose keys cannot be had is refused.
            crate::http::admin::trusted_issuers::check_keys(&state, &person.actor, &body).await?;
            let actor = person.actor.clone();
            run(&state, move |conn| {
                trusted_issuers::create(conn, &actor, body)
            })
            .await?;
            Ok(done("/console/trusted-issuers", "created"))
        },
    )
    .await
}

#[utoipa::path(
    get,
    path = "/console/trusted-issuers/{id}/{action}",
    tag = "console",
    summary = "The confirmation naming a trusted issuer before it is deleted (HTML)",
    params(
        ("id" = String, Path, description = "the trusted issuer"),
        ("action" = String, Path, description = "delete")
    ),
    responses(crate::http::openapi::ConsolePageAnswers),
    security(())
)]
pub async fn trusted_issuer_form_page(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (id, what) = path.into_inner();
    page(req, state, |person, _, state| async move {
        if what != "delete" {
            return Err(OAuthError::not_found("no such page"));
        }
        person.require(Scope::TenantsWrite)?;
        let actor = person.actor.clone();
        let issuer = run(&state, move |conn| trusted_issuers::get(conn, &actor, &id)).await?;
        Ok(html(
            StatusCode::OK,
            &ConfirmPage {
                nav: person.nav(Section::TrustedIssuers),
                title: format!("Stop trusting {}?", issuer.issuer),
                message: format!(
                    "Tokens of {} stop being accepted as client assertions for tenant {} and below. While a client still names it in its federated subjects, it cannot be removed.",
                    issuer.issuer, issuer.tenant_id
                ),
                action: format!("/console/trusted-issuers/{}/delete", segment(&issuer.id)),
                button: "Stop trusting".into(),
                cancel: "/console/trusted-issuers".into(),
                danger: true,
            },
        ))
    })
    .await
}

#[utoipa::path(
    post,
    path = "/console/trusted-issuers/{id}/{action}",
    tag = "console",
    summary = "A change to one trusted issuer: delete",
    params(
        ("id" = String, Path, description = "the trusted issuer"),
        ("action" = String, Path, description = "delete")
    ),
    request_body(content = crate::http::openapi::ConsoleForm, content_type = "application/x-www-form-urlencoded"),
    responses(crate::http::openapi::ConsoleFormAnswers),
    security(())
)]
pub async fn change_trusted_issuer(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (id, what) = path.into_inner();
    let back = "/console/trusted-issuers".to_string();
    action(
        req,
        payload,
        state,
        &[],
        back,
        |person, _, state| async move {
            person.require(Scope::TenantsWrite)?;
            if what != "delete" {
                return Err(OAuthError::not_found("no such change"));
            }
            let actor = person.actor.clone();
            run(&state, move |conn| {
                trusted_issuers::delete(conn, &actor, &id)
            })
            .await?;
            Ok(done("/console/trusted-issuers", "deleted"))
        },
    )
    .await
}
