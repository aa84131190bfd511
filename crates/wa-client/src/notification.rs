//! Server notifications (`<notification type=…>`): prekey refills, identity changes, device
//! lists, group changes, pairing-code steps, own-account changes, app-state changes, contacts'
//! pictures and about texts, trusted-contact tokens, reach-out time-locks, media retry answers. Every one is
//! acknowledged first (whatsmeow `notification.go` `handleNotification`, Baileys
//! `messages-recv.ts` `handleNotification`), so a failure handling it never makes the server
//! deliver it again and again.

use std::sync::Arc;

use tracing::{debug, warn};
use wa_binary::{Jid, Node};

use crate::client::{Shared, upload_pre_keys};
use crate::conn::Connection;
use crate::error::Result;
use crate::event::{AppStateVersion, Event, GroupUpdateEvent, PictureEvent};
use crate::recv::ack_for;

fn unix_t(node: &Node) -> u64 {
    node.opt_attr_str("t").and_then(|t| t.parse().ok()).unwrap_or(0)
}

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
            if let Ok(from) = node.attr_jid("from") {
                // The user's LID beside its number (whatsmeow notification.go
                // `handleDeviceNotification`).
                if let Ok(lid) = node.attr_jid("lid") {
                    crate::lid::learn_jids(shared, &[(&lid, &from)]).await?;
                }
            }
            crate::device_list::apply_notification(shared, &node).await?;
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
                    description: child.child("body").and_then(|b| {
                        b.content_str()
                            .map(str::to_owned)
                            .or_else(|| b.content_bytes().map(|x| String::from_utf8_lossy(x).into_owned()))
                    }),
                }));
            }
        }
        "link_code_companion_reg" => {
            if let Err(e) = crate::pair_code::primary_hello(shared, conn, &node).await {
                warn!(%e, "pairing code: primary hello failed");
                shared.emit(Event::PairError { error: e.to_string() });
            }
        }
        "account_sync" => crate::account_sync::handle(shared, &node).await?,
        "server_sync" => {
            // Another device wrote to these collections: fetch them (whatsmeow
            // `notification.go` `handleAppStateNotification`, Baileys `messages-recv.ts`).
            let collections = node
                .children_by_tag("collection")
                .filter_map(|c| {
                    let name = c.opt_attr_str("name")?.into_owned();
                    Some(AppStateVersion { name, version: c.opt_attr_str("version")?.parse().ok()? })
                })
                .collect::<Vec<_>>();
            let known: Vec<wa_appstate::Collection> =
                collections.iter().filter_map(|c| c.name.parse().ok()).collect();
            if collections.is_empty() {
                warn!("server_sync notification names no usable collection");
            } else {
                shared.emit(Event::AppStateChanged { collections });
            }
            if !known.is_empty() {
                crate::appstate::spawn_sync(shared.clone(), known, false);
            }
        }
        "picture" => picture(shared, &node),
        "status" => {
            let text = node
                .child("set")
                .and_then(|s| s.content_bytes().map(|b| String::from_utf8_lossy(b).into_owned()));
            if let (Ok(jid), Some(text)) = (node.attr_jid("from"), text) {
                shared.emit(Event::AboutChanged { jid: jid.to_non_ad(), text, timestamp: unix_t(&node) });
            }
        }
        "privacy_token" => crate::privacy_token::on_notification(shared, &node).await?,
        "mex" => crate::reachout::on_mex_notification(shared, &node),
        "mediaretry" => match crate::mediaretry::parse_notification(&node) {
            Ok(ev) => shared.emit(Event::MediaRetry(ev)),
            Err(e) => warn!(%e, "malformed mediaretry notification"),
        },
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

/// `<notification type="picture">`: `<set jid id [author]/>`, `<add …/>` or `<delete jid/>`
/// (whatsmeow `handlePictureNotification`).
fn picture(shared: &Shared, node: &Node) {
    for child in node.child_nodes() {
        let removed = match child.tag.as_str() {
            "set" | "add" => false,
            "delete" => true,
            _ => continue,
        };
        let Ok(jid) = child.attr_jid("jid").or_else(|_| node.attr_jid("from")) else { continue };
        shared.emit(Event::Picture(PictureEvent {
            jid: jid.to_non_ad(),
            author: child.attr_jid("author").ok(),
            picture_id: (!removed).then(|| child.opt_attr_str("id").map(|i| i.into_owned())).flatten(),
            removed,
            timestamp: unix_t(node),
        }));
    }
}
