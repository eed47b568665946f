//! The one authorization policy for admin actions (API.md section 3, "No
//! caller can gain or hand out more than it holds"). Every service that
//! creates, changes or removes a client goes through here, whether called by
//! an HTTP handler or the CLI; handlers only check the endpoint's scope.
//!
//! - Reach: a caller sees and changes only its tenant's subtree (for a token
//!   narrowed with `tenant`, that sub-tenant's). Anything else is NotFound,
//!   the same answer as for something that does not exist.
//! - Rights: the rights of a client are the admin scopes it holds plus the
//!   admin scopes of its role, so narrowing `scopes` never hides a role. A
//!   caller may create, or act on, a client only when that client's rights are
//!   within what the caller's credential holds.
//! - Itself: a caller cannot change, disable or enable its own client; it
//!   may give itself a new secret, reissue its own API token and revoke
//!   itself whatever its token was narrowed to. A user cannot change its own
//!   role or status, nor delete itself.
//!
//! Clients and users are both "subjects" here: a tenant path, rights, and
//! whether the actor is the subject itself. One function (`decide`) applies
//! the three rules to either, so users get no second copy of them.

use super::scopes::{ScopeSet, ADMIN_SCOPES};
use super::{clients, Actor, ServiceError, ServiceResult};
use crate::domain::{Client, User};
use crate::store::models::Role;
use crate::store::{
    roles as store_roles, tenants as store_tenants, users as store_users, AnyConnection,
};

/// What the rule on acting on oneself says of an act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnSelf {
    /// Allowed whatever the reach and rights of the credential.
    Allowed,
    /// Refused (403) with this reason.
    Refused(&'static str),
    /// The ordinary rules apply, as for anyone else.
    Ordinary,
}

/// An existing client or user that an actor wants to act on.
struct Subject<'a> {
    /// "client" or "user", as NotFound names it.
    kind: &'static str,
    /// Its tenant's path: in reach or not.
    tenant_path: &'a str,
    /// Whether the actor is this subject.
    is_self: bool,
}

/// Reach, rights within the caller's, acting on oneself: the one decision
/// for clients and users alike. `rights` is asked only when the act needs
/// it (anything but reading).
fn decide(
    conn: &mut AnyConnection,
    actor: &Actor,
    subject: Subject<'_>,
    on_self: OnSelf,
    reads_only: bool,
    rights: impl FnOnce(&mut AnyConnection) -> ServiceResult<ScopeSet>,
) -> ServiceResult<()> {
    if subject.is_self {
        match on_self {
            OnSelf::Allowed => return Ok(()),
            OnSelf::Refused(why) => return Err(ServiceError::Forbidden(why.into())),
            OnSelf::Ordinary => {}
        }
    }
    if !actor.can_reach(subject.tenant_path) {
        return Err(ServiceError::NotFound(subject.kind));
    }
    if !reads_only {
        let rights = rights(conn)?;
        require_within(actor, &rights, &format!("the {}", subject.kind))?;
    }
    Ok(())
}

/// What a caller wants to do to an existing client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAction {
    Read,
    Change,
    NewSecret,
    Reissue,
    Disable,
    Enable,
    Revoke,
    Delete,
}

impl ClientAction {
    /// The acts a client may do to itself (given `clients:write`): the ones
    /// that can only lower its own exposure.
    fn on_self(self) -> OnSelf {
        match self {
            ClientAction::NewSecret | ClientAction::Reissue | ClientAction::Revoke => {
                OnSelf::Allowed
            }
            ClientAction::Change | ClientAction::Disable | ClientAction::Enable => {
                OnSelf::Refused("a caller cannot change, disable or enable its own client")
            }
            // Reading and deleting oneself follow the ordinary rules.
            ClientAction::Read | ClientAction::Delete => OnSelf::Ordinary,
        }
    }
}

/// What a caller wants to do to an existing user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserAction {
    Read,
    /// Change the name only.
    Rename,
    /// Change the role or the status (disable, enable).
    Change,
    NewSetupLink,
    Delete,
}

impl UserAction {
    fn on_self(self) -> OnSelf {
        match self {
            UserAction::Change => OnSelf::Refused("a user cannot change its own role or status"),
            UserAction::Delete => OnSelf::Refused("a user cannot delete itself"),
            UserAction::Read | UserAction::Rename | UserAction::NewSetupLink => OnSelf::Ordinary,
        }
    }
}

/// The admin scopes in `scopes`.
pub fn admin_part(scopes: &ScopeSet) -> ScopeSet {
    ScopeSet::from_tokens(scopes.iter().filter(|s| ADMIN_SCOPES.contains(s))).unwrap_or_default()
}

/// A client's rights: the admin scopes of its own scopes and of its role's.
pub fn rights(client_scopes: &ScopeSet, role: &Role) -> ServiceResult<ScopeSet> {
    let role_scopes = ScopeSet::parse(&role.scopes).map_err(ServiceError::Internal)?;
    ScopeSet::from_tokens(
        client_scopes
            .iter()
            .chain(role_scopes.iter())
            .filter(|s| ADMIN_SCOPES.contains(s)),
    )
    .map_err(ServiceError::Internal)
}

/// Refuses unless every right in `rights` is held by the actor.
pub fn require_within(actor: &Actor, rights: &ScopeSet, what: &str) -> ServiceResult<()> {
    let missing: Vec<&str> = rights
        .iter()
        .filter(|s| !actor.scopes.contains(s))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(format!(
            "{what} holds {}, which this caller does not hold",
            missing.join(" ")
        )))
    }
}

/// Whether `actor` may hand out a role holding `role_scopes` (the rule
/// `require_within` enforces), so that a form offers only those roles.
pub fn may_hand_out(actor: &Actor, role_scopes: &[String]) -> bool {
    role_scopes
        .iter()
        .filter(|s| ADMIN_SCOPES.contains(&s.as_str()))
        .all(|s| actor.scopes.contains(s))
}

fn role_of(conn: &mut AnyConnection, client: &Client) -> ServiceResult<Role> {
    store_roles::find(conn, &client.role)?
        .ok_or_else(|| ServiceError::Internal(format!("client {} has no role", client.client_id)))
}

/// The rights of an existing client, with its role as stored now.
pub fn client_rights(conn: &mut AnyConnection, client: &Client) -> ServiceResult<ScopeSet> {
    let role = role_of(conn, client)?;
    rights(&client.scopes, &role)
}

/// The client `client_id`, if `actor` may do `action` to it. Not in reach:
/// NotFound; rights beyond the actor's, or a forbidden act on itself:
/// Forbidden.
pub fn client_for(
    conn: &mut AnyConnection,
    actor: &Actor,
    client_id: &str,
    action: ClientAction,
) -> ServiceResult<Client> {
    let Some((client, path)) = clients::find_with_path(conn, client_id)? else {
        return Err(ServiceError::NotFound("client"));
    };
    let subject = Subject {
        kind: "client",
        tenant_path: &path,
        is_self: actor.is_client(&client.client_id),
    };
    decide(
        conn,
        actor,
        subject,
        action.on_self(),
        action == ClientAction::Read,
        |conn| client_rights(conn, &client),
    )?;
    Ok(client)
}

/// A user's rights: the admin scopes of its role (a user holds no scopes of
/// its own).
pub fn user_rights(conn: &mut AnyConnection, user: &User) -> ServiceResult<ScopeSet> {
    let role = store_roles::find(conn, &user.role)?
        .ok_or_else(|| ServiceError::Internal(format!("user {} has no role", user.user_id)))?;
    rights(&ScopeSet::default(), &role)
}

/// The user `user_id` and its tenant's path, if `actor` may do `action` to
/// it. Not in reach: NotFound; rights beyond the actor's, or a forbidden act
/// on itself: Forbidden.
pub fn user_for(
    conn: &mut AnyConnection,
    actor: &Actor,
    user_id: &str,
    action: UserAction,
) -> ServiceResult<(User, String)> {
    let Some((user, path)) = store_users::find_with_path(conn, user_id)? else {
        return Err(ServiceError::NotFound("user"));
    };
    let subject = Subject {
        kind: "user",
        tenant_path: &path,
        is_self: actor.is_user(&user.user_id),
    };
    decide(
        conn,
        actor,
        subject,
        action.on_self(),
        action == UserAction::Read,
        |conn| user_rights(conn, &user),
    )?;
    Ok((user, path))
}

/// The role `name` as `actor` may give it to a client of the tenant at
/// `tenant_path`: a built-in, or a custom role of that tenant or one above
/// it. A role the actor cannot see reads as one that does not exist.
pub fn assignable_role(
    conn: &mut AnyConnection,
    actor: &Actor,
    name: &str,
    tenant_path: &str,
) -> ServiceResult<Role> {
    let unknown = || ServiceError::Invalid(format!("role {name:?} does not exist"));
    let role = store_roles::find(conn, name)?.ok_or_else(unknown)?;
    let Some(owner) = &role.tenant_id else {
        return Ok(role);
    };
    let owner_path = store_tenants::path_of(conn, owner)?.ok_or_else(unknown)?;
    let visible = actor.can_reach(&owner_path) || actor.tenant_path.starts_with(&owner_path);
    if !visible {
        return Err(unknown());
    }
    if !tenant_path.starts_with(&owner_path) {
        return Err(ServiceError::Invalid(format!(
            "role {name:?} belongs to tenant {owner} and can be given only within its subtree"
        )));
    }
    Ok(role)
}
