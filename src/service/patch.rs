//! Typed PATCH bodies (`clients::update`, `tenants::update`; the admin API,
//! the CLI and the OpenAPI document share them) and their pieces: a field
//! that is absent leaves the value as it is, `null` clears a nullable one
//! (`Option<Option<T>>`), and a field that can never change is read only to
//! be refused with its name.

use serde::{Deserialize, Deserializer};

use super::durations::DurationSpec;

/// PATCH body: any of these; `null` clears a nullable one. `kind`, `role`,
/// `scopes`, `tenant_id` and `device_group_id` cannot change (400 naming the
/// field; Ardexa: "Token permissions and device group cannot be edited");
/// any other field is 400 too.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientPatch {
    /// 1 to 200 characters once trimmed, no control characters.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, required = false, min_length = 1)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, required = false, max_length = 2000)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, required = false, max_length = 200)]
    pub owner: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(
        value_type = Option<String>,
        required = false,
        max_length = 254,
        pattern = r"^\s*([^\s@\x00-\x1f\x7f-\x9f]+@[^\s@.\x00-\x1f\x7f-\x9f][^\s@\x00-\x1f\x7f-\x9f]*\.[^\s@\x00-\x1f\x7f-\x9f]*[^\s@.\x00-\x1f\x7f-\x9f])?\s*$"
    )]
    pub owner_email: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = bool, required = false)]
    pub can_renew: Option<bool>,
    /// RFC 3339; `null` for no expiry. Not together with `expires_in`.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, required = false, format = DateTime)]
    pub expires_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = DurationSpec, required = false)]
    pub expires_in: Option<DurationSpec>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Vec<String>, required = false)]
    pub allowed_ips: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = i64, required = false, minimum = 60, maximum = 86400)]
    pub access_token_ttl: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = DurationSpec, required = false)]
    pub token_lifetime: Option<DurationSpec>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Vec<String>, required = false)]
    pub audience: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Object, required = false)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// A JWK Set of public keys (private_key_jwt); `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Object>, required = false)]
    pub jwks: Option<Option<serde_json::Value>>,
    /// https, fetched before the change; `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, required = false, pattern = r"^https://[^\s/?#@]+[^\s]*$", max_length = 2000)]
    pub jwks_uri: Option<Option<String>>,
    /// The whole list; `[]` removes every one.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Vec<crate::domain::FederatedSubject>, required = false)]
    pub federated_subjects: Option<Vec<crate::domain::FederatedSubject>>,
    #[serde(default)]
    #[schema(ignore)]
    pub kind: Fixed,
    #[serde(default)]
    #[schema(ignore)]
    pub role: Fixed,
    #[serde(default)]
    #[schema(ignore)]
    pub scopes: Fixed,
    #[serde(default)]
    #[schema(ignore)]
    pub tenant_id: Fixed,
    #[serde(default)]
    #[schema(ignore)]
    pub device_group_id: Fixed,
}

impl ClientPatch {
    /// The fields given, by name, in alphabetical order (for the audit).
    pub fn fields(&self) -> Vec<&'static str> {
        let given = [
            ("access_token_ttl", self.access_token_ttl.is_some()),
            ("allowed_ips", self.allowed_ips.is_some()),
            ("audience", self.audience.is_some()),
            ("can_renew", self.can_renew.is_some()),
            ("description", self.description.is_some()),
            ("expires_at", self.expires_at.is_some()),
            ("expires_in", self.expires_in.is_some()),
            ("federated_subjects", self.federated_subjects.is_some()),
            ("jwks", self.jwks.is_some()),
            ("jwks_uri", self.jwks_uri.is_some()),
            ("metadata", self.metadata.is_some()),
            ("name", self.name.is_some()),
            ("owner", self.owner.is_some()),
            ("owner_email", self.owner_email.is_some()),
            ("token_lifetime", self.token_lifetime.is_some()),
        ];
        given
            .into_iter()
            .filter_map(|(name, given)| given.then_some(name))
            .collect()
    }

    pub(crate) fn fixed_field(&self) -> Option<&'static str> {
        [
            ("device_group_id", self.device_group_id),
            ("kind", self.kind),
            ("role", self.role),
            ("scopes", self.scopes),
            ("tenant_id", self.tenant_id),
        ]
        .into_iter()
        .find_map(|(name, fixed)| fixed.given().then_some(name))
    }
}

/// PATCH body of a tenant: only the fields given change.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantPatch {
    /// 1 to 200 characters once trimmed, no control characters.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, required = false, min_length = 1)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Vec<String>, required = false)]
    pub owner_emails: Option<Vec<String>>,
    /// Moves the tenant and its subtree; a cycle is refused.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, required = false)]
    pub parent_id: Option<String>,
    #[serde(default)]
    #[schema(ignore)]
    pub id: Fixed,
    #[serde(default)]
    #[schema(ignore)]
    pub created_at: Fixed,
    #[serde(default)]
    #[schema(ignore)]
    pub updated_at: Fixed,
}

impl TenantPatch {
    /// The fields given, by name, in alphabetical order (for the audit).
    pub fn fields(&self) -> Vec<&'static str> {
        [
            ("name", self.name.is_some()),
            ("owner_emails", self.owner_emails.is_some()),
            ("parent_id", self.parent_id.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect()
    }

    pub(crate) fn fixed_field(&self) -> Option<&'static str> {
        [
            ("created_at", self.created_at),
            ("id", self.id),
            ("updated_at", self.updated_at),
        ]
        .into_iter()
        .find_map(|(name, fixed)| fixed.given().then_some(name))
    }
}

/// `#[serde(default, deserialize_with = "patch::nullable")]` on an
/// `Option<Option<T>>`: absent is `None` (by `default`), `null` is
/// `Some(None)`, a value is `Some(Some(value))`.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `#[serde(default, deserialize_with = "patch::present")]` on an
/// `Option<T>` whose value cannot be cleared: `null` is refused as the wrong
/// type instead of being read as "absent".
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A field that is fixed at creation: any value is read, so that the service
/// can refuse it by name ("kind cannot change after creation") rather than
/// as an unknown field. Not part of the documented body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fixed(bool);

impl Fixed {
    pub fn given(self) -> bool {
        self.0
    }
}

impl<'de> Deserialize<'de> for Fixed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fixed, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| Fixed(true))
    }
}
