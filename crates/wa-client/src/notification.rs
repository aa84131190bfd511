//! Server notifications (`<notification type=…>`): prekey refills, identity changes, device
//! lists, group changes, pairing-code steps.

use std::sync::Arc;

use tracing::{debug, warn};
use wa_binary::{Jid, Node};

use crate::client::{Shared, ensure_pre_keys, upload_pre_keys};
use crate::conn::Connection;
use crate::error::Result;
use crate::event::{Event, GroupUpdateEvent};
use crate::recv::ack_for;

/// Handles a `<notification>`.
pub(crate) async fn handle_notification(shared: &Arc<Shared>, conn: &Connection, node: Node) -> Result<()> {
    conn.send(&ack_for(&node, None))?;
    let ty = node.opt_attr_str("type").unwrap_or_default().into_owned();
    match ty.as_str() {
        "encrypt" => {
            if node.child("count").is_some() {
                let s = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = upload_pre_keys(&s, crate::client::REFILL_PRE_KEYS).await {
                        warn!(%e, "prekey refill failed");
                    }
                });
            } else if node.child("identity").is_some() {
                let s = shared.clone();
                tokio::spawn(async move {
                    let _ = ensure_pre_keys(&s).await;
                });
            }
        }
        "devices" => {
            if let Ok(from) = node.attr_jid("from") {
                // The user's LID beside its number (whatsmeow notification.go
                // `handleDeviceNotification`).
                if let Ok(lid) = node.attr_jid("lid") {
                    crate::lid::learn_jids(shared, &[(&lid, &from)]).await?;
                }
                crate::send::invalidate_devices(shared, &from).await?;
            }
        }
        "w:gp2" => {
            let group = node.attr_jid("from")?;
            let author = node.attr_jid("participant").ok();
            // Members and the author with their other names (whatsmeow notification.go: group
            // notifications feed the LID map).
            let mut pairs = Vec::new();
            if let Some(a) = &author {
                let alt = if a.is_lid() { "participant_pn" } else { "participant_lid" };
                if let Ok(b) = node.attr_jid(alt) {
                    pairs.push((a.to_non_ad(), b.to_non_ad()));
                }
            }
            for child in node.child_nodes() {
                pairs.extend(participant_pairs(child));
                if let Some(g) = child.child("group") {
                    pairs.extend(participant_pairs(g));
                }
            }
            let fresh = crate::lid::unknown_jids(shared, pairs.iter().map(|(a, b)| (a, b)));
            crate::lid::store(shared, fresh).await?;
            for child in node.child_nodes() {
                let participants: Vec<Jid> =
                    child.children_by_tag("participant").filter_map(|p| p.attr_jid("jid").ok()).collect();
                if matches!(child.tag.as_str(), "add" | "remove" | "leave") {
                    crate::send::reset_group_sender_key(shared, &group, child.tag == "add").await?;
                }
                shared.emit(Event::GroupUpdate(GroupUpdateEvent {
                    group: group.clone(),
                    author: author.clone(),
                    action: child.tag.to_string(),
                    participants,
                    subject: child.opt_attr_str("subject").map(|s| s.into_owned()),
                }));
            }
        }
        "link_code_companion_reg" => {
            if let Err(e) = crate::pair_code::primary_hello(shared, conn, &node).await {
                warn!(%e, "pairing code: primary hello failed");
                shared.emit(Event::PairError { error: e.to_string() });
            }
        }
        other => debug!(r#type = other, "notification"),
    }
    Ok(())
}

/// The `(jid, other name)` of every `<participant>` child: `lid` beside a phone-number `jid`,
/// `phone_number` beside a LID one (group metadata and `w:gp2` notifications).
pub(crate) fn participant_pairs(parent: &Node) -> Vec<(Jid, Jid)> {
    parent
        .children_by_tag("participant")
        .filter_map(|p| {
            let jid = p.attr_jid("jid").ok()?;
            let alt = if jid.is_lid() { p.attr_jid("phone_number") } else { p.attr_jid("lid") }.ok()?;
            Some((jid.to_non_ad(), alt.to_non_ad()))
        })
        .collect()
}
