//! The outbox delivery worker: posts due deliveries through the [`OutboundClient`] (SSRF policy
//! at connect time, redirects re-checked, timeout, capped answer), records the outcome, retries
//! with backoff, dead-letters, and hands auto-replies to the send path.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use tokio::sync::Notify;
use utoipa::ToSchema;

use super::signature::{EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use crate::clock::SharedClock;
use crate::db::{Db, DbError, OptionalExtension, params};
use crate::outbound::{Limits, OutboundClient, OutboundError};
use crate::secrets::{SecretBox, SecretColumn};
use crate::state::AppState;

/// Deliveries due at `?1`, oldest first: `webhook_outbox_pending` (pending rows only) walked
/// in order, no sort; delivered and dead rows are never read.
pub(crate) const DUE_SQL: &str =
    "SELECT o.id, w.url, w.secret, o.payload, o.attempts, o.tenant_id, o.event_type, w.id
     FROM webhook_outbox o
     JOIN webhooks w ON w.id = o.webhook_id AND w.tenant_id = o.tenant_id
     WHERE o.status = 'pending' AND o.next_attempt_at <= ?1 AND w.enabled = 1
     ORDER BY o.next_attempt_at, o.id LIMIT 256";

pub use super::retry::RetryPolicy;

struct Due {
    id: String,
    tenant_id: String,
    event_type: String,
    url: String,
    /// The webhook's secret opened with the master key, or why it cannot be (the delivery then
    /// fails like a refused request and is retried, then dead-lettered).
    secret: Result<String, String>,
    payload: String,
    attempts: u32,
}

/// The body a receiver may answer an `incoming_message` delivery with (any 2xx status) to reply
/// on the same chat through the normal send path (daily limit, history, status events). Any
/// other body (or none) sends nothing.
///
/// Example: `{"reply": {"text": "Thanks, we'll be in touch", "quote": true}}`
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, ToSchema)]
pub struct AutoReplyBody {
    pub reply: AutoReply,
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoReply {
    /// The text to send back (1 to 65536 characters).
    pub text: String,
    /// Quote the incoming message (default false).
    #[serde(default)]
    pub quote: bool,
}

/// An auto-reply to send: a receiver answered `incoming_message` with an [`AutoReplyBody`].
#[derive(Debug, Clone)]
pub struct AutoReplyJob {
    pub tenant_id: String,
    pub account_id: String,
    /// The chat the incoming message came on.
    pub chat: String,
    /// WhatsApp's id of the incoming message (quoted when asked).
    pub wa_message_id: Option<String>,
    pub reply: AutoReply,
}

/// Sends an auto-reply through the normal send path; failures (account gone, limit reached,
/// session down) are logged, not retried: the webhook delivery itself succeeded.
pub async fn send_auto_reply(st: &AppState, job: AutoReplyJob) {
    let quoted_id = if job.reply.quote { job.wa_message_id } else { None };
    let content = crate::runtime::OutgoingContent::Text { body: job.reply.text, quoted_id };
    match crate::messages::send_message(st, &job.tenant_id, &job.account_id, &job.chat, content).await {
        Ok(m) => tracing::info!(account_id = %job.account_id, message_id = %m.id, "auto-reply sent"),
        Err(e) => tracing::warn!(account_id = %job.account_id, error = %e, "auto-reply not sent"),
    }
}

/// Largest receiver answer read for an auto-reply.
const MAX_REPLY_BODY: usize = 64 * 1024;

/// The auto-reply a receiver's answer asks for, if any.
fn auto_reply(d: &Due, body: &[u8]) -> Option<AutoReplyJob> {
    if d.event_type != "incoming_message" || body.is_empty() {
        return None;
    }
    let answer: AutoReplyBody = serde_json::from_slice(body).ok()?;
    let event: crate::outbox::EventEnvelope = serde_json::from_str(&d.payload).ok()?;
    let chat = event.data.get("chat")?.as_str()?.to_owned();
    Some(AutoReplyJob {
        tenant_id: d.tenant_id.clone(),
        account_id: event.account_id?,
        chat,
        wa_message_id: event.data.get("wa_message_id").and_then(|v| v.as_str()).map(str::to_owned),
        reply: answer.reply,
    })
}

/// Delivers outbox rows. [`WebhookWorker::run_once`] is deterministic given the clock, which is
/// how tests drive retries without sleeping.
pub struct WebhookWorker {
    db: Db,
    clock: SharedClock,
    policy: RetryPolicy,
    client: OutboundClient,
    notify: Arc<Notify>,
    replies: Option<tokio::sync::mpsc::UnboundedSender<AutoReplyJob>>,
    secrets: Arc<SecretBox>,
}

impl WebhookWorker {
    /// `client` carries the SSRF policy and trusted roots (the server's [`AppState::outbound`]);
    /// `secrets` opens the webhooks' secrets (the server's [`AppState::secrets`]).
    pub fn new(
        db: Db,
        clock: SharedClock,
        policy: RetryPolicy,
        notify: Arc<Notify>,
        client: OutboundClient,
        secrets: Arc<SecretBox>,
    ) -> Self {
        Self { db, clock, policy, client, notify, replies: None, secrets }
    }

    /// Hands auto-replies (see [`AutoReplyBody`]) to `tx`; without it answers are ignored.
    pub fn with_auto_replies(mut self, tx: tokio::sync::mpsc::UnboundedSender<AutoReplyJob>) -> Self {
        self.replies = Some(tx);
        self
    }

    /// Attempts every delivery due now; returns how many were attempted.
    pub async fn run_once(&self) -> Result<usize, DbError> {
        let now = self.clock.now_ms();
        let secrets = self.secrets.clone();
        let due = self
            .db
            .call(move |c| {
                let mut stmt = c.prepare_cached(DUE_SQL)?;
                let rows = stmt
                    .query_map(params![now], |r| {
                        Ok(Due {
                            id: r.get(0)?,
                            url: r.get(1)?,
                            secret: secrets
                                .open(SecretColumn::WebhookSecret, &r.get::<String>(7)?, &r.get::<String>(2)?)
                                .map_err(|e| format!("webhook secret cannot be used: {e}")),
                            payload: r.get(3)?,
                            attempts: r.get(4)?,
                            tenant_id: r.get(5)?,
                            event_type: r.get(6)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        let n = due.len();
        let results: Vec<(Due, Result<u16, String>)> = futures::stream::iter(due)
            .map(|d| async move {
                let r = self.post(&d, now).await;
                let r = match r {
                    Ok((status, body)) => {
                        if (200..300).contains(&status)
                            && let Some(tx) = &self.replies
                            && let Some(job) = auto_reply(&d, &body)
                        {
                            let _ = tx.send(job);
                        }
                        Ok(status)
                    }
                    Err(e) => Err(e),
                };
                (d, r)
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let policy = self.policy.clone();
        self.db
            .call(move |c| {
                let tx = c.transaction()?;
                for (d, r) in results {
                    let attempts = d.attempts + 1;
                    match r {
                        Ok(status) if (200..300).contains(&status) => {
                            tx.execute(
                                "UPDATE webhook_outbox SET status = 'delivered', attempts = ?2, last_status = ?3,
                                   last_error = NULL, delivered_at = ?4 WHERE id = ?1",
                                params![d.id, attempts, status, now],
                            )?;
                        }
                        other => {
                            let (status, err) = match other {
                                Ok(s) => (Some(s), format!("receiver answered HTTP {s}")),
                                Err(e) => (None, e),
                            };
                            let dead = attempts >= policy.max_attempts;
                            let next = now + policy.delay_after(attempts, rand::random());
                            tx.execute(
                                "UPDATE webhook_outbox SET status = ?2, attempts = ?3, last_status = ?4,
                                   last_error = ?5, next_attempt_at = ?6 WHERE id = ?1",
                                params![d.id, if dead { "dead" } else { "pending" }, attempts, status, err, next],
                            )?;
                            if dead {
                                tracing::warn!(delivery = %d.id, attempts, "webhook delivery dead-lettered");
                            }
                        }
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await?;
        Ok(n)
    }

    /// Posts one delivery; the status and (for `incoming_message`, bounded) the answer's body.
    async fn post(&self, d: &Due, now_ms: i64) -> Result<(u16, Bytes), String> {
        let ts = now_ms.div_euclid(1000);
        let sig = sign(d.secret.as_deref().map_err(|e| e.clone())?, ts, d.payload.as_bytes());
        let event_id = serde_json::from_str::<serde_json::Value>(&d.payload)
            .ok()
            .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_owned))
            .unwrap_or_default();
        let value = |v: String| HeaderValue::from_str(&v).map_err(|e| format!("bad header value: {e}"));
        let headers: [(HeaderName, HeaderValue); 5] = [
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (USER_AGENT, HeaderValue::from_static("broadcaster-webhooks/1")),
            (HeaderName::from_static(TIMESTAMP_HEADER), value(ts.to_string())?),
            (HeaderName::from_static(SIGNATURE_HEADER), value(sig)?),
            (HeaderName::from_static(EVENT_ID_HEADER), value(event_id)?),
        ];
        // Only the start of an answer is read: an `incoming_message` answer may carry an
        // auto-reply, anything else is ignored.
        let limits =
            Limits { timeout: self.policy.request_timeout, max_body: MAX_REPLY_BODY, truncate: true };
        let resp = self.client.post(&d.url, &headers, Bytes::from(d.payload.clone()), limits).await.map_err(
            |e| match e {
                OutboundError::Refused(m) => format!("refused by the SSRF policy: {m}"),
                OutboundError::Timeout(t) => format!("timed out after {t:?}"),
                other => other.to_string(),
            },
        )?;
        let body = if d.event_type == "incoming_message" { resp.body } else { Bytes::new() };
        Ok((resp.status.as_u16(), body))
    }

    /// Earliest `next_attempt_at` among pending deliveries.
    pub async fn next_due(&self) -> Result<Option<i64>, DbError> {
        self.db
            .call(|c| {
                Ok(c.query_row(
                    "SELECT MIN(next_attempt_at) FROM webhook_outbox WHERE status = 'pending'",
                    [],
                    |r| r.get::<Option<i64>>(0),
                )
                .optional()?
                .flatten())
            })
            .await
    }

    /// Runs until `shutdown` resolves, waking when work is due or new events are notified.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.run_once().await {
                tracing::error!(error = %e, "webhook worker pass failed");
            }
            let wait_ms = match self.next_due().await {
                Ok(Some(t)) => (t - self.clock.now_ms()).clamp(0, 60_000),
                Ok(None) => 60_000,
                Err(_) => 5_000,
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.notify.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(event_type: &str) -> Due {
        let payload = serde_json::json!({
            "id": "evt_1", "type": event_type, "tenant_id": "t", "account_id": "acc_1", "created_at": 1,
            "data": { "chat": "15550001111@s.whatsapp.net", "wa_message_id": "WA1" }
        });
        Due {
            id: "o".into(),
            tenant_id: "t".into(),
            event_type: event_type.into(),
            url: "http://x".into(),
            secret: Ok("s".into()),
            payload: payload.to_string(),
            attempts: 0,
        }
    }

    #[test]
    fn auto_replies_only_for_incoming_messages_with_a_reply_body() {
        let job = auto_reply(&due("incoming_message"), br#"{"reply":{"text":"hi","quote":true}}"#).unwrap();
        assert_eq!((job.account_id.as_str(), job.chat.as_str()), ("acc_1", "15550001111@s.whatsapp.net"));
        assert_eq!(job.wa_message_id.as_deref(), Some("WA1"));
        assert!(job.reply.quote);
        assert!(!auto_reply(&due("incoming_message"), br#"{"reply":{"text":"hi"}}"#).unwrap().reply.quote);
        for body in [&b""[..], b"ok", b"{}", br#"{"reply":"hi"}"#, br#"{"reply":{"text":"hi","x":1}}"#] {
            assert!(
                auto_reply(&due("incoming_message"), body).is_none(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(auto_reply(&due("message_sent"), br#"{"reply":{"text":"hi"}}"#).is_none());
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p =
            RetryPolicy { max_attempts: 5, base_delay_ms: 1000, max_delay_ms: 10_000, ..Default::default() };
        assert!((500..=1000).contains(&p.delay_after(1, 0)));
        assert_eq!(p.delay_after(1, 0), 500);
        assert_eq!(p.delay_after(1, 500), 1000);
        assert_eq!(p.delay_after(3, 0), 2000);
        assert!(p.delay_after(20, u64::MAX - 1) <= 10_000);
        assert_eq!(p.delay_after(64, 0), 5000);
    }
}
