//! Pairing by phone number: the companion_hello / primary_hello / companion_finish stages.

use wa_binary::{Jid, Node};
use wa_crypto::PublicKey;

use crate::client::{PairCode, Shared, lock};
use crate::conn::{Connection, server_jid};
use crate::creds::CredentialsExt;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::pair;

/// Sends companion_hello and returns the code the user types on the phone.
pub(crate) async fn start(shared: &Shared, phone: &str) -> Result<String> {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    if digits.len() <= 6 || digits.starts_with('0') {
        return Err(Error::InvalidInput(format!(
            "phone number {phone:?}: give the international number without leading 0"
        )));
    }
    let conn = shared_conn(shared)?;
    let creds = shared.credentials()?;
    if creds.jid.is_some() {
        return Err(Error::InvalidInput("already paired".into()));
    }
    let code = pair::pairing_code(shared.random_bytes());
    let ephemeral = shared.with_rng(|r| wa_crypto::KeyPair::generate(r));
    let wrapped = pair::wrap_companion_ephemeral(
        &code,
        shared.random_bytes(),
        shared.random_bytes(),
        ephemeral.public.as_bytes(),
    );
    *lock(&shared.pair_code) =
        Some(PairCode { code: code.clone(), phone: digits.clone(), ephemeral, reference: None });
    let jid = Jid::pn(&digits)?;
    let iq = Node::new("iq").attr("to", server_jid()).attr("type", "set").attr("xmlns", "md").children([
        Node::new("link_code_companion_reg")
            .attr("jid", jid)
            .attr("stage", "companion_hello")
            .attr("should_show_push_notification", "true")
            .children([
                Node::new("link_code_pairing_wrapped_companion_ephemeral_pub").bytes(wrapped),
                Node::new("companion_server_auth_key_pub").bytes(creds.noise_key.public.to_vec()),
                Node::new("companion_platform_id").text(shared.config.qr_platform.to_string()),
                Node::new("companion_platform_display").text(format!(
                    "{} ({})",
                    "Chrome",
                    shared.config.device_props.os.as_deref().unwrap_or("Linux")
                )),
                Node::new("link_code_pairing_nonce").bytes(vec![0u8]),
            ]),
    ]);
    let reply = conn.iq(iq, shared.config.iq_timeout).await?;
    let reference = reply
        .child_path(&["link_code_companion_reg", "link_code_pairing_ref"])
        .and_then(|r| {
            r.content_bytes().map(<[u8]>::to_vec).or_else(|| r.content_str().map(|s| s.as_bytes().to_vec()))
        })
        .ok_or_else(|| Error::Malformed("companion_hello reply without a ref".into()))?;
    if let Some(p) = lock(&shared.pair_code).as_mut() {
        p.reference = Some(reference);
    }
    shared.emit(Event::PairingCode { code: code.clone() });
    Ok(code)
}

/// The registration connection is not published as `shared.conn` (that is the logged-in one);
/// pairing by code needs it, so the session publishes it while unpaired.
fn shared_conn(shared: &Shared) -> Result<Connection> {
    lock(&shared.pairing_conn).clone().filter(|c| !c.is_closed()).ok_or(Error::NotConnected)
}

/// Handles the phone's primary_hello notification: derive the new ADV secret and finish.
pub(crate) async fn primary_hello(shared: &Shared, conn: &Connection, node: &Node) -> Result<()> {
    let reg = node
        .child("link_code_companion_reg")
        .ok_or_else(|| Error::Malformed("no link_code_companion_reg".into()))?;
    let bytes = |tag: &str| reg.child(tag).and_then(|c| c.content_bytes()).map(<[u8]>::to_vec);
    let (code, phone, ephemeral, reference) = {
        let g = lock(&shared.pair_code);
        let p = g.as_ref().ok_or_else(|| Error::Pairing("primary_hello without a pending code".into()))?;
        (p.code.clone(), p.phone.clone(), p.ephemeral.clone(), p.reference.clone())
    };
    let got_ref = bytes("link_code_pairing_ref");
    if reference.is_some() && got_ref.is_some() && reference != got_ref {
        return Err(Error::Pairing("primary_hello for another pairing ref".into()));
    }
    let wrapped = bytes("link_code_pairing_wrapped_primary_ephemeral_pub")
        .ok_or_else(|| Error::Pairing("no wrapped primary key".into()))?;
    let primary_identity =
        bytes("primary_identity_pub").ok_or_else(|| Error::Pairing("no primary identity".into()))?;
    let primary_identity = PublicKey::from_bytes(&primary_identity)
        .map_err(|e| Error::Pairing(format!("primary identity: {e}")))?;
    let primary_ephemeral = pair::unwrap_primary_ephemeral(&code, &wrapped)?;
    let mut creds = shared.credentials()?;
    let fin = pair::code_finish(
        &ephemeral,
        &primary_ephemeral,
        &creds.identity(),
        &primary_identity,
        shared.random_bytes(),
        shared.random_bytes(),
        shared.random_bytes(),
    )?;
    creds.adv_secret_key = fin.adv_secret;
    shared.save_credentials(creds.clone()).await?;
    let iq = Node::new("iq").attr("to", server_jid()).attr("type", "set").attr("xmlns", "md").children([
        Node::new("link_code_companion_reg")
            .attr("jid", Jid::pn(&phone)?)
            .attr("stage", "companion_finish")
            .children([
                Node::new("link_code_pairing_wrapped_key_bundle").bytes(fin.bundle),
                Node::new("companion_identity_public").bytes(creds.identity_key.public.to_vec()),
                Node::new("link_code_pairing_ref").bytes(reference.or(got_ref).unwrap_or_default()),
            ]),
    ]);
    // Answered after pair-success arrives; do not block the stanza loop on it.
    let conn = conn.clone();
    let timeout = shared.config.iq_timeout;
    tokio::spawn(async move {
        let _ = conn.iq(iq, timeout).await;
    });
    Ok(())
}
