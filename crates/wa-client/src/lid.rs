//! Phone number ↔ LID for contacts and ourselves.
//!
//! WhatsApp names a user by phone number (`…@s.whatsapp.net`) or by LID (`…@lid`); a
//! LID-migrated account addresses 1:1 chats by LID. The mapping is learned from what the server
//! tells us (pair-success and `<success lid>` for ourselves; `sender_pn`/`sender_lid`,
//! `participant_pn`/`participant_lid`, `peer_recipient_pn`/`peer_recipient_lid` on messages and
//! receipts; `devices` and `w:gp2` notifications; group metadata; usync `<lid>`; history sync)
//! and kept in the store's [`LidStore`], with a bounded in-memory cache in front.
//!
//! One contact has one Signal address: the LID once it is known (whatsmeow message.go
//! `decryptMessages` and send.go `encryptMessageForDevices`; Baileys `resolveLIDSignalAddress`).
//! Sessions and identity keys kept under the phone-number address move to the LID address the
//! first time the contact is used after its LID became known (whatsmeow `migrateSessionStore`,
//! Baileys `migrateSession`: the phone-number session replaces the LID one).

use std::collections::{HashMap, HashSet};

use tracing::{debug, info};
use wa_binary::{Jid, Node, Server};
use wa_store::{LidStore, ProtocolAddress, SessionStore};

use crate::client::{Shared, lock, signal_address};
use crate::conn::server_jid;
use crate::error::{Error, Result};

/// Entries the in-memory cache holds before it starts over (the store keeps everything).
const CACHE_LIMIT: usize = 50_000;

/// Mappings seen recently, and contacts whose phone-number Signal state was already moved.
#[derive(Debug, Default)]
pub(crate) struct LidCache {
    pn_to_lid: HashMap<String, String>,
    lid_to_pn: HashMap<String, String>,
    migrated: HashSet<String>,
}

impl LidCache {
    fn insert(&mut self, lid: &str, pn: &str) {
        if self.pn_to_lid.len() >= CACHE_LIMIT {
            self.pn_to_lid.clear();
            self.lid_to_pn.clear();
        }
        if let Some(old) = self.pn_to_lid.insert(pn.to_owned(), lid.to_owned())
            && old != lid
        {
            self.lid_to_pn.remove(&old);
        }
        if let Some(old) = self.lid_to_pn.insert(lid.to_owned(), pn.to_owned())
            && old != pn
        {
            self.pn_to_lid.remove(&old);
        }
    }
}

/// A user part without the device, or `None` for JIDs that are neither PN nor LID users.
fn user_of(jid: &Jid, server: Server) -> Option<&str> {
    (jid.server() == server).then(|| jid.user())
}

/// Orders a pair of JIDs (either way round) into `(lid user, pn user)`, when one is a LID and
/// the other a phone number.
pub(crate) fn pair_of(a: &Jid, b: &Jid) -> Option<(String, String)> {
    match (a.server(), b.server()) {
        (Server::Lid, Server::Pn) => Some((a.user().to_owned(), b.user().to_owned())),
        (Server::Pn, Server::Lid) => Some((b.user().to_owned(), a.user().to_owned())),
        _ => None,
    }
}

/// Records mappings `(lid user, pn user)`; only ones not already known reach the store.
pub(crate) async fn learn(shared: &Shared, pairs: &[(String, String)]) -> Result<()> {
    let fresh = unknown(shared, pairs.iter().map(|(l, p)| (l.as_str(), p.as_str())));
    store(shared, fresh).await
}

/// [`learn`] for JID pairs as stanzas carry them (either order; others are ignored).
pub(crate) async fn learn_jids(shared: &Shared, pairs: &[(&Jid, &Jid)]) -> Result<()> {
    let fresh = unknown_jids(shared, pairs.iter().copied());
    store(shared, fresh).await
}

/// The JID pairs among `pairs` (either order) whose mapping is not known yet, as `(lid user,
/// pn user)`. Known pairs, the usual case on every message, cost a cache lookup and no
/// allocation. Pass the result to [`store`].
pub(crate) fn unknown_jids<'a>(
    shared: &Shared,
    pairs: impl Iterator<Item = (&'a Jid, &'a Jid)>,
) -> Vec<(String, String)> {
    unknown(
        shared,
        pairs.filter_map(|(a, b)| match (a.server(), b.server()) {
            (Server::Lid, Server::Pn) => Some((a.user(), b.user())),
            (Server::Pn, Server::Lid) => Some((b.user(), a.user())),
            _ => None,
        }),
    )
}

fn unknown<'a>(shared: &Shared, pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<(String, String)> {
    let cache = lock(&shared.lids);
    pairs
        .filter(|(lid, pn)| !lid.is_empty() && !pn.is_empty())
        .filter(|(lid, pn)| cache.pn_to_lid.get(*pn).map(String::as_str) != Some(*lid))
        .map(|(lid, pn)| (lid.to_owned(), pn.to_owned()))
        .collect()
}

/// Stores mappings [`unknown_jids`] found and caches them.
pub(crate) async fn store(shared: &Shared, fresh: Vec<(String, String)>) -> Result<()> {
    if fresh.is_empty() {
        return Ok(());
    }
    shared.store.put_lid_mappings(&fresh).await?;
    let mut cache = lock(&shared.lids);
    for (lid, pn) in &fresh {
        debug!(%lid, %pn, "learned a LID mapping");
        cache.insert(lid, pn);
    }
    Ok(())
}

/// The LID user of a phone number, from the cache or the store.
pub(crate) async fn lid_for_pn(shared: &Shared, pn: &str) -> Result<Option<String>> {
    if let Some(l) = lock(&shared.lids).pn_to_lid.get(pn) {
        return Ok(Some(l.clone()));
    }
    let found = shared.store.get_lid_for_pn(pn).await?;
    if let Some(l) = &found {
        lock(&shared.lids).insert(l, pn);
    }
    Ok(found)
}

/// The phone number of a LID user, from the cache or the store.
pub(crate) async fn pn_for_lid(shared: &Shared, lid: &str) -> Result<Option<String>> {
    if let Some(p) = lock(&shared.lids).lid_to_pn.get(lid) {
        return Ok(Some(p.clone()));
    }
    let found = shared.store.get_pn_for_lid(lid).await?;
    if let Some(p) = &found {
        lock(&shared.lids).insert(lid, p);
    }
    Ok(found)
}

/// LID users of several phone numbers (in order), cached ones first and the rest in one read.
pub(crate) async fn lids_for_pns(shared: &Shared, pns: &[String]) -> Result<Vec<Option<String>>> {
    let mut out: Vec<Option<String>> = {
        let cache = lock(&shared.lids);
        pns.iter().map(|p| cache.pn_to_lid.get(p).cloned()).collect()
    };
    let missing: Vec<String> =
        pns.iter().zip(&out).filter(|(_, l)| l.is_none()).map(|(p, _)| p.clone()).collect();
    if missing.is_empty() {
        return Ok(out);
    }
    let found = shared.store.get_lids_for_pns(&missing).await?;
    let mut cache = lock(&shared.lids);
    let mut found = missing.iter().zip(found);
    for (p, slot) in pns.iter().zip(out.iter_mut()) {
        if slot.is_some() {
            continue;
        }
        if let Some((q, l)) = found.next() {
            debug_assert_eq!(p, q);
            if let Some(l) = &l {
                cache.insert(l, p);
            }
            *slot = l;
        }
    }
    Ok(out)
}

/// The other-namespace JID of a user (no device): its LID for a phone number, its phone number
/// for a LID, when known.
pub(crate) async fn alternate(shared: &Shared, jid: &Jid) -> Result<Option<Jid>> {
    Ok(match jid.server() {
        Server::Pn => lid_for_pn(shared, jid.user()).await?.map(|l| Jid::lid(&l)).transpose()?,
        Server::Lid => pn_for_lid(shared, jid.user()).await?.map(|p| Jid::pn(&p)).transpose()?,
        _ => None,
    })
}

/// Asks the server for the LIDs of phone numbers it does not know yet (usync `<lid/>`, as
/// whatsmeow `GetUserInfo` and whatsapp-rust `LidQuerySpec` do) and learns them. Returns the
/// LID user of each (in order), `None` for numbers without one.
pub(crate) async fn resolve_lids(shared: &Shared, pns: &[Jid]) -> Result<Vec<Option<String>>> {
    let users: Vec<String> = pns.iter().map(|j| j.user().to_owned()).collect();
    let mut out = lids_for_pns(shared, &users).await?;
    let missing: Vec<Jid> =
        pns.iter().zip(&out).filter(|(_, l)| l.is_none()).map(|(j, _)| j.to_non_ad()).collect();
    if missing.is_empty() {
        return Ok(out);
    }
    let conn = shared.connection()?;
    let iq = Node::new("iq").attr("xmlns", "usync").attr("type", "get").attr("to", server_jid()).children([
        Node::new("usync")
            .attr("sid", conn.next_id())
            .attr("mode", "query")
            .attr("last", "true")
            .attr("index", "0")
            .attr("context", "background")
            .children([
                Node::new("query").children([Node::new("lid")]),
                Node::new("list").children(missing.iter().map(|u| Node::new("user").attr("jid", u.clone()))),
            ]),
    ]);
    let reply = shared.iq(iq).await?;
    let learned = lid_pairs_of_usync(&reply)?;
    learn(shared, &learned).await?;
    for (u, slot) in users.iter().zip(out.iter_mut()) {
        if slot.is_none() {
            *slot = learned.iter().find(|(_, pn)| pn == u).map(|(lid, _)| lid.clone());
        }
    }
    Ok(out)
}

/// `(lid user, pn user)` of every `<user jid=PN><lid val=LID/>` in a usync reply.
pub(crate) fn lid_pairs_of_usync(reply: &Node) -> Result<Vec<(String, String)>> {
    let list = reply
        .child_path(&["usync", "list"])
        .ok_or_else(|| Error::Malformed("usync reply without list".into()))?;
    let mut out = Vec::new();
    for user in list.children_by_tag("user") {
        let (Ok(jid), Some(lid)) = (user.attr_jid("jid"), user.child("lid")) else { continue };
        let Ok(val) = lid.attr_jid("val") else { continue };
        if let Some(p) = pair_of(&val, &jid) {
            out.push(p);
        }
    }
    Ok(out)
}

/// The Signal address a device is known under: its LID's once the LID is known. Moves the
/// user's phone-number sessions and identity keys there first, once per process. Call with
/// the Signal lock held, as the address is about to be used.
pub(crate) async fn signal_address_of(shared: &Shared, device: &Jid) -> Result<ProtocolAddress> {
    Ok(signal_address(&canonical(shared, device).await?))
}

/// [`signal_address_of`] for many devices, with one store read for the uncached mappings.
pub(crate) async fn signal_addresses_of(shared: &Shared, devices: &[Jid]) -> Result<Vec<ProtocolAddress>> {
    let pns: Vec<String> = devices.iter().filter_map(|d| user_of(d, Server::Pn)).map(str::to_owned).collect();
    let lids = lids_for_pns(shared, &pns).await?;
    let mut lids = lids.into_iter();
    let mut out = Vec::with_capacity(devices.len());
    for d in devices {
        let canon = match d.server() {
            Server::Pn => match lids.next().flatten() {
                Some(l) => {
                    migrate_once(shared, d.user(), &l).await?;
                    Jid::lid(&l)?.with_device(d.device())?
                }
                None => d.clone(),
            },
            Server::Lid => {
                if let Some(p) = pn_for_lid(shared, d.user()).await? {
                    migrate_once(shared, &p, d.user()).await?;
                }
                d.clone()
            }
            _ => d.clone(),
        };
        out.push(signal_address(&canon));
    }
    Ok(out)
}

/// The device JID a device's Signal state is kept under (see [`signal_address_of`]).
pub(crate) async fn canonical(shared: &Shared, device: &Jid) -> Result<Jid> {
    match device.server() {
        Server::Pn => match lid_for_pn(shared, device.user()).await? {
            Some(l) => {
                migrate_once(shared, device.user(), &l).await?;
                Ok(Jid::lid(&l)?.with_device(device.device())?)
            }
            None => Ok(device.clone()),
        },
        Server::Lid => {
            if let Some(p) = pn_for_lid(shared, device.user()).await? {
                migrate_once(shared, &p, device.user()).await?;
            }
            Ok(device.clone())
        }
        _ => Ok(device.clone()),
    }
}

/// Moves `pn`'s Signal sessions and identity keys to `lid`'s address, once per process.
async fn migrate_once(shared: &Shared, pn: &str, lid: &str) -> Result<()> {
    if lock(&shared.lids).migrated.contains(pn) {
        return Ok(());
    }
    let from = signal_address(&Jid::pn(pn)?).name;
    let to = signal_address(&Jid::lid(lid)?).name;
    let moved = shared.store.migrate_user(&from, &to).await?;
    if moved > 0 {
        info!(%pn, %lid, sessions = moved, "moved a contact's Signal sessions to its LID");
    }
    let mut cache = lock(&shared.lids);
    if cache.migrated.len() >= CACHE_LIMIT {
        cache.migrated.clear();
    }
    cache.migrated.insert(pn.to_owned());
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pairs_are_ordered_lid_first_and_need_both_namespaces() {
        let (pn, lid) = (Jid::pn("5511").unwrap(), Jid::lid("123").unwrap());
        let want = Some(("123".to_owned(), "5511".to_owned()));
        assert_eq!(pair_of(&pn, &lid), want);
        assert_eq!(pair_of(&lid.clone().with_device(3).unwrap(), &pn), want);
        assert_eq!(pair_of(&pn, &pn), None);
        assert_eq!(pair_of(&Jid::group("1-2").unwrap(), &lid), None);
    }

    #[test]
    fn a_remapped_number_forgets_its_old_lid() {
        let mut c = LidCache::default();
        c.insert("111", "5511");
        c.insert("222", "5511");
        assert_eq!(c.pn_to_lid.get("5511").map(String::as_str), Some("222"));
        assert_eq!(c.lid_to_pn.get("111"), None);
        c.insert("222", "5522");
        assert_eq!(c.pn_to_lid.get("5511"), None);
        assert_eq!(c.lid_to_pn.get("222").map(String::as_str), Some("5522"));
    }

    #[test]
    fn usync_lid_answers_become_pairs() {
        let reply = Node::new("iq").children([Node::new("usync").children([Node::new("list").children([
            Node::new("user")
                .attr("jid", Jid::pn("5511").unwrap())
                .children([Node::new("lid").attr("val", Jid::lid("123").unwrap())]),
            Node::new("user").attr("jid", Jid::pn("5522").unwrap()).children([Node::new("lid")]),
            Node::new("user").attr("jid", Jid::pn("5533").unwrap()),
        ])])]);
        assert_eq!(lid_pairs_of_usync(&reply).unwrap(), vec![("123".to_owned(), "5511".to_owned())]);
        assert!(lid_pairs_of_usync(&Node::new("iq")).is_err());
    }
}
