//! Scopes (RFC 6749 3.3): space-delimited, case-sensitive tokens.

use std::collections::BTreeSet;

/// Scopes only an administrator can hand out: holding them is a privilege.
pub const ADMIN_SCOPES: &[&str] = &[
    "clients:read",
    "clients:write",
    "clients:delete",
    "tenants:read",
    "tenants:write",
    "users:read",
    "users:write",
    "audit:read",
    "introspect",
];

/// A set of valid scope tokens, in a stable (sorted) order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(BTreeSet<String>);

impl ScopeSet {
    /// Parses a space-delimited scope string; RFC 6749 3.3 allows %x21 and
    /// %x23-5B and %x5D-7E in a scope token.
    pub fn parse(value: &str) -> Result<ScopeSet, String> {
        Self::from_tokens(value.split(' ').filter(|s| !s.is_empty()))
    }

    pub fn from_tokens<'a>(tokens: impl IntoIterator<Item = &'a str>) -> Result<ScopeSet, String> {
        let mut set = BTreeSet::new();
        for token in tokens {
            let valid = !token.is_empty()
                && token
                    .bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
            if !valid {
                return Err(format!("{token:?} is not a valid scope"));
            }
            set.insert(token.to_string());
        }
        Ok(ScopeSet(set))
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    pub fn is_subset(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    /// Members of self that `other` does not have.
    pub fn missing_from<'a>(&'a self, other: &'a ScopeSet) -> Vec<&'a str> {
        self.0.difference(&other.0).map(String::as_str).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }

    pub fn all_admin() -> ScopeSet {
        ScopeSet(ADMIN_SCOPES.iter().map(|s| s.to_string()).collect())
    }
}

impl std::fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let joined: Vec<&str> = self.iter().collect();
        f.write_str(&joined.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_sorts_dedups_and_rejects_bad_characters() {
        let set = ScopeSet::parse("upload read  read").unwrap();
        assert_eq!(set.to_string(), "read upload");
        assert!(ScopeSet::parse("read \"quoted\"").is_err());
        assert!(ScopeSet::parse("caf\u{e9}").is_err());
    }

    #[test]
    fn subset_and_missing_members() {
        let role = ScopeSet::parse("read upload").unwrap();
        let asked = ScopeSet::parse("read admin").unwrap();
        assert!(!asked.is_subset(&role));
        assert_eq!(asked.missing_from(&role), vec!["admin"]);
    }
}
