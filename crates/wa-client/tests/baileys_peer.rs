//! Our `Client` and unmodified Baileys 7.0.0-rc14 (tests/interop/baileys/baileys-peer.mjs)
//! as companion devices of two different emulator accounts, each linked by its account's
//! simulated phone scanning the QR. They exchange, in both directions, text, a quoted reply,
//! a reaction, an edit, a revoke and every media type (bytes checked after each side's own
//! download), first 1:1 and then in a group holding both accounts. Every assertion is on
//! what the receiving app surfaces: Baileys' `messages.upsert` or our typed event stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../wa-emulator/tests/common/mod.rs"]
mod peer;

use std::time::Instant;

use base64::Engine as _;
use common::{emulator, next_matching, pair, sqlite_client};
use peer::{Peer, TempDir, pair_by_qr};
use serde_json::{Value, json};
use wa_client::{Client, Event, EventStream, Jid, MediaOptions, MediaType, MessageEvent};
use wa_proto::message::protocol_message::Type as ProtocolType;

const BAILEYS_PN: &str = "15550009101";
const CLIENT_PN: &str = "15550009102";

/// Deterministic, non-repeating test content of `len` bytes.
fn content(tag: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[tag as usize % 4] ^ tag).collect()
}

fn b64(data: &[u8]) -> Value {
    json!({ "b64": base64::engine::general_purpose::STANDARD.encode(data) })
}

/// Both apps linked to their accounts; Baileys is ready to send to `CLIENT_PN` and back.
struct Pair {
    emu: wa_emulator::EmulatorHandle,
    peer: Peer,
    client: Client,
    events: EventStream,
    client_jid: Jid,
    _auth: TempDir,
    _db: tempfile::TempDir,
}

async fn link_both(seed: u64) -> Pair {
    let emu = emulator(seed).await;
    emu.create_account(BAILEYS_PN, "Baileys").unwrap();
    emu.create_account(CLIENT_PN, "Rust").unwrap();
    let auth = TempDir::new("client-peer");
    let t = Instant::now();
    let peer = pair_by_qr(&emu, BAILEYS_PN, &auth.0).await;
    let db = tempfile::tempdir().unwrap();
    let client = sqlite_client(&emu, &db.path().join("wa.db"), seed).await;
    let mut events = client.events();
    let client_jid = pair(&emu, &client, &mut events, CLIENT_PN).await;
    eprintln!("both linked in {:?}", t.elapsed());
    Pair { emu, peer, client, events, client_jid, _auth: auth, _db: db }
}

async fn client_gets(events: &mut EventStream, id: &str) -> MessageEvent {
    let m = next_matching(events, &format!("message {id}"), |e| match e {
        Event::Message(m) if m.info.id == id => Some(m.clone()),
        _ => None,
    })
    .await;
    (*m).clone()
}

/// The whole exchange in one chat. `to_client` is the chat as Baileys addresses it, `to_peer`
/// as our client does (the same group JID in a group).
async fn exchange(p: &mut Pair, to_client: &str, to_peer: &Jid, group: Option<&Jid>) {
    let started = Instant::now();
    let peer = &mut p.peer;
    let client = &p.client;
    let events = &mut p.events;
    let client_pn = p.client_jid.to_non_ad().to_string();
    let client_lid = client.lid().expect("our LID").to_non_ad().to_string();
    let peer_pn = format!("{BAILEYS_PN}@s.whatsapp.net");
    let peer_lid = p.emu.phone(BAILEYS_PN).unwrap().lid().to_string();
    // Where Baileys says a message from us came from, and which sender we see on Baileys'.
    // Both accounts are LID-migrated: 1:1 chats are LIDs with the number beside them.
    let check_from_client = |v: &Value| {
        match group {
            Some(g) => {
                assert_eq!(v["from"], g.to_string().as_str(), "{v}");
                assert_eq!(v["participant"], client_pn.as_str(), "{v}");
            }
            None => {
                assert_eq!(v["from"], client_lid.as_str(), "{v}");
                assert_eq!(v["fromAlt"], client_pn.as_str(), "{v}");
            }
        }
        assert_eq!(v["fromMe"], false, "{v}");
    };
    let check_from_peer = |m: &MessageEvent| {
        assert_eq!(m.info.is_group, group.is_some());
        assert!(!m.info.from_me);
        let sender_pn = m.info.sender_pn.as_ref().map(|j| j.to_non_ad().to_string());
        assert_eq!(sender_pn.as_deref(), Some(peer_pn.as_str()), "{:?}", m.info);
        let sender_lid = m.info.sender_lid.as_ref().map(|j| j.to_non_ad().to_string());
        assert_eq!(sender_lid.as_deref(), Some(peer_lid.as_str()), "{:?}", m.info);
        if group.is_some() {
            assert_eq!(m.info.chat, *to_peer);
            assert_eq!(m.info.sender.to_non_ad().to_string(), peer_pn);
        } else {
            assert_eq!(m.info.chat.to_string(), peer_lid, "{:?}", m.info);
            assert_eq!(m.info.chat_pn.as_ref(), Some(to_peer), "{:?}", m.info);
            assert_eq!(m.info.chat_lid.as_ref().map(ToString::to_string).as_deref(), Some(peer_lid.as_str()));
        }
    };

    // Text, both ways.
    let t = Instant::now();
    let ours = client.send_text(to_peer, "hello from rust").await.unwrap();
    let v = peer.expect_message(&ours.id).await;
    check_from_client(&v);
    assert_eq!(v["text"], "hello from rust");
    let theirs = peer.send_message(to_client, json!({"text": "hello from baileys"}), None).await;
    let m = client_gets(events, &theirs).await;
    check_from_peer(&m);
    assert_eq!(m.text(), Some("hello from baileys"));
    let theirs_text = m;
    eprintln!("text both ways: {:?}", t.elapsed());

    // Replies quoting the other side's message.
    let t = Instant::now();
    let reply = client.send_reply(&theirs_text.info, &theirs_text.message, "rust replies").await.unwrap();
    let v = peer.expect_message(&reply.id).await;
    check_from_client(&v);
    assert_eq!(v["text"], "rust replies");
    assert_eq!(v["quoted"], theirs.as_str(), "{v}");
    let theirs_reply = peer.send_message(to_client, json!({"text": "baileys replies"}), Some(&ours.id)).await;
    let m = client_gets(events, &theirs_reply).await;
    check_from_peer(&m);
    let ext = m.message.extended_text_message.as_ref().expect("a reply is an extended text");
    assert_eq!(ext.text.as_deref(), Some("baileys replies"));
    let ctx = ext.context_info.as_ref().expect("context info");
    assert_eq!(ctx.stanza_id.as_deref(), Some(ours.id.as_str()));
    let quoted = ctx.quoted_message.as_ref().expect("the quoted message travels along");
    assert_eq!(quoted.conversation.as_deref(), Some("hello from rust"));
    eprintln!("replies both ways: {:?}", t.elapsed());

    // Reactions to the other side's message.
    let t = Instant::now();
    let r = client.send_reaction(&theirs_text.info, "👍").await.unwrap();
    let v = peer.expect_message(&r.id).await;
    check_from_client(&v);
    assert_eq!(v["reaction"]["text"], "👍", "{v}");
    assert_eq!(v["reaction"]["key"]["id"], theirs.as_str(), "{v}");
    let id = peer.send_message(to_client, json!({"react": {"text": "🎉", "to": ours.id}}), None).await;
    let m = client_gets(events, &id).await;
    check_from_peer(&m);
    let reaction = m.message.reaction_message.as_ref().expect("a reaction");
    assert_eq!(reaction.text.as_deref(), Some("🎉"));
    assert_eq!(reaction.key.as_ref().and_then(|k| k.id.as_deref()), Some(ours.id.as_str()));
    eprintln!("reactions both ways: {:?}", t.elapsed());

    // Each side edits its own first text.
    let t = Instant::now();
    let e = client.edit_message(to_peer, &ours.id, "hello from rust (edited)").await.unwrap();
    let v = peer.expect_message(&e.id).await;
    check_from_client(&v);
    assert_eq!(v["protocol"]["type"], ProtocolType::MessageEdit as i32, "{v}");
    assert_eq!(v["protocol"]["id"], ours.id.as_str(), "{v}");
    assert_eq!(v["protocol"]["text"], "hello from rust (edited)", "{v}");
    let id = peer
        .send_message(to_client, json!({"text": "hello from baileys (edited)", "edit": theirs}), None)
        .await;
    let m = client_gets(events, &id).await;
    check_from_peer(&m);
    let pm = protocol_message(&m.message).expect("an edit is a protocol message");
    assert_eq!(pm.r#type, Some(ProtocolType::MessageEdit as i32));
    assert_eq!(pm.key.as_ref().and_then(|k| k.id.as_deref()), Some(theirs.as_str()));
    let edited = pm.edited_message.as_ref().expect("the new content");
    let edited_text = edited
        .conversation
        .as_deref()
        .or_else(|| edited.extended_text_message.as_ref().and_then(|x| x.text.as_deref()));
    assert_eq!(edited_text, Some("hello from baileys (edited)"));
    eprintln!("edits both ways: {:?}", t.elapsed());

    // Each side revokes its own reply.
    let t = Instant::now();
    let d = client.revoke_message(to_peer, &reply.id).await.unwrap();
    let v = peer.expect_message(&d.id).await;
    check_from_client(&v);
    assert_eq!(v["protocol"]["type"], ProtocolType::Revoke as i32, "{v}");
    assert_eq!(v["protocol"]["id"], reply.id.as_str(), "{v}");
    let id = peer.send_message(to_client, json!({"delete": theirs_reply}), None).await;
    let m = client_gets(events, &id).await;
    check_from_peer(&m);
    let pm = protocol_message(&m.message).expect("a revoke is a protocol message");
    assert_eq!(pm.r#type, Some(ProtocolType::Revoke as i32));
    assert_eq!(pm.key.as_ref().and_then(|k| k.id.as_deref()), Some(theirs_reply.as_str()));
    eprintln!("revokes both ways: {:?}", t.elapsed());

    // Every media type, both ways; each side downloads with its own code.
    let cases: [(MediaType, MediaOptions, usize, Value, &str); 6] = [
        (
            MediaType::Image,
            MediaOptions::new("image/jpeg").caption("a photo"),
            20_000,
            json!({"image": null, "caption": "a photo", "mimetype": "image/jpeg"}),
            "imageMessage",
        ),
        (
            MediaType::Video,
            MediaOptions::new("video/mp4").caption("a clip").seconds(3),
            70_001,
            json!({"video": null, "caption": "a clip", "mimetype": "video/mp4", "seconds": 3}),
            "videoMessage",
        ),
        (
            MediaType::Audio,
            MediaOptions::new("audio/mpeg").seconds(5),
            9_999,
            json!({"audio": null, "mimetype": "audio/mpeg", "seconds": 5}),
            "audioMessage",
        ),
        (
            MediaType::Audio,
            MediaOptions::new("audio/ogg; codecs=opus").voice_note().seconds(2),
            4_096,
            json!({"audio": null, "mimetype": "audio/ogg; codecs=opus", "ptt": true, "seconds": 2}),
            "audioMessage",
        ),
        (
            MediaType::Document,
            MediaOptions::new("application/pdf").file_name("report.pdf"),
            1,
            json!({"document": null, "mimetype": "application/pdf", "fileName": "report.pdf"}),
            "documentMessage",
        ),
        (
            MediaType::Sticker,
            MediaOptions::new("image/webp"),
            3_333,
            json!({"sticker": null}),
            "stickerMessage",
        ),
    ];
    for (i, (kind, opts, len, mut theirs_content, js_kind)) in cases.into_iter().enumerate() {
        let t = Instant::now();
        let data = content(i as u8 + 1, len);
        let sent = client.send_media(to_peer, kind, &data, &opts).await.unwrap();
        let v = peer.expect_message(&sent.id).await;
        check_from_client(&v);
        assert_eq!(v["media"]["kind"], js_kind, "{v}");
        assert_eq!(v["media"]["mimetype"], opts.mimetype.as_str(), "{v}");
        assert_eq!(v["media"]["fileLength"], len.to_string(), "{v}");
        if opts.voice_note {
            assert_eq!(v["media"]["ptt"], true, "{v}");
        }
        if let Some(name) = &opts.file_name {
            assert_eq!(v["media"]["fileName"], name.as_str(), "{v}");
        }
        if let Some(c) = &opts.caption {
            assert_eq!(v["media"]["caption"], c.as_str(), "{v}");
        }
        assert_eq!(peer.download(&sent.id).await, data, "{kind:?}: Baileys downloads our upload");

        let back = content(i as u8 + 11, len + 7);
        let field = js_kind.trim_end_matches("Message");
        theirs_content[field] = b64(&back);
        let id = peer.send_message(to_client, theirs_content, None).await;
        let m = client_gets(events, &id).await;
        check_from_peer(&m);
        let r = wa_client::MediaRef::from_message(&m.message).unwrap().expect("a media message");
        assert_eq!(r.kind, kind);
        assert_eq!(r.file_length, Some(back.len() as u64));
        assert_eq!(client.download(&m.message).await.unwrap(), back, "{kind:?}: we download Baileys' upload");
        if opts.voice_note {
            assert_eq!(m.message.audio_message.as_ref().unwrap().ptt, Some(true));
        }
        if let Some(name) = &opts.file_name {
            assert_eq!(
                m.message.document_message.as_ref().unwrap().file_name.as_deref(),
                Some(name.as_str())
            );
        }
        if let Some(c) = &opts.caption {
            assert_eq!(m.text(), Some(c.as_str()));
        }
        eprintln!("{kind:?} ({js_kind}, {len} B) both ways: {:?}", t.elapsed());
    }
    eprintln!("whole exchange ({}): {:?}", if group.is_some() { "group" } else { "1:1" }, started.elapsed());
}

/// The protocol message, also when it arrives wrapped as an `editedMessage` future-proof message.
fn protocol_message(m: &wa_proto::Message) -> Option<&wa_proto::message::ProtocolMessage> {
    m.protocol_message.as_deref().or_else(|| {
        m.edited_message.as_ref().and_then(|f| f.message.as_ref()).and_then(|x| x.protocol_message.as_deref())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_both_ways() {
    let mut p = link_both(91).await;
    // We write the peer's number (our client resolves its LID); Baileys, which sends to what its
    // application names, is given our LID, as a migrated account must address DMs.
    let to_peer: Jid = format!("{BAILEYS_PN}@s.whatsapp.net").parse().unwrap();
    let to_client = p.client.lid().expect("our LID").to_non_ad().to_string();
    exchange(&mut p, &to_client, &to_peer, None).await;
    p.client.disconnect().await;
    p.peer.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_both_ways() {
    let mut p = link_both(92).await;
    // Created by the Baileys account's phone through the emulator's control API; both
    // accounts (phones and companions) are members.
    let group = p.emu.create_group(BAILEYS_PN, "baileys and rust", &[CLIENT_PN]).unwrap();
    let gid = group.to_string();
    exchange(&mut p, &gid, &group, Some(&group)).await;
    p.client.disconnect().await;
    p.peer.quit().await;
}
