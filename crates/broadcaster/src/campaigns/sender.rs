//! The production [`CampaignSender`]: campaigns send through the same path as the REST API
//! ([`crate::messages::send_message`]: account checks, daily limit, the `messages` row with its
//! delivery status, outbox and live events), so every campaign message shows up in history and
//! its receipts flow back to the recipient rows by message id.

use rusqlite::{OptionalExtension, params};

use super::engine::{CampaignSender, SendError, SendFuture};
use crate::error::ApiError;
use crate::runtime::OutgoingContent;
use crate::state::AppState;

pub struct MessagesSender {
    state: AppState,
}

impl MessagesSender {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

fn classify(e: ApiError) -> SendError {
    match e {
        ApiError::Conflict { message, .. } => SendError::AccountUnavailable(message),
        ApiError::RateLimited { reset_at, .. } => SendError::DailyLimit { reset_at_ms: reset_at },
        ApiError::BadRequest { message, .. } => SendError::Rejected(message),
        ApiError::NotFound(what) => SendError::AccountUnavailable(format!("{what} not found")),
        other => SendError::Transient(other.to_string()),
    }
}

impl CampaignSender for MessagesSender {
    fn send<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        phone: &'a str,
        text: &'a str,
    ) -> SendFuture<'a, String> {
        Box::pin(async move {
            let content = OutgoingContent::Text { body: text.to_owned(), quoted_id: None };
            crate::messages::send_message(&self.state, tenant_id, account_id, phone, content)
                .await
                .map(|m| m.id)
                .map_err(classify)
        })
    }

    fn check_numbers<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        phones: &'a [String],
    ) -> SendFuture<'a, Vec<(String, bool)>> {
        Box::pin(async move {
            let runtime = self
                .state
                .runtime
                .clone()
                .ok_or_else(|| SendError::AccountUnavailable("no WhatsApp runtime".into()))?;
            let digits: Vec<String> = phones.iter().map(|p| p.trim_start_matches('+').to_owned()).collect();
            let checks =
                runtime.check_numbers(tenant_id, account_id, &digits).await.map_err(|e| match e {
                    crate::runtime::RuntimeError::NotRunning => SendError::AccountUnavailable(e.to_string()),
                    other => SendError::Transient(other.to_string()),
                })?;
            Ok(checks
                .into_iter()
                .map(|c| (format!("+{}", c.phone.trim_start_matches('+')), c.on_whatsapp))
                .collect())
        })
    }

    fn find_sent<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        phone: &'a str,
        since_ms: i64,
    ) -> SendFuture<'a, Option<String>> {
        Box::pin(async move {
            let (t, a) = (tenant_id.to_owned(), account_id.to_owned());
            let chat = format!("{}@s.whatsapp.net", phone.trim_start_matches('+'));
            // A row that is not failed may have reached the phone: count it as sent rather than
            // risk a duplicate.
            self.state
                .db
                .call(move |c| {
                    Ok(c.query_row(
                        "SELECT id FROM messages WHERE tenant_id = ?1 AND account_id = ?2 AND direction = 'outgoing'
                           AND chat_jid = ?3 AND created_at >= ?4 AND status != 'failed' ORDER BY created_at LIMIT 1",
                        params![t, a, chat, since_ms],
                        |r| r.get::<_, String>(0),
                    )
                    .optional()?)
                })
                .await
                .map_err(|e| SendError::Transient(e.to_string()))
        })
    }
}
