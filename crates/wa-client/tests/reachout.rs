//! Reach-out limits end to end against wa-emulator's model: a contact's token opens a
//! restricted account's chat with it (and we give ours back), a first contact beyond the
//! account's limit is refused once with 463 as `Error::ReachoutRestricted` and never retried,
//! history sync brings tokens and the NCT salt (valid cs-tokens), and a time-lock arrives as
//! an event, answers the query, and ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::sync::Arc;

use common::{T, init_tracing, next_matching, pair, sqlite_client};
use prost::Message as _;
use wa_client::{Error, Event};
use wa_emulator::reachout::{ReachoutLimits, TokenSeen};
use wa_emulator::{Emulator, EmulatorConfig, EmulatorHandle, ManualClock, WorldEvent};
use wa_proto::message::{HistorySyncNotification, ProtocolMessage, protocol_message};

const ME: &str = "15550016000";
const BOB: &str = "15550016001";
const CAROL: &str = "15550016002";
const DAVE: &str = "15550016003";

async fn emulator(seed: u64, clock: &ManualClock) -> EmulatorHandle {
    init_tracing();
    Emulator::start(EmulatorConfig { seed: Some(seed), clock: Arc::new(clock.clone()), ..Default::default() })
        .await
        .unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The emulator's verdicts on our 1:1 messages to `to`: (token seen, refused), in order.
fn reach_outs(emu: &EmulatorHandle, to: &str) -> Vec<(TokenSeen, bool)> {
    emu.events()
        .into_iter()
        .filter_map(|e| match e {
            WorldEvent::ReachOut { pn, to: t, token, refused, .. } if pn == ME && t == to => {
                Some((token, refused))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contacts_token_opens_a_restricted_accounts_chat() {
    let clock = ManualClock::new(now());
    let emu = emulator(1601, &clock).await;
    let (me_id, _) =
        emu.with_world(|w| (w.create_account(ME, "Me").unwrap(), w.create_account(BOB, "Bob").unwrap()));
    let dir = tempfile::tempdir().unwrap();
    let client = sqlite_client(&emu, &dir.path().join("wa.db"), 16011).await;
    let mut events = client.events();
    let me = pair(&emu, &client, &mut events, ME).await;
    let bob = emu.phone(BOB).unwrap();
    emu.with_world(|w| w.set_reachout_restricted(me_id, true));
    // The phone's bootstrap history brings the account's NCT salt (stored before the event):
    // from then on a first contact carries a cs-token, which a restriction does not lift.
    next_matching(&mut events, "the bootstrap history with the salt", |e| match e {
        Event::HistorySync(h) if h.nct_salt.is_some() => Some(()),
        _ => None,
    })
    .await;

    // No token from Bob: refused once, typed, not retried.
    let err = client.send_text(&bob.lid(), "hello").await.unwrap_err();
    assert!(matches!(err, Error::ReachoutRestricted { .. }), "{err:?}");

    // Bob's phone writes to us and gives us its token with it: kept under his LID.
    bob.send_text(&me.to_non_ad(), "hi").unwrap();
    let stored_as = next_matching(&mut events, "bob's token", |e| match e {
        Event::PrivacyToken { stored_as, .. } => Some(stored_as.clone()),
        _ => None,
    })
    .await;
    assert_eq!(stored_as, bob.lid());

    // The next message carries it and goes through; then we give Bob our token.
    client.send_text(&bob.lid(), "hi back").await.unwrap();
    assert_eq!(reach_outs(&emu, BOB), [(TokenSeen::CsToken, true), (TokenSeen::TcToken, false)]);
    let given = emu
        .wait_for(
            T,
            |e| matches!(e, WorldEvent::TokenGiven { issuer, holder } if issuer == ME && holder == BOB),
        )
        .await;
    assert!(given.is_some(), "we never gave Bob our token");
    client.disconnect().await;
}

/// The token fields of a `HistorySync` (whatsmeow WAWebProtobufsHistorySync.proto numbers),
/// which wa-proto's subset does not name: what our phone's history sync carries.
#[derive(Clone, PartialEq, prost::Message)]
struct TokenHistory {
    #[prost(int32, optional, tag = "1")]
    sync_type: Option<i32>,
    #[prost(message, repeated, tag = "2")]
    conversations: Vec<TokenConversation>,
    #[prost(bytes = "vec", optional, tag = "19")]
    nct_salt: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TokenConversation {
    #[prost(string, optional, tag = "1")]
    id: Option<String>,
    #[prost(bytes = "vec", optional, tag = "21")]
    tc_token: Option<Vec<u8>>,
    #[prost(uint64, optional, tag = "22")]
    tc_token_timestamp: Option<u64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_contacts_beyond_the_limit_get_one_463_and_history_brings_tokens_and_the_salt() {
    let clock = ManualClock::new(now());
    let emu = emulator(1602, &clock).await;
    let (me_id, salt, carols) = emu.with_world(|w| {
        let me = w.create_account(ME, "Me").unwrap();
        w.create_account(BOB, "Bob").unwrap();
        let carol = w.create_account(CAROL, "Carol").unwrap();
        w.create_account(DAVE, "Dave").unwrap();
        w.set_reachout_limits(me, ReachoutLimits { new_contacts: 1, window_secs: 86_400 });
        // Carol gave us her token before this companion was linked: only history has it.
        w.give_token(carol, me);
        (me, w.nct_salt(me), w.token_given(carol, me).unwrap())
    });
    let dir = tempfile::tempdir().unwrap();
    let client = sqlite_client(&emu, &dir.path().join("wa.db"), 16021).await;
    let mut events = client.events();
    let me = pair(&emu, &client, &mut events, ME).await;
    let (bob, carol, dave) = (emu.phone(BOB).unwrap(), emu.phone(CAROL).unwrap(), emu.phone(DAVE).unwrap());

    // Our phone's history sync: the account's NCT salt and Carol's chat with her token.
    let blob = TokenHistory {
        sync_type: Some(wa_proto::history_sync::HistorySyncType::Recent as i32),
        conversations: vec![TokenConversation {
            id: Some(carol.lid().to_string()),
            tc_token: Some(carols.0),
            tc_token_timestamp: Some(carols.1),
        }],
        nct_salt: Some(salt.to_vec()),
    }
    .encode_to_vec();
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&blob).unwrap();
    let n = HistorySyncNotification {
        initial_hist_bootstrap_inline_payload: Some(z.finish().unwrap()),
        sync_type: Some(wa_proto::message::HistorySyncType::Recent as i32),
        ..Default::default()
    };
    let message = wa_proto::Message {
        protocol_message: Some(Box::new(ProtocolMessage {
            r#type: Some(protocol_message::Type::HistorySyncNotification as i32),
            history_sync_notification: Some(n),
            ..Default::default()
        })),
        ..Default::default()
    };
    emu.with_world(|w| w.phone_send(me_id, &me.to_non_ad(), &message)).unwrap();
    // (The phone's own history after pairing arrives too; this is the one with Carol's chat.)
    let carol_chat = carol.lid().to_string();
    next_matching(&mut events, "history sync", |e| match e {
        Event::HistorySync(h) if h.conversations.iter().any(|c| c.id.as_deref() == Some(&*carol_chat)) => {
            Some(())
        }
        _ => None,
    })
    .await;

    // The first new contact is allowed, with a valid cs-token; Carol's token opens her chat
    // beyond the limit; Dave is over it.
    client.send_text(&bob.lid(), "first").await.unwrap();
    client.send_text(&carol.lid(), "to a token holder").await.unwrap();
    let err = client.send_text(&dave.lid(), "second").await.unwrap_err();
    assert!(matches!(err, Error::ReachoutRestricted { .. }), "{err:?}");
    // Bob again: already counted, allowed. Sent after the refusal on the same connection, so a
    // retry of Dave's message would have reached the server before it.
    client.send_text(&bob.lid(), "again").await.unwrap();
    assert_eq!(reach_outs(&emu, DAVE), [(TokenSeen::CsToken, true)], "exactly one 463, no retry");
    assert_eq!(reach_outs(&emu, CAROL), [(TokenSeen::TcToken, false)]);
    assert_eq!(reach_outs(&emu, BOB), [(TokenSeen::CsToken, false), (TokenSeen::CsToken, false)]);
    assert_eq!(emu.with_world(|w| w.reachouts_in_window(me_id)), 1);
    assert!(dave.inbox().is_empty(), "a refused message is not delivered");
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_lock_is_announced_queried_and_ends() {
    let start = now();
    let clock = ManualClock::new(start);
    let emu = emulator(1603, &clock).await;
    let me_id = emu.with_world(|w| {
        w.create_account(BOB, "Bob").unwrap();
        w.create_account(ME, "Me").unwrap()
    });
    let dir = tempfile::tempdir().unwrap();
    let client = sqlite_client(&emu, &dir.path().join("wa.db"), 16031).await;
    let mut events = client.events();
    pair(&emu, &client, &mut events, ME).await;
    let bob = emu.phone(BOB).unwrap();
    assert!(!client.reachout_timelock().await.unwrap().active);

    emu.with_world(|w| w.set_reachout_timelock(me_id, start + 600, "RESTRICT_ALL_COMPANIONS"));
    let lock = next_matching(&mut events, "time-lock", |e| match e {
        Event::ReachoutTimelock { active, until, enforcement_type } => {
            Some((*active, *until, enforcement_type.clone()))
        }
        _ => None,
    })
    .await;
    assert_eq!(lock, (true, Some(start + 600), "RESTRICT_ALL_COMPANIONS".to_owned()));
    let state = client.reachout_timelock().await.unwrap();
    assert_eq!((state.active, state.until), (true, Some(start + 600)));
    let err = client.send_text(&bob.lid(), "hello").await.unwrap_err();
    assert!(matches!(err, Error::ReachoutRestricted { .. }), "{err:?}");

    // The end passes: the service lifts it (seen at the next query) and says so.
    clock.advance(600);
    assert!(!client.reachout_timelock().await.unwrap().active);
    let ended = next_matching(&mut events, "time-lock lifted", |e| match e {
        Event::ReachoutTimelock { active, until, .. } => Some((*active, *until)),
        _ => None,
    })
    .await;
    assert_eq!(ended, (false, None));
    client.send_text(&bob.lid(), "hello again").await.unwrap();
    client.disconnect().await;
}

/// The client's clock reading the emulator's, so a token ages for both at once.
struct SameClock(ManualClock);

impl wa_store::Clock for SameClock {
    fn now(&self) -> i64 {
        use wa_emulator::Clock as _;
        self.0.now_unix() as i64
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_dropped_from_the_store_and_never_sent() {
    let clock = ManualClock::new(now());
    let emu = emulator(1604, &clock).await;
    emu.with_world(|w| {
        w.create_account(ME, "Me").unwrap();
        w.create_account(BOB, "Bob").unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wa.db");
    let client = common::sqlite_builder(&emu, &path, 16041)
        .await
        .clock(Arc::new(SameClock(clock.clone())))
        .build()
        .unwrap();
    let mut events = client.events();
    let me = pair(&emu, &client, &mut events, ME).await;
    let bob = emu.phone(BOB).unwrap();
    bob.send_text(&me.to_non_ad(), "hi").unwrap();
    next_matching(&mut events, "bob's token", |e| matches!(e, Event::PrivacyToken { .. }).then_some(()))
        .await;
    client.send_text(&bob.lid(), "fresh").await.unwrap();

    // Five weeks on, past the four weekly buckets a token lives.
    clock.advance(5 * 7 * 86_400);
    client.send_text(&bob.lid(), "later").await.unwrap();
    let seen = reach_outs(&emu, BOB);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], (TokenSeen::TcToken, false));
    assert!(!matches!(seen[1].0, TokenSeen::TcToken | TokenSeen::BadTcToken), "{seen:?}");

    // The stale token is gone from the store; when we issued ours is kept.
    use wa_store::PrivacyTokenStore as _;
    let store = wa_store::Store::open_sqlite(&path, Default::default()).await.unwrap();
    let held = store
        .device(&wa_store::DeviceId::new("acct").unwrap())
        .get_privacy_token(&bob.lid().to_string())
        .await
        .unwrap()
        .expect("the record stays");
    assert!(held.token.is_empty(), "{held:?}");
    assert_eq!(held.timestamp, 0);
    client.disconnect().await;
}
