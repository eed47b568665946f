//! Roles: named sets of scopes, built in or custom. A custom role belongs to
//! a tenant and can be given only within that tenant's subtree. Role names
//! travel in tokens, where resource servers trust them, so a name means one
//! thing server-wide, whatever its case.

use serde::{Deserialize, Serialize};

use super::policy;
use super::scopes::ScopeSet;
use super::{audit, now, tenants, Actor, ServiceError, ServiceResult};
use crate::store::changes::Change;
use crate::store::models::Role;
use crate::store::roles as store;
use crate::store::{clients as store_clients, tenants as store_tenants};
use crate::store::{AnyConnection, Conn};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RoleView {
    pub name: String,
    pub scopes: Vec<String>,
    /// The owning tenant; null for the built-ins.
    pub tenant_id: Option<String>,
    pub builtin: bool,
}

impl TryFrom<&Role> for RoleView {
    type Error = ServiceError;

    /// A stored scope string that cannot be read is an error, not a role
    /// that seems to grant nothing.
    fn try_from(r: &Role) -> ServiceResult<Self> {
        let scopes = ScopeSet::parse(&r.scopes).map_err(|e| {
            ServiceError::Internal(format!(
                "stored roles.scopes of {:?} is unreadable: {e}",
                r.name
            ))
        })?;
        Ok(RoleView {
            name: r.name.clone(),
            scopes: scopes.to_vec(),
            tenant_id: r.tenant_id.clone(),
            builtin: r.builtin,
        })
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    #[schema(pattern = r"^[A-Za-z0-9_.-]{1,64}$")]
    pub name: String,
    #[schema(min_items = 1)]
    pub scopes: Vec<String>,
    /// Default: the caller's tenant.
    #[serde(default)]
    pub tenant_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolePatch {
    #[schema(min_items = 1)]
    pub scopes: Vec<String>,
}

/// The built-ins, and the custom roles of the actor's tenant, of the tenants
/// above it and of those below it.
pub fn list(
    conn: &mut AnyConnection,
    actor: &Actor,
    limit: i64,
    after: Option<&str>,
) -> ServiceResult<Vec<RoleView>> {
    store::list_for(conn, &actor.tenant_path, limit, after)?
        .iter()
        .map(RoleView::try_from)
        .collect()
}

fn validate_role_name(name: &str) -> ServiceResult<String> {
    let name = name.trim();
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if valid {
        Ok(name.to_string())
    } else {
        Err(ServiceError::Invalid(
            "role name must be 1 to 64 characters of letters, digits, '_', '-' or '.'".into(),
        ))
    }
}

fn parse_scopes(list: &[String]) -> ServiceResult<ScopeSet> {
    if list.is_empty() {
        return Err(ServiceError::Invalid("scopes must not be empty".into()));
    }
    ScopeSet::from_tokens(list.iter().map(String::as_str))
        .map_err(|e| ServiceError::Invalid(format!("scopes: {e}")))
}

pub fn create(conn: &mut Conn<'_>, actor: &Actor, req: NewRole) -> ServiceResult<RoleView> {
    let name = validate_role_name(&req.name)?;
    let scopes = parse_scopes(&req.scopes)?;
    policy::require_within(actor, &policy::admin_part(&scopes), "the role")?;
    conn.write(|tx| {
        let tenant_id = req.tenant_id.as_deref().unwrap_or(&actor.tenant_id);
        let tenant = tenants::find_reachable(tx, actor, tenant_id)?;
        // The unique index on lower(name) also catches a race between two
        // creations; this check gives the clearer message.
        if let Some(taken) = store::find_any_case(tx, &name)? {
            return Err(ServiceError::Conflict(format!(
                "role name {name:?} is taken (by {taken:?}); names are unique regardless of case"
            )));
        }
        let role = Role {
            name: name.clone(),
            scopes: scopes.to_string(),
            builtin: false,
            created_at: now(),
            tenant_id: Some(tenant.id.to_string()),
        };
        store::insert(tx, &role)?;
        audit::record(
            tx,
            actor,
            "role.create",
            Some(&role.name),
            Some(&tenant.id),
            serde_json::json!({"scopes": role.scopes}),
        )?;
        RoleView::try_from(&role)
    })
}

/// A custom role the actor may change or delete: one of its own subtree.
/// Built-ins are a conflict; roles above the actor are out of its hands.
fn own_custom_role(conn: &mut AnyConnection, actor: &Actor, name: &str) -> ServiceResult<Role> {
    let role = store::find(conn, name)?.ok_or(ServiceError::NotFound("role"))?;
    let Some(owner) = &role.tenant_id else {
        return Err(ServiceError::Conflict(format!(
            "{name:?} is a built-in role and cannot change"
        )));
    };
    let owner_path = store_tenants::path_of(conn, owner)?.ok_or(ServiceError::NotFound("role"))?;
    if actor.can_reach(&owner_path) {
        Ok(role)
    } else if actor.tenant_path.starts_with(&owner_path) {
        Err(ServiceError::Forbidden(format!(
            "role {name:?} belongs to a tenant above this caller's"
        )))
    } else {
        Err(ServiceError::NotFound("role"))
    }
}

/// New scopes for a custom role. The caller must hold every admin scope of
/// the role before and after. Clients with the role follow at their next
/// use: those that had the role's whole scope get the new one, narrowed ones
/// keep what of theirs the role still has.
pub fn update(
    conn: &mut Conn<'_>,
    actor: &Actor,
    name: &str,
    patch: RolePatch,
) -> ServiceResult<RoleView> {
    let scopes = parse_scopes(&patch.scopes)?;
    conn.write(|tx| {
        let mut role = own_custom_role(tx, actor, name)?;
        let before = ScopeSet::parse(&role.scopes).map_err(ServiceError::Internal)?;
        policy::require_within(actor, &policy::admin_part(&before), "the role")?;
        policy::require_within(actor, &policy::admin_part(&scopes), "the changed role")?;
        role.scopes = scopes.to_string();
        store::set_scopes(tx, &role.name, &role.scopes)?;
        let holders = store_clients::with_role(tx, &role.name)?;
        let ts = now();
        for client in &holders {
            let had = client.scopes.clone();
            let now_has = if had == before {
                scopes.clone()
            } else {
                ScopeSet::from_tokens(had.iter().filter(|s| scopes.contains(s)))
                    .map_err(ServiceError::Internal)?
            };
            store_clients::set_scopes(tx, client, &now_has.to_string(), ts)?;
            tx.announce(Change::Client(client.client_id.to_string()))?;
        }
        audit::record(
            tx,
            actor,
            "role.update",
            Some(&role.name),
            role.tenant_id.as_deref(),
            serde_json::json!({"scopes": role.scopes, "clients": holders.len()}),
        )?;
        RoleView::try_from(&role)
    })
}

/// Deletes a custom role that nobody has.
pub fn delete(conn: &mut Conn<'_>, actor: &Actor, name: &str) -> ServiceResult<()> {
    conn.write(|tx| {
        let role = own_custom_role(tx, actor, name)?;
        let scopes = ScopeSet::parse(&role.scopes).map_err(ServiceError::Internal)?;
        policy::require_within(actor, &policy::admin_part(&scopes), "the role")?;
        let holders = store_clients::count_with_role(tx, &role.name)?;
        let people = crate::store::users::count_with_role(tx, &role.name)?;
        if holders > 0 || people > 0 {
            return Err(ServiceError::Conflict(format!(
                "role {name:?} is still given to {holders} client(s) and {people} user(s)"
            )));
        }
        store::delete(tx, &role.name)?;
        audit::record(
            tx,
            actor,
            "role.delete",
            Some(&role.name),
            role.tenant_id.as_deref(),
            serde_json::json!({}),
        )?;
        Ok(())
    })
}
