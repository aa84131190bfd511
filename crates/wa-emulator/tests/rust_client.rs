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

/// Registers, pairs by QR, answers pair-success; returns the creds and device id.
async fn pair(emu: &EmulatorHandle, rng: &mut StdRng) -> (Creds, u32) {
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
    emu.phone(PN).unwrap().scan(&qr).unwrap();
    let ps = c.recv().await.unwrap();
    let success = ps.child("pair-success").expect("pair-success");
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
    (creds, u32::from(device_jid.device()))
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
    let lid = success.attr_jid("lid").unwrap();
    assert_eq!(lid, emu.phone(PN).unwrap().lid());

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
    // pairing queued), the queue, then the end-of-queue marker.
    let routing = c.recv().await.unwrap();
    assert!(routing.child_path(&["edge_routing", "routing_info"]).is_some(), "{routing:?}");
    let preview = c.recv().await.unwrap();
    let preview = preview.child("offline_preview").unwrap();
    assert_eq!(preview.attr_str("count").unwrap(), "1");
    assert_eq!(preview.attr_str("notification").unwrap(), "1");
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
    let offline = c.recv().await.unwrap();
    assert_eq!(offline.tag, "ib");
    assert_eq!(offline.child("offline").unwrap().attr_str("count").unwrap(), "1");
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
