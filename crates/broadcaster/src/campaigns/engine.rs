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

use crate::db::{Conn, OptionalExtension, params};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast};
use utoipa::ToSchema;

use crate::accounts::timelock;
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
    /// The recipient would be a new contact and the account's new-contact limit for the day is
    /// reached: it (and the account's other new contacts) are held until `reset_at_ms`; the
    /// account keeps sending to people it knows.
    #[error("new-contact limit reached")]
    NewContactLimit { reset_at_ms: i64 },
    /// This recipient can never get this message (e.g. bad number). No retry.
    #[error("{0}")]
    Rejected(String),
    /// A temporary failure; retried with backoff until the campaign's attempt limit.
    #[error("{0}")]
    Transient(String),
}

/// One message for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CampaignMessage {
    /// The rendered text (the caption when `media` is set).
    pub text: String,
    /// The template's media attachment, if any.
    pub media: Option<Arc<CampaignMedia>>,
    /// The WhatsApp message id every attempt for this recipient uses
    /// ([`campaign_message_id`]), so a send repeated after a crash or an ambiguous failure is the
    /// same message to WhatsApp and the recipient's phone (which keeps one copy per id).
    pub wa_message_id: String,
}

impl CampaignMessage {
    pub fn new(text: String, media: Option<Arc<CampaignMedia>>, wa_message_id: String) -> Self {
        Self { text, media, wa_message_id }
    }
}

/// A media file attached to every message of a campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CampaignMedia {
    pub kind: crate::runtime::MediaKind,
    pub mimetype: String,
    pub file_name: Option<String>,
    pub data: bytes::Bytes,
    /// The stored file (`template_media.id`) the messages point at instead of keeping a copy.
    pub stored_id: Option<String>,
}

impl CampaignMedia {
    pub fn new(
        kind: crate::runtime::MediaKind,
        mimetype: String,
        file_name: Option<String>,
        data: bytes::Bytes,
    ) -> Self {
        Self { kind, mimetype, file_name, data, stored_id: None }
    }

    /// The same, stored in the database as `id`.
    pub fn stored_as(mut self, id: String) -> Self {
        self.stored_id = Some(id);
        self
    }
}

/// The WhatsApp message id of a campaign recipient's message: `3EB0` and 18 hex digits (the
/// format WhatsApp Web uses), derived from the campaign and the recipient row so it is the same
/// on every attempt and after any restart.
pub fn campaign_message_id(campaign_id: &str, recipient_id: i64) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(b"broadcaster campaign message\0");
    h.update(campaign_id.as_bytes());
    h.update(b"\0");
    h.update(recipient_id.to_be_bytes());
    format!("3EB0{}", hex::encode_upper(&h.finalize()[..9]))
}

/// What the engine needs from the messaging layer. The server implements it over its send path
/// (which records the message and its delivery status); tests script it.
pub trait CampaignSender: Send + Sync + 'static {
    /// Sends `message` to `phone` (E.164) from `account_id`; returns the message id that
    /// delivery status updates in the `messages` table are keyed by.
    fn send<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        phone: &'a str,
        message: &'a CampaignMessage,
    ) -> SendFuture<'a, String>;
    /// Which of `phones` (E.164) are on WhatsApp.
    fn check_numbers<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        phones: &'a [String],
    ) -> SendFuture<'a, Vec<(String, bool)>>;
    /// Gets `account_id` ready to send to all of `phones` soon (E.164): one batched device-list
    /// query and one batched prekey fetch instead of two round trips per recipient, as WhatsApp
    /// clients do for broadcasts. Best effort; the default does nothing.
    fn prepare<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        phones: &'a [String],
    ) -> SendFuture<'a, ()> {
        let _ = (tenant_id, account_id, phones);
        Box::pin(async { Ok(()) })
    }
    /// After a crash: the id of the message with WhatsApp id `wa_message_id` that was sent from
    /// `account_id` to `phone`, if it went out. A send that was started at or after `since_ms`
    /// but not confirmed is reported as not sent (and recorded as interrupted): the engine
    /// sends it again under the same WhatsApp id.
    fn find_sent<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        phone: &'a str,
        since_ms: i64,
        wa_message_id: &'a str,
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
    /// Of `pending`: first contacts held by the account's new-contact limit until it resets
    /// (each recipient's `held_until`).
    pub held_new_contacts: i64,
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
    Progress {
        tenant_id: String,
        campaign_id: String,
        progress: Progress,
    },
    Status {
        tenant_id: String,
        campaign_id: String,
        status: CampaignStatus,
        reason: Option<String>,
        /// With the reason `reachout_timelock`: when the lock ends and the campaign resumes.
        until: Option<i64>,
    },
}

/// `data` of a `campaign_progress` event (WebSocket, Socket.IO, webhooks): a campaign's counts.
/// Published at most once a second per campaign while it runs, and with every status change.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CampaignProgressData {
    pub campaign_id: String,
    pub progress: Progress,
}

/// `data` of a `campaign_status` event (WebSocket, Socket.IO, webhooks): a campaign's new status.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CampaignStatusData {
    pub campaign_id: String,
    pub status: CampaignStatus,
    /// Why (paused by user, the account logged out, `reachout_timelock`, …).
    pub reason: Option<String>,
    /// With the reason `reachout_timelock`: when WhatsApp's lock ends (ms since epoch); the
    /// campaign resumes by itself then (or earlier, when WhatsApp lifts the lock).
    pub until: Option<i64>,
}

/// The order of a status change and the counts published with it: a campaign that becomes
/// `draft`, `scheduled` or `running` announces that first, then its counts; one that stops
/// (`paused`, `completed`, `cancelled`) publishes its final counts first, then the status. So a
/// run's progress events always lie between its `running` event and the one that ends it.
pub fn status_before_progress(status: CampaignStatus) -> bool {
    matches!(status, CampaignStatus::Draft | CampaignStatus::Scheduled | CampaignStatus::Running)
}

pub(crate) fn progress_json(campaign_id: &str, progress: &Progress) -> serde_json::Value {
    serde_json::to_value(CampaignProgressData {
        campaign_id: campaign_id.to_owned(),
        progress: progress.clone(),
    })
    .unwrap_or(serde_json::Value::Null)
}

pub(crate) fn status_json(
    campaign_id: &str,
    status: CampaignStatus,
    reason: Option<&str>,
    until: Option<i64>,
) -> serde_json::Value {
    serde_json::to_value(CampaignStatusData {
        campaign_id: campaign_id.to_owned(),
        status,
        reason: reason.map(str::to_owned),
        until,
    })
    .unwrap_or(serde_json::Value::Null)
}

/// Writes `campaign_status` and `campaign_progress` webhook events for a status change, in the
/// order of [`status_before_progress`].
#[allow(clippy::too_many_arguments)]
pub fn enqueue_status_events(
    tx: &crate::db::Conn,
    tenant_id: &str,
    campaign_id: &str,
    status: CampaignStatus,
    reason: Option<&str>,
    until: Option<i64>,
    progress: &Progress,
    now: i64,
) -> crate::db::DbResult<()> {
    let status_ev = |tx: &crate::db::Conn| {
        crate::outbox::enqueue(
            tx,
            tenant_id,
            None,
            "campaign_status",
            status_json(campaign_id, status, reason, until),
            now,
        )
    };
    let progress_ev = |tx: &crate::db::Conn| {
        crate::outbox::enqueue(
            tx,
            tenant_id,
            None,
            "campaign_progress",
            progress_json(campaign_id, progress),
            now,
        )
    };
    if status_before_progress(status) {
        status_ev(tx)?;
        progress_ev(tx)?;
    } else {
        progress_ev(tx)?;
        status_ev(tx)?;
    }
    Ok(())
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
/// How many recipients an account takes (and prepares) at a time.
const WINDOW: i64 = 64;
/// Sends one account makes in one tick at most, so status changes are noticed between bursts.
const MAX_SENDS_PER_TICK: usize = 32;
/// Progress events per campaign at most this often (clock time).
const PROGRESS_EVERY_MS: i64 = 1_000;

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
    /// The template media file the campaign sends (`template_media` row), if any.
    media_id: Option<String>,
    media: Option<Arc<CampaignMedia>>,
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
    /// A first contact over the account's new-contact limit: back to the queue without using
    /// an attempt, held until the limit resets then.
    Hold(i64),
}

/// The reason of a recipient held by its account's new-contact limit.
pub const HELD_NEW_CONTACT: &str = "new_contact_limit";

/// The engine. Cheap to share; [`Engine::tick`] and [`Engine::run`] drive it.
pub struct Engine {
    db: Db,
    clock: SharedClock,
    sender: Arc<dyn CampaignSender>,
    wake: Arc<Notify>,
    events: broadcast::Sender<CampaignEvent>,
    /// Where progress and status changes are published for WebSocket and Socket.IO clients.
    live: Option<crate::live::LiveBus>,
    /// Draws the random part of each pause between sends ([`pacing_interval_ms`]).
    jitter: Mutex<StdRng>,
    inner: Mutex<Inner>,
}

/// How an [`Engine`] is built beyond its database, clock and sender.
#[derive(Default)]
#[non_exhaustive]
pub struct EngineOptions {
    /// Where progress and status changes are published for WebSocket and Socket.IO clients.
    pub live: Option<crate::live::LiveBus>,
    /// The run loop's waker (default: its own); the server shares it with the session events,
    /// so a reach-out time-lock pauses campaigns at once.
    pub wake: Option<Arc<Notify>>,
    /// Seeds the pacing jitter (tests); default: seeded from the operating system.
    pub jitter_seed: Option<u64>,
}

impl EngineOptions {
    pub fn live(mut self, live: crate::live::LiveBus) -> Self {
        self.live = Some(live);
        self
    }

    pub fn wake(mut self, wake: Arc<Notify>) -> Self {
        self.wake = Some(wake);
        self
    }

    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }
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
    /// Campaigns (id -> tenant) whose counts changed since their last progress event.
    progress_dirty: HashMap<String, String>,
    /// Media files of running campaigns, by `template_media` id: loaded once, shared by every
    /// send (the runtime reuses one upload per account for the same file).
    media: HashMap<String, Arc<CampaignMedia>>,
}

enum Window {
    /// Recipients were assigned to the account.
    Taken,
    /// No unassigned recipient is due.
    Empty,
    /// The account could not check numbers; nothing was assigned.
    CheckFailed,
}

#[derive(Clone, Copy)]
enum ClaimFrom {
    /// Recipients assigned to this account.
    Assigned,
    /// The last recipient assigned to another account (the end of a campaign).
    Others,
}

fn corrupt(e: impl std::fmt::Display) -> DbError {
    DbError::Corrupt(e.to_string())
}

fn to_sql_err(e: serde_json::Error) -> DbError {
    DbError::Encode(e.to_string())
}

/// Counts for one campaign.
pub fn progress(c: &Conn, campaign_id: &str, now: i64) -> crate::db::DbResult<Progress> {
    let mut p = Progress::default();
    let mut stmt = c.prepare_cached(
        "SELECT status, reason, CASE WHEN next_attempt_at > ?2 THEN 1 ELSE 0 END, COUNT(*) FROM campaign_recipients
         WHERE campaign_id = ?1 GROUP BY 1, 2, 3",
    )?;
    let rows = stmt.query_map(params![campaign_id, now], |r| {
        Ok((r.get::<String>(0)?, r.get::<Option<String>>(1)?, r.get::<i64>(2)?, r.get::<i64>(3)?))
    })?;
    for row in rows {
        let (status, reason, later, n) = row?;
        p.total += n;
        if status == "pending" && later == 1 && reason.as_deref() == Some(HELD_NEW_CONTACT) {
            p.held_new_contacts += n;
        }
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

/// Sets a campaign's status (and reason) and writes the matching outbox events (the status and
/// the counts at that moment, which it returns).
pub fn set_status(
    c: &mut Conn,
    tenant_id: &str,
    campaign_id: &str,
    status: CampaignStatus,
    reason: Option<&str>,
    now: i64,
) -> crate::db::DbResult<Progress> {
    set_status_until(c, tenant_id, campaign_id, status, reason, None, now)
}

/// [`set_status`] with the time a pause ends by itself (`until`, for `reachout_timelock`).
pub fn set_status_until(
    c: &mut Conn,
    tenant_id: &str,
    campaign_id: &str,
    status: CampaignStatus,
    reason: Option<&str>,
    until: Option<i64>,
    now: i64,
) -> crate::db::DbResult<Progress> {
    let tx = c.transaction()?;
    tx.execute(
        "UPDATE campaigns SET status = ?3, status_reason = ?4, updated_at = ?5, paused_until = ?6,
           started_at = CASE WHEN ?3 = 'running' THEN COALESCE(started_at, ?5) ELSE started_at END,
           completed_at = CASE WHEN ?3 IN ('completed','cancelled') THEN ?5 ELSE completed_at END
         WHERE tenant_id = ?1 AND id = ?2",
        params![tenant_id, campaign_id, status.as_str(), reason, now, until],
    )?;
    if status == CampaignStatus::Cancelled {
        tx.execute(
            "UPDATE campaign_recipients SET status = 'skipped', reason = 'cancelled', updated_at = ?2
             WHERE campaign_id = ?1 AND status = 'pending'",
            params![campaign_id, now],
        )?;
    }
    let counts = progress(&tx, campaign_id, now)?;
    enqueue_status_events(&tx, tenant_id, campaign_id, status, reason, until, &counts, now)?;
    tx.commit()?;
    Ok(counts)
}

impl Engine {
    pub fn new(db: Db, clock: SharedClock, sender: Arc<dyn CampaignSender>) -> Arc<Self> {
        Self::with_live(db, clock, sender, None)
    }

    /// [`Engine::new`] also publishing `campaign_progress` and `campaign_status` on `live`.
    pub fn with_live(
        db: Db,
        clock: SharedClock,
        sender: Arc<dyn CampaignSender>,
        live: Option<crate::live::LiveBus>,
    ) -> Arc<Self> {
        Self::with_options(db, clock, sender, EngineOptions { live, ..EngineOptions::default() })
    }

    /// An engine with everything of [`EngineOptions`] chosen.
    pub fn with_options(
        db: Db,
        clock: SharedClock,
        sender: Arc<dyn CampaignSender>,
        options: EngineOptions,
    ) -> Arc<Self> {
        let (events, _) = broadcast::channel(1024);
        let jitter = match options.jitter_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => rand::make_rng(),
        };
        Arc::new(Self {
            db,
            clock,
            sender,
            wake: options.wake.unwrap_or_default(),
            events,
            live: options.live,
            jitter: Mutex::new(jitter),
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
        #[allow(clippy::type_complexity)]
        let rows: Vec<(i64, String, String, String, String, i64)> = self
            .db
            .call(|c| {
                let mut stmt = c.prepare(
                    "SELECT id, campaign_id, tenant_id, account_id, phone, sending_since FROM campaign_recipients
                     WHERE status = 'sending' AND account_id IS NOT NULL",
                )?;
                let rows = stmt
                    .query_map([], |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get::<Option<i64>>(5)?.unwrap_or(0),
                        ))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        for (id, campaign, tenant, account, phone, since) in rows {
            let wa_id = campaign_message_id(&campaign, id);
            let found = match self.sender.find_sent(&tenant, &account, &phone, since, &wa_id).await {
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
                            "UPDATE campaign_recipients SET status = 'pending', attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, sending_since = NULL, updated_at = ?2
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
        let Housekeeping { mut campaigns, accounts, events: status_events, synced } =
            self.db.call(move |c| housekeeping(c, now, sync, &cached)).await?;
        self.attach_media(&mut campaigns).await?;
        self.with_inner(|i| {
            for (a, info) in &accounts {
                i.sent_today.insert(a.clone(), (today, info.sent_today));
            }
        });
        let mut announced = std::collections::HashSet::new();
        for (e, counts) in status_events {
            if let CampaignEvent::Status { campaign_id, .. } = &e {
                announced.insert(campaign_id.clone());
            }
            self.publish_status(e, counts, now);
        }
        // A status change carried the counts after this tick's delivery sync: announcing them
        // again would put a `campaign_progress` a second after `completed`.
        let mut touched: Vec<(String, String)> = synced;
        touched.retain(|(_, id)| !announced.contains(id));
        let mut next_wake: Option<i64> = None;
        // Accounts send concurrently (each has its own session); one account's sends stay in
        // order. Deterministic order of results: accounts by id.
        let mut account_ids: Vec<&String> = accounts.keys().collect();
        account_ids.sort();
        let runs = account_ids
            .into_iter()
            .filter(|a| accounts[*a].state == "active")
            .map(|a| self.run_account(a, &accounts[a], &campaigns, now));
        for r in futures::future::join_all(runs).await {
            let (t, w) = r?;
            touched.extend(t);
            if let Some(w) = w {
                next_wake = Some(next_wake.map_or(w, |n| n.min(w)));
            }
        }
        let mut wake_at = |t: i64| next_wake = Some(next_wake.map_or(t, |n: i64| n.min(t)));
        // Retries waiting for their time, and scheduled campaigns.
        let retry_at = self
            .db
            .call(move |c| {
                c.query_row(
                    "SELECT MIN(t) FROM (
                       SELECT MIN(r.next_attempt_at) AS t FROM campaign_recipients r JOIN campaigns c ON c.id = r.campaign_id
                        WHERE c.status = 'running' AND r.status = 'pending' AND r.next_attempt_at > ?1
                       UNION ALL
                       SELECT MIN(scheduled_at) FROM campaigns WHERE status = 'scheduled'
                       UNION ALL
                       SELECT MIN(paused_until) FROM campaigns WHERE status = 'paused' AND status_reason = ?2) AS due",
                    params![now, timelock::REASON],
                    |r| r.get::<Option<i64>>(0),
                )
            })
            .await?;
        if let Some(t) = retry_at {
            wake_at(t);
        }
        // Progress is published at most once per second (clock time) per campaign; a change
        // inside that second is published when it ends, so the last counts always go out.
        let (due, later) = self.with_inner(|i| {
            let Inner { progress_dirty, last_progress, .. } = i;
            for (tenant, id) in touched {
                progress_dirty.insert(id, tenant);
            }
            let mut due = Vec::new();
            let mut later: Option<i64> = None;
            progress_dirty.retain(|id, tenant| match last_progress.get(id) {
                Some(&t) if now >= t && now - t < PROGRESS_EVERY_MS => {
                    let w = t + PROGRESS_EVERY_MS;
                    later = Some(later.map_or(w, |l| l.min(w)));
                    true
                }
                _ => {
                    last_progress.insert(id.clone(), now);
                    due.push((tenant.clone(), id.clone()));
                    false
                }
            });
            (due, later)
        });
        if let Some(w) = later {
            wake_at(w);
        }
        // Counts go to webhooks (outbox, with the snapshot) and to live listeners.
        for (tenant, id) in due {
            let (cid, t) = (id.clone(), tenant.clone());
            let p = self
                .db
                .call(move |c| {
                    let tx = c.transaction()?;
                    let p = progress(&tx, &cid, now)?;
                    crate::outbox::enqueue(&tx, &t, None, "campaign_progress", progress_json(&cid, &p), now)?;
                    tx.commit()?;
                    Ok(p)
                })
                .await?;
            self.publish(CampaignEvent::Progress { tenant_id: tenant, campaign_id: id, progress: p }, now);
        }
        Ok(next_wake)
    }

    /// Gives running campaigns their media file, from the cache or the database (once per file).
    /// A campaign whose file is gone keeps `media: None` with its `media_id`; its sends fail.
    async fn attach_media(&self, campaigns: &mut [RunningCampaign]) -> Result<(), DbError> {
        let wanted: Vec<String> = campaigns.iter().filter_map(|c| c.media_id.clone()).collect();
        let missing: Vec<String> = self.with_inner(|i| {
            i.media.retain(|id, _| wanted.contains(id));
            wanted.iter().filter(|id| !i.media.contains_key(*id)).cloned().collect()
        });
        for id in missing {
            let mid = id.clone();
            let file = self.db.call(move |c| crate::template_media::load_file(c, &mid)).await?;
            if let Some(f) = file {
                let m = Arc::new(CampaignMedia::new(f.kind, f.mimetype, f.file_name, f.data).stored_as(f.id));
                self.with_inner(|i| i.media.insert(id, m));
            }
        }
        self.with_inner(|i| {
            for c in campaigns.iter_mut() {
                c.media = c.media_id.as_ref().and_then(|id| i.media.get(id).cloned());
            }
        });
        Ok(())
    }

    /// Sends an event to in-process subscribers and, as `campaign_progress` /
    /// `campaign_status`, on the live bus (WebSocket, Socket.IO).
    fn publish(&self, e: CampaignEvent, now: i64) {
        if let Some(live) = &self.live {
            let (tenant, name, data) = match &e {
                CampaignEvent::Progress { tenant_id, campaign_id, progress } => {
                    (tenant_id, "campaign_progress", progress_json(campaign_id, progress))
                }
                CampaignEvent::Status { tenant_id, campaign_id, status, reason, until } => (
                    tenant_id,
                    "campaign_status",
                    status_json(campaign_id, *status, reason.as_deref(), *until),
                ),
            };
            live.publish(tenant, None, name, data, now);
        }
        let _ = self.events.send(e);
    }

    /// A status change with the campaign's counts at that moment, in the order of
    /// [`status_before_progress`].
    fn publish_status(&self, e: CampaignEvent, counts: Progress, now: i64) {
        let CampaignEvent::Status { tenant_id, campaign_id, status, .. } = &e else {
            self.publish(e, now);
            return;
        };
        let (tenant, id, first) = (tenant_id.clone(), campaign_id.clone(), status_before_progress(*status));
        self.with_inner(|i| {
            i.progress_dirty.remove(&id);
            i.last_progress.insert(id.clone(), now);
        });
        let p = CampaignEvent::Progress { tenant_id: tenant, campaign_id: id, progress: counts };
        if first {
            self.publish(e, now);
            self.publish(p, now);
        } else {
            self.publish(p, now);
            self.publish(e, now);
        }
    }

    /// One account's turn: sends every message due now (several at fast rates, up to
    /// [`MAX_SENDS_PER_TICK`]), respecting its pacing and daily limit. Returns the campaigns it
    /// touched and when it next has work.
    async fn run_account(
        &self,
        account: &str,
        info: &AccountInfo,
        campaigns: &[RunningCampaign],
        now: i64,
    ) -> Result<(Vec<(String, String)>, Option<i64>), DbError> {
        let mut touched = Vec::new();
        let (next_at, limited) = self
            .with_inner(|i| (i.next_send_at.get(account).copied(), i.limited_until.get(account).copied()));
        if let Some(t) = limited.filter(|t| *t > now) {
            return Ok((touched, Some(t)));
        }
        if let Some(t) = next_at.filter(|t| *t > now) {
            return Ok((touched, Some(t)));
        }
        let mine: Vec<&RunningCampaign> =
            campaigns.iter().filter(|c| c.accounts.iter().any(|a| a == account)).collect();
        let mut sent_today = info.sent_today;
        let mut next_wake = None;
        for _ in 0..MAX_SENDS_PER_TICK {
            if sent_today >= info.daily_limit {
                let reset = day_start(now) + DAY_MS;
                self.with_inner(|i| i.limited_until.insert(account.to_owned(), reset));
                for camp in &mine {
                    self.note_daily_limit(camp, reset).await?;
                }
                return Ok((touched, Some(reset)));
            }
            let mut sent_one = false;
            for camp in &mine {
                let Some(claimed) = self.next_recipient(camp, account, now).await? else {
                    continue;
                };
                touched.push((camp.tenant_id.clone(), camp.id.clone()));
                let outcome = self.attempt(camp, account, &claimed).await;
                let after = self.clock.now_ms();
                let requeue = matches!(outcome, Outcome::Requeue);
                let held = match &outcome {
                    Outcome::Hold(until) => Some(*until),
                    _ => None,
                };
                if matches!(outcome, Outcome::Sent(_)) {
                    sent_today += 1;
                    let day = day_start(after);
                    self.with_inner(|i| {
                        let e = i.sent_today.entry(account.to_owned()).or_insert((day, 0));
                        if e.0 == day {
                            e.1 += 1;
                        } else {
                            *e = (day, 1);
                        }
                    });
                }
                if let Some(until) = held {
                    // Nothing went out: no pause; the account goes on with people it knows.
                    self.record(camp, &claimed, outcome, after).await?;
                    for camp in &mine {
                        self.hold_new_contacts(camp, account, until, after).await?;
                    }
                    sent_one = true;
                    break;
                }
                if !requeue {
                    let random = self.jitter.lock().unwrap_or_else(|p| p.into_inner()).next_u64();
                    let t = after + pacing_interval_ms(camp.rate, camp.jitter, random);
                    self.with_inner(|i| i.next_send_at.insert(account.to_owned(), t));
                    next_wake = Some(t);
                }
                self.record(camp, &claimed, outcome, after).await?;
                if requeue {
                    // Not connected or limited: what this account holds goes back to the pool.
                    self.release(account).await?;
                    let limited = self.with_inner(|i| i.limited_until.get(account).copied());
                    return Ok((touched, limited.filter(|t| *t > now)));
                }
                sent_one = true;
                break;
            }
            // Continue only while the next send is already due (fast rates).
            if !sent_one || next_wake.is_some_and(|t| t > self.clock.now_ms()) {
                break;
            }
        }
        Ok((touched, next_wake))
    }

    /// Returns the recipients assigned to `account` but not being sent to the queue.
    async fn release(&self, account: &str) -> Result<(), DbError> {
        let a = account.to_owned();
        self.db
            .call(move |c| {
                c.execute(
                    "UPDATE campaign_recipients SET account_id = NULL WHERE account_id = ?1 AND status = 'pending'",
                    params![a],
                )?;
                Ok(())
            })
            .await
    }

    /// Claims the next recipient `account` should send to in `camp`: one of the recipients
    /// assigned to it; else it takes a new window of unassigned ones (checking their numbers and
    /// preparing their sessions in batches); else, at the end of a campaign, the last recipient
    /// assigned to another account.
    async fn next_recipient(
        &self,
        camp: &RunningCampaign,
        account: &str,
        now: i64,
    ) -> Result<Option<Claimed>, DbError> {
        for _ in 0..4 {
            let (cid, acc, tenant, chk) =
                (camp.id.clone(), account.to_owned(), camp.tenant_id.clone(), camp.check_numbers);
            let claimed =
                self.db.call(move |c| claim(c, &tenant, &cid, &acc, now, chk, ClaimFrom::Assigned)).await?;
            if claimed.is_some() {
                return Ok(claimed);
            }
            match self.take_window(camp, account, now).await? {
                Window::Taken => continue,
                Window::Empty => break,
                Window::CheckFailed => return Ok(None),
            }
        }
        let (cid, acc, tenant, chk) =
            (camp.id.clone(), account.to_owned(), camp.tenant_id.clone(), camp.check_numbers);
        self.db.call(move |c| claim(c, &tenant, &cid, &acc, now, chk, ClaimFrom::Others)).await
    }

    /// Assigns the next [`WINDOW`] unassigned recipients of `camp` to `account`, checks their
    /// numbers (when the campaign asks) and prepares the account to send to them.
    async fn take_window(&self, camp: &RunningCampaign, account: &str, now: i64) -> Result<Window, DbError> {
        let (cid, acc) = (camp.id.clone(), account.to_owned());
        let rows: Vec<(i64, String, bool)> = self
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                let rows = tx
                    .prepare_cached(TAKE_WINDOW_SQL)?
                    .query_map(params![cid, now, acc, WINDOW], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                {
                    let mut assign = tx.prepare_cached(
                        "UPDATE campaign_recipients SET account_id = ?2 WHERE id = ?1 AND status = 'pending'",
                    )?;
                    for (id, _, _) in &rows {
                        assign.execute(params![id, acc])?;
                    }
                }
                tx.commit()?;
                Ok(rows)
            })
            .await?;
        if rows.is_empty() {
            return Ok(Window::Empty);
        }
        let mut reachable: Vec<String> = rows.iter().filter(|r| r.2).map(|r| r.1.clone()).collect();
        let unchecked: Vec<String> = rows.iter().filter(|r| !r.2).map(|r| r.1.clone()).collect();
        if camp.check_numbers && !unchecked.is_empty() {
            match self.sender.check_numbers(&camp.tenant_id, account, &unchecked).await {
                Ok(results) => {
                    let at = self.clock.now_ms();
                    let cid = camp.id.clone();
                    reachable.extend(results.iter().filter(|(_, on)| *on).map(|(p, _)| p.clone()));
                    self.db.call(move |c| record_checks(c, &cid, &results, at)).await?;
                }
                Err(e) => {
                    tracing::warn!(campaign = %camp.id, account, error = %e, "number check failed; will retry");
                    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
                    self.db
                        .call(move |c| {
                            let tx = c.transaction()?;
                            for id in ids {
                                tx.execute(
                                    "UPDATE campaign_recipients SET account_id = NULL WHERE id = ?1 AND status = 'pending'",
                                    params![id],
                                )?;
                            }
                            tx.commit()?;
                            Ok(())
                        })
                        .await?;
                    return Ok(Window::CheckFailed);
                }
            }
        } else {
            reachable.extend(unchecked);
        }
        if !reachable.is_empty()
            && let Err(e) = self.sender.prepare(&camp.tenant_id, account, &reachable).await
        {
            // Each send still sets up what it lacks on its own.
            tracing::info!(campaign = %camp.id, account, error = %e, "batch preparation failed");
        }
        Ok(Window::Taken)
    }

    /// Holds until `until` the pending recipients of `camp` that would be first contacts of
    /// `account`, whose new-contact limit is reached: those assigned to it and, when it is the
    /// campaign's only account, the unassigned ones too. Notes it on the campaign.
    async fn hold_new_contacts(
        &self,
        camp: &RunningCampaign,
        account: &str,
        until: i64,
        now: i64,
    ) -> Result<(), DbError> {
        let (tenant, id, acc) = (camp.tenant_id.clone(), camp.id.clone(), account.to_owned());
        let only_account = i64::from(camp.accounts.len() == 1);
        let note = format!("new-contact limit reached; first contacts resume at {until}");
        self.db
            .call(move |c| {
                let tx = c.transaction()?;
                // Recipients are E.164 (`+` and digits); 1:1 chats are `digits@s.whatsapp.net`.
                let held = tx.execute(
                    "UPDATE campaign_recipients SET next_attempt_at = ?3, reason = ?4, account_id = NULL, updated_at = ?5
                     WHERE campaign_id = ?1 AND status = 'pending' AND next_attempt_at < ?3
                       AND (account_id = ?2 OR (account_id IS NULL AND ?6 = 1))
                       AND NOT EXISTS (SELECT 1 FROM account_contacts k WHERE k.account_id = ?2
                                         AND k.chat_jid = substr(campaign_recipients.phone, 2) || '@s.whatsapp.net')",
                    params![id, acc, until, HELD_NEW_CONTACT, now, only_account],
                )?;
                let any: bool = tx.query_row(
                    "SELECT EXISTS(SELECT 1 FROM campaign_recipients WHERE campaign_id = ?1 AND status = 'pending'
                       AND reason = ?2 AND next_attempt_at > ?3)",
                    params![id, HELD_NEW_CONTACT, now],
                    |r| r.get(0),
                )?;
                if held > 0 || any {
                    tx.execute(
                        "UPDATE campaigns SET status_reason = ?3 WHERE tenant_id = ?1 AND id = ?2 AND status = 'running'",
                        params![tenant, id, note],
                    )?;
                }
                tx.commit()
            })
            .await
    }

    async fn note_daily_limit(&self, camp: &RunningCampaign, reset: i64) -> Result<(), DbError> {
        let (tenant, id) = (camp.tenant_id.clone(), camp.id.clone());
        let reason = format!("daily limit reached; sending resumes at {reset}");
        self.db
            .call(move |c| {
                c.execute(
                    "UPDATE campaigns SET status_reason = ?3 WHERE tenant_id = ?1 AND id = ?2 AND status = 'running'
                       AND (status_reason IS NULL OR status_reason <> ?3)",
                    params![tenant, id, reason],
                )?;
                Ok(())
            })
            .await
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
        if camp.media_id.is_some() && camp.media.is_none() {
            return Outcome::Failed("the template's media file is missing".into());
        }
        let message = CampaignMessage::new(text, camp.media.clone(), campaign_message_id(&camp.id, r.id));
        match self.sender.send(&camp.tenant_id, account, &r.phone, &message).await {
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
            Err(SendError::NewContactLimit { reset_at_ms }) => Outcome::Hold(reset_at_ms),
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
                        // The note on held first contacts goes with the last of them.
                        c.execute(
                            "UPDATE campaigns SET status_reason = NULL WHERE id = ?1 AND status_reason LIKE 'new-contact limit%'
                               AND NOT EXISTS (SELECT 1 FROM campaign_recipients WHERE campaign_id = ?1 AND status = 'pending'
                                                 AND reason = ?2 AND next_attempt_at > ?3)",
                            params![cid, HELD_NEW_CONTACT, now],
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
                    Outcome::Hold(until) => {
                        c.execute(
                            "UPDATE campaign_recipients SET status = 'pending', attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END,
                               reason = ?3, next_attempt_at = ?2, account_id = NULL, sending_since = NULL, updated_at = ?4
                             WHERE id = ?1",
                            params![id, until, HELD_NEW_CONTACT, now],
                        )?;
                    }
                    Outcome::Requeue => {
                        c.execute(
                            "UPDATE campaign_recipients SET status = 'pending', attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, sending_since = NULL, updated_at = ?2
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
fn housekeeping(
    c: &mut Conn,
    now: i64,
    sync_deliveries: bool,
    cached_sent_today: &HashMap<String, i64>,
) -> Result<Housekeeping, DbError> {
    let mut events = Vec::new();
    let due: Vec<(String, String)> = c
        .prepare("SELECT tenant_id, id FROM campaigns WHERE status = 'scheduled' AND scheduled_at <= ?1")?
        .query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (tenant, id) in due {
        let counts = set_status(c, &tenant, &id, CampaignStatus::Running, None, now)?;
        events.push((
            CampaignEvent::Status {
                tenant_id: tenant,
                campaign_id: id,
                status: CampaignStatus::Running,
                reason: None,
                until: None,
            },
            counts,
        ));
    }
    // Campaigns paused for a reach-out time-lock resume once none of their accounts is locked
    // (the lock ended, or WhatsApp lifted it); a lock moved later moves their end.
    let locked: Vec<(String, String, String, Option<i64>)> = c
        .prepare("SELECT tenant_id, id, account_ids, paused_until FROM campaigns WHERE status = 'paused' AND status_reason = ?1")?
        .query_map(params![timelock::REASON], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    for (tenant, id, account_ids, paused_until) in locked {
        let accounts: Vec<String> = serde_json::from_str(&account_ids).map_err(corrupt)?;
        let until = lock_end(c, &accounts, now)?;
        let (status, reason) = match until {
            None => (CampaignStatus::Running, None),
            Some(u) if Some(u) != paused_until => (CampaignStatus::Paused, Some(timelock::REASON)),
            Some(_) => continue,
        };
        let counts = set_status_until(c, &tenant, &id, status, reason, until, now)?;
        events.push((
            CampaignEvent::Status {
                tenant_id: tenant,
                campaign_id: id,
                status,
                reason: reason.map(str::to_owned),
                until,
            },
            counts,
        ));
    }
    let mut synced: Vec<(String, String)> = Vec::new();
    if sync_deliveries {
        // SQLite's RETURNING takes only the target's bare columns; PostgreSQL needs them
        // qualified here (`messages` has a `tenant_id` too).
        let returning = match c.backend() {
            crate::db::Backend::Sqlite => "tenant_id, campaign_id",
            crate::db::Backend::Postgres => "r.tenant_id, r.campaign_id",
        };
        synced = c
            .prepare_cached(&format!(
                "UPDATE campaign_recipients AS r SET status = m.status,
                   delivered_at = COALESCE(r.delivered_at, m.delivered_at, m.read_at, ?1),
                   read_at = CASE WHEN m.status = 'read' THEN COALESCE(m.read_at, ?1) ELSE r.read_at END,
                   updated_at = ?1
                 FROM messages m
                 WHERE r.status IN ('sent','delivered') AND m.id = r.message_id
                   AND ((r.status = 'sent' AND m.status IN ('delivered','read')) OR (r.status = 'delivered' AND m.status = 'read'))
                 RETURNING {returning}"
            ))?
            .query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        synced.sort();
        synced.dedup();
    }
    let mut stmt = c.prepare(
        "SELECT id, tenant_id, account_ids, rate_per_minute, jitter_pct, check_numbers, max_attempts, body, declared, variables
         FROM campaigns WHERE status = 'running' ORDER BY kind = 'direct' DESC, created_at, id",
    )?;
    let raw = stmt
        .query_map([], |r| {
            Ok((
                r.get::<String>(0)?,
                r.get::<String>(1)?,
                r.get::<String>(2)?,
                r.get::<i64>(3)?,
                r.get::<i64>(4)?,
                r.get::<bool>(5)?,
                r.get::<i64>(6)?,
                r.get::<String>(7)?,
                r.get::<String>(8)?,
                r.get::<String>(9)?,
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
            media_id: None,
            media: None,
        };
        let camp = RunningCampaign { media_id: crate::template_media::of_campaign(c, &camp.id)?, ..camp };
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
        // No first contact while WhatsApp time-locks one of the accounts (each would be refused
        // and count against it): the campaign waits for the lock's end.
        let lock_until = if pause.is_none() { lock_end(c, &camp.accounts, now)? } else { None };
        if lock_until.is_some() {
            pause = Some(timelock::REASON.to_owned());
        }
        if let Some(reason) = pause {
            let counts = set_status_until(
                c,
                &camp.tenant_id,
                &camp.id,
                CampaignStatus::Paused,
                Some(&reason),
                lock_until,
                now,
            )?;
            events.push((
                CampaignEvent::Status {
                    tenant_id: camp.tenant_id.clone(),
                    campaign_id: camp.id.clone(),
                    status: CampaignStatus::Paused,
                    reason: Some(reason),
                    until: lock_until,
                },
                counts,
            ));
            continue;
        }
        let open: bool = c.query_row(
            "SELECT EXISTS(SELECT 1 FROM campaign_recipients WHERE campaign_id = ?1 AND status IN ('pending','sending'))",
            params![camp.id],
            |r| r.get(0),
        )?;
        if !open {
            let counts = set_status(c, &camp.tenant_id, &camp.id, CampaignStatus::Completed, None, now)?;
            events.push((
                CampaignEvent::Status {
                    tenant_id: camp.tenant_id.clone(),
                    campaign_id: camp.id.clone(),
                    status: CampaignStatus::Completed,
                    reason: None,
                    until: None,
                },
                counts,
            ));
            continue;
        }
        campaigns.push(camp);
    }
    // Accounts only used by paused/completed campaigns are not needed.
    accounts.retain(|a, _| campaigns.iter().any(|c| c.accounts.contains(a)));
    // Recipients assigned to an account that cannot send go back to the pool for the others.
    for (a, info) in &accounts {
        if info.state != "active" {
            c.execute(
                "UPDATE campaign_recipients SET account_id = NULL WHERE account_id = ?1 AND status = 'pending'",
                params![a],
            )?;
        }
    }
    Ok(Housekeeping { campaigns, accounts, events, synced })
}

/// When the last of `accounts`' reach-out time-locks in force at `now` ends, if any is.
fn lock_end(c: &Conn, accounts: &[String], now: i64) -> Result<Option<i64>, DbError> {
    let mut end: Option<i64> = None;
    for a in accounts {
        if let Some((until, _)) = timelock::in_force(c, a, now)? {
            end = Some(end.map_or(until, |e| e.max(until)));
        }
    }
    Ok(end)
}

/// What [`housekeeping`] found.
struct Housekeeping {
    campaigns: Vec<RunningCampaign>,
    accounts: HashMap<String, AccountInfo>,
    /// Status changes with the counts at that moment.
    events: Vec<(CampaignEvent, Progress)>,
    /// Campaigns (tenant, id) whose recipients' delivery statuses changed.
    synced: Vec<(String, String)>,
}

/// The next `?4` due recipients of campaign `?1` no account holds (or `?3` holds unchecked), in
/// id order on `campaign_recipients_claim`: it skips at most the windows other accounts hold.
pub(crate) const TAKE_WINDOW_SQL: &str = "SELECT id, phone, number_checked FROM campaign_recipients
     WHERE campaign_id = ?1 AND status = 'pending' AND +next_attempt_at <= ?2
       AND (account_id IS NULL OR (account_id = ?3 AND number_checked = 0))
     ORDER BY id LIMIT ?4";

/// The next due recipient of campaign `?1` assigned to account `?3`: the walk of the partial
/// index `campaign_recipients_claim_assigned` (pending rows only) in id order, no sort. The
/// unary `+` keeps `next_attempt_at` a filter: as an index range (`campaign_recipients_due`)
/// it would make SQLite sort every due recipient to find the first.
pub(crate) const CLAIM_ASSIGNED_SQL: &str = "SELECT id, phone, attempts, variables FROM campaign_recipients
     WHERE campaign_id = ?1 AND status = 'pending' AND account_id = ?3 AND +next_attempt_at <= ?2
       AND (?4 = 0 OR number_checked = 1)
     ORDER BY id LIMIT 1";

/// The last due recipient of campaign `?1` assigned elsewhere (taken over from a slower
/// account): `campaign_recipients_claim` walked backwards, no sort.
pub(crate) const CLAIM_OTHERS_SQL: &str = "SELECT id, phone, attempts, variables FROM campaign_recipients
     WHERE campaign_id = ?1 AND status = 'pending' AND account_id != ?3 AND +next_attempt_at <= ?2
       AND (?4 = 0 OR number_checked = 1)
     ORDER BY id DESC LIMIT 1";

/// Claims the next due recipient of `campaign_id` for `account_id`, skipping opted-out ones.
/// With `checked_only`, only recipients whose number was found on WhatsApp qualify.
fn claim(
    c: &mut Conn,
    tenant_id: &str,
    campaign_id: &str,
    account_id: &str,
    now: i64,
    checked_only: bool,
    from: ClaimFrom,
) -> Result<Option<Claimed>, DbError> {
    let tx = c.transaction()?;
    let claimed = loop {
        let sql = match from {
            ClaimFrom::Assigned => CLAIM_ASSIGNED_SQL,
            ClaimFrom::Others => CLAIM_OTHERS_SQL,
        };
        let next: Option<(i64, String, i64, String)> = tx
            .prepare_cached(sql)?
            .query_row(params![campaign_id, now, account_id, checked_only], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
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

/// Records number checks: on WhatsApp (may be sent to) or skipped as not on WhatsApp.
fn record_checks(
    c: &mut Conn,
    campaign_id: &str,
    results: &[(String, bool)],
    now: i64,
) -> Result<(), DbError> {
    let tx = c.transaction()?;
    {
        let mut on = tx.prepare_cached(
            "UPDATE campaign_recipients SET number_checked = 1 WHERE campaign_id = ?1 AND phone = ?2",
        )?;
        let mut off = tx.prepare_cached(
            "UPDATE campaign_recipients SET status = 'skipped', reason = 'not_on_whatsapp', number_checked = 1,
               account_id = NULL, updated_at = ?3
             WHERE campaign_id = ?1 AND phone = ?2 AND status = 'pending'",
        )?;
        for (phone, registered) in results {
            if *registered {
                on.execute(params![campaign_id, phone])?;
            } else {
                off.execute(params![campaign_id, phone, now])?;
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// Serialises a recipient snapshot for the `variables` column.
pub fn recipient_data_json(d: &RecipientData) -> crate::db::DbResult<String> {
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
