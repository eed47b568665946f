//! Expiry notices (API.md section 4): which credentials are due a notice,
//! recorded in the outbox before anything is sent, and the outbox's
//! deliveries. Mail itself is `crate::mail`'s; this module only decides and
//! records, so it is the same with SMTP or without.

use askama::Template;
use serde::Serialize;

use super::{rfc3339, Actor, ServiceError, ServiceResult};
use crate::store::models::NoticeRow;
use crate::store::notices::{self as store, Candidate};
use crate::store::{AnyConnection, Conn};
use crate::tokens::opaque::time_ordered_id;

const DAY: i64 = 86_400;
/// An expired credential is noticed if it expired at most this long ago
/// (a server that was down for days still says so; one from long before
/// keyward looked is left to retention).
const EXPIRED_LOOKBACK: i64 = 28 * DAY;
/// How long a server's claim on a notice it is sending lasts.
pub const CLAIM_SECONDS: i64 = 300;
/// Longest wait between two attempts (API.md: at most 1 h).
const MAX_BACKOFF: i64 = 3_600;

/// The notice settings (KEYWARD_NOTICE_*).
#[derive(Debug, Clone)]
pub struct NoticePolicy {
    /// Days before expiry, each a notice; largest first.
    pub thresholds: Vec<i64>,
    /// Seconds between two looks (and the base of the retry backoff).
    pub interval: i64,
    pub max_attempts: i64,
    /// The issuer, for links to the console.
    pub issuer: String,
}

impl NoticePolicy {
    fn horizon(&self) -> i64 {
        self.thresholds.iter().copied().max().unwrap_or(0) * DAY
    }

    /// The nearest threshold `expires_at` is inside at `at`: ("expired", 0)
    /// past it, ("expiring", days) within one, None further out.
    fn due(&self, expires_at: i64, at: i64) -> Option<(&'static str, i64)> {
        if expires_at <= at {
            return Some(("expired", 0));
        }
        self.thresholds
            .iter()
            .copied()
            .filter(|days| expires_at - at <= days * DAY)
            .min()
            .map(|days| ("expiring", days))
    }

    /// The wait before attempt `attempts + 1`, after `attempts` failed:
    /// interval × 2^(attempts−1), at most an hour, plus up to 10 % jitter
    /// so that servers that failed together do not retry together.
    pub fn backoff(&self, attempts: i64) -> i64 {
        let exponent = u32::try_from((attempts - 1).clamp(0, 30)).unwrap_or(30);
        let base = self
            .interval
            .max(1)
            .saturating_mul(2_i64.saturating_pow(exponent))
            .min(MAX_BACKOFF);
        let jitter = i64::from(crate::tokens::opaque::random_bytes::<2>()[0]) * base / 2550;
        base + jitter
    }
}

/// "in 7 days", "1 day ago".
/// Days ahead count up (13 days and an hour is "in 14 days", as a
/// 14-day notice should read), days past count down.
pub fn in_words(expires_at: i64, at: i64) -> String {
    let left = expires_at - at;
    if left > 0 {
        match (left + DAY - 1) / DAY {
            1 => "in 1 day".into(),
            n => format!("in {n} days"),
        }
    } else {
        match -left / DAY {
            0 => "today".into(),
            1 => "1 day ago".into(),
            n => format!("{n} days ago"),
        }
    }
}

fn utc(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

#[derive(Template)]
#[template(path = "mail/notice.txt")]
struct NoticeText<'a> {
    headline: &'a str,
    what: &'a str,
    name: &'a str,
    client_id: &'a str,
    prefix: Option<&'a str>,
    tenant_name: &'a str,
    tenant_id: &'a str,
    expires: &'a str,
    when: &'a str,
    advice: &'a str,
    link: &'a str,
    issuer: &'a str,
}

#[derive(Template)]
#[template(path = "mail/notice.html")]
struct NoticeHtml<'a> {
    subject: &'a str,
    headline: &'a str,
    what: &'a str,
    name: &'a str,
    client_id: &'a str,
    prefix: Option<&'a str>,
    tenant_name: &'a str,
    tenant_id: &'a str,
    expires: &'a str,
    when: &'a str,
    advice: &'a str,
    link: &'a str,
}

/// The mail about one credential: subject, text and HTML.
fn notice_mail(
    c: &Candidate,
    kind: &str,
    at: i64,
    issuer: &str,
) -> ServiceResult<(String, String, String)> {
    let what = if c.token.is_some() {
        "API token"
    } else {
        "client secret"
    };
    let when = in_words(c.expires_at, at);
    let expired = kind == "expired";
    let subject = if expired {
        format!("keyward: the {what} of \"{}\" has expired", c.name)
    } else {
        format!("keyward: the {what} of \"{}\" expires {when}", c.name)
    };
    let headline = if expired {
        format!(
            "The {what} of \"{}\" expired {when}; it no longer works.",
            c.name
        )
    } else {
        format!(
            "The {what} of \"{}\" expires {when}. You are its owner.",
            c.name
        )
    };
    let advice = match (c.token.is_some(), c.can_renew) {
        (true, true) => "renew it before it expires (GET /api/v1/token/renew with the token as bearer gives a fresh one), or have it reissued in the console (Reissue token). If you cannot, ask an administrator of its tenant.".to_string(),
        (true, false) => "have it reissued in the console (Reissue token on its page): the new token has a fresh expiry. If you cannot, ask an administrator of its tenant.".to_string(),
        (false, _) => "have the client's expiry extended (Edit on its page) or, to replace it, a new client registered, by an administrator of its tenant. Until then its machines cannot get tokens once it expires.".to_string(),
    };
    let link = format!(
        "{}/console/clients/{}",
        issuer.trim_end_matches('/'),
        c.client_id
    );
    let expires = utc(c.expires_at);
    let prefix = c.token.as_ref().map(|(_, p)| p.as_str());
    let render = |e: askama::Error| ServiceError::Internal(format!("notice mail: {e}"));
    let text = NoticeText {
        headline: &headline,
        what,
        name: &c.name,
        client_id: &c.client_id,
        prefix,
        tenant_name: &c.tenant_name,
        tenant_id: &c.tenant_id,
        expires: &expires,
        when: &when,
        advice: &advice,
        link: &link,
        issuer,
    }
    .render()
    .map_err(render)?;
    let html = NoticeHtml {
        subject: &subject,
        headline: &headline,
        what,
        name: &c.name,
        client_id: &c.client_id,
        prefix,
        tenant_name: &c.tenant_name,
        tenant_id: &c.tenant_id,
        expires: &expires,
        when: &when,
        advice: &advice,
        link: &link,
    }
    .render()
    .map_err(render)?;
    Ok((subject, text, html))
}

pub struct SummaryItem {
    pub what: &'static str,
    pub name: String,
    pub client_id: String,
    pub tenant_name: String,
    pub state: &'static str,
    pub expires: String,
    pub when: String,
}

#[derive(Template)]
#[template(path = "mail/summary.txt")]
struct SummaryText<'a> {
    headline: &'a str,
    items: &'a [SummaryItem],
    link: &'a str,
    issuer: &'a str,
}

#[derive(Template)]
#[template(path = "mail/summary.html")]
struct SummaryHtml<'a> {
    subject: &'a str,
    headline: &'a str,
    items: &'a [SummaryItem],
    link: &'a str,
}

/// Records one notice in its own transaction; false when its key was
/// recorded already (by this server earlier, or by another just now).
fn record(conn: &mut Conn<'_>, row: NoticeRow) -> ServiceResult<bool> {
    let result = conn.write(|tx| store::record(tx, &row).map_err(ServiceError::from));
    match result {
        Ok(recorded) => Ok(recorded),
        // Another server recorded the same key between our look and insert.
        // (The unique key's violation reads as a conflict.)
        Err(ServiceError::Conflict(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

#[allow(clippy::too_many_arguments)]
fn row(
    kind: &str,
    recipient: &str,
    target: &str,
    token_id: &str,
    threshold: i64,
    expires_at: i64,
    tenant: (&str, &str),
    mail: (String, String, String),
    at: i64,
) -> NoticeRow {
    NoticeRow {
        id: time_ordered_id(at * 1000),
        kind: kind.into(),
        recipient: recipient.into(),
        target: target.into(),
        token_id: token_id.into(),
        threshold,
        expires_at,
        tenant_id: tenant.0.into(),
        tenant_path: tenant.1.into(),
        subject: mail.0,
        body_text: mail.1,
        body_html: mail.2,
        created_at: at,
        sent_at: None,
        attempts: 0,
        next_attempt_at: at,
        claimed_until: None,
        status: "pending".into(),
        last_error: None,
    }
}

/// Records the notices due at `at`: one per credential for the nearest
/// threshold it is inside, and each tenant owner's daily summary. Returns
/// how many were recorded now (the rest were recorded before).
pub fn schedule(conn: &mut Conn<'_>, policy: &NoticePolicy, at: i64) -> ServiceResult<usize> {
    let mut recorded = 0;
    let candidates = store::candidates(conn, at - EXPIRED_LOOKBACK, at + policy.horizon(), true)?;
    for c in &candidates {
        let Some((kind, threshold)) = policy.due(c.expires_at, at) else {
            continue;
        };
        let mail = notice_mail(c, kind, at, &policy.issuer)?;
        let token_id = c.token.as_ref().map(|(id, _)| id.as_str()).unwrap_or("");
        let notice = row(
            kind,
            &c.owner_email,
            &c.client_id,
            token_id,
            threshold,
            c.expires_at,
            (&c.tenant_id, &c.tenant_path),
            mail,
            at,
        );
        if record(conn, notice)? {
            recorded += 1;
        }
    }
    recorded += schedule_summaries(conn, policy, at)?;
    Ok(recorded)
}

fn schedule_summaries(conn: &mut Conn<'_>, policy: &NoticePolicy, at: i64) -> ServiceResult<usize> {
    let day = at.div_euclid(DAY);
    let owners = store::tenants_with_owners(conn)?;
    if owners.is_empty() {
        return Ok(0);
    }
    let everything = store::candidates(conn, at - EXPIRED_LOOKBACK, at + policy.horizon(), false)?;
    let mut recorded = 0;
    for (tenant_id, tenant_name, path, emails) in owners {
        let emails: Vec<String> = serde_json::from_str(&emails).unwrap_or_default();
        // What expired since the last summary (a day, at first) or expires
        // within the largest threshold.
        let since = store::last_summary(conn, &tenant_id)?.unwrap_or(at - DAY);
        let mut items: Vec<&Candidate> = everything
            .iter()
            .filter(|c| c.tenant_path.starts_with(&path))
            .filter(|c| c.expires_at > at || c.expires_at > since)
            .collect();
        if items.is_empty() || emails.is_empty() {
            continue;
        }
        items.sort_by_key(|c| c.expires_at);
        let shown: Vec<SummaryItem> = items
            .iter()
            .map(|c| SummaryItem {
                what: if c.token.is_some() {
                    "API token"
                } else {
                    "client secret"
                },
                name: c.name.clone(),
                client_id: c.client_id.clone(),
                tenant_name: c.tenant_name.clone(),
                state: if c.expires_at > at {
                    "expires"
                } else {
                    "expired"
                },
                expires: utc(c.expires_at),
                when: in_words(c.expires_at, at),
            })
            .collect();
        let subject = format!(
            "keyward: {} credential{} in {} expiring or expired",
            shown.len(),
            if shown.len() == 1 { "" } else { "s" },
            tenant_name
        );
        let headline = format!(
            "Today's summary for the tenant {tenant_name} ({tenant_id}) and those below it, of which you are an owner:"
        );
        let link = format!("{}/console", policy.issuer.trim_end_matches('/'));
        let render = |e: askama::Error| ServiceError::Internal(format!("summary mail: {e}"));
        let text = SummaryText {
            headline: &headline,
            items: &shown,
            link: &link,
            issuer: &policy.issuer,
        }
        .render()
        .map_err(render)?;
        let html = SummaryHtml {
            subject: &subject,
            headline: &headline,
            items: &shown,
            link: &link,
        }
        .render()
        .map_err(render)?;
        for email in &emails {
            let notice = row(
                "summary",
                email,
                &tenant_id,
                "",
                day,
                day * DAY,
                (&tenant_id, &path),
                (subject.clone(), text.clone(), html.clone()),
                at,
            );
            if record(conn, notice)? {
                recorded += 1;
            }
        }
    }
    Ok(recorded)
}

/// Claims up to `limit` notices due at `at` for this server to send.
pub fn claim(conn: &mut Conn<'_>, at: i64, limit: i64) -> ServiceResult<Vec<NoticeRow>> {
    conn.write(|tx| store::claim_due(tx, at, CLAIM_SECONDS, limit).map_err(ServiceError::from))
}

/// The outcome of one attempt, recorded.
pub fn settle(
    conn: &mut Conn<'_>,
    policy: &NoticePolicy,
    notice: &NoticeRow,
    at: i64,
    outcome: Result<(), String>,
) -> ServiceResult<()> {
    conn.write(|tx| match &outcome {
        Ok(()) => store::mark_sent(tx, &notice.id, at).map_err(ServiceError::from),
        Err(error) => {
            let attempts = notice.attempts + 1;
            let give_up = attempts >= policy.max_attempts;
            store::mark_failed(
                tx,
                &notice.id,
                error,
                at + policy.backoff(attempts),
                give_up,
            )
            .map_err(ServiceError::from)
        }
    })
}

pub fn pending(conn: &mut AnyConnection) -> ServiceResult<i64> {
    Ok(store::pending(conn)?)
}

/// A notice as the admin API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NoticeView {
    pub id: String,
    /// expiring, expired or summary
    pub kind: String,
    pub to: String,
    /// The credential's client_id, or the tenant's id for a summary.
    pub target: String,
    /// Days before expiry (0: expired); for a summary, its UTC day number.
    pub threshold: i64,
    /// pending, sent or failed
    pub status: String,
    pub subject: String,
    pub created_at: String,
    pub sent_at: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
}

impl From<NoticeRow> for NoticeView {
    fn from(n: NoticeRow) -> Self {
        NoticeView {
            id: n.id,
            kind: n.kind,
            to: n.recipient,
            target: n.target,
            threshold: n.threshold,
            status: n.status,
            subject: n.subject,
            created_at: rfc3339(n.created_at),
            sent_at: n.sent_at.map(rfc3339),
            attempts: n.attempts,
            last_error: n.last_error,
        }
    }
}

/// The notices of the actor's subtree, newest first.
pub fn list(
    conn: &mut AnyConnection,
    actor: &Actor,
    limit: i64,
    after: Option<&str>,
) -> ServiceResult<Vec<NoticeView>> {
    Ok(store::list(conn, &actor.tenant_path, limit, after)?
        .into_iter()
        .map(NoticeView::from)
        .collect())
}
