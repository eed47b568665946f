//! The admin scopes (API.md 3) and the extractor that checks them. A handler
//! names the scope it needs once, in its signature (`Admin<ClientsWrite>`);
//! the route table reads the same type to write the operation's `security`
//! into the OpenAPI document, so the two cannot disagree.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};

use super::caller;
use crate::http::AppState;
use crate::oauth::OAuthError;
use crate::service::Actor;

/// An admin scope an endpoint can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    ClientsRead,
    ClientsWrite,
    ClientsDelete,
    TenantsRead,
    TenantsWrite,
    UsersRead,
    UsersWrite,
    AuditRead,
}

impl Scope {
    pub const ALL: [Scope; 8] = [
        Scope::ClientsRead,
        Scope::ClientsWrite,
        Scope::ClientsDelete,
        Scope::TenantsRead,
        Scope::TenantsWrite,
        Scope::UsersRead,
        Scope::UsersWrite,
        Scope::AuditRead,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::ClientsRead => "clients:read",
            Scope::ClientsWrite => "clients:write",
            Scope::ClientsDelete => "clients:delete",
            Scope::TenantsRead => "tenants:read",
            Scope::TenantsWrite => "tenants:write",
            Scope::UsersRead => "users:read",
            Scope::UsersWrite => "users:write",
            Scope::AuditRead => "audit:read",
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope as a type, so that a handler's signature can name it.
pub trait Required {
    const SCOPE: Scope;
}

macro_rules! required {
    ($($marker:ident),* $(,)?) => {
        $(
            #[doc = concat!("The `", stringify!($marker), "` scope as a type.")]
            pub struct $marker;
            impl Required for $marker {
                const SCOPE: Scope = Scope::$marker;
            }
        )*
    };
}

required!(
    ClientsRead,
    ClientsWrite,
    ClientsDelete,
    TenantsRead,
    TenantsWrite,
    UsersRead,
    UsersWrite,
    AuditRead
);

/// The authenticated admin caller, holding scope `S`: the extractor form of
/// [`caller`], which it calls.
pub struct Admin<S> {
    pub actor: Actor,
    scope: PhantomData<S>,
}

impl<S: Required + 'static> FromRequest for Admin<S> {
    type Error = OAuthError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, OAuthError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .cloned()
                .ok_or_else(|| OAuthError::server_error(&"the application state is missing"))?;
            let actor = caller(&req, &state, S::SCOPE).await?;
            Ok(Admin {
                actor,
                scope: PhantomData,
            })
        })
    }
}

/// The argument list of an admin handler: it starts with `Admin<S>`, which
/// says the scope to document.
pub trait AdminArgs {
    const SCOPE: Scope;
}

macro_rules! admin_args {
    ($($rest:ident),*) => {
        impl<S: Required, $($rest),*> AdminArgs for (Admin<S>, $($rest,)*) {
            const SCOPE: Scope = S::SCOPE;
        }
    };
}

admin_args!();
admin_args!(A);
admin_args!(A, B);
admin_args!(A, B, C);
admin_args!(A, B, C, D);

#[cfg(test)]
mod tests {
    use super::Scope;
    use crate::service::scopes::ADMIN_SCOPES;

    #[test]
    fn every_admin_scope_an_endpoint_requires_is_an_admin_scope() {
        for scope in Scope::ALL {
            assert!(ADMIN_SCOPES.contains(&scope.as_str()), "{scope}");
        }
    }
}
