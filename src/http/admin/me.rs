//! The caller itself (API.md section 4, "Sessions"): who it is, and for a
//! person signed in to the console, the CSRF token and a password change.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::{read_json, run, signed_in};
use crate::http::AppState;
use crate::oauth::authenticate::{session_cookie, Who};
use crate::oauth::OAuthError;
use crate::service::clients::{self, ClientView, IssuedCredential};
use crate::service::personal_keys;
use crate::service::users::{self, UserView};

/// `{"user", "csrf_token"}` for a console session, `{"client"}` for a
/// bearer credential.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Me {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub user: Option<UserView>,
    /// Send it as `X-CSRF-Token` with every change made with the cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, value_type = String)]
    pub csrf_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub client: Option<ClientView>,
}

#[utoipa::path(
    get,
    path = "/admin/v1/me",
    tag = "people",
    summary = "The caller: a signed-in person (with the CSRF token) or a client",
    responses((status = 200, body = Me), crate::http::openapi::AdminReadErrors),
    security(("bearer" = []), ("session" = []))
)]
pub async fn me(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, OAuthError> {
    let caller = signed_in(&req, &state).await?;
    let me = match caller.who {
        Who::User { user, csrf_token } => Me {
            user: Some(UserView::new(&user)),
            csrf_token: Some(csrf_token),
            client: None,
        },
        Who::Client(record) => {
            // The directory keeps only what authentication needs: the
            // client as the admin API shows it is read from the store.
            let (actor, id) = (caller.actor, record.client_id.to_string());
            let client = run(&state, move |conn| {
                clients::find_reachable(conn, &actor, &id)
            })
            .await?;
            Me {
                user: None,
                csrf_token: None,
                client: Some(ClientView::new(&client, crate::service::now())),
            }
        }
    };
    Ok(crate::http::no_store_json(&me))
}

/// A person's new password, given the current one.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    /// 12 to 1024 characters, not the email.
    #[schema(min_length = 12, max_length = 1024)]
    pub new_password: String,
}

#[utoipa::path(
    post,
    path = "/admin/v1/me/password",
    tag = "people",
    summary = "A signed-in person changes their password; their other sessions end",
    request_body = PasswordChange,
    responses((status = 204, description = "changed"), crate::http::openapi::AdminWriteErrors),
    security(("session" = []))
)]
pub async fn change_password(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let caller = signed_in(&req, &state).await?;
    let Who::User { user, .. } = caller.who else {
        return Err(OAuthError::access_denied(
            "only a person signed in to the console has a password",
        ));
    };
    let body: PasswordChange = read_json(payload, false).await?;
    let session = session_cookie(req.headers()).map(str::to_string);
    let ip = caller.actor.ip.clone();
    run(&state, move |conn| {
        users::change_password(
            conn,
            &user.user_id,
            session.as_deref(),
            &body.current_password,
            &body.new_password,
            ip,
        )
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The person behind the request's console session, and the address they
/// call from; a bearer caller has no personal key.
async fn person(
    req: &HttpRequest,
    state: &AppState,
) -> Result<(crate::domain::User, Option<String>), OAuthError> {
    let caller = signed_in(req, state).await?;
    match caller.who {
        Who::User { user, .. } => Ok((*user, caller.actor.ip)),
        Who::Client(_) => Err(OAuthError::access_denied(
            "a personal API access key belongs to a person signed in to the console",
        )),
    }
}

/// `{"expires_in"?}`: without it the key does not expire.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPersonalKey {
    #[serde(default)]
    pub expires_in: Option<crate::service::durations::DurationSpec>,
}

#[utoipa::path(
    get,
    path = "/admin/v1/me/personal-key",
    tag = "people",
    summary = "The signed-in person's personal API access key (404 when none)",
    responses((status = 200, body = ClientView), crate::http::openapi::AdminReadErrors),
    security(("session" = []))
)]
pub async fn personal_key(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let (user, _) = person(&req, &state).await?;
    let key = run(&state, move |conn| personal_keys::find(conn, &user)).await?;
    let key = key.ok_or_else(|| OAuthError::not_found("no personal API access key"))?;
    Ok(crate::http::no_store_json(&ClientView::new(
        &key,
        crate::service::now(),
    )))
}

#[utoipa::path(
    post,
    path = "/admin/v1/me/personal-key",
    tag = "people",
    summary = "Create the personal API access key; its secret is shown this once (409 when one exists)",
    request_body = NewPersonalKey,
    responses((status = 201, body = crate::service::clients::CreatedClient), crate::http::openapi::AdminWriteErrors),
    security(("session" = []))
)]
pub async fn create_personal_key(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let (user, ip) = person(&req, &state).await?;
    let body: NewPersonalKey = read_json(payload, true).await?;
    let (view, secret) = run(&state, move |conn| {
        personal_keys::create(conn, &user, body.expires_in.as_ref(), ip)
    })
    .await?;
    Ok(super::created(&clients::with_credential(
        &view,
        &IssuedCredential::ClientSecret(secret),
    )))
}

#[utoipa::path(
    post,
    path = "/admin/v1/me/personal-key/secret",
    tag = "people",
    summary = "A new secret for the personal API access key; the old one stops at once",
    responses((status = 200, body = crate::service::clients::CreatedClient), crate::http::openapi::AdminWriteErrors),
    security(("session" = []))
)]
pub async fn personal_key_secret(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let (user, ip) = person(&req, &state).await?;
    let (view, secret) = run(&state, move |conn| {
        personal_keys::new_secret(conn, &user, ip)
    })
    .await?;
    Ok(crate::http::no_store_json(&clients::with_credential(
        &view,
        &IssuedCredential::ClientSecret(secret),
    )))
}

#[utoipa::path(
    delete,
    path = "/admin/v1/me/personal-key",
    tag = "people",
    summary = "Delete the personal API access key: it and its tokens stop at once",
    responses((status = 204, description = "deleted"), crate::http::openapi::AdminWriteErrors),
    security(("session" = []))
)]
pub async fn delete_personal_key(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let (user, ip) = person(&req, &state).await?;
    run(&state, move |conn| personal_keys::delete(conn, &user, ip)).await?;
    Ok(HttpResponse::NoContent().finish())
}
