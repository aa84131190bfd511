//! The conformance suite: every backend must pass every case here.

use std::sync::Arc;

use wa_store::*;

use crate::harness::{Harness, swap_rows};

pub const T0: i64 = 1_700_000_000;

pub fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(T0))
}

pub fn opts(clock: &Arc<ManualClock>, key: Option<EncryptionKey>) -> StoreOptions {
    StoreOptions { key, clock: clock.clone(), pre_key_grace_secs: 3600 }
}

pub fn dev(s: &str) -> DeviceId {
    DeviceId::new(s).expect("device id")
}

pub fn kp(seed: u8) -> KeyPair {
    KeyPair { public: [seed; 32], private: [seed.wrapping_add(100); 32] }
}

/// Distinct, recognisable 32-byte secrets for the at-rest tests.
pub fn secret(tag: u8) -> [u8; 32] {
    let mut s = [0u8; 32];
    for (i, b) in s.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(tag).wrapping_mul(101) ^ 0x5a;
    }
    s[0] = tag;
    s
}

pub fn creds(tag: u8) -> Credentials {
    Credentials {
        noise_key: KeyPair { public: [tag; 32], private: secret(tag) },
        identity_key: KeyPair { public: [tag ^ 1; 32], private: secret(tag ^ 0x40) },
        signed_pre_key: SignedPreKey {
            id: 1,
            key_pair: KeyPair { public: [tag ^ 2; 32], private: secret(tag ^ 0x41) },
            signature: [tag; 64],
            created_at: T0,
        },
        registration_id: 4242,
        adv_secret_key: secret(tag ^ 0x42),
        signed_device_identity: Some(vec![1, 2, 3]),
        jid: Some("5511999999999:3@s.whatsapp.net".into()),
        lid: Some("123456789:3@lid".into()),
        push_name: Some("Ana".into()),
        platform: Some("android".into()),
        lid_migrated: Some(true),
    }
}

pub fn addr(n: &str, d: u32) -> ProtocolAddress {
    ProtocolAddress::new(n, d)
}

pub fn inbound(id: &str, at: i64) -> InboundMessage {
    InboundMessage {
        chat: "chat@g.us".into(),
        sender: "5511@s.whatsapp.net".into(),
        id: id.into(),
        received_at: at,
        payload: id.as_bytes().to_vec(),
    }
}

async fn fresh(h: &dyn Harness) -> (Store, Arc<ManualClock>) {
    let c = clock();
    (h.open(opts(&c, None)).await.expect("open"), c)
}

pub async fn credentials(h: &dyn Harness) {
    let (s, _) = fresh(h).await;
    let d = s.device(&dev("a"));
    assert_eq!(d.load_credentials().await.expect("load"), None);
    let c = creds(1);
    d.save_credentials(&c).await.expect("save");
    assert_eq!(d.load_credentials().await.expect("load"), Some(c.clone()));
    let mut c2 = c.clone();
    c2.push_name = None;
    c2.jid = None;
    d.save_credentials(&c2).await.expect("replace");
    assert_eq!(d.load_credentials().await.expect("load"), Some(c2.clone()));
    // The account's LID migration state keeps all three values (unknown, legacy, migrated).
    for state in [None, Some(false), Some(true)] {
        c2.lid_migrated = state;
        d.save_credentials(&c2).await.expect("save migration state");
        assert_eq!(d.load_credentials().await.expect("load").map(|c| c.lid_migrated), Some(state));
    }
    assert_eq!(s.devices().await.expect("devices"), vec![dev("a")]);
}

pub async fn app_version(h: &dyn Harness) {
    let (s, _) = fresh(h).await;
    let d = s.device(&dev("a"));
    assert_eq!(d.load_app_version().await.expect("load"), None);
    let v = CachedAppVersion { version: [2, 3000, 1_045_649_367], fetched_at: T0 };
    d.save_app_version(&v).await.expect("save");
    assert_eq!(d.load_app_version().await.expect("load"), Some(v));
    let newer = CachedAppVersion { version: [2, 3001, 7], fetched_at: T0 + 86_400 };
    d.save_app_version(&newer).await.expect("replace");
    assert_eq!(d.load_app_version().await.expect("load"), Some(newer));
    // Per device, beside the credentials, and gone with the device.
    assert_eq!(s.device(&dev("b")).load_app_version().await.expect("other device"), None);
    d.save_credentials(&creds(1)).await.expect("creds");
    assert_eq!(d.load_credentials().await.expect("load").map(|c| c.registration_id), Some(4242));
    assert_eq!(d.load_app_version().await.expect("load"), Some(newer));
    s.delete_device(&dev("a")).await.expect("delete");
    assert_eq!(d.load_app_version().await.expect("load"), None);
}

pub async fn identities(h: &dyn Harness) {
    let (s, _) = fresh(h).await;
    let d = s.device(&dev("a"));
    let a = addr("1@s.whatsapp.net", 0);
    assert_eq!(d.get_identity(&a).await.expect("get"), None);
    assert_eq!(d.save_identity(&a, [1; 32]).await.expect("save"), IdentityChange::New);
    assert_eq!(d.save_identity(&a, [1; 32]).await.expect("save"), IdentityChange::Unchanged);
    assert_eq!(d.save_identity(&a, [2; 32]).await.expect("save"), IdentityChange::Replaced);
    assert_eq!(d.get_identity(&a).await.expect("get"), Some([2; 32]));
    assert_eq!(d.get_identity(&addr("1@s.whatsapp.net", 1)).await.expect("get"), None);
    d.delete_identity(&a).await.expect("delete");
    assert_eq!(d.get_identity(&a).await.expect("get"), None);
    // Every device of one user at once; other users keep theirs.
    let other = addr("2@s.whatsapp.net", 0);
    for dev_id in [0, 3] {
        d.save_identity(&addr("1@s.whatsapp.net", dev_id), [5; 32]).await.expect("save");
    }
    d.save_identity(&other, [6; 32]).await.expect("save");
    d.delete_user_identities("1@s.whatsapp.net").await.expect("delete user");
    for dev_id in [0, 3] {
        assert_eq!(d.get_identity(&addr("1@s.whatsapp.net", dev_id)).await.expect("get"), None);
    }
    assert_eq!(d.get_identity(&other).await.expect("get"), Some([6; 32]));
}

pub async fn sessions(h: &dyn Harness) {
    let (s, _) = fresh(h).await;
    let d = s.device(&dev("a"));
    let batch: Vec<(ProtocolAddress, Vec<u8>)> =
        (0..20).map(|i| (addr(&format!("{}@lid", i % 4), i), vec![i as u8; 100 + i as usize])).collect();
    d.put_sessions(&batch).await.expect("put");
    let mut asked: Vec<ProtocolAddress> = batch.iter().rev().map(|(a, _)| a.clone()).collect();
    asked.insert(3, addr("nobody@lid", 9));
    let got = d.get_sessions(&asked).await.expect("get");
    assert_eq!(got.len(), asked.len());
    for (a, g) in asked.iter().zip(&got) {
        let want = batch.iter().find(|(b, _)| b == a).map(|(_, r)| r.clone());
        assert_eq!(g, &want, "{a}");
    }
    assert_eq!(d.get_sessions(&[]).await.expect("empty"), Vec::<Option<Vec<u8>>>::new());
    d.put_sessions(&[(addr("0@lid", 0), b"new".to_vec())]).await.expect("overwrite");
    assert_eq!(d.get_sessions(&[addr("0@lid", 0)]).await.expect("get")[0].as_deref(), Some(&b"new"[..]));
    d.delete_session(&addr("0@lid", 0)).await.expect("delete");
    assert_eq!(d.get_sessions(&[addr("0@lid", 0)]).await.expect("get")[0], None);
    d.delete_user_sessions("1@lid").await.expect("delete user");
    let left = d.get_sessions(&batch.iter().map(|(a, _)| a.clone()).collect::<Vec<_>>()).await.expect("get");
    for ((a, _), g) in batch.iter().zip(left) {
        let gone = a.name == "1@lid" || (a.name == "0@lid" && a.device == 0);
        assert_eq!(g.is_none(), gone, "{a}");
    }
}

pub async fn pre_keys(h: &dyn Harness) {
    let (s, clock) = fresh(h).await;
    let d = s.device(&dev("a"));
    let mut n = 0u8;
    let mut keygen = || {
        n += 1;
        kp(n)
    };
    let keys = d.generate_pre_keys(10, &mut keygen).await.expect("gen");
    assert_eq!(keys.iter().map(|k| k.id).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    assert_eq!(
        d.pre_key_counts().await.expect("counts"),
        PreKeyCounts { fresh: 10, uploaded: 0, consumed: 0 }
    );
    assert_eq!(d.unuploaded_pre_keys(4).await.expect("unuploaded"), keys[..4].to_vec());
    d.mark_pre_keys_uploaded(&[1, 2, 3, 4, 5, 6]).await.expect("mark");
    assert_eq!(d.unuploaded_pre_keys(100).await.expect("unuploaded"), keys[6..].to_vec());
    assert_eq!(d.get_pre_key(3).await.expect("get"), Some(keys[2].clone()));
    assert_eq!(d.consume_pre_key(3).await.expect("consume"), Some(keys[2].clone()));
    assert_eq!(
        d.pre_key_counts().await.expect("counts"),
        PreKeyCounts { fresh: 4, uploaded: 5, consumed: 1 }
    );
    // Within the grace period the key still decrypts a re-sent message.
    clock.advance(3599);
    assert_eq!(d.get_pre_key(3).await.expect("get"), Some(keys[2].clone()));
    assert_eq!(d.consume_pre_key(3).await.expect("consume again"), Some(keys[2].clone()));
    // Uploading does not resurrect a consumed key.
    d.mark_pre_keys_uploaded(&[3]).await.expect("mark");
    clock.advance(1);
    assert_eq!(d.get_pre_key(3).await.expect("get"), None, "grace must not be extended by a second consume");
    assert!(s.purge_expired().await.expect("purge") >= 1);
    assert_eq!(
        d.pre_key_counts().await.expect("counts"),
        PreKeyCounts { fresh: 4, uploaded: 5, consumed: 0 }
    );
    assert_eq!(d.consume_pre_key(999).await.expect("unknown"), None);
    let more = d.generate_pre_keys(3, &mut keygen).await.expect("gen");
    assert_eq!(more.iter().map(|k| k.id).collect::<Vec<_>>(), vec![11, 12, 13]);
    assert!(matches!(d.generate_pre_keys(10_001, &mut keygen).await, Err(Error::InvalidInput(_))));
}

pub async fn signed_pre_keys(h: &dyn Harness) {
    let (s, _) = fresh(h).await;
    let d = s.device(&dev("a"));
    let k = |id| SignedPreKey {
        id,
        key_pair: kp(id as u8),
        signature: [id as u8; 64],
        created_at: T0 + i64::from(id),
    };
    for id in [3, 1, 2] {
        d.put_signed_pre_key(&k(id)).await.expect("put");
    }
    assert_eq!(d.get_signed_pre_key(2).await.expect("get"), Some(k(2)));
    assert_eq!(d.signed_pre_keys().await.expect("all"), vec![k(1), k(2), k(3)]);
    d.delete_signed_pre_key(1).await.expect("delete");
    assert_eq!(d.get_signed_pre_key(1).await.expect("get"), None);
    assert_eq!(d.signed_pre_keys().await.expect("all").len(), 2);
}

pub async fn sender_keys(h: &dyn Harness) {
    let (s, _) = fresh(h).await;
    let d = s.device(&dev("a"));
    let (g1, g2) = ("1@g.us", "2@g.us");
    let me = addr("me@lid", 0);
    d.put_sender_key(g1, &me, b"rec1").await.expect("put");
    d.put_sender_key(g2, &me, b"rec2").await.expect("put");
    assert_eq!(d.get_sender_key(g1, &me).await.expect("get").as_deref(), Some(&b"rec1"[..]));
    assert_eq!(d.get_sender_key(g1, &addr("me@lid", 1)).await.expect("get"), None);
    d.delete_sender_key(g1, &me).await.expect("delete");
    assert_eq!(d.get_sender_key(g1, &me).await.expect("get"), None);
    assert_eq!(d.get_sender_key(g2, &me).await.expect("get").as_deref(), Some(&b"rec2"[..]));
    let devs: Vec<String> = ["b:1@lid", "a:0@lid", "c:2@lid"].iter().map(|s| s.to_string()).collect();
    d.add_sender_key_holders(g1, &devs).await.expect("add");
    d.add_sender_key_holders(g1, &devs[..1]).await.expect("add twice is idempotent");
    d.add_sender_key_holders(g2, &devs[..1]).await.expect("add");
    assert_eq!(d.sender_key_holders(g1).await.expect("holders"), vec!["a:0@lid", "b:1@lid", "c:2@lid"]);
    d.remove_sender_key_holders(g1, &devs[..1]).await.expect("remove");
    assert_eq!(d.sender_key_holders(g1).await.expect("holders"), vec!["a:0@lid", "c:2@lid"]);
    d.clear_sender_key_holders(g1).await.expect("clear");
    assert!(d.sender_key_holders(g1).await.expect("holders").is_empty());
    assert_eq!(d.sender_key_holders(g2).await.expect("holders"), vec!["b:1@lid"]);
}

pub async fn app_state(h: &dyn Harness) {
    let (s, _) = fresh(h).await;
    let d = s.device(&dev("a"));
    let key = AppStateSyncKey { key_data: secret(9).to_vec(), fingerprint: vec![1, 2], timestamp: 5 };
    d.put_app_state_sync_key(&[0, 1, 2], &key).await.expect("put key");
    assert_eq!(d.get_app_state_sync_key(&[0, 1, 2]).await.expect("get"), Some(key));
    assert_eq!(d.get_app_state_sync_key(&[0, 1]).await.expect("get"), None);
    let v = AppStateVersion { version: 7, hash: [3; 128] };
    d.put_app_state_version("regular", &v).await.expect("put version");
    assert_eq!(d.get_app_state_version("regular").await.expect("get"), Some(v));
    let macs: Vec<(Vec<u8>, Vec<u8>)> = (0..5u8).map(|i| (vec![i; 32], vec![i + 100; 32])).collect();
    d.put_mutation_macs("regular", &macs).await.expect("macs");
    d.put_mutation_macs("critical_block", &macs[..1]).await.expect("macs");
    assert_eq!(d.get_mutation_mac("regular", &[2; 32]).await.expect("get"), Some(vec![102; 32]));
    d.delete_mutation_macs("regular", &[vec![2; 32]]).await.expect("delete");
    assert_eq!(d.get_mutation_mac("regular", &[2; 32]).await.expect("get"), None);
    assert_eq!(d.get_mutation_mac("regular", &[3; 32]).await.expect("get"), Some(vec![103; 32]));
    d.reset_app_state("regular").await.expect("reset");
    assert_eq!(d.get_app_state_version("regular").await.expect("get"), None);
    assert_eq!(d.get_mutation_mac("regular", &[3; 32]).await.expect("get"), None);
    assert_eq!(d.get_mutation_mac("critical_block", &[0; 32]).await.expect("get"), Some(vec![100; 32]));
}

pub async fn lid_mappings(h: &dyn Harness) {
    let (s, _) = fresh(h).await;
    let d = s.device(&dev("a"));
    d.put_lid_mappings(&[("111".into(), "5511".into()), ("222".into(), "5522".into())]).await.expect("put");
    assert_eq!(d.get_pn_for_lid("111").await.expect("get").as_deref(), Some("5511"));
    assert_eq!(d.get_lid_for_pn("5522").await.expect("get").as_deref(), Some("222"));
    assert_eq!(d.get_lid_for_pn("5533").await.expect("get"), None);
    // The number 5511 moves to a new LID: the old LID no longer maps to it.
    d.put_lid_mappings(&[("333".into(), "5511".into())]).await.expect("remap");
    assert_eq!(d.get_lid_for_pn("5511").await.expect("get").as_deref(), Some("333"));
    assert_eq!(d.get_pn_for_lid("111").await.expect("get"), None);
    assert_eq!(d.get_pn_for_lid("333").await.expect("get").as_deref(), Some("5511"));

    // Batch lookups answer in the order asked, `None` where unknown, duplicates included.
    let pns: Vec<String> = ["5522", "9999", "5511", "5522"].iter().map(|s| s.to_string()).collect();
    assert_eq!(
        d.get_lids_for_pns(&pns).await.expect("batch"),
        vec![Some("222".to_owned()), None, Some("333".to_owned()), Some("222".to_owned())]
    );
    let lids: Vec<String> = ["111", "333", "222"].iter().map(|s| s.to_string()).collect();
    assert_eq!(
        d.get_pns_for_lids(&lids).await.expect("batch"),
        vec![None, Some("5511".to_owned()), Some("5522".to_owned())]
    );
    assert_eq!(d.get_lids_for_pns(&[]).await.expect("empty"), Vec::<Option<String>>::new());
    // A thousand mappings in one write, read back in one batch.
    let many: Vec<(String, String)> = (0..1000).map(|i| (format!("9{i:05}"), format!("8{i:05}"))).collect();
    d.put_lid_mappings(&many).await.expect("put many");
    let asked: Vec<String> = many.iter().rev().map(|(_, pn)| pn.clone()).collect();
    let got = d.get_lids_for_pns(&asked).await.expect("batch of 1000");
    assert!(got.iter().zip(many.iter().rev()).all(|(g, (lid, _))| g.as_deref() == Some(lid.as_str())));
    // Another device sees none of them.
    let other = s.device(&dev("b"));
    assert_eq!(other.get_lids_for_pns(&pns[..1]).await.expect("other device"), vec![None]);
}

/// A contact seen first by phone number then by LID: its sessions and identity keys move to
/// the LID address in one write, replacing what the LID address held for the same device.
pub async fn session_migration(h: &dyn Harness) {
    let (s, _) = fresh(h).await;
    let d = s.device(&dev("a"));
    let (pn, lid) = ("5511", "123_1");
    d.put_sessions(&[(addr(pn, 0), b"pn-0".to_vec()), (addr(pn, 3), b"pn-3".to_vec())]).await.expect("put");
    d.put_sessions(&[(addr(lid, 3), b"old-lid-3".to_vec()), (addr(lid, 7), b"lid-7".to_vec())])
        .await
        .expect("put");
    d.put_sessions(&[(addr("55110", 0), b"a neighbour".to_vec())]).await.expect("put");
    d.save_identity(&addr(pn, 0), [1; 32]).await.expect("identity");
    assert_eq!(d.migrate_user(pn, lid).await.expect("migrate"), 2);
    let got = d
        .get_sessions(&[addr(pn, 0), addr(pn, 3), addr(lid, 0), addr(lid, 3), addr(lid, 7), addr("55110", 0)])
        .await
        .expect("get");
    assert_eq!(
        got,
        vec![
            None,
            None,
            Some(b"pn-0".to_vec()),
            Some(b"pn-3".to_vec()),
            Some(b"lid-7".to_vec()),
            Some(b"a neighbour".to_vec())
        ]
    );
    assert_eq!(d.get_identity(&addr(pn, 0)).await.expect("identity"), None);
    assert_eq!(d.get_identity(&addr(lid, 0)).await.expect("identity"), Some([1; 32]));
    // Nothing left to move: a second migration (or one for an unknown user) is a no-op.
    assert_eq!(d.migrate_user(pn, lid).await.expect("again"), 0);
    assert_eq!(d.migrate_user("nobody", lid).await.expect("unknown"), 0);
    assert_eq!(d.migrate_user(lid, lid).await.expect("same"), 0);
    assert_eq!(d.get_sessions(&[addr(lid, 0)]).await.expect("get")[0].as_deref(), Some(&b"pn-0"[..]));
    // A sender key moves in a transaction: written under the LID address, gone from the PN one.
    d.put_sender_key("g@g.us", &addr(pn, 3), b"sk").await.expect("put");
    let mut tx = d.transaction();
    tx.put_sender_key("g@g.us", &addr(lid, 3), b"sk").delete_sender_key("g@g.us", &addr(pn, 3));
    tx.commit().await.expect("move");
    assert_eq!(d.get_sender_key("g@g.us", &addr(pn, 3)).await.expect("get"), None);
    assert_eq!(d.get_sender_key("g@g.us", &addr(lid, 3)).await.expect("get").as_deref(), Some(&b"sk"[..]));
}

pub async fn device_lists(h: &dyn Harness) {
    let (s, clock) = fresh(h).await;
    let d = s.device(&dev("a"));
    d.put_device_list("5511@s.whatsapp.net", &[0, 3, 17], Some("2:abc"), 60).await.expect("put");
    let l = d.get_device_list("5511@s.whatsapp.net").await.expect("get").expect("present");
    assert_eq!((l.devices, l.hash.as_deref(), l.expires_at), (vec![0, 3, 17], Some("2:abc"), T0 + 60));
    clock.advance(60);
    assert_eq!(d.get_device_list("5511@s.whatsapp.net").await.expect("get"), None, "expired");
    d.put_device_list("5522@s.whatsapp.net", &[], None, 60).await.expect("put");
    assert_eq!(
        d.get_device_list("5522@s.whatsapp.net").await.expect("get").expect("present").devices,
        Vec::<u32>::new()
    );
    d.invalidate_device_list("5522@s.whatsapp.net").await.expect("invalidate");
    assert_eq!(d.get_device_list("5522@s.whatsapp.net").await.expect("get"), None);
}

pub async fn sent_messages(h: &dyn Harness) {
    let (s, clock) = fresh(h).await;
    let d = s.device(&dev("a"));
    d.put_sent_message("c1", "m1", b"one", 100).await.expect("put");
    d.put_sent_message("c1", "m2", b"two", 300).await.expect("put");
    let m = d.get_sent_message("c1", "m1").await.expect("get").expect("present");
    assert_eq!((m.payload.as_slice(), m.expires_at), (&b"one"[..], T0 + 100));
    assert_eq!(d.get_sent_message("c2", "m1").await.expect("get"), None);
    clock.advance(150);
    assert_eq!(d.get_sent_message("c1", "m1").await.expect("get"), None);
    assert_eq!(s.purge_expired().await.expect("purge"), 1);
    assert!(d.get_sent_message("c1", "m2").await.expect("get").is_some());
    d.delete_sent_message("c1", "m2").await.expect("delete");
    assert_eq!(d.get_sent_message("c1", "m2").await.expect("get"), None);
}

pub async fn inbound_messages(h: &dyn Harness) {
    let (s, _) = fresh(h).await;
    let d = s.device(&dev("a"));
    d.put_inbound(&inbound("b", T0 + 2)).await.expect("put");
    d.put_inbound(&inbound("a", T0 + 1)).await.expect("put");
    d.put_inbound(&inbound("c", T0 + 3)).await.expect("put");
    match d.put_inbound(&inbound("b", T0 + 9)).await {
        Err(Error::Conflict { .. }) => {}
        other => panic!("duplicate inbound must conflict, got {other:?}"),
    }
    let p = d.pending_inbound(10).await.expect("pending");
    assert_eq!(p.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), vec!["a", "b", "c"]);
    assert_eq!(p[1], inbound("b", T0 + 2), "the duplicate did not overwrite");
    assert_eq!(d.pending_inbound(2).await.expect("pending").len(), 2);
    d.mark_inbound_handled("chat@g.us", "5511@s.whatsapp.net", "a").await.expect("handled");
    assert_eq!(d.pending_inbound(10).await.expect("pending").len(), 2);
}

pub async fn privacy_tokens(h: &dyn Harness) {
    let (s, _) = fresh(h).await;
    let d = s.device(&dev("a"));
    let t = PrivacyToken { token: vec![9; 20], timestamp: T0, sender_timestamp: T0 + 5 };
    assert_eq!(d.get_privacy_token("x@s.whatsapp.net").await.expect("get"), None);
    d.put_privacy_token("x@s.whatsapp.net", &t).await.expect("put");
    assert_eq!(d.get_privacy_token("x@s.whatsapp.net").await.expect("get"), Some(t));
    // The NCT salt: one per device, an empty save forgets it.
    assert_eq!(d.load_nct_salt().await.expect("salt"), None);
    d.save_nct_salt(&[3; 32]).await.expect("save salt");
    assert_eq!(d.load_nct_salt().await.expect("salt"), Some(vec![3; 32]));
    assert_eq!(s.device(&dev("b")).load_nct_salt().await.expect("other device"), None);
    d.save_nct_salt(&[]).await.expect("clear salt");
    assert_eq!(d.load_nct_salt().await.expect("salt"), None);
}

pub async fn many_devices(h: &dyn Harness) {
    let (s, _) = fresh(h).await;
    let (a, b) = (s.device(&dev("acct-a")), s.device(&dev("acct-b")));
    a.save_credentials(&creds(1)).await.expect("a");
    b.save_credentials(&creds(2)).await.expect("b");
    let x = addr("x@lid", 0);
    a.put_sessions(&[(x.clone(), b"A".to_vec())]).await.expect("a");
    b.put_sessions(&[(x.clone(), b"B".to_vec())]).await.expect("b");
    a.add_sender_key_holders("g@g.us", &["d1".into()]).await.expect("a");
    assert_eq!(a.get_sessions(std::slice::from_ref(&x)).await.expect("a")[0].as_deref(), Some(&b"A"[..]));
    assert_eq!(b.get_sessions(std::slice::from_ref(&x)).await.expect("b")[0].as_deref(), Some(&b"B"[..]));
    assert!(b.sender_key_holders("g@g.us").await.expect("b").is_empty());
    assert_eq!(s.devices().await.expect("devices"), vec![dev("acct-a"), dev("acct-b")]);
    s.delete_device(&dev("acct-a")).await.expect("delete");
    assert_eq!(a.load_credentials().await.expect("a"), None);
    assert_eq!(a.get_sessions(std::slice::from_ref(&x)).await.expect("a")[0], None);
    assert_eq!(b.load_credentials().await.expect("b"), Some(creds(2)));
    assert_eq!(s.devices().await.expect("devices"), vec![dev("acct-b")]);
    assert!(
        DeviceId::new("").is_err()
            && DeviceId::new("a\nb").is_err()
            && DeviceId::new("x".repeat(129)).is_err()
    );
}

pub async fn transactions(h: &dyn Harness) {
    let (s, _) = fresh(h).await;
    let d = s.device(&dev("a"));
    let mut n = 0u8;
    let keys = d
        .generate_pre_keys(2, &mut || {
            n += 1;
            kp(n)
        })
        .await
        .expect("gen");
    let x = addr("x@lid", 1);
    let mut tx = d.transaction();
    tx.put_session(&x, b"ratchet-1")
        .consume_pre_key(keys[0].id)
        .put_identity(&x, [7; 32])
        .put_inbound(&inbound("m1", T0))
        .put_sent_message("chat", "s1", b"p", 60)
        .put_app_state_version("regular", &AppStateVersion { version: 1, hash: [1; 128] });
    assert_eq!(tx.len(), 6);
    tx.commit().await.expect("commit");
    assert_eq!(
        d.get_sessions(std::slice::from_ref(&x)).await.expect("get")[0].as_deref(),
        Some(&b"ratchet-1"[..])
    );
    assert_eq!(d.pre_key_counts().await.expect("counts").consumed, 1);
    assert_eq!(d.pending_inbound(10).await.expect("pending").len(), 1);
    assert_eq!(d.get_identity(&x).await.expect("identity"), Some([7; 32]));
    // Dropped without commit: nothing happens.
    let mut tx = d.transaction();
    tx.put_session(&x, b"ratchet-2").put_inbound(&inbound("m2", T0));
    drop(tx);
    assert_eq!(
        d.get_sessions(std::slice::from_ref(&x)).await.expect("get")[0].as_deref(),
        Some(&b"ratchet-1"[..])
    );
    assert_eq!(d.pending_inbound(10).await.expect("pending").len(), 1);
    d.transaction().commit().await.expect("empty commit");
}

pub async fn rollback_on_error(h: &dyn Harness) {
    let (s, _) = fresh(h).await;
    let d = s.device(&dev("a"));
    let x = addr("x@lid", 1);
    d.put_sessions(&[(x.clone(), b"ratchet-1".to_vec())]).await.expect("put");
    d.put_inbound(&inbound("m1", T0)).await.expect("put");
    // The same message again (a replay): the advanced ratchet must not be kept either.
    let mut tx = d.transaction();
    tx.put_session(&x, b"ratchet-2")
        .put_sent_message("chat", "s9", b"p", 60)
        .put_inbound(&inbound("m1", T0))
        .put_session(&addr("y@lid", 0), b"other");
    match tx.commit().await {
        Err(Error::Conflict { table, .. }) => assert_eq!(table, "wa_inbound_messages"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        d.get_sessions(std::slice::from_ref(&x)).await.expect("get")[0].as_deref(),
        Some(&b"ratchet-1"[..])
    );
    assert_eq!(d.get_sessions(&[addr("y@lid", 0)]).await.expect("get")[0], None);
    assert_eq!(d.get_sent_message("chat", "s9").await.expect("get"), None);
    // The store is still usable after the rollback.
    d.put_sessions(&[(x.clone(), b"ratchet-3".to_vec())]).await.expect("put");
    assert_eq!(d.get_sessions(&[x]).await.expect("get")[0].as_deref(), Some(&b"ratchet-3"[..]));
}

pub async fn concurrent_writers(h: &dyn Harness) {
    let (s, _) = fresh(h).await;
    let tasks = 8u32;
    let per = 25u32;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let d = s.device(&dev(if t % 2 == 0 { "even" } else { "odd" }));
        handles.push(tokio::spawn(async move {
            for i in 0..per {
                let mut tx = d.transaction();
                tx.put_session(&addr(&format!("t{t}@lid"), i), &[t as u8, i as u8])
                    .put_inbound(&inbound(&format!("t{t}-{i}"), T0 + i64::from(i)));
                tx.commit().await.expect("commit");
            }
        }));
    }
    for h in handles {
        h.await.expect("task");
    }
    for (name, parity) in [("even", 0), ("odd", 1)] {
        let d = s.device(&dev(name));
        assert_eq!(d.pending_inbound(10_000).await.expect("pending").len() as u32, tasks / 2 * per);
        for t in (0..tasks).filter(|t| t % 2 == parity) {
            let addrs: Vec<_> = (0..per).map(|i| addr(&format!("t{t}@lid"), i)).collect();
            let got = d.get_sessions(&addrs).await.expect("get");
            for (i, g) in got.iter().enumerate() {
                assert_eq!(g.as_deref(), Some(&[t as u8, i as u8][..]));
            }
        }
    }
}

pub async fn reopen(h: &dyn Harness) {
    let c = clock();
    {
        let s = h.open(opts(&c, None)).await.expect("open");
        s.device(&dev("a")).save_credentials(&creds(3)).await.expect("save");
    }
    let s = h.open(opts(&c, None)).await.expect("reopen");
    let got = s.device(&dev("a")).load_credentials().await.expect("load");
    if h.persistent() {
        assert_eq!(got, Some(creds(3)));
    }
}

pub async fn encrypted_round_trip_and_rotation(h: &dyn Harness) {
    let c = clock();
    let k1 = EncryptionKey::Raw([1; 32]);
    let k2 = EncryptionKey::Passphrase {
        passphrase: "correct horse".into(),
        params: Argon2Params { m_cost_kib: 256, t_cost: 1, p_cost: 1 },
    };
    let s = h.open(opts(&c, Some(k1.clone()))).await.expect("open");
    let d = s.device(&dev("a"));
    d.save_credentials(&creds(5)).await.expect("save");
    d.put_sessions(&[(addr("x@lid", 0), b"sess".to_vec())]).await.expect("put");
    d.put_inbound(&inbound("m", T0)).await.expect("inbound");
    let id1 = s.key_id().await.expect("key id");
    s.rotate_key(Some(k2.clone())).await.expect("rotate");
    assert_ne!(s.key_id().await.expect("key id"), id1);
    // The rotated handle keeps working.
    assert_eq!(d.load_credentials().await.expect("load"), Some(creds(5)));
    drop(s);
    match h.open(opts(&c, Some(k1.clone()))).await {
        Err(Error::WrongKey { .. }) => {}
        other => panic!("old key must be refused after rotation, got {other:?}"),
    }
    let s = h.open(opts(&c, Some(k2.clone()))).await.expect("open with new key");
    let d = s.device(&dev("a"));
    assert_eq!(d.load_credentials().await.expect("load"), Some(creds(5)));
    assert_eq!(d.get_sessions(&[addr("x@lid", 0)]).await.expect("get")[0].as_deref(), Some(&b"sess"[..]));
    assert_eq!(d.pending_inbound(5).await.expect("pending").len(), 1);
    // Decrypting back to clear, then encrypting again from clear.
    s.rotate_key(None).await.expect("to clear");
    drop(s);
    assert!(matches!(h.open(opts(&c, Some(k2.clone()))).await, Err(Error::NotEncrypted)));
    let s = h.open(opts(&c, None)).await.expect("open clear");
    assert_eq!(s.device(&dev("a")).load_credentials().await.expect("load"), Some(creds(5)));
    s.rotate_key(Some(k1.clone())).await.expect("encrypt");
    drop(s);
    let s = h.open(opts(&c, Some(k1))).await.expect("open k1");
    assert_eq!(s.device(&dev("a")).load_credentials().await.expect("load"), Some(creds(5)));
}

pub async fn wrong_or_missing_key(h: &dyn Harness) {
    let c = clock();
    let s = h.open(opts(&c, Some(EncryptionKey::Raw([1; 32])))).await.expect("open");
    s.device(&dev("a")).save_credentials(&creds(5)).await.expect("save");
    drop(s);
    match h.open(opts(&c, Some(EncryptionKey::Raw([2; 32])))).await {
        Err(e @ Error::WrongKey { .. }) => assert!(e.to_string().contains("wrong encryption key")),
        other => panic!("expected WrongKey, got {other:?}"),
    }
    match h.open(opts(&c, None)).await {
        Err(e @ Error::KeyRequired { .. }) => assert!(e.to_string().contains("encrypted")),
        other => panic!("expected KeyRequired, got {other:?}"),
    }
    let pass = EncryptionKey::Passphrase {
        passphrase: "p".into(),
        params: Argon2Params { m_cost_kib: 256, t_cost: 1, p_cost: 1 },
    };
    assert!(matches!(h.open(opts(&c, Some(pass))).await, Err(Error::WrongKey { .. })));
}

pub async fn swapped_and_tampered_rows(h: &dyn Harness) {
    let c = clock();
    let s = h.open(opts(&c, Some(EncryptionKey::Raw([1; 32])))).await.expect("open");
    let d = s.device(&dev("a"));
    let (x, y) = (addr("x@lid", 0), addr("y@lid", 0));
    d.put_sessions(&[(x.clone(), b"session-x".to_vec()), (y.clone(), b"session-y".to_vec())])
        .await
        .expect("put");
    s.device(&dev("b")).put_sessions(&[(x.clone(), b"session-bx".to_vec())]).await.expect("put");
    let raw = h.raw().await;
    swap_rows(&*raw, Table::Sessions, "a", RowKey::new("x@lid", "0"), RowKey::new("y@lid", "0")).await;
    match d.get_sessions(std::slice::from_ref(&x)).await {
        Err(e @ Error::Integrity { .. }) => {
            assert!(e.to_string().contains("failed authentication"))
        }
        other => panic!("swapped row must fail, got {other:?}"),
    }
    // A row copied from another device is refused as well.
    let other = raw.get(Table::Sessions, "b", &[RowKey::new("x@lid", "0")]).await.expect("get")[0]
        .clone()
        .expect("row");
    raw.apply(&[Op::Put {
        table: Table::Sessions,
        device: "a".into(),
        row: Row { id: RowKey::new("x@lid", "0"), ..other },
    }])
    .await
    .expect("copy");
    assert!(matches!(d.get_sessions(std::slice::from_ref(&x)).await, Err(Error::Integrity { .. })));
    // One flipped bit.
    let mut row = raw.get(Table::Sessions, "b", &[RowKey::new("x@lid", "0")]).await.expect("get")[0]
        .clone()
        .expect("row");
    let last = row.value.len() - 1;
    row.value[last] ^= 0x01;
    raw.apply(&[Op::Put { table: Table::Sessions, device: "b".into(), row }]).await.expect("tamper");
    assert!(matches!(
        s.device(&dev("b")).get_sessions(std::slice::from_ref(&x)).await,
        Err(Error::Integrity { .. })
    ));
    // A clear row injected into an encrypted database is refused, not read.
    raw.apply(&[Op::Put {
        table: Table::Sessions,
        device: "a".into(),
        row: Row {
            id: RowKey::new("z@lid", "0"),
            value: [&[0u8][..], b"injected"].concat(),
            aux: 0,
            expires_at: None,
        },
    }])
    .await
    .expect("inject");
    assert!(matches!(d.get_sessions(&[addr("z@lid", 0)]).await, Err(Error::Integrity { .. })));
}

/// Writes known secrets through every secret-bearing domain.
async fn write_secrets(s: &Store) -> Vec<Vec<u8>> {
    let d = s.device(&dev("acct"));
    let c = creds(0x21);
    d.save_credentials(&c).await.expect("creds");
    let session = [secret(0x31).as_slice(), b"-session"].concat();
    let sender = [secret(0x32).as_slice(), b"-sender-key"].concat();
    let app_key = secret(0x33).to_vec();
    let pre_key_private = secret(0x34);
    let signed = SignedPreKey {
        id: 9,
        key_pair: KeyPair { public: [0x35; 32], private: secret(0x35) },
        signature: [1; 64],
        created_at: T0,
    };
    d.put_sessions(&[(addr("x@lid", 0), session.clone())]).await.expect("session");
    d.put_sender_key("g@g.us", &addr("x@lid", 0), &sender).await.expect("sender");
    d.put_app_state_sync_key(
        &[1],
        &AppStateSyncKey { key_data: app_key.clone(), fingerprint: vec![], timestamp: 1 },
    )
    .await
    .expect("app key");
    d.generate_pre_keys(1, &mut || KeyPair { public: [0x34; 32], private: pre_key_private })
        .await
        .expect("prekey");
    d.put_signed_pre_key(&signed).await.expect("signed");
    vec![
        c.noise_key.private.to_vec(),
        c.identity_key.private.to_vec(),
        c.signed_pre_key.key_pair.private.to_vec(),
        c.adv_secret_key.to_vec(),
        session,
        sender,
        app_key,
        pre_key_private.to_vec(),
        signed.key_pair.private.to_vec(),
    ]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Raw database bytes hold no secret when a key is configured. `control` is a second, fresh
/// database of the same backend written without a key: there every secret must be found,
/// which proves the search itself works.
pub async fn secrets_never_in_clear(h: &dyn Harness, control: &dyn Harness) {
    let c = clock();
    let clear = control.open(opts(&c, None)).await.expect("open control");
    let secrets = write_secrets(&clear).await;
    drop(clear);
    let dump = control.dump().await;
    for (i, s) in secrets.iter().enumerate() {
        assert!(
            contains(&dump, s),
            "control: secret {i} should be visible in an unencrypted {} database",
            control.name()
        );
    }
    let sealed = h.open(opts(&c, Some(EncryptionKey::Raw([0x77; 32])))).await.expect("open");
    let secrets = write_secrets(&sealed).await;
    // Rotation must not leave clear copies behind either.
    sealed.rotate_key(Some(EncryptionKey::Raw([0x78; 32]))).await.expect("rotate");
    drop(sealed);
    let dump = h.dump().await;
    assert!(dump.len() > 1000, "dump of {} looks empty", h.name());
    for (i, s) in secrets.iter().enumerate() {
        assert!(!contains(&dump, s), "secret {i} found in clear in the encrypted {} database", h.name());
    }
}

/// Instantiates the suite for one backend. `$make` yields `Option<Box<dyn Harness>>`.
#[macro_export]
macro_rules! conformance_suite {
    ($make:path) => {
        $crate::conformance_suite!(@cases $make;
            credentials, app_version, identities, sessions, pre_keys, signed_pre_keys, sender_keys, app_state,
            lid_mappings, session_migration, device_lists, sent_messages, inbound_messages, privacy_tokens,
            many_devices, transactions, rollback_on_error, concurrent_writers, reopen,
            encrypted_round_trip_and_rotation, wrong_or_missing_key, swapped_and_tampered_rows);

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn secrets_never_in_clear() {
            let (Some(h), Some(control)) = ($make().await, $make().await) else { return };
            $crate::conformance::secrets_never_in_clear(&*h, &*control).await;
        }
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(h) = $make().await else { return };
                $crate::conformance::$case(&*h).await;
            }
        )*
    };
}
