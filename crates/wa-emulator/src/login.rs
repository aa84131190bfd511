//! Login: the client's `ClientPayload` after the Noise handshake, checked and answered with
//! `<success>` or `<failure>`.
//!
//! Before registration or login the payload must be one WhatsApp takes: a version no older
//! than [`crate::EmulatorConfig::min_client_version`] and the shape every reference client
//! sends (see [`check_payload`] and the rule table in the crate's README).

use wa_binary::{Node, Server};
use wa_crypto::PublicKey;
use wa_noise::ClientFinished;
use wa_proto::ClientPayload;
use wa_proto::client_payload::user_agent::Platform;
use wa_proto::client_payload::web_info::WebSubPlatform;

use crate::world::{ConnId, DeviceAddr, World, WorldEvent};

/// `<failure reason>` for a user agent the server rejects: whatsmeow
/// `types/events/events.go` `ConnectFailureBadUserAgent` ("client user agent was rejected"),
/// wacore `types/events.rs` `ConnectFailureReason::BadUserAgent`.
pub const FAILURE_BAD_USER_AGENT: u16 = 409;
/// `<failure reason>` for an outdated version: whatsmeow `ConnectFailureClientOutdated`,
/// handled in `connectionevents.go` `handleConnectFailure`; seen live in
/// https://github.com/asternic/wuzapi/pull/368, https://github.com/openclaw/wacli/pull/117 and
/// https://github.com/tulir/whatsmeow/issues/1040.
pub const FAILURE_CLIENT_OUTDATED: u16 = 405;
/// `<failure reason>` for a malformed payload: whatsmeow `ConnectFailureGeneric`. Which code
/// the service uses for a wrong `passive`/`pull` or a login without `username` is not
/// documented anywhere we can read; 400 is our choice (README rule table).
pub const FAILURE_GENERIC: u16 = 400;

/// A payload refused before any account is looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadRefusal {
    /// The `<failure reason>`.
    pub reason: u16,
    /// Which rule (as named in the README rule table).
    pub rule: &'static str,
}

fn refuse(reason: u16, rule: &'static str) -> PayloadRefusal {
    PayloadRefusal { reason, rule }
}

/// The `ClientPayload` rules: only what whatsmeow (`store/clientpayload.go`), Baileys
/// 7.0.0-rc14 (`lib/Utils/validate-connection.js`) and whatsapp-rust 0.7 (wacore
/// `store/device.rs` `build_base_client_payload`, `get_login_payload`,
/// `get_registration_payload`) all send, plus the version floor.
///
/// Not checked, because the three differ: `passive` at login (whatsmeow and Baileys `true`,
/// whatsapp-rust `false` as WA Web's `ClientPayloadForLogin.js` does), `lidDbMigrated`, `lc`,
/// `pushName`, `manufacturer`, `osVersion`, the locale, and `webInfo` on non-WEB platforms
/// (Baileys' Android browser and whatsapp-rust's native profiles omit it).
pub fn check_payload(p: &ClientPayload, min_version: [u32; 3]) -> Result<(), PayloadRefusal> {
    // All three send userAgent with platform WEB by default (Baileys ANDROID for an Android
    // "browser", whatsapp-rust ANDROID/IOS/MACOS/WINDOWS profiles): any known platform.
    let ua = p.user_agent.as_ref().ok_or(refuse(FAILURE_BAD_USER_AGENT, "user_agent"))?;
    let platform = ua
        .platform
        .and_then(|v| Platform::try_from(v).ok())
        .ok_or(refuse(FAILURE_BAD_USER_AGENT, "user_agent.platform"))?;
    let version = ua
        .app_version
        .as_ref()
        .and_then(|v| Some([v.primary?, v.secondary?, v.tertiary?]))
        .ok_or(refuse(FAILURE_BAD_USER_AGENT, "user_agent.app_version"))?;
    // A web companion says which web client it is: all three send webInfo.webSubPlatform
    // (WEB_BROWSER; Baileys DARWIN/WIN32 for a desktop full sync) whenever platform is WEB.
    if platform == Platform::Web {
        p.web_info
            .as_ref()
            .and_then(|w| w.web_sub_platform)
            .and_then(|v| WebSubPlatform::try_from(v).ok())
            .ok_or(refuse(FAILURE_BAD_USER_AGENT, "web_info.web_sub_platform"))?;
    }
    // Compared as a triple, as the service orders releases.
    if version < min_version {
        return Err(refuse(FAILURE_CLIENT_OUTDATED, "min_client_version"));
    }
    match &p.device_pairing_data {
        Some(reg) => {
            // Registration: all three send passive=false, pull=false (absent is the
            // protobuf default, false, so it is the same on the wire's meaning).
            if p.passive.unwrap_or(false) || p.pull.unwrap_or(false) {
                return Err(refuse(FAILURE_GENERIC, "registration.passive_pull"));
            }
            // buildHash = MD5("2.3000.<n>") of the version in userAgent: whatsmeow
            // `WAVersionContainer.Hash`, Baileys `createHash('md5').update(version.join('.'))`,
            // wacore `md5_digest(version_str)`.
            let want = wa_crypto::md5(&[wa_noise::payload::format_app_version(version).as_bytes()]);
            if reg.build_hash.as_deref() != Some(&want[..]) {
                return Err(refuse(FAILURE_BAD_USER_AGENT, "registration.build_hash"));
            }
        }
        None => {
            // Login: all three send pull=true (whatsapp-rust: "WA Web's
            // ClientPayloadForLogin.js hardcodes pull: true") and username and device.
            if p.pull != Some(true) {
                return Err(refuse(FAILURE_GENERIC, "login.pull"));
            }
            if p.username.is_none() || p.device.is_none() {
                return Err(refuse(FAILURE_GENERIC, "login.username_device"));
            }
        }
    }
    Ok(())
}

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
        if let Err(r) = check_payload(&payload, self.min_client_version) {
            tracing::info!(conn, reason = r.reason, rule = r.rule, "ClientPayload refused");
            self.emit(WorldEvent::PayloadRefused {
                conn,
                registration: payload.device_pairing_data.is_some(),
                username: payload.username,
                reason: r.reason,
                rule: r.rule.to_owned(),
            });
            self.send_and_close(conn, Node::new("failure").attr("reason", r.reason).attr("location", "emu"));
            return;
        }
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
        let lid = self.user_jid(account, Server::Lid);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use wa_noise::payload::{DEFAULT_APP_VERSION, device_props};
    use wa_noise::{ClientProfile, RegistrationKeys};

    fn registration(profile: &ClientProfile) -> ClientPayload {
        let keys = RegistrationKeys {
            registration_id: 7,
            identity_key: PublicKey::from_bytes(&[9; 32]).unwrap(),
            signed_pre_key_id: 1,
            signed_pre_key: PublicKey::from_bytes(&[8; 32]).unwrap(),
            signed_pre_key_signature: [0; 64],
        };
        let props = device_props("Linux", [0, 1, 0], wa_proto::device_props::PlatformType::Chrome, false);
        profile.registration(&keys, &props)
    }

    fn login(profile: &ClientProfile) -> ClientPayload {
        profile.login(15_550_001_000, 3)
    }

    fn rule(p: &ClientPayload) -> Option<(u16, &'static str)> {
        check_payload(p, DEFAULT_APP_VERSION).err().map(|r| (r.reason, r.rule))
    }

    #[test]
    fn what_the_references_send_is_accepted() {
        let current = ClientProfile::default();
        assert_eq!(rule(&registration(&current)), None);
        assert_eq!(rule(&login(&current)), None);
        // whatsapp-rust logs in with passive=false (as WA Web), and adds lc; Baileys omits
        // lidDbMigrated=true and manufacturer; non-WEB platforms carry no webInfo.
        let mut wa_rs = login(&current);
        wa_rs.passive = Some(false);
        wa_rs.lc = Some(3);
        assert_eq!(rule(&wa_rs), None);
        let mut android = login(&current);
        android.user_agent.as_mut().unwrap().platform = Some(Platform::Android as i32);
        android.web_info = None;
        assert_eq!(rule(&android), None);
        // A newer version than the floor is fine.
        let newer =
            ClientProfile { app_version: [2, 3000, DEFAULT_APP_VERSION[2] + 1], ..Default::default() };
        assert_eq!(rule(&registration(&newer)), None);
        assert_eq!(rule(&login(&newer)), None);
        let next_major = ClientProfile { app_version: [2, 3001, 0], ..Default::default() };
        assert_eq!(rule(&login(&next_major)), None);
    }

    #[test]
    fn an_older_version_is_405_at_registration_and_login() {
        for stale in [[2, 3000, DEFAULT_APP_VERSION[2] - 1], [2, 2999, u32::MAX], [1, 9999, 9999]] {
            let p = ClientProfile { app_version: stale, ..Default::default() };
            assert_eq!(rule(&registration(&p)), Some((405, "min_client_version")), "{stale:?}");
            assert_eq!(rule(&login(&p)), Some((405, "min_client_version")), "{stale:?}");
        }
    }

    #[test]
    fn each_shape_rule_refuses() {
        let p = ClientProfile::default();
        let cases: Vec<(ClientPayload, u16, &str)> = vec![
            (ClientPayload { user_agent: None, ..login(&p) }, 409, "user_agent"),
            (
                {
                    let mut x = login(&p);
                    x.user_agent.as_mut().unwrap().platform = None;
                    x
                },
                409,
                "user_agent.platform",
            ),
            (
                {
                    let mut x = login(&p);
                    x.user_agent.as_mut().unwrap().platform = Some(9999);
                    x
                },
                409,
                "user_agent.platform",
            ),
            (
                {
                    let mut x = registration(&p);
                    x.user_agent.as_mut().unwrap().app_version = None;
                    x
                },
                409,
                "user_agent.app_version",
            ),
            (
                {
                    let mut x = login(&p);
                    x.user_agent.as_mut().unwrap().app_version.as_mut().unwrap().tertiary = None;
                    x
                },
                409,
                "user_agent.app_version",
            ),
            (ClientPayload { web_info: None, ..login(&p) }, 409, "web_info.web_sub_platform"),
            (
                {
                    let mut x = registration(&p);
                    x.web_info.as_mut().unwrap().web_sub_platform = None;
                    x
                },
                409,
                "web_info.web_sub_platform",
            ),
            (ClientPayload { passive: Some(true), ..registration(&p) }, 400, "registration.passive_pull"),
            (ClientPayload { pull: Some(true), ..registration(&p) }, 400, "registration.passive_pull"),
            (
                {
                    let mut x = registration(&p);
                    x.device_pairing_data.as_mut().unwrap().build_hash =
                        Some(wa_crypto::md5(&[b"2.3000.1"]).to_vec());
                    x
                },
                409,
                "registration.build_hash",
            ),
            (
                {
                    let mut x = registration(&p);
                    x.device_pairing_data.as_mut().unwrap().build_hash = None;
                    x
                },
                409,
                "registration.build_hash",
            ),
            (ClientPayload { pull: Some(false), ..login(&p) }, 400, "login.pull"),
            (ClientPayload { pull: None, ..login(&p) }, 400, "login.pull"),
            (ClientPayload { username: None, ..login(&p) }, 400, "login.username_device"),
            (ClientPayload { device: None, ..login(&p) }, 400, "login.username_device"),
        ];
        for (payload, reason, name) in cases {
            assert_eq!(rule(&payload), Some((reason, name)), "{name}: {payload:?}");
        }
        // Absent passive/pull at registration are the protobuf default (false): accepted.
        let absent = ClientPayload { passive: None, pull: None, ..registration(&p) };
        assert_eq!(rule(&absent), None);
    }
}
