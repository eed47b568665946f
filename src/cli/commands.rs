//! Subcommands. Each one builds the same request the admin API would and
//! calls the same service; `--json` prints the service's answer as JSON.

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use super::CliError;
use crate::assertions::fetch::KeyFetcher;
use crate::assertions::key_cache::KeyCache;
use crate::config::Settings;
use crate::domain::FederatedSubject;
use crate::service::audit::{self, AuditFilter};
use crate::service::clients::{
    self, ClientFilter, ClientPatch, IssuedCredential, NewClient, StatusChange,
};
use crate::service::device_groups::{self, NewDeviceGroup};
use crate::service::durations::DurationSpec;
use crate::service::roles::{self, NewRole};
use crate::service::scopes::ScopeSet;
use crate::service::trusted_issuers::{self, NewTrustedIssuer};
use crate::service::users::{self, NewUser, UserFilter};
use crate::service::{tenants, Actor, ServiceError};
use crate::startup::{open_existing_store, open_store, CLI_CHECKOUT};
use crate::store::changes::Change;
use crate::store::{AnyConnection, Conn};
use crate::tokens::keys::{generate_key_file, remove_key_file, KeyRing};

#[derive(Debug, Parser)]
#[command(
    name = "keyward",
    version,
    about = "OAuth 2.0 client-credentials authorization server"
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve,
    /// Create or update the store's tables (and, on an empty store, the root
    /// tenant and bootstrap admin).
    Migrate,
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
    /// Clients (client credentials and API tokens).
    Client {
        #[command(subcommand)]
        action: ClientCommand,
    },
    /// Tenants.
    Tenant {
        #[command(subcommand)]
        action: TenantCommand,
    },
    /// Device groups.
    DeviceGroup {
        #[command(subcommand)]
        action: DeviceGroupCommand,
    },
    /// Roles.
    Role {
        #[command(subcommand)]
        action: RoleCommand,
    },
    /// Trusted issuers: external issuers (a Kubernetes cluster, a CI
    /// system) whose tokens clients may present as client assertions.
    TrustedIssuer {
        #[command(subcommand)]
        action: TrustedIssuerCommand,
    },
    /// Users: people who sign in to the console.
    User {
        #[command(subcommand)]
        action: UserCommand,
    },
    /// Remove credentials expired or revoked more than KEYWARD_RETENTION_DAYS
    /// ago (and spent records), as servers do hourly. Prints the ids removed,
    /// one a line.
    Purge {
        /// Print the ids that would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// The audit log, newest first.
    Audit {
        #[arg(long)]
        target: Option<String>,
        #[arg(long)]
        action: Option<String>,
        /// RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a signing key if there is none of the configured algorithm.
    Generate {
        #[arg(long)]
        json: bool,
    },
    /// Make a new signing key; older keys stay published until their tokens expire.
    Rotate {
        #[arg(long)]
        json: bool,
    },
    /// Print the published kids, one a line, the signing key first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Take a key that is not the signing key out of the JWKS; every running
    /// server drops it, and the tokens it signed, at once.
    Remove {
        /// The key's kid (it may start with '-': kids are base64url).
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
}

/// Settings of a client that can change after creation.
#[derive(Debug, Args, Default)]
pub struct ClientSettings {
    /// Free text about what the client is for.
    #[arg(long)]
    pub description: Option<String>,
    /// Who holds the credential (free text).
    #[arg(long)]
    pub owner: Option<String>,
    /// Where expiry notices go.
    #[arg(long)]
    pub owner_email: Option<String>,
    /// Expiry from now: 7d 14d, 1m 2m 3m 6m (months of 30 days), 1y, or seconds.
    #[arg(long, conflicts_with = "expires_at")]
    pub expires_in: Option<String>,
    /// Expiry as an RFC 3339 time.
    #[arg(long)]
    pub expires_at: Option<String>,
    /// Whether the holder may renew its tokens.
    #[arg(long)]
    pub can_renew: Option<bool>,
    /// Comma-separated CIDRs or addresses allowed to use the client.
    #[arg(long, value_delimiter = ',')]
    pub allowed_ips: Option<Vec<String>>,
    /// Access token lifetime in seconds (60 to 86400).
    #[arg(long)]
    pub access_token_ttl: Option<i64>,
    /// API token lifetime: 7d 14d, 1m 2m 3m 6m (months of 30 days), 1y, or seconds.
    #[arg(long)]
    pub token_lifetime: Option<String>,
    /// An allowed audience (repeat for several).
    #[arg(long)]
    pub audience: Option<Vec<String>>,
    /// KEY=VALUE metadata (repeat for several), e.g. type=embedded.
    #[arg(long, value_parser = parse_key_value)]
    pub metadata: Option<Vec<(String, String)>>,
}

/// How a client proves itself, given at creation and changed by `update`
/// (API.md section 3, "Clients").
#[derive(Debug, Args, Default)]
pub struct ClientKeyArgs {
    /// A file holding the client's JWK Set (public keys, JSON), for
    /// private_key_jwt.
    #[arg(long, value_name = "PATH")]
    pub jwks_file: Option<std::path::PathBuf>,
    /// Where the client publishes its JWK Set, for private_key_jwt; fetched
    /// once now, so a URL that does not answer with usable keys is refused.
    #[arg(long, value_name = "URL")]
    pub jwks_uri: Option<String>,
    /// A workload identity the client answers to: a trusted issuer and the
    /// `sub` its tokens carry, such as
    /// `--federated-subject https://token.actions.githubusercontent.com repo:acme/app:ref:refs/heads/main`
    /// (repeat for several; on update, the list given replaces the old one).
    #[arg(long, num_args = 2, value_names = ["ISSUER", "SUBJECT"], allow_hyphen_values = true)]
    pub federated_subject: Vec<String>,
}

impl ClientKeyArgs {
    /// The JWK Set file as JSON; the service checks what it holds.
    fn jwks(&self) -> Result<Option<Value>, CliError> {
        let Some(path) = &self.jwks_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::Failed(format!(
                "--jwks-file {}: cannot be read: {e}",
                path.display()
            ))
        })?;
        serde_json::from_str(&text).map(Some).map_err(|e| {
            CliError::Failed(format!(
                "--jwks-file {}: not JSON ({e}); give a JWK Set, {{\"keys\": [...]}}",
                path.display()
            ))
        })
    }

    /// The `--federated-subject` pairs: clap takes exactly two values at
    /// each, so the list is issuer, subject, issuer, subject...
    fn subjects(&self) -> Vec<FederatedSubject> {
        self.federated_subject
            .chunks_exact(2)
            .map(|pair| FederatedSubject {
                issuer: pair[0].clone(),
                subject: pair[1].clone(),
            })
            .collect()
    }
}

/// The key cache a `jwks_uri` or a trusted issuer is checked with, under
/// the same fetch rules as the server's (`KEYWARD_ALLOW_INSECURE_JWKS`).
fn key_cache(settings: &Settings) -> std::sync::Arc<KeyCache> {
    KeyCache::new(
        KeyFetcher::new(settings.allow_insecure_jwks),
        settings.clock.clone().unwrap_or_else(crate::clock::system),
    )
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

fn duration(text: &str) -> DurationSpec {
    match text.parse::<i64>() {
        Ok(seconds) => DurationSpec::Seconds(seconds),
        Err(_) => DurationSpec::Named(text.to_string()),
    }
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client; its secret or API token is printed this once.
    Create {
        /// A name people recognise the client by.
        #[arg(long)]
        name: String,
        /// admin, uploader, reader, resource_server, or a custom role.
        #[arg(long)]
        role: String,
        /// client_credentials (default) or api_token.
        #[arg(long)]
        kind: Option<String>,
        /// Tenant id; default the root tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Space-separated subset of the role's scopes.
        #[arg(long)]
        scopes: Option<String>,
        /// Device group id (of the client's tenant); in every token.
        #[arg(long)]
        device_group: Option<String>,
        /// How it authenticates at the token endpoint: client_secret_basic
        /// (default), client_secret_post, or private_key_jwt (its keys, from
        /// --jwks-file or --jwks-uri, or --federated-subject; no secret).
        #[arg(long, value_name = "METHOD", value_parser = ["client_secret_basic", "client_secret_post", "private_key_jwt"])]
        auth: Option<String>,
        #[command(flatten)]
        keys: ClientKeyArgs,
        #[command(flatten)]
        settings: ClientSettings,
        #[arg(long)]
        json: bool,
    },
    /// List clients: all but revoked, or --status all to show revoked too.
    List {
        /// active, disabled, revoked, expired or all.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        json: bool,
    },
    Show {
        client_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Change what may change: name, owner, email, renewal, expiry, addresses,
    /// lifetimes, keys and federated subjects.
    Update {
        client_id: String,
        #[arg(long)]
        name: Option<String>,
        /// Remove the expiry.
        #[arg(long, conflicts_with_all = ["expires_in", "expires_at"])]
        no_expiry: bool,
        #[command(flatten)]
        keys: ClientKeyArgs,
        /// Remove the registered JWK Set.
        #[arg(long, conflicts_with = "jwks_file")]
        no_jwks: bool,
        /// Remove the JWK Set URL.
        #[arg(long, conflicts_with = "jwks_uri")]
        no_jwks_uri: bool,
        /// Remove every federated subject.
        #[arg(long, conflicts_with = "federated_subject")]
        no_federated_subjects: bool,
        #[command(flatten)]
        settings: ClientSettings,
        #[arg(long)]
        json: bool,
    },
    /// Disable (restorable).
    Disable {
        client_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Enable again; unexpired tokens work again.
    Enable {
        client_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke for good: every credential and token of the client stops.
    Revoke {
        client_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a client that is not active.
    Delete { client_id: String },
    /// A new secret; the old one stops at once, or after --grace-seconds.
    Secret {
        client_id: String,
        #[arg(long, default_value_t = 0)]
        grace_seconds: i64,
        #[arg(long)]
        json: bool,
    },
    /// Reissue an API token: a new string; earlier ones work to their expiry.
    Reissue {
        client_id: String,
        #[arg(long)]
        json: bool,
    },
    /// The client's API token strings (never their values).
    Tokens {
        client_id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    Create {
        #[arg(long)]
        name: String,
        /// Parent tenant id; default the root tenant.
        #[arg(long)]
        parent: Option<String>,
        /// Owner email (repeat for several); they get expiry summaries.
        #[arg(long)]
        owner_email: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        owner_email: Option<Vec<String>>,
        /// Move the tenant (and all below it) under another.
        #[arg(long)]
        parent: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete a tenant with no clients, sub-tenants or device groups.
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
pub enum DeviceGroupCommand {
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        json: bool,
    },
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    Delete {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TrustedIssuerCommand {
    /// Trust an issuer for the tenant's subtree; its keys are fetched first,
    /// and an issuer whose keys cannot be had is refused.
    Add {
        /// The `iss` its tokens carry, exactly (such as
        /// https://token.actions.githubusercontent.com).
        #[arg(long)]
        issuer: String,
        /// Its JWK Set URL; default: from the issuer's discovery document.
        #[arg(long, value_name = "URL")]
        jwks_uri: Option<String>,
        /// Tenant id; default the root tenant.
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The trusted issuers, one a line.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Stop trusting an issuer (refused while a client names it).
    Remove { id: String },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. Prints a one-time setup link (valid 24 hours) where
    /// the person chooses a password, unless --password-stdin gives one.
    Create {
        /// The person's email, unique regardless of case; they sign in with it.
        #[arg(long)]
        email: String,
        /// The person's name, as the console shows it.
        #[arg(long)]
        name: String,
        /// The role whose rights the person has in the console.
        #[arg(long)]
        role: String,
        /// The tenant the person belongs to (default: the root tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// Read the password from the first line of standard input instead
        /// of printing a setup link.
        #[arg(long)]
        password_stdin: bool,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the users, one a line.
    List {
        /// Only the users of this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Only the users with this role.
        #[arg(long)]
        role: Option<String>,
        /// Only the users with this status: active or disabled.
        #[arg(long)]
        status: Option<String>,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set a user's password (the way back in for a locked-out admin); every
    /// session of the user ends.
    SetPassword {
        /// The user's email.
        #[arg(long)]
        email: String,
        /// Read the password from the first line of standard input (required:
        /// a password is never taken as an argument).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Print a new one-time setup link for a user (valid 24 hours); the
    /// user's older link stops working.
    SetupLink {
        /// The user's email.
        #[arg(long)]
        email: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    Create {
        #[arg(long)]
        name: String,
        /// Space-separated scopes.
        #[arg(long)]
        scopes: String,
        #[arg(long)]
        json: bool,
    },
    List {
        #[arg(long)]
        json: bool,
    },
}

/// The CLI acts as an administrator of the root tenant.
fn cli_actor(conn: &mut AnyConnection) -> Result<Actor, CliError> {
    let root = tenants::root(conn)?
        .ok_or_else(|| CliError::Failed("the store has no root tenant".into()))?;
    Ok(Actor {
        name: "cli".into(),
        client_id: None,
        user_id: None,
        tenant_id: root.id.to_string(),
        tenant_path: root.path.to_string(),
        scopes: ScopeSet::all_admin(),
        ip: None,
    })
}

fn to_value(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Prints `value` as JSON, or for people: an object as `key: value` lines,
/// an array one item a line.
fn print(value: &Value, json: bool, columns: &[&str]) -> Result<(), CliError> {
    if json {
        let text =
            serde_json::to_string_pretty(value).map_err(|e| CliError::Failed(e.to_string()))?;
        println!("{text}");
        return Ok(());
    }
    let show = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    match value {
        Value::Array(items) => {
            for item in items {
                let cells: Vec<String> = columns.iter().map(|c| show(&item[*c])).collect();
                println!("{}", cells.join("\t"));
            }
        }
        Value::Object(map) => {
            let width = map.keys().map(String::len).max().unwrap_or(0);
            for (key, v) in map {
                println!("{key:width$}  {}", show(v));
            }
        }
        other => println!("{}", show(other)),
    }
    Ok(())
}

const CLIENT_COLUMNS: &[&str] = &["client_id", "kind", "role", "status", "tenant_id", "name"];

fn secret_shown_once() {
    eprintln!("Store the secret now: it will not be shown again.");
}

pub fn run(settings: &Settings, command: Command) -> Result<(), CliError> {
    match command {
        Command::Serve => Err(CliError::Failed("serve is not a one-shot command".into())),
        Command::Keys { action } => keys(settings, action),
        Command::Migrate => {
            let (_, created) = open_store(settings, 1, CLI_CHECKOUT)?;
            match created {
                Some(path) => println!(
                    "store migrated; bootstrap admin credentials written to {}",
                    path.display()
                ),
                None => println!("store migrated"),
            }
            Ok(())
        }
        other => {
            let db = open_existing_store(settings)?;
            let mut pooled = db.get().map_err(ServiceError::from)?;
            // A one-shot process: no cache here to tell; servers hear NOTIFY.
            let mut conn = Conn::detached(&mut pooled);
            let actor = cli_actor(&mut conn)?;
            match other {
                Command::User { action } => user(&mut conn, &actor, &settings.issuer(), action),
                Command::Purge { dry_run, json } => purge(&mut conn, settings, dry_run, json),
                Command::Client { action } => client(&mut conn, &actor, settings, action),
                Command::TrustedIssuer { action } => {
                    trusted_issuer(&mut conn, &actor, settings, action)
                }
                other => store_command(&mut conn, &actor, other),
            }
        }
    }
}

fn keys(settings: &Settings, action: KeysCommand) -> Result<(), CliError> {
    let count = || {
        std::fs::read_dir(&settings.keys_dir)
            .map(|d| d.count())
            .unwrap_or(0)
    };
    match action {
        KeysCommand::Generate { json } => {
            let before = count();
            let ring = KeyRing::open(&settings.keys_dir, Some(settings.signing_alg))?;
            let created = count() > before;
            let kid = ring.current().signing.kid.clone();
            if created {
                if let Err(e) = record_key_change(settings, "key.generate", &kid) {
                    eprintln!("warning: the new key is in place, but {e}");
                }
            }
            if json {
                return print(&json!({"kid": kid, "created": created}), true, &[]);
            }
            if created {
                println!("generated signing key {kid}");
            } else {
                println!("signing key {kid} already present");
            }
            Ok(())
        }
        KeysCommand::Rotate { json } => {
            generate_key_file(&settings.keys_dir, settings.signing_alg)?;
            let kids = KeyRing::open(&settings.keys_dir, None)?.current().kids();
            // Tell running servers now rather than at their next rescan.
            if let Err(e) = record_key_change(
                settings,
                "key.rotate",
                kids.first().map_or("", String::as_str),
            ) {
                eprintln!(
                    "warning: running servers will pick the key up at their next rescan: {e}"
                );
            }
            if json {
                return print(
                    &json!({"signing_kid": kids.first(), "kids": kids}),
                    true,
                    &[],
                );
            }
            println!(
                "new signing key {}",
                kids.first().cloned().unwrap_or_default()
            );
            Ok(())
        }
        KeysCommand::List { json } => {
            let kids = KeyRing::open(&settings.keys_dir, None)?.current().kids();
            if json {
                return print(
                    &json!({"signing_kid": kids.first(), "kids": kids}),
                    true,
                    &[],
                );
            }
            for kid in kids {
                println!("{kid}");
            }
            Ok(())
        }
        KeysCommand::Remove { kid } => {
            // The store first: a removal that running servers would not hear
            // of, or that the audit log would miss, is not made at all.
            let db = open_existing_store(settings)?;
            let mut pooled = db.get().map_err(ServiceError::from)?;
            let mut conn = Conn::detached(&mut pooled);
            let actor = cli_actor(&mut conn)?;
            // The file goes last: a refusal (the signing key, an unknown kid)
            // or a failed removal rolls the audit record back.
            let removed = conn.write(|tx| {
                audit::record(
                    tx,
                    &actor,
                    "key.remove",
                    Some(&kid),
                    None,
                    json!({"kid": kid}),
                )?;
                tx.announce(Change::Keys).map_err(ServiceError::from)?;
                remove_key_file(&settings.keys_dir, &kid).map_err(CliError::from)
            })?;
            println!("removed key {kid} ({})", removed.display());
            Ok(())
        }
    }
}

/// Audits a key change made by the CLI and announces it to running servers.
/// Before the first `serve` there is no store yet: the key is made, and the
/// audit log (which does not exist either) starts with the store.
fn record_key_change(settings: &Settings, action: &str, kid: &str) -> Result<(), CliError> {
    let db = match open_existing_store(settings) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("note: not audited: {e}");
            return Ok(());
        }
    };
    let mut pooled = db.get().map_err(ServiceError::from)?;
    let mut conn = Conn::detached(&mut pooled);
    let actor = cli_actor(&mut conn)?;
    conn.write(|tx| {
        audit::record(tx, &actor, action, Some(kid), None, json!({"kid": kid}))?;
        tx.announce(Change::Keys).map_err(ServiceError::from)?;
        Ok(())
    })
}

/// Every page of a cursor-paginated list.
fn all_pages<T>(
    mut page: impl FnMut(Option<&str>) -> Result<Vec<T>, ServiceError>,
    cursor: impl Fn(&T) -> String,
) -> Result<Vec<T>, CliError> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let items = page(after.as_deref())?;
        let done = items.len() < 500;
        after = items.last().map(&cursor);
        all.extend(items);
        if done {
            return Ok(all);
        }
    }
}

fn settings_patch(settings: ClientSettings, name: Option<String>, no_expiry: bool) -> ClientPatch {
    ClientPatch {
        name,
        description: settings.description.map(Some),
        owner: settings.owner.map(Some),
        owner_email: settings.owner_email.map(Some),
        can_renew: settings.can_renew,
        expires_at: if no_expiry {
            Some(None)
        } else {
            settings.expires_at.map(Some)
        },
        expires_in: settings.expires_in.as_deref().map(duration),
        allowed_ips: settings.allowed_ips,
        access_token_ttl: settings.access_token_ttl,
        token_lifetime: settings.token_lifetime.as_deref().map(duration),
        audience: settings.audience,
        metadata: settings.metadata.map(|pairs| {
            pairs
                .into_iter()
                .map(|(k, v)| (k, Value::from(v)))
                .collect()
        }),
        ..ClientPatch::default()
    }
}

fn store_command(conn: &mut Conn<'_>, actor: &Actor, command: Command) -> Result<(), CliError> {
    match command {
        Command::Tenant { action } => tenant(conn, actor, action),
        Command::DeviceGroup { action } => match action {
            DeviceGroupCommand::Create {
                name,
                tenant,
                description,
                json,
            } => {
                let group = device_groups::create(
                    conn,
                    actor,
                    NewDeviceGroup {
                        name,
                        tenant_id: tenant,
                        description,
                    },
                )?;
                print(&to_value(&group), json, &[])
            }
            DeviceGroupCommand::List { tenant, json } => {
                let all = all_pages(
                    |after| device_groups::list(conn, actor, tenant.as_deref(), 500, after),
                    |g| g.id.clone(),
                )?;
                print(&to_value(&all), json, &["id", "tenant_id", "name"])
            }
            DeviceGroupCommand::Delete { id } => {
                device_groups::delete(conn, actor, &id)?;
                println!("deleted device group {id}");
                Ok(())
            }
        },
        Command::Role { action } => match action {
            RoleCommand::Create { name, scopes, json } => {
                let scopes = scopes.split_whitespace().map(str::to_string).collect();
                print(
                    &to_value(&roles::create(
                        conn,
                        actor,
                        NewRole {
                            name,
                            scopes,
                            tenant_id: None,
                        },
                    )?),
                    json,
                    &[],
                )
            }
            RoleCommand::List { json } => {
                let all = all_pages(
                    |after| roles::list(conn, actor, 500, after),
                    |r| r.name.clone(),
                )?;
                print(&to_value(&all), json, &["name", "scopes"])
            }
        },
        Command::Audit {
            target,
            action,
            since,
            limit,
            json,
        } => {
            let filter = AuditFilter {
                target,
                action,
                since,
            };
            let events = audit::list(conn, actor, &filter, limit.clamp(1, 500), None)?;
            print(
                &to_value(&events),
                json,
                &["at", "actor", "action", "target", "ip"],
            )
        }
        Command::Serve
        | Command::Migrate
        | Command::Keys { .. }
        | Command::Client { .. }
        | Command::TrustedIssuer { .. }
        | Command::User { .. }
        | Command::Purge { .. } => Ok(()),
    }
}

/// `keyward purge [--dry-run]`: the ids of the clients and API token
/// strings removed (or, dry, due), one a line; a summary on stderr.
fn purge(
    conn: &mut Conn<'_>,
    settings: &Settings,
    dry_run: bool,
    json: bool,
) -> Result<(), CliError> {
    let report = crate::service::retention::purge_now(conn, settings.retention(), dry_run)?;
    if json {
        return print(&to_value(&report), true, &[]);
    }
    for id in report.clients.iter().chain(&report.api_tokens) {
        println!("{id}");
    }
    if report.elsewhere {
        eprintln!(
            "another purge holds the lease: one is running, or was stopped less than {} s \
             ago (a lease lapses that long after its holder's last batch); try again later",
            crate::store::retention::PURGE_LEASE_SECONDS
        );
    }
    eprintln!(
        "{} {} clients and {} API token strings{}",
        if dry_run { "would remove" } else { "removed" },
        report.clients.len(),
        report.api_tokens.len(),
        if dry_run {
            String::new()
        } else {
            format!(", and {} spent records", report.records)
        }
    );
    Ok(())
}

/// The first line of standard input, without its line ending.
fn password_from_stdin() -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::Failed(format!("reading the password from standard input: {e}")))?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    Ok(password.to_string())
}

fn print_setup_link(link: &users::SetupLink, issuer: &str) {
    println!("{}", link.url(issuer));
    eprintln!(
        "Give this one-time link to the person: it works once, until {}, and will not be shown again.",
        crate::service::rfc3339(link.expires_at)
    );
}

fn user(
    conn: &mut Conn<'_>,
    actor: &Actor,
    issuer: &str,
    action: UserCommand,
) -> Result<(), CliError> {
    match action {
        UserCommand::Create {
            email,
            name,
            role,
            tenant,
            password_stdin,
            json,
        } => {
            let password = if password_stdin {
                Some(password_from_stdin()?)
            } else {
                None
            };
            let (view, link) = users::create(
                conn,
                actor,
                NewUser {
                    email,
                    name,
                    role,
                    tenant_id: tenant,
                    password,
                },
            )?;
            if json {
                let mut value = to_value(&view);
                if let Some(link) = &link {
                    value["setup_url"] = Value::from(link.url(issuer));
                }
                return print(&value, true, &[]);
            }
            println!("created user {} ({})", view.user_id, view.email);
            match &link {
                Some(link) => print_setup_link(link, issuer),
                None => println!("password set"),
            }
            Ok(())
        }
        UserCommand::List {
            tenant,
            role,
            status,
            json,
        } => {
            let filter = UserFilter {
                tenant_id: tenant,
                role,
                status,
            };
            let all = all_pages(
                |after| users::list(conn, actor, &filter, 500, after),
                |u| u.user_id.clone(),
            )?;
            print(
                &to_value(&all),
                json,
                &["user_id", "email", "role", "status", "tenant_id", "name"],
            )
        }
        UserCommand::SetPassword { email, .. } => {
            let password = password_from_stdin()?;
            let view = users::set_password_by_email(conn, actor, &email, &password)?;
            println!(
                "password set for {}; every session of the user ended",
                view.email
            );
            Ok(())
        }
        UserCommand::SetupLink { email } => {
            let link = users::new_setup_link_by_email(conn, actor, &email)?;
            print_setup_link(&link, issuer);
            Ok(())
        }
    }
}

/// Fetches a `jwks_uri` being registered, before the change, as the admin
/// API does: a URL that does not answer with usable keys changes nothing.
fn check_jwks_uri(settings: &Settings, jwks_uri: Option<&str>) -> Result<(), CliError> {
    match jwks_uri {
        Some(uri) => Ok(crate::service::client_keys::check_jwks_uri(
            &key_cache(settings),
            uri,
        )?),
        None => Ok(()),
    }
}

fn client(
    conn: &mut Conn<'_>,
    actor: &Actor,
    config: &Settings,
    action: ClientCommand,
) -> Result<(), CliError> {
    match action {
        ClientCommand::Create {
            name,
            role,
            kind,
            tenant,
            scopes,
            device_group,
            auth,
            keys,
            settings,
            json,
        } => {
            let jwks = keys.jwks()?;
            let subjects = keys.subjects();
            check_jwks_uri(config, keys.jwks_uri.as_deref())?;
            let request = NewClient {
                name,
                role,
                kind,
                tenant_id: tenant,
                scopes: scopes.map(|s| s.split_whitespace().map(str::to_string).collect()),
                device_group_id: device_group,
                description: settings.description,
                owner: settings.owner,
                owner_email: settings.owner_email,
                expires_at: settings.expires_at,
                expires_in: settings.expires_in.as_deref().map(duration),
                can_renew: settings.can_renew,
                allowed_ips: settings.allowed_ips,
                access_token_ttl: settings.access_token_ttl,
                token_lifetime: settings.token_lifetime.as_deref().map(duration),
                audience: settings.audience,
                metadata: settings.metadata.map(|pairs| {
                    pairs
                        .into_iter()
                        .map(|(k, v)| (k, Value::from(v)))
                        .collect()
                }),
                token_endpoint_auth_method: auth,
                jwks,
                jwks_uri: keys.jwks_uri,
                federated_subjects: (!subjects.is_empty()).then_some(subjects),
            };
            let (view, credential) = clients::register(conn, actor, request)?;
            match credential {
                IssuedCredential::Nothing => eprintln!(
                    "The client authenticates with its keys (private_key_jwt): it has no secret."
                ),
                _ => secret_shown_once(),
            }
            print(
                &to_value(&clients::with_credential(&view, &credential)),
                json,
                &[],
            )
        }
        ClientCommand::List {
            status,
            kind,
            tenant,
            role,
            json,
        } => {
            let filter = ClientFilter {
                status,
                kind,
                tenant_id: tenant,
                role,
                user_id: None,
            };
            let all = all_pages(
                |after| clients::list(conn, actor, &filter, 500, after),
                |c| c.client_id.clone(),
            )?;
            print(&to_value(&all), json, CLIENT_COLUMNS)
        }
        ClientCommand::Show { client_id, json } => {
            let client = clients::find_reachable(conn, actor, &client_id)?;
            print(
                &to_value(&clients::ClientView::new(&client, crate::service::now())),
                json,
                &[],
            )
        }
        ClientCommand::Update {
            client_id,
            name,
            no_expiry,
            keys,
            no_jwks,
            no_jwks_uri,
            no_federated_subjects,
            settings,
            json,
        } => {
            let mut patch = settings_patch(settings, name, no_expiry);
            // Given: the new value; `--no-…`: cleared; neither: kept.
            patch.jwks = match keys.jwks()? {
                Some(set) => Some(Some(set)),
                None => no_jwks.then_some(None),
            };
            patch.jwks_uri = match &keys.jwks_uri {
                Some(uri) => Some(Some(uri.clone())),
                None => no_jwks_uri.then_some(None),
            };
            let subjects = keys.subjects();
            patch.federated_subjects =
                (!subjects.is_empty() || no_federated_subjects).then_some(subjects);
            if patch.fields().is_empty() {
                return Err(CliError::Failed(
                    "nothing to change: give at least one option".into(),
                ));
            }
            check_jwks_uri(config, keys.jwks_uri.as_deref())?;
            print(
                &to_value(&clients::update(conn, actor, &client_id, patch)?),
                json,
                &[],
            )
        }
        ClientCommand::Disable { client_id, json } => {
            change_status(conn, actor, &client_id, StatusChange::Disable, json)
        }
        ClientCommand::Enable { client_id, json } => {
            change_status(conn, actor, &client_id, StatusChange::Enable, json)
        }
        ClientCommand::Revoke { client_id, json } => {
            change_status(conn, actor, &client_id, StatusChange::Revoke, json)
        }
        ClientCommand::Delete { client_id } => {
            clients::delete(conn, actor, &client_id)?;
            println!("deleted client {client_id}");
            Ok(())
        }
        ClientCommand::Secret {
            client_id,
            grace_seconds,
            json,
        } => {
            let (view, secret) = clients::rotate_secret(conn, actor, &client_id, grace_seconds)?;
            secret_shown_once();
            print(
                &to_value(&clients::with_credential(
                    &view,
                    &IssuedCredential::ClientSecret(secret),
                )),
                json,
                &[],
            )
        }
        ClientCommand::Reissue { client_id, json } => {
            let (view, token, expires_at) = clients::reissue_token(conn, actor, &client_id)?;
            secret_shown_once();
            print(
                &to_value(&clients::with_credential(
                    &view,
                    &IssuedCredential::ApiToken { token, expires_at },
                )),
                json,
                &[],
            )
        }
        ClientCommand::Tokens { client_id, json } => {
            let all = all_pages(
                |after| clients::list_tokens(conn, actor, &client_id, 500, after),
                |t| t.id.clone(),
            )?;
            print(
                &to_value(&all),
                json,
                &["id", "prefix", "issued_at", "expires_at", "revoked_at"],
            )
        }
    }
}

/// Disable, enable or revoke, and print the client as it is now.
fn change_status(
    conn: &mut Conn<'_>,
    actor: &Actor,
    client_id: &str,
    change: StatusChange,
    json: bool,
) -> Result<(), CliError> {
    let view = clients::change_status(conn, actor, client_id, change)?;
    print(&to_value(&view), json, &[])
}

fn trusted_issuer(
    conn: &mut Conn<'_>,
    actor: &Actor,
    settings: &Settings,
    action: TrustedIssuerCommand,
) -> Result<(), CliError> {
    match action {
        TrustedIssuerCommand::Add {
            issuer,
            jwks_uri,
            tenant,
            description,
            json,
        } => {
            let request = NewTrustedIssuer {
                issuer,
                jwks_uri,
                tenant_id: tenant,
                description,
            };
            // The keys first, outside the store's transaction, as the admin
            // API does: an issuer whose keys cannot be had is not trusted.
            trusted_issuers::check_keys(&key_cache(settings), &request)?;
            let view = trusted_issuers::create(conn, actor, request)?;
            print(&to_value(&view), json, &[])
        }
        TrustedIssuerCommand::List { json } => {
            let all = all_pages(
                |after| trusted_issuers::list(conn, actor, 500, after),
                |t| t.id.clone(),
            )?;
            print(
                &to_value(&all),
                json,
                &["id", "tenant_id", "issuer", "jwks_uri"],
            )
        }
        TrustedIssuerCommand::Remove { id } => {
            trusted_issuers::delete(conn, actor, &id)?;
            println!("removed trusted issuer {id}");
            Ok(())
        }
    }
}

fn tenant(conn: &mut Conn<'_>, actor: &Actor, action: TenantCommand) -> Result<(), CliError> {
    match action {
        TenantCommand::Create {
            name,
            parent,
            owner_email,
            json,
        } => {
            let view = tenants::create(conn, actor, &name, parent.as_deref(), &owner_email)?;
            print(&to_value(&view), json, &[])
        }
        TenantCommand::List { json } => {
            let all = all_pages(
                |after| tenants::list(conn, actor, 500, after),
                |t| t.id.clone(),
            )?;
            print(&to_value(&all), json, &["id", "parent_id", "name"])
        }
        TenantCommand::Show { id, json } => {
            let tenant = tenants::find_reachable(conn, actor, &id)?;
            print(&to_value(&tenants::TenantView::from(&tenant)), json, &[])
        }
        TenantCommand::Update {
            id,
            name,
            owner_email,
            parent,
            json,
        } => {
            let patch = tenants::TenantPatch {
                name,
                owner_emails: owner_email,
                parent_id: parent,
                ..tenants::TenantPatch::default()
            };
            if patch.fields().is_empty() {
                return Err(CliError::Failed(
                    "nothing to change: give at least one option".into(),
                ));
            }
            print(
                &to_value(&tenants::update(conn, actor, &id, patch)?),
                json,
                &[],
            )
        }
        TenantCommand::Delete { id } => {
            tenants::delete(conn, actor, &id)?;
            println!("deleted tenant {id}");
            Ok(())
        }
    }
}
