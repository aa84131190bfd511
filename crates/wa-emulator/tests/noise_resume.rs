//! Logging in the way WA Web and whatsapp-rust 0.7 do after a restart: a raw client (our
//! wa-noise initiators, no wa-client) pairs by XX, caches the server's static key, then
//! logs in by Noise IK, and by XXfallback when its cached key is wrong. Also: the server
//! key depends on the seed alone, so it survives an emulator restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
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
use wa_crypto::{KeyPair, PublicKey};
use wa_emulator::{Emulator, EmulatorConfig, EmulatorHandle, ManualClock, WorldEvent};
use wa_noise::payload::device_props;
use wa_noise::{
    CertVerifier, ClientProfile, ConnectionHeader, FrameDecoder, IkInitiator, IkServerHello, Initiator,
    InitiatorConfig, RegistrationKeys, Transport,
};
use wa_signal::{LocalIdentity, SignedPreKeyRecord};

const PN: &str = "15551234567";
/// Each wait: generous, for CI's two loaded cores.
const T: Duration = Duration::from_secs(60);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn config(emu: &EmulatorHandle, noise: &KeyPair) -> InitiatorConfig {
    InitiatorConfig {
        header: ConnectionHeader::new(),
        static_key: noise.clone(),
        verifier: CertVerifier::new(emu.root_public_key()),
    }
}

async fn open(emu: &EmulatorHandle) -> Ws {
    let mut req = emu.ws_url().into_client_request().unwrap();
    req.headers_mut().insert("Origin", "https://web.whatsapp.com".parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

async fn next_frame(ws: &mut Ws, frames: &mut FrameDecoder) -> Option<bytes::BytesMut> {
    loop {
        if let Some(f) = frames.next_frame().unwrap() {
            return Some(f);
        }
        match tokio::time::timeout(T, ws.next()).await.expect("timed out waiting for a frame") {
            Some(Ok(WsMessage::Binary(b))) => frames.push(&b),
            Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// How a connection's handshake went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    Xx,
    Ik,
    Fallback,
}

struct Client {
    ws: Ws,
    frames: FrameDecoder,
    transport: Transport,
    /// The server static key the handshake proved (`None` after IK: it was the cached one).
    server_static: Option<PublicKey>,
    way: Way,
}

impl Client {
    /// XX, as whatsmeow, Baileys and our wa-client connect.
    async fn xx(emu: &EmulatorHandle, noise: &KeyPair, payload: &[u8], at: u64, rng: &mut StdRng) -> Client {
        let mut ws = open(emu).await;
        let mut out = Vec::new();
        let hs =
            Initiator::new(config(emu, noise), KeyPair::generate(rng)).write_client_hello(&mut out).unwrap();
        ws.send(WsMessage::Binary(out.into())).await.unwrap();
        let mut frames = FrameDecoder::client();
        let hello = next_frame(&mut ws, &mut frames).await.expect("a ServerHello");
        let hs = hs.read_server_hello(&hello, at).expect("the emulator's chain verifies");
        let server_static = Some(*hs.server_static());
        let mut out = Vec::new();
        let transport = hs.write_client_finish(payload, &mut out).unwrap();
        ws.send(WsMessage::Binary(out.into())).await.unwrap();
        Client { ws, frames, transport, server_static, way: Way::Xx }
    }

    /// IK with `cached` as the server's key, finishing by XXfallback if the server says so.
    async fn ik(
        emu: &EmulatorHandle,
        noise: &KeyPair,
        cached: PublicKey,
        payload: &[u8],
        at: u64,
        rng: &mut StdRng,
    ) -> Client {
        let mut ws = open(emu).await;
        let mut out = Vec::new();
        let hs = IkInitiator::new(config(emu, noise), cached, KeyPair::generate(rng))
            .write_client_hello(payload, &mut out)
            .unwrap();
        ws.send(WsMessage::Binary(out.into())).await.unwrap();
        let mut frames = FrameDecoder::client();
        let hello = next_frame(&mut ws, &mut frames).await.expect("a ServerHello");
        match hs.read_server_hello(&hello, at).expect("the server's answer authenticates") {
            IkServerHello::Resumed(r) => {
                Client { ws, frames, transport: r.transport, server_static: None, way: Way::Ik }
            }
            IkServerHello::Fallback(hs) => {
                let server_static = Some(*hs.server_static());
                let mut out = Vec::new();
                let transport = hs.write_client_finish(payload, &mut out).unwrap();
                ws.send(WsMessage::Binary(out.into())).await.unwrap();
                Client { ws, frames, transport, server_static, way: Way::Fallback }
            }
        }
    }

    async fn recv(&mut self) -> Option<Node> {
        let f = next_frame(&mut self.ws, &mut self.frames).await?;
        let plain = self.transport.decrypt_frame(f).unwrap();
        Some(decode_frame(&plain).unwrap())
    }

    async fn send(&mut self, node: &Node) {
        let mut out = Vec::new();
        self.transport.encrypt_frame(&encode(node).unwrap(), &mut out).unwrap();
        self.ws.send(WsMessage::Binary(out.into())).await.unwrap();
    }

    async fn ping(&mut self, id: &str) {
        let iq = Node::new("iq")
            .attr("id", id)
            .attr("xmlns", "w:p")
            .attr("type", "get")
            .attr("to", "s.whatsapp.net")
            .children([Node::new("ping")]);
        self.send(&iq).await;
        loop {
            let n = self.recv().await.expect("connection closed");
            if n.tag == "iq" && n.opt_attr_str("id").as_deref() == Some(id) {
                assert_eq!(n.attr_str("type").unwrap(), "result");
                return;
            }
        }
    }
}

struct Creds {
    noise: KeyPair,
    device: u32,
    /// The server static key from the pairing connection's XX handshake.
    server_static: PublicKey,
}

/// Registers by XX, pairs by QR through the simulated phone, signs the device identity,
/// and sees the 515.
async fn pair(emu: &EmulatorHandle, rng: &mut StdRng) -> Creds {
    let noise = KeyPair::generate(rng);
    let identity = LocalIdentity::generate(rng);
    let signed = SignedPreKeyRecord::generate(&identity.key_pair, 1, rng);
    let adv_secret = [7u8; 32];
    let keys = RegistrationKeys {
        registration_id: identity.registration_id,
        identity_key: identity.public_key(),
        signed_pre_key_id: 1,
        signed_pre_key: signed.key_pair.public,
        signed_pre_key_signature: signed.signature,
    };
    let props = device_props("rust", [0, 1, 0], wa_proto::device_props::PlatformType::Chrome, false);
    let payload = ClientProfile::default().registration(&keys, &props).encode_to_vec();
    let mut c = Client::xx(emu, &noise, &payload, now(), rng).await;

    let pd = c.recv().await.unwrap();
    let first_ref = pd.child("pair-device").unwrap().children_by_tag("ref").next().unwrap();
    let first_ref = String::from_utf8(first_ref.content_bytes().unwrap().to_vec()).unwrap();
    let ack = Node::new("iq").attr("to", "s.whatsapp.net").attr("id", pd.attr_str("id").unwrap().as_ref());
    c.send(&ack.attr("type", "result")).await;
    let qr = format!(
        "https://wa.me/settings/linked_devices#{first_ref},{},{},{},1",
        B64.encode(noise.public.as_bytes()),
        B64.encode(identity.public_key().as_bytes()),
        B64.encode(adv_secret)
    );
    emu.phone(PN).unwrap().scan(&qr).unwrap();

    let ps = c.recv().await.unwrap();
    let success = ps.child("pair-success").expect("pair-success");
    let container = wa_proto::AdvSignedDeviceIdentityHmac::decode(
        success.child("device-identity").unwrap().content_bytes().unwrap(),
    )
    .unwrap();
    let mut signed_identity =
        wa_proto::AdvSignedDeviceIdentity::decode(container.details.unwrap().as_slice()).unwrap();
    let account_key = signed_identity.account_signature_key.take().unwrap();
    let inner = signed_identity.details.clone().unwrap();
    let key_index = wa_proto::AdvDeviceIdentity::decode(inner.as_slice()).unwrap().key_index.unwrap_or(0);
    let msg = [&[6u8, 1][..], &inner, identity.public_key().as_bytes(), &account_key].concat();
    signed_identity.device_signature = Some(identity.key_pair.private.sign(&msg).to_vec());
    let device = success.child("device").unwrap().attr_jid("jid").unwrap().device();
    let reply = Node::new("iq")
        .attr("to", "s.whatsapp.net")
        .attr("id", ps.attr_str("id").unwrap().as_ref())
        .attr("type", "result")
        .children([Node::new("pair-device-sign").children([Node::new("device-identity")
            .attr("key-index", key_index)
            .bytes(signed_identity.encode_to_vec())])]);
    c.send(&reply).await;
    let err = c.recv().await.unwrap();
    assert_eq!((err.tag.as_str(), err.attr_str("code").unwrap().as_ref()), ("stream:error", "515"));
    Creds { noise, device: u32::from(device), server_static: c.server_static.unwrap() }
}

fn login_payload(device: u32) -> Vec<u8> {
    ClientProfile::default().login(PN.parse().unwrap(), device).encode_to_vec()
}

async fn expect_logged_in(emu: &EmulatorHandle, c: &mut Client, device: u32, id: &str) {
    let success = c.recv().await.expect("an answer to the login");
    assert_eq!(success.tag, "success", "{success:?}");
    assert_eq!(success.attr_jid("lid").unwrap(), emu.phone(PN).unwrap().lid());
    c.ping(id).await;
    let conn = emu.connection_of(PN, u16::try_from(device).unwrap()).expect("online");
    let logged_in = emu
        .wait_for(T, |e| {
            matches!(e, WorldEvent::LoggedIn { pn, device: d, conn: c }
                if pn == PN && u32::from(*d) == device && *c == conn)
        })
        .await;
    assert!(logged_in.is_some(), "the world saw this connection log in");
}

#[tokio::test]
async fn pair_by_xx_then_log_in_by_ik_and_by_xxfallback() {
    let emu = Emulator::start(EmulatorConfig { seed: Some(31), ..Default::default() }).await.unwrap();
    emu.create_account(PN, "Me").unwrap();
    let mut rng = StdRng::seed_from_u64(32);
    let creds = pair(&emu, &mut rng).await;
    let payload = login_payload(creds.device);

    // IK with the key cached from the pairing connection: one round trip, no ClientFinish.
    let mut c = Client::ik(&emu, &creds.noise, creds.server_static, &payload, now(), &mut rng).await;
    assert_eq!(c.way, Way::Ik);
    expect_logged_in(&emu, &mut c, creds.device, "ik-1").await;
    drop(c);

    // IK with a wrong cached key: the server answers XXfallback, the client finishes it
    // and learns the right key.
    let wrong = KeyPair::generate(&mut rng).public;
    let mut c = Client::ik(&emu, &creds.noise, wrong, &payload, now(), &mut rng).await;
    assert_eq!(c.way, Way::Fallback);
    assert_eq!(c.server_static, Some(creds.server_static));
    expect_logged_in(&emu, &mut c, creds.device, "fb-1").await;
    drop(c);

    // IK accepted at the Noise level with a noise key the account does not know: the
    // login is refused exactly as over XX.
    let stranger = KeyPair::generate(&mut rng);
    let mut c = Client::ik(&emu, &stranger, creds.server_static, &payload, now(), &mut rng).await;
    assert_eq!(c.way, Way::Ik);
    let f = c.recv().await.unwrap();
    assert_eq!((f.tag.as_str(), f.attr_str("reason").unwrap().as_ref()), ("failure", "401"));
    let mut c = Client::xx(&emu, &stranger, &payload, now(), &mut rng).await;
    let f = c.recv().await.unwrap();
    assert_eq!((f.tag.as_str(), f.attr_str("reason").unwrap().as_ref()), ("failure", "401"));
}

#[tokio::test]
async fn server_key_depends_on_the_seed_alone() {
    let mut rng = StdRng::seed_from_u64(33);
    let noise = KeyPair::generate(&mut rng);
    let payload = login_payload(1);

    let first = Emulator::start(EmulatorConfig { seed: Some(34), ..Default::default() }).await.unwrap();
    let c = Client::xx(&first, &noise, &payload, now(), &mut rng).await;
    let cached = c.server_static.unwrap();
    drop(c);
    first.shutdown().await;

    // A restart with the same seed and every other setting changed, the clock included:
    // the cached key still resumes.
    let past = 1_700_000_000;
    let restarted = Emulator::start(EmulatorConfig {
        seed: Some(34),
        clock: Arc::new(ManualClock::new(past)),
        refs_per_pairing: 2,
        phone_pre_keys: 3,
        require_origin: false,
        lid_in_usync: false,
        media_tls: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = Client::ik(&restarted, &noise, cached, &payload, past, &mut rng).await;
    assert_eq!(c.way, Way::Ik, "same seed, same server key");
    drop(c);
    let c = Client::xx(&restarted, &noise, &payload, past, &mut rng).await;
    assert_eq!(c.server_static, Some(cached));
    drop(c);
    restarted.shutdown().await;

    // Another seed is another server: the cached key gets XXfallback.
    let other = Emulator::start(EmulatorConfig { seed: Some(35), ..Default::default() }).await.unwrap();
    let c = Client::ik(&other, &noise, cached, &payload, now(), &mut rng).await;
    assert_eq!(c.way, Way::Fallback);
    assert_ne!(c.server_static, Some(cached));
}
