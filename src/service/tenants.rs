//! Tenants: a tree (a vendor above its sub-accounts). Each row keeps its
//! materialised path, so "this tenant or one below it" is a prefix match.

use serde::Serialize;

pub use super::patch::TenantPatch;
use super::{audit, now, rfc3339, Actor, ServiceError, ServiceResult};
use crate::domain::{OwnerEmails, Tenant, TenantId, TenantPath};
use crate::store::changes::Change;
use crate::store::tenants as store;
use crate::store::{AnyConnection, Conn};
use crate::tokens::opaque::random_id;

pub const MAX_NAME_LEN: usize = 200;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TenantView {
    pub id: String,
    pub name: String,
    pub parent_id: Option<String>,
    pub owner_emails: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Tenant> for TenantView {
    fn from(t: &Tenant) -> Self {
        TenantView {
            id: t.id.to_string(),
            name: t.name.clone(),
            parent_id: t.parent_id.as_ref().map(TenantId::to_string),
            owner_emails: t.owner_emails.as_slice().to_vec(),
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
        }
    }
}

pub fn find(conn: &mut AnyConnection, id: &str) -> ServiceResult<Option<Tenant>> {
    Ok(store::find(conn, id)?)
}

/// The tenant, if it exists and the actor may reach it; otherwise NotFound,
/// the same answer for both so that nothing leaks that it exists.
pub fn find_reachable(conn: &mut AnyConnection, actor: &Actor, id: &str) -> ServiceResult<Tenant> {
    match find(conn, id)? {
        Some(t) if actor.can_reach(&t.path) => Ok(t),
        _ => Err(ServiceError::NotFound("tenant")),
    }
}

pub fn root(conn: &mut AnyConnection) -> ServiceResult<Option<Tenant>> {
    Ok(store::root(conn)?)
}

pub fn validate_name(name: &str) -> ServiceResult<String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(ServiceError::Invalid("name must not be empty".into()));
    }
    if trimmed.chars().count() > MAX_NAME_LEN {
        return Err(ServiceError::Invalid(format!(
            "name is longer than {MAX_NAME_LEN} characters"
        )));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ServiceError::Invalid(
            "name must not contain control characters".into(),
        ));
    }
    Ok(trimmed.to_string())
}

pub fn validate_email(email: &str) -> ServiceResult<String> {
    let email = email.trim();
    let valid = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
                && !domain.contains('@')
                && email.len() <= 254
        }
        None => false,
    };
    if valid {
        Ok(email.to_string())
    } else {
        Err(ServiceError::Invalid(format!(
            "{email:?} is not a valid email address"
        )))
    }
}

/// Inserts a tenant row; the caller holds the transaction.
pub fn insert(
    conn: &mut AnyConnection,
    name: &str,
    parent: Option<&Tenant>,
    owner_emails: &[String],
) -> ServiceResult<Tenant> {
    let id = TenantId::from(random_id("tn_"));
    let path = match parent {
        Some(p) => p.path.child(&id),
        None => TenantPath::root(&id),
    };
    let ts = now();
    let tenant = Tenant {
        id,
        name: validate_name(name)?,
        parent_id: parent.map(|p| p.id.clone()),
        path,
        owner_emails: OwnerEmails::new(owner_emails.to_vec()),
        created_at: ts,
        updated_at: ts,
    };
    store::insert(conn, &tenant)?;
    Ok(tenant)
}

pub fn create(
    conn: &mut Conn<'_>,
    actor: &Actor,
    name: &str,
    parent_id: Option<&str>,
    owner_emails: &[String],
) -> ServiceResult<TenantView> {
    let name = validate_name(name)?;
    let emails = owner_emails
        .iter()
        .map(|e| validate_email(e))
        .collect::<ServiceResult<Vec<_>>>()?;
    conn.write(|tx| {
        // The parent's path is copied: it must not move meanwhile.
        store::lock_tree(tx)?;
        let parent_id = parent_id.unwrap_or(&actor.tenant_id);
        let parent = find_reachable(tx, actor, parent_id)?;
        let tenant = insert(tx, &name, Some(&parent), &emails)?;
        audit::record(
            tx,
            actor,
            "tenant.create",
            Some(&tenant.id),
            Some(&tenant.id),
            serde_json::json!({"name": tenant.name, "parent_id": tenant.parent_id}),
        )?;
        Ok(TenantView::from(&tenant))
    })
}

/// Tenants the actor can reach, in id order, `limit` after the `after` id.
pub fn list(
    conn: &mut AnyConnection,
    actor: &Actor,
    limit: i64,
    after: Option<&str>,
) -> ServiceResult<Vec<TenantView>> {
    Ok(store::list_under(conn, &actor.tenant_path, limit, after)?
        .iter()
        .map(TenantView::from)
        .collect())
}

/// A PATCH of a tenant: only the fields given change.
pub fn update(
    conn: &mut Conn<'_>,
    actor: &Actor,
    id: &str,
    patch: TenantPatch,
) -> ServiceResult<TenantView> {
    if let Some(field) = patch.fixed_field() {
        return Err(ServiceError::Invalid(format!("{field} cannot be changed")));
    }
    let fields = patch.fields();
    let name = patch.name.as_deref().map(validate_name).transpose()?;
    let emails: Option<Vec<String>> = match &patch.owner_emails {
        Some(list) => Some(
            list.iter()
                .map(|e| validate_email(e))
                .collect::<ServiceResult<_>>()?,
        ),
        None => None,
    };
    let parent = patch.parent_id;
    conn.write(|tx| {
        if parent.is_some() {
            store::lock_tree(tx)?;
        }
        let mut tenant = find_reachable(tx, actor, id)?;
        let ts = now();
        if let Some(parent_id) = &parent {
            if tenant.path == actor.tenant_path {
                return Err(ServiceError::Invalid(
                    "parent_id: a caller cannot move its own tenant".into(),
                ));
            }
            let new_parent = find_reachable(tx, actor, parent_id)?;
            if tenant.path.contains(&new_parent.path) {
                return Err(ServiceError::Invalid(
                    "parent_id would make a cycle: the new parent is this tenant or below it"
                        .into(),
                ));
            }
            let old_path = tenant.path.clone();
            roles_stay_in_reach(tx, &old_path, &new_parent.path)?;
            issuers_stay_in_reach(tx, &old_path, &new_parent.path)?;
            let new_path = new_parent.path.child(&tenant.id);
            store::move_subtree(tx, &tenant.id, &new_parent.id, &old_path, &new_path)?;
            crate::store::audit::move_paths(tx, &old_path, &new_path)?;
            tenant.parent_id = Some(new_parent.id);
            tenant.path = new_path;
            tx.announce(Change::Tenants)?;
        }
        if let Some(name) = &name {
            tenant.name = name.clone();
        }
        if let Some(emails) = &emails {
            tenant.owner_emails = OwnerEmails::new(emails.clone());
        }
        tenant.updated_at = ts;
        store::save_details(tx, &tenant)?;
        audit::record(
            tx,
            actor,
            "tenant.update",
            Some(&tenant.id),
            Some(&tenant.id),
            serde_json::json!({ "fields": fields }),
        )?;
        Ok(TenantView::from(&tenant))
    })
}

/// Deletes a tenant with no clients, sub-tenants, device groups, custom
/// roles or users.
pub fn delete(conn: &mut Conn<'_>, actor: &Actor, id: &str) -> ServiceResult<()> {
    conn.write(|tx| {
        let tenant = find_reachable(tx, actor, id)?;
        if tenant.path == actor.tenant_path {
            return Err(ServiceError::Conflict(
                "a caller cannot delete its own tenant".into(),
            ));
        }
        let left = store::dependents(tx, &tenant.id)?;
        if left.any() {
            return Err(ServiceError::Conflict(format!(
                "the tenant still has {} sub-tenant(s), {} client(s), {} device group(s), {} custom role(s), {} user(s) and {} trusted issuer(s)",
                left.children, left.clients, left.device_groups, left.roles, left.users, left.trusted_issuers
            )));
        }
        // Recorded first, while the tenant's path can still be looked up.
        audit::record(
            tx,
            actor,
            "tenant.delete",
            Some(&tenant.id),
            Some(&tenant.id),
            serde_json::json!({"name": tenant.name}),
        )?;
        store::delete(tx, &tenant.id)?;
        tx.announce(Change::Tenants)?;
        Ok(())
    })
}

/// Refuses a move of the subtree at `old_path` under the tenant at
/// `new_parent_path` when a client in the subtree names, in its federated
/// subjects, an issuer that no tenant above it would trust any more (a
/// record inside the subtree moves along with it).
fn issuers_stay_in_reach(
    conn: &mut AnyConnection,
    old_path: &str,
    new_parent_path: &str,
) -> ServiceResult<()> {
    use crate::store::trusted_issuers as issuers;
    for (issuer, client_path) in issuers::used_under(conn, old_path)? {
        let still_trusted = issuers::by_issuer(conn, &issuer)?
            .iter()
            .any(|(_, owner_path)| {
                let moves_along = owner_path.starts_with(old_path);
                (moves_along && client_path.starts_with(owner_path.as_str()))
                    || (!moves_along && new_parent_path.starts_with(owner_path.as_str()))
            });
        if !still_trusted {
            return Err(ServiceError::Conflict(format!(
                "a client below this tenant federates with {issuer:?}, which no tenant above it would trust after the move"
            )));
        }
    }
    Ok(())
}

/// Refuses a move of the subtree at `old_path` under the tenant at
/// `new_parent_path` when a client in the subtree has a custom role of a
/// tenant that would no longer be above it (roles of the subtree move with it).
fn roles_stay_in_reach(
    conn: &mut AnyConnection,
    old_path: &str,
    new_parent_path: &str,
) -> ServiceResult<()> {
    for (role, owner) in store::custom_roles_used_under(conn, old_path)? {
        let Some(owner_path) = store::path_of(conn, &owner)? else {
            continue;
        };
        let moves_along = owner_path.starts_with(old_path);
        if !moves_along && !new_parent_path.starts_with(&owner_path) {
            return Err(ServiceError::Conflict(format!(
                "a client or user below this tenant has role {role:?}, which belongs to a tenant that would no longer be above it"
            )));
        }
    }
    Ok(())
}
