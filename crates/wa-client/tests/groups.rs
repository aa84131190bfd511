//! Groups against wa-emulator: create, list, describe, participants, subject, invite links
//! (get, reset, join, revoked), leave, the server's refusals as typed errors, and typing in a
//! group reaching another member.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use wa_binary::Server;
use wa_client::{Error, Event, GroupError, INVITE_LINK_PREFIX, Jid, ParticipantAction};

use common::{emulator, next_matching, pair, sqlite_client};

const ME: &str = "15550181000";
const ERIN: &str = "15550181001";
const FRANK: &str = "15550181002";

fn pn(n: &str) -> Jid {
    Jid::new(n, Server::Pn).unwrap()
}

fn group_error(e: Error) -> GroupError {
    match e {
        Error::Group(g) => g,
        e => panic!("expected a group error, got {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_list_describe_change_invite_leave_and_join_back() {
    let emu = emulator(181).await;
    for (n, name) in [(ME, "Me"), (ERIN, "Erin"), (FRANK, "Frank")] {
        emu.create_account(n, name).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let client = sqlite_client(&emu, &dir.path().join("wa.db"), 1811).await;
    let mut events = client.events();
    pair(&emu, &client, &mut events, ME).await;
    let me = pn(ME);

    let g = client.create_group("team", &[pn(ERIN)]).await.unwrap();
    assert_eq!(g.subject, "team");
    assert_eq!(g.participants.len(), 2);
    assert!(g.is_admin(&me));
    assert!(!g.is_admin(&pn(ERIN)));
    let joined = client.joined_groups().await.unwrap();
    assert_eq!(joined.iter().map(|j| &j.jid).collect::<Vec<_>>(), vec![&g.jid]);

    // Description: set (members are told), changed (the change names the previous one),
    // deleted.
    client.set_group_description(&g.jid, Some("be nice")).await.unwrap();
    let told = next_matching(&mut events, "description notification", |e| match e {
        Event::GroupUpdate(u) if u.action == "description" => Some(u.clone()),
        _ => None,
    })
    .await;
    assert_eq!((told.group.clone(), told.description.as_deref()), (g.jid.clone(), Some("be nice")));
    let d = client.group_info(&g.jid).await.unwrap().description.expect("a description");
    assert_eq!(d.text, "be nice");
    assert_eq!(d.set_by.as_ref().map(Jid::user), Some(ME));
    client.set_group_description(&g.jid, Some("be kind")).await.unwrap();
    let listed = client.joined_groups().await.unwrap();
    assert_eq!(listed[0].description.as_ref().map(|d| d.text.as_str()), Some("be kind"));
    assert_ne!(listed[0].description.as_ref().map(|d| &d.id), Some(&d.id));
    client.set_group_description(&g.jid, None).await.unwrap();
    assert_eq!(client.group_info(&g.jid).await.unwrap().description, None);

    // Participants: one added, a number without WhatsApp refused on its own; promote, demote.
    let nobody = pn("15559990000");
    let r =
        client.update_group_participants(&g.jid, ParticipantAction::Add, &[pn(FRANK), nobody]).await.unwrap();
    assert_eq!(
        r.iter().map(|c| (c.jid.user(), c.error)).collect::<Vec<_>>(),
        vec![(FRANK, None), ("15559990000", Some(404))]
    );
    client.update_group_participants(&g.jid, ParticipantAction::Promote, &[pn(FRANK)]).await.unwrap();
    assert!(client.group_info(&g.jid).await.unwrap().is_admin(&pn(FRANK)));
    client.update_group_participants(&g.jid, ParticipantAction::Demote, &[pn(FRANK)]).await.unwrap();
    let info = client.group_info(&g.jid).await.unwrap();
    assert!(!info.is_admin(&pn(FRANK)));
    assert_eq!(info.participants.len(), 3);
    client.set_group_subject(&g.jid, "team two").await.unwrap();
    assert_eq!(client.group_info(&g.jid).await.unwrap().subject, "team two");

    // Invite links: stable until reset; a reset revokes the old one.
    let first = client.group_invite_link(&g.jid, false).await.unwrap();
    assert!(first.starts_with(INVITE_LINK_PREFIX), "{first}");
    assert_eq!(client.group_invite_link(&g.jid, false).await.unwrap(), first);
    let second = client.group_invite_link(&g.jid, true).await.unwrap();
    assert_ne!(second, first);
    assert_eq!(client.group_info_from_link(&second).await.unwrap().jid, g.jid);

    // Leave: no longer listed, no longer readable; then back in through the new link only.
    client.leave_group(&g.jid).await.unwrap();
    assert!(client.joined_groups().await.unwrap().is_empty());
    assert_eq!(group_error(client.group_info(&g.jid).await.unwrap_err()), GroupError::Forbidden);
    assert_eq!(group_error(client.leave_group(&g.jid).await.unwrap_err()), GroupError::Forbidden);
    assert_eq!(
        group_error(client.join_group_with_link(&first).await.unwrap_err()),
        GroupError::InviteRevoked
    );
    assert_eq!(
        group_error(client.join_group_with_link("nonsense").await.unwrap_err()),
        GroupError::InviteInvalid
    );
    assert_eq!(client.join_group_with_link(&second).await.unwrap(), g.jid);
    let back = client.group_info(&g.jid).await.unwrap();
    assert!(back.participants.iter().any(|p| p.jid.user() == ME));

    // Back as a plain member: admin-only requests are refused.
    assert!(!back.is_admin(&me));
    assert_eq!(group_error(client.group_invite_link(&g.jid, false).await.unwrap_err()), GroupError::NotAdmin);
    let refused = client.update_group_participants(&g.jid, ParticipantAction::Remove, &[pn(ERIN)]).await;
    assert_eq!(group_error(refused.unwrap_err()), GroupError::Forbidden);
    let unknown = Jid::group("120363999999999999").unwrap();
    assert_eq!(group_error(client.group_info(&unknown).await.unwrap_err()), GroupError::NotFound);
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_in_a_group_reaches_the_other_members_only() {
    const A: &str = "15550182000";
    const B: &str = "15550182001";
    const OUTSIDER: &str = "15550182002";
    let emu = emulator(182).await;
    for n in [A, B, OUTSIDER] {
        emu.create_account(n, n).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let a = sqlite_client(&emu, &dir.path().join("a.db"), 1821).await;
    let mut a_events = a.events();
    pair(&emu, &a, &mut a_events, A).await;
    let b = sqlite_client(&emu, &dir.path().join("b.db"), 1822).await;
    let mut b_events = b.events();
    pair(&emu, &b, &mut b_events, B).await;
    let o = sqlite_client(&emu, &dir.path().join("o.db"), 1823).await;
    let mut o_events = o.events();
    pair(&emu, &o, &mut o_events, OUTSIDER).await;

    let lid_group = emu.create_lid_group(A, "lid team", &[B]).unwrap();
    // The outsider typing "in" the group reaches nobody; A's typing reaches B, named as the
    // group names members (by LID here).
    o.send_chat_state(&lid_group, wa_client::ChatStateKind::Typing).await.unwrap();
    a.send_chat_state(&lid_group, wa_client::ChatStateKind::Recording).await.unwrap();
    let got = next_matching(&mut b_events, "A's chat state", |e| match e {
        Event::ChatState(c) => Some(c.clone()),
        _ => None,
    })
    .await;
    assert_eq!(got.chat, lid_group);
    assert_eq!(got.sender.server(), Server::Lid);
    assert_eq!(got.sender.user(), emu.phone(A).unwrap().lid().user());
    assert!(got.composing && got.audio);
    a.send_chat_state(&lid_group, wa_client::ChatStateKind::Paused).await.unwrap();
    let paused = next_matching(&mut b_events, "A paused", |e| match e {
        Event::ChatState(c) => Some(c.clone()),
        _ => None,
    })
    .await;
    assert!(!paused.composing);
    // A gets nothing back of its own typing (B's typing is the next thing A sees).
    b.send_chat_state(&lid_group, wa_client::ChatStateKind::Typing).await.unwrap();
    let at_a = next_matching(&mut a_events, "B's chat state", |e| match e {
        Event::ChatState(c) => Some(c.clone()),
        _ => None,
    })
    .await;
    assert_eq!(at_a.sender.user(), emu.phone(B).unwrap().lid().user());
    for c in [a, b, o] {
        c.disconnect().await;
    }
}
