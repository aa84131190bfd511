//! `<appdata>`: an encrypted stanza a phone sends that clients decrypt like a message
//! (whatsmeow `client.go` routes `appdata` to `handleEncryptedMessage`) and confirm like one
//! (a receipt, or an `<ack class="appdata">`); the offline preview counts it apart
//! (`ib::bulletins_before_offline`). It waits in flight until confirmed (`world::awaits_ack`).

use prost::Message as _;
use wa_binary::{Jid, Node, Server};

use crate::phone::pad;
use crate::world::{AccountId, ControlError, DeviceAddr, World};

impl World {
    /// `account`'s phone sends `message` as `<appdata from id t notify><enc/></appdata>` to
    /// every companion of the user `to`. Returns its id.
    pub fn phone_send_appdata(
        &mut self,
        account: AccountId,
        to: &Jid,
        message: &wa_proto::Message,
    ) -> Result<String, ControlError> {
        let recipient = self.account_of(to).ok_or_else(|| ControlError::BadJid(to.to_string()))?;
        let id = self.new_message_id();
        let me = DeviceAddr { account, device: 0 };
        self.sent_by.insert(id.clone(), me);
        for c in self.companions_of(recipient) {
            let plain = pad(message.encode_to_vec(), &mut self.rng);
            let enc = self.phone_encrypt(account, c, &plain)?;
            let node = Node::new("appdata")
                .attr("from", self.device_jid(me, Server::Pn))
                .attr("id", id.as_str())
                .attr("t", self.now())
                .attr("notify", self.accounts[account].push_name.as_str())
                .children([enc]);
            self.deliver(c, node);
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use wa_binary::{Node, Server};

    use crate::testutil::{add_companion, login, of, sent, world};
    use crate::world::{WorldEvent, attr};

    #[test]
    fn appdata_is_confirmed_like_a_message() {
        let (mut w, _) = world(2);
        let me = add_companion(&mut w, 0, 5);
        let (conn, mut rx) = login(&mut w, me);
        sent(&mut rx);
        let to = w.user_jid(0, Server::Pn);
        let a = w.phone_send_appdata(1, &to, &Default::default()).unwrap();
        let b = w.phone_send_appdata(1, &to, &Default::default()).unwrap();
        let got = sent(&mut rx);
        assert_eq!(of(&got, "appdata", None).len(), 2);
        assert!(of(&got, "appdata", None).iter().all(|n| n.child("enc").is_some()));
        // A receipt (whatsmeow) or an <ack class="appdata"> ends each.
        w.on_node(conn, Node::new("receipt").attr("id", a.as_str()).attr("to", w.user_jid(1, Server::Pn)));
        w.on_node(conn, Node::new("ack").attr("class", "appdata").attr("id", b.as_str()));
        assert!(w.in_flight_of(me).iter().all(|(tag, ..)| tag != "appdata"));
        assert_eq!(w.device_acked(0, 5).unwrap(), vec![a.clone(), b]);
        assert!(w.events.iter().any(|e| matches!(e, WorldEvent::PhoneReceipt { id, .. } if *id == a)));
        assert!(attr(of(&got, "appdata", None)[0], "from").starts_with("15550001001"));
    }
}
