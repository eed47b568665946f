//! Console sessions (API.md section 4, "Sessions"): server-side, so every
//! node honours a sign-out or a disabled user at once. The cookie value is a
//! 256-bit random secret; only its SHA-256 is stored. A session lasts 8
//! hours at most and ends after 30 minutes without use.

use super::passwords;
use super::users::actor_for;
use super::{audit, Actor, ServiceError, ServiceResult};
use crate::domain::{User, UserStatus};
use crate::store::models::SessionRow;
use crate::store::{sessions as store, users as store_users, AnyConnection, Conn};
use crate::tokens::opaque::{self, Secret};

/// Absolute lifetime of a session.
pub const ABSOLUTE_TTL: i64 = 8 * 3600;
/// A session unused this long ends.
pub const IDLE_TTL: i64 = 30 * 60;
/// `last_seen_at` is written at most this often per session.
pub const TOUCH_EVERY: i64 = 60;

/// The new session's cookie value, shown once (set as `keyward_session`).
#[derive(Debug)]
pub struct SessionCookie {
    pub value: Secret,
    pub expires_at: i64,
}

/// Why a sign-in failed. `Refused` is the one answer for a wrong email, a
/// wrong password, a disabled user and a user without a password.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("wrong email or password")]
    Refused,
    #[error(transparent)]
    Store(#[from] ServiceError),
}

impl From<diesel::result::Error> for SignInError {
    fn from(e: diesel::result::Error) -> Self {
        SignInError::Store(e.into())
    }
}

fn csrf_token() -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    URL_SAFE_NO_PAD.encode(opaque::random_bytes::<32>())
}

/// The actor of a failed sign-in: the email given (never the password), at
/// the user's tenant when there is one, else the root's.
fn failure_actor(
    conn: &mut AnyConnection,
    email: &str,
    user: Option<&User>,
    ip: Option<String>,
) -> ServiceResult<(Actor, Option<String>)> {
    let tenant_id = match user {
        Some(user) => user.tenant_id.to_string(),
        None => super::tenants::root(conn)?
            .map(|t| t.id.to_string())
            .ok_or_else(|| ServiceError::Internal("the store has no root tenant".into()))?,
    };
    let path = crate::store::tenants::path_of(conn, &tenant_id)?.unwrap_or_default();
    let shown: String = email.chars().take(254).collect();
    Ok((
        Actor {
            name: shown,
            client_id: None,
            user_id: None,
            tenant_id: tenant_id.clone(),
            tenant_path: path,
            scopes: Default::default(),
            ip,
        },
        Some(tenant_id),
    ))
}

/// Signs a person in with email and password at `now`. Every failure is the
/// same `Refused`, and takes the time of one Argon2 verification (a dummy
/// one when there is no hash to check), so neither the answer nor its timing
/// tells whether the email exists. Audited either way.
pub fn sign_in(
    conn: &mut Conn<'_>,
    email: &str,
    password: &str,
    ip: Option<String>,
    now: i64,
) -> Result<(SessionCookie, String), SignInError> {
    let user = store_users::find_by_email(conn, email.trim())?;
    let verified = match user.as_ref().and_then(|u| u.password_hash.as_deref()) {
        Some(phc) => passwords::verify(password, phc),
        None => {
            passwords::verify_dummy(password);
            false
        }
    };
    let user = match user {
        Some(user) if verified && user.status == UserStatus::Active => user,
        other => {
            conn.write(|tx| {
                let (actor, tenant_id) = failure_actor(tx, email, other.as_ref(), ip)?;
                let target = other.as_ref().map(|u| u.user_id.to_string());
                audit::record(
                    tx,
                    &actor,
                    "user.sign_in_failed",
                    target.as_deref(),
                    tenant_id.as_deref(),
                    serde_json::json!({}),
                )
            })?;
            return Err(SignInError::Refused);
        }
    };
    let cookie = opaque::generate(opaque::SESSION_PREFIX);
    let csrf = csrf_token();
    let row = SessionRow {
        session_hash: cookie.hash(),
        user_id: user.user_id.to_string(),
        csrf_token: csrf.clone(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + ABSOLUTE_TTL,
    };
    conn.write(|tx| {
        store::insert(tx, &row)?;
        store_users::set_last_login(tx, &user.user_id, now)?;
        let actor = actor_for(tx, &user, ip)?;
        audit::record(
            tx,
            &actor,
            "user.sign_in",
            Some(&user.user_id),
            Some(&user.tenant_id),
            serde_json::json!({}),
        )
    })?;
    Ok((
        SessionCookie {
            value: cookie,
            expires_at: row.expires_at,
        },
        csrf,
    ))
}

/// The user of the session whose cookie value is `cookie` at `now`, and
/// the session's CSRF token. None: no such session, or it expired (8 h
/// absolute, 30 min idle; an expired one is deleted), or its user is not
/// active. `last_seen_at` is refreshed at most once a minute.
pub fn authenticate_session(
    conn: &mut Conn<'_>,
    cookie: &str,
    now: i64,
) -> ServiceResult<Option<(User, String)>> {
    let hash = opaque::sha256_hex(cookie.as_bytes());
    let Some(session) = store::find(conn, &hash)? else {
        return Ok(None);
    };
    if session.expires_at <= now || session.last_seen_at + IDLE_TTL <= now {
        conn.write(|tx| store::delete(tx, &hash).map_err(ServiceError::from))?;
        return Ok(None);
    }
    let Some(user) = store_users::find(conn, &session.user_id)? else {
        return Ok(None);
    };
    if user.status != UserStatus::Active {
        return Ok(None);
    }
    if now - session.last_seen_at >= TOUCH_EVERY {
        conn.write(|tx| store::touch(tx, &hash, now).map_err(ServiceError::from))?;
    }
    Ok(Some((user, session.csrf_token)))
}

/// Ends the session whose cookie value is `cookie`. Signing out of a
/// session that no longer exists is not an error.
pub fn sign_out(conn: &mut Conn<'_>, cookie: &str, ip: Option<String>) -> ServiceResult<()> {
    let hash = opaque::sha256_hex(cookie.as_bytes());
    conn.write(|tx| {
        let Some(session) = store::find(tx, &hash)? else {
            return Ok(());
        };
        store::delete(tx, &hash)?;
        let Some(user) = store_users::find(tx, &session.user_id)? else {
            return Ok(());
        };
        let actor = actor_for(tx, &user, ip)?;
        audit::record(
            tx,
            &actor,
            "user.sign_out",
            Some(&user.user_id),
            Some(&user.tenant_id),
            serde_json::json!({}),
        )
    })
}

/// Deletes the sessions expired at `now` (housekeeping; an expired session
/// is refused whether or not it was deleted).
pub fn purge_expired(conn: &mut Conn<'_>, now: i64) -> ServiceResult<usize> {
    conn.write(|tx| store::delete_expired(tx, now, IDLE_TTL).map_err(ServiceError::from))
}
