//! Calls: a phone rings another account (`<call><offer/></call>` to the callee's companions)
//! and the call ends (`<call><terminate/></call>`). Signalling only; there is no media relay.
//! Companions acknowledge each `<call>` (`world::awaits_ack`).

use wa_binary::{Jid, Node, Server};

use crate::traffic::Call;
use crate::world::{AccountId, ControlError, World};

/// What the simulated phones report as their app (`platform`, `version` on `<call>`).
const PHONE_PLATFORM: &str = "android";
const PHONE_VERSION: &str = "2.26.1.75";

impl World {
    /// `caller`'s phone calls the user `to`: each of the callee's companions gets
    /// `<call from=<caller> id t notify platform version><offer call-id call-creator><audio
    /// enc rate/>…[<video/>]<net medium/></offer></call>` (whatsmeow `call.go`
    /// `handleCallEvent`, Baileys `messages-recv.ts` `handleCall` (video = a `<video>` child),
    /// whatsapp-rust `wacore/src/stanza/call.rs` `parse_call_stanza`). Returns the call id.
    pub fn phone_call(&mut self, caller: AccountId, to: &Jid, video: bool) -> Result<String, ControlError> {
        let callee = self.account_of(to).ok_or_else(|| ControlError::BadJid(to.to_string()))?;
        if callee == caller {
            return Err(ControlError::BadJid(to.to_string()));
        }
        let call_id = self.random_hex(16);
        let creator = self.user_jid(caller, Server::Pn);
        let mut media = vec![
            Node::new("audio").attr("enc", "opus").attr("rate", "16000"),
            Node::new("audio").attr("enc", "opus").attr("rate", "8000"),
        ];
        if video {
            media.push(Node::new("video").attr("enc", "vp8").attr("dec", "vp8"));
        }
        media.push(Node::new("net").attr("medium", "3"));
        let offer = Node::new("offer")
            .attr("call-id", call_id.as_str())
            .attr("call-creator", creator)
            .children(media);
        let stanza = self.call_stanza(caller, offer);
        self.traffic.calls.insert(call_id.clone(), Call { caller, callee });
        self.deliver_to_companions(callee, &stanza);
        Ok(call_id)
    }

    /// The caller or the callee ends a ringing call: the callee's companions get `<call
    /// from=<caller>><terminate call-id call-creator [reason]/></call>` (whatsmeow `call.go`
    /// `CallTerminate`, whatsapp-rust `parse_call_stanza` `Terminate`).
    pub fn phone_end_call(
        &mut self,
        account: AccountId,
        call_id: &str,
        reason: Option<&str>,
    ) -> Result<(), ControlError> {
        let call = match self.traffic.calls.get(call_id) {
            Some(c) if c.caller == account || c.callee == account => c.clone(),
            _ => return Err(ControlError::UnknownCall(call_id.to_owned())),
        };
        self.traffic.calls.remove(call_id);
        let creator = self.user_jid(call.caller, Server::Pn);
        let terminate = Node::new("terminate")
            .attr("call-id", call_id)
            .attr("call-creator", creator)
            .opt_attr("reason", reason);
        let stanza = self.call_stanza(call.caller, terminate);
        self.deliver_to_companions(call.callee, &stanza);
        Ok(())
    }

    fn call_stanza(&mut self, caller: AccountId, action: Node) -> Node {
        let id = self.random_hex(16);
        Node::new("call")
            .attr("from", self.user_jid(caller, Server::Pn))
            .attr("id", id)
            .attr("t", self.now())
            .attr("notify", self.accounts[caller].push_name.as_str())
            .attr("platform", PHONE_PLATFORM)
            .attr("version", PHONE_VERSION)
            .children([action])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use wa_binary::Server;

    use crate::testutil::{add_companion, login, of, sent, world};
    use crate::world::{ControlError, attr};

    #[test]
    fn a_call_rings_the_callees_companions_and_ends() {
        let (mut w, _) = world(2);
        let callee = add_companion(&mut w, 0, 5);
        let caller_companion = add_companion(&mut w, 1, 5);
        let (_, mut rx) = login(&mut w, callee);
        let (_, mut rx_caller) = login(&mut w, caller_companion);
        sent(&mut rx);
        sent(&mut rx_caller);
        let to = w.user_jid(0, Server::Pn);
        let call_id = w.phone_call(1, &to, true).unwrap();
        w.phone_end_call(0, &call_id, Some("timeout")).unwrap();
        let got = sent(&mut rx);
        let calls = of(&got, "call", None);
        assert_eq!(calls.len(), 2);
        assert_eq!(attr(calls[0], "from"), "15550001001@s.whatsapp.net");
        let offer = calls[0].child("offer").unwrap();
        assert_eq!(attr(offer, "call-id"), call_id);
        assert_eq!(attr(offer, "call-creator"), "15550001001@s.whatsapp.net");
        assert!(offer.child("video").is_some() && offer.children_by_tag("audio").count() == 2);
        let end = calls[1].child("terminate").unwrap();
        assert_eq!((attr(end, "call-id"), attr(end, "reason")), (call_id.clone(), "timeout".to_owned()));
        assert!(sent(&mut rx_caller).is_empty(), "only the callee's devices ring");
        assert_eq!(w.phone_end_call(0, &call_id, None), Err(ControlError::UnknownCall(call_id)));
    }
}
