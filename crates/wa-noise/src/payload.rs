//! `ClientPayload` builders: registration of a new companion device, and login of a
//! paired one (the plaintext of `ClientFinish.payload`).

use wa_crypto::PublicKey;
use wa_proto::ClientPayload;
use wa_proto::DeviceProps;
use wa_proto::client_payload::user_agent::{AppVersion, Platform, ReleaseChannel};
use wa_proto::client_payload::web_info::WebSubPlatform;
use wa_proto::client_payload::{
    ConnectReason, ConnectType, DevicePairingRegistrationData, UserAgent, WebInfo,
};
use wa_proto::device_props;

/// The built-in WhatsApp Web version: whatsmeow's of 2026-08-20 (`store/clientpayload.go`
/// `waVersion`). WhatsApp answers versions a few weeks to about 2.5 months old with
/// `<failure reason="405">`, so clients should prefer the current one (`sw.js`
/// `client_revision`) and fall back to this.
pub const DEFAULT_APP_VERSION: [u32; 3] = [2, 3000, 1_045_649_367];

/// `"2.3000.1045649367"`: the dotted form WhatsApp hashes into `buildHash` and people write.
pub fn format_app_version(v: [u32; 3]) -> String {
    let [a, b, c] = v;
    format!("{a}.{b}.{c}")
}

/// A WhatsApp Web version that is not three dot-separated numbers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid WhatsApp Web version {input:?}: expected three dot-separated numbers such as 2.3000.1045649367"
)]
pub struct AppVersionError {
    /// What was given.
    pub input: String,
}

/// Parses `"2.3000.1045649367"` (surrounding whitespace ignored).
pub fn parse_app_version(s: &str) -> Result<[u32; 3], AppVersionError> {
    let bad = || AppVersionError { input: s.to_owned() };
    let mut parts = s.trim().split('.');
    let mut out = [0u32; 3];
    for slot in &mut out {
        let p = parts.next().ok_or_else(bad)?;
        // Digits only: `u32::from_str` would also take a leading `+`.
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        *slot = p.parse().map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(out)
}

/// How this client describes itself; the same for registration and login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientProfile {
    /// WA Web version `primary.secondary.tertiary`; also feeds `buildHash`.
    pub app_version: [u32; 3],
    /// `userAgent.platform` (WEB for a web companion).
    pub platform: Platform,
    /// `userAgent.releaseChannel`.
    pub release_channel: ReleaseChannel,
    /// `userAgent.mcc` / `userAgent.mnc`.
    pub mcc: String,
    /// See `mcc`.
    pub mnc: String,
    /// `userAgent.osVersion`.
    pub os_version: String,
    /// `userAgent.osBuildNumber`.
    pub os_build_number: String,
    /// `userAgent.device`.
    pub device: String,
    /// `userAgent.manufacturer` (whatsmeow sends "", Baileys omits it).
    pub manufacturer: Option<String>,
    /// `userAgent.localeLanguageIso6391`.
    pub locale_language: String,
    /// `userAgent.localeCountryIso31661Alpha2`.
    pub locale_country: String,
    /// `webInfo.webSubPlatform`.
    pub web_sub_platform: WebSubPlatform,
    /// `connectType`.
    pub connect_type: ConnectType,
    /// `connectReason`.
    pub connect_reason: ConnectReason,
    /// `pushName`, if any.
    pub push_name: Option<String>,
    /// `lidDbMigrated` on login (whatsmeow true, Baileys false; `None` omits it).
    pub lid_db_migrated: Option<bool>,
}

impl Default for ClientProfile {
    /// The common values of whatsmeow and Baileys for a web companion.
    fn default() -> Self {
        Self {
            app_version: DEFAULT_APP_VERSION,
            platform: Platform::Web,
            release_channel: ReleaseChannel::Release,
            mcc: "000".into(),
            mnc: "000".into(),
            os_version: "0.1".into(),
            os_build_number: "0.1".into(),
            device: "Desktop".into(),
            manufacturer: None,
            locale_language: "en".into(),
            locale_country: "US".into(),
            web_sub_platform: WebSubPlatform::WebBrowser,
            connect_type: ConnectType::WifiUnknown,
            connect_reason: ConnectReason::UserActivated,
            push_name: None,
            lid_db_migrated: Some(false),
        }
    }
}

/// The companion's Signal keys sent at registration (`devicePairingData`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationKeys {
    /// Signal registration id (sent as 4 bytes big-endian).
    pub registration_id: u32,
    /// Signal identity public key.
    pub identity_key: PublicKey,
    /// Signed prekey id (sent as 3 bytes big-endian, so only the low 24 bits count).
    pub signed_pre_key_id: u32,
    /// Signed prekey public key.
    pub signed_pre_key: PublicKey,
    /// XEdDSA signature by the identity key over `05 ‖ signed_pre_key`.
    pub signed_pre_key_signature: [u8; 64],
}

/// What the phone shows about this companion, and its history-sync wishes, as Baileys
/// sends them (`os` e.g. "Mac OS", `version` e.g. 10.15.7, `platform_type` e.g. CHROME).
pub fn device_props(
    os: &str,
    version: [u32; 3],
    platform_type: device_props::PlatformType,
    require_full_sync: bool,
) -> DeviceProps {
    DeviceProps {
        os: Some(os.to_owned()),
        version: Some(device_props::AppVersion {
            primary: Some(version[0]),
            secondary: Some(version[1]),
            tertiary: Some(version[2]),
            ..Default::default()
        }),
        platform_type: Some(platform_type as i32),
        require_full_sync: Some(require_full_sync),
        history_sync_config: Some(device_props::HistorySyncConfig {
            storage_quota_mb: Some(10240),
            inline_initial_payload_in_e2_ee_msg: Some(true),
            support_call_log_history: Some(false),
            support_bot_user_agent_chat_history: Some(true),
            support_cag_reactions_and_polls: Some(true),
            support_biz_hosted_msg: Some(true),
            support_recent_sync_chunk_message_count_tuning: Some(true),
            support_hosted_group_msg: Some(true),
            support_fbid_bot_chat_history: Some(true),
            support_message_association: Some(true),
            support_group_history: Some(false),
            ..Default::default()
        }),
    }
}

impl ClientProfile {
    /// `"2.3000.<n>"`, the string WhatsApp hashes into `buildHash`.
    pub fn version_string(&self) -> String {
        format_app_version(self.app_version)
    }

    fn base(&self) -> ClientPayload {
        let [primary, secondary, tertiary] = self.app_version;
        ClientPayload {
            user_agent: Some(UserAgent {
                platform: Some(self.platform as i32),
                app_version: Some(AppVersion {
                    primary: Some(primary),
                    secondary: Some(secondary),
                    tertiary: Some(tertiary),
                    ..Default::default()
                }),
                mcc: Some(self.mcc.clone()),
                mnc: Some(self.mnc.clone()),
                os_version: Some(self.os_version.clone()),
                manufacturer: self.manufacturer.clone(),
                device: Some(self.device.clone()),
                os_build_number: Some(self.os_build_number.clone()),
                release_channel: Some(self.release_channel as i32),
                locale_language_iso6391: Some(self.locale_language.clone()),
                locale_country_iso31661_alpha2: Some(self.locale_country.clone()),
                ..Default::default()
            }),
            web_info: Some(WebInfo {
                web_sub_platform: Some(self.web_sub_platform as i32),
                ..Default::default()
            }),
            connect_type: Some(self.connect_type as i32),
            connect_reason: Some(self.connect_reason as i32),
            push_name: self.push_name.clone(),
            ..Default::default()
        }
    }

    /// The payload of a device that is not paired yet: `passive=false`, `pull=false` and
    /// `devicePairingData` with the Signal keys, `buildHash = MD5("2.3000.<n>")` and the
    /// serialized `props`.
    pub fn registration(&self, keys: &RegistrationKeys, props: &DeviceProps) -> ClientPayload {
        use prost::Message as _;
        let skey_id = keys.signed_pre_key_id.to_be_bytes();
        ClientPayload {
            passive: Some(false),
            pull: Some(false),
            device_pairing_data: Some(DevicePairingRegistrationData {
                e_regid: Some(keys.registration_id.to_be_bytes().to_vec()),
                e_keytype: Some(vec![0x05]),
                e_ident: Some(keys.identity_key.as_bytes().to_vec()),
                e_skey_id: Some(skey_id[1..].to_vec()),
                e_skey_val: Some(keys.signed_pre_key.as_bytes().to_vec()),
                e_skey_sig: Some(keys.signed_pre_key_signature.to_vec()),
                build_hash: Some(wa_crypto::md5(&[self.version_string().as_bytes()]).to_vec()),
                device_props: Some(props.encode_to_vec()),
            }),
            ..self.base()
        }
    }

    /// The payload of a paired device logging in: `username` is the account's phone
    /// number (PN user part), `device` its device id; `passive=true`, `pull=true`.
    pub fn login(&self, username: u64, device: u32) -> ClientPayload {
        ClientPayload {
            username: Some(username),
            passive: Some(true),
            device: Some(device),
            pull: Some(true),
            lid_db_migrated: self.lid_db_migrated,
            ..self.base()
        }
    }
}

#[cfg(test)]
mod version_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn versions_parse_and_format() {
        assert_eq!(parse_app_version(" 2.3000.1045649367 ").unwrap(), DEFAULT_APP_VERSION);
        assert_eq!(format_app_version(DEFAULT_APP_VERSION), "2.3000.1045649367");
        for bad in
            ["", "2.3000", "2.3000.1.4", "2.x.1", "2..1", "+2.3000.1", "2.3000.99999999999", "2.3000.-1"]
        {
            let e = parse_app_version(bad).unwrap_err();
            assert_eq!(e.input, bad);
            assert!(e.to_string().contains("three dot-separated numbers"), "{e}");
        }
    }

    #[test]
    fn build_hash_follows_the_version() {
        let keys = RegistrationKeys {
            registration_id: 1,
            identity_key: PublicKey::from_bytes(&[9; 32]).unwrap(),
            signed_pre_key_id: 1,
            signed_pre_key: PublicKey::from_bytes(&[8; 32]).unwrap(),
            signed_pre_key_signature: [0; 64],
        };
        let props = device_props("Linux", [0, 1, 0], device_props::PlatformType::Chrome, false);
        let profile = ClientProfile { app_version: [2, 3000, 7], ..Default::default() };
        let p = profile.registration(&keys, &props);
        let hash = p.device_pairing_data.unwrap().build_hash.unwrap();
        assert_eq!(hash, wa_crypto::md5(&[b"2.3000.7"]).to_vec());
        let v = p.user_agent.unwrap().app_version.unwrap();
        assert_eq!((v.primary, v.secondary, v.tertiary), (Some(2), Some(3000), Some(7)));
    }
}
