//! `w:sync:app:state` fetches: the emulator holds no app state yet, so every requested
//! collection is answered as an empty, well-formed collection at the version the client
//! holds (0 for a snapshot request).
//!
//! Shape: `<iq type=result><sync><collection name version/>…</sync></iq>`, one collection per
//! requested one, in order (whatsmeow appstate.go `fetchAppStatePatches` and appstate/decode.go
//! `ParsePatchList`; whatsapp-rust 0.7 wacore-appstate src/patch_decode.rs
//! `parse_patch_lists_ref`, which needs `name`, and whose client never reports `Connected`
//! without the answer; Baileys src/Utils/chat-utils.ts `extractSyncdPatches` reads `version`).

use wa_binary::Node;

use crate::world::{World, attr};

impl World {
    pub(crate) fn on_app_state_sync(&self, iq: &Node) -> Node {
        let Some(sync) = iq.child("sync") else {
            return self.iq_error(iq, 400, "bad-request");
        };
        let mut collections = Vec::new();
        for c in sync.children_by_tag("collection") {
            let name = attr(c, "name");
            if name.is_empty() {
                return self.iq_error(iq, 400, "bad-request");
            }
            let version = if attr(c, "return_snapshot") == "true" {
                0
            } else {
                match attr(c, "version").parse::<u64>() {
                    Ok(v) => v,
                    Err(_) => return self.iq_error(iq, 400, "bad-request"),
                }
            };
            collections.push(Node::new("collection").attr("name", name).attr("version", version));
        }
        self.iq_result(iq).children([Node::new("sync").children(collections)])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn request(collections: Vec<Node>) -> Node {
        Node::new("iq")
            .attr("id", "q1")
            .attr("xmlns", "w:sync:app:state")
            .attr("type", "set")
            .children([Node::new("sync").children(collections)])
    }

    #[test]
    fn every_requested_collection_is_answered_in_order() {
        let w = crate::world::tests::bare_world();
        let req = request(vec![
            Node::new("collection").attr("name", "critical_block").attr("return_snapshot", "true"),
            Node::new("collection")
                .attr("name", "regular_high")
                .attr("version", "7")
                .attr("return_snapshot", "false"),
        ]);
        let r = w.on_app_state_sync(&req);
        assert_eq!((attr(&r, "type"), attr(&r, "id")), ("result".to_owned(), "q1".to_owned()));
        let got: Vec<(String, String, usize)> = r
            .child("sync")
            .expect("<sync>")
            .children_by_tag("collection")
            .map(|c| (attr(c, "name"), attr(c, "version"), c.child_nodes().len()))
            .collect();
        assert_eq!(
            got,
            vec![("critical_block".into(), "0".into(), 0), ("regular_high".into(), "7".into(), 0)]
        );
    }

    #[test]
    fn malformed_requests_are_refused() {
        let w = crate::world::tests::bare_world();
        for bad in [
            Node::new("iq").attr("id", "q"),
            request(vec![Node::new("collection").attr("version", "1")]),
            request(vec![Node::new("collection").attr("name", "regular").attr("version", "x")]),
        ] {
            let r = w.on_app_state_sync(&bad);
            assert_eq!(attr(&r, "type"), "error", "{bad:?}");
            assert_eq!(r.child("error").map(|e| attr(e, "code")).as_deref(), Some("400"));
        }
    }
}
