//! How the service addresses 1:1 traffic now that accounts move their chats to LIDs.
//!
//! An account is either *LID-migrated* (the default, as most accounts are today) or *legacy*
//! (phone-number chats). The account's state decides:
//! * what its companions must write as a DM's `to` (and its `<to jid>`s): the contact's LID
//!   when migrated, the phone number when legacy; anything else is refused with a nack;
//! * how DMs and receipts reach its devices: from the peer's LID with `sender_pn` beside it
//!   when both sides are migrated, from the peer's phone number with `sender_lid` otherwise;
//!   own-device copies name the chat (`recipient`) in the account's namespace with
//!   `peer_recipient_pn` / `peer_recipient_lid` beside it.

use wa_binary::{Jid, Node, Server};

use crate::world::{AccountId, DeviceAddr, Group, World, attr};

/// Why a companion's 1:1 message was refused: the `error` of the `<ack class="message">`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DmRefusal {
    /// A LID-migrated account addressed a contact by phone number.
    ///
    /// Source: https://github.com/rmyndharis/OpenWA/pull/717 (Baileys 7.0.0-rc13 sends to
    /// `<phone>@s.whatsapp.net` from a healthy migrated account get `ack error="463"`; the same
    /// message to `<lid>@lid` is delivered), https://github.com/evolution-foundation/evolution-api/issues/2629,
    /// whatsmeow send.go `SendMessage` (since 4f8f64e0, 2026-07-13, every DM goes to the LID).
    PnOnMigratedAccount,
    /// A legacy (not 1:1-migrated) account addressed a contact by LID.
    ///
    /// Source: https://github.com/oxidezap/whatsapp-rust/pull/943 and issue #941 (LID-addressed
    /// DMs from unmigrated accounts are nacked with `error="400"`; WA Web keeps such accounts'
    /// chats on phone numbers, `ClientPairingProps.isChatDbLidMigrated`).
    LidOnLegacyAccount,
    /// The stanza names devices of one namespace under a `to` of the other.
    ///
    /// Source: whatsapp-rust 0.7 src/client/device_registry.rs `resolve_dm_devices_uncached`
    /// ("the server rejects a stanza that mixes PN and LID participants"); the code is the
    /// stanza-validation nack, Baileys src/Utils/decode-wa-message.ts `SERVER_ERROR_CODES.SmaxInvalid`.
    MixedNamespaces,
}

impl DmRefusal {
    pub(crate) fn code(self) -> u16 {
        match self {
            DmRefusal::PnOnMigratedAccount => 463,
            DmRefusal::LidOnLegacyAccount => 400,
            DmRefusal::MixedNamespaces => 479,
        }
    }
}

/// PN and hosted PN, LID and hosted LID: the two namespaces a user can be addressed in.
fn is_lid_family(s: Server) -> bool {
    matches!(s, Server::Lid | Server::HostedLid)
}

impl World {
    /// The namespace an account's 1:1 chats live in.
    pub(crate) fn chat_server(&self, account: AccountId) -> Server {
        if self.accounts[account].lid_migrated { Server::Lid } else { Server::Pn }
    }

    /// The namespace a DM or receipt from `from` reaches `to`'s devices in: the LID only when
    /// both accounts are migrated (a legacy account never holds a LID chat, per whatsapp-rust
    /// PR #943; a legacy contact is still known by number).
    pub(crate) fn delivery_server(&self, from: AccountId, to: AccountId) -> Server {
        if from == to {
            return self.chat_server(from);
        }
        if self.accounts[from].lid_migrated && self.accounts[to].lid_migrated {
            Server::Lid
        } else {
            Server::Pn
        }
    }

    /// Checks a companion's 1:1 `<message>` against its account's addressing. Peer messages
    /// (`category="peer"`, to the own phone) stay on the phone number: whatsmeow send.go
    /// `SendPeerMessage` / commit cb6d9dad "send: don't use LID for peer messages".
    pub(crate) fn check_dm_addressing(
        &self,
        sender: DeviceAddr,
        to: &Jid,
        msg: &Node,
    ) -> Result<(), DmRefusal> {
        if attr(msg, "category") == "peer" {
            return Ok(());
        }
        let to_lid = is_lid_family(to.server());
        match (self.accounts[sender.account].lid_migrated, to_lid) {
            (true, false) => return Err(DmRefusal::PnOnMigratedAccount),
            (false, true) => return Err(DmRefusal::LidOnLegacyAccount),
            _ => {}
        }
        if let Some(parts) = msg.child("participants") {
            let mixed = parts
                .children_by_tag("to")
                .filter_map(|t| t.attr_jid("jid").ok())
                .any(|j| is_lid_family(j.server()) != to_lid);
            if mixed {
                return Err(DmRefusal::MixedNamespaces);
            }
        }
        Ok(())
    }

    /// Adds the other-namespace JID of the sender beside a DM or receipt delivered from
    /// `from` in namespace `server`: `sender_pn` on LID deliveries, `sender_lid` on phone-number
    /// ones (whatsmeow message.go `parseMessageSource`; Baileys decode-wa-message
    /// `extractAddressingContext`). The user JID, without device, as whatsmeow's parser expects
    /// (it copies the device from the sender). A legacy sender's LID is not handed out: its
    /// contacts know it by number until it migrates.
    pub(crate) fn with_sender_alt(&self, node: Node, from: AccountId, server: Server) -> Node {
        if server == Server::Lid {
            node.attr("sender_pn", self.user_jid(from, Server::Pn))
        } else if self.accounts[from].lid_migrated {
            node.attr("sender_lid", self.user_jid(from, Server::Lid))
        } else {
            node
        }
    }

    /// Adds the sender's other-namespace JID beside a group message, receipt or notification:
    /// `participant_pn` in LID-addressed groups, `participant_lid` in phone-number ones
    /// (whatsmeow message.go `parseMessageSource`; Baileys `extractAddressingContext`).
    pub(crate) fn with_participant_alt(&self, node: Node, from: AccountId, group: &Group) -> Node {
        if group.lid_addressed {
            node.attr("participant_pn", self.user_jid(from, Server::Pn))
        } else if self.accounts[from].lid_migrated {
            node.attr("participant_lid", self.user_jid(from, Server::Lid))
        } else {
            node
        }
    }

    /// The chat of an own-device copy (`recipient`) in the sender's namespace, with the
    /// other-namespace JID beside it: whatsmeow message.go `parseMessageSource` reads
    /// `peer_recipient_pn` for LID chats and `peer_recipient_lid` for phone-number ones.
    pub(crate) fn with_recipient(&self, node: Node, sender: AccountId, chat: AccountId) -> Node {
        let server = self.chat_server(sender);
        let node = node.attr("recipient", self.user_jid(chat, server));
        if server == Server::Lid {
            node.attr("peer_recipient_pn", self.user_jid(chat, Server::Pn))
        } else if self.accounts[chat].lid_migrated {
            node.attr("peer_recipient_lid", self.user_jid(chat, Server::Lid))
        } else {
            node
        }
    }

    /// Marks an account LID-migrated (or back to legacy), as the service migrates accounts
    /// over time: from now on its DMs must be and are LID-addressed.
    pub fn set_lid_migrated(&mut self, account: AccountId, migrated: bool) {
        if let Some(a) = self.accounts.get_mut(account) {
            a.lid_migrated = migrated;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn dm(to: &str, devices: &[&str]) -> Node {
        Node::new("message").attr("to", to.parse::<Jid>().unwrap()).children([Node::new("participants")
            .children(devices.iter().map(|d| Node::new("to").attr("jid", d.parse::<Jid>().unwrap())))])
    }

    #[test]
    fn the_account_decides_the_namespace_of_its_dms() {
        let mut w = crate::world::tests::bare_world();
        let me = w.create_account("15550001000", "Me").unwrap();
        let bob = w.create_account("15550001001", "Bob").unwrap();
        let (bob_pn, bob_lid) = (w.user_jid(bob, Server::Pn), w.user_jid(bob, Server::Lid));
        let me5 = DeviceAddr { account: me, device: 5 };
        let pn_dm = dm(&bob_pn.to_string(), &[&format!("{}:0@s.whatsapp.net", bob_pn.user())]);
        let lid_dm = dm(&bob_lid.to_string(), &[&format!("{}:0@lid", bob_lid.user())]);
        let mixed =
            dm(&bob_lid.to_string(), &[&format!("{}@lid", bob_lid.user()), "15550001000:2@s.whatsapp.net"]);

        assert_eq!(w.check_dm_addressing(me5, &bob_pn, &pn_dm), Err(DmRefusal::PnOnMigratedAccount));
        assert_eq!(w.check_dm_addressing(me5, &bob_lid, &lid_dm), Ok(()));
        assert_eq!(w.check_dm_addressing(me5, &bob_lid, &mixed), Err(DmRefusal::MixedNamespaces));
        let peer = pn_dm.clone().attr("category", "peer");
        assert_eq!(w.check_dm_addressing(me5, &bob_pn, &peer), Ok(()), "peer messages stay on PN");

        w.set_lid_migrated(me, false);
        assert_eq!(w.check_dm_addressing(me5, &bob_pn, &pn_dm), Ok(()));
        assert_eq!(w.check_dm_addressing(me5, &bob_lid, &lid_dm), Err(DmRefusal::LidOnLegacyAccount));
        assert_eq!(
            [DmRefusal::PnOnMigratedAccount, DmRefusal::LidOnLegacyAccount, DmRefusal::MixedNamespaces]
                .map(DmRefusal::code),
            [463, 400, 479]
        );
    }

    #[test]
    fn deliveries_are_lid_addressed_only_between_migrated_accounts() {
        let mut w = crate::world::tests::bare_world();
        let a = w.create_account("15550001000", "A").unwrap();
        let b = w.create_account("15550001001", "B").unwrap();
        assert_eq!(w.delivery_server(a, b), Server::Lid);
        w.set_lid_migrated(b, false);
        assert_eq!((w.delivery_server(a, b), w.delivery_server(b, a)), (Server::Pn, Server::Pn));
        assert_eq!((w.delivery_server(a, a), w.delivery_server(b, b)), (Server::Lid, Server::Pn));
        let n = w.with_sender_alt(Node::new("message"), a, Server::Lid);
        assert_eq!(attr(&n, "sender_pn"), "15550001000@s.whatsapp.net");
        let n = w.with_sender_alt(Node::new("message"), a, Server::Pn);
        assert_eq!(attr(&n, "sender_lid"), w.user_jid(a, Server::Lid).to_string());
        assert!(w.with_sender_alt(Node::new("message"), b, Server::Pn).get_attr("sender_lid").is_none());
        let n = w.with_recipient(Node::new("message"), a, b);
        assert_eq!(
            (attr(&n, "recipient"), attr(&n, "peer_recipient_pn")),
            (w.user_jid(b, Server::Lid).to_string(), "15550001001@s.whatsapp.net".to_owned())
        );
    }
}
