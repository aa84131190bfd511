//! Incoming `<call>` stanzas: every one is acknowledged (whatsmeow `call.go`
//! `handleCallEvent`, Baileys `messages-recv.ts` `handleCall`); offers and terminations become
//! [`Event::CallOffer`] and [`Event::CallTerminated`], other signalling (accept, reject,
//! transport, …) is only acknowledged. The client does not answer or reject calls.

use tracing::{debug, warn};
use wa_binary::Node;

use crate::client::Shared;
use crate::conn::Connection;
use crate::error::Result;
use crate::event::{CallEvent, Event};
use crate::recv::ack_for;

/// Handles one `<call>`.
pub(crate) fn handle_call(shared: &Shared, conn: &Connection, node: &Node) -> Result<()> {
    conn.send(&ack_for(node, None))?;
    let Some(action) = node.child_nodes().first() else {
        debug!("call stanza without an action");
        return Ok(());
    };
    if !matches!(action.tag.as_str(), "offer" | "terminate") {
        debug!(action = %action.tag, "call signalling");
        return Ok(());
    }
    match parse(node, action) {
        Ok(ev) if action.tag == "offer" => shared.emit(Event::CallOffer(ev)),
        Ok(ev) => shared.emit(Event::CallTerminated(ev)),
        Err(e) => warn!(%e, "malformed call stanza"),
    }
    Ok(())
}

fn parse(node: &Node, action: &Node) -> Result<CallEvent> {
    Ok(CallEvent {
        from: node.attr_jid("from")?,
        call_id: action.attr_str("call-id")?.into_owned(),
        creator: action.attr_jid("call-creator")?,
        caller_pn: action.attr_jid("caller_pn").ok(),
        group: action.attr_jid("group-jid").ok(),
        video: action.child("video").is_some(),
        reason: action.opt_attr_str("reason").map(|r| r.into_owned()),
        timestamp: node.opt_attr_str("t").and_then(|t| t.parse().ok()).unwrap_or(0),
        offline: node.has_attr("offline"),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use wa_binary::Jid;

    #[test]
    fn offers_and_terminations_parse() {
        let caller = Jid::pn("15550001001").unwrap();
        let offer = Node::new("offer")
            .attr("call-id", "C1")
            .attr("call-creator", caller.clone())
            .children([Node::new("audio").attr("enc", "opus").attr("rate", "16000"), Node::new("video")]);
        let call = Node::new("call")
            .attr("from", caller.clone())
            .attr("id", "S1")
            .attr("t", "7")
            .attr("offline", "1");
        let ev = parse(&call, &offer).unwrap();
        assert_eq!((ev.call_id.as_str(), ev.video, ev.timestamp, ev.offline), ("C1", true, 7, true));
        assert_eq!(
            (ev.from.clone(), ev.creator.clone(), ev.reason.clone()),
            (caller.clone(), caller.clone(), None)
        );
        let end = Node::new("terminate")
            .attr("call-id", "C1")
            .attr("call-creator", caller)
            .attr("reason", "timeout");
        let ev = parse(&call, &end).unwrap();
        assert_eq!((ev.video, ev.reason.as_deref()), (false, Some("timeout")));
        assert!(parse(&call, &Node::new("offer").attr("call-id", "C2")).is_err(), "no creator");
    }
}
