//! Console passwords (API.md section 4, "Users"): 12 to 1024 characters,
//! not the email, stored as an Argon2id PHC string with the OWASP
//! parameters (19 MiB, 2 passes, 1 lane), checked in constant time.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use super::{ServiceError, ServiceResult};
use crate::tokens::opaque::random_bytes;

pub const MIN_CHARS: usize = 12;
pub const MAX_CHARS: usize = 1024;

/// OWASP Password Storage Cheat Sheet, Argon2id: m=19456 KiB, t=2, p=1.
const MEMORY_KIB: u32 = 19_456;
const PASSES: u32 = 2;
const LANES: u32 = 1;

fn hasher() -> ServiceResult<Argon2<'static>> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None)
        .map_err(|e| ServiceError::Internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// The rules a new password must meet.
pub fn validate(password: &str, email: &str) -> ServiceResult<()> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(ServiceError::Invalid(format!(
            "the password must be at least {MIN_CHARS} characters"
        )));
    }
    if chars > MAX_CHARS {
        return Err(ServiceError::Invalid(format!(
            "the password must be at most {MAX_CHARS} characters"
        )));
    }
    if password.to_lowercase() == email.trim().to_lowercase() {
        return Err(ServiceError::Invalid(
            "the password must not be the email".into(),
        ));
    }
    Ok(())
}

/// The PHC string of `password` with a fresh 128-bit salt.
pub fn hash(password: &str) -> ServiceResult<String> {
    let salt = SaltString::encode_b64(&random_bytes::<16>())
        .map_err(|e| ServiceError::Internal(format!("argon2 salt: {e}")))?;
    hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServiceError::Internal(format!("argon2: {e}")))
}

/// Whether `password` matches the PHC string `phc`. The comparison of the
/// derived key is argon2's own, in constant time; an unreadable hash does
/// not match.
pub fn verify(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    // The parameters are read from the PHC string itself.
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Spends the time of one verification, for a sign-in that has no hash to
/// check (unknown email, no password yet), so its answer comes no sooner.
pub fn verify_dummy(password: &str) {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    if let Some(phc) = DUMMY.get_or_init(|| hash("keyward dummy password, never matches").ok()) {
        let _ = verify(password, phc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_argon2id_with_the_owasp_parameters_and_verifies() {
        let phc = hash("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse battery", &phc));
        assert!(!verify("correct horse batterz", &phc));
        assert!(!verify("correct horse battery", "not a hash"));
        // A fresh salt each time.
        assert_ne!(phc, hash("correct horse battery").unwrap());
    }

    #[test]
    fn the_rules_length_and_not_the_email() {
        assert!(validate("elevenchars", "a@example.com").is_err());
        assert!(validate("twelve chars", "a@example.com").is_ok());
        assert!(validate(&"x".repeat(1024), "a@example.com").is_ok());
        assert!(validate(&"x".repeat(1025), "a@example.com").is_err());
        // Characters, not bytes.
        assert!(validate(&"\u{e9}".repeat(12), "a@example.com").is_ok());
        assert!(validate("Ann.Long@Example.com", "ann.long@example.com").is_err());
    }
}
