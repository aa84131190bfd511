//! `<notification type="account_sync">`: changes to our own account. Its `<devices>` child is
//! the account's new device list: checked against its `dhash` and cached, so the next send
//! addresses a newly linked companion (or stops addressing a removed one) at once instead of
//! when the cache expires (whatsmeow `notification.go` `handleAccountSyncNotification` /
//! `handleOwnDevicesNotification`, whatsapp-rust `notification/device.rs`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use tracing::{debug, warn};
use wa_binary::{Jid, Node};
use wa_store::DeviceListStore;

use crate::client::Shared;
use crate::error::Result;
use crate::event::{Event, PictureEvent};

/// whatsmeow's `participantListHashV2` (`send.go`): `2:` and the unpadded base64 of the first
/// six bytes of SHA-256 over the sorted `user.agent:device@server` strings.
pub(crate) fn device_list_hash(devices: &[Jid]) -> String {
    let mut ad: Vec<String> = devices
        .iter()
        .map(|j| format!("{}.{}:{}@{}", j.user(), j.agent(), j.device(), j.server().as_str()))
        .collect();
    ad.sort();
    let hash = wa_crypto::sha256(&[ad.concat().as_bytes()]);
    format!("2:{}", STANDARD_NO_PAD.encode(&hash[..6]))
}

/// Handles an `account_sync` notification (already acknowledged).
pub(crate) async fn handle(shared: &Shared, node: &Node) -> Result<()> {
    let from = node.attr_jid("from")?.to_non_ad();
    let (own, own_lid) = shared.own_ids()?;
    let ours = from.user() == own.user() || own_lid.as_ref().is_some_and(|l| l.user() == from.user());
    if !ours {
        warn!(%from, "account_sync about another account ignored");
        return Ok(());
    }
    for child in node.child_nodes() {
        match child.tag.as_str() {
            "devices" => own_devices(shared, &from, child).await?,
            "picture" => shared.emit(Event::Picture(PictureEvent {
                jid: own.to_non_ad(),
                author: None,
                picture_id: None,
                removed: false,
                timestamp: node.opt_attr_str("t").and_then(|t| t.parse().ok()).unwrap_or(0),
            })),
            other => debug!(item = other, "account_sync item"),
        }
    }
    Ok(())
}

async fn own_devices(shared: &Shared, from: &Jid, devices: &Node) -> Result<()> {
    let mut list: Vec<Jid> =
        devices.children_by_tag("device").filter_map(|d| d.attr_jid("jid").ok()).collect();
    list.retain(|j| j.user() == from.user());
    let dhash = devices.opt_attr_str("dhash").map(|h| h.into_owned());
    let key = from.to_string();
    if list.is_empty() {
        shared.store.invalidate_device_list(&key).await?;
        return Ok(());
    }
    if dhash.as_deref() == Some(device_list_hash(&list).as_str()) {
        let ids: Vec<u32> = list.iter().map(|j| u32::from(j.device())).collect();
        shared.store.put_device_list(&key, &ids, dhash.as_deref(), crate::send::DEVICE_LIST_TTL).await?;
    } else {
        // A list that does not match its hash is not trusted: the next send asks usync.
        warn!(%from, ?dhash, "own device list does not match its hash");
        shared.store.invalidate_device_list(&key).await?;
    }
    shared.emit(Event::OwnDevicesChanged { devices: list });
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hash_matches_whatsmeow() {
        // Computed outside Rust (Python) from whatsmeow's participantListHashV2 definition.
        let phone = Jid::pn("15551234567").unwrap();
        assert_eq!(device_list_hash(&[phone.clone().with_device(3).unwrap(), phone]), "2:hREyzbmN");
    }
}
