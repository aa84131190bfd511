//! The campaign engine: a durable send queue in the database, drained at a paced rate per
//! account.
//!
//! Every recipient is a row. To send, the engine first *claims* the row (`sending`, attempt
//! counted, account and time recorded) in a committed transaction, then sends, then records the
//! outcome. A crash between claim and outcome leaves a `sending` row; on start the engine asks
//! the sender whether that message went out ([`CampaignSender::find_sent`]) and either records
//! it as sent or puts it back in the queue, so a restart neither skips nor repeats a recipient.
//!
//! The engine reads time only from the server's [`crate::clock::Clock`], and [`Engine::tick`]
//! does all work due at the current instant, so tests drive it step by step with a manual clock.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast};
use utoipa::ToSchema;

use crate::clock::SharedClock;
use crate::db::{Db, DbError};
use crate::templates::{self, ContactValues, Variable};

pub type SendFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SendError>> + Send + 'a>>;

/// How a send attempt failed; decides between retrying, waiting and giving up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The account cannot send now (not connected). The recipient waits; no attempt is used.
    #[error("account unavailable: {0}")]
    AccountUnavailable(String),
    /// The account's daily limit is reached; retry after `reset_at_ms` (or the next UTC day).
    #[error("daily limit reached")]
    DailyLimit { reset_at_ms: Option<i64> },
    /// This recipient can never get this message (e.g. bad number). No retry.
    #[error("{0}")]
    Rejected(String),
    /// A temporary failure; retried with backoff until the campaign's attempt limit.
    #[error("{0}")]
    Transient(String),
}

/// What the engine needs from the messaging layer. The server implements it over its send path
/// (which records the message and its delivery status); tests script it.
pub trait CampaignSender: Send + Sync + 'static {
    /// Sends `text` to `phone` (E.164) from `account_id`; returns the message id that delivery
    /// status updates in the `messages` table are keyed by.
    fn send<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        phone: &'a str,
        text: &'a str,
    ) -> SendFuture<'a, String>;
    /// Which of `phones` (E.164) are on WhatsApp.
    fn check_numbers<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        phones: &'a [String],
    ) -> SendFuture<'a, Vec<(String, bool)>>;
    /// After a crash: the id of a message already sent from `account_id` to `phone` at or after
    /// `since_ms`, if any.
    fn find_sent<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        phone: &'a str,
        since_ms: i64,
    ) -> SendFuture<'a, Option<String>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    Draft,
    Scheduled,
    Running,
    Paused,
    Completed,
    Cancelled,
}

impl CampaignStatus {
    pub const ALL: [Self; 6] =
        [Self::Draft, Self::Scheduled, Self::Running, Self::Paused, Self::Completed, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// Per-recipient counts and rates of one campaign.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    pub total: i64,
    /// Waiting or being sent.
    pub pending: i64,
    /// Sent, not yet delivered.
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub failed: i64,
    pub skipped_opted_out: i64,
    pub skipped_not_on_whatsapp: i64,
    /// Skipped because the campaign was cancelled first.
    pub skipped_cancelled: i64,
    /// Recipients no longer pending, as a whole percentage.
    pub percent: i64,
    /// Messages sent in the last 60 seconds.
    pub sent_last_minute: i64,
}

/// Live notifications from the engine.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CampaignEvent {
    Progress { tenant_id: String, campaign_id: String, progress: Progress },
    Status { tenant_id: String, campaign_id: String, status: CampaignStatus, reason: Option<String> },
}

/// What is snapshotted per recipient at creation: contact values and per-recipient values.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RecipientData {
    pub contact: ContactValues,
    #[serde(default)]
    pub values: BTreeMap<String, String>,
}

/// Upper bound on how long the run loop sleeps, so external changes are noticed.
const MAX_IDLE_MS: i64 = 2_000;
/// How often (clock time) delivery statuses are copied from the messages table.
const DELIVERY_SYNC_MS: i64 = 2_000;
const DAY_MS: i64 = 86_400_000;

pub fn day_start(now: i64) -> i64 {
    now - now.rem_euclid(DAY_MS)
}

/// Backoff before retry `attempts + 1`: 30 s doubling, capped at 15 min.
pub fn retry_delay_ms(attempts: i64) -> i64 {
    (30_000i64 << attempts.clamp(1, 6).saturating_sub(1)).min(15 * 60_000)
}

/// Milliseconds between two sends at `rate_per_minute`, stretched by up to `jitter_pct` percent
/// (jitter only slows down, so the configured rate is never exceeded).
pub fn pacing_interval_ms(rate_per_minute: i64, jitter_pct: i64, random: u64) -> i64 {
    let base = 60_000 / rate_per_minute.max(1);
    let span = base * jitter_pct.clamp(0, 100) / 100;
    base + if span > 0 { (random % (span as u64 + 1)) as i64 } else { 0 }
}

struct RunningCampaign {
    id: String,
    tenant_id: String,
    accounts: Vec<String>,
    rate: i64,
    jitter: i64,
    check_numbers: bool,
    max_attempts: i64,
    body: String,
    declared: Vec<Variable>,
    values: BTreeMap<String, String>,
}

struct AccountInfo {
    state: String,
    daily_limit: i64,
    sent_today: i64,
}

struct Claimed {
    id: i64,
    phone: String,
    attempts: i64,
    data: String,
}

enum Outcome {
    Sent(String),
    Failed(String),
    Retry(String),
    /// Back to the queue without using an attempt.
    Requeue,
}

/// The engine. Cheap to share; [`Engine::tick`] and [`Engine::run`] drive it.
pub struct Engine {
    db: Db,
    clock: SharedClock,
    sender: Arc<dyn CampaignSender>,
    wake: Arc<Notify>,
    events: broadcast::Sender<CampaignEvent>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    recovered: bool,
    /// Per account: earliest time of its next send.
    next_send_at: HashMap<String, i64>,
    /// Per account: refused by the daily limit until then.
    limited_until: HashMap<String, i64>,
    last_delivery_sync: Option<i64>,
    /// Per account: (UTC day start, messages sent by campaigns that day).
    sent_today: HashMap<String, (i64, i64)>,
    /// Per campaign: when progress was last published.
    last_progress: HashMap<String, i64>,
}

fn corrupt(e: impl std::fmt::Display) -> DbError {
    DbError::Corrupt(e.to_string())
}

fn to_sql_err(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

/// Counts for one campaign.
pub fn progress(c: &Connection, campaign_id: &str, now: i64) -> rusqlite::Result<Progress> {
    let mut p = Progress::default();
    let mut stmt = c.prepare_cached(
        "SELECT status, reason, COUNT(*) FROM campaign_recipients WHERE campaign_id = ?1 GROUP BY status, reason",
    )?;
    let rows = stmt.query_map(params![campaign_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, i64>(2)?))
    })?;
    for row in rows {
        let (status, reason, n) = row?;
        p.total += n;
        match (status.as_str(), reason.as_deref()) {
            ("pending" | "sending", _) => p.pending += n,
            ("sent", _) => p.sent += n,
            ("delivered", _) => p.delivered += n,
            ("read", _) => p.read += n,
            ("failed", _) => p.failed += n,
            ("skipped", Some("opted_out")) => p.skipped_opted_out += n,
            ("skipped", Some("not_on_whatsapp")) => p.skipped_not_on_whatsapp += n,
            _ => p.skipped_cancelled += n,
        }
    }
    p.percent = if p.total == 0 { 100 } else { (p.total - p.pending) * 100 / p.total };
    p.sent_last_minute = c.query_row(
        "SELECT COUNT(*) FROM campaign_recipients WHERE campaign_id = ?1 AND sent_at > ?2",
        params![campaign_id, now - 60_000],
        |r| r.get(0),
    )?;
    Ok(p)
}

/// Sets a campaign's status (and reason) and writes the matching outbox event.
pub fn set_status(
    c: &mut Connection,
    tenant_id: &str,
    campaign_id: &str,
    status: CampaignStatus,
    reason: Option<&str>,
    now: i64,
) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    tx.execute(
        "UPDATE campaigns SET status = ?3, status_reason = ?4, updated_at = ?5,
           started_at = CASE WHEN ?3 = 'running' THEN COALESCE(started_at, ?5) ELSE started_at END,
           completed_at = CASE WHEN ?3 IN ('completed','cancelled') THEN ?5 ELSE completed_at END
         WHERE tenant_id = ?1 AND id = ?2",
        params![tenant_id, campaign_id, status.as_str(), reason, now],
    )?;
    if status == CampaignStatus::Cancelled {
        tx.execute(
            "UPDATE campaign_recipients SET status = 'skipped', reason = 'cancelled', updated_at = ?2
             WHERE campaign_id = ?1 AND status = 'pending'",
            params![campaign_id, now],
        )?;
    }
    crate::outbox::enqueue(
        &tx,
        tenant_id,
        None,
        "campaign.status",
        serde_json::json!({ "campaign_id": campaign_id, "status": status.as_str(), "reason": reason }),
        now,
    )?;
    tx.commit()
}

impl Engine {
    pub fn new(db: Db, clock: SharedClock, sender: Arc<dyn CampaignSender>) -> Arc<Self> {
        let (events, _) = broadcast::channel(1024);
        Arc::new(Self {
            db,
            clock,
            sender,
            wake: Arc::new(Notify::new()),
            events,
            inner: Mutex::new(Inner::default()),
        })
    }

    /// Subscribes to progress and status events.
    pub fn subscribe(&self) -> broadcast::Receiver<CampaignEvent> {
        self.events.subscribe()
    }

    /// Wakes the run loop (after a campaign was created, resumed, …).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    fn with_inner<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// Runs until `shutdown` resolves: ticks whenever work is due or the engine is woken.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let next = match self.tick().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "campaign engine tick failed");
                    None
                }
            };
            let now = self.clock.now_ms();
            let wait = next.map_or(MAX_IDLE_MS, |t| (t - now).clamp(0, MAX_IDLE_MS));
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(std::time::Duration::from_millis(wait as u64)) => {}
            }
        }
    }

    /// Resolves `sending` rows left by a crash (once per engine).
    async fn recover(&self) -> Result<(), DbError> {
        let rows: Vec<(i64, String, String, String, i64)> = self
            .db
            .call(|c| {
                let mut stmt = c.prepare(
                    "SELECT id, tenant_id, account_id, phone, sending_since FROM campaign_recipients
                     WHERE status = 'sending' AND account_id IS NOT NULL",
                )?;
                let rows = stmt
                    .query_map([], |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get::<_, Option<i64>>(4)?.unwrap_or(0),
                        ))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        for (id, tenant, account, phone, since) in rows {
            let found = match self.sender.find_sent(&tenant, &account, &phone, since).await {
                Ok(f) => f,
                Err(e) => {
                    // Unknown outcome: keep the row claimed rather than risk a duplicate.
                    tracing::warn!(recipient = id, error = %e, "cannot resolve an interrupted send yet");
                    return Ok(());
                }
            };
            let now = self.clock.now_ms();
            self.db
                .call(move |c| {
                    match found {
                        Some(msg) => c.execute(
                            "UPDATE campaign_recipients SET status = 'sent', message_id = ?2, sent_at = ?3, sending_since = NULL, updated_at = ?3
                             WHERE id = ?1 AND status = 'sending'",
                            params![id, msg, now],
                        )?,
                        None => c.execute(
                            "UPDATE campaign_recipients SET status = 'pending', attempts = MAX(attempts - 1, 0), sending_since = NULL, updated_at = ?2
                             WHERE id = ?1 AND status = 'sending'",
                            params![id, now],
                        )?,
                    };
                    Ok(())
                })
                .await?;
        }
        self.with_inner(|i| i.recovered = true);
        Ok(())
    }

    /// Does everything due now. Returns when the engine next has work (clock time), if known.
    pub async fn tick(&self) -> Result<Option<i64>, DbError> {
        if !self.with_inner(|i| i.recovered) {
            self.recover().await?;
            if !self.with_inner(|i| i.recovered) {
                return Ok(Some(self.clock.now_ms() + MAX_IDLE_MS));
            }
        }
        let now = self.clock.now_ms();
        let sync = self.with_inner(|i| {
            let due = i.last_delivery_sync.is_none_or(|t| now - t >= DELIVERY_SYNC_MS || now < t);
            if due {
                i.last_delivery_sync = Some(now);
            }
            due
        });
        let today = day_start(now);
        let cached: HashMap<String, i64> = self.with_inner(|i| {
            i.sent_today.retain(|_, (day, _)| *day == today);
            i.sent_today.iter().map(|(a, (_, n))| (a.clone(), *n)).collect()
        });
        let (campaigns, accounts, status_events) =
            self.db.call(move |c| housekeeping(c, now, sync, &cached)).await?;
        self.with_inner(|i| {
            for (a, info) in &accounts {
                i.sent_today.insert(a.clone(), (today, info.sent_today));
            }
        });
        for e in status_events {
            let _ = self.events.send(e);
        }
        let mut touched: Vec<(String, String)> = Vec::new();
        let mut next_wake: Option<i64> = None;
        let mut wake_at = |t: i64| next_wake = Some(next_wake.map_or(t, |n: i64| n.min(t)));

        // Deterministic order: accounts by id; campaigns already ordered (direct first, oldest).
        let mut account_ids: Vec<&String> = accounts.keys().collect();
        account_ids.sort();
        for account in account_ids {
            let info = &accounts[account];
            if info.state != "active" {
                continue;
            }
            let (next_at, limited) = self.with_inner(|i| {
                (i.next_send_at.get(account).copied(), i.limited_until.get(account).copied())
            });
            if let Some(t) = limited.filter(|t| *t > now) {
                wake_at(t);
                continue;
            }
            if info.sent_today >= info.daily_limit {
                let reset = day_start(now) + DAY_MS;
                self.with_inner(|i| i.limited_until.insert(account.clone(), reset));
                for camp in campaigns.iter().filter(|c| c.accounts.contains(account)) {
                    self.note_daily_limit(camp, reset).await?;
                }
                wake_at(reset);
                continue;
            }
            if let Some(t) = next_at.filter(|t| *t > now) {
                wake_at(t);
                continue;
            }
            for camp in campaigns.iter().filter(|c| c.accounts.contains(account)) {
                if camp.check_numbers && !self.check_numbers(camp, account, now).await? {
                    break;
                }
                let (cid, acc, tenant) = (camp.id.clone(), account.clone(), camp.tenant_id.clone());
                let claimed = self.db.call(move |c| claim(c, &tenant, &cid, &acc, now)).await?;
                let Some(claimed) = claimed else {
                    continue;
                };
                touched.push((camp.tenant_id.clone(), camp.id.clone()));
                let outcome = self.attempt(camp, account, &claimed).await;
                let after = self.clock.now_ms();
                if matches!(outcome, Outcome::Sent(_)) {
                    let day = day_start(after);
                    self.with_inner(|i| {
                        let e = i.sent_today.entry(account.clone()).or_insert((day, 0));
                        if e.0 == day {
                            e.1 += 1;
                        } else {
                            *e = (day, 1);
                        }
                    });
                }
                if !matches!(outcome, Outcome::Requeue) {
                    let random: u64 = rand::random();
                    let t = after + pacing_interval_ms(camp.rate, camp.jitter, random);
                    self.with_inner(|i| i.next_send_at.insert(account.clone(), t));
                    wake_at(t);
                }
                self.record(camp, &claimed, outcome, after).await?;
                break;
            }
        }
        // Retries waiting for their time, and scheduled campaigns.
        let retry_at = self
            .db
            .call(move |c| {
                Ok(c.query_row(
                    "SELECT MIN(t) FROM (
                       SELECT MIN(r.next_attempt_at) AS t FROM campaign_recipients r JOIN campaigns c ON c.id = r.campaign_id
                        WHERE c.status = 'running' AND r.status = 'pending' AND r.next_attempt_at > ?1
                       UNION ALL
                       SELECT MIN(scheduled_at) FROM campaigns WHERE status = 'scheduled')",
                    params![now],
                    |r| r.get::<_, Option<i64>>(0),
                )?)
            })
            .await?;
        if let Some(t) = retry_at {
            wake_at(t);
        }
        touched.sort();
        touched.dedup();
        // Progress is published at most once per second (clock time) per campaign.
        let subscribed = self.events.receiver_count() > 0;
        for (tenant, id) in touched {
            let due = subscribed
                && self.with_inner(|i| {
                    let last = i.last_progress.get(&id).copied();
                    let due = last.is_none_or(|t| now - t >= 1_000 || now < t);
                    if due {
                        i.last_progress.insert(id.clone(), now);
                    }
                    due
                });
            if !due {
                continue;
            }
            let cid = id.clone();
            let p = self.db.call(move |c| Ok(progress(c, &cid, now)?)).await?;
            let _ =
                self.events.send(CampaignEvent::Progress { tenant_id: tenant, campaign_id: id, progress: p });
        }
        Ok(next_wake)
    }

    async fn note_daily_limit(&self, camp: &RunningCampaign, reset: i64) -> Result<(), DbError> {
        let (tenant, id) = (camp.tenant_id.clone(), camp.id.clone());
        let reason = format!("daily limit reached; sending resumes at {reset}");
        self.db
            .call(move |c| {
                c.execute(
                    "UPDATE campaigns SET status_reason = ?3 WHERE tenant_id = ?1 AND id = ?2 AND status = 'running'
                       AND status_reason IS NOT ?3",
                    params![tenant, id, reason],
                )?;
                Ok(())
            })
            .await
    }

    /// Checks a batch of unchecked due recipients. Returns false when the account cannot check.
    async fn check_numbers(&self, camp: &RunningCampaign, account: &str, now: i64) -> Result<bool, DbError> {
        let cid = camp.id.clone();
        let batch: Vec<String> = self
            .db
            .call(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT phone FROM campaign_recipients WHERE campaign_id = ?1 AND status = 'pending'
                       AND number_checked = 0 AND next_attempt_at <= ?2 ORDER BY id LIMIT 50",
                )?;
                let rows = stmt.query_map(params![cid, now], |r| r.get(0))?.collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        if batch.is_empty() {
            return Ok(true);
        }
        let results = match self.sender.check_numbers(&camp.tenant_id, account, &batch).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(campaign = %camp.id, error = %e, "number check failed; will retry");
                return Ok(false);
            }
        };
        let cid = camp.id.clone();
        let now = self.clock.now_ms();
        self.db
            .call(move |c| {
                let tx = c.transaction()?;
                for (phone, on) in results {
                    if on {
                        tx.execute(
                            "UPDATE campaign_recipients SET number_checked = 1 WHERE campaign_id = ?1 AND phone = ?2",
                            params![cid, phone],
                        )?;
                    } else {
                        tx.execute(
                            "UPDATE campaign_recipients SET status = 'skipped', reason = 'not_on_whatsapp', number_checked = 1, updated_at = ?3
                             WHERE campaign_id = ?1 AND phone = ?2 AND status = 'pending'",
                            params![cid, phone, now],
                        )?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await?;
        Ok(true)
    }

    async fn attempt(&self, camp: &RunningCampaign, account: &str, r: &Claimed) -> Outcome {
        let data: RecipientData = match serde_json::from_str(&r.data) {
            Ok(d) => d,
            Err(e) => return Outcome::Failed(format!("corrupt recipient data: {e}")),
        };
        let text = match templates::parse(&camp.body) {
            Ok(segs) => {
                let mut values = camp.values.clone();
                values.extend(data.values);
                match templates::render(&segs, &camp.declared, &data.contact, &values) {
                    Ok(t) => t,
                    Err(e) => return Outcome::Failed(e.to_string()),
                }
            }
            Err(e) => return Outcome::Failed(format!("invalid template: {e}")),
        };
        match self.sender.send(&camp.tenant_id, account, &r.phone, &text).await {
            Ok(id) => Outcome::Sent(id),
            Err(SendError::Rejected(reason)) => Outcome::Failed(reason),
            Err(SendError::Transient(reason)) if r.attempts >= camp.max_attempts => {
                Outcome::Failed(format!("{reason} (after {} attempts)", r.attempts))
            }
            Err(SendError::Transient(reason)) => Outcome::Retry(reason),
            Err(SendError::AccountUnavailable(reason)) => {
                tracing::info!(account, %reason, "account cannot send; recipient requeued");
                Outcome::Requeue
            }
            Err(SendError::DailyLimit { reset_at_ms }) => {
                let reset = reset_at_ms.unwrap_or_else(|| day_start(self.clock.now_ms()) + DAY_MS);
                self.with_inner(|i| i.limited_until.insert(account.to_owned(), reset));
                Outcome::Requeue
            }
        }
    }

    async fn record(
        &self,
        camp: &RunningCampaign,
        r: &Claimed,
        outcome: Outcome,
        now: i64,
    ) -> Result<(), DbError> {
        let id = r.id;
        let attempts = r.attempts;
        let cid = camp.id.clone();
        self.db
            .call(move |c| {
                match outcome {
                    Outcome::Sent(msg) => {
                        c.execute(
                            "UPDATE campaign_recipients SET status = 'sent', message_id = ?2, sent_at = ?3, reason = NULL,
                               sending_since = NULL, updated_at = ?3 WHERE id = ?1",
                            params![id, msg, now],
                        )?;
                        c.execute(
                            "UPDATE campaigns SET status_reason = NULL WHERE id = ?1 AND status_reason LIKE 'daily limit%'",
                            params![cid],
                        )?;
                    }
                    Outcome::Failed(reason) => {
                        c.execute(
                            "UPDATE campaign_recipients SET status = 'failed', reason = ?2, failed_at = ?3, sending_since = NULL, updated_at = ?3
                             WHERE id = ?1",
                            params![id, reason, now],
                        )?;
                    }
                    Outcome::Retry(reason) => {
                        c.execute(
                            "UPDATE campaign_recipients SET status = 'pending', reason = ?2, next_attempt_at = ?3, sending_since = NULL, updated_at = ?4
                             WHERE id = ?1",
                            params![id, reason, now + retry_delay_ms(attempts), now],
                        )?;
                    }
                    Outcome::Requeue => {
                        c.execute(
                            "UPDATE campaign_recipients SET status = 'pending', attempts = MAX(attempts - 1, 0), sending_since = NULL, updated_at = ?2
                             WHERE id = ?1",
                            params![id, now],
                        )?;
                    }
                }
                Ok(())
            })
            .await
    }
}

/// Starts due scheduled campaigns, copies delivery statuses, auto-pauses campaigns whose
/// account is logged out or in error, completes finished ones, and returns the running
/// campaigns with their accounts' state and usage.
#[allow(clippy::type_complexity)]
fn housekeeping(
    c: &mut Connection,
    now: i64,
    sync_deliveries: bool,
    cached_sent_today: &HashMap<String, i64>,
) -> Result<(Vec<RunningCampaign>, HashMap<String, AccountInfo>, Vec<CampaignEvent>), DbError> {
    let mut events = Vec::new();
    let due: Vec<(String, String)> = c
        .prepare("SELECT tenant_id, id FROM campaigns WHERE status = 'scheduled' AND scheduled_at <= ?1")?
        .query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (tenant, id) in due {
        set_status(c, &tenant, &id, CampaignStatus::Running, None, now)?;
        events.push(CampaignEvent::Status {
            tenant_id: tenant,
            campaign_id: id,
            status: CampaignStatus::Running,
            reason: None,
        });
    }
    if sync_deliveries {
        c.execute(
            "UPDATE campaign_recipients AS r SET status = m.status,
               delivered_at = COALESCE(r.delivered_at, m.delivered_at, m.read_at, ?1),
               read_at = CASE WHEN m.status = 'read' THEN COALESCE(m.read_at, ?1) ELSE r.read_at END,
               updated_at = ?1
             FROM messages m
             WHERE r.status IN ('sent','delivered') AND m.id = r.message_id
               AND ((r.status = 'sent' AND m.status IN ('delivered','read')) OR (r.status = 'delivered' AND m.status = 'read'))",
            params![now],
        )?;
    }
    let mut stmt = c.prepare(
        "SELECT id, tenant_id, account_ids, rate_per_minute, jitter_pct, check_numbers, max_attempts, body, declared, variables
         FROM campaigns WHERE status = 'running' ORDER BY kind = 'direct' DESC, created_at, id",
    )?;
    let raw = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, bool>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, String>(8)?,
                r.get::<_, String>(9)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    drop(stmt);
    let mut campaigns = Vec::new();
    let mut accounts: HashMap<String, AccountInfo> = HashMap::new();
    let today = day_start(now);
    for (id, tenant_id, account_ids, rate, jitter, check, max_attempts, body, declared, values) in raw {
        let camp = RunningCampaign {
            id,
            tenant_id,
            accounts: serde_json::from_str(&account_ids).map_err(corrupt)?,
            rate,
            jitter,
            check_numbers: check,
            max_attempts,
            body,
            declared: serde_json::from_str(&declared).map_err(corrupt)?,
            values: serde_json::from_str(&values).map_err(corrupt)?,
        };
        let mut pause: Option<String> = None;
        for a in &camp.accounts {
            let row: Option<(String, Option<String>, String, i64)> = c
                .query_row(
                    "SELECT state, state_reason, name, daily_limit FROM accounts WHERE tenant_id = ?1 AND id = ?2",
                    params![camp.tenant_id, a],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            match row {
                None => pause = Some(format!("account {a} was deleted")),
                Some((state, reason, name, limit)) => {
                    if state == "logged_out" || state == "error" {
                        let what = if state == "logged_out" { "logged out" } else { "reported an error" };
                        pause = Some(match reason {
                            Some(r) => format!("account {name} {what}: {r}"),
                            None => format!("account {name} {what}"),
                        });
                    }
                    if !accounts.contains_key(a) {
                        let sent_today: i64 = match cached_sent_today.get(a) {
                            Some(n) => *n,
                            None => c.query_row(
                                "SELECT COUNT(*) FROM campaign_recipients WHERE account_id = ?1 AND sent_at >= ?2",
                                params![a, today],
                                |r| r.get(0),
                            )?,
                        };
                        accounts.insert(a.clone(), AccountInfo { state, daily_limit: limit, sent_today });
                    }
                }
            }
        }
        if let Some(reason) = pause {
            set_status(c, &camp.tenant_id, &camp.id, CampaignStatus::Paused, Some(&reason), now)?;
            events.push(CampaignEvent::Status {
                tenant_id: camp.tenant_id.clone(),
                campaign_id: camp.id.clone(),
                status: CampaignStatus::Paused,
                reason: Some(reason),
            });
            continue;
        }
        let open: bool = c.query_row(
            "SELECT EXISTS(SELECT 1 FROM campaign_recipients WHERE campaign_id = ?1 AND status IN ('pending','sending'))",
            params![camp.id],
            |r| r.get(0),
        )?;
        if !open {
            set_status(c, &camp.tenant_id, &camp.id, CampaignStatus::Completed, None, now)?;
            events.push(CampaignEvent::Status {
                tenant_id: camp.tenant_id.clone(),
                campaign_id: camp.id.clone(),
                status: CampaignStatus::Completed,
                reason: None,
            });
            continue;
        }
        campaigns.push(camp);
    }
    // Accounts only used by paused/completed campaigns are not needed.
    accounts.retain(|a, _| campaigns.iter().any(|c| c.accounts.contains(a)));
    Ok((campaigns, accounts, events))
}

/// Claims the next due recipient of `campaign_id` for `account_id`, skipping opted-out ones.
fn claim(
    c: &mut Connection,
    tenant_id: &str,
    campaign_id: &str,
    account_id: &str,
    now: i64,
) -> Result<Option<Claimed>, DbError> {
    let tx = c.transaction()?;
    let claimed = loop {
        let next: Option<(i64, String, i64, String)> = tx
            .prepare_cached(
                "SELECT id, phone, attempts, variables FROM campaign_recipients
                 WHERE campaign_id = ?1 AND status = 'pending' AND next_attempt_at <= ?2 ORDER BY id LIMIT 1",
            )?
            .query_row(params![campaign_id, now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .optional()?;
        let Some((id, phone, attempts, data)) = next else { break None };
        if crate::contacts::is_opted_out(&tx, tenant_id, &phone)? {
            tx.execute(
                "UPDATE campaign_recipients SET status = 'skipped', reason = 'opted_out', updated_at = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            continue;
        }
        tx.execute(
            "UPDATE campaign_recipients SET status = 'sending', attempts = attempts + 1, account_id = ?2,
               sending_since = ?3, updated_at = ?3 WHERE id = ?1",
            params![id, account_id, now],
        )?;
        break Some(Claimed { id, phone, attempts: attempts + 1, data });
    };
    tx.commit()?;
    Ok(claimed)
}

/// Serialises a recipient snapshot for the `variables` column.
pub fn recipient_data_json(d: &RecipientData) -> rusqlite::Result<String> {
    serde_json::to_string(d).map_err(to_sql_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_never_exceeds_the_rate() {
        for r in [0u64, 1, 7, 999, u64::MAX] {
            let i = pacing_interval_ms(60, 20, r);
            assert!((1000..=1200).contains(&i), "{i}");
        }
        assert_eq!(pacing_interval_ms(30, 0, 12345), 2000);
    }

    #[test]
    fn retry_delay_doubles_and_caps() {
        assert_eq!(retry_delay_ms(1), 30_000);
        assert_eq!(retry_delay_ms(2), 60_000);
        assert_eq!(retry_delay_ms(3), 120_000);
        assert_eq!(retry_delay_ms(50), 15 * 60_000);
    }

    #[test]
    fn day_start_is_utc_midnight() {
        assert_eq!(day_start(1_700_000_000_000), 1_699_920_000_000);
        assert_eq!(day_start(DAY_MS * 3), DAY_MS * 3);
    }
}
