//! The production [`CampaignSender`]: campaigns send through the same path as the REST API
//! ([`crate::messages::send_message`]: account checks, daily limit, the `messages` row with its
//! delivery status, outbox and live events), so every campaign message shows up in history and
//! its receipts flow back to the recipient rows by message id.

use crate::db::{OptionalExtension, params};

use super::engine::{CampaignMessage, CampaignSender, SendError, SendFuture};
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
        ApiError::RateLimited {
            code: crate::messages::NEW_CONTACT_LIMIT_REACHED, reset_at: Some(r), ..
        } => SendError::NewContactLimit { reset_at_ms: r },
        ApiError::RateLimited { reset_at, .. } => SendError::DailyLimit { reset_at_ms: reset_at },
        ApiError::BadRequest { message, .. } => SendError::Rejected(message),
        // Not on WhatsApp (checked since the audience was), or a first contact WhatsApp
        // restricted (463, where each retry is another reach-out): no retry can deliver it.
        ApiError::Unprocessable { message, .. } => SendError::Rejected(message),
        ApiError::NotFound(what) => SendError::AccountUnavailable(format!("{what} not found")),
        other => SendError::Transient(other.to_string()),
    }
}

fn runtime_error(e: crate::runtime::RuntimeError) -> SendError {
    match e {
        crate::runtime::RuntimeError::NotRunning => SendError::AccountUnavailable(e.to_string()),
        other => SendError::Transient(other.to_string()),
    }
}

impl MessagesSender {
    fn runtime(&self) -> Result<std::sync::Arc<dyn crate::runtime::AccountRuntime>, SendError> {
        self.state.runtime.clone().ok_or_else(|| SendError::AccountUnavailable("no WhatsApp runtime".into()))
    }
}

impl CampaignSender for MessagesSender {
    fn send<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        phone: &'a str,
        message: &'a CampaignMessage,
    ) -> SendFuture<'a, String> {
        Box::pin(async move {
            let content = match &message.media {
                None => OutgoingContent::Text { body: message.text.clone(), quoted_id: None },
                Some(m) => OutgoingContent::Media {
                    kind: m.kind,
                    data: m.data.clone(),
                    mimetype: m.mimetype.clone(),
                    // Audio has no caption: only the file goes out.
                    caption: (crate::template_media::has_caption(m.kind) && !message.text.is_empty())
                        .then(|| message.text.clone()),
                    file_name: m.file_name.clone(),
                    quoted_id: None,
                },
            };
            crate::messages::send_message_as(
                &self.state,
                tenant_id,
                account_id,
                phone,
                content,
                Some(&message.wa_message_id),
                message.media.as_ref().and_then(|m| m.stored_id.as_deref()),
            )
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
            let runtime = self.runtime()?;
            let digits: Vec<String> = phones.iter().map(|p| p.trim_start_matches('+').to_owned()).collect();
            let checks =
                runtime.check_numbers(tenant_id, account_id, &digits).await.map_err(runtime_error)?;
            Ok(checks
                .into_iter()
                .map(|c| (format!("+{}", c.phone.trim_start_matches('+')), c.on_whatsapp))
                .collect())
        })
    }

    fn prepare<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        phones: &'a [String],
    ) -> SendFuture<'a, ()> {
        Box::pin(async move {
            let runtime = self.runtime()?;
            let digits: Vec<String> = phones.iter().map(|p| p.trim_start_matches('+').to_owned()).collect();
            runtime.prepare_recipients(tenant_id, account_id, &digits).await.map_err(runtime_error)
        })
    }

    fn find_sent<'a>(
        &'a self,
        tenant_id: &'a str,
        account_id: &'a str,
        phone: &'a str,
        since_ms: i64,
        wa_message_id: &'a str,
    ) -> SendFuture<'a, Option<String>> {
        Box::pin(async move {
            let (t, a, w) = (tenant_id.to_owned(), account_id.to_owned(), wa_message_id.to_owned());
            let chat = format!("{}@s.whatsapp.net", phone.trim_start_matches('+'));
            let now = self.state.clock.now_ms();
            self.state
                .db
                .call(move |c| {
                    let tx = c.transaction()?;
                    // WhatsApp acknowledged it: it went out.
                    let sent = tx
                        .query_row(
                            "SELECT id FROM messages WHERE tenant_id = ?1 AND account_id = ?2 AND direction = 'outgoing'
                               AND wa_message_id = ?3 AND status IN ('sent','delivered','read') LIMIT 1",
                            params![t, a, w],
                            |r| r.get::<String>(0),
                        )
                        .optional()?;
                    if sent.is_none() {
                        // Admitted but never confirmed: the engine sends it again under the same
                        // WhatsApp id (one message to the phone however far the first got).
                        tx.execute(
                            "UPDATE messages SET status = 'failed', error = 'interrupted by a server restart; sent again',
                               failed_at = ?5, updated_at = ?5
                             WHERE tenant_id = ?1 AND account_id = ?2 AND direction = 'outgoing' AND chat_jid = ?3
                               AND created_at >= ?4 AND status = 'pending' AND wa_message_id IS NULL",
                            params![t, a, chat, since_ms, now],
                        )?;
                    }
                    tx.commit()?;
                    Ok(sent)
                })
                .await
                .map_err(|e| SendError::Transient(e.to_string()))
        })
    }
}
