//! Replays Baileys 7.0.0-rc14's app-state and history-sync vectors (`appstate.json` in
//! `$WA_VECTORS_DIR`, default the project's `tests/vectors`): every group, every vector.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use wa_appstate::history::{decode_history, decrypt_history_blob, inflate, inline_payload, side_data};
use wa_appstate::lthash::{LtHash, expand};
use wa_appstate::mutation::action_data;
use wa_appstate::{
    Action, AppStateError, Collection, CollectionState, ErrorKind, KeyId, KeyRing, LastMessage,
    MutationInput, MutationKeys, Operation, action, apply_patch, apply_snapshot, decode_mutation,
    decode_patch, decode_snapshot, decrypt_external_blob, encode_mutation, encode_patch, newest_key_id,
    parse_key_share, parse_sync_response,
};
use wa_proto::prost_message::Message as _;
use wa_proto::{Message, MessageKey, SyncActionValue, SyncdMutation};

fn load() -> Value {
    let dir = std::env::var_os("WA_VECTORS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors"));
    let path = dir.join("appstate.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap()
}

fn group<'a>(v: &'a Value, name: &str) -> Vec<&'a Value> {
    let out: Vec<&Value> = v["vectors"].as_array().unwrap().iter().filter(|x| x["group"] == name).collect();
    assert_eq!(out.len() as u64, v["counts"][name].as_u64().unwrap(), "count of {name}");
    assert!(!out.is_empty(), "group {name} is empty");
    out
}

fn h(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap_or_else(|| panic!("not a hex string: {v}"))).unwrap()
}

fn a32(v: &Value) -> [u8; 32] {
    h(v).try_into().unwrap()
}

fn ring(v: &Value) -> KeyRing {
    let mut r = KeyRing::new();
    for k in v["keys"].as_array().unwrap() {
        r.insert(&KeyId(h(&k["key_id_hex"])), &h(&k["key_data_hex"]));
    }
    r
}

fn key_id(v: &Value, name: &str) -> KeyId {
    let k = v["keys"].as_array().unwrap().iter().find(|k| k["name"] == name).unwrap();
    KeyId(h(&k["key_id_hex"]))
}

fn collection(v: &Value) -> Collection {
    v.as_str().unwrap().parse().unwrap()
}

fn state_from(c: Collection, s: &Value) -> CollectionState {
    let mut st = CollectionState::new(c);
    st.version = s["version"].as_u64().unwrap();
    st.hash = LtHash(h(&s["hash_hex"]).try_into().unwrap());
    for (k, val) in s["index_value_map"].as_object().unwrap() {
        st.index_value_macs.insert(B64.decode(k).unwrap().try_into().unwrap(), a32(val));
    }
    st
}

fn assert_state(got: &CollectionState, want: &Value, what: &str) {
    assert_eq!(got.version, want["version"].as_u64().unwrap(), "{what}: version");
    assert_eq!(hex::encode(got.hash.0), want["hash_hex"].as_str().unwrap(), "{what}: LTHash");
    let map: serde_json::Map<String, Value> =
        got.index_value_macs.iter().map(|(k, v)| (B64.encode(k), Value::String(hex::encode(v)))).collect();
    assert_eq!(&Value::Object(map), &want["index_value_map"], "{what}: index → value MAC map");
}

#[test]
fn key_expansion() {
    let v = load();
    for x in group(&v, "key_expansion") {
        let k = MutationKeys::expand(&h(&x["key_data_hex"]));
        let name = x["name"].as_str().unwrap();
        assert_eq!(k.index, a32(&x["index_key_hex"]), "{name}");
        assert_eq!(k.value_encryption, a32(&x["value_encryption_key_hex"]), "{name}");
        assert_eq!(k.value_mac, a32(&x["value_mac_key_hex"]), "{name}");
        assert_eq!(k.snapshot_mac, a32(&x["snapshot_mac_key_hex"]), "{name}");
        assert_eq!(k.patch_mac, a32(&x["patch_mac_key_hex"]), "{name}");
        let all = [k.index, k.value_encryption, k.value_mac, k.snapshot_mac, k.patch_mac].concat();
        assert_eq!(all, h(&x["expanded_hex"]), "{name}");
        assert_eq!(KeyId(h(&x["key_id_hex"])).to_base64(), x["key_id_b64"].as_str().unwrap());
    }
}

#[test]
fn key_share() {
    let v = load();
    for x in group(&v, "key_share") {
        let bytes = h(&x["message_proto_hex"]);
        let m = Message::decode(bytes.as_slice()).unwrap();
        assert_eq!(m.encode_to_vec(), bytes, "re-encoding the share keeps every byte");
        let share = m.protocol_message.as_ref().unwrap().app_state_sync_key_share.as_ref().unwrap();
        let keys = parse_key_share(share).unwrap();
        let ids: Vec<String> = keys.iter().map(|k| k.id.to_base64()).collect();
        let want: Vec<String> =
            x["store_keys_b64"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect();
        assert_eq!(ids, want);
        assert_eq!(
            newest_key_id(&keys).unwrap().to_base64(),
            x["my_app_state_key_id_after"].as_str().unwrap()
        );
        for (k, spec) in keys.iter().zip(v["keys"].as_array().unwrap()) {
            assert_eq!(k.data.to_vec(), h(&spec["key_data_hex"]));
            assert_eq!(k.timestamp, spec["timestamp"].as_i64());
            assert_eq!(KeyId::from_base64(spec["key_id_b64"].as_str().unwrap()).as_ref(), Some(&k.id));
        }
        // a key without data makes the share malformed, not half-stored
        let mut broken = share.clone();
        broken.keys[1].key_data = None;
        assert_eq!(parse_key_share(&broken).unwrap_err().kind(), ErrorKind::Malformed);
    }
}

#[test]
fn lthash() {
    let v = load();
    let mut n = 0;
    for x in group(&v, "lthash") {
        match x["name"].as_str().unwrap() {
            "sequence" | "zero_start" => {
                let mut hash = LtHash(h(&x["start_hex"]).try_into().unwrap());
                for s in x["steps"].as_array().unwrap() {
                    let mac = h(&s["value_mac_hex"]);
                    assert_eq!(expand(&mac).to_vec(), h(&s["expanded_hex"]));
                    match s["op"].as_str().unwrap() {
                        "add" => hash.add(&mac),
                        "subtract" => hash.subtract(&mac),
                        op => panic!("op {op}"),
                    }
                    assert_eq!(hash.0.to_vec(), h(&s["result_hex"]));
                    n += 1;
                }
                if let Some(b) = x.get("batch") {
                    let base = LtHash(h(&b["base_hex"]).try_into().unwrap());
                    let subs: Vec<Vec<u8>> = b["subtract_hex"].as_array().unwrap().iter().map(h).collect();
                    let adds: Vec<Vec<u8>> = b["add_hex"].as_array().unwrap().iter().map(h).collect();
                    assert_eq!(base.subtract_then_add(&subs, &adds).0.to_vec(), h(&b["result_hex"]));
                    n += 1;
                }
            }
            "generator_mix" => {
                let mut st = CollectionState::new(Collection::Regular);
                st.hash = LtHash(h(&x["initial"]["hash_hex"]).try_into().unwrap());
                for (k, val) in x["initial"]["index_value_map"].as_object().unwrap() {
                    st.index_value_macs.insert(B64.decode(k).unwrap().try_into().unwrap(), a32(val));
                }
                for b in x["batches"].as_array().unwrap() {
                    for m in b["mixes"].as_array().unwrap() {
                        let op = if m["operation"] == "REMOVE" { Operation::Remove } else { Operation::Set };
                        let idx: [u8; 32] =
                            B64.decode(m["index_mac_b64"].as_str().unwrap()).unwrap().try_into().unwrap();
                        st.mix(op, idx, a32(&m["value_mac_hex"]));
                    }
                    let want = json!({"version": 0, "hash_hex": b["hash_hex"], "index_value_map": b["index_value_map"]});
                    assert_state(&st, &want, "generator batch");
                    n += 1;
                }
            }
            other => panic!("unexpected lthash vector {other}"),
        }
    }
    assert_eq!(n, 10 + 1 + 1 + 4, "every step and batch replayed");
}

/// What Baileys' `processSyncAction` emits for an action (`me` named "Old Name", not an
/// initial sync), built from our typed action: so the vector's events check our decoding of
/// the index and value field by field.
fn baileys_events(a: &Action, value: &SyncActionValue) -> Value {
    fn opt(m: &mut serde_json::Map<String, Value>, k: &str, v: Option<String>) {
        if let Some(v) = v {
            m.insert(k.into(), Value::String(v));
        }
    }
    fn nonempty(s: &Option<String>) -> Option<String> {
        s.clone().filter(|s| !s.is_empty())
    }
    match a {
        Action::Mute { chat, muted, end_timestamp_ms } => json!([{"event": "chats.update", "data": [
            {"id": chat, "muteEndTime": if *muted { json!(end_timestamp_ms) } else { Value::Null }}]}]),
        Action::Archive { chat, archived, .. } => {
            json!([{"event": "chats.update", "data": [{"id": chat, "archived": archived}]}])
        }
        Action::MarkRead { chat, read, .. } => {
            json!([{"event": "chats.update", "data": [{"id": chat, "unreadCount": if *read { 0 } else { -1 }}]}])
        }
        Action::Pin { chat, pinned } => json!([{"event": "chats.update", "data": [
            {"id": chat, "pinned": if *pinned { json!(value.timestamp) } else { Value::Null }}]}]),
        Action::Star { message, starred } => json!([{"event": "messages.update", "data": [{
            "key": {"remoteJid": message.chat, "id": message.id, "fromMe": message.from_me},
            "update": {"starred": starred}}]}]),
        Action::DeleteMessageForMe { message, .. } => json!([{"event": "messages.delete", "data": {"keys": [
            {"remoteJid": message.chat, "id": message.id, "fromMe": message.from_me}]}}]),
        Action::DeleteChat { chat, .. } => json!([{"event": "chats.delete", "data": [chat]}]),
        Action::ClearChat { .. } | Action::QuickReply { .. } => json!([]),
        Action::Contact { jid, full_name, first_name, lid_jid, pn_jid, username, .. } => {
            let id_is_pn = jid.ends_with("@s.whatsapp.net");
            let mut c = serde_json::Map::new();
            c.insert("id".into(), json!(jid));
            opt(
                &mut c,
                "name",
                nonempty(full_name).or_else(|| nonempty(first_name)).or_else(|| nonempty(username)),
            );
            opt(&mut c, "username", nonempty(username));
            opt(&mut c, "lid", nonempty(lid_jid));
            opt(&mut c, "phoneNumber", if id_is_pn { Some(jid.clone()) } else { nonempty(pn_jid) });
            let mut ev = vec![json!({"event": "contacts.upsert", "data": [c]})];
            if let Some(lid) = nonempty(lid_jid).filter(|l| l.ends_with("@lid"))
                && id_is_pn
            {
                ev.push(json!({"event": "lid-mapping.update", "data": {"lid": lid, "pn": jid}}));
            }
            Value::Array(ev)
        }
        Action::LidContact { lid, full_name, first_name, username } => {
            let mut c = serde_json::Map::new();
            c.insert("id".into(), json!(lid));
            opt(
                &mut c,
                "name",
                nonempty(full_name).or_else(|| nonempty(first_name)).or_else(|| nonempty(username)),
            );
            opt(&mut c, "username", nonempty(username));
            c.insert("lid".into(), json!(lid));
            json!([{"event": "contacts.upsert", "data": [c]}])
        }
        Action::PushName { name } => match name {
            Some(n) if !n.is_empty() && n != "Old Name" => json!([{"event": "creds.update", "data": {"me": {
                "id": "15550009999@s.whatsapp.net", "name": n}}}]),
            _ => json!([]),
        },
        Action::UnarchiveChatsSetting { unarchive_chats } => json!([{"event": "creds.update", "data": {
            "accountSettings": {"unarchiveChats": unarchive_chats}}}]),
        Action::LabelEdit { label_id, name, color, predefined_id, deleted } => {
            let mut d = serde_json::Map::new();
            d.insert("id".into(), json!(label_id));
            d.insert("name".into(), json!(name));
            d.insert("color".into(), json!(color));
            d.insert("deleted".into(), json!(deleted));
            opt(&mut d, "predefinedId", predefined_id.filter(|p| *p != 0).map(|p| p.to_string()));
            json!([{"event": "labels.edit", "data": d}])
        }
        Action::LabelChat { label_id, chat, labeled } => json!([{"event": "labels.association", "data": {
            "type": if *labeled { "add" } else { "remove" },
            "association": {"type": "label_jid", "chatId": chat, "labelId": label_id}}}]),
        Action::LabelMessage { label_id, message, labeled } => {
            json!([{"event": "labels.association", "data": {
            "type": if *labeled { "add" } else { "remove" },
            "association": {"type": "label_message", "chatId": message.chat, "messageId": message.id,
                "labelId": label_id}}}])
        }
        Action::Locale { locale } => {
            json!([{"event": "settings.update", "data": {"setting": "locale", "value": locale}}])
        }
        Action::PnForLidChat { lid, pn } => {
            json!([{"event": "lid-mapping.update", "data": {"lid": lid, "pn": pn}}])
        }
        Action::Lock { chat, locked } => {
            json!([{"event": "chats.lock", "data": {"id": chat, "locked": locked}}])
        }
        Action::DisableLinkPreviews { disabled } => json!([{"event": "settings.update", "data": {
            "setting": "disableLinkPreviews", "value": {"isPreviewsDisabled": disabled}}}]),
        other => panic!("no Baileys event mapping for {other:?}"),
    }
}

fn last_messages(m: &Value) -> Vec<LastMessage> {
    m["lastMessages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| LastMessage {
            key: MessageKey {
                remote_jid: l["key"]["remoteJid"].as_str().map(Into::into),
                from_me: l["key"]["fromMe"].as_bool(),
                id: l["key"]["id"].as_str().map(Into::into),
                participant: l["key"]["participant"].as_str().map(Into::into),
            },
            timestamp: l["messageTimestamp"].as_i64().unwrap(),
        })
        .collect()
}

/// Our builder for the actions we send ourselves, from the vector's chat modification.
fn our_builder(x: &Value) -> Option<MutationInput> {
    let m = x.get("chat_modification")?;
    let jid = x["jid"].as_str().unwrap();
    let ts = x["timestamp_ms"].as_i64().unwrap();
    Some(match x["name"].as_str().unwrap() {
        "mute" | "unmute" | "mute_group" => action::mute(jid, m["mute"].as_i64(), ts),
        "archive" | "unarchive" => {
            action::archive(jid, m["archive"].as_bool().unwrap(), &last_messages(m), ts)
        }
        "pin" | "unpin" => action::pin(jid, m["pin"].as_bool().unwrap(), ts),
        "mark_read" | "mark_unread" => {
            action::mark_read(jid, m["markRead"].as_bool().unwrap(), &last_messages(m), ts)
        }
        "label_edit" | "label_edit_predefined" => {
            let l = &m["addLabel"];
            action::label_edit(
                l["id"].as_str().unwrap(),
                l["name"].as_str().unwrap(),
                l["color"].as_i64().unwrap() as i32,
                l["predefinedId"].as_i64().map(|p| p as i32),
                l["deleted"].as_bool().unwrap(),
                ts,
            )
        }
        "label_association_chat_add" => {
            action::label_chat(m["addChatLabel"]["labelId"].as_str().unwrap(), jid, true, ts)
        }
        "label_association_chat_remove" => {
            action::label_chat(m["removeChatLabel"]["labelId"].as_str().unwrap(), jid, false, ts)
        }
        "label_association_message_add" => {
            let l = &m["addMessageLabel"];
            action::label_message(
                l["labelId"].as_str().unwrap(),
                jid,
                l["messageId"].as_str().unwrap(),
                true,
                ts,
            )
        }
        _ => return None,
    })
}

#[test]
fn mutations() {
    let v = load();
    let keys = ring(&v);
    let mut built = 0;
    for x in group(&v, "mutation") {
        let name = x["name"].as_str().unwrap();
        let index: Vec<String> = serde_json::from_value(x["index"].clone()).unwrap();
        assert_eq!(wa_appstate::index::encode_index(&index), h(&x["index_json_hex"]), "{name}: index JSON");
        let m = SyncdMutation::decode(h(&x["syncd_mutation_hex"]).as_slice()).unwrap();
        let d = decode_mutation(0, &m, &keys).unwrap_or_else(|e| panic!("{name}: {e}"));
        let op = if x["operation"] == "REMOVE" { Operation::Remove } else { Operation::Set };
        assert_eq!(d.operation, op, "{name}");
        assert_eq!(d.index, index, "{name}");
        assert_eq!(d.index_mac, a32(&x["index_mac_hex"]), "{name}");
        assert_eq!(d.value_mac, a32(&x["value_mac_hex"]), "{name}");
        assert_eq!(d.key_id.to_base64(), x["key_id_b64"].as_str().unwrap(), "{name}");
        assert_eq!(d.api_version, x["api_version"].as_i64().map(|v| v as i32), "{name}");
        let value = d.value.clone().unwrap();
        assert_eq!(value.encode_to_vec(), h(&x["sync_action_value_hex"]), "{name}: SyncActionValue bytes");
        assert_eq!(value.timestamp, x["timestamp_ms"].as_i64(), "{name}");

        // LTHash of this one mutation from an empty collection
        let mut st = CollectionState::new(collection(&x["collection"]));
        st.mix(d.operation, d.index_mac, d.value_mac);
        assert_eq!(st.hash.0.to_vec(), h(&x["lthash_from_zero_hex"]), "{name}: LTHash");

        // the decoded action, checked against the events Baileys derived from it
        assert!(
            !matches!(d.action, Action::Unknown { .. } | Action::Malformed { .. }),
            "{name}: {:?}",
            d.action
        );
        assert_eq!(baileys_events(&d.action, &value), x["process_sync_action_events"], "{name}: events");

        // our encoder, from the recorded IV, reproduces every byte
        let input = MutationInput {
            collection: collection(&x["collection"]),
            operation: op,
            index: index.clone(),
            value: value.clone(),
            api_version: x["api_version"].as_i64().unwrap() as i32,
        };
        assert_eq!(
            action_data(&input).encode_to_vec(),
            h(&x["sync_action_data_hex"]),
            "{name}: SyncActionData"
        );
        let iv: [u8; 16] = h(&x["iv_hex"]).try_into().unwrap();
        let kid = key_id(&v, x["key_name"].as_str().unwrap());
        let e = encode_mutation(&input, &kid, keys.get(kid.as_bytes()).unwrap(), &iv);
        assert_eq!(e.mutation.encode_to_vec(), h(&x["syncd_mutation_hex"]), "{name}: SyncdMutation bytes");
        assert_eq!(e.value_mac, d.value_mac, "{name}");
        let blob = e.mutation.record.as_ref().unwrap().value.as_ref().unwrap().blob.clone().unwrap();
        assert_eq!(blob, h(&x["value_blob_hex"]), "{name}: value blob");
        assert_eq!(blob[..blob.len() - 32], h(&x["encrypted_value_hex"]), "{name}: IV ‖ ciphertext");

        // and the builders for our own mutations make the same value as Baileys'
        if let Some(ours) = our_builder(x) {
            assert_eq!(ours.collection, input.collection, "{name}: collection");
            assert_eq!(ours.index, index, "{name}: index");
            assert_eq!(ours.api_version, input.api_version, "{name}: api version");
            assert_eq!(ours.value.encode_to_vec(), h(&x["sync_action_value_hex"]), "{name}: builder bytes");
            built += 1;
        }
    }
    assert_eq!(built, 14, "every builder had its vector");
}

fn mutation_input_of(d: &wa_appstate::DecodedMutation, c: Collection) -> MutationInput {
    MutationInput {
        collection: c,
        operation: d.operation,
        index: d.index.clone(),
        value: d.value.clone().unwrap(),
        api_version: d.api_version.unwrap(),
    }
}

#[test]
fn patch_sequences() {
    let v = load();
    let keys = ring(&v);
    let mut patches = 0;
    for seq in group(&v, "patch_sequence") {
        let c = collection(&seq["collection"]);
        let mut st = state_from(c, &seq["initial_state"]);
        let mut last_by_index = std::collections::BTreeMap::new();
        for p in seq["patches"].as_array().unwrap() {
            let what = format!("{c} step {}", p["step"]);
            let patch = decode_patch(&h(&p["patch_hex"])).unwrap();
            assert_eq!(patch.snapshot_mac.as_deref(), Some(h(&p["snapshot_mac_hex"]).as_slice()));
            assert_eq!(patch.patch_mac.as_deref(), Some(h(&p["patch_mac_hex"]).as_slice()));
            let applied = apply_patch(&st, &patch, &keys).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_state(&applied.state, &p["state_after"], &what);
            assert_eq!(applied.mutations.len(), 1, "{what}");
            let d = &applied.mutations[0];
            assert_eq!(serde_json::to_value(&d.index).unwrap(), p["patch_create"]["index"], "{what}");
            assert_eq!(d.key_id.to_base64(), p["key_id_b64"].as_str().unwrap(), "{what}: record key id");
            assert_eq!(
                d.operation == Operation::Remove,
                p["patch_create"]["operation"] == "REMOVE",
                "{what}"
            );
            assert_eq!(d.index_mac, a32(&p["index_mac_hex"]), "{what}");
            assert_eq!(d.value_mac, a32(&p["value_mac_hex"]), "{what}");
            // the changed rows, as a store would write them
            for (i, val) in &applied.changes.set {
                assert_eq!(applied.state.index_value_macs.get(i), Some(val), "{what}");
            }
            for i in &applied.changes.removed {
                assert!(!applied.state.index_value_macs.contains_key(i), "{what}");
            }

            // encoding the same mutation from the previous state, with the recorded IV and
            // key, gives the patch Baileys sent and the state the relayed patch leads to
            let iv: [u8; 16] = h(&p["iv_hex"]).try_into().unwrap();
            let kid = key_id(&v, p["key_name"].as_str().unwrap());
            let enc = encode_patch(&st, &[(mutation_input_of(d, c), iv)], &kid, &keys).unwrap();
            assert_eq!(hex::encode(&enc.bytes), p["patch_as_sent_hex"].as_str().unwrap(), "{what}: as sent");
            assert_eq!(enc.applied.state, applied.state, "{what}: encoder state");
            assert_eq!(enc.applied.changes, applied.changes, "{what}: encoder changes");

            last_by_index
                .insert(String::from_utf8(wa_appstate::index::encode_index(&d.index)).unwrap(), d.clone());
            st = applied.state;
            patches += 1;
        }
        assert_state(&st, &seq["final_state"], c.as_str());
        // Baileys' decodePatches map: the last mutation of every index
        let want = seq["decode_patches_mutation_map"].as_object().unwrap();
        assert_eq!(last_by_index.keys().collect::<Vec<_>>().len(), want.len(), "{c}");
        for (k, m) in want {
            let d = &last_by_index[k];
            let value = &m["sync_action_data_json"]["value"];
            assert_eq!(
                d.value.as_ref().unwrap().timestamp.map(|t| t.to_string()),
                value["timestamp"].as_str().map(Into::into)
            );
            assert_eq!(d.api_version, m["sync_action_data_json"]["version"].as_i64().map(|v| v as i32));
        }
    }
    assert_eq!(patches, 6 + 7 + 5 + 4 + 4);
}

#[test]
fn patch_multi_mutation() {
    let v = load();
    let keys = ring(&v);
    for x in group(&v, "patch_multi_mutation") {
        let c = collection(&x["collection"]);
        let st = state_from(c, &x["initial_state"]);
        let patch = decode_patch(&h(&x["patch_hex"])).unwrap();
        let applied = apply_patch(&st, &patch, &keys).unwrap();
        assert_state(&applied.state, &x["state_after"], "multi");
        assert_state(&applied.state, &x["decode_patches_state"], "multi (decodePatches)");
        let want: Vec<&Value> = x["mutations"].as_array().unwrap().iter().collect();
        assert_eq!(applied.mutations.len(), want.len());
        for (d, w) in applied.mutations.iter().zip(want) {
            assert_eq!(serde_json::to_value(&d.index).unwrap(), w["index"]);
            assert_eq!(d.index_mac, a32(&w["index_mac_hex"]));
            assert_eq!(d.value_mac, a32(&w["value_mac_hex"]));
        }
        // the server's MACs cover the mutations in order: our encoder, given the same
        // records, computes the same snapshot and patch MACs
        let rebuilt: Vec<(MutationInput, [u8; 16])> = applied
            .mutations
            .iter()
            .zip(&patch.mutations)
            .map(|(d, m)| {
                let blob = m.record.as_ref().unwrap().value.as_ref().unwrap().blob.as_ref().unwrap();
                (mutation_input_of(d, c), blob[..16].try_into().unwrap())
            })
            .collect();
        let enc = encode_patch(
            &st,
            &rebuilt,
            &KeyId::from_base64(x["key_id_b64"].as_str().unwrap()).unwrap(),
            &keys,
        )
        .unwrap();
        assert_eq!(enc.patch.snapshot_mac, Some(h(&x["snapshot_mac_hex"])));
        assert_eq!(enc.patch.patch_mac, Some(h(&x["patch_mac_hex"])));
        assert_eq!(enc.patch.mutations, patch.mutations);
    }
}

#[test]
fn snapshots() {
    let v = load();
    let keys = ring(&v);
    for x in group(&v, "snapshot") {
        let c = collection(&x["collection"]);
        let snap = decode_snapshot(&h(&x["snapshot_hex"])).unwrap();
        assert_eq!(snap.mac, Some(h(&x["mac_hex"])));
        assert_eq!(snap.records.len(), x["records"].as_array().unwrap().len());
        let applied = apply_snapshot(c, &snap, &keys).unwrap();
        assert_state(&applied.state, &x["expected_state"], c.as_str());
        let mut got: Vec<String> = applied
            .mutations
            .iter()
            .map(|d| String::from_utf8(wa_appstate::index::encode_index(&d.index)).unwrap())
            .collect();
        assert_eq!(got.len(), snap.records.len(), "{c}: one mutation per record");
        // Baileys keys its map by index JSON; an index written under two keys (before and
        // after a rotation) has two index MACs, so two records, but one map entry
        got.sort();
        got.dedup();
        let mut want: Vec<String> = x["decoded_mutation_map"].as_object().unwrap().keys().cloned().collect();
        want.sort();
        assert_eq!(got, want, "{c}: decoded indexes");
        for (d, r) in applied.mutations.iter().zip(x["records"].as_array().unwrap()) {
            assert_eq!(
                d.key_id.to_base64(),
                r["key_id_b64"].as_str().unwrap(),
                "records keep their own key id"
            );
            assert_eq!(d.index_mac, a32(&r["index_mac_hex"]));
        }
    }
}

#[test]
fn sync_response() {
    let v = load();
    let keys = ring(&v);
    let seqs = group(&v, "patch_sequence");
    for x in group(&v, "sync_response") {
        let node = wa_binary::decode_frame(&h(&x["node_hex"])).unwrap();
        assert_eq!(node.tag, "iq");
        let cols = parse_sync_response(&node).unwrap();
        assert_eq!(cols.len(), 2);
        let expected = &x["expected"];
        for c in &cols {
            assert_eq!(
                c.has_more_patches,
                expected["has_more_patches"][c.collection.as_str()].as_bool().unwrap()
            );
            assert_eq!(c.error, None);
        }
        // the snapshot: an external blob, downloaded by the caller and decrypted here
        let sb = &x["snapshot_blob"];
        let snap_col = cols.iter().find(|c| c.collection.as_str() == sb["collection"]).unwrap();
        let reference = snap_col.snapshot.as_ref().unwrap();
        assert_eq!(reference.encode_to_vec(), h(&sb["external_blob_reference_hex"]));
        assert_eq!(
            format!("https://mmg.whatsapp.net{}", reference.direct_path.as_deref().unwrap()),
            sb["url_requested"].as_str().unwrap()
        );
        let plain = decrypt_external_blob(reference, &h(&sb["enc_hex"])).unwrap();
        assert_eq!(plain.len() as u64, sb["file_length"].as_u64().unwrap());
        let snap = decode_snapshot(&plain).unwrap();
        let applied = apply_snapshot(snap_col.collection, &snap, &keys).unwrap();
        assert_state(&applied.state, &expected[snap_col.collection.as_str()], "sync response snapshot");
        assert_eq!(Some(applied.state.version), snap_col.version);
        // a flipped blob byte is refused by its hashes and MAC
        let mut bad = h(&sb["enc_hex"]);
        bad[5] ^= 1;
        assert_eq!(decrypt_external_blob(reference, &bad).unwrap_err().kind(), ErrorKind::Integrity);

        // the inline patches, applied from the sequence's start
        let pc = cols.iter().find(|c| c.snapshot.is_none()).unwrap();
        let seq = seqs.iter().find(|s| s["collection"] == pc.collection.as_str()).unwrap();
        let mut st = state_from(pc.collection, &seq["initial_state"]);
        assert_eq!(pc.patches.len(), seq["patches"].as_array().unwrap().len());
        for p in &pc.patches {
            st = apply_patch(&st, p, &keys).unwrap().state;
        }
        assert_state(&st, &expected[pc.collection.as_str()], "sync response patches");
        assert_eq!(Some(st.version), pc.version);
    }
}

#[test]
fn tamper_cases_are_rejected_and_leave_the_state() {
    let v = load();
    let keys = ring(&v);
    let seq = group(&v, "patch_sequence").into_iter().find(|s| s["collection"] == "regular_low").unwrap();
    let c = Collection::RegularLow;
    let initial = state_from(c, &seq["initial_state"]);
    let patch0 = decode_patch(&h(&seq["patches"][0]["patch_hex"])).unwrap();
    let before = apply_patch(&initial, &patch0, &keys).unwrap().state;
    let mut n = 0;
    for x in group(&v, "tamper") {
        let name = x["name"].as_str().unwrap();
        let bad = h(&x["tampered_hex"]);
        let err = if x["target"] == "SyncdSnapshot" {
            apply_snapshot(c, &decode_snapshot(&bad).unwrap(), &keys).unwrap_err()
        } else {
            let copy = before.clone();
            let e = apply_patch(&before, &decode_patch(&bad).unwrap(), &keys).unwrap_err();
            assert_eq!(before, copy, "{name}: state unchanged");
            // the untampered patch still applies on the unchanged state
            let good = apply_patch(&before, &decode_patch(&h(&x["original_hex"])).unwrap(), &keys).unwrap();
            assert_state(&good.state, &seq["patches"][1]["state_after"], name);
            e
        };
        let want = match name {
            "snapshot_bad_mac" => matches!(err, AppStateError::SnapshotMacMismatch { version: 48 }),
            "snapshot_record_ciphertext_flipped" => {
                matches!(err, AppStateError::ValueMacMismatch { mutation: 0 })
            }
            // patchMac covers the snapshot MAC and every value MAC
            "patch_bad_patch_mac" | "patch_bad_snapshot_mac" | "patch_value_mac_flipped" => {
                matches!(err, AppStateError::PatchMacMismatch { version: 43 })
            }
            "patch_value_ciphertext_flipped" => {
                matches!(err, AppStateError::ValueMacMismatch { mutation: 0 })
            }
            "patch_index_mac_flipped" => matches!(err, AppStateError::IndexMacMismatch { mutation: 0 }),
            other => panic!("unexpected tamper vector {other}"),
        };
        assert!(want, "{name}: got {err:?}");
        assert_eq!(err.kind(), ErrorKind::Integrity, "{name}");
        n += 1;
    }
    assert_eq!(n, 7);
}

#[test]
fn version_limit() {
    let v = load();
    let keys = ring(&v);
    for x in group(&v, "limits") {
        let c = collection(&x["collection"]);
        let mut st = CollectionState::new(c);
        st.version = x["initial_version"].as_u64().unwrap();
        assert_eq!(st.version, u64::from(u32::MAX));
        let pin = action::pin("120363000000000042@g.us", true, 1_767_225_600_000);
        let err = encode_patch(&st, &[(pin.clone(), [0; 16])], &key_id(&v, "k0"), &keys).unwrap_err();
        assert_eq!(err, AppStateError::VersionOutOfRange(1 << 32));
        assert_eq!(err.kind(), ErrorKind::Version);
        // one below the limit encodes, and the relayed patch applies
        st.version -= 1;
        let enc = encode_patch(&st, &[(pin, [0; 16])], &key_id(&v, "k0"), &keys).unwrap();
        let mut relayed = enc.patch.clone();
        relayed.version = Some(wa_proto::SyncdVersion { version: Some(u64::from(u32::MAX)) });
        assert_eq!(apply_patch(&st, &relayed, &keys).unwrap().state, enc.applied.state);
        // a relayed patch claiming 2^32 is refused before any MAC is computed
        let mut at_limit = enc.applied.state.clone();
        relayed.version = Some(wa_proto::SyncdVersion { version: Some(1 << 32) });
        assert_eq!(
            apply_patch(&at_limit, &relayed, &keys).unwrap_err(),
            AppStateError::VersionOutOfRange(1 << 32)
        );
        at_limit.version = 7;
        assert!(matches!(
            apply_patch(&at_limit, &enc.patch_with_version(9), &keys),
            Err(AppStateError::VersionMismatch { local: 7, got: 9 })
        ));
    }
}

trait WithVersion {
    fn patch_with_version(&self, v: u64) -> wa_proto::SyncdPatch;
}

impl WithVersion for wa_appstate::EncodedPatch {
    fn patch_with_version(&self, v: u64) -> wa_proto::SyncdPatch {
        let mut p = self.patch.clone();
        p.version = Some(wa_proto::SyncdVersion { version: Some(v) });
        p
    }
}

#[test]
fn history_sync() {
    let v = load();
    for x in group(&v, "history_sync") {
        let name = x["name"].as_str().unwrap();
        let msg = Message::decode(h(&x["message_proto_hex"]).as_slice()).unwrap();
        let n = msg.protocol_message.as_ref().unwrap().history_sync_notification.as_ref().unwrap();
        assert_eq!(n.direct_path.as_deref(), x["notification"]["direct_path"].as_str());
        assert!(inline_payload(n).is_none(), "{name}");
        let compressed = decrypt_history_blob(n, &h(&x["media"]["enc_hex"])).unwrap();
        // compare what inflates, never the deflated bytes (another zlib may deflate differently)
        let inflated = inflate(&compressed, wa_appstate::history::MAX_HISTORY_BYTES).unwrap();
        assert_eq!(inflated, h(&x["history_sync_proto_hex"]), "{name}: inflated HistorySync");
        let hs = decode_history(&inflated).unwrap();
        assert_eq!(hs.encode_to_vec(), inflated, "{name}: HistorySync re-encodes to the same bytes");
        let side = side_data(&hs);
        let want_maps: Vec<(String, String)> = x["processed"]["lidPnMappings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["lid"].as_str().unwrap().to_owned(), m["pn"].as_str().unwrap().to_owned()))
            .collect();
        let got_maps: Vec<(String, String)> =
            side.lid_pn_mappings.iter().map(|m| (m.lid.clone(), m.pn.clone())).collect();
        assert_eq!(got_maps, want_maps, "{name}: PN↔LID mappings");
        let want_contacts = x["processed"]["contacts"].as_array().unwrap();
        assert_eq!(side.contacts.len(), want_contacts.len(), "{name}");
        for (c, w) in side.contacts.iter().zip(want_contacts) {
            assert_eq!(c.id, w["id"].as_str().unwrap(), "{name}");
            assert_eq!(c.name.as_deref(), w["name"].as_str(), "{name}: name");
            assert_eq!(c.lid.as_deref(), w["lid"].as_str(), "{name}: lid");
            assert_eq!(c.pn.as_deref(), w["phoneNumber"].as_str(), "{name}: phone number");
            assert_eq!(c.push_name.as_deref(), w["notify"].as_str(), "{name}: push name");
        }
        let msgs: usize = hs.conversations.iter().map(|c| c.messages.len()).sum();
        assert_eq!(msgs, x["processed"]["messages"].as_array().unwrap().len(), "{name}");
        // tampering with the downloaded blob is caught before inflating
        let mut bad = h(&x["media"]["enc_hex"]);
        bad[0] ^= 1;
        assert_eq!(decrypt_history_blob(n, &bad).unwrap_err().kind(), ErrorKind::Integrity);
        if let Some(inl) = x.get("inline_variant") {
            let m2 = Message::decode(h(&inl["message_proto_hex"]).as_slice()).unwrap();
            let n2 = m2.protocol_message.as_ref().unwrap().history_sync_notification.as_ref().unwrap();
            let payload = inline_payload(n2).unwrap();
            assert_eq!(
                inflate(payload, wa_appstate::history::MAX_HISTORY_BYTES).unwrap(),
                inflated,
                "{name}: inline"
            );
        }
    }
}
