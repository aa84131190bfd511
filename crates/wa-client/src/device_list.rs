//! Contacts' device lists as we cache them: parsed from usync (hosted devices kept), changed by
//! `<notification type="devices">`, hashed (`participantListHashV2`), and corrected when the
//! server's `phash` in a message ack shows the list we sent to was stale.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use prost::Message as _;
use tracing::{debug, info, warn};
use wa_binary::{Jid, Node, Server};
use wa_store::{DeviceListStore, IdentityStore, SessionStore};

use crate::client::{Shared, signal_address};
use crate::error::{Error, Result};
use crate::event::Event;

/// The device id of a hosted (Cloud API) device: Baileys (`Signal/libsignal.ts`
/// `jidToSignalProtocolAddress`) refuses device 99 on any other server, and maps hosted
/// devices to 99 (`Signal/lid-mapping.ts`).
pub(crate) const HOSTED_DEVICE: u32 = 99;

/// Domain separation of the phone's signature over its key index list (WA Web
/// `ADV_PREFIX_KEY_INDEX_LIST_ACCOUNT_SIGNATURE`).
const KEY_INDEX_LIST_PREFIX: [u8; 2] = [6, 2];

/// whatsmeow's `participantListHashV2` (`send.go`): `2:` and the unpadded standard base64 of
/// the first six bytes of SHA-256 over the sorted `user.agent:device@server` strings
/// (whatsapp-rust `wacore/src/messages.rs` `participant_list_hash` likewise).
pub(crate) fn participant_hash(devices: &[Jid]) -> String {
    let mut ad: Vec<String> =
        devices.iter().map(|j| format!("{}.0:{}@{}", j.user(), j.device(), j.server().as_str())).collect();
    ad.sort_unstable();
    let hash = wa_crypto::sha256(&[ad.concat().as_bytes()]);
    format!("2:{}", STANDARD_NO_PAD.encode(&hash[..6]))
}

/// The JID of device `device` of `user` (a non-AD user JID): device 99 lives on the hosted
/// server of the user's namespace (whatsmeow `user.go` `parseDeviceList`).
pub(crate) fn device_jid(user: &Jid, device: u32) -> Result<Jid> {
    let bad = || Error::Malformed(format!("device id {device} of {user}"));
    let id = u16::try_from(device).map_err(|_| bad())?;
    let base = if device == HOSTED_DEVICE {
        let server = if user.server() == Server::Lid { Server::HostedLid } else { Server::Hosted };
        Jid::new(user.user(), server).map_err(|_| bad())?
    } else {
        user.clone()
    };
    if id == 0 { Ok(base) } else { base.with_device(id).map_err(|_| bad()) }
}

/// Device ids of a usync `<device-list>`: hosted devices are kept (as device 99, the only id a
/// hosted device has), as whatsmeow (`user.go` `parseDeviceList`) and Baileys
/// (`Utils/signal.ts` `extractDeviceJids`) keep them; a hosted device under another id, or
/// device 99 not marked hosted, is dropped as malformed.
pub(crate) fn parse_device_list(list: &Node) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for d in list.children_by_tag("device") {
        let id: u16 = d.attr_u64("id")?.try_into().map_err(|_| Error::Malformed("device id".into()))?;
        let id = u32::from(id);
        let hosted = d.opt_attr_str("is_hosted").as_deref() == Some("true");
        if hosted != (id == HOSTED_DEVICE) {
            debug!(id, hosted, "device list entry with a hosted flag that does not fit its id; skipped");
            continue;
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Whether a device is a hosted (Cloud API) one, which only 1:1 chats reach: groups leave them
/// out (whatsmeow `send.go` `prepareMessageNode`, Baileys `messages-send.ts`).
pub(crate) fn is_hosted(jid: &Jid) -> bool {
    matches!(jid.server(), Server::Hosted | Server::HostedLid)
}

/// The valid key indexes of a `<key-index-list>`'s signed bytes; when we hold the user's
/// primary identity, its signature must verify with it.
async fn key_indexes(shared: &Shared, user: &Jid, signed: &[u8]) -> Result<Vec<u32>> {
    let bad = |w: &str| Error::Malformed(format!("key index list of {user}: {w}"));
    let list = wa_proto::AdvSignedKeyIndexList::decode(signed).map_err(|_| bad("protobuf"))?;
    let details = list.details.as_deref().ok_or_else(|| bad("no details"))?;
    if let Some(primary) = shared.store.get_identity(&signal_address(user)).await? {
        let key = wa_crypto::PublicKey::from_bytes(&primary).map_err(|_| bad("stored identity"))?;
        let sig: [u8; 64] = list
            .account_signature
            .as_deref()
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| bad("signature"))?;
        if !key.verify(&[&KEY_INDEX_LIST_PREFIX[..], details].concat(), &sig) {
            return Err(bad("signature does not verify with the primary's identity"));
        }
    }
    Ok(wa_proto::AdvKeyIndexList::decode(details).map_err(|_| bad("details"))?.valid_indexes)
}

/// Applies `<notification type="devices">` to the cache: one `<add>` or `<remove>` of a
/// `<device jid [key-index]>` with its `<key-index-list ts>`, or an `<update>` (WA Web
/// `WAWebHandleDeviceNotification` as whatsapp-rust `wacore/src/stanza/devices.rs` reads it).
/// A cached list is updated when the result hashes to the notification's `device_hash` (or
/// it carries none) and dropped otherwise, as whatsmeow (`notification.go`
/// `handleDeviceNotification`) does; an uncached list stays uncached (the next send asks
/// usync). A removed device's session is deleted (Baileys `messages-recv.ts`).
///
/// A LID-first account hears of a migrated contact by its LID (`from="…@lid"`, devices on the
/// LID server: the live stanza in whatsapp-rust `wacore/src/stanza/devices.rs`); a legacy one
/// by phone number with the LID in a `lid` attribute (whatsmeow `handleDeviceNotification`),
/// which we learn. The user's other name, when known, has its cached list updated alike.
pub(crate) async fn apply_notification(shared: &Shared, node: &Node) -> Result<()> {
    let from = node.attr_jid("from")?.to_non_ad();
    if let Ok(lid) = node.attr_jid("lid") {
        let lid = lid.to_non_ad();
        let fresh = crate::lid::unknown_jids(shared, std::iter::once((&from, &lid)));
        crate::lid::store(shared, fresh).await?;
    }
    let other = crate::lid::alternate(shared, &from).await?;
    let users: Vec<Jid> = std::iter::once(from.clone()).chain(other.clone()).collect();
    let (pn, lid) = crate::recv::both_names(&from, other);
    for change in node.child_nodes() {
        match change.tag.as_str() {
            "add" | "remove" => {
                let added = change.tag == "add";
                let device = change
                    .child("device")
                    .ok_or_else(|| Error::Malformed("devices notification without <device>".into()))?
                    .attr_jid("jid")?;
                let kil = change.child("key-index-list");
                // A removal's key index list carries only its timestamp; an addition's is the
                // phone-signed list, which must name the new device's key index.
                let listed = match (added, kil.and_then(Node::content_bytes)) {
                    (true, Some(signed)) => {
                        let key_index = change.child("device").and_then(|d| d.attr_u64("key-index").ok());
                        match key_indexes(shared, &from, signed).await {
                            Ok(valid) => key_index.is_some_and(|k| valid.iter().any(|v| u64::from(*v) == k)),
                            Err(e) => {
                                warn!(%e, "devices notification with a bad key index list");
                                false
                            }
                        }
                    }
                    (true, None) => false,
                    (false, _) => kil.is_some(),
                };
                let hash = change.opt_attr_str("device_hash").map(|h| h.into_owned());
                for user in &users {
                    let dev = u32::from(device.device());
                    if !added {
                        let jid = device_jid(user, dev)?;
                        let _guard = shared.signal_lock.lock().await;
                        shared.store.delete_session(&signal_address(&jid)).await?;
                    }
                    if !listed {
                        info!(%user, "devices notification not verifiable; dropping the cached list");
                        shared.store.invalidate_device_list(&user.to_string()).await?;
                        continue;
                    }
                    // The `device_hash` names the list of `from`'s namespace.
                    let expected = if user == &from { hash.as_deref() } else { None };
                    update_cached(shared, user, dev, added, expected).await?;
                }
                shared.emit(Event::DeviceListChanged {
                    user: from.clone(),
                    pn: pn.clone(),
                    lid: lid.clone(),
                    device,
                    added,
                });
            }
            "update" => {
                for user in &users {
                    shared.store.invalidate_device_list(&user.to_string()).await?;
                }
            }
            other => debug!(tag = other, "unknown device list change"),
        }
    }
    Ok(())
}

/// Adds or removes `device` in `user`'s cached list, keeping its expiry; drops the list when
/// the result does not hash to `expected`.
async fn update_cached(
    shared: &Shared,
    user: &Jid,
    device: u32,
    add: bool,
    expected: Option<&str>,
) -> Result<()> {
    let key = user.to_string();
    let now = shared.now();
    let Some(mut list) = shared.store.get_device_list(&key).await?.filter(|l| l.expires_at > now) else {
        return Ok(());
    };
    list.devices.retain(|d| *d != device);
    if add {
        list.devices.push(device);
        list.devices.sort_unstable();
    }
    let jids = list.devices.iter().map(|d| device_jid(user, *d)).collect::<Result<Vec<_>>>()?;
    let hash = participant_hash(&jids);
    if expected.is_some_and(|e| e != hash) {
        info!(%user, "device list hash differs after the notification; dropping the cached list");
        return shared.store.invalidate_device_list(&key).await.map_err(Into::into);
    }
    shared.store.put_device_list(&key, &list.devices, Some(&hash), list.expires_at - now).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn participant_hash_is_whatsmeows_v2() {
        let a: Jid = "15550001000@s.whatsapp.net".parse().unwrap();
        let b: Jid = "15550001000:3@s.whatsapp.net".parse().unwrap();
        let expected = wa_crypto::sha256(&[b"15550001000.0:0@s.whatsapp.net15550001000.0:3@s.whatsapp.net"]);
        assert_eq!(
            participant_hash(&[b.clone(), a.clone()]),
            format!("2:{}", STANDARD_NO_PAD.encode(&expected[..6]))
        );
        assert_eq!(participant_hash(&[a, b]).len(), 10);
    }

    #[test]
    fn hosted_devices_are_kept_as_device_99_on_the_hosted_server() {
        let list = Node::new("device-list").children([
            Node::new("device").attr("id", "0"),
            Node::new("device").attr("id", "99").attr("is_hosted", "true").attr("key-index", "4"),
            Node::new("device").attr("id", "5").attr("is_hosted", "true"),
            Node::new("device").attr("id", "99"),
        ]);
        let ids = parse_device_list(&list).unwrap();
        assert_eq!(ids, vec![0, 99], "hosted 99 kept; a hosted non-99 and a plain 99 are malformed");
        let pn: Jid = "15550001000@s.whatsapp.net".parse().unwrap();
        let lid: Jid = "123456789012345@lid".parse().unwrap();
        assert_eq!(device_jid(&pn, 99).unwrap().to_string(), "15550001000:99@hosted");
        assert_eq!(device_jid(&lid, 99).unwrap().to_string(), "123456789012345:99@hosted.lid");
        assert_eq!(device_jid(&pn, 0).unwrap(), pn);
        assert!(is_hosted(&device_jid(&pn, 99).unwrap()));
        assert!(!is_hosted(&device_jid(&pn, 3).unwrap()));
        let bad = Node::new("device-list").children([Node::new("device").attr("id", "70000")]);
        assert!(parse_device_list(&bad).is_err());
    }
}
