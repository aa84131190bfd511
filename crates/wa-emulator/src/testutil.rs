//! Sans-I/O fixtures for the unit tests of the server-initiated traffic: a world on a manual
//! clock with accounts whose companions are logged in on channels the test reads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::mpsc::UnboundedReceiver;
use wa_binary::Node;

use crate::clock::ManualClock;
use crate::keys::ServerKeys;
use crate::world::{AccountId, ConnCommand, ConnId, Device, DeviceAddr, World, attr};

pub(crate) const T0: u64 = 1_700_000_000;

/// A world with accounts `15550001000`, `15550001001`, … (`n` of them) and its clock.
pub(crate) fn world(n: usize) -> (World, ManualClock) {
    let mut rng = StdRng::seed_from_u64(7);
    let keys = ServerKeys::generate(&mut rng, T0);
    let clock = ManualClock::new(T0);
    let mut w = World::new(rng, Arc::new(clock.clone()), keys, 6);
    w.phone_pre_keys = 20;
    for i in 0..n {
        w.create_account(&format!("1555000{}", 1000 + i), &format!("User{i}")).unwrap();
    }
    (w, clock)
}

/// Adds a paired companion `device` to `account` (its Signal keys are a copy of the phone's:
/// nothing here decrypts what it receives).
pub(crate) fn add_companion(w: &mut World, account: AccountId, device: u16) -> DeviceAddr {
    let keys = w.accounts[account].phone.published_keys();
    w.accounts[account].devices.insert(
        device,
        Device {
            id: device,
            noise_key: None,
            keys,
            key_index: u32::from(device),
            conn: None,
            offline: VecDeque::new(),
            in_flight: VecDeque::new(),
            acked: VecDeque::new(),
            platform: "Chrome".into(),
            signed_identity: Some(vec![1]),
        },
    );
    DeviceAddr { account, device }
}

/// Logs a device in and activates it; returns the connection and what it is sent.
pub(crate) fn login(w: &mut World, addr: DeviceAddr) -> (ConnId, UnboundedReceiver<ConnCommand>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let conn = w.connect(tx);
    w.conns.get_mut(&conn).unwrap().device = Some(addr);
    w.accounts[addr.account].devices.get_mut(&addr.device).unwrap().conn = Some(conn);
    w.activate(conn);
    (conn, rx)
}

/// The nodes sent so far.
pub(crate) fn sent(rx: &mut UnboundedReceiver<ConnCommand>) -> Vec<Node> {
    let mut out = Vec::new();
    while let Ok(c) = rx.try_recv() {
        if let ConnCommand::Node(n) = c {
            out.push(*n);
        }
    }
    out
}

/// The stanzas among `nodes` with this tag and (when given) `type`.
pub(crate) fn of<'a>(nodes: &'a [Node], tag: &str, ty: Option<&str>) -> Vec<&'a Node> {
    nodes.iter().filter(|n| n.tag == tag && ty.is_none_or(|t| attr(n, "type") == t)).collect()
}

/// The `<ack>` a client sends for a stanza (`class` = its tag, `to` = its `from`, `type`).
pub(crate) fn ack_of(n: &Node) -> Node {
    let mut a = Node::new("ack").attr("class", n.tag.as_str()).attr("id", attr(n, "id"));
    if let Some(f) = n.get_attr("from") {
        a = a.attr("to", f.clone());
    }
    if let Some(t) = n.get_attr("type") {
        a = a.attr("type", t.clone());
    }
    a
}
