//! Login: the client's `ClientPayload` after the Noise handshake, checked and answered with
//! `<success>` or `<failure>`.

use wa_binary::{Node, Server};
use wa_crypto::PublicKey;
use wa_noise::ClientFinished;

use crate::world::{ConnId, DeviceAddr, World, WorldEvent};

impl World {
    // ------------------------------------------------------------------ handshake

    /// The client finished the Noise handshake: register it or log it in.
    pub fn on_handshake(&mut self, conn: ConnId, finished: &ClientFinished) {
        let payload = match finished.client_payload() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(conn, error = %e, "undecodable ClientPayload");
                self.send_and_close(conn, Node::new("failure").attr("reason", "400"));
                return;
            }
        };
        if let Some(reg) = payload.device_pairing_data.as_ref() {
            self.start_registration(conn, finished.client_static, reg, &payload);
        } else {
            self.login(conn, finished.client_static, &payload);
        }
    }

    pub(crate) fn login(&mut self, conn: ConnId, noise_key: PublicKey, payload: &wa_proto::ClientPayload) {
        let username = payload.username.unwrap_or(0);
        let device = payload.device.unwrap_or(0);
        let refuse = |w: &mut World, reason: u16| {
            w.emit(WorldEvent::LoginRefused { username, device, reason });
            w.send_and_close(conn, Node::new("failure").attr("reason", reason).attr("location", "emu"));
        };
        if self.policy.refuse_logins_until > self.now() {
            return refuse(self, 503);
        }
        let Some(&account) = self.by_pn.get(&username.to_string()) else {
            return refuse(self, 401);
        };
        let Ok(device_id) = u16::try_from(device) else {
            return refuse(self, 401);
        };
        let addr = DeviceAddr { account, device: device_id };
        let Some(d) = self.accounts[account].devices.get(&device_id) else {
            return refuse(self, 401);
        };
        if device_id == 0 || d.noise_key != Some(noise_key) || d.signed_identity.is_none() {
            return refuse(self, 401);
        }
        // A second login of the same device replaces the first.
        if let Some(old) = d.conn
            && old != conn
        {
            let replaced =
                Node::new("stream:error").children([Node::new("conflict").attr("type", "replaced")]);
            self.send_and_close(old, replaced);
            if let Some(c) = self.conns.get_mut(&old) {
                c.device = None;
            }
        }
        if let Some(d) = self.accounts[account].devices.get_mut(&device_id) {
            d.conn = Some(conn);
            // What an earlier connection left unacknowledged is delivered again on activation.
            d.requeue_in_flight();
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.device = Some(addr);
            c.active = false;
        }
        // The device-qualified LID, the same as pair-success's `lid` (whatsmeow
        // connectionevents.go `handleConnectSuccess` compares the two).
        let lid = self.device_jid(addr, Server::Lid);
        let now = self.now();
        self.send(
            conn,
            Node::new("success")
                .attr("t", now)
                .attr("props", "1")
                .attr("abprops", "1")
                .attr("location", "emu")
                .attr("creation", now)
                .attr("lid", lid),
        );
        let pn = self.accounts[account].pn.clone();
        self.emit(WorldEvent::LoggedIn { pn, device: device_id, conn });
    }
}
