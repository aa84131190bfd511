//! Messages a companion cannot get from the sender, and its phone's help: a sender whose
//! fan-out reaches only the recipient's phone leaves the recipient's companions with a
//! `<message>` carrying `<unavailable/>` and no `<enc>`; a companion then asks its own phone
//! (a peer `PeerDataOperationRequestMessage` of type `PLACEHOLDER_MESSAGE_RESEND`) and the
//! phone answers with the message as a `WebMessageInfo` in a peer
//! `PeerDataOperationRequestResponseMessage`.

use prost::Message as _;
use wa_binary::{Jid, Node, Server};
use wa_proto::Message;
use wa_proto::message::peer_data_operation_request_response_message::PeerDataOperationResult;
use wa_proto::message::peer_data_operation_request_response_message::peer_data_operation_result::PlaceholderMessageResendResponse;
use wa_proto::message::protocol_message::Type as ProtocolType;
use wa_proto::message::{
    PeerDataOperationRequestMessage, PeerDataOperationRequestResponseMessage, PeerDataOperationRequestType,
    ProtocolMessage,
};

use crate::phone::pad;
use crate::world::{AccountId, ControlError, DeviceAddr, World, WorldEvent};

/// The placeholder-resend request a decrypted message carries, if any.
pub(crate) fn peer_request_of(m: &Message) -> Option<PeerDataOperationRequestMessage> {
    let p = m.protocol_message.as_ref()?;
    let req = p.peer_data_operation_request_message.as_ref()?;
    (req.peer_data_operation_request_type
        == Some(PeerDataOperationRequestType::PlaceholderMessageResend as i32))
    .then(|| req.clone())
}

impl World {
    /// `account`'s phone sends a text to the user `to` but encrypts it for the recipient's
    /// phone only (as senders do for content companions cannot show, e.g. click-to-WhatsApp
    /// ads: Baileys `messages-recv.ts` "Message arrived without encryption"). The server gives
    /// each of the recipient's companions the stanza with `<unavailable/>` instead of an
    /// `<enc>` (whatsmeow `message.go` `decryptMessages`, Baileys `messages-recv.ts`
    /// `handleMessage`). Returns the message id.
    pub fn phone_send_to_phone_only(
        &mut self,
        account: AccountId,
        to: &Jid,
        text: &str,
    ) -> Result<String, ControlError> {
        let recipient = self.account_of(to).ok_or_else(|| ControlError::BadJid(to.to_string()))?;
        if recipient == account || to.is_group() {
            return Err(ControlError::BadJid(to.to_string()));
        }
        let id = self.new_message_id();
        let me = DeviceAddr { account, device: 0 };
        let message = Message { conversation: Some(text.to_owned()), ..Default::default() };
        let plain = pad(message.encode_to_vec(), &mut self.rng);
        let phone = DeviceAddr { account: recipient, device: 0 };
        let enc = self.phone_encrypt(account, phone, &plain)?;
        let server = if to.server() == Server::Lid { Server::Lid } else { Server::Pn };
        let stanza = Node::new("message")
            .attr("to", to.clone())
            .attr("id", id.as_str())
            .attr("type", "text")
            .children([Node::new("participants")
                .children([Node::new("to").attr("jid", self.device_jid(phone, server)).children([enc])])]);
        self.route_message(me, to, &stanza);
        let placeholder = Node::new("message")
            .attr("from", self.device_jid(me, server))
            .attr("id", id.as_str())
            .attr("t", self.now())
            .attr("type", "text")
            .attr("notify", self.accounts[account].push_name.as_str())
            .children([Node::new("unavailable")]);
        self.deliver_to_companions(recipient, &placeholder);
        Ok(id)
    }

    /// `account`'s phone got a placeholder-resend request (`request_id` is the request's
    /// message id) from one of its own companions: it answers that companion with a peer
    /// message (`category="peer"`) whose `PeerDataOperationRequestResponseMessage` has
    /// `stanzaId` = the request's id and, for each requested key it holds, a
    /// `PlaceholderMessageResendResponse` with the `WebMessageInfo` (whatsmeow `message.go`
    /// `handlePlaceholderResendResponse`, `send.go` `BuildUnavailableMessageRequest`; Baileys
    /// `messages-recv.ts` `requestPlaceholderResend`).
    pub(crate) fn phone_answer_peer_request(
        &mut self,
        account: AccountId,
        requester: DeviceAddr,
        request_id: &str,
        request: &PeerDataOperationRequestMessage,
    ) {
        if requester.account != account || requester.device == 0 {
            return;
        }
        let pn = self.accounts[account].pn.clone();
        let mut results = Vec::new();
        for key in request.placeholder_message_resend_request.iter().filter_map(|r| r.message_key.as_ref()) {
            let Some(id) = key.id.as_deref() else { continue };
            let chat = key.remote_jid.as_deref().filter(|c| !c.is_empty());
            let found = self.accounts[account]
                .phone
                .inbox
                .iter()
                .rev()
                .find(|m| m.id == id && m.error.is_none() && chat.is_none_or(|c| c == m.chat))
                .cloned();
            self.emit(WorldEvent::PlaceholderResent {
                pn: pn.clone(),
                device: requester.device,
                id: id.to_owned(),
                found: found.is_some(),
            });
            let Some(m) = found else { continue };
            let Ok(message) = Message::decode(m.message.as_slice()) else { continue };
            let sender: Option<Jid> = m.sender.parse().ok();
            let sender_account = sender.as_ref().and_then(|s| self.account_of(s));
            let from_me = sender_account == Some(account);
            let is_group = m.chat.ends_with("@g.us");
            let info = wa_proto::WebMessageInfo {
                key: Some(wa_proto::MessageKey {
                    remote_jid: Some(m.chat.clone()),
                    from_me: Some(from_me),
                    id: Some(m.id.clone()),
                    participant: is_group.then(|| sender.map(|s| s.to_non_ad().to_string())).flatten(),
                }),
                message: Some(message),
                message_timestamp: Some(m.t),
                push_name: sender_account.map(|a| self.accounts[a].push_name.clone()),
                ..Default::default()
            };
            results.push(PeerDataOperationResult {
                media_upload_result: None,
                placeholder_message_resend_response: Some(PlaceholderMessageResendResponse {
                    web_message_info_bytes: Some(info.encode_to_vec()),
                }),
            });
        }
        let response = Message {
            protocol_message: Some(Box::new(ProtocolMessage {
                r#type: Some(ProtocolType::PeerDataOperationRequestResponseMessage as i32),
                peer_data_operation_request_response_message: Some(PeerDataOperationRequestResponseMessage {
                    peer_data_operation_request_type: Some(
                        PeerDataOperationRequestType::PlaceholderMessageResend as i32,
                    ),
                    stanza_id: Some(request_id.to_owned()),
                    peer_data_operation_result: results,
                }),
                ..Default::default()
            })),
            ..Default::default()
        };
        let plain = pad(response.encode_to_vec(), &mut self.rng);
        let enc = match self.phone_encrypt(account, requester, &plain) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "phone cannot encrypt its placeholder resend answer");
                return;
            }
        };
        let id = self.new_message_id();
        let phone = DeviceAddr { account, device: 0 };
        self.sent_by.insert(id.clone(), phone);
        let answer = Node::new("message")
            .attr("from", self.device_jid(phone, Server::Pn))
            .attr("id", id)
            .attr("t", self.now())
            .attr("type", "text")
            .attr("category", "peer")
            .children([enc]);
        self.deliver(requester, answer);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use wa_proto::MessageKey;
    use wa_proto::message::peer_data_operation_request_message::PlaceholderMessageResendRequest;

    use super::*;
    use crate::testutil::{add_companion, login, of, sent, world};
    use crate::world::attr;

    #[test]
    fn companions_get_a_placeholder_and_the_phone_answers_a_resend_request() {
        let (mut w, _) = world(2);
        let me = add_companion(&mut w, 0, 5);
        let (_, mut rx) = login(&mut w, me);
        sent(&mut rx);
        let to = w.user_jid(0, Server::Pn);
        let id = w.phone_send_to_phone_only(1, &to, "only for your phone").unwrap();
        let got = sent(&mut rx);
        let placeholder =
            of(&got, "message", None).into_iter().find(|m| attr(m, "id") == id).expect("a placeholder");
        assert!(placeholder.child("unavailable").is_some() && placeholder.child("enc").is_none());
        assert_eq!(attr(placeholder, "from"), "15550001001@s.whatsapp.net");
        assert_eq!(w.accounts[0].phone.inbox.last().unwrap().text.as_deref(), Some("only for your phone"));

        let key = |id: &str| MessageKey {
            remote_jid: Some("15550001001@s.whatsapp.net".into()),
            from_me: Some(false),
            id: Some(id.into()),
            participant: None,
        };
        let request = PeerDataOperationRequestMessage {
            peer_data_operation_request_type: Some(
                PeerDataOperationRequestType::PlaceholderMessageResend as i32,
            ),
            placeholder_message_resend_request: vec![
                PlaceholderMessageResendRequest { message_key: Some(key(&id)) },
                PlaceholderMessageResendRequest { message_key: Some(key("UNKNOWN")) },
            ],
        };
        // Only the account's own companions are answered.
        w.phone_answer_peer_request(0, DeviceAddr { account: 1, device: 0 }, "REQ0", &request);
        assert!(sent(&mut rx).is_empty());
        w.phone_answer_peer_request(0, me, "REQ1", &request);
        let got = sent(&mut rx);
        let answer = of(&got, "message", None)[0];
        assert_eq!((attr(answer, "category"), attr(answer, "from")), ("peer".into(), to.to_string()));
        assert!(answer.child("enc").is_some());
        let found: Vec<(String, bool)> = w
            .events
            .iter()
            .filter_map(|e| match e {
                WorldEvent::PlaceholderResent { id, found, device: 5, .. } => Some((id.clone(), *found)),
                _ => None,
            })
            .collect();
        assert_eq!(found, vec![(id, true), ("UNKNOWN".into(), false)]);
    }
}
