//! Asking our own phone for a message this device only got as a placeholder
//! (`<unavailable>`): a peer `PeerDataOperationRequestMessage` of type
//! `PLACEHOLDER_MESSAGE_RESEND` naming the message key (whatsmeow `retry.go`
//! `immediateRequestMessageFromPhone`, `send.go` `BuildUnavailableMessageRequest`), and the
//! phone's `PeerDataOperationRequestResponseMessage` carrying the message as a
//! `WebMessageInfo`, which is stored and emitted like any received message (whatsmeow
//! `message.go` `handlePlaceholderResendResponse`).

use std::sync::Arc;

use prost::Message as _;
use tracing::{debug, warn};
use wa_binary::Jid;
use wa_proto::message::peer_data_operation_request_message::PlaceholderMessageResendRequest;
use wa_proto::message::protocol_message::Type as ProtocolType;
use wa_proto::message::{PeerDataOperationRequestMessage, PeerDataOperationRequestType, ProtocolMessage};
use wa_proto::{Message, MessageKey, WebMessageInfo};
use wa_store::{InboundMessage, InboundStore};

use crate::client::Shared;
use crate::error::{Error, Result};
use crate::event::{Event, MessageEvent, MessageInfo};

/// The peer request for one message we could not get (whatsmeow `BuildMessageKey`: the
/// participant only outside direct chats).
pub(crate) fn resend_request(info: &MessageInfo) -> Message {
    let key = MessageKey {
        remote_jid: Some(info.chat.to_string()),
        from_me: Some(info.from_me),
        id: Some(info.id.clone()),
        participant: info.is_group.then(|| info.sender.to_non_ad().to_string()),
    };
    Message {
        protocol_message: Some(Box::new(ProtocolMessage {
            r#type: Some(ProtocolType::PeerDataOperationRequestMessage as i32),
            peer_data_operation_request_message: Some(PeerDataOperationRequestMessage {
                peer_data_operation_request_type: Some(
                    PeerDataOperationRequestType::PlaceholderMessageResend as i32,
                ),
                placeholder_message_resend_request: vec![PlaceholderMessageResendRequest {
                    message_key: Some(key),
                }],
            }),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Asks our phone for the message `info` names, in the background (the server's ack of the
/// request arrives through the stanza loop that called this).
pub(crate) fn request_from_phone(shared: &Arc<Shared>, info: &MessageInfo) {
    let shared = shared.clone();
    let request = resend_request(info);
    let msg_id = info.id.clone();
    tokio::spawn(async move {
        let result = async {
            let (own, _) = shared.own_ids()?;
            let conn = shared.connection()?;
            let id = crate::send::new_message_id(&shared, own.user());
            let stanza = crate::send::peer_stanza(&shared, &id, &request).await?;
            crate::send::send_and_await_ack(&shared, &conn, id, &stanza).await
        }
        .await;
        match result {
            Ok(r) => debug!(%msg_id, request = %r.id, "asked the phone to resend a message"),
            Err(e) => warn!(%msg_id, %e, "could not ask the phone to resend a message"),
        }
    });
}

/// Called for every stored message: a placeholder-resend answer from our own phone (device
/// 0) yields the messages it carries, stored and emitted in the background.
pub(crate) fn on_message(shared: &Arc<Shared>, info: &MessageInfo, message: &Message) {
    if !info.from_me || info.sender.device() != 0 {
        return;
    }
    let Some(resp) = message
        .protocol_message
        .as_ref()
        .and_then(|p| p.peer_data_operation_request_response_message.as_ref())
    else {
        return;
    };
    if resp.peer_data_operation_request_type
        != Some(PeerDataOperationRequestType::PlaceholderMessageResend as i32)
    {
        return;
    }
    let request_id = resp.stanza_id.clone().unwrap_or_default();
    let answers: Vec<Vec<u8>> = resp
        .peer_data_operation_result
        .iter()
        .filter_map(|r| r.placeholder_message_resend_response.as_ref()?.web_message_info_bytes.clone())
        .collect();
    let shared = shared.clone();
    tokio::spawn(async move {
        for bytes in answers {
            if let Err(e) = deliver_resent(&shared, &request_id, &bytes).await {
                warn!(%request_id, %e, "unusable placeholder resend answer");
            }
        }
    });
}

/// Stores and emits one message the phone resent. A message already stored (it reached us
/// some other way meanwhile) is not emitted twice.
async fn deliver_resent(shared: &Shared, request_id: &str, bytes: &[u8]) -> Result<()> {
    let wmi = WebMessageInfo::decode(bytes).map_err(crate::error::protobuf("WebMessageInfo"))?;
    let key = wmi.key.clone().ok_or_else(|| Error::Malformed("resent message without a key".into()))?;
    let chat: Jid = key
        .remote_jid
        .as_deref()
        .ok_or_else(|| Error::Malformed("resent key without chat".into()))?
        .parse()?;
    let id = key
        .id
        .clone()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| Error::Malformed("resent key without id".into()))?;
    let message =
        wmi.message.clone().ok_or_else(|| Error::Malformed("resent message without content".into()))?;
    let (own, own_lid) = shared.own_ids()?;
    let from_me = key.from_me.unwrap_or(false);
    let is_group = chat.is_group() || chat.is_broadcast();
    let sender: Jid = match (&key.participant, from_me) {
        (Some(p), _) if is_group => p.parse()?,
        (_, true) => own.to_non_ad(),
        (_, false) => chat.clone(),
    };
    let info = MessageInfo {
        id: id.clone(),
        chat: chat.to_non_ad(),
        sender_pn: sender.is_pn().then(|| sender.clone()),
        sender_lid: if sender.is_lid() { Some(sender.clone()) } else { own_lid.filter(|_| from_me) },
        sender,
        from_me,
        is_group,
        timestamp: wmi.message_timestamp.unwrap_or(0),
        push_name: wmi.push_name.clone(),
        offline: false,
    };
    let mut tx = shared.store.transaction();
    tx.put_inbound(&InboundMessage {
        chat: info.chat.to_string(),
        sender: info.sender.to_string(),
        id: id.clone(),
        received_at: shared.now(),
        payload: wmi.encode_to_vec(),
    });
    match tx.commit().await {
        Ok(()) => {}
        Err(wa_store::Error::Conflict { .. }) => {
            debug!(%id, "resent message already stored");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    }
    let (chat_s, sender_s) = (info.chat.to_string(), info.sender.to_string());
    shared.emit(Event::Message(Arc::new(MessageEvent {
        info,
        message,
        unavailable_request_id: Some(request_id.to_owned()),
    })));
    if !shared.config.confirm_handled {
        shared.store.mark_inbound_handled(&chat_s, &sender_s, &id).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn info(chat: &str, sender: &str) -> MessageInfo {
        let chat: Jid = chat.parse().unwrap();
        MessageInfo {
            id: "3EB0AA".into(),
            is_group: chat.is_group(),
            chat,
            sender: sender.parse().unwrap(),
            sender_pn: None,
            sender_lid: None,
            from_me: false,
            timestamp: 1,
            push_name: None,
            offline: false,
        }
    }

    #[test]
    fn resend_requests_name_the_message_key() {
        let dm = resend_request(&info("15550001001@s.whatsapp.net", "15550001001:3@s.whatsapp.net"));
        let p = dm.protocol_message.unwrap();
        assert_eq!(p.r#type, Some(ProtocolType::PeerDataOperationRequestMessage as i32));
        let req = p.peer_data_operation_request_message.unwrap();
        assert_eq!(
            req.peer_data_operation_request_type,
            Some(PeerDataOperationRequestType::PlaceholderMessageResend as i32)
        );
        let key = req.placeholder_message_resend_request[0].message_key.clone().unwrap();
        assert_eq!(
            (key.remote_jid.as_deref(), key.id.as_deref(), key.from_me, key.participant),
            (Some("15550001001@s.whatsapp.net"), Some("3EB0AA"), Some(false), None)
        );
        let group = resend_request(&info("120363000000000001@g.us", "15550001001:3@s.whatsapp.net"));
        let key = group
            .protocol_message
            .unwrap()
            .peer_data_operation_request_message
            .unwrap()
            .placeholder_message_resend_request[0]
            .message_key
            .clone()
            .unwrap();
        assert_eq!(key.participant.as_deref(), Some("15550001001@s.whatsapp.net"));
    }
}
