//! Registration and pairing: `pair-device` refs, QR scans by the phone, `pair-success` with
//! the ADV identity, and the companion's `pair-device-sign`.

use std::collections::{BTreeMap, VecDeque};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use prost::Message as _;
use wa_binary::{Node, Server};
use wa_crypto::PublicKey;

use crate::world::{
    AccountId, ConnId, ControlError, Device, DeviceAddr, DeviceKeys, PendingPair, Registration,
    SignedPreKeyPub, World, WorldEvent, attr, be_int, content_bytes, server_jid,
};

impl World {
    // ------------------------------------------------------------------ registration

    pub(crate) fn start_registration(
        &mut self,
        conn: ConnId,
        noise_key: PublicKey,
        reg: &wa_proto::client_payload::DevicePairingRegistrationData,
        payload: &wa_proto::ClientPayload,
    ) {
        let parsed = (|| {
            let identity = PublicKey::from_bytes(reg.e_ident.as_deref()?).ok()?;
            let registration_id = be_int(reg.e_regid.as_deref()?)?;
            let id = be_int(reg.e_skey_id.as_deref()?)?;
            let public = PublicKey::from_bytes(reg.e_skey_val.as_deref()?).ok()?;
            let signature: [u8; 64] = reg.e_skey_sig.as_deref()?.try_into().ok()?;
            Some(DeviceKeys {
                identity,
                registration_id,
                signed_pre_key: SignedPreKeyPub { id, public, signature },
                pre_keys: BTreeMap::new(),
            })
        })();
        let Some(keys) = parsed else {
            tracing::warn!(conn, "malformed devicePairingData");
            self.send_and_close(conn, Node::new("failure").attr("reason", "400").attr("location", "emu"));
            return;
        };
        let platform = reg
            .device_props
            .as_deref()
            .and_then(|b| wa_proto::DeviceProps::decode(b).ok())
            .and_then(|p| p.os)
            .unwrap_or_else(|| "unknown".into());
        let _ = payload;
        let refs: Vec<String> = (0..self.refs_per_pairing.max(1))
            .map(|i| {
                let r = self.random_hex(12);
                format!("2@{}{i}", B64.encode(r.as_bytes()).trim_end_matches('='))
            })
            .collect();
        for r in &refs {
            self.refs.insert(r.clone(), conn);
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.registration =
                Some(Registration { noise_key, keys, platform, refs: refs.clone(), link_code: None });
        }
        let id = self.next_iq_id();
        let node = Node::new("iq")
            .attr("from", server_jid())
            .attr("type", "set")
            .attr("id", id)
            .attr("xmlns", "md")
            .children([Node::new("pair-device")
                .children(refs.iter().map(|r| Node::new("ref").bytes(r.as_bytes().to_vec())))]);
        self.send(conn, node);
        self.emit(WorldEvent::Registering { conn, refs });
    }

    /// The phone of `account` scanned a QR code.
    pub fn scan_qr(&mut self, account: AccountId, qr: &str) -> Result<DeviceAddr, ControlError> {
        let body = qr.strip_prefix("https://wa.me/settings/linked_devices#").unwrap_or(qr);
        let parts: Vec<&str> = body.split(',').collect();
        if parts.len() < 4 {
            return Err(ControlError::BadQr(format!("{} fields, expected 4 or 5", parts.len())));
        }
        let decode =
            |s: &str, what: &str| B64.decode(s).map_err(|e| ControlError::BadQr(format!("{what}: {e}")));
        let noise = decode(parts[1], "noise key")?;
        let identity = decode(parts[2], "identity key")?;
        let adv_secret = decode(parts[3], "adv secret")?;
        let r = parts[0].to_owned();
        let conn = *self.refs.get(&r).ok_or_else(|| ControlError::UnknownRef(r.clone()))?;
        let reg = self
            .conns
            .get(&conn)
            .and_then(|c| c.registration.clone())
            .ok_or_else(|| ControlError::UnknownRef(r.clone()))?;
        if reg.noise_key.as_bytes()[..] != noise[..] || reg.keys.identity.as_bytes()[..] != identity[..] {
            return Err(ControlError::QrMismatch(r));
        }
        Ok(self.pair(account, conn, &adv_secret))
    }

    /// Creates the device and sends `pair-success` (ADV identity signed by the phone).
    pub(crate) fn pair(&mut self, account: AccountId, conn: ConnId, adv_secret: &[u8]) -> DeviceAddr {
        let Some(reg) = self.conns.get(&conn).and_then(|c| c.registration.clone()) else {
            return DeviceAddr { account, device: 0 };
        };
        let now = self.now();
        let acct = &mut self.accounts[account];
        let device = acct.next_device_id;
        acct.next_device_id += 1;
        let key_index = u32::from(device);
        let details = wa_proto::AdvDeviceIdentity {
            raw_id: Some(acct.raw_id),
            timestamp: Some(now),
            key_index: Some(key_index),
            account_type: None,
            device_type: None,
        }
        .encode_to_vec();
        let account_key = acct.phone.identity_public();
        let mut msg = vec![6u8, 0];
        msg.extend_from_slice(&details);
        msg.extend_from_slice(reg.keys.identity.as_bytes());
        let account_signature = acct.phone.sign(&msg);
        let signed = wa_proto::AdvSignedDeviceIdentity {
            details: Some(details.clone()),
            account_signature_key: Some(account_key.as_bytes().to_vec()),
            account_signature: Some(account_signature.to_vec()),
            device_signature: None,
        }
        .encode_to_vec();
        let hmac = wa_crypto::hmac_sha256(adv_secret, &[&signed]);
        let container = wa_proto::AdvSignedDeviceIdentityHmac {
            details: Some(signed),
            hmac: Some(hmac.to_vec()),
            account_type: None,
        }
        .encode_to_vec();
        acct.devices.insert(
            device,
            Device {
                id: device,
                noise_key: Some(reg.noise_key),
                keys: reg.keys.clone(),
                key_index,
                conn: None,
                offline: VecDeque::new(),
                in_flight: VecDeque::new(),
                acked: VecDeque::new(),
                platform: reg.platform.clone(),
                signed_identity: None,
            },
        );
        let addr = DeviceAddr { account, device };
        let jid = self.device_jid(addr, Server::Pn);
        let lid = self.device_jid(addr, Server::Lid);
        // Whether the account's 1:1 chats are LID-addressed, which decides how the companion
        // must address DMs (whatsmeow pair.go `handlePairSuccess`; whatsapp-rust PR #943 and
        // 0.7 src/pair.rs: WA Web's HandlePairSuccess sets isLidMigrated from it).
        let client_props = wa_proto::ClientPairingProps {
            is_chat_db_lid_migrated: Some(self.accounts[account].lid_migrated),
            ..Default::default()
        }
        .encode_to_vec();
        let iq_id = self.next_iq_id();
        if let Some(c) = self.conns.get_mut(&conn) {
            c.pending_pair = Some(PendingPair { iq_id: iq_id.clone(), addr, details, account_key });
        }
        let node = Node::new("iq")
            .attr("from", server_jid())
            .attr("type", "set")
            .attr("id", iq_id)
            .attr("t", now)
            .children([Node::new("pair-success").children([
                Node::new("device-identity").bytes(container),
                Node::new("platform").attr("name", "android"),
                Node::new("device").attr("jid", jid).attr("lid", lid),
                Node::new("client-props").bytes(client_props),
            ])]);
        self.send(conn, node);
        addr
    }

    pub(crate) fn on_pair_reply(&mut self, conn: ConnId, iq: &Node) {
        let Some(pending) = self.conns.get_mut(&conn).and_then(|c| c.pending_pair.take()) else { return };
        if attr(iq, "id") != pending.iq_id {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.pending_pair = Some(pending);
            }
            return;
        }
        let addr = pending.addr;
        let signed = iq.child_path(&["pair-device-sign", "device-identity"]).and_then(content_bytes);
        let Some(signed) = signed.filter(|_| attr(iq, "type") == "result") else {
            tracing::warn!(conn, "companion rejected pair-success");
            self.accounts[addr.account].devices.remove(&addr.device);
            self.close(conn);
            return;
        };
        let identity = self.accounts[addr.account].devices.get(&addr.device).map(|d| d.keys.identity);
        let valid = (|| {
            let parsed = wa_proto::AdvSignedDeviceIdentity::decode(signed).ok()?;
            let sig: [u8; 64] = parsed.device_signature.as_deref()?.try_into().ok()?;
            let identity = identity?;
            if parsed.details.as_deref()? != pending.details.as_slice() {
                return Some(false);
            }
            let mut msg = vec![6u8, 1];
            msg.extend_from_slice(&pending.details);
            msg.extend_from_slice(identity.as_bytes());
            msg.extend_from_slice(pending.account_key.as_bytes());
            Some(identity.verify(&msg, &sig))
        })()
        .unwrap_or(false);
        let pn = self.accounts[addr.account].pn.clone();
        self.emit(WorldEvent::Paired { pn, device: addr.device, device_signature_valid: valid });
        if !valid {
            tracing::warn!(conn, "device signature in pair-device-sign does not verify");
            self.accounts[addr.account].devices.remove(&addr.device);
            self.send_and_close(conn, Node::new("stream:error").attr("code", "401"));
            return;
        }
        let mut key_index = None;
        if let Some(d) = self.accounts[addr.account].devices.get_mut(&addr.device) {
            d.signed_identity = Some(signed.to_vec());
            key_index = Some(d.key_index);
        }
        // The phone re-signs its key index list, and the account's peers hear of the device.
        if let Some(k) = key_index {
            self.device_list_changed(addr.account, crate::device_list::DeviceChange::Added(addr.device, k));
        }
        self.notify_own_devices(addr.account);
        // The phone hands the new companion its app-state keys at once; the peer message waits
        // in the offline queue for the companion's first login (see `appstate`).
        if let Err(e) = self.phone_share_app_state_keys(addr.account, addr.device, None) {
            tracing::warn!(error = %e, "phone could not share its app-state keys");
        }
        // Then its history: a bootstrap chunk and the recent messages (see `history`).
        if let Err(e) = self.phone_send_history(addr.account, addr.device) {
            tracing::warn!(error = %e, "phone could not send its history");
        }
        if let Some(reg) = self.conns.get_mut(&conn).and_then(|c| c.registration.take()) {
            for r in reg.refs {
                self.refs.remove(&r);
            }
        }
        self.send_and_close(conn, Node::new("stream:error").attr("code", "515"));
    }
}
