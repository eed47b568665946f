//! Users: people who sign in to the console (API.md section 4, "Users").
//! The row (`store::models::User`) is never serialised; callers get
//! `UserView`, which has no password hash in it. Every decision about who
//! may act on a user is `policy::user_for`'s, the same rules as for clients.

use serde::{Deserialize, Serialize};

use super::passwords;
use super::policy::{self, UserAction};
use super::scopes::ScopeSet;
use super::{audit, now, rfc3339, tenants, Actor, ServiceError, ServiceResult};
use crate::domain::{TenantId, User, UserId, UserStatus};
use crate::store::changes::Change;
use crate::store::models::SetupLinkRow;
use crate::store::users::{self as store, ListFilter};
use crate::store::{clients as store_clients, sessions as store_sessions};
use crate::store::{AnyConnection, Conn, Tx};
use crate::tokens::opaque::{self, random_id, Secret};

/// How long a setup link works.
pub const SETUP_LINK_TTL: i64 = 24 * 3600;

/// A person as the admin API shows them (never a password or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub user_id: String,
    pub email: String,
    pub name: String,
    pub tenant_id: String,
    pub role: String,
    /// `active` or `disabled`.
    pub status: String,
    pub created_at: String,
    pub last_login_at: Option<String>,
}

impl UserView {
    pub fn new(u: &User) -> UserView {
        UserView {
            user_id: u.user_id.to_string(),
            email: u.email.clone(),
            name: u.name.clone(),
            tenant_id: u.tenant_id.to_string(),
            role: u.role.clone(),
            status: u.status.as_str().to_string(),
            created_at: rfc3339(u.created_at),
            last_login_at: u.last_login_at.map(rfc3339),
        }
    }
}

/// A request to create a user (admin API body and CLI flags alike).
#[derive(Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Unique regardless of case.
    #[schema(
        max_length = 254,
        pattern = r"^\s*[^\s@\x00-\x1f\x7f-\x9f]+@[^\s@.\x00-\x1f\x7f-\x9f][^\s@\x00-\x1f\x7f-\x9f]*\.[^\s@\x00-\x1f\x7f-\x9f]*[^\s@.\x00-\x1f\x7f-\x9f]\s*$"
    )]
    pub email: String,
    /// 1 to 200 characters once trimmed, no control characters.
    #[schema(min_length = 1)]
    pub name: String,
    #[schema(pattern = r"^[A-Za-z0-9_.-]{1,64}$")]
    pub role: String,
    /// Default: the caller's tenant.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// 12 to 1024 characters, not the email. Without it the answer carries
    /// a one-time `setup_url` where the person chooses one.
    #[serde(default)]
    #[schema(min_length = 12, max_length = 1024)]
    pub password: Option<String>,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("email", &self.email)
            .field("role", &self.role)
            .field("tenant_id", &self.tenant_id)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A change to a user: only what is given changes.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[serde(default)]
    #[schema(min_length = 1)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(pattern = r"^[A-Za-z0-9_.-]{1,64}$")]
    pub role: Option<String>,
    /// `active` or `disabled`.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^(active|disabled)$")]
    pub status: Option<UserStatus>,
}

/// A one-time setup link, shown once: the person opens it and chooses a
/// password. Only its SHA-256 is stored.
#[derive(Debug)]
pub struct SetupLink {
    pub token: Secret,
    pub expires_at: i64,
}

impl SetupLink {
    /// The link's path and query, to be put after the issuer.
    pub fn path(&self) -> String {
        format!("/console/setup?token={}", self.token.expose())
    }

    /// The full link under `issuer` (`https://auth.example.com`).
    pub fn url(&self, issuer: &str) -> String {
        format!("{}{}", issuer.trim_end_matches('/'), self.path())
    }
}

/// The actor a signed-in user is in the admin API: its role's admin scopes
/// in its tenant's subtree.
pub fn actor_for(
    conn: &mut AnyConnection,
    user: &User,
    ip: Option<String>,
) -> ServiceResult<Actor> {
    let path = crate::store::tenants::path_of(conn, &user.tenant_id)?
        .ok_or_else(|| ServiceError::Internal(format!("user {} has no tenant", user.user_id)))?;
    Ok(Actor {
        name: user.user_id.to_string(),
        client_id: None,
        user_id: Some(user.user_id.to_string()),
        tenant_id: user.tenant_id.to_string(),
        tenant_path: path,
        scopes: policy::user_rights(conn, user)?,
        ip,
    })
}

fn validate_email(email: &str) -> ServiceResult<String> {
    tenants::validate_email(email)
}

/// A password given by a person: the rules, then the hash (made before any
/// transaction opens: it takes tens of milliseconds).
fn hashed(password: &str, email: &str) -> ServiceResult<String> {
    passwords::validate(password, email)?;
    passwords::hash(password)
}

fn email_taken() -> ServiceError {
    ServiceError::Conflict("a user with that email already exists".into())
}

/// A new setup link for `user_id`, replacing its older ones.
fn insert_setup_link(tx: &mut Tx<'_>, user_id: &str, ts: i64) -> ServiceResult<SetupLink> {
    let token = opaque::generate(opaque::SETUP_LINK_PREFIX);
    let link = SetupLinkRow {
        token_hash: token.hash(),
        user_id: user_id.to_string(),
        created_at: ts,
        expires_at: ts + SETUP_LINK_TTL,
    };
    store::replace_setup_link(tx, &link)?;
    Ok(SetupLink {
        token,
        expires_at: link.expires_at,
    })
}

/// Ends every session of the user (but `keep`) and tells the other nodes.
fn end_sessions(tx: &mut Tx<'_>, user_id: &str, keep: Option<&str>) -> ServiceResult<()> {
    store_sessions::delete_for_user(tx, user_id, keep)?;
    tx.announce(Change::User(user_id.to_string()))?;
    Ok(())
}

pub fn create(
    conn: &mut Conn<'_>,
    actor: &Actor,
    req: NewUser,
) -> ServiceResult<(UserView, Option<SetupLink>)> {
    let email = validate_email(&req.email)?;
    let name = tenants::validate_name(&req.name)?;
    let password_hash = match req.password.as_deref() {
        Some(password) => Some(hashed(password, &email)?),
        None => None,
    };
    let ts = now();
    conn.write(|tx| {
        let tenant_id = req
            .tenant_id
            .clone()
            .unwrap_or_else(|| actor.tenant_id.clone());
        let tenant = tenants::find_reachable(tx, actor, &tenant_id)?;
        let role = policy::assignable_role(tx, actor, &req.role, &tenant.path)?;
        let rights = policy::rights(&ScopeSet::default(), &role)?;
        policy::require_within(actor, &rights, "the new user")?;
        if store::find_by_email(tx, &email)?.is_some() {
            return Err(email_taken());
        }
        let user = User {
            user_id: UserId::from(random_id("usr_")),
            email: email.clone(),
            name: name.clone(),
            tenant_id: TenantId::from(tenant.id.as_str()),
            role: role.name.clone(),
            status: UserStatus::Active,
            password_hash: password_hash.clone(),
            created_at: ts,
            updated_at: ts,
            last_login_at: None,
            version: 1,
        };
        store::insert(tx, &user).map_err(|e| match ServiceError::from(e) {
            ServiceError::Conflict(_) => email_taken(),
            other => other,
        })?;
        let link = match &user.password_hash {
            Some(_) => None,
            None => Some(insert_setup_link(tx, &user.user_id, ts)?),
        };
        audit::record(
            tx,
            actor,
            "user.create",
            Some(&user.user_id),
            Some(&user.tenant_id),
            serde_json::json!({
                "email": user.email,
                "name": user.name,
                "role": user.role,
                "setup_link": link.is_some(),
            }),
        )?;
        Ok((UserView::new(&user), link))
    })
}

#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub tenant_id: Option<String>,
    pub role: Option<String>,
    /// active or disabled.
    pub status: Option<String>,
}

pub fn list(
    conn: &mut AnyConnection,
    actor: &Actor,
    filter: &UserFilter,
    limit: i64,
    after: Option<&str>,
) -> ServiceResult<Vec<UserView>> {
    // A mistyped status would otherwise answer an empty list.
    if let Some(status) = filter.status.as_deref() {
        status
            .parse::<UserStatus>()
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
    }
    let stored = ListFilter {
        tenant_id: filter.tenant_id.clone(),
        role: filter.role.clone(),
        status: filter.status.clone(),
    };
    Ok(
        store::list_under(conn, &actor.tenant_path, &stored, limit, after)?
            .iter()
            .map(UserView::new)
            .collect(),
    )
}

pub fn get(conn: &mut AnyConnection, actor: &Actor, user_id: &str) -> ServiceResult<UserView> {
    let (user, _) = policy::user_for(conn, actor, user_id, UserAction::Read)?;
    Ok(UserView::new(&user))
}

/// Name, role, status. A user cannot change its own role or status; a new
/// role must be one the actor may give, within what it holds. A change of
/// role or status ends the user's sessions, in the same transaction.
pub fn update(
    conn: &mut Conn<'_>,
    actor: &Actor,
    user_id: &str,
    patch: UserPatch,
) -> ServiceResult<UserView> {
    let name = patch
        .name
        .as_deref()
        .map(tenants::validate_name)
        .transpose()?;
    let action = if patch.role.is_some() || patch.status.is_some() {
        UserAction::Change
    } else {
        UserAction::Rename
    };
    conn.write(|tx| {
        let (mut user, path) = policy::user_for(tx, actor, user_id, action)?;
        let ts = now();
        let mut changes = serde_json::Map::new();
        if let Some(name) = name {
            if name != user.name {
                changes.insert("name".into(), name.clone().into());
                user.name = name;
            }
        }
        let mut ends_sessions = false;
        if let Some(role_name) = &patch.role {
            let role = policy::assignable_role(tx, actor, role_name, &path)?;
            let rights = policy::rights(&ScopeSet::default(), &role)?;
            policy::require_within(actor, &rights, "the new role")?;
            if role.name != user.role {
                changes.insert("role".into(), role.name.clone().into());
                user.role = role.name;
                ends_sessions = true;
            }
        }
        if let Some(status) = patch.status {
            if status != user.status {
                changes.insert("status".into(), status.as_str().into());
                user.status = status;
                ends_sessions |= status == UserStatus::Disabled;
            }
        }
        if changes.is_empty() {
            return Ok(UserView::new(&user));
        }
        if !store::save_if_version(tx, &user, ts)? {
            return Err(ServiceError::Conflict(
                "the user was changed meanwhile; read it again".into(),
            ));
        }
        user.version += 1;
        user.updated_at = ts;
        if ends_sessions {
            end_sessions(tx, &user.user_id, None)?;
        }
        // The personal key takes the new role, and the status, at once.
        super::personal_keys::follow_user(tx, &user, ts)?;
        audit::record(
            tx,
            actor,
            "user.update",
            Some(&user.user_id),
            Some(&user.tenant_id),
            serde_json::Value::Object(changes),
        )?;
        Ok(UserView::new(&user))
    })
}

/// Deletes the user, its sessions, its setup link and its personal API
/// access key (which must not outlive its user).
pub fn delete(conn: &mut Conn<'_>, actor: &Actor, user_id: &str) -> ServiceResult<()> {
    conn.write(|tx| {
        let (user, _) = policy::user_for(tx, actor, user_id, UserAction::Delete)?;
        for key in store::personal_keys(tx, &user.user_id)? {
            store_clients::delete(tx, &key)?;
            tx.announce(Change::Client(key))?;
        }
        store::delete(tx, &user.user_id)?;
        tx.announce(Change::User(user.user_id.to_string()))?;
        audit::record(
            tx,
            actor,
            "user.delete",
            Some(&user.user_id),
            Some(&user.tenant_id),
            serde_json::json!({"email": user.email}),
        )?;
        Ok(())
    })
}

/// A new one-time setup link for the user; its older one stops.
pub fn new_setup_link(
    conn: &mut Conn<'_>,
    actor: &Actor,
    user_id: &str,
) -> ServiceResult<SetupLink> {
    conn.write(|tx| {
        let (user, _) = policy::user_for(tx, actor, user_id, UserAction::NewSetupLink)?;
        let link = insert_setup_link(tx, &user.user_id, now())?;
        audit::record(
            tx,
            actor,
            "user.setup_link",
            Some(&user.user_id),
            Some(&user.tenant_id),
            serde_json::json!({"expires_at": rfc3339(link.expires_at)}),
        )?;
        Ok(link)
    })
}

/// The user whose email is `email`, for the CLI, which acts as the root
/// admin and goes through the same policy.
fn by_email(
    conn: &mut AnyConnection,
    actor: &Actor,
    email: &str,
    action: UserAction,
) -> ServiceResult<User> {
    let user = store::find_by_email(conn, email)?.ok_or(ServiceError::NotFound("user"))?;
    Ok(policy::user_for(conn, actor, &user.user_id, action)?.0)
}

/// `keyward user setup-link --email E`.
pub fn new_setup_link_by_email(
    conn: &mut Conn<'_>,
    actor: &Actor,
    email: &str,
) -> ServiceResult<SetupLink> {
    let user = by_email(conn, actor, email, UserAction::NewSetupLink)?;
    new_setup_link(conn, actor, &user.user_id)
}

fn invalid_link() -> ServiceError {
    ServiceError::NotFound("setup link")
}

/// The person behind a setup link chooses a password. The link works once,
/// for 24 hours after it was made (`now`: the time of asking). An unknown,
/// used or expired link all answer the same.
pub fn complete_setup(
    conn: &mut Conn<'_>,
    token: &str,
    password: &str,
    now: i64,
    ip: Option<String>,
) -> ServiceResult<UserView> {
    let token_hash = opaque::sha256_hex(token.as_bytes());
    // Read first, to check the password against the email and hash it
    // outside the transaction; the link is taken inside it.
    let link = store::find_setup_link(conn, &token_hash)?.ok_or_else(invalid_link)?;
    if link.expires_at <= now {
        return Err(invalid_link());
    }
    let user = store::find(conn, &link.user_id)?.ok_or_else(invalid_link)?;
    let hash = hashed(password, &user.email)?;
    conn.write(|tx| {
        let Some(link) = store::take_setup_link(tx, &token_hash)? else {
            return Err(invalid_link());
        };
        if link.expires_at <= now {
            return Err(invalid_link());
        }
        let mut user = store::find(tx, &link.user_id)?.ok_or_else(invalid_link)?;
        user.password_hash = Some(hash);
        if !store::save_if_version(tx, &user, now)? {
            return Err(ServiceError::Conflict(
                "the user was changed meanwhile; try again".into(),
            ));
        }
        let actor = actor_for(tx, &user, ip)?;
        // A password chosen anew: sessions made with the old one end.
        end_sessions(tx, &user.user_id, None)?;
        audit::record(
            tx,
            &actor,
            "user.setup_complete",
            Some(&user.user_id),
            Some(&user.tenant_id),
            serde_json::json!({}),
        )?;
        Ok(UserView::new(&user))
    })
}

/// `keyward user set-password --email E --password-stdin`: the way back in
/// for a locked-out admin. Every session of the user ends.
pub fn set_password_by_email(
    conn: &mut Conn<'_>,
    actor: &Actor,
    email: &str,
    password: &str,
) -> ServiceResult<UserView> {
    let user = by_email(conn, actor, email, UserAction::Change)?;
    let hash = hashed(password, &user.email)?;
    conn.write(|tx| {
        let (mut user, _) = policy::user_for(tx, actor, &user.user_id, UserAction::Change)?;
        let ts = now();
        user.password_hash = Some(hash);
        if !store::save_if_version(tx, &user, ts)? {
            return Err(ServiceError::Conflict(
                "the user was changed meanwhile; try again".into(),
            ));
        }
        store::drop_setup_links(tx, &user.user_id)?;
        end_sessions(tx, &user.user_id, None)?;
        audit::record(
            tx,
            actor,
            "user.set_password",
            Some(&user.user_id),
            Some(&user.tenant_id),
            serde_json::json!({}),
        )?;
        Ok(UserView::new(&user))
    })
}

/// A signed-in user changes its own password, giving the current one. Every
/// other session of the user ends; `session` (the cookie value of the one
/// asking) stays.
pub fn change_password(
    conn: &mut Conn<'_>,
    user_id: &str,
    session: Option<&str>,
    current: &str,
    new: &str,
    ip: Option<String>,
) -> ServiceResult<()> {
    let user = store::find(conn, user_id)?.ok_or(ServiceError::NotFound("user"))?;
    let matches = user
        .password_hash
        .as_deref()
        .is_some_and(|phc| passwords::verify(current, phc));
    if !matches {
        return Err(ServiceError::Invalid(
            "the current password is not right".into(),
        ));
    }
    let hash = hashed(new, &user.email)?;
    let keep = session.map(|s| opaque::sha256_hex(s.as_bytes()));
    conn.write(|tx| {
        let mut user = store::find(tx, user_id)?.ok_or(ServiceError::NotFound("user"))?;
        let ts = now();
        user.password_hash = Some(hash);
        if !store::save_if_version(tx, &user, ts)? {
            return Err(ServiceError::Conflict(
                "the user was changed meanwhile; try again".into(),
            ));
        }
        end_sessions(tx, &user.user_id, keep.as_deref())?;
        let actor = actor_for(tx, &user, ip)?;
        audit::record(
            tx,
            &actor,
            "user.password_change",
            Some(&user.user_id),
            Some(&user.tenant_id),
            serde_json::json!({}),
        )?;
        Ok(())
    })
}
