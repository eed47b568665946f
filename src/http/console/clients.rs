//! The console's client pages (API.md section 4, "The console"): the two
//! lists (client credentials and API tokens), create with the credential
//! shown once, details, edit, disable and enable, revoke with a
//! confirmation, delete, new secret and reissue. Every form calls the
//! service function the admin API endpoint calls, with the body read by the
//! same request type, so the rules are the API's.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde_json::{json, Map, Value};

use super::frame::{
    action, done, field, list_field, next_page, notice_text, number_field, page, request_from, run,
    segment, ConfirmPage, Nav, Person, Section,
};
use super::pages::{html, PageQuery, EXPIRING_SOON, PAGE_SIZE};
use crate::domain::FederatedSubject;
use crate::http::admin::clients::check_jwks_uri;
use crate::http::admin::Scope;
use crate::http::AppState;
use crate::oauth::form::Form;
use crate::oauth::OAuthError;
use crate::service::clients::{
    self, ClientFilter, ClientPatch, ClientView, CreatedClient, IssuedCredential, NewClient,
    StatusChange, KIND_API_TOKEN, KIND_CLIENT_CREDENTIALS,
};
use crate::service::device_groups::{self, DeviceGroupView};
use crate::service::roles::{self, RoleView};
use crate::service::tenants::{self, TenantView};

/// How long a time is shown: UTC, to the minute.
pub fn shown_time(rfc3339: Option<&str>, none: &str) -> String {
    match rfc3339.and_then(timestamp) {
        Some(ts) => chrono::DateTime::from_timestamp(ts, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default(),
        None => none.to_string(),
    }
}

fn timestamp(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp())
}

/// "in 3 days" when the client is active and expires within 14 days.
fn expires_soon(view: &ClientView, now: i64) -> Option<String> {
    let left = view.expires_at.as_deref().and_then(timestamp)? - now;
    if view.status != "active" || left <= 0 || left > EXPIRING_SOON {
        return None;
    }
    let days = (left + 86_399) / 86_400;
    Some(match days {
        1 if left < 86_400 => "in less than a day".to_string(),
        1 => "in 1 day".to_string(),
        n => format!("in {n} days"),
    })
}

/// One client in a list, formatted.
pub struct Row {
    pub href: String,
    pub name: String,
    pub client_id: String,
    pub role: String,
    pub tenant_id: String,
    pub device_group: String,
    pub status: String,
    pub expires: String,
    pub expires_soon: Option<String>,
    pub last_used: String,
    pub personal: bool,
}

impl Row {
    fn new(view: ClientView, now: i64) -> Row {
        Row {
            href: format!("/console/clients/{}", segment(&view.client_id)),
            expires: shown_time(view.expires_at.as_deref(), "never"),
            expires_soon: expires_soon(&view, now),
            last_used: shown_time(view.last_used_at.as_deref(), "never"),
            personal: view.user_id.is_some(),
            device_group: view.device_group_id.clone().unwrap_or_default(),
            name: view.name,
            client_id: view.client_id,
            role: view.role,
            tenant_id: view.tenant_id,
            status: view.status,
        }
    }
}

/// Which of the two lists.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ClientCredentials,
    ApiToken,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::ClientCredentials => KIND_CLIENT_CREDENTIALS,
            Kind::ApiToken => KIND_API_TOKEN,
        }
    }

    fn parse(kind: &str) -> Kind {
        if kind == KIND_API_TOKEN {
            Kind::ApiToken
        } else {
            Kind::ClientCredentials
        }
    }

    fn list_href(self) -> &'static str {
        match self {
            Kind::ClientCredentials => "/console",
            Kind::ApiToken => "/console/tokens",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Kind::ClientCredentials => "Client credentials",
            Kind::ApiToken => "API tokens",
        }
    }

    pub fn one(self) -> &'static str {
        match self {
            Kind::ClientCredentials => "client credential",
            Kind::ApiToken => "API token",
        }
    }

    pub fn is_token(&self) -> bool {
        *self == Kind::ApiToken
    }
}

/// The filters of a list, as they stay in the URL.
#[derive(Default)]
pub struct Filters {
    /// "", active, disabled, expired or revoked.
    pub status: String,
    pub role: String,
    pub tenant_id: String,
    pub show_revoked: bool,
    /// Only this person's personal API access key (from the users page).
    pub user_id: String,
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
            tenant_id: query.get("tenant_id").unwrap_or_default(),
            show_revoked: query.get("show_revoked").is_some_and(|v| v != "0"),
            user_id: query.get("user_id").unwrap_or_default(),
        }
    }

    fn service_filter(&self, kind: Kind) -> ClientFilter {
        let status = if !self.status.is_empty() {
            Some(self.status.clone())
        } else if self.show_revoked {
            Some("all".to_string())
        } else {
            None
        };
        ClientFilter {
            status,
            kind: Some(kind.as_str().to_string()),
            role: Some(self.role.clone()).filter(|r| !r.is_empty()),
            tenant_id: Some(self.tenant_id.clone()).filter(|t| !t.is_empty()),
            user_id: Some(self.user_id.clone()).filter(|u| !u.is_empty()),
        }
    }

    /// The list's URL with the filters and `after`.
    fn url(&self, base: &str, after: Option<&str>) -> String {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        if !self.status.is_empty() {
            pairs.push(("status", &self.status));
        }
        if !self.role.is_empty() {
            pairs.push(("role", &self.role));
        }
        if !self.tenant_id.is_empty() {
            pairs.push(("tenant_id", &self.tenant_id));
        }
        if self.show_revoked {
            pairs.push(("show_revoked", "1"));
        }
        if !self.user_id.is_empty() {
            pairs.push(("user_id", &self.user_id));
        }
        if let Some(after) = after {
            pairs.push(("after", after));
        }
        match serde_urlencoded::to_string(&pairs) {
            Ok(query) if !query.is_empty() => format!("{base}?{query}"),
            _ => base.to_string(),
        }
    }

    pub fn is_status(&self, status: &&str) -> bool {
        self.status == *status
    }

    pub fn statuses(&self) -> [&'static str; 4] {
        Self::STATUSES
    }
}

/// One page of a list.
pub struct Listing {
    pub rows: Vec<Row>,
    pub next: Option<String>,
    /// Whether this is a later page (a link back to the first).
    pub paged: bool,
    pub first: String,
}

#[derive(Template)]
#[template(path = "console/clients.html")]
pub struct ListPage {
    pub nav: Nav,
    pub kind: Kind,
    pub action: &'static str,
    pub filters: Filters,
    pub listing: Listing,
    pub can_create: bool,
    pub notice: Option<&'static str>,
}

#[utoipa::path(
    get,
    path = "/console",
    tag = "console",
    summary = "The console's client credentials list (HTML); without a live session, 303 to the sign-in page",
    params(
        ("status" = Option<String>, Query, description = "active, disabled, expired or revoked; otherwise everything but revoked"),
        ("role" = Option<String>, Query, description = "only this role"),
        ("tenant_id" = Option<String>, Query, description = "only this tenant's"),
        ("show_revoked" = Option<String>, Query, description = "1: revoked clients too"),
        ("user_id" = Option<String>, Query, description = "only this person's personal API access key"),
        ("after" = Option<String>, Query, description = "cursor: the page after this client id")
    ),
    responses(crate::http::openapi::ConsolePageAnswers),
    // Open to all: without the session cookie a browser is sent to sign in
    // (303) rather than refused (401), so the session is not a requirement
    // of the request in the document's sense.
    security(())
)]
pub async fn clients_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    page(req, state, |person, query, state| {
        list_page(person, query, state, Kind::ClientCredentials)
    })
    .await
}

#[utoipa::path(
    get,
    path = "/console/tokens",
    tag = "console",
    summary = "The console's API tokens list (HTML)",
    params(
        ("status" = Option<String>, Query, description = "active, disabled, expired or revoked; otherwise everything but revoked"),
        ("role" = Option<String>, Query, description = "only this role"),
        ("tenant_id" = Option<String>, Query, description = "only this tenant's"),
        ("show_revoked" = Option<String>, Query, description = "1: revoked tokens too"),
        ("after" = Option<String>, Query, description = "cursor: the page after this client id")
    ),
    responses(crate::http::openapi::ConsolePageAnswers),
    security(())
)]
pub async fn tokens_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    page(req, state, |person, query, state| {
        list_page(person, query, state, Kind::ApiToken)
    })
    .await
}

async fn list_page(
    person: Person,
    query: PageQuery,
    state: web::Data<AppState>,
    kind: Kind,
) -> Result<HttpResponse, OAuthError> {
    // `/console` is where signing in lands: a person who may not read
    // clients goes on to the first section they may read.
    if kind == Kind::ClientCredentials && !person.may(Scope::ClientsRead) {
        let first = person.nav(Section::Clients).links.first().map(|l| l.href);
        return Ok(super::see_other(first.unwrap_or("/console/profile")).finish());
    }
    person.require(Scope::ClientsRead)?;
    let filters = Filters::from_query(&query);
    let (actor, filter, after) = (
        person.actor.clone(),
        filters.service_filter(kind),
        query.get("after"),
    );
    let paged = after.is_some();
    let mut views = run(&state, move |conn| {
        clients::list(conn, &actor, &filter, PAGE_SIZE + 1, after.as_deref())
    })
    .await?;
    let next = next_page(&mut views, |last| {
        filters.url(kind.list_href(), Some(&last.client_id))
    });
    let now = state.directory.now();
    let section = if kind.is_token() {
        Section::Tokens
    } else {
        Section::Clients
    };
    Ok(html(
        StatusCode::OK,
        &ListPage {
            nav: person.nav(section),
            kind,
            action: kind.list_href(),
            listing: Listing {
                rows: views.into_iter().map(|v| Row::new(v, now)).collect(),
                next,
                paged,
                first: filters.url(kind.list_href(), None),
            },
            filters,
            can_create: person.may(Scope::ClientsWrite),
            notice: notice_text(&query),
        },
    ))
}

/// What the create and edit forms offer to choose from: the roles, tenants
/// and device groups in reach, when the person may read them (otherwise the
/// fields are typed).
pub struct Choices {
    pub roles: Vec<RoleView>,
    pub tenants: Vec<TenantView>,
    pub device_groups: Vec<DeviceGroupView>,
}

/// At most this many of each are offered in a form's list.
const CHOICES: i64 = 500;

async fn choices(person: &Person, state: &AppState) -> Result<Choices, OAuthError> {
    if !person.may(Scope::TenantsRead) {
        return Ok(Choices {
            roles: Vec::new(),
            tenants: Vec::new(),
            device_groups: Vec::new(),
        });
    }
    let actor = person.actor.clone();
    run(state, move |conn| {
        Ok(Choices {
            // Only the roles the person may give (no escalation, API.md 3).
            roles: roles::list(conn, &actor, CHOICES, None)?
                .into_iter()
                .filter(|r| crate::service::policy::may_hand_out(&actor, &r.scopes))
                .collect(),
            tenants: tenants::list(conn, &actor, CHOICES, None)?,
            device_groups: device_groups::list(conn, &actor, None, CHOICES, None)?,
        })
    })
    .await
}

/// The values of the create form, kept when it comes back with an error.
#[derive(Default)]
pub struct Draft {
    pub name: String,
    pub description: String,
    pub role: String,
    pub tenant_id: String,
    pub device_group_id: String,
    pub owner: String,
    pub owner_email: String,
    pub expires_in: String,
    pub can_renew: bool,
    pub allowed_ips: String,
    pub access_token_ttl: String,
    pub token_lifetime: String,
    pub scopes: String,
    pub audience: String,
    pub expires_on: String,
    pub metadata: String,
    pub auth_method: String,
    pub jwks: String,
    pub jwks_uri: String,
    pub federated_subjects: String,
}

impl Draft {
    fn from_form(form: &Form) -> Draft {
        let text = |name: &str| form.get(name).unwrap_or_default().to_string();
        Draft {
            name: text("name"),
            description: text("description"),
            role: text("role"),
            tenant_id: text("tenant_id"),
            device_group_id: text("device_group_id"),
            owner: text("owner"),
            owner_email: text("owner_email"),
            expires_in: text("expires_in"),
            can_renew: form.get("can_renew").is_some(),
            allowed_ips: text("allowed_ips"),
            access_token_ttl: text("access_token_ttl"),
            token_lifetime: text("token_lifetime"),
            scopes: text("scopes"),
            audience: text("audience"),
            expires_on: text("expires_on"),
            metadata: text("metadata"),
            auth_method: text("token_endpoint_auth_method"),
            jwks: text("jwks"),
            jwks_uri: text("jwks_uri"),
            federated_subjects: text("federated_subjects"),
        }
    }

    pub fn is_method(&self, method: &&str) -> bool {
        self.auth_method == *method
    }

    pub fn is_role(&self, role: &str) -> bool {
        self.role == role
    }

    pub fn is_tenant(&self, tenant: &str) -> bool {
        self.tenant_id == tenant
    }

    pub fn is_group(&self, group: &str) -> bool {
        self.device_group_id == group
    }

    pub fn is_expiry(&self, expiry: &&str) -> bool {
        self.expires_in == *expiry
    }

    pub fn is_lifetime(&self, lifetime: &&str) -> bool {
        self.token_lifetime == *lifetime
    }
}

/// The durations the forms offer (API.md: `7d`, `14d`, `1m`, `2m`, `3m`,
/// `6m`, `1y`), with their labels.
pub const DURATIONS: [(&str, &str); 7] = [
    ("7d", "7 days"),
    ("14d", "14 days"),
    ("1m", "1 month"),
    ("2m", "2 months"),
    ("3m", "3 months"),
    ("6m", "6 months"),
    ("1y", "1 year"),
];

/// The ways a client may authenticate (API.md section 3, "Clients"), as
/// the create form offers them; the first is the default.
pub const AUTH_METHODS: [(&str, &str); 3] = [
    (
        "client_secret_basic",
        "Client secret, HTTP Basic (client_secret_basic)",
    ),
    (
        "client_secret_post",
        "Client secret, in the form body (client_secret_post)",
    ),
    (
        "private_key_jwt",
        "Signed client assertions (private_key_jwt)",
    ),
];

/// A method as people read it: its label, or the name itself.
fn method_label(method: &str) -> String {
    AUTH_METHODS
        .iter()
        .find(|(name, _)| *name == method)
        .map_or_else(|| method.to_string(), |(_, label)| label.to_string())
}

#[derive(Template)]
#[template(path = "console/client_new.html")]
pub struct NewPage {
    pub nav: Nav,
    pub kind: Kind,
    pub choices: Choices,
    pub draft: Draft,
    pub error: Option<String>,
    pub durations: [(&'static str, &'static str); 7],
    pub methods: [(&'static str, &'static str); 3],
}

#[utoipa::path(
    get,
    path = "/console/clients/new",
    tag = "console",
    summary = "The console's create form for a client or an API token (HTML)",
    params(("kind" = Option<String>, Query, description = "api_token, or client_credentials (the default)")),
    responses(crate::http::openapi::ConsolePageAnswers),
    security(())
)]
pub async fn new_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    page(req, state, |person, query, state| async move {
        person.require(Scope::ClientsWrite)?;
        let kind = Kind::parse(&query.get("kind").unwrap_or_default());
        let choices = choices(&person, &state).await?;
        let draft = Draft {
            tenant_id: person.actor.tenant_id.clone(),
            ..Draft::default()
        };
        Ok(html(
            StatusCode::OK,
            &NewPage {
                nav: person.nav(section_of(kind)),
                kind,
                choices,
                draft,
                error: None,
                durations: DURATIONS,
                methods: AUTH_METHODS,
            },
        ))
    })
    .await
}

fn section_of(kind: Kind) -> Section {
    if kind.is_token() {
        Section::Tokens
    } else {
        Section::Clients
    }
}

/// The form's "expires on" day as `expires_at`: the start of that day, UTC.
fn expires_on(form: &Form) -> Result<Option<String>, OAuthError> {
    match field(form, "expires_on") {
        None => Ok(None),
        Some(day) => chrono::NaiveDate::parse_from_str(&day, "%Y-%m-%d")
            .map(|day| Some(format!("{day}T00:00:00Z")))
            .map_err(|_| OAuthError::invalid_request("Expires on must be a day, YYYY-MM-DD")),
    }
}

/// The metadata textarea: a JSON object (SAFEQ Cloud's key type and flags,
/// say), or nothing.
fn metadata_field(form: &Form) -> Result<Option<Value>, OAuthError> {
    match field(form, "metadata") {
        None => Ok(None),
        Some(text) => match serde_json::from_str::<Value>(&text) {
            Ok(value @ Value::Object(_)) => Ok(Some(value)),
            _ => Err(OAuthError::invalid_request(
                "Metadata must be a JSON object, such as {\"type\": \"embedded\"}",
            )),
        },
    }
}

/// The JWK Set textarea: JSON, or nothing. What the set holds is the
/// service's to judge, as for the admin API.
fn jwks_field(form: &Form) -> Result<Option<Value>, OAuthError> {
    match field(form, "jwks") {
        None => Ok(None),
        Some(text) => serde_json::from_str::<Value>(&text).map(Some).map_err(|_| {
            OAuthError::invalid_request(
                "JWK Set must be JSON, such as {\"keys\": [{\"kty\": \"OKP\", ...}]}",
            )
        }),
    }
}

/// The federated subjects textarea: one "issuer subject" a line, split at
/// the first whitespace (issuers are URLs without spaces; subjects such as
/// `repo:acme/app:ref:refs/heads/main` keep their colons).
fn subjects_field(form: &Form) -> Result<Vec<FederatedSubject>, OAuthError> {
    form.get("federated_subjects")
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| match line.split_once(char::is_whitespace) {
            Some((issuer, subject)) if !subject.trim().is_empty() => Ok(FederatedSubject {
                issuer: issuer.to_string(),
                subject: subject.trim().to_string(),
            }),
            _ => Err(OAuthError::invalid_request(format!(
                "Federated subjects: each line is an issuer, a space and a subject, not {line:?}"
            ))),
        })
        .collect()
}

/// Subjects as the textarea shows them.
fn subjects_text(subjects: &[FederatedSubject]) -> String {
    subjects
        .iter()
        .map(|s| format!("{} {}", s.issuer, s.subject))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A JWK Set as the textarea shows it: pretty JSON, or nothing.
fn jwks_text(jwks: Option<&Value>) -> String {
    jwks.map(|set| serde_json::to_string_pretty(set).unwrap_or_default())
        .unwrap_or_default()
}

/// The create form as the admin API's `NewClient`.
fn new_client(form: &Form, kind: Kind) -> Result<NewClient, OAuthError> {
    let mut fields = Map::new();
    fields.insert("kind".into(), json!(kind.as_str()));
    for name in [
        "name",
        "description",
        "role",
        "tenant_id",
        "device_group_id",
        "owner",
        "owner_email",
        "expires_in",
        "token_lifetime",
    ] {
        if let Some(value) = field(form, name) {
            fields.insert(name.into(), Value::String(value));
        }
    }
    // A name is required; an empty one is the service's 400, not serde's.
    fields.entry("name").or_insert_with(|| json!(""));
    fields.entry("role").or_insert_with(|| json!(""));
    fields.insert("can_renew".into(), json!(form.get("can_renew").is_some()));
    for name in ["allowed_ips", "audience"] {
        let list = list_field(form, name);
        if !list.is_empty() {
            fields.insert(name.into(), json!(list));
        }
    }
    let scopes: Vec<String> = form
        .get("scopes")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if !scopes.is_empty() {
        fields.insert("scopes".into(), json!(scopes));
    }
    if let Some(ttl) = number_field(form, "access_token_ttl", "Access token lifetime")? {
        fields.insert("access_token_ttl".into(), json!(ttl));
    }
    if let Some(at) = expires_on(form)? {
        fields.insert("expires_at".into(), json!(at));
    }
    if let Some(metadata) = metadata_field(form)? {
        fields.insert("metadata".into(), metadata);
    }
    // How it authenticates: for client credentials only (an API token is
    // its own credential), and the service's rules decide what goes together.
    if kind == Kind::ClientCredentials {
        if let Some(method) = field(form, "token_endpoint_auth_method") {
            fields.insert("token_endpoint_auth_method".into(), Value::String(method));
        }
        if let Some(jwks) = jwks_field(form)? {
            fields.insert("jwks".into(), jwks);
        }
        if let Some(uri) = field(form, "jwks_uri") {
            fields.insert("jwks_uri".into(), Value::String(uri));
        }
        let subjects = subjects_field(form)?;
        if !subjects.is_empty() {
            fields.insert("federated_subjects".into(), json!(subjects));
        }
    }
    request_from(fields)
}

/// The page that shows a secret or token this once.
#[derive(Template)]
#[template(path = "console/shown_once.html")]
pub struct ShownOncePage {
    pub nav: Nav,
    pub title: String,
    pub name: String,
    pub client_id: String,
    pub label: &'static str,
    /// The label within a sentence ("client secret", "API token").
    pub noun: &'static str,
    pub value: String,
    pub expires: Option<String>,
    /// A sentence under the credential (the grace of the old secret, say).
    pub note: Option<String>,
    pub next_href: String,
    pub next_label: &'static str,
}

impl ShownOncePage {
    pub fn new(nav: Nav, title: &str, created: CreatedClient) -> ShownOncePage {
        let (label, noun, value) = match (created.client_secret, created.token) {
            (Some(secret), _) => ("Client secret", "client secret", secret),
            (None, Some(token)) => ("API token", "API token", token),
            (None, None) => ("Credential", "credential", String::new()),
        };
        ShownOncePage {
            nav,
            title: title.to_string(),
            next_href: format!("/console/clients/{}", segment(&created.client.client_id)),
            next_label: "Done",
            name: created.client.name,
            client_id: created.client.client_id,
            label,
            noun,
            value,
            expires: created
                .token_expires_at
                .as_deref()
                .map(|at| shown_time(Some(at), "")),
            note: None,
        }
    }
}

/// Answers a credential shown once: never cached, never in a URL.
pub fn shown_once(page: &ShownOncePage) -> HttpResponse {
    html(StatusCode::OK, page)
}

#[utoipa::path(
    post,
    path = "/console/clients",
    tag = "console",
    summary = "The create form's target: the new client's secret or token, shown this once (HTML)",
    request_body(content = crate::http::openapi::ConsoleForm, content_type = "application/x-www-form-urlencoded"),
    responses(crate::http::openapi::ConsoleFormAnswers),
    security(())
)]
pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let back = "/console/clients/new".to_string();
    action(
        req,
        payload,
        state,
        &[],
        back,
        |person, form, state| async move {
            person.require(Scope::ClientsWrite)?;
            let kind = Kind::parse(form.get("kind").unwrap_or_default());
            let result = match new_client(&form, kind) {
                Ok(body) => {
                    // A JWK Set URL is fetched first, off-thread, as the
                    // admin API does; a failure is the form again, saying why.
                    match check_jwks_uri(&state, body.jwks_uri.as_deref()).await {
                        Ok(()) => {
                            let actor = person.actor.clone();
                            run(&state, move |conn| clients::register(conn, &actor, body)).await
                        }
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            match result {
                // Its keys are its credential: nothing to show once.
                Ok((view, IssuedCredential::Nothing)) => Ok(done(
                    &format!("/console/clients/{}", segment(&view.client_id)),
                    "created-keys",
                )),
                Ok((view, credential)) => Ok(shown_once(&ShownOncePage::new(
                    person.nav(section_of(kind)),
                    &format!("{} created", capitalised(kind.one())),
                    clients::with_credential(&view, &credential),
                ))),
                // A mistake in the form: the form again, as filled in, saying what.
                Err(e)
                    if e.status.is_client_error() && e.status != StatusCode::TOO_MANY_REQUESTS =>
                {
                    let choices = choices(&person, &state).await?;
                    let mut answer = html(
                        StatusCode::OK,
                        &NewPage {
                            nav: person.nav(section_of(kind)),
                            kind,
                            choices,
                            draft: Draft::from_form(&form),
                            error: Some(e.description.clone()),
                            durations: DURATIONS,
                            methods: AUTH_METHODS,
                        },
                    );
                    *answer.status_mut() = e.status;
                    Ok(answer)
                }
                Err(e) => Err(e),
            }
        },
    )
    .await
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// What the details page offers the person, from their scopes and the
/// client's state; the server checks each again when the form comes.
pub struct Offers {
    pub edit: bool,
    pub disable: bool,
    pub enable: bool,
    pub revoke: bool,
    pub delete: bool,
    pub new_secret: bool,
    pub reissue: bool,
}

impl Offers {
    fn for_client(person: &Person, view: &ClientView) -> Offers {
        let write = person.may(Scope::ClientsWrite) && view.status != "revoked";
        let personal = view.user_id.is_some();
        let own_key = view.user_id.as_deref() == Some(person.user.user_id.as_ref());
        let token = view.kind == KIND_API_TOKEN;
        // A private_key_jwt client has no secret to renew.
        let keys_only = view.token_endpoint_auth_method == "private_key_jwt";
        Offers {
            // A personal key follows its user: only its user renews its
            // secret (in My profile); other admins may disable or delete it.
            edit: write && !personal,
            disable: write && view.status != "disabled",
            enable: write && view.status == "disabled",
            revoke: write && !personal,
            delete: person.may(Scope::ClientsDelete) && (view.status != "active" || personal),
            new_secret: write && !token && !keys_only && (!personal || own_key),
            reissue: write && token,
        }
    }

    pub fn any_change(&self) -> bool {
        self.edit || self.disable || self.enable || self.revoke || self.new_secret || self.reissue
    }
}

/// One labelled value of the details page.
pub struct Fact {
    pub label: &'static str,
    pub value: String,
    pub code: bool,
}

#[derive(Template)]
#[template(path = "console/client.html")]
pub struct DetailsPage {
    pub nav: Nav,
    pub view: ClientView,
    pub kind: Kind,
    pub href: String,
    pub facts: Vec<Fact>,
    pub expires_soon: Option<String>,
    pub offers: Offers,
    pub notice: Option<&'static str>,
    pub list_href: &'static str,
    pub graces: [(&'static str, &'static str); 4],
    /// An API token client's issued strings (never their values).
    pub tokens: Vec<IssuedRow>,
}

/// One issued API token string, as the details page lists it.
pub struct IssuedRow {
    pub prefix: String,
    pub issued: String,
    pub expires: String,
    pub revoked: Option<String>,
}

/// The grace periods the new-secret form offers, in seconds.
const GRACES: [(&str, &str); 4] = [
    ("0", "None: the old secret stops now"),
    ("3600", "1 hour"),
    ("86400", "1 day"),
    ("604800", "7 days"),
];

fn facts(view: &ClientView) -> Vec<Fact> {
    let text = |label, value: String| Fact {
        label,
        value,
        code: false,
    };
    let code = |label, value: String| Fact {
        label,
        value,
        code: true,
    };
    let list = |items: &[String]| {
        if items.is_empty() {
            "any".to_string()
        } else {
            items.join(", ")
        }
    };
    let mut facts = vec![
        code("Client id", view.client_id.clone()),
        text("Status", view.status.clone()),
        text("Role", view.role.clone()),
        code("Scopes", view.scopes.join(" ")),
        code("Tenant", view.tenant_id.clone()),
        code(
            "Device group",
            view.device_group_id
                .clone()
                .unwrap_or_else(|| "none".into()),
        ),
        text(
            "Description",
            view.description.clone().unwrap_or_else(|| "none".into()),
        ),
        text("Owner", view.owner.clone().unwrap_or_else(|| "none".into())),
        text(
            "Owner email",
            view.owner_email.clone().unwrap_or_else(|| "none".into()),
        ),
        text("Expires", shown_time(view.expires_at.as_deref(), "never")),
        text(
            "Renewal",
            if view.can_renew {
                "tokens may be renewed".into()
            } else {
                "not renewable".into()
            },
        ),
        code("Allowed addresses", list(&view.allowed_ips)),
        text("Access token lifetime", span(view.access_token_ttl)),
    ];
    if view.kind == KIND_API_TOKEN {
        facts.push(text("Token lifetime", span(view.token_lifetime)));
    } else {
        facts.extend(authentication_facts(view));
    }
    facts.extend([
        code("Audience", list(&view.audience)),
        code("Metadata", {
            let text = metadata_text(&view.metadata);
            if text.is_empty() {
                "none".to_string()
            } else {
                text
            }
        }),
        text("Created", shown_time(Some(&view.created_at), "")),
        text("Updated", shown_time(Some(&view.updated_at), "")),
        text(
            "Last used",
            shown_time(view.last_used_at.as_deref(), "never"),
        ),
    ]);
    if let Some(revoked) = &view.revoked_at {
        facts.push(text("Revoked", shown_time(Some(revoked), "")));
    }
    if let Some(user) = &view.user_id {
        facts.push(code("Personal key of user", user.clone()));
    }
    facts
}

/// How a client credential authenticates: its method, and its keys or the
/// workload identities it answers to (API.md section 3, "Clients").
fn authentication_facts(view: &ClientView) -> Vec<Fact> {
    let mut facts = vec![Fact {
        label: "Authentication",
        value: method_label(&view.token_endpoint_auth_method),
        code: false,
    }];
    if let Some(uri) = &view.jwks_uri {
        facts.push(Fact {
            label: "JWK Set URL",
            value: uri.clone(),
            code: true,
        });
    }
    if let Some(set) = &view.jwks {
        let kids: Vec<String> = set["keys"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .map(|key| key["kid"].as_str().unwrap_or("(no kid)").to_string())
                    .collect()
            })
            .unwrap_or_default();
        facts.push(Fact {
            label: "Keys",
            value: format!(
                "{} {}: {}",
                kids.len(),
                if kids.len() == 1 { "key" } else { "keys" },
                kids.join(", ")
            ),
            code: false,
        });
    }
    if !view.federated_subjects.is_empty() {
        facts.push(Fact {
            label: "Federated subjects",
            value: subjects_text(&view.federated_subjects),
            code: true,
        });
    }
    facts
}

/// Metadata as the forms and the details page show it: empty when none.
fn metadata_text(metadata: &Value) -> String {
    match metadata {
        Value::Object(map) if map.is_empty() => String::new(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

/// A number of seconds as a person reads it: "1 hour", "30 days".
pub fn span(seconds: i64) -> String {
    let unit = |n: i64, one: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {one}s")
        }
    };
    match seconds {
        s if s > 0 && s % 86_400 == 0 => unit(s / 86_400, "day"),
        s if s > 0 && s % 3_600 == 0 => unit(s / 3_600, "hour"),
        s if s > 0 && s % 60 == 0 => unit(s / 60, "minute"),
        s => unit(s, "second"),
    }
}

/// The client, read with the person's reach (404 outside it).
async fn reachable(
    person: &Person,
    state: &AppState,
    client_id: String,
) -> Result<ClientView, OAuthError> {
    person.require(Scope::ClientsRead)?;
    let actor = person.actor.clone();
    let client = run(state, move |conn| {
        clients::find_reachable(conn, &actor, &client_id)
    })
    .await?;
    Ok(ClientView::new(&client, state.directory.now()))
}

#[utoipa::path(
    get,
    path = "/console/clients/{client_id}",
    tag = "console",
    summary = "One client's page, with the changes the person may make (HTML)",
    params(("client_id" = String, Path, description = "the client"), ("notice" = Option<String>, Query, description = "a fixed notice after a change")),
    responses(crate::http::openapi::ConsolePageAnswers),
    security(())
)]
pub async fn details_page(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let client_id = path.into_inner();
    page(req, state, |person, query, state| async move {
        let view = reachable(&person, &state, client_id).await?;
        let kind = Kind::parse(&view.kind);
        // Ardexa: the strings issued so far, newest last; values never shown.
        let tokens = if kind.is_token() {
            let (actor, id) = (person.actor.clone(), view.client_id.clone());
            run(&state, move |conn| {
                clients::list_tokens(conn, &actor, &id, CHOICES, None)
            })
            .await?
            .into_iter()
            .map(|t| IssuedRow {
                issued: shown_time(Some(&t.issued_at), ""),
                expires: shown_time(Some(&t.expires_at), ""),
                revoked: t.revoked_at.as_deref().map(|at| shown_time(Some(at), "")),
                prefix: t.prefix,
            })
            .collect()
        } else {
            Vec::new()
        };
        Ok(html(
            StatusCode::OK,
            &DetailsPage {
                tokens,
                nav: person.nav(section_of(kind)),
                href: format!("/console/clients/{}", segment(&view.client_id)),
                facts: facts(&view),
                expires_soon: expires_soon(&view, state.directory.now()),
                offers: Offers::for_client(&person, &view),
                notice: notice_text(&query),
                list_href: kind.list_href(),
                graces: GRACES,
                kind,
                view,
            },
        ))
    })
    .await
}

#[derive(Template)]
#[template(path = "console/client_edit.html")]
pub struct EditPage {
    pub nav: Nav,
    pub view: ClientView,
    pub href: String,
    pub allowed_ips: String,
    pub audience: String,
    pub expires: String,
    pub token_lifetime: String,
    pub metadata: String,
    pub durations: [(&'static str, &'static str); 7],
    /// The method, as people read it (fixed at creation).
    pub method: String,
    pub jwks: String,
    pub federated_subjects: String,
}

#[utoipa::path(
    get,
    path = "/console/clients/{client_id}/{action}",
    tag = "console",
    summary = "A form about one client: edit, or the confirmation naming it before revoke or delete (HTML)",
    params(
        ("client_id" = String, Path, description = "the client"),
        ("action" = String, Path, description = "edit, revoke or delete")
    ),
    responses(crate::http::openapi::ConsolePageAnswers),
    security(())
)]
pub async fn form_page(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (client_id, what) = path.into_inner();
    page(req, state, |person, _, state| async move {
        if !["edit", "revoke", "delete"].contains(&what.as_str()) {
            return Err(OAuthError::not_found("no such page"));
        }
        person.require(if what == "delete" {
            Scope::ClientsDelete
        } else {
            Scope::ClientsWrite
        })?;
        let view = reachable(&person, &state, client_id).await?;
        let href = format!("/console/clients/{}", segment(&view.client_id));
        let confirm = |title: String, message: String, button: String| ConfirmPage {
            nav: person.nav(section_of(Kind::parse(&view.kind))),
            action: format!("{href}/{what}"),
            cancel: href.clone(),
            title,
            message,
            button,
            danger: true,
        };
        Ok(if what == "revoke" {
            html(
                StatusCode::OK,
                &confirm(
                    format!("Revoke “{}”?", view.name),
                    format!(
                        "Client {} will stop getting tokens, and every token it holds stops working at once. Revocation cannot be undone.",
                        view.client_id
                    ),
                    format!("Revoke {}", view.name),
                ),
            )
        } else if what == "delete" {
            html(
                StatusCode::OK,
                &confirm(
                    format!("Delete “{}”?", view.name),
                    format!(
                        "Client {} and its record go for good; the audit log keeps what happened to it.",
                        view.client_id
                    ),
                    format!("Delete {}", view.name),
                ),
            )
        } else {
            html(
                StatusCode::OK,
                &EditPage {
                    nav: person.nav(section_of(Kind::parse(&view.kind))),
                    href,
                    allowed_ips: view.allowed_ips.join("\n"),
                    audience: view.audience.join("\n"),
                    expires: shown_time(view.expires_at.as_deref(), "never"),
                    token_lifetime: span(view.token_lifetime),
                    metadata: metadata_text(&view.metadata),
                    durations: DURATIONS,
                    method: method_label(&view.token_endpoint_auth_method),
                    jwks: jwks_text(view.jwks.as_ref()),
                    federated_subjects: subjects_text(&view.federated_subjects),
                    view,
                },
            )
        })
    })
    .await
}

/// The edit form as the admin API's `ClientPatch`: every field the form
/// shows is sent; an emptied optional text clears it. The keys and subjects
/// are sent only when changed, so that saving a name does not fetch the
/// client's JWK Set URL again.
fn client_patch(form: &Form, view: &ClientView) -> Result<ClientPatch, OAuthError> {
    let kind = view.kind.as_str();
    let mut fields = Map::new();
    fields.insert(
        "name".into(),
        json!(form.get("name").unwrap_or_default().trim()),
    );
    for name in ["description", "owner", "owner_email"] {
        fields.insert(
            name.into(),
            field(form, name).map_or(Value::Null, Value::String),
        );
    }
    fields.insert("can_renew".into(), json!(form.get("can_renew").is_some()));
    fields.insert("allowed_ips".into(), json!(list_field(form, "allowed_ips")));
    fields.insert("audience".into(), json!(list_field(form, "audience")));
    if let Some(ttl) = number_field(form, "access_token_ttl", "Access token lifetime")? {
        fields.insert("access_token_ttl".into(), json!(ttl));
    }
    if let Some(at) = expires_on(form)? {
        fields.insert("expires_at".into(), json!(at));
    }
    fields.insert(
        "metadata".into(),
        metadata_field(form)?.unwrap_or_else(|| json!({})),
    );
    match field(form, "expiry").as_deref() {
        None | Some("keep") => {}
        Some("never") => {
            fields.insert("expires_at".into(), Value::Null);
        }
        Some(duration) => {
            fields.insert("expires_in".into(), json!(duration));
        }
    }
    if kind == KIND_API_TOKEN {
        if let Some(lifetime) = field(form, "token_lifetime").filter(|l| l != "keep") {
            fields.insert("token_lifetime".into(), json!(lifetime));
        }
    } else {
        let jwks = jwks_field(form)?;
        if jwks.as_ref() != view.jwks.as_ref() {
            fields.insert("jwks".into(), jwks.unwrap_or(Value::Null));
        }
        let uri = field(form, "jwks_uri");
        if uri != view.jwks_uri {
            fields.insert("jwks_uri".into(), uri.map_or(Value::Null, Value::String));
        }
        let mut subjects = subjects_field(form)?;
        subjects.sort();
        subjects.dedup();
        if subjects != view.federated_subjects {
            fields.insert("federated_subjects".into(), json!(subjects));
        }
    }
    request_from(fields)
}

#[utoipa::path(
    post,
    path = "/console/clients/{client_id}/{action}",
    tag = "console",
    summary = "A change to one client from its page: edit, disable, enable, revoke, delete, secret (a new one, shown once) or reissue (a new API token, shown once)",
    params(
        ("client_id" = String, Path, description = "the client"),
        ("action" = String, Path, description = "edit, disable, enable, revoke, delete, secret or reissue")
    ),
    request_body(content = crate::http::openapi::ConsoleForm, content_type = "application/x-www-form-urlencoded"),
    responses(crate::http::openapi::ConsoleFormAnswers),
    security(())
)]
pub async fn change(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (client_id, what) = path.into_inner();
    let href = format!("/console/clients/{}", segment(&client_id));
    action(
        req,
        payload,
        state,
        &[],
        href.clone(),
        |person, form, state| async move {
            let actor = person.actor.clone();
            let id = client_id.clone();
            match what.as_str() {
                "edit" => {
                    person.require(Scope::ClientsWrite)?;
                    let view = reachable(&person, &state, client_id).await?;
                    let patch = client_patch(&form, &view)?;
                    check_jwks_uri(&state, patch.jwks_uri.clone().flatten().as_deref()).await?;
                    run(&state, move |conn| {
                        clients::update(conn, &actor, &id, patch)
                    })
                    .await?;
                    Ok(done(&href, "saved"))
                }
                "disable" | "enable" | "revoke" => {
                    person.require(Scope::ClientsWrite)?;
                    let (change, notice) = match what.as_str() {
                        "disable" => (StatusChange::Disable, "disabled"),
                        "enable" => (StatusChange::Enable, "enabled"),
                        _ => (StatusChange::Revoke, "revoked"),
                    };
                    run(&state, move |conn| {
                        clients::change_status(conn, &actor, &id, change)
                    })
                    .await?;
                    Ok(done(&href, notice))
                }
                "delete" => {
                    person.require(Scope::ClientsDelete)?;
                    let view = reachable(&person, &state, client_id).await?;
                    run(&state, move |conn| clients::delete(conn, &actor, &id)).await?;
                    let list = Kind::parse(&view.kind).list_href();
                    Ok(done(list, "deleted"))
                }
                "secret" => {
                    person.require(Scope::ClientsWrite)?;
                    let grace = number_field(&form, "grace_seconds", "Grace period")?.unwrap_or(0);
                    let (view, secret) = run(&state, move |conn| {
                        clients::rotate_secret(conn, &actor, &id, grace)
                    })
                    .await?;
                    let mut page = ShownOncePage::new(
                        person.nav(section_of(Kind::parse(&view.kind))),
                        "New client secret",
                        clients::with_credential(&view, &IssuedCredential::ClientSecret(secret)),
                    );
                    page.note = Some(match GRACES.iter().find(|(s, _)| *s == grace.to_string()) {
                        _ if grace == 0 => "The old secret stopped working.".to_string(),
                        Some((_, label)) => format!("The old secret keeps working for {label}."),
                        None => format!("The old secret keeps working for {grace} seconds."),
                    });
                    Ok(shown_once(&page))
                }
                "reissue" => {
                    person.require(Scope::ClientsWrite)?;
                    let (view, token, expires_at) = run(&state, move |conn| {
                        clients::reissue_token(conn, &actor, &id)
                    })
                    .await?;
                    Ok(shown_once(&ShownOncePage::new(
                        person.nav(Section::Tokens),
                        "API token reissued",
                        clients::with_credential(
                            &view,
                            &IssuedCredential::ApiToken { token, expires_at },
                        ),
                    )))
                }
                _ => Err(OAuthError::not_found("no such change")),
            }
        },
    )
    .await
}
