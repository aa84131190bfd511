//! Server notifications (`<notification type=…>`): prekey refills, identity changes, device
//! lists, group changes, pairing-code steps.

use std::sync::Arc;

use tracing::{debug, warn};
use wa_binary::{Jid, Node};

use crate::client::{Shared, upload_pre_keys};
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
                // A contact's identity changed: drop its sessions (not our own prekeys' business).
                crate::identity::handle_identity_change(shared, &node).await?;
            }
        }
        "devices" => {
            crate::device_list::apply_notification(shared, &node).await?;
        }
        "w:gp2" => {
            let group = node.attr_jid("from")?;
            let author = node.attr_jid("participant").ok();
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
