//! 1,000 concurrent paired, logged-in, idle connections on one emulator process (the
//! `wa-emulator` binary), each paired for real (registration, QR scan through the control
//! API, pair-device-sign, 515, login) by our wa-noise client. Reports the emulator's
//! resident memory before and after. Part of the normal suite: about 20 s on two shared,
//! loaded cores (most of it creating 1,000 phones with 200 prekeys each).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wa_binary::{Node, decode_frame, encode};
use wa_crypto::{KeyPair, PublicKey};
use wa_noise::payload::device_props;
use wa_noise::{
    CertVerifier, ClientProfile, ConnectionHeader, FrameDecoder, Initiator, InitiatorConfig,
    RegistrationKeys, Transport,
};
use wa_signal::{LocalIdentity, SignedPreKeyRecord};

const N: usize = 1000;
/// Each wait for a frame: generous, for CI's two loaded cores.
const T: Duration = Duration::from_secs(60);

struct Conn {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    frames: FrameDecoder,
    transport: Transport,
}

async fn connect(
    url: &str,
    root: PublicKey,
    noise: &KeyPair,
    payload: &wa_proto::ClientPayload,
    rng: &mut StdRng,
) -> Conn {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("Origin", "https://web.whatsapp.com".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let config = InitiatorConfig {
        header: ConnectionHeader::new(),
        static_key: KeyPair::from_private(wa_crypto::PrivateKey::from_bytes(*noise.private.as_bytes())),
        verifier: CertVerifier::new(root),
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
    let hs = hs.read_server_hello(&hello, now).unwrap();
    let mut out = Vec::new();
    let transport = hs.write_client_finish(&payload.encode_to_vec(), &mut out).unwrap();
    ws.send(WsMessage::Binary(out.into())).await.unwrap();
    Conn { ws, frames, transport }
}

impl Conn {
    async fn recv(&mut self) -> Option<Node> {
        loop {
            if let Some(f) = self.frames.next_frame().unwrap() {
                return Some(decode_frame(&self.transport.decrypt_frame(f).unwrap()).unwrap());
            }
            match tokio::time::timeout(T, self.ws.next()).await.expect("timeout") {
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
}

/// A minimal HTTP/1.1 POST (the control API), returning the body.
async fn post(addr: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{path}: {resp}");
    resp.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned()
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

async fn pair_and_login(url: &str, addr: &str, root: PublicKey, pn: &str, seed: u64) -> Conn {
    let mut rng = StdRng::seed_from_u64(seed);
    let noise = KeyPair::generate(&mut rng);
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
    let mut c =
        connect(url, root, &noise, &ClientProfile::default().registration(&keys, &props), &mut rng).await;
    let pd = c.recv().await.unwrap();
    let r = pd.child("pair-device").unwrap().child("ref").unwrap().content_bytes().unwrap().to_vec();
    let adv = [3u8; 32];
    let qr = format!(
        "{},{},{},{},1",
        String::from_utf8(r).unwrap(),
        B64.encode(noise.public.as_bytes()),
        B64.encode(identity.public_key().as_bytes()),
        B64.encode(adv)
    );
    post(addr, &format!("/control/phones/{pn}/scan"), &serde_json::json!({ "qr": qr }).to_string()).await;
    let ps = c.recv().await.unwrap();
    let container = wa_proto::AdvSignedDeviceIdentityHmac::decode(
        ps.child("pair-success").unwrap().child("device-identity").unwrap().content_bytes().unwrap(),
    )
    .unwrap();
    let mut signed_id =
        wa_proto::AdvSignedDeviceIdentity::decode(container.details.unwrap().as_slice()).unwrap();
    let inner = signed_id.details.clone().unwrap();
    let account_key = signed_id.account_signature_key.clone().unwrap();
    let mut msg = vec![6u8, 1];
    msg.extend_from_slice(&inner);
    msg.extend_from_slice(identity.public_key().as_bytes());
    msg.extend_from_slice(&account_key);
    signed_id.device_signature = Some(identity.key_pair.private.sign(&msg).to_vec());
    signed_id.account_signature_key = None;
    let device = ps.child("pair-success").unwrap().child("device").unwrap().attr_jid("jid").unwrap().device();
    c.send(
        &Node::new("iq")
            .attr("to", "s.whatsapp.net")
            .attr("id", ps.attr_str("id").unwrap().as_ref())
            .attr("type", "result")
            .children([Node::new("pair-device-sign")
                .children([Node::new("device-identity").bytes(signed_id.encode_to_vec())])]),
    )
    .await;
    assert_eq!(c.recv().await.unwrap().tag, "stream:error");
    let login = ClientProfile::default().login(pn.parse().unwrap(), u32::from(device));
    let mut c = connect(url, root, &noise, &login, &mut rng).await;
    assert_eq!(c.recv().await.unwrap().tag, "success");
    c.send(
        &Node::new("iq")
            .attr("id", "a")
            .attr("xmlns", "passive")
            .attr("type", "set")
            .attr("to", "s.whatsapp.net")
            .children([Node::new("active")]),
    )
    .await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_paired_idle_connections() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wa-emulator"))
        .args(["--listen", "127.0.0.1:0", "--seed", "3", "--plain-media"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut info = std::collections::HashMap::new();
    while info.len() < 3 {
        let l = lines.next_line().await.unwrap().unwrap();
        if let Some((k, v)) = l.split_once('=') {
            info.insert(k.to_owned(), v.to_owned());
        }
    }
    let url = info["ws_url"].clone();
    let addr = url.trim_start_matches("ws://").trim_end_matches("/ws/chat").to_owned();
    let root = PublicKey::from_bytes(&hex::decode(&info["root_public_key"]).unwrap()).unwrap();
    for i in 0..N {
        post(&addr, "/control/accounts", &format!("{{\"pn\":\"1555{i:07}\"}}")).await;
    }
    let before = rss_kib(pid, "VmRSS:");
    let start = std::time::Instant::now();
    let mut conns = Vec::with_capacity(N);
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in 0..N / 50 {
        for i in chunk * 50..(chunk + 1) * 50 {
            let (url, addr) = (url.clone(), addr.clone());
            tasks.spawn(
                async move { pair_and_login(&url, &addr, root, &format!("1555{i:07}"), i as u64).await },
            );
        }
        while let Some(c) = tasks.join_next().await {
            conns.push(c.unwrap());
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(conns.len(), N);
    // Every connection is alive: each gets its `<ib><offline/>` after <active/> (behind the
    // edge routing, the preview and the device-list notification its pairing queued).
    for c in &mut conns {
        let mut got = false;
        while let Some(n) = c.recv().await {
            if n.child("offline").is_some() {
                got = true;
                break;
            }
        }
        assert!(got);
    }
    let after = rss_kib(pid, "VmRSS:");
    let hwm = rss_kib(pid, "VmHWM:");
    let per_conn = (after.saturating_sub(before)) as f64 / N as f64;
    println!(
        "wa-emulator scale: {N} paired idle connections (1,000 accounts with 200 phone prekeys each, pre-created); \
         RSS before {before} KiB, after {after} KiB, peak {hwm} KiB, {per_conn:.1} KiB per connection; \
         {N} pairings + logins in {:.1} s",
        elapsed.as_secs_f64()
    );
    assert!(per_conn < 64.0, "more than 64 KiB per idle connection");
    drop(conns);
    let _ = child.kill().await;
}
