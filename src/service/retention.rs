//! Retention (API.md section 4): credentials that expired or were revoked
//! more than `KEYWARD_RETENTION_DAYS` ago are removed with their hashes,
//! each removal audited (`purge`) and announced, so every node's directory
//! drops it; records that outlived what they record go too. Batches of
//! `BATCH`, each its own short transaction under the purge claim (one server
//! at a time), so the token endpoint never waits long on a purge.

use serde::Serialize;

use super::{audit, now, Actor, ServiceResult};
use crate::service::scopes::ScopeSet;
use crate::store::changes::Change;
use crate::store::retention as store;
use crate::store::Conn;

/// How long a sent notice is kept.
const SENT_NOTICES_KEPT: i64 = 90 * 86_400;

/// Rows per transaction.
pub const BATCH: i64 = 100;
/// Clients per transaction: smaller, since each takes its secrets, token
/// strings, renewal records and an audit row with it; a short batch is a
/// short burst of work beside the token endpoint.
pub const CLIENT_BATCH: i64 = 50;
/// A purge is background work: after each batch of clients it rests
/// `REST_FACTOR` times as long as the batch took (at least `MIN_REST`, at
/// most `MAX_REST`), so it uses about 0.2 % of the time of the store and of
/// the node. Each batch is a burst of a few milliseconds of work beside the
/// token endpoint; the requests that meet one stay well under the 1 % a p99
/// looks at (at 200 times, 0.5 % of the time, they did not always: see
/// README, "Retention"). A backlog of 100,000 clients then takes two to
/// three hours (about 18 clients a second on the bench machine); the hourly
/// purge carries on with it, and a day's expiries take seconds.
const REST_FACTOR: u32 = 500;
const MIN_REST: std::time::Duration = std::time::Duration::from_millis(20);
const MAX_REST: std::time::Duration = std::time::Duration::from_secs(5);

/// How long what ended is kept.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Days after expiry or revocation before a credential is removed.
    pub days: i64,
    /// Days the audit log keeps an event; None: forever.
    pub audit_days: Option<i64>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            days: 28,
            audit_days: None,
        }
    }
}

/// What a purge removed (or, dry, would remove).
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub clients: Vec<String>,
    pub api_tokens: Vec<String>,
    /// Spent records (revocations of expired tokens, renewal records,
    /// setup links, sessions) and audit events past their retention.
    pub records: usize,
    /// Another server held the purge claim; this one left it to that one.
    pub elsewhere: bool,
}

/// Removes the single-use records of client assertions that expired before
/// `at`. Assertions live at most an hour, but at thousands a second an
/// hour is millions of rows: servers prune every minute, not with the
/// hourly purge alone.
pub fn prune_assertion_ids(conn: &mut Conn<'_>, at: i64) -> ServiceResult<usize> {
    Ok(conn.write(|tx| crate::store::assertion_jtis::prune(tx, at))?)
}

/// Removes SQLite change-log rows every follower has long read (see
/// `store::changes::LOG_KEEP_SECS`); nothing on PostgreSQL.
pub fn prune_change_log(conn: &mut Conn<'_>) -> ServiceResult<usize> {
    Ok(conn.write(|tx| crate::store::changes::prune_log(tx))?)
}

/// The actor purges are audited under.
fn retention_actor() -> Actor {
    Actor {
        name: "retention".into(),
        client_id: None,
        user_id: None,
        tenant_id: String::new(),
        tenant_path: "/".into(),
        scopes: ScopeSet::default(),
        ip: None,
    }
}

fn why(due: &store::DueClient, cutoff: i64) -> &'static str {
    match due.revoked_at {
        Some(at) if at < cutoff => "revoked",
        _ => "expired",
    }
}

/// Removes what the policy says is due at `at` (a dry run removes nothing
/// and reports what it would).
pub fn purge(conn: &mut Conn<'_>, policy: Policy, at: i64, dry_run: bool) -> ServiceResult<Report> {
    let cutoff = at - policy.days.max(0) * 86_400;
    let mut report = Report::default();
    if dry_run {
        // Everything due, read only.
        report.clients = store::due_clients(conn, cutoff, i64::MAX)?
            .into_iter()
            .map(|c| c.client_id)
            .collect();
        report.api_tokens = store::due_api_tokens(conn, cutoff, i64::MAX)?
            .into_iter()
            .filter(|t| !report.clients.contains(&t.client_id))
            .map(|t| t.id)
            .collect();
        report.clients.sort();
        report.api_tokens.sort();
        return Ok(report);
    }
    // This purge's name on the lease that keeps other servers' purges out
    // until it ends (or lapses, if this one dies).
    let holder = crate::tokens::opaque::random_id("purge_");
    let result = purge_holding(conn, policy, at, cutoff, &holder, report);
    if let Err(e) = conn.write(|tx| store::release_purge(tx, &holder)) {
        // It lapses on its own within PURGE_LEASE_SECONDS.
        log::warn!("retention: the purge lease was not released: {e}");
    }
    result
}

/// `purge` proper, with the lease taken by its first batch as `holder`.
fn purge_holding(
    conn: &mut Conn<'_>,
    policy: Policy,
    at: i64,
    cutoff: i64,
    holder: &str,
    mut report: Report,
) -> ServiceResult<Report> {
    let actor = retention_actor();
    loop {
        let started = std::time::Instant::now();
        let removed = conn.write(|tx| -> ServiceResult<Option<Vec<String>>> {
            if !store::claim_purge(tx, holder)? {
                return Ok(None);
            }
            let due = store::due_clients(tx, cutoff, CLIENT_BATCH)?;
            if due.is_empty() {
                return Ok(Some(Vec::new()));
            }
            let entries = due
                .iter()
                .map(|client| {
                    audit::entry(
                        &actor,
                        "purge",
                        Some(&client.client_id),
                        Some(&client.tenant_id),
                        serde_json::json!({
                            "name": client.name,
                            "kind": client.kind,
                            "reason": why(client, cutoff),
                            "expires_at": client.expires_at.map(super::rfc3339),
                            "revoked_at": client.revoked_at.map(super::rfc3339),
                        }),
                    )
                })
                .collect();
            tx.audit_many(entries)?;
            let ids: Vec<String> = due.into_iter().map(|c| c.client_id).collect();
            // One notification per hundred ids, not one each.
            tx.announce(Change::Clients(ids.clone()))?;
            store::delete_clients(tx, &ids)?;
            Ok(Some(ids))
        })?;
        match removed {
            None => {
                report.elsewhere = true;
                return Ok(report);
            }
            Some(ids) if ids.is_empty() => break,
            Some(ids) => {
                let full = ids.len() as i64 == CLIENT_BATCH;
                report.clients.extend(ids);
                if !full {
                    // Nothing more was due: no rest before the next step.
                    break;
                }
                let rest = (started.elapsed() * REST_FACTOR).clamp(MIN_REST, MAX_REST);
                std::thread::sleep(rest);
            }
        }
    }
    loop {
        let removed = conn.write(|tx| -> ServiceResult<Option<Vec<String>>> {
            if !store::claim_purge(tx, holder)? {
                return Ok(None);
            }
            let due = store::due_api_tokens(tx, cutoff, BATCH)?;
            let mut entries = Vec::with_capacity(due.len());
            for token in &due {
                tx.announce(Change::ApiToken(token.token_hash.clone()))?;
                entries.push(audit::entry(
                    &actor,
                    "purge",
                    Some(&token.client_id),
                    Some(&token.tenant_id),
                    serde_json::json!({"api_token": token.id, "prefix": token.prefix}),
                ));
            }
            tx.audit_many(entries)?;
            let ids: Vec<String> = due.into_iter().map(|t| t.id).collect();
            store::delete_api_tokens(tx, &ids)?;
            Ok(Some(ids))
        })?;
        match removed {
            None => {
                report.elsewhere = true;
                return Ok(report);
            }
            Some(ids) if ids.is_empty() => break,
            Some(ids) => report.api_tokens.extend(ids),
        }
    }
    loop {
        let removed = conn.write(|tx| -> ServiceResult<usize> {
            let mut removed = store::delete_spent(tx, at, BATCH)?;
            removed += crate::store::assertion_jtis::prune(tx, at)?;
            // Sent notices are kept 90 days (API.md section 4).
            removed +=
                crate::store::notices::delete_sent_before(tx, at - SENT_NOTICES_KEPT, BATCH)?;
            if let Some(days) = policy.audit_days {
                removed += store::delete_audit_before(tx, at - days.max(0) * 86_400, BATCH)?;
            }
            Ok(removed)
        })?;
        report.records += removed;
        if removed == 0 {
            break;
        }
    }
    report.records += super::sessions::purge_expired(conn, at)?;
    report.clients.sort();
    report.api_tokens.sort();
    Ok(report)
}

/// `purge` at the present time.
pub fn purge_now(conn: &mut Conn<'_>, policy: Policy, dry_run: bool) -> ServiceResult<Report> {
    purge(conn, policy, now(), dry_run)
}
