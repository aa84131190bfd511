//! Honouring the server's `phash` in a 1:1 message's ack: it is the participant hash of the
//! devices the server expected the message to reach. When it differs from the hash of those we
//! encrypted for (plus our own sending device, as whatsmeow `send.go` `SendMessage` and
//! whatsapp-rust hash it), our cached device lists were stale: we drop them (as whatsmeow
//! does), ask usync again, and send the message to each device we missed, one stanza per
//! device (the form a retry answer takes), so nobody waits for a retry round.

use prost::Message as _;
use tracing::{info, warn};
use wa_binary::{Jid, Node};
use wa_proto::Message;
use wa_signal::CiphertextMessage;

use crate::client::Shared;
use crate::conn::Connection;
use crate::creds::CredentialsExt;
use crate::device_list::participant_hash;
use crate::error::Result;
use crate::send::{dsm, enc_node, get_devices, invalidate_devices, media_type, pad, sessions_for};

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
