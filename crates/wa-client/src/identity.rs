//! A contact's identity changed (WhatsApp reinstalled, a new phone): `<notification
//! type="encrypt" from=<user>><identity/></notification>`.
//!
//! Every session and identity key of that user is dropped, as whatsmeow does
//! (`notification.go` `handleEncryptNotification`: `DeleteAllIdentities`,
//! `DeleteAllSessions`, then `events.IdentityChange`), so the next message to them starts a
//! session from a freshly fetched prekey bundle instead of ratcheting on the dead one (which
//! the contact can only answer with retry receipts). Our own prekeys are not involved. A
//! companion device's identity is not the account's (Baileys `identity-change-handler.ts`
//! ignores it), nor is our own primary's (we would be logged out).

use tracing::{debug, info};
use wa_binary::{Jid, Node};
use wa_store::{IdentityStore, SessionStore};

use crate::client::{Shared, signal_address};
use crate::error::Result;
use crate::event::Event;

/// Handles an `encrypt` notification carrying `<identity>`.
pub(crate) async fn handle_identity_change(shared: &Shared, node: &Node) -> Result<()> {
    let from = node.attr_jid("from")?;
    if from.device() != 0 {
        debug!(%from, "identity change of a companion device; ignored");
        return Ok(());
    }
    if let Ok((own, own_lid)) = shared.own_ids()
        && (from.user() == own.user() || own_lid.is_some_and(|l| l.user() == from.user()))
    {
        debug!(%from, "our own primary's identity changed; ignored");
        return Ok(());
    }
    // A LID-first account hears of a migrated contact by its LID; a legacy one by its phone
    // number with the LID in `lid` (see wa-emulator `phone_identity`).
    let from = from.to_non_ad();
    if let Ok(lid) = node.attr_jid("lid") {
        let lid = lid.to_non_ad();
        let fresh = crate::lid::unknown_jids(shared, std::iter::once((&from, &lid)));
        crate::lid::store(shared, fresh).await?;
    }
    let other = forget_user(shared, &from).await?;
    info!(%from, "contact's identity changed; sessions dropped");
    let (pn, lid) = crate::recv::both_names(&from, other);
    shared.emit(Event::IdentityChange { jid: from, pn, lid });
    Ok(())
}

/// Drops every session and identity key of `user`'s devices, and its cached device list, under
/// both of its names: sessions live under the contact's LID once it is known (see `lid`), while
/// the notification may name its phone number, or the other way round.
/// Returns the user's other name, when known.
pub(crate) async fn forget_user(shared: &Shared, user: &Jid) -> Result<Option<Jid>> {
    let user = user.to_non_ad();
    let alternate = crate::lid::alternate(shared, &user).await?;
    let names: Vec<Jid> = std::iter::once(user).chain(alternate.clone()).collect();
    let _guard = shared.signal_lock.lock().await;
    for jid in &names {
        let name = signal_address(jid).name;
        shared.store.delete_user_sessions(&name).await?;
        shared.store.delete_user_identities(&name).await?;
    }
    drop(_guard);
    for jid in &names {
        crate::send::invalidate_devices(shared, jid).await?;
    }
    Ok(alternate)
}
