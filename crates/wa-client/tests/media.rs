//! Media end to end against wa-emulator: upload over HTTP with the media_conn auth, send
//! every media type, the phone receives and its independent decryptor checks the file;
//! the phone sends media back and we download and verify it (hash, MAC, hash); tampered
//! messages are refused; groups too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{T, emulator, http_get, next_matching, pair, sqlite_client};
use prost::Message as _;
use wa_client::{Error, Event, MediaOptions, MediaType};

/// Deterministic, non-repeating test content of `len` bytes.
fn content(tag: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[tag as usize % 4] ^ tag).collect()
}

fn info_label(kind: MediaType) -> &'static [u8] {
    kind.hkdf_info()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_media_type_both_ways_with_a_phone() {
    let emu = emulator(71).await;
    emu.create_account("15550007101", "Me").unwrap();
    let bob_account = emu.with_world(|w| w.create_account("15550007102", "Bob")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = sqlite_client(&emu, &dir.path().join("wa.db"), 711).await;
    let mut events = client.events();
    let me = pair(&emu, &client, &mut events, "15550007101").await;
    let bob = emu.phone("15550007102").unwrap();

    let cases = [
        (MediaType::Image, MediaOptions::new("image/jpeg").caption("a photo"), 20_000),
        (MediaType::Video, MediaOptions::new("video/mp4").caption("a clip").seconds(3), 70_001),
        (MediaType::Audio, MediaOptions::new("audio/mpeg").seconds(5), 9_999),
        (MediaType::Audio, MediaOptions::new("audio/ogg; codecs=opus").voice_note().seconds(2), 4_096),
        (MediaType::Document, MediaOptions::new("application/pdf").file_name("report.pdf"), 1),
        (MediaType::Sticker, MediaOptions::new("image/webp"), 3_333),
    ];
    for (i, (kind, opts, len)) in cases.into_iter().enumerate() {
        let data = content(i as u8 + 1, len);
        let sent = client.send_media(&bob.jid(), kind, &data, &opts).await.unwrap();

        // The phone decrypted the message; the file it points at is on the media host and
        // the emulator's own media decryptor (not ours) recovers our plaintext.
        let got = bob.wait_message(T, |m| m.id == sent.id).await.expect("bob received the media message");
        assert!(got.error.is_none(), "{kind:?}: {:?}", got.error);
        let msg = wa_proto::Message::decode(got.message.as_slice()).unwrap();
        let r = wa_client::MediaRef::from_message(&msg).unwrap().expect("a media message");
        assert_eq!(r.kind, kind);
        assert_eq!(r.file_length, Some(len as u64));
        let (status, blob) = http_get(&emu, r.url.as_deref().unwrap()).await;
        assert_eq!(status, 200);
        let plain = wa_emulator::decrypt_media(&blob, &r.media_key, info_label(kind)).expect("MAC verifies");
        assert_eq!(plain, data, "{kind:?}");
        match kind {
            MediaType::Audio => assert_eq!(msg.audio_message.as_ref().unwrap().ptt, Some(opts.voice_note)),
            MediaType::Document => {
                assert_eq!(msg.document_message.as_ref().unwrap().file_name.as_deref(), Some("report.pdf"))
            }
            MediaType::Image => {
                assert_eq!(msg.image_message.as_ref().unwrap().caption.as_deref(), Some("a photo"))
            }
            _ => {}
        }

        // The phone forwards the same file back; we download, verify and decrypt it.
        let fwd = emu.with_world(|w| w.phone_send(bob_account, &me.to_non_ad(), &msg)).unwrap();
        let m = next_matching(&mut events, "the forwarded media", |e| match e {
            Event::Message(m) if m.info.id == fwd => Some(m.clone()),
            _ => None,
        })
        .await;
        assert_eq!(client.download(&m.message).await.unwrap(), data, "{kind:?}");
    }

    // An image the phone encrypted and uploaded itself.
    let photo = content(9, 54_321);
    let id = bob.send_image(&me.to_non_ad(), &photo, "image/png", Some("from bob")).unwrap();
    let m = next_matching(&mut events, "bob's image", |e| match e {
        Event::Message(m) if m.info.id == id => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(m.text(), Some("from bob"));
    assert_eq!(client.download(&m.message).await.unwrap(), photo);

    // Tampering is caught: wrong plaintext hash, wrong encrypted hash, wrong key (MAC).
    let mut bad = m.message.clone();
    bad.image_message.as_mut().unwrap().file_sha256 = Some(vec![0; 32]);
    assert!(matches!(client.download(&bad).await, Err(Error::Media(e)) if e.contains("fileSha256")));
    let mut bad = m.message.clone();
    bad.image_message.as_mut().unwrap().file_enc_sha256 = Some(vec![1; 32]);
    assert!(matches!(client.download(&bad).await, Err(Error::Media(e)) if e.contains("fileEncSha256")));
    let mut bad = m.message.clone();
    let img = bad.image_message.as_mut().unwrap();
    img.file_enc_sha256 = None;
    img.media_key.as_mut().unwrap()[0] ^= 1;
    assert!(matches!(client.download(&bad).await, Err(Error::Media(e)) if e.contains("MAC")));
    let mut bad = m.message.clone();
    bad.image_message.as_mut().unwrap().direct_path = Some("/m/image/missing.enc".into());
    bad.image_message.as_mut().unwrap().url = None;
    // A path the hosts do not have: gone, which a media retry can revive.
    assert!(matches!(client.download(&bad).await, Err(Error::MediaGone { status: 404 })));
    let text_only = wa_proto::Message { conversation: Some("x".into()), ..Default::default() };
    assert!(matches!(client.download(&text_only).await, Err(Error::InvalidInput(_))));
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_between_two_clients_and_in_a_group() {
    let emu = emulator(72).await;
    emu.create_account("15550007201", "Ann").unwrap();
    emu.create_account("15550007202", "Ben").unwrap();
    emu.create_account("15550007203", "Cid").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ann = sqlite_client(&emu, &dir.path().join("ann.db"), 721).await;
    let ben = sqlite_client(&emu, &dir.path().join("ben.db"), 722).await;
    let mut ann_events = ann.events();
    let mut ben_events = ben.events();
    pair(&emu, &ann, &mut ann_events, "15550007201").await;
    let ben_jid = pair(&emu, &ben, &mut ben_events, "15550007202").await;

    // 1:1 between two of our clients: a document with a caption.
    let doc = content(3, 100_000);
    let opts = MediaOptions::new("application/zip").file_name("data.zip").caption("the data");
    let sent = ann.send_media(&ben_jid.to_non_ad(), MediaType::Document, &doc, &opts).await.unwrap();
    let m = next_matching(&mut ben_events, "ann's document", |e| match e {
        Event::Message(m) if m.info.id == sent.id => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(m.message.document_message.as_ref().unwrap().caption.as_deref(), Some("the data"));
    assert_eq!(ben.download(&m.message).await.unwrap(), doc);

    // A group with a phone member: a video from Ann reaches Ben (client) and Cid (phone).
    let group = emu.create_group("15550007203", "media", &["15550007201", "15550007202"]).unwrap();
    // A text first: it carries our sender key to every member. (The emulator's phone files a
    // message that merges a sender key with non-image media as a bare key distribution and
    // drops it from its inbox; reported to the emulator's owner.)
    let hello = ann.send_text(&group, "files coming").await.unwrap();
    let cid = emu.phone("15550007203").unwrap();
    assert!(cid.wait_message(T, |x| x.id == hello.id).await.is_some());
    let clip = content(4, 33_000);
    let sent =
        ann.send_media(&group, MediaType::Video, &clip, &MediaOptions::new("video/mp4").gif()).await.unwrap();
    let m = next_matching(&mut ben_events, "the group video", |e| match e {
        Event::Message(m) if m.info.id == sent.id => Some(m.clone()),
        _ => None,
    })
    .await;
    assert!(m.info.is_group);
    assert_eq!(m.message.video_message.as_ref().unwrap().gif_playback, Some(true));
    assert_eq!(ben.download(&m.message).await.unwrap(), clip);
    let got = cid.wait_message(T, |x| x.id == sent.id).await.expect("cid got the group video");
    assert!(got.error.is_none(), "{:?}", got.error);
    let msg = wa_proto::Message::decode(got.message.as_slice()).unwrap();
    let r = wa_client::MediaRef::from_message(&msg).unwrap().unwrap();
    let (_, blob) = http_get(&emu, r.url.as_deref().unwrap()).await;
    assert_eq!(wa_emulator::decrypt_media(&blob, &r.media_key, MediaType::Video.hkdf_info()).unwrap(), clip);

    // Empty mimetype and non-message kinds are refused before any upload.
    assert!(matches!(
        ann.send_media(&group, MediaType::Image, b"x", &MediaOptions::default()).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        ann.send_media(&group, MediaType::History, b"x", &MediaOptions::new("a/b")).await,
        Err(Error::InvalidInput(_))
    ));
    ann.disconnect().await;
    ben.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_upload_serves_many_recipients() {
    let emu = emulator(73).await;
    emu.create_account("15550007301", "Me").unwrap();
    emu.create_account("15550007302", "Ann").unwrap();
    emu.create_account("15550007303", "Ben").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = sqlite_client(&emu, &dir.path().join("wa.db"), 731).await;
    let mut events = client.events();
    pair(&emu, &client, &mut events, "15550007301").await;
    let phones = [emu.phone("15550007302").unwrap(), emu.phone("15550007303").unwrap()];

    let data = content(5, 30_000);
    let first = client.upload_reusable(&data, MediaType::Image).await.unwrap();
    let again = client.upload_reusable(&data, MediaType::Image).await.unwrap();
    assert_eq!(again, first, "the same file is not uploaded twice");
    // Another kind or other bytes are other uploads (other key label, other file).
    let as_doc = client.upload_reusable(&data, MediaType::Document).await.unwrap();
    assert_ne!(as_doc.direct_path, first.direct_path);
    let other = client.upload_reusable(&content(6, 30_000), MediaType::Image).await.unwrap();
    assert_ne!(other.direct_path, first.direct_path);
    // `upload` itself always uploads afresh.
    let fresh = client.upload(&data, MediaType::Image).await.unwrap();
    assert_ne!((fresh.direct_path.as_str(), fresh.media_key), (first.direct_path.as_str(), first.media_key));

    // Each recipient gets its own message (own caption) pointing at the one file, and decrypts it.
    for (i, phone) in phones.iter().enumerate() {
        let u = client.upload_reusable(&data, MediaType::Image).await.unwrap();
        let opts = MediaOptions::new("image/png").caption(format!("for #{i}"));
        let msg = u.to_message(&opts, 1_700_000_000).unwrap();
        let sent = client.send_message(&phone.jid(), msg).await.unwrap();
        let got = phone.wait_message(T, |m| m.id == sent.id).await.expect("the phone received it");
        assert!(got.error.is_none(), "{:?}", got.error);
        let m = wa_proto::Message::decode(got.message.as_slice()).unwrap();
        let img = m.image_message.as_ref().unwrap();
        assert_eq!(img.caption.as_deref(), Some(format!("for #{i}").as_str()));
        assert_eq!(img.direct_path.as_deref(), Some(first.direct_path.as_str()));
        let plain = emu.with_world(|w| w.fetch_image(img)).expect("the phone decrypts the file");
        assert_eq!(plain, data);
    }
    client.disconnect().await;
}
