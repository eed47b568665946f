//! First start: the root tenant and the bootstrap admin client.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::clients::{self, IssuedCredential, NewClient};
use super::scopes::ScopeSet;
use super::{tenants, Actor, ServiceError, ServiceResult};
use crate::store::Conn;

pub const BOOTSTRAP_FILE: &str = "bootstrap-admin.json";
pub const ROOT_TENANT_NAME: &str = "root";

/// Creates the root tenant and an admin client when the store has no tenant
/// yet, writing the admin's credentials once to `<data_dir>/bootstrap-admin.json`
/// (mode 0600). Returns the file's path when it created them. Run under the
/// migration lock, so concurrent first starts create one admin.
pub fn ensure_root_and_admin(
    conn: &mut Conn<'_>,
    data_dir: &Path,
) -> ServiceResult<Option<PathBuf>> {
    if tenants::root(conn)?.is_some() {
        return Ok(None);
    }
    let path = data_dir.join(BOOTSTRAP_FILE);
    if path.exists() {
        return Err(ServiceError::Invalid(format!(
            "{} exists but the store is empty: it belongs to another store; move it away and start again",
            path.display()
        )));
    }
    fs::create_dir_all(data_dir)
        .map_err(|e| ServiceError::Internal(format!("{}: {e}", data_dir.display())))?;
    conn.write(|tx| {
        let root = tenants::insert(tx, ROOT_TENANT_NAME, None, &[])?;
        let system = Actor {
            name: "bootstrap".into(),
            client_id: None,
            user_id: None,
            tenant_id: root.id.to_string(),
            tenant_path: root.path.to_string(),
            scopes: ScopeSet::all_admin(),
            ip: None,
        };
        let (view, credential) = clients::register_in(
            tx,
            &system,
            NewClient {
                name: "bootstrap admin".into(),
                role: "admin".into(),
                description: Some(
                    "Created on first start; its secret is in bootstrap-admin.json".into(),
                ),
                ..NewClient::default()
            },
        )?;
        let IssuedCredential::ClientSecret(secret) = credential else {
            return Err(ServiceError::Internal(
                "bootstrap admin got no secret".into(),
            ));
        };
        let body = serde_json::json!({
            "client_id": view.client_id,
            "client_secret": secret.expose(),
            "tenant_id": root.id,
        });
        // Written inside the transaction: if the file cannot be written, no
        // admin exists whose secret nobody knows.
        write_private_file(&path, &format!("{body:#}\n"))
            .map_err(|e| ServiceError::Internal(format!("{}: {e}", path.display())))?;
        Ok(Some(path.clone()))
    })
    .inspect_err(|_| {
        // The transaction rolled back: leave no orphaned file either.
        let _ = fs::remove_file(data_dir.join(BOOTSTRAP_FILE));
    })
}

fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}
