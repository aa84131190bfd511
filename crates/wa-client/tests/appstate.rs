//! App-state sync end to end with the emulator: the phone's keys arrive after pairing and
//! the collections it wrote before are synced (contact names, archive, mute); the phone's
//! later changes arrive as events; our own changes reach the phone; a tampered patch and a
//! key the phone did not share are recovered from without the application's help.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{emulator, next_matching, pair, sqlite_client};
use wa_appstate::action;
use wa_client::appstate::{Collection, SyncAction};
use wa_client::{Event, EventStream, Jid};

/// Waits for an applied app-state action matching `f`; fails on a sync failure.
async fn next_action<R>(
    events: &mut EventStream,
    what: &str,
    mut f: impl FnMut(&SyncAction) -> Option<R>,
) -> R {
    next_matching(events, what, |e| match e {
        Event::AppState(a) => f(&a.action),
        Event::AppStateSyncFailed { collection, error } => panic!("{collection} failed: {error}"),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_arrive_after_pairing_and_both_sides_see_each_others_changes() {
    let emu = emulator(151).await;
    let me = emu.with_world(|w| w.create_account("15550015101", "Me")).unwrap();
    let bob: Jid = "15550015102@s.whatsapp.net".parse().unwrap();
    let carol: Jid = "15550015103@s.whatsapp.net".parse().unwrap();
    // Written by the phone before this device existed: reaches it as snapshots.
    emu.with_world(|w| {
        w.phone_app_state_mutation(
            me,
            &[action::contact(&bob.to_string(), "Bob Builder", Some("Bob"), 1_000)],
        )?;
        w.phone_app_state_mutation(me, &[action::archive(&bob.to_string(), true, &[], 2_000)])?;
        w.phone_app_state_mutation(me, &[action::mute(&bob.to_string(), Some(4_102_444_800_000), 3_000)])
    })
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let client = sqlite_client(&emu, &dir.path().join("wa.db"), 1511).await;
    let mut events = client.events();
    pair(&emu, &client, &mut events, "15550015101").await;

    // The key share arrives as a peer message, then every collection syncs.
    let mut synced = std::collections::BTreeSet::new();
    next_matching(&mut events, "all five collections synced", |e| match e {
        Event::AppStateSynced { collection, .. } => {
            synced.insert(*collection);
            (synced.len() == Collection::ALL.len()).then_some(())
        }
        Event::AppStateSyncFailed { collection, error } => panic!("{collection} failed: {error}"),
        _ => None,
    })
    .await;
    assert_eq!(client.contact_name(&bob).await.unwrap().as_deref(), Some("Bob Builder"));
    let bob_chat = client.chat_settings(&bob).await.unwrap();
    assert!(bob_chat.archived);
    assert_eq!(bob_chat.muted_until, Some(4_102_444_800_000));
    assert!(!bob_chat.pinned);

    // The phone pins a chat: server_sync, a patch, an event.
    emu.with_world(|w| w.phone_app_state_mutation(me, &[action::pin(&carol.to_string(), true, 5_000)]))
        .unwrap();
    let pinned = next_action(&mut events, "carol pinned", |a| match a {
        SyncAction::Pin { chat, pinned } if *chat == carol.to_string() => Some(*pinned),
        _ => None,
    })
    .await;
    assert!(pinned);
    assert!(client.chat_settings(&carol).await.unwrap().pinned);

    // We mark Bob's chat read and unarchive it: the phone's collection has both.
    client.mark_chat_read(&bob, true).await.unwrap();
    client.archive_chat(&bob, false).await.unwrap();
    let (read, archived) = emu.with_world(|w| {
        (
            w.app_state_value(me, &["markChatAsRead", &bob.to_string()]).unwrap(),
            w.app_state_value(me, &["archive", &bob.to_string()]).unwrap(),
        )
    });
    assert_eq!(read.mark_chat_as_read_action.unwrap().read, Some(true));
    assert_eq!(archived.archive_chat_action.unwrap().archived, Some(false));
    // Our own patches came back to us and were applied like any other.
    let bob_chat = client.chat_settings(&bob).await.unwrap();
    assert_eq!(bob_chat.marked_read, Some(true));
    assert!(!bob_chat.archived);
    assert_eq!(emu.with_world(|w| w.app_state_version(me, "regular_low")), 4);
    // A label on the chat (collection `regular`) reaches the phone too.
    client.label_chat("3", &bob, true).await.unwrap();
    let labeled = emu.with_world(|w| w.app_state_value(me, &["label_jid", "3", &bob.to_string()]));
    assert_eq!(labeled.unwrap().label_association_action.unwrap().labeled, Some(true));
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_patch_is_recovered_by_a_full_resync() {
    let emu = emulator(152).await;
    let me = emu.with_world(|w| w.create_account("15550015201", "Me")).unwrap();
    let chat: Jid = "15550015202@s.whatsapp.net".parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = sqlite_client(&emu, &dir.path().join("wa.db"), 1521).await;
    let mut events = client.events();
    pair(&emu, &client, &mut events, "15550015201").await;
    emu.with_world(|w| w.phone_app_state_mutation(me, &[action::pin(&chat.to_string(), true, 1_000)]))
        .unwrap();
    next_action(&mut events, "the first pin", |a| matches!(a, SyncAction::Pin { .. }).then_some(())).await;

    // The server serves the next regular_low patch with a flipped byte: its MACs fail, and
    // the client fetches a snapshot, which verifies.
    emu.with_world(|w| {
        w.tamper_next_app_state_patch(me, "regular_low")?;
        w.phone_app_state_mutation(me, &[action::archive(&chat.to_string(), true, &[], 2_000)])
    })
    .unwrap();
    let from_snapshot = next_matching(&mut events, "the archive, recovered", |e| match e {
        Event::AppState(a) if matches!(a.action, SyncAction::Archive { archived: true, .. }) => {
            Some(a.from_snapshot)
        }
        Event::AppStateSyncFailed { collection, error } => panic!("{collection} failed: {error}"),
        _ => None,
    })
    .await;
    assert!(from_snapshot, "the tampered patch must not have been applied");
    let settings = client.chat_settings(&chat).await.unwrap();
    assert!(settings.archived && settings.pinned);
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_phone_did_not_share_is_requested() {
    let emu = emulator(153).await;
    let me = emu.with_world(|w| w.create_account("15550015301", "Me")).unwrap();
    let chat: Jid = "15550015302@s.whatsapp.net".parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = sqlite_client(&emu, &dir.path().join("wa.db"), 1531).await;
    let mut events = client.events();
    pair(&emu, &client, &mut events, "15550015301").await;
    next_matching(&mut events, "first sync", |e| {
        matches!(e, Event::AppStateSynced { collection: Collection::RegularHigh, .. }).then_some(())
    })
    .await;

    // A patch under a key this device never got: it asks the phone, gets it, applies.
    emu.with_world(|w| {
        w.phone_rotate_app_state_key_unshared(me);
        w.phone_app_state_mutation(me, &[action::mute(&chat.to_string(), Some(4_102_444_800_000), 1_000)])
    })
    .unwrap();
    let muted = next_action(&mut events, "the mute", |a| match a {
        SyncAction::Mute { muted, .. } => Some(*muted),
        _ => None,
    })
    .await;
    assert!(muted);
    assert_eq!(client.chat_settings(&chat).await.unwrap().muted_until, Some(4_102_444_800_000));
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_client_continues_from_its_stored_version() {
    let emu = emulator(154).await;
    let me = emu.with_world(|w| w.create_account("15550015401", "Me")).unwrap();
    let chat: Jid = "15550015402@s.whatsapp.net".parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wa.db");
    let client = sqlite_client(&emu, &path, 1541).await;
    let mut events = client.events();
    pair(&emu, &client, &mut events, "15550015401").await;
    emu.with_world(|w| w.phone_app_state_mutation(me, &[action::pin(&chat.to_string(), true, 1_000)]))
        .unwrap();
    next_action(&mut events, "the pin", |a| matches!(a, SyncAction::Pin { .. }).then_some(())).await;
    client.disconnect().await;
    drop(client);

    // Changed while no client runs; a new client on the same store logs in and fetches only
    // the patch after the version it stored (no snapshot).
    emu.with_world(|w| {
        w.phone_app_state_mutation(me, &[action::archive(&chat.to_string(), true, &[], 2_000)])
    })
    .unwrap();
    let client = sqlite_client(&emu, &path, 1542).await;
    let mut events = client.events();
    client.connect().await.unwrap();
    let from_snapshot = next_matching(&mut events, "the archive", |e| match e {
        Event::AppState(a) if matches!(a.action, SyncAction::Archive { .. }) => Some(a.from_snapshot),
        Event::AppStateSyncFailed { collection, error } => panic!("{collection} failed: {error}"),
        _ => None,
    })
    .await;
    assert!(!from_snapshot, "the stored state at version 1 was continued");
    let settings = client.chat_settings(&chat).await.unwrap();
    assert!(settings.pinned && settings.archived);
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_nobody_has_ends_in_sync_failed_without_a_loop() {
    let emu = emulator(155).await;
    let me = emu.with_world(|w| w.create_account("15550015501", "Me")).unwrap();
    let chat: Jid = "15550015502@s.whatsapp.net".parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = sqlite_client(&emu, &dir.path().join("wa.db"), 1551).await;
    let mut events = client.events();
    pair(&emu, &client, &mut events, "15550015501").await;
    next_matching(&mut events, "first sync", |e| {
        matches!(e, Event::AppStateSynced { collection: Collection::RegularHigh, .. }).then_some(())
    })
    .await;

    // A patch under a key the phone then loses: the key request is answered without it, a
    // snapshot needs it too, and the collection is reported failed, once.
    emu.with_world(|w| {
        let key = w.phone_rotate_app_state_key_unshared(me);
        w.phone_app_state_mutation(me, &[action::mute(&chat.to_string(), None, 1_000)])?;
        assert!(w.phone_forget_app_state_key(me, &key));
        Ok::<_, wa_emulator::ControlError>(())
    })
    .unwrap();
    let failed = next_matching(&mut events, "the failure", |e| match e {
        Event::AppStateSyncFailed { collection, error } => Some((*collection, error.clone())),
        Event::AppState(a) => panic!("applied a patch it cannot verify: {a:?}"),
        _ => None,
    })
    .await;
    assert_eq!(failed.0, Collection::RegularHigh);
    assert!(failed.1.contains("no app-state key"), "{}", failed.1);
    assert_eq!(client.chat_settings(&chat).await.unwrap().muted_until, None);
    // An explicit sync tries once more and ends (no loop): the same failure, then Ok.
    client.sync_app_state(false).await.unwrap();
    next_matching(&mut events, "the failure again", |e| {
        matches!(e, Event::AppStateSyncFailed { collection: Collection::RegularHigh, .. }).then_some(())
    })
    .await;
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_on_a_stale_version_is_refused_with_409_and_sent_again_after_a_fetch() {
    let emu = emulator(156).await;
    let me = emu.with_world(|w| w.create_account("15550015601", "Me")).unwrap();
    let bob: Jid = "15550015602@s.whatsapp.net".parse().unwrap();
    let carol: Jid = "15550015603@s.whatsapp.net".parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = sqlite_client(&emu, &dir.path().join("wa.db"), 1561).await;
    let mut events = client.events();
    pair(&emu, &client, &mut events, "15550015601").await;
    next_matching(&mut events, "first sync", |e| {
        matches!(e, Event::AppStateSynced { collection: Collection::RegularHigh, .. }).then_some(())
    })
    .await;

    // The phone mutes Carol just before our mute of Bob lands: ours builds on a stale version.
    emu.with_world(|w| {
        w.phone_change_before_next_upload(
            me,
            vec![action::mute(&carol.to_string(), Some(4_102_444_800_000), 1_000)],
        )
    })
    .unwrap();
    client.mute_chat(&bob, Some(4_102_444_900_000)).await.unwrap();

    // Refused once (409), fetched, sent again on the new version and accepted.
    let outcomes: Vec<(bool, u64)> = emu
        .events()
        .iter()
        .filter_map(|e| match e {
            wa_emulator::WorldEvent::AppStatePatchRefused { collection, code, .. }
                if collection == "regular_high" =>
            {
                Some((false, u64::from(*code)))
            }
            wa_emulator::WorldEvent::AppStatePatchAccepted { collection, version, .. }
                if collection == "regular_high" =>
            {
                Some((true, *version))
            }
            _ => None,
        })
        .collect();
    assert_eq!(outcomes, [(false, 409), (true, 2)]);
    // Both changes hold on the phone and here.
    let (bobs, carols) = emu.with_world(|w| {
        (
            w.app_state_value(me, &["mute", &bob.to_string()]).unwrap(),
            w.app_state_value(me, &["mute", &carol.to_string()]).unwrap(),
        )
    });
    assert_eq!(bobs.mute_action.unwrap().mute_end_timestamp, Some(4_102_444_900_000));
    assert_eq!(carols.mute_action.unwrap().mute_end_timestamp, Some(4_102_444_800_000));
    assert_eq!(client.chat_settings(&bob).await.unwrap().muted_until, Some(4_102_444_900_000));
    assert_eq!(client.chat_settings(&carol).await.unwrap().muted_until, Some(4_102_444_800_000));
    assert_eq!(emu.with_world(|w| w.app_state_version(me, "regular_high")), 2);
    client.disconnect().await;
}
