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
//!   itself whatever its token was narrowed to.

use super::scopes::{ScopeSet, ADMIN_SCOPES};
use super::{clients, Actor, ServiceError, ServiceResult};
use crate::domain::Client;
use crate::store::models::Role;
use crate::store::{roles as store_roles, tenants as store_tenants, AnyConnection};

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
    fn allowed_on_self(self) -> Option<bool> {
        match self {
            ClientAction::NewSecret | ClientAction::Reissue | ClientAction::Revoke => Some(true),
            ClientAction::Change | ClientAction::Disable | ClientAction::Enable => Some(false),
            // Reading and deleting oneself follow the ordinary rules.
            ClientAction::Read | ClientAction::Delete => None,
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
    if actor.is_client(&client.client_id) {
        match action.allowed_on_self() {
            Some(true) => return Ok(client),
            Some(false) => {
                return Err(ServiceError::Forbidden(
                    "a caller cannot change, disable or enable its own client".into(),
                ))
            }
            None => {}
        }
    }
    if !actor.can_reach(&path) {
        return Err(ServiceError::NotFound("client"));
    }
    if action != ClientAction::Read {
        let rights = client_rights(conn, &client)?;
        require_within(actor, &rights, "the client")?;
    }
    Ok(client)
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
