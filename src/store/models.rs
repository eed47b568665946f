//! Rows as stored. Secrets appear here only as hashes; the admin and public
//! views of these rows are separate types in `service`.

use diesel::prelude::*;

use super::schema::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = tenants)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub parent_id: Option<String>,
    pub path: String,
    pub owner_emails: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = roles)]
pub struct Role {
    pub name: String,
    pub scopes: String,
    pub builtin: bool,
    pub created_at: i64,
    /// The owning tenant of a custom role; None for the built-ins.
    pub tenant_id: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = device_groups)]
pub struct DeviceGroup {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub description: Option<String>,
    pub created_at: i64,
}

/// An external issuer a tenant trusts for workload identity federation.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = trusted_issuers)]
pub struct TrustedIssuer {
    pub id: String,
    pub tenant_id: String,
    pub issuer: String,
    pub jwks_uri: Option<String>,
    pub description: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = clients, treat_none_as_null = true)]
pub struct Client {
    pub client_id: String,
    pub kind: String,
    pub name: String,
    pub description: Option<String>,
    pub tenant_id: String,
    pub role: String,
    pub scopes: String,
    pub device_group_id: Option<String>,
    pub owner: Option<String>,
    pub owner_email: Option<String>,
    pub status: String,
    pub expires_at: Option<i64>,
    pub can_renew: bool,
    pub allowed_ips: String,
    pub access_token_ttl: i64,
    pub token_lifetime: i64,
    pub audience: String,
    pub metadata: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub version: i64,
    pub user_id: Option<String>,
    pub token_endpoint_auth_method: String,
    pub jwks: Option<String>,
    pub jwks_uri: Option<String>,
    pub federated_subjects: String,
}

#[derive(Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = client_secrets)]
pub struct ClientSecret {
    pub id: String,
    pub client_id: String,
    pub secret_hash: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecret")
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .field("secret_hash", &"<redacted>")
            .finish()
    }
}

#[derive(Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_tokens)]
pub struct ApiTokenRow {
    pub id: String,
    pub client_id: String,
    pub token_hash: String,
    pub prefix: String,
    pub scope: String,
    pub audience: String,
    pub tenant_id: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

impl std::fmt::Debug for ApiTokenRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiTokenRow")
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .field("prefix", &self.prefix)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = revoked_access_tokens)]
pub struct RevokedAccessToken {
    pub jti: String,
    pub client_id: String,
    pub expires_at: i64,
    pub revoked_at: i64,
}

/// A token's place in its renewal family (ids and times only, no secret).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = token_families)]
pub struct TokenFamilyRow {
    pub token_id: String,
    pub kind: String,
    pub parent_id: Option<String>,
    pub client_id: String,
    pub expires_at: i64,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_events)]
pub struct AuditEvent {
    pub id: String,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub tenant_id: Option<String>,
    pub tenant_path: Option<String>,
    pub ip: Option<String>,
    pub details: String,
}

#[derive(Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = users, treat_none_as_null = true)]
pub struct User {
    pub user_id: String,
    pub email: String,
    pub name: String,
    pub tenant_id: String,
    pub role: String,
    pub status: String,
    pub password_hash: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_login_at: Option<i64>,
    pub version: i64,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("user_id", &self.user_id)
            .field("tenant_id", &self.tenant_id)
            .field("role", &self.role)
            .field("status", &self.status)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

/// A one-time setup link, by the SHA-256 of its secret.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = user_setup_links)]
pub struct SetupLinkRow {
    pub token_hash: String,
    pub user_id: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A console session, by the SHA-256 of its cookie value.
#[derive(Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
pub struct SessionRow {
    pub session_hash: String,
    pub user_id: String,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

impl std::fmt::Debug for SessionRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRow")
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// An expiry notice in the outbox (API.md section 4, "Expiry notices").
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = notices)]
pub struct NoticeRow {
    pub id: String,
    pub kind: String,
    pub recipient: String,
    pub target: String,
    pub token_id: String,
    pub threshold: i64,
    pub expires_at: i64,
    pub tenant_id: String,
    pub tenant_path: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub claimed_until: Option<i64>,
    pub status: String,
    pub last_error: Option<String>,
}
