//! Our own wa-noise + wa-binary (+ wa-signal keys) as the client: handshake against the
//! emulator's chain, registration, QR pairing through a simulated phone (checking the ADV
//! HMAC and account signature, signing the device identity), 515, login, post-login IQs,
//! and refusals. No Baileys involved.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wa_binary::{Node, decode_frame, encode};
use wa_crypto::KeyPair;
use wa_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use wa_noise::payload::device_props;
use wa_noise::{
    CertVerifier, ClientProfile, ConnectionHeader, FrameDecoder, Initiator, InitiatorConfig,
    RegistrationKeys, Transport,
};
use wa_signal::{LocalIdentity, SignedPreKeyRecord};

const PN: &str = "15551234567";
/// Each wait: generous, for CI's two loaded cores.
const T: Duration = Duration::from_secs(60);

struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    frames: FrameDecoder,
    transport: Transport,
}

impl Client {
    async fn connect(
        emu: &EmulatorHandle,
        noise: &KeyPair,
        payload: &wa_proto::ClientPayload,
        rng: &mut StdRng,
    ) -> Client {
        let mut req = emu.ws_url().into_client_request().unwrap();
        req.headers_mut().insert("Origin", "https://web.whatsapp.com".parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let config = InitiatorConfig {
            header: ConnectionHeader::new(),
            static_key: KeyPair::from_private(wa_crypto::PrivateKey::from_bytes(*noise.private.as_bytes())),
            verifier: CertVerifier::new(emu.root_public_key()),
        };
        let mut out = Vec::new();
        let hs = Initiator::new(config, KeyPair::generate(rng)).write_client_hello(&mut out).unwrap();
        ws.send(WsMessage::Binary(out.into())).await.unwrap();
        let mut frames = FrameDecoder::client();
        let hello = loop {
            if let Some(f) = frames.next_frame().unwrap() {
                break f;
            }
            let m = tokio::time::timeout(T, ws.next()).await.unwrap().unwrap().unwrap();
            frames.push(&m.into_data());
        };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let hs = hs.read_server_hello(&hello, now).expect("the emulator's chain verifies against its root");
        let mut out = Vec::new();
        let transport = hs.write_client_finish(&payload.encode_to_vec(), &mut out).unwrap();
        ws.send(WsMessage::Binary(out.into())).await.unwrap();
        Client { ws, frames, transport }
    }

    async fn recv(&mut self) -> Option<Node> {
        loop {
            if let Some(f) = self.frames.next_frame().unwrap() {
                let plain = self.transport.decrypt_frame(f).unwrap();
                return Some(decode_frame(&plain).unwrap());
            }
            match tokio::time::timeout(T, self.ws.next()).await.expect("timed out waiting for a node") {
                Some(Ok(WsMessage::Binary(b))) => self.frames.push(&b),
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    async fn send(&mut self, node: &Node) {
        let mut out = Vec::new();
        self.transport.encrypt_frame(&encode(node).unwrap(), &mut out).unwrap();
        self.ws.send(WsMessage::Binary(out.into())).await.unwrap();
    }

    async fn iq(&mut self, xmlns: &str, ty: &str, id: &str, children: Vec<Node>) -> Node {
        let iq = Node::new("iq")
            .attr("id", id)
            .attr("xmlns", xmlns)
            .attr("type", ty)
            .attr("to", "s.whatsapp.net")
            .children(children);
        self.send(&iq).await;
        loop {
            let n = self.recv().await.expect("connection closed");
            if n.tag == "iq" && n.opt_attr_str("id").as_deref() == Some(id) {
                return n;
            }
        }
    }
}

struct Creds {
    noise: KeyPair,
    identity: LocalIdentity,
    signed: SignedPreKeyRecord,
    adv_secret: [u8; 32],
}

async fn emulator() -> EmulatorHandle {
    let emu = Emulator::start(EmulatorConfig { seed: Some(1), ..Default::default() }).await.unwrap();
    emu.create_account(PN, "Me").unwrap();
    emu
}

/// What pair-success told the companion besides its keys.
#[derive(Debug)]
struct PairInfo {
    device: u32,
    /// `<device lid>`.
    lid: wa_binary::Jid,
    /// `ClientPairingProps.isChatDbLidMigrated` from `<client-props>`.
    lid_migrated: Option<bool>,
    /// `ADVDeviceIdentity.rawId`.
    raw_id: u32,
}

/// Registers, pairs by QR, answers pair-success; returns the creds and device id.
async fn pair(emu: &EmulatorHandle, rng: &mut StdRng) -> (Creds, u32) {
    let (creds, info) = pair_account(emu, PN, rng).await;
    (creds, info.device)
}

/// [`pair`] for any account, with what pair-success said.
async fn pair_account(emu: &EmulatorHandle, pn: &str, rng: &mut StdRng) -> (Creds, PairInfo) {
    let noise = KeyPair::generate(rng);
    let identity = LocalIdentity::generate(rng);
    let signed = SignedPreKeyRecord::generate(&identity.key_pair, 1, rng);
    let creds = Creds { noise, identity, signed, adv_secret: [7u8; 32] };
    let keys = RegistrationKeys {
        registration_id: creds.identity.registration_id,
        identity_key: creds.identity.public_key(),
        signed_pre_key_id: 1,
        signed_pre_key: creds.signed.key_pair.public,
        signed_pre_key_signature: creds.signed.signature,
    };
    let profile = ClientProfile::default();
    let props = device_props("rust", [0, 1, 0], wa_proto::device_props::PlatformType::Chrome, false);
    let payload = profile.registration(&keys, &props);
    let mut c = Client::connect(emu, &creds.noise, &payload, rng).await;

    let pd = c.recv().await.unwrap();
    assert_eq!(pd.tag, "iq");
    let refs: Vec<String> = pd
        .child("pair-device")
        .unwrap()
        .children_by_tag("ref")
        .map(|r| String::from_utf8(r.content_bytes().unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(refs.len(), 6);
    c.send(
        &Node::new("iq")
            .attr("to", "s.whatsapp.net")
            .attr("id", pd.attr_str("id").unwrap().as_ref())
            .attr("type", "result"),
    )
    .await;

    let qr = format!(
        "https://wa.me/settings/linked_devices#{},{},{},{},1",
        refs[0],
        B64.encode(creds.noise.public.as_bytes()),
        B64.encode(creds.identity.public_key().as_bytes()),
        B64.encode(creds.adv_secret)
    );
    emu.phone(pn).unwrap().scan(&qr).unwrap();
    let ps = c.recv().await.unwrap();
    let success = ps.child("pair-success").expect("pair-success");
    let lid_migrated = success
        .child("client-props")
        .and_then(|p| p.content_bytes())
        .map(|b| wa_proto::ClientPairingProps::decode(b).expect("client-props is a ClientPairingProps"))
        .and_then(|p| p.is_chat_db_lid_migrated);
    let container = wa_proto::AdvSignedDeviceIdentityHmac::decode(
        success.child("device-identity").unwrap().content_bytes().unwrap(),
    )
    .unwrap();
    let details = container.details.unwrap();
    assert_eq!(
        container.hmac.unwrap(),
        wa_crypto::hmac_sha256(&creds.adv_secret, &[&details]).to_vec(),
        "ADV HMAC"
    );
    let mut signed = wa_proto::AdvSignedDeviceIdentity::decode(details.as_slice()).unwrap();
    let account_key =
        wa_crypto::PublicKey::from_bytes(signed.account_signature_key.as_deref().unwrap()).unwrap();
    let inner = signed.details.clone().unwrap();
    let mut msg = vec![6u8, 0];
    msg.extend_from_slice(&inner);
    msg.extend_from_slice(creds.identity.public_key().as_bytes());
    let sig: [u8; 64] = signed.account_signature.as_deref().unwrap().try_into().unwrap();
    assert!(account_key.verify(&msg, &sig), "account signature (06 00) verifies");
    let identity = wa_proto::AdvDeviceIdentity::decode(inner.as_slice()).unwrap();
    let mut dmsg = vec![6u8, 1];
    dmsg.extend_from_slice(&inner);
    dmsg.extend_from_slice(creds.identity.public_key().as_bytes());
    dmsg.extend_from_slice(account_key.as_bytes());
    signed.device_signature = Some(creds.identity.key_pair.private.sign(&dmsg).to_vec());
    signed.account_signature_key = None;
    let device_jid = success.child("device").unwrap().attr_jid("jid").unwrap();
    let lid = success.child("device").unwrap().attr_jid("lid").unwrap();
    let raw_id = identity.raw_id.unwrap();
    let reply = Node::new("iq")
        .attr("to", "s.whatsapp.net")
        .attr("id", ps.attr_str("id").unwrap().as_ref())
        .attr("type", "result")
        .children([Node::new("pair-device-sign").children([Node::new("device-identity")
            .attr("key-index", identity.key_index.unwrap_or(0))
            .bytes(signed.encode_to_vec())])]);
    c.send(&reply).await;
    let err = c.recv().await.unwrap();
    assert_eq!(err.tag, "stream:error");
    assert_eq!(err.attr_str("code").unwrap(), "515");
    assert!(c.recv().await.is_none(), "the server closes after 515");
    (creds, PairInfo { device: u32::from(device_jid.device()), lid, lid_migrated, raw_id })
}

/// Logs a paired device in and makes it active; returns the connection and `<success>`.
async fn login(
    emu: &EmulatorHandle,
    pn: &str,
    creds: &Creds,
    device: u32,
    rng: &mut StdRng,
) -> (Client, Node) {
    let payload = ClientProfile::default().login(pn.parse().unwrap(), device);
    let mut c = Client::connect(emu, &creds.noise, &payload, rng).await;
    let success = c.recv().await.unwrap();
    assert_eq!(success.tag, "success", "{success:?}");
    let active = c.iq("passive", "set", "act", vec![Node::new("active")]).await;
    assert_eq!(active.attr_str("type").unwrap(), "result");
    (c, success)
}

/// A 1:1 `<message>` to `to` with one `<to jid>` per device; the ciphertexts are not real.
fn dm(id: &str, to: &wa_binary::Jid, devices: &[wa_binary::Jid]) -> Node {
    Node::new("message").attr("id", id).attr("to", to.clone()).attr("type", "text").children([Node::new(
        "participants",
    )
    .children(devices.iter().map(|d| {
        Node::new("to")
            .attr("jid", d.clone())
            .children([Node::new("enc").attr("v", "2").attr("type", "msg").bytes(vec![1, 2, 3])])
    }))])
}

/// Sends a stanza and waits for its `<ack class="message">`; returns its `error`, if any.
async fn message_ack(c: &mut Client, msg: &Node) -> Option<String> {
    let id = msg.attr_str("id").unwrap().into_owned();
    c.send(msg).await;
    loop {
        let n = c.recv().await.expect("connection closed");
        if n.tag == "ack" && n.opt_attr_str("id").as_deref() == Some(id.as_str()) {
            assert_eq!(n.attr_str("class").unwrap(), "message");
            return n.opt_attr_str("error").map(|e| e.into_owned());
        }
    }
}

#[tokio::test]
async fn handshake_pair_login_and_post_login_iqs() {
    let emu = emulator().await;
    let mut rng = StdRng::seed_from_u64(99);
    let (creds, device) = pair(&emu, &mut rng).await;
    assert_eq!(device, 1);

    let payload = ClientProfile::default().login(PN.parse().unwrap(), device);
    let mut c = Client::connect(&emu, &creds.noise, &payload, &mut rng).await;
    let success = c.recv().await.unwrap();
    assert_eq!(success.tag, "success");
    // Device-qualified, as pair-success named it (whatsmeow compares the two).
    let lid = success.attr_jid("lid").unwrap();
    assert_eq!(lid, emu.phone(PN).unwrap().lid().with_device(device as u16).unwrap());

    let count = c.iq("encrypt", "get", "1", vec![Node::new("count")]).await;
    assert_eq!(count.child("count").unwrap().attr_str("value").unwrap(), "0");
    let keys: Vec<Node> = (1u32..=5)
        .map(|i| {
            let kp = KeyPair::generate(&mut rng);
            Node::new("key").children([
                Node::new("id").bytes(i.to_be_bytes()[1..].to_vec()),
                Node::new("value").bytes(kp.public.as_bytes().to_vec()),
            ])
        })
        .collect();
    let up = c
        .iq(
            "encrypt",
            "set",
            "2",
            vec![
                Node::new("registration").bytes(creds.identity.registration_id.to_be_bytes().to_vec()),
                Node::new("type").bytes(vec![5]),
                Node::new("identity").bytes(creds.identity.public_key().as_bytes().to_vec()),
                Node::new("list").children(keys),
                Node::new("skey").children([
                    Node::new("id").bytes(creds.signed.id.to_be_bytes()[1..].to_vec()),
                    Node::new("value").bytes(creds.signed.key_pair.public.as_bytes().to_vec()),
                    Node::new("signature").bytes(creds.signed.signature.to_vec()),
                ]),
            ],
        )
        .await;
    assert_eq!(up.attr_str("type").unwrap(), "result");
    let count = c.iq("encrypt", "get", "3", vec![Node::new("count")]).await;
    assert_eq!(count.child("count").unwrap().attr_str("value").unwrap(), "5");
    let active = c.iq("passive", "set", "4", vec![Node::new("active")]).await;
    assert_eq!(active.attr_str("type").unwrap(), "result");
    // Activation: edge routing, a preview of the queue (the device list notification the
    // pairing queued, the phone's app-state key share and its three history chunks), the queue,
    // then the end-of-queue marker.
    let routing = c.recv().await.unwrap();
    assert!(routing.child_path(&["edge_routing", "routing_info"]).is_some(), "{routing:?}");
    let preview = c.recv().await.unwrap();
    let preview = preview.child("offline_preview").unwrap();
    assert_eq!(preview.attr_str("count").unwrap(), "5");
    assert_eq!(preview.attr_str("notification").unwrap(), "1");
    assert_eq!(preview.attr_str("message").unwrap(), "4");
    let sync = c.recv().await.unwrap();
    assert_eq!(
        (sync.tag.as_str(), sync.attr_str("type").unwrap().as_ref()),
        ("notification", "account_sync")
    );
    assert_eq!(sync.attr_str("offline").unwrap(), "1");
    let listed = sync.child("devices").unwrap().children_by_tag("device").count();
    assert_eq!(listed, 2, "the phone and this companion");
    c.send(
        &Node::new("ack")
            .attr("class", "notification")
            .attr("id", sync.attr_str("id").unwrap().as_ref())
            .attr("to", sync.attr_jid("from").unwrap())
            .attr("type", "account_sync"),
    )
    .await;
    // The phone's key share, then its three history chunks (bootstrap, push names, recent):
    // peer messages from device 0 (not decrypted here).
    for _ in 0..4 {
        let peer = c.recv().await.unwrap();
        assert_eq!(
            (
                peer.tag.as_str(),
                peer.attr_str("category").unwrap().as_ref(),
                peer.attr_str("type").unwrap().as_ref()
            ),
            ("message", "peer", "protocol")
        );
        assert_eq!(peer.attr_jid("from").unwrap().device(), 0);
        c.send(
            &Node::new("ack")
                .attr("class", "message")
                .attr("id", peer.attr_str("id").unwrap().as_ref())
                .attr("to", peer.attr_jid("from").unwrap()),
        )
        .await;
    }
    let offline = c.recv().await.unwrap();
    assert_eq!(offline.tag, "ib");
    assert_eq!(offline.child("offline").unwrap().attr_str("count").unwrap(), "5");
    let digest = c.iq("encrypt", "get", "5", vec![Node::new("digest")]).await;
    assert!(digest.child("digest").is_some());
    let ping = c.iq("w:p", "get", "6", vec![Node::new("ping")]).await;
    assert_eq!(ping.attr_str("type").unwrap(), "result");
    let unknown = c.iq("w:nonsense", "get", "7", vec![Node::new("thing")]).await;
    assert_eq!(unknown.attr_str("type").unwrap(), "error");
    assert_eq!(unknown.child("error").unwrap().attr_str("code").unwrap(), "501");
    // The notification's ack arrived before the iqs that followed it: nothing is in flight.
    assert_eq!(emu.in_flight(PN, u16::try_from(device).unwrap()).unwrap(), vec![]);
}

#[tokio::test]
async fn login_refusals() {
    let emu = emulator().await;
    let mut rng = StdRng::seed_from_u64(5);
    let (creds, device) = pair(&emu, &mut rng).await;

    // Unknown device.
    let payload = ClientProfile::default().login(PN.parse().unwrap(), device + 5);
    let mut c = Client::connect(&emu, &creds.noise, &payload, &mut rng).await;
    let f = c.recv().await.unwrap();
    assert_eq!((f.tag.as_str(), f.attr_str("reason").unwrap().as_ref()), ("failure", "401"));

    // Right device, wrong noise key.
    let other = KeyPair::generate(&mut rng);
    let payload = ClientProfile::default().login(PN.parse().unwrap(), device);
    let mut c = Client::connect(&emu, &other, &payload, &mut rng).await;
    let f = c.recv().await.unwrap();
    assert_eq!((f.tag.as_str(), f.attr_str("reason").unwrap().as_ref()), ("failure", "401"));

    // Refused for a while.
    emu.refuse_logins_for(60);
    let mut c = Client::connect(&emu, &creds.noise, &payload, &mut rng).await;
    let f = c.recv().await.unwrap();
    assert_eq!((f.tag.as_str(), f.attr_str("reason").unwrap().as_ref()), ("failure", "503"));
}

const FRIEND: &str = "15557654321";

/// A LID-migrated account (the default) must address 1:1 messages by LID, as the real service
/// demands: a naive client writing the phone number gets `ack error="463"`, names of both kinds
/// in one stanza get 479, and the LID-addressed message is accepted. A legacy account is the
/// other way round (400 for a LID).
#[tokio::test]
async fn dm_addressing_follows_the_accounts_lid_migration() {
    let emu = emulator().await;
    let friend = emu.create_account(FRIEND, "Friend").unwrap();
    let (friend_pn, friend_lid) = (friend.jid(), friend.lid());
    let mut rng = StdRng::seed_from_u64(11);
    let (creds, info) = pair_account(&emu, PN, &mut rng).await;
    assert_eq!(info.lid_migrated, Some(true), "pair-success says the account is LID-migrated");
    let (mut c, _) = login(&emu, PN, &creds, info.device, &mut rng).await;
    let own_lid = info.lid.to_non_ad();

    let naive = dm("M1", &friend_pn, std::slice::from_ref(&friend_pn));
    assert_eq!(message_ack(&mut c, &naive).await.as_deref(), Some("463"));
    let mixed = dm("M2", &friend_lid, &[friend_lid.clone(), emu.phone(PN).unwrap().jid()]);
    assert_eq!(message_ack(&mut c, &mixed).await.as_deref(), Some("479"));
    let good = dm("M3", &friend_lid, &[friend_lid.clone(), own_lid.clone()]);
    assert_eq!(message_ack(&mut c, &good).await, None);
    // Peer messages to the own phone stay on the phone number.
    let own_pn = emu.phone(PN).unwrap().jid();
    let peer = dm("M4", &own_pn, std::slice::from_ref(&own_pn)).attr("category", "peer");
    assert_eq!(message_ack(&mut c, &peer).await, None);
    let refused: Vec<(String, u16)> = emu
        .events()
        .into_iter()
        .filter_map(|e| match e {
            wa_emulator::WorldEvent::MessageRefused { id, code, .. } => Some((id, code)),
            _ => None,
        })
        .collect();
    assert_eq!(refused, vec![("M1".to_owned(), 463), ("M2".to_owned(), 479)]);
    assert!(!emu.phone(FRIEND).unwrap().inbox().iter().any(|m| m.id == "M1" || m.id == "M2"));

    // A legacy account keeps phone numbers: PN accepted, LID refused with 400.
    let legacy = "15550002222";
    emu.create_account_with(legacy, "Legacy", wa_emulator::AccountOptions { lid_migrated: false }).unwrap();
    let (creds, info) = pair_account(&emu, legacy, &mut rng).await;
    assert_eq!(info.lid_migrated, Some(false));
    let (mut c, _) = login(&emu, legacy, &creds, info.device, &mut rng).await;
    assert_eq!(message_ack(&mut c, &dm("L1", &friend_pn, std::slice::from_ref(&friend_pn))).await, None);
    assert_eq!(
        message_ack(&mut c, &dm("L2", &friend_lid, std::slice::from_ref(&friend_lid))).await.as_deref(),
        Some("400")
    );
}

/// usync: `<lid val>` when asked, and for a user with companions a `<key-index-list ts>` the
/// phone signed with the account key over `06 02 ‖ details`, listing the companion's key index.
#[tokio::test]
async fn usync_answers_lids_and_a_phone_signed_key_index_list() {
    let emu = emulator().await;
    emu.create_account(FRIEND, "Friend").unwrap();
    let mut rng = StdRng::seed_from_u64(12);
    let (creds, info) = pair_account(&emu, PN, &mut rng).await;
    let (mut c, _) = login(&emu, PN, &creds, info.device, &mut rng).await;
    let users = [emu.phone(PN).unwrap().jid(), emu.phone(FRIEND).unwrap().jid()];
    let query = |mode: &str, context: &str| {
        Node::new("usync")
            .attr("sid", "s1")
            .attr("mode", mode)
            .attr("context", context)
            .attr("last", "true")
            .children([
                Node::new("query").children([Node::new("devices").attr("version", "2"), Node::new("lid")]),
                Node::new("list").children(users.iter().map(|u| Node::new("user").attr("jid", u.clone()))),
            ])
    };
    let r = c.iq("usync", "get", "u1", vec![query("query", "message")]).await;
    assert_eq!(r.attr_str("type").unwrap(), "result", "{r:?}");
    let list: Vec<Node> =
        r.child_path(&["usync", "list"]).unwrap().children_by_tag("user").cloned().collect();
    assert_eq!(list.len(), 2);
    let (me, friend) = (&list[0], &list[1]);
    assert_eq!(me.child("lid").unwrap().attr_jid("val").unwrap(), emu.phone(PN).unwrap().lid());
    assert_eq!(friend.child("lid").unwrap().attr_jid("val").unwrap(), emu.phone(FRIEND).unwrap().lid());

    let kil =
        me.child_path(&["devices", "key-index-list"]).expect("a user with companions has a key index list");
    let signed = wa_proto::AdvSignedKeyIndexList::decode(kil.content_bytes().unwrap()).unwrap();
    let details = signed.details.clone().unwrap();
    let sig: [u8; 64] = signed.account_signature.as_deref().unwrap().try_into().unwrap();
    let account_key = emu.phone(PN).unwrap().identity_key().unwrap();
    let mut msg = wa_emulator::KEY_INDEX_LIST_SIGNATURE_PREFIX.to_vec();
    msg.extend_from_slice(&details);
    assert!(account_key.verify(&msg, &sig), "signed by the account key over 06 02 || details");
    let list_details = wa_proto::AdvKeyIndexList::decode(details.as_slice()).unwrap();
    assert_eq!(list_details.raw_id, Some(info.raw_id), "the raw id of the account's ADV identities");
    assert_eq!(list_details.timestamp.unwrap().to_string(), kil.attr_str("ts").unwrap());
    let key_index: u32 = me
        .child_path(&["devices", "device-list"])
        .unwrap()
        .children_by_tag("device")
        .find(|d| d.attr_str("id").unwrap() == info.device.to_string())
        .and_then(|d| d.opt_attr_str("key-index"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(list_details.valid_indexes, vec![0, key_index]);
    assert!(friend.child_path(&["devices", "key-index-list"]).is_none(), "no companions, no list");

    // Modes and contexts clients use are answered; a query without one is not.
    for (m, ctx) in [("full", "background"), ("query", "interactive"), ("delta", "voip")] {
        let r = c.iq("usync", "get", &format!("{m}-{ctx}"), vec![query(m, ctx)]).await;
        assert_eq!(r.attr_str("type").unwrap(), "result", "{m}/{ctx}");
    }
    let r = c.iq("usync", "get", "bad", vec![query("query", "whenever")]).await;
    assert_eq!(r.child("error").unwrap().attr_str("code").unwrap(), "400");
}

/// `w:sync:app:state`: one empty `<collection name version>` per requested collection (the
/// emulator holds no app state), which whatsapp-rust needs before it reports `Connected`.
#[tokio::test]
async fn app_state_fetches_get_one_collection_each() {
    let emu = emulator().await;
    let mut rng = StdRng::seed_from_u64(13);
    let (creds, info) = pair_account(&emu, PN, &mut rng).await;
    let (mut c, _) = login(&emu, PN, &creds, info.device, &mut rng).await;
    let names = ["critical_block", "critical_unblock_low", "regular_high"];
    let sync = Node::new("sync").children(
        names.iter().map(|n| Node::new("collection").attr("name", *n).attr("return_snapshot", "true")),
    );
    let r = c.iq("w:sync:app:state", "set", "a1", vec![sync]).await;
    assert_eq!(r.attr_str("type").unwrap(), "result");
    let got: Vec<(String, String)> = r
        .child("sync")
        .unwrap()
        .children_by_tag("collection")
        .map(|c| (c.attr_str("name").unwrap().into_owned(), c.attr_str("version").unwrap().into_owned()))
        .collect();
    assert_eq!(got, names.iter().map(|n| (n.to_string(), "0".to_owned())).collect::<Vec<_>>());
}

/// The version floor (`EmulatorConfig::min_client_version`, default the version wa-noise
/// ships): an older `userAgent.appVersion` gets `<failure reason="405">` at registration and at
/// login, as WhatsApp answers retired versions; the floor's own version pairs and logs in.
#[tokio::test]
async fn an_outdated_version_is_refused_with_405_at_registration_and_login() {
    let emu = emulator().await;
    let floor = emu.min_client_version();
    assert_eq!(floor, wa_noise::payload::DEFAULT_APP_VERSION);
    let stale = ClientProfile { app_version: [floor[0], floor[1], floor[2] - 1], ..Default::default() };
    let mut rng = StdRng::seed_from_u64(11);
    let mut events = emu.subscribe();

    // Registration with a stale version: no pair-device, a 405 and the socket closes.
    let identity = LocalIdentity::generate(&mut rng);
    let signed = SignedPreKeyRecord::generate(&identity.key_pair, 1, &mut rng);
    let keys = RegistrationKeys {
        registration_id: identity.registration_id,
        identity_key: identity.public_key(),
        signed_pre_key_id: 1,
        signed_pre_key: signed.key_pair.public,
        signed_pre_key_signature: signed.signature,
    };
    let props = device_props("rust", [0, 1, 0], wa_proto::device_props::PlatformType::Chrome, false);
    let noise = KeyPair::generate(&mut rng);
    let mut c = Client::connect(&emu, &noise, &stale.registration(&keys, &props), &mut rng).await;
    let f = c.recv().await.unwrap();
    assert_eq!((f.tag.as_str(), f.attr_str("reason").unwrap().as_ref()), ("failure", "405"));
    assert!(c.recv().await.is_none(), "the server closes after the failure");
    let refused = tokio::time::timeout(T, async {
        loop {
            if let Ok(wa_emulator::WorldEvent::PayloadRefused { registration, reason, rule, .. }) =
                events.recv().await
            {
                return (registration, reason, rule);
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(refused, (true, 405, "min_client_version".to_owned()));

    // The current version pairs; logging in with a stale one is refused, the current one works.
    let (creds, device) = pair(&emu, &mut rng).await;
    let mut c =
        Client::connect(&emu, &creds.noise, &stale.login(PN.parse().unwrap(), device), &mut rng).await;
    let f = c.recv().await.unwrap();
    assert_eq!((f.tag.as_str(), f.attr_str("reason").unwrap().as_ref()), ("failure", "405"));
    let current = ClientProfile::default().login(PN.parse().unwrap(), device);
    let mut c = Client::connect(&emu, &creds.noise, &current, &mut rng).await;
    assert_eq!(c.recv().await.unwrap().tag, "success");

    // WhatsApp retires the version: the next login with it gets 405.
    emu.set_min_client_version([floor[0], floor[1], floor[2] + 1]);
    let mut c = Client::connect(&emu, &creds.noise, &current, &mut rng).await;
    let f = c.recv().await.unwrap();
    assert_eq!((f.tag.as_str(), f.attr_str("reason").unwrap().as_ref()), ("failure", "405"));
}

/// `GET /sw.js`: WhatsApp Web's service worker, in the live file's shape (JSON inside a JS
/// string literal), naming the floor as `client_revision`, the version clients fetch; it
/// follows `set_min_client_version`.
#[tokio::test]
async fn sw_js_names_the_floor_as_the_current_version() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn get(emu: &EmulatorHandle) -> String {
        let url = emu.sw_js_url();
        assert_eq!(url, format!("http://{}/sw.js", emu.local_addr()));
        let mut s = TcpStream::connect(emu.local_addr()).await.unwrap();
        s.write_all(b"GET /sw.js HTTP/1.1\r\nHost: web.whatsapp.com\r\nsec-fetch-site: none\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut resp = String::new();
        tokio::time::timeout(T, s.read_to_string(&mut resp)).await.unwrap().unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.to_ascii_lowercase().contains("content-type: text/javascript"), "{resp}");
        resp
    }
    let emu = emulator().await;
    let [_, _, r] = emu.min_client_version();
    let body = get(&emu).await;
    assert!(body.contains(r#"self.__swData=JSON.parse("{\"SiteData\":"#), "{body}");
    assert!(body.contains(&format!(r#"\"client_revision\":{r}}}"#)), "{body}");
    emu.set_min_client_version([2, 3000, r + 9]);
    assert!(get(&emu).await.contains(&format!(r#"\"client_revision\":{}}}"#, r + 9)));
}

/// A companion's prekey bundle carries `<device-identity>`: the ADV identity it signed at pairing,
/// without the account key (README rule "companion bundles carry device-identity").
#[tokio::test]
async fn companion_key_bundle_carries_its_device_identity() {
    let emu = emulator().await;
    let mut rng = StdRng::seed_from_u64(21);
    let (creds, device) = pair(&emu, &mut rng).await;
    let payload = ClientProfile::default().login(PN.parse().unwrap(), device);
    let mut c = Client::connect(&emu, &creds.noise, &payload, &mut rng).await;
    assert_eq!(c.recv().await.unwrap().tag, "success");

    let fetch = |jid: String| vec![Node::new("key").children([Node::new("user").attr("jid", jid)])];
    let primary = c.iq("encrypt", "get", "1", fetch(format!("{PN}@s.whatsapp.net"))).await;
    let primary = primary.child_path(&["list", "user"]).unwrap();
    assert!(primary.child("device-identity").is_none(), "the primary has no ADV identity");
    let account_key =
        wa_crypto::PublicKey::from_bytes(primary.child("identity").unwrap().content_bytes().unwrap())
            .unwrap();

    let bundle = c.iq("encrypt", "get", "2", fetch(format!("{PN}:{device}@s.whatsapp.net"))).await;
    let user = bundle.child_path(&["list", "user"]).unwrap();
    let identity =
        wa_crypto::PublicKey::from_bytes(user.child("identity").unwrap().content_bytes().unwrap()).unwrap();
    assert_eq!(identity, creds.identity.public_key());
    let adv = wa_proto::AdvSignedDeviceIdentity::decode(
        user.child("device-identity")
            .expect("<device-identity> in a companion's bundle")
            .content_bytes()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(adv.account_signature_key, None, "the fetcher already holds the account key");
    let details = adv.details.unwrap();
    let mut msg = vec![6u8, 0];
    msg.extend_from_slice(&details);
    msg.extend_from_slice(identity.as_bytes());
    let sig: [u8; 64] = adv.account_signature.as_deref().unwrap().try_into().unwrap();
    assert!(account_key.verify(&msg, &sig), "account signature binds the fetched identity");
    let mut msg = vec![6u8, 1];
    msg.extend_from_slice(&details);
    msg.extend_from_slice(identity.as_bytes());
    msg.extend_from_slice(account_key.as_bytes());
    let sig: [u8; 64] = adv.device_signature.as_deref().unwrap().try_into().unwrap();
    assert!(identity.verify(&msg, &sig), "device signature by the fetched identity");
}

/// `/control/phones/{pn}/reachout`: the reach-out model is configurable over HTTP (limits,
/// restricted mode, a time-lock) and reports its state.
#[tokio::test]
async fn reachout_model_is_configured_through_the_control_api() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn call(emu: &EmulatorHandle, method: &str, body: &str) -> serde_json::Value {
        let mut s = TcpStream::connect(emu.local_addr()).await.unwrap();
        let req = format!(
            "{method} /control/phones/{PN}/reachout HTTP/1.1\r\nHost: emu\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut resp = String::new();
        tokio::time::timeout(T, s.read_to_string(&mut resp)).await.unwrap().unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    }
    let emu = emulator().await;
    let state = call(&emu, "GET", "").await;
    assert_eq!(state["limits"], serde_json::json!({"new_contacts": 10000, "window_secs": 86400}));
    assert_eq!(
        (state["restricted"].clone(), state["timelock"].clone()),
        (false.into(), serde_json::Value::Null)
    );
    let until = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    let body = serde_json::json!({
        "limits": {"new_contacts": 5, "window_secs": 3600},
        "restricted": true,
        "timelock": {"until": until, "enforcement_type": "RESTRICT_ALL_COMPANIONS"},
    });
    let state = call(&emu, "POST", &body.to_string()).await;
    assert_eq!(state["limits"]["new_contacts"], 5);
    assert_eq!(state["restricted"], true);
    assert_eq!(
        state["timelock"],
        serde_json::json!({"until": until, "enforcement_type": "RESTRICT_ALL_COMPANIONS"})
    );
    let state = call(&emu, "POST", r#"{"lift_timelock": true, "restricted": false}"#).await;
    assert_eq!(
        (state["restricted"].clone(), state["timelock"].clone()),
        (false.into(), serde_json::Value::Null)
    );
}

/// `/control/phones/{pn}/app-state/action`: the phone makes a real app-state change (a
/// patch under its key) over HTTP; an unknown action is a 400.
#[tokio::test]
async fn app_state_actions_are_made_through_the_control_api() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn post(emu: &EmulatorHandle, body: &str) -> (String, serde_json::Value) {
        let mut s = TcpStream::connect(emu.local_addr()).await.unwrap();
        let req = format!(
            "POST /control/phones/{PN}/app-state/action HTTP/1.1\r\nHost: emu\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut resp = String::new();
        tokio::time::timeout(T, s.read_to_string(&mut resp)).await.unwrap().unwrap();
        let status = resp.split("\r\n").next().unwrap().to_owned();
        (status, serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap()).unwrap())
    }
    let emu = emulator().await;
    let chat = "15550002222@s.whatsapp.net";
    let (status, r) =
        post(&emu, &format!(r#"{{"action": "archive", "chat": "{chat}", "value": true}}"#)).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(r, serde_json::json!({"collection": "regular_low", "version": 1}));
    let (_, r) = post(&emu, &format!(r#"{{"action": "contact", "chat": "{chat}", "name": "Ana"}}"#)).await;
    assert_eq!(r, serde_json::json!({"collection": "critical_unblock_low", "version": 1}));
    let archived = emu.with_world(|w| {
        let a = w.account_by_pn(PN).unwrap();
        w.app_state_value(a, &["archive", chat]).and_then(|v| v.archive_chat_action).and_then(|a| a.archived)
    });
    assert_eq!(archived, Some(true));
    let (status, _) = post(&emu, &format!(r#"{{"action": "explode", "chat": "{chat}"}}"#)).await;
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");
}
