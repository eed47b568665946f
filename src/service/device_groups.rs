//! Device groups: named subsets of a tenant's devices. A client bound to one
//! carries its id in every token.

use diesel::expression_methods::EscapeExpressionMethods;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::{audit, now, rfc3339, tenants, Actor, ServiceError, ServiceResult};
use crate::store::models::DeviceGroup;
use crate::store::schema::{clients, device_groups, tenants as tenants_table};
use crate::store::{write_transaction, AnyConnection};
use crate::tokens::opaque::random_id;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceGroupView {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub description: Option<String>,
    pub created_at: String,
}

impl From<&DeviceGroup> for DeviceGroupView {
    fn from(g: &DeviceGroup) -> Self {
        DeviceGroupView {
            id: g.id.clone(),
            tenant_id: g.tenant_id.clone(),
            name: g.name.clone(),
            description: g.description.clone(),
            created_at: rfc3339(g.created_at),
        }
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDeviceGroup {
    /// 1 to 200 characters once trimmed, no control characters.
    #[schema(min_length = 1)]
    pub name: String,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
}

pub fn create(
    conn: &mut AnyConnection,
    actor: &Actor,
    req: NewDeviceGroup,
) -> ServiceResult<DeviceGroupView> {
    let name = tenants::validate_name(&req.name)?;
    let description = match req.description.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(d) if d.chars().count() > 2000 => {
            return Err(ServiceError::Invalid(
                "description is longer than 2000 characters".into(),
            ))
        }
        Some(d) => Some(d.to_string()),
    };
    write_transaction(conn, |conn| {
        let tenant_id = req
            .tenant_id
            .clone()
            .unwrap_or_else(|| actor.tenant_id.clone());
        let tenant = tenants::find_reachable(conn, actor, &tenant_id)?;
        let taken = device_groups::table
            .filter(device_groups::tenant_id.eq(&tenant.id))
            .filter(device_groups::name.eq(&name))
            .count()
            .get_result::<i64>(conn)?;
        if taken > 0 {
            return Err(ServiceError::Conflict(format!(
                "tenant already has a device group named {name:?}"
            )));
        }
        let group = DeviceGroup {
            id: random_id("dg_"),
            tenant_id: tenant.id.clone(),
            name: name.clone(),
            description: description.clone(),
            created_at: now(),
        };
        diesel::insert_into(device_groups::table)
            .values(&group)
            .execute(conn)?;
        audit::record(
            conn,
            actor,
            "device_group.create",
            Some(&group.id),
            Some(&group.tenant_id),
            serde_json::json!({"name": group.name}),
        )?;
        Ok(DeviceGroupView::from(&group))
    })
}

/// The group, if it exists in a tenant the actor reaches; NotFound otherwise.
pub fn find_reachable(
    conn: &mut AnyConnection,
    actor: &Actor,
    id: &str,
) -> ServiceResult<DeviceGroup> {
    let found = device_groups::table
        .inner_join(tenants_table::table)
        .filter(device_groups::id.eq(id))
        .select((DeviceGroup::as_select(), tenants_table::path))
        .first::<(DeviceGroup, String)>(conn)
        .optional()?;
    match found {
        Some((group, path)) if actor.can_reach(&path) => Ok(group),
        _ => Err(ServiceError::NotFound("device group")),
    }
}

pub fn list(
    conn: &mut AnyConnection,
    actor: &Actor,
    tenant_id: Option<&str>,
    limit: i64,
    after: Option<&str>,
) -> ServiceResult<Vec<DeviceGroupView>> {
    let mut query = device_groups::table
        .inner_join(tenants_table::table)
        .filter(
            tenants_table::path
                .like(crate::service::tenants::subtree_pattern(&actor.tenant_path))
                .escape('\\'),
        )
        .order(device_groups::id.asc())
        .limit(limit)
        .select(DeviceGroup::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(device_groups::id.gt(after.to_string()));
    }
    if let Some(tenant_id) = tenant_id {
        query = query.filter(device_groups::tenant_id.eq(tenant_id.to_string()));
    }
    Ok(query
        .load(conn)?
        .iter()
        .map(DeviceGroupView::from)
        .collect())
}

pub fn delete(conn: &mut AnyConnection, actor: &Actor, id: &str) -> ServiceResult<()> {
    write_transaction(conn, |conn| {
        let group = find_reachable(conn, actor, id)?;
        let users = clients::table
            .filter(clients::device_group_id.eq(&group.id))
            .count()
            .get_result::<i64>(conn)?;
        if users > 0 {
            return Err(ServiceError::Conflict(format!(
                "{users} client(s) use this device group"
            )));
        }
        diesel::delete(device_groups::table.find(&group.id)).execute(conn)?;
        audit::record(
            conn,
            actor,
            "device_group.delete",
            Some(&group.id),
            Some(&group.tenant_id),
            serde_json::json!({"name": group.name}),
        )
    })
}
