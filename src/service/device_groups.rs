//! Device groups: named subsets of a tenant's devices. A client bound to one
//! carries its id in every token.

use serde::{Deserialize, Serialize};

use super::{audit, now, rfc3339, tenants, Actor, ServiceError, ServiceResult};
use crate::store::device_groups as store;
use crate::store::models::DeviceGroup;
use crate::store::{AnyConnection, Conn};
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
    conn: &mut Conn<'_>,
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
    conn.write(|tx| {
        let tenant_id = req
            .tenant_id
            .clone()
            .unwrap_or_else(|| actor.tenant_id.clone());
        let tenant = tenants::find_reachable(tx, actor, &tenant_id)?;
        if store::name_taken(tx, &tenant.id, &name)? {
            return Err(ServiceError::Conflict(format!(
                "tenant already has a device group named {name:?}"
            )));
        }
        let group = DeviceGroup {
            id: random_id("dg_"),
            tenant_id: tenant.id.to_string(),
            name: name.clone(),
            description: description.clone(),
            created_at: now(),
        };
        store::insert(tx, &group)?;
        audit::record(
            tx,
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
    match store::find_with_path(conn, id)? {
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
    Ok(
        store::list_under(conn, &actor.tenant_path, tenant_id, limit, after)?
            .iter()
            .map(DeviceGroupView::from)
            .collect(),
    )
}

pub fn delete(conn: &mut Conn<'_>, actor: &Actor, id: &str) -> ServiceResult<()> {
    conn.write(|tx| {
        let group = find_reachable(tx, actor, id)?;
        let users = store::members(tx, &group.id)?;
        if users > 0 {
            return Err(ServiceError::Conflict(format!(
                "{users} client(s) use this device group"
            )));
        }
        store::delete(tx, &group.id)?;
        audit::record(
            tx,
            actor,
            "device_group.delete",
            Some(&group.id),
            Some(&group.tenant_id),
            serde_json::json!({"name": group.name}),
        )
    })
}
