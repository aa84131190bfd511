//! History sync from the own primary phone: an uploaded blob and an inline bootstrap are
//! downloaded, verified, inflated and surfaced as `Event::HistorySync`; the same
//! notification from another account is ignored. After pairing the phone sends its history
//! by itself (bootstrap with chats, PN ↔ LID pairs and the NCT salt, then push names, then
//! the recent messages; a contact's privacy token rides on its conversation); the salt and
//! the token are stored; each chunk is acknowledged with `hist_sync` at once, so the phone
//! sends none again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;

use common::{emulator, next_matching, pair, sqlite_client};
use prost::Message as _;
use wa_client::{Event, MediaType};
use wa_proto::message::{HistorySyncNotification, ProtocolMessage, protocol_message};

fn history(name: &str) -> wa_proto::HistorySync {
    wa_proto::HistorySync {
        sync_type: Some(wa_proto::history_sync::HistorySyncType::Recent as i32),
        chunk_order: Some(1),
        conversations: vec![wa_proto::Conversation {
            id: Some("15550009999@s.whatsapp.net".into()),
            name: Some(name.into()),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn zlib(h: &wa_proto::HistorySync) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&h.encode_to_vec()).unwrap();
    z.finish().unwrap()
}

fn notification_message(n: HistorySyncNotification) -> wa_proto::Message {
    wa_proto::Message {
        protocol_message: Some(Box::new(ProtocolMessage {
            r#type: Some(protocol_message::Type::HistorySyncNotification as i32),
            history_sync_notification: Some(n),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_sync_from_own_phone_only() {
    let emu = emulator(91).await;
    let own = emu.with_world(|w| w.create_account("15550009101", "Me")).unwrap();
    let stranger = emu.with_world(|w| w.create_account("15550009102", "Eve")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = sqlite_client(&emu, &dir.path().join("wa.db"), 911).await;
    let mut events = client.events();
    let me = pair(&emu, &client, &mut events, "15550009101").await;
    // The phone's own history after pairing (three chunks; see the test below) comes first.
    for chunk in 1..=3 {
        next_matching(&mut events, "the pairing history", |e| match e {
            Event::HistorySync(h) if h.chunk_order == Some(chunk) => Some(()),
            _ => None,
        })
        .await;
    }

    // The blob goes to the media host (md-msg-hist keys) the way the phone uploads it.
    let blob = zlib(&history("from the phone"));
    let up = client.upload(&blob, MediaType::History).await.unwrap();
    let n = HistorySyncNotification {
        file_sha256: Some(up.file_sha256.to_vec()),
        file_length: Some(up.file_length),
        media_key: Some(up.media_key.to_vec()),
        file_enc_sha256: Some(up.file_enc_sha256.to_vec()),
        direct_path: Some(up.direct_path.clone()),
        sync_type: Some(wa_proto::message::HistorySyncType::Recent as i32),
        ..Default::default()
    };

    // From a stranger: delivered as a message but never processed.
    let eve = emu
        .with_world(|w| w.phone_send(stranger, &me.to_non_ad(), &notification_message(n.clone())))
        .unwrap();
    next_matching(&mut events, "eve's notification", |e| match e {
        Event::Message(m) if m.info.id == eve => Some(()),
        Event::HistorySync(_) => panic!("processed a stranger's history"),
        _ => None,
    })
    .await;

    // From our own phone (a device-sent copy to ourselves): downloaded and decoded.
    emu.with_world(|w| w.phone_send(own, &me.to_non_ad(), &notification_message(n))).unwrap();
    let h = next_matching(&mut events, "history sync", |e| match e {
        Event::HistorySync(h) => Some(h.clone()),
        _ => None,
    })
    .await;
    assert_eq!(*h, history("from the phone"));

    // Inline bootstrap payload: no download. Its phone-number ↔ LID pairs are learned
    // (malformed ones skipped).
    let mut inline_history = history("inline");
    inline_history.phone_number_to_lid_mappings = vec![
        wa_proto::PhoneNumberToLidMapping {
            pn_jid: Some("15550009999@s.whatsapp.net".into()),
            lid_jid: Some("777000111222@lid".into()),
        },
        wa_proto::PhoneNumberToLidMapping { pn_jid: Some("not a jid".into()), lid_jid: None },
    ];
    let inline = HistorySyncNotification {
        initial_hist_bootstrap_inline_payload: Some(zlib(&inline_history)),
        ..Default::default()
    };
    emu.with_world(|w| w.phone_send(own, &me.to_non_ad(), &notification_message(inline))).unwrap();
    let h = next_matching(&mut events, "inline history sync", |e| match e {
        Event::HistorySync(h) => Some(h.clone()),
        _ => None,
    })
    .await;
    assert_eq!(h.conversations[0].name.as_deref(), Some("inline"));
    let pn: wa_client::Jid = "15550009999@s.whatsapp.net".parse().unwrap();
    assert_eq!(client.alternate_jid(&pn).await.unwrap(), Some("777000111222@lid".parse().unwrap()));
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phone_sends_its_history_after_pairing_and_the_receipts_stop_resends() {
    let emu = emulator(92).await;
    let own = emu.with_world(|w| w.create_account("15550009201", "Me")).unwrap();
    let ann = emu.create_account("15550009202", "Annie").unwrap();
    let (ann_pn, ann_lid) = (ann.jid(), ann.lid());
    let me: wa_client::Jid = "15550009201@s.whatsapp.net".parse().unwrap();
    // Before this device exists, Ann writes to the phone.
    let hello = ann.send_text(&me, "hello from before").unwrap();
    emu.wait_for(
        common::T,
        |e| matches!(e, wa_emulator::WorldEvent::PhoneReceived { id, .. } if *id == hello),
    )
    .await
    .expect("the phone received Ann's message");
    // Ann's phone gave the account her privacy token with that message; the account gave her
    // its own.
    let (salt, anns_token, our_token) = emu.with_world(|w| {
        let ann = w.account_by_pn("15550009202").unwrap();
        w.give_token(own, ann);
        (w.nct_salt(own), w.token_given(ann, own).unwrap(), w.token_given(own, ann).unwrap())
    });

    let dir = tempfile::tempdir().unwrap();
    let client = sqlite_client(&emu, &dir.path().join("wa.db"), 921).await;
    let mut events = client.events();
    pair(&emu, &client, &mut events, "15550009201").await;
    let mut chunks = Vec::new();
    while chunks.len() < 3 {
        chunks.push(
            next_matching(&mut events, "a history chunk", |e| match e {
                Event::HistorySync(h) => Some(h.clone()),
                _ => None,
            })
            .await,
        );
    }
    chunks.sort_by_key(|h| h.chunk_order);
    let (bootstrap, push_names, recent) = (&chunks[0], &chunks[1], &chunks[2]);
    use wa_proto::history_sync::HistorySyncType;
    assert_eq!(bootstrap.sync_type, Some(HistorySyncType::InitialBootstrap as i32));
    assert_eq!(push_names.sync_type, Some(HistorySyncType::PushName as i32));
    assert_eq!(recent.sync_type, Some(HistorySyncType::Recent as i32));
    assert_eq!(bootstrap.nct_salt.as_deref(), Some(&salt[..]));
    for h in [bootstrap, recent] {
        let texts: Vec<_> = h
            .conversations
            .iter()
            .flat_map(|c| &c.messages)
            .filter_map(|m| m.message.as_ref()?.message.as_ref()?.conversation.clone())
            .collect();
        assert_eq!(texts, ["hello from before"], "{h:?}");
    }
    // Ann's chat carries her token, when she gave it and when we gave ours.
    for h in [bootstrap, recent] {
        let tokens: Vec<_> = h
            .conversations
            .iter()
            .map(|c| (c.tc_token.clone(), c.tc_token_timestamp, c.tc_token_sender_timestamp))
            .collect();
        assert_eq!(tokens, [(Some(anns_token.0.clone()), Some(anns_token.1), Some(our_token.1))]);
    }
    let names: Vec<_> = push_names.pushnames.iter().map(|p| (p.id.clone(), p.pushname.clone())).collect();
    assert_eq!(names, [(Some(ann_pn.to_string()), Some("Annie".to_owned()))]);
    assert!(bootstrap.pushnames.is_empty() && recent.pushnames.is_empty());
    // The client kept the salt and Ann's token (under her LID), read here from its store.
    {
        use wa_store::{NctSaltStore as _, PrivacyTokenStore as _};
        let store = wa_store::Store::open_sqlite(dir.path().join("wa.db"), Default::default()).await.unwrap();
        let d = store.device(&wa_store::DeviceId::new("acct").unwrap());
        assert_eq!(d.load_nct_salt().await.unwrap().as_deref(), Some(&salt[..]));
        let kept = d.get_privacy_token(&ann_lid.to_string()).await.unwrap().expect("Ann's token stored");
        assert_eq!((kept.token, kept.timestamp), (anns_token.0.clone(), anns_token.1 as i64));
        assert_eq!(kept.sender_timestamp, our_token.1 as i64);
    }
    // Its PN ↔ LID pair is learned from the history alone (the client never saw Ann before).
    assert_eq!(client.alternate_jid(&ann_pn).await.unwrap(), Some(ann_lid.clone()));

    // All three chunks were acknowledged with hist_sync; once past the resend bound, the phone
    // still has nothing to send again.
    let device = client.jid().unwrap().device();
    for _ in 0..3 {
        emu.wait_for(
            common::T,
            |e| matches!(e, wa_emulator::WorldEvent::PhoneReceipt { kind, .. } if kind == "hist_sync"),
        )
        .await
        .expect("hist_sync receipts");
    }
    let pending = emu.with_world(|w| w.unacknowledged_history(own, device));
    assert!(pending.is_empty(), "{pending:?}");
    let resent = emu
        .events()
        .iter()
        .any(|e| matches!(e, wa_emulator::WorldEvent::HistorySyncSent { sends, .. } if *sends > 1));
    assert!(!resent);
    client.disconnect().await;
}
