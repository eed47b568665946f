//! A person's personal API access key (API.md section 4; AirVantage's "API
//! access key", Qualytics's personal access tokens): one
//! `client_credentials` client with `user_id` set, in the person's tenant,
//! with the person's role. Its person manages it without any scope; it
//! follows the person: a role change gives it the new role, disabling the
//! person disables it, at once and on every node (the change is announced).

use super::clients::{self, ClientView};
use super::durations::{self, DurationSpec};
use super::scopes::ScopeSet;
use super::users::actor_for;
use super::{audit, now, ServiceError, ServiceResult};
use crate::domain::{AuthMethod, Client, ClientId, ClientKind, ClientStatus, User, UserStatus};
use crate::store::changes::Change;
use crate::store::{clients as store_clients, roles as store_roles, users as store_users};
use crate::store::{AnyConnection, Conn, Tx};
use crate::tokens::opaque::{random_id, Secret};

/// The person's key, if it has one.
pub fn find(conn: &mut AnyConnection, user: &User) -> ServiceResult<Option<Client>> {
    let Some(id) = store_users::personal_keys(conn, &user.user_id)?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    Ok(store_clients::find_with_path(conn, &id)?.map(|(client, _)| client))
}

fn role_scopes(conn: &mut AnyConnection, role: &str) -> ServiceResult<(String, ScopeSet)> {
    let role = store_roles::find(conn, role)?
        .ok_or_else(|| ServiceError::Internal(format!("role {role:?} is gone")))?;
    let scopes = ScopeSet::parse(&role.scopes).map_err(ServiceError::Internal)?;
    Ok((role.name, scopes))
}

/// Makes the person's key; its secret is shown this once. Without
/// `expires_in` it does not expire. 409 when the person has one.
pub fn create(
    conn: &mut Conn<'_>,
    user: &User,
    expires_in: Option<&DurationSpec>,
    ip: Option<String>,
) -> ServiceResult<(ClientView, Secret)> {
    let ts = now();
    let expires_at = clients::resolve_expiry(None, expires_in, ts)?;
    conn.write(|tx| {
        if !store_users::personal_keys(tx, &user.user_id)?.is_empty() {
            return Err(ServiceError::Conflict(
                "this user already has a personal API access key; make it a new secret or delete it"
                    .into(),
            ));
        }
        let (role, scopes) = role_scopes(tx, &user.role)?;
        let client = Client {
            client_id: ClientId::from(random_id(crate::tokens::opaque::CLIENT_ID_PREFIX)),
            kind: ClientKind::ClientCredentials,
            name: format!("Personal API access key of {}", user.email),
            description: None,
            tenant_id: user.tenant_id.clone(),
            role,
            scopes,
            device_group_id: None,
            owner: Some(user.name.clone()),
            // Its expiry notices go to the person.
            owner_email: Some(user.email.clone()),
            status: ClientStatus::Active,
            expires_at,
            can_renew: false,
            allowed_ips: Default::default(),
            access_token_ttl: durations::ACCESS_TOKEN_TTL_DEFAULT,
            token_lifetime: durations::TOKEN_LIFETIME_DEFAULT,
            audience: Default::default(),
            metadata: Default::default(),
            created_at: ts,
            updated_at: ts,
            revoked_at: None,
            last_used_at: None,
            version: 1,
            user_id: Some(user.user_id.clone()),
            auth_method: AuthMethod::ClientSecretBasic,
            jwks: None,
            jwks_uri: None,
            federated_subjects: Default::default(),
        };
        store_clients::insert(tx, &client)?;
        tx.announce(Change::Client(client.client_id.to_string()))?;
        let secret = clients::insert_secret(tx, &client.client_id, ts)?;
        let actor = actor_for(tx, user, ip)?;
        audit::record(
            tx,
            &actor,
            "personal_key.create",
            Some(&client.client_id),
            Some(&client.tenant_id),
            serde_json::json!({"user_id": user.user_id}),
        )?;
        Ok((ClientView::new(&client, ts), secret))
    })
}

/// A new secret for the person's key; the old one stops at once.
pub fn new_secret(
    conn: &mut Conn<'_>,
    user: &User,
    ip: Option<String>,
) -> ServiceResult<(ClientView, Secret)> {
    let key = find(conn, user)?.ok_or(ServiceError::NotFound("personal API access key"))?;
    let actor = actor_for(conn, user, ip)?;
    clients::rotate_secret(conn, &actor, &key.client_id, 0)
}

/// Deletes the person's key: it, and every token it was issued, stop at once.
pub fn delete(conn: &mut Conn<'_>, user: &User, ip: Option<String>) -> ServiceResult<()> {
    conn.write(|tx| {
        let Some(id) = store_users::personal_keys(tx, &user.user_id)?
            .into_iter()
            .next()
        else {
            return Err(ServiceError::NotFound("personal API access key"));
        };
        store_clients::delete(tx, &id)?;
        tx.announce(Change::Client(id.clone()))?;
        let actor = actor_for(tx, user, ip)?;
        audit::record(
            tx,
            &actor,
            "personal_key.delete",
            Some(&id),
            Some(&user.tenant_id),
            serde_json::json!({"user_id": user.user_id}),
        )
    })
}

/// Brings the person's key in line with the person, in the transaction that
/// changed them: the person's role (and that role's scopes), and disabled
/// while the person is. A revoked key stays revoked.
pub(crate) fn follow_user(tx: &mut Tx<'_>, user: &User, ts: i64) -> ServiceResult<()> {
    for id in store_users::personal_keys(tx, &user.user_id)? {
        let Some((mut key, _)) = store_clients::find_with_path(tx, &id)? else {
            continue;
        };
        if key.status == ClientStatus::Revoked {
            continue;
        }
        let (role, scopes) = role_scopes(tx, &user.role)?;
        let status = match user.status {
            UserStatus::Active => ClientStatus::Active,
            UserStatus::Disabled => ClientStatus::Disabled,
        };
        if key.role == role && key.scopes == scopes && key.status == status {
            continue;
        }
        clients::bump_version(tx, &mut key, ts)?;
        key.role = role;
        key.scopes = scopes;
        key.status = status;
        store_clients::save(tx, &key)?;
        tx.announce(Change::Client(key.client_id.to_string()))?;
    }
    Ok(())
}
