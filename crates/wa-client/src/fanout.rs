//! Honouring the server's `phash` in a 1:1 message's ack: it is the participant hash of the
//! devices the server expected the message to reach. When it differs from the hash of those we
//! encrypted for (plus our own sending device, as whatsmeow `send.go` `SendMessage` and
//! whatsapp-rust hash it), our cached device lists were stale: we drop them (as whatsmeow
//! does), ask usync again, and send the message to each device we missed, one stanza per
//! device (the form a retry answer takes), so nobody waits for a retry round.
//!
//! Group messages carry our own `phash`: the hash of every member's device as we see them,
//! ours and the sending device included, hosted devices left out (whatsmeow `send.go`
//! `sendGroup`). A different `phash` in the ack means a member's device list changed behind
//! our back: whatsmeow drops its group cache and whatsapp-rust (`send.rs`
//! `spawn_phash_validation`) forgets who holds its sender key. We ask for the group and its
//! members' devices again and send each device that lacks our sender key the message with the
//! key distribution inside (a retry answer's form), so it reads this message and the next ones.

use std::collections::HashSet;

use prost::Message as _;
use tracing::{info, warn};
use wa_binary::{Jid, Node};
use wa_proto::Message;
use wa_proto::message::SenderKeyDistributionMessage as SkdmProto;
use wa_signal::{CiphertextMessage, SenderKeyRecord};
use wa_store::SenderKeyStore;

use crate::client::{Shared, signal_address};
use crate::conn::Connection;
use crate::creds::CredentialsExt;
use crate::device_list::{is_hosted, participant_hash};
use crate::error::{Error, Result};
use crate::send::{
    dsm, enc_node, get_devices, group_participants, invalidate_devices, media_type, pad, sessions_for,
};

/// Compares the ack's `phash` with the devices `stanza` went to and, when stale, sends
/// `message` to the devices missed. Failures are logged: the message itself was accepted.
pub(crate) async fn honour_phash(
    shared: &Shared,
    conn: &Connection,
    stanza: &Node,
    message: &Message,
    phash: &str,
) {
    match resend_to_missing(shared, conn, stanza, message, phash).await {
        Ok(0) => {}
        Ok(n) => info!(n, "device list was stale; sent to the devices missed"),
        Err(e) => warn!(%e, "could not send to the devices the server expected"),
    }
}

/// The device JIDs a fanned-out stanza names in `<participants>`.
fn addressed(stanza: &Node) -> Vec<Jid> {
    stanza
        .child("participants")
        .map(|p| p.children_by_tag("to").filter_map(|t| t.attr_jid("jid").ok()).collect())
        .unwrap_or_default()
}

async fn resend_to_missing(
    shared: &Shared,
    conn: &Connection,
    stanza: &Node,
    message: &Message,
    phash: &str,
) -> Result<usize> {
    let to = stanza.attr_jid("to")?.to_non_ad();
    let sent = addressed(stanza);
    let (own, own_lid) = shared.own_ids()?;
    // Our device in the namespace the chat is addressed in.
    let me = match own_lid {
        Some(l) if to.is_lid() => l,
        _ => own,
    };
    let mut ours = sent.clone();
    ours.push(me.clone());
    if participant_hash(&ours) == phash {
        return Ok(0);
    }
    let own_user = me.to_non_ad();
    info!(%to, ours = %participant_hash(&ours), server = phash, "stale device list");
    invalidate_devices(shared, &to).await?;
    invalidate_devices(shared, &own_user).await?;
    let users = if own_user == to { vec![to.clone()] } else { vec![to.clone(), own_user.clone()] };
    let missing: Vec<Jid> =
        get_devices(shared, &users).await?.into_iter().filter(|d| *d != me && !sent.contains(d)).collect();
    if missing.is_empty() {
        return Ok(0);
    }
    let id = stanza.opt_attr_str("id").map(|s| s.into_owned()).unwrap_or_default();
    let ty = stanza.opt_attr_str("type").map(|s| s.into_owned()).unwrap_or_else(|| "text".into());
    let mediatype = media_type(message);
    let creds = shared.credentials()?;
    let local = creds.local_identity();
    let _guard = shared.signal_lock.lock().await;
    let sessions = sessions_for(shared, &missing).await?;
    let mut tx = shared.store.transaction();
    let mut out = Vec::with_capacity(sessions.len());
    for (jid, addr, mut rec) in sessions {
        let body = if jid.user() == own_user.user() && own_user != to {
            pad(shared, dsm(&to, message).encode_to_vec())
        } else {
            pad(shared, message.encode_to_vec())
        };
        let ct = rec.encrypt(&local, &body)?;
        tx.put_session(&addr, &rec.to_bytes());
        let mut children = vec![enc_node(&ct, mediatype, None)];
        if matches!(ct, CiphertextMessage::PreKey(_))
            && let Some(di) = &creds.signed_device_identity
        {
            children.push(Node::new("device-identity").bytes(di.clone()));
        }
        out.push(
            Node::new("message")
                .attr("to", jid)
                .attr("id", id.as_str())
                .attr("type", ty.as_str())
                .children(children),
        );
    }
    tx.commit().await?;
    for node in &out {
        conn.send(node)?;
    }
    Ok(out.len())
}

/// The `phash` a group message carries: `devices` (the members' non-hosted devices) with our
/// sending device `me` among them.
pub(crate) fn group_phash(devices: &[Jid], me: &Jid) -> String {
    if devices.contains(me) {
        participant_hash(devices)
    } else {
        let mut all = devices.to_vec();
        all.push(me.clone());
        participant_hash(&all)
    }
}

/// Compares the ack's `phash` with the one group message `stanza` carried and, when they
/// differ, sends `message` with our sender key to the member devices that lack it. Failures
/// are logged: the message itself was accepted.
pub(crate) async fn honour_group_phash(
    shared: &Shared,
    conn: &Connection,
    stanza: &Node,
    message: &Message,
    phash: &str,
) {
    if stanza.opt_attr_str("phash").as_deref() == Some(phash) {
        return;
    }
    match send_key_to_missing(shared, conn, stanza, message, phash).await {
        Ok(0) => {}
        Ok(n) => info!(n, "group device lists were stale; sent our sender key to the devices missed"),
        Err(e) => warn!(%e, "could not send our sender key to the devices the server expected"),
    }
}

async fn send_key_to_missing(
    shared: &Shared,
    conn: &Connection,
    stanza: &Node,
    message: &Message,
    phash: &str,
) -> Result<usize> {
    let group = stanza.attr_jid("to")?;
    info!(%group, server = phash, "stale group device lists");
    let (own, own_lid) = shared.own_ids()?;
    let (mut members, lid_mode) = group_participants(shared, &group).await?;
    let me = if lid_mode { own_lid.unwrap_or_else(|| own.clone()) } else { own.clone() };
    if !members.iter().any(|m| m.user() == me.user()) {
        members.push(me.to_non_ad());
    }
    for m in &members {
        invalidate_devices(shared, m).await?;
    }
    let devices: Vec<Jid> = get_devices(shared, &members)
        .await?
        .into_iter()
        .filter(|d| *d != own && *d != me && !is_hosted(d))
        .collect();
    let g = group.to_string();
    let _guard = shared.signal_lock.lock().await;
    let holders: HashSet<String> = shared.store.sender_key_holders(&g).await?.into_iter().collect();
    let missing: Vec<Jid> = devices.into_iter().filter(|d| !holders.contains(&d.to_string())).collect();
    if missing.is_empty() {
        return Ok(0);
    }
    let Some(own_key) = shared.store.get_sender_key(&g, &signal_address(&me)).await? else {
        return Ok(0);
    };
    let record = SenderKeyRecord::from_bytes(&own_key)
        .map_err(|e| Error::CorruptStore(format!("own sender key: {e}")))?;
    let with_key = Message {
        sender_key_distribution_message: Some(SkdmProto {
            group_id: Some(g.clone()),
            axolotl_sender_key_distribution_message: Some(record.distribution_message()?.to_bytes()),
        }),
        ..message.clone()
    };
    let body = pad(shared, with_key.encode_to_vec());
    let id = stanza.opt_attr_str("id").map(|s| s.into_owned()).unwrap_or_default();
    let ty = stanza.opt_attr_str("type").map(|s| s.into_owned()).unwrap_or_else(|| "text".into());
    let creds = shared.credentials()?;
    let local = creds.local_identity();
    let mut tx = shared.store.transaction();
    let mut reached = Vec::new();
    let mut out = Vec::new();
    for (jid, addr, mut rec) in sessions_for(shared, &missing).await? {
        let ct = rec.encrypt(&local, &body)?;
        tx.put_session(&addr, &rec.to_bytes());
        let mut children = vec![enc_node(&ct, media_type(message), None)];
        if matches!(ct, CiphertextMessage::PreKey(_))
            && let Some(di) = &creds.signed_device_identity
        {
            children.push(Node::new("device-identity").bytes(di.clone()));
        }
        reached.push(jid.to_string());
        // One device's copy in a group: `participant` names it (a retry answer's form).
        out.push(
            Node::new("message")
                .attr("to", group.clone())
                .attr("id", id.as_str())
                .attr("type", ty.as_str())
                .attr("participant", jid)
                .opt_attr("addressing_mode", lid_mode.then_some("lid"))
                .children(children),
        );
    }
    tx.add_sender_key_holders(&g, &reached);
    tx.commit().await?;
    for node in &out {
        conn.send(node)?;
    }
    Ok(out.len())
}
