//! Roles: named sets of scopes, built in or custom. Roles are shared by every
//! tenant (their names appear in tokens, so one name means one thing).

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::scopes::{ScopeSet, ADMIN_SCOPES};
use super::{audit, now, Actor, ServiceError, ServiceResult};
use crate::store::models::Role;
use crate::store::schema::roles;
use crate::store::{write_transaction, AnyConnection};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RoleView {
    pub name: String,
    pub scopes: Vec<String>,
    pub builtin: bool,
}

impl From<&Role> for RoleView {
    fn from(r: &Role) -> Self {
        RoleView {
            name: r.name.clone(),
            scopes: ScopeSet::parse(&r.scopes).unwrap_or_default().to_vec(),
            builtin: r.builtin,
        }
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    pub name: String,
    pub scopes: Vec<String>,
}

pub fn list(
    conn: &mut AnyConnection,
    limit: i64,
    after: Option<&str>,
) -> ServiceResult<Vec<RoleView>> {
    let mut query = roles::table
        .order(roles::name.asc())
        .limit(limit)
        .select(Role::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(roles::name.gt(after.to_string()));
    }
    Ok(query.load(conn)?.iter().map(RoleView::from).collect())
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

pub fn create(conn: &mut AnyConnection, actor: &Actor, req: NewRole) -> ServiceResult<RoleView> {
    let name = validate_role_name(&req.name)?;
    if req.scopes.is_empty() {
        return Err(ServiceError::Invalid("scopes must not be empty".into()));
    }
    let scopes = ScopeSet::from_tokens(req.scopes.iter().map(String::as_str))
        .map_err(|e| ServiceError::Invalid(format!("scopes: {e}")))?;
    let privileged: Vec<&str> = scopes
        .iter()
        .filter(|s| ADMIN_SCOPES.contains(s) && !actor.scopes.contains(s))
        .collect();
    if !privileged.is_empty() {
        return Err(ServiceError::Forbidden(format!(
            "cannot create a role with scopes the caller does not hold: {}",
            privileged.join(" ")
        )));
    }
    write_transaction(conn, |conn| {
        let taken = roles::table.find(&name).count().get_result::<i64>(conn)?;
        if taken > 0 {
            return Err(ServiceError::Conflict(format!(
                "role {name:?} already exists"
            )));
        }
        let role = Role {
            name: name.clone(),
            scopes: scopes.to_string(),
            builtin: false,
            created_at: now(),
        };
        diesel::insert_into(roles::table)
            .values(&role)
            .execute(conn)?;
        audit::record(
            conn,
            actor,
            "role.create",
            Some(&role.name),
            Some(&actor.tenant_id),
            serde_json::json!({"scopes": role.scopes}),
        )?;
        Ok(RoleView::from(&role))
    })
}
