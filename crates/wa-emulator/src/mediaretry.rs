//! Media expiry and media retry: a blob's download answers 410 once it is older than
//! [`MEDIA_TTL_SECS`] (emulator time); a companion that gets 404/410 sends its own phone a
//! `<receipt type="server-error">` carrying an encrypted `ServerErrorReceipt`, the phone
//! re-uploads its copy of the file to a new path, and the companion gets a
//! `<notification type="mediaretry">` carrying an encrypted `MediaRetryNotification` with
//! the new direct path (whatsmeow `mediaretry.go`, Baileys `Utils/messages-media.ts`
//! `encryptMediaRetryRequest`/`decodeMediaRetryNode`).

use prost::Message as _;
use rand_core::Rng;
use wa_binary::{Jid, Node, Server};
use wa_proto::media_retry_notification::ResultType;
use wa_proto::{MediaRetryNotification, Message, ServerErrorReceipt};

use crate::world::{DeviceAddr, World, WorldEvent, attr, child_bytes};

/// How long an uploaded blob stays downloadable. The references only say that old media
/// answers 404 or 410 (whatsmeow `mediaretry.go` `SendMediaRetryReceipt` doc); the 30 days
/// are the emulator's choice, not a documented figure.
pub const MEDIA_TTL_SECS: u64 = 30 * 24 * 3600;

/// HKDF info of the media retry key (whatsmeow `mediaretry.go` `getMediaRetryKey`).
const RETRY_KEY_INFO: &[u8] = b"WhatsApp Media Retry Notification";

/// The `<error code>` of a retry the phone cannot serve because it lacks the message
/// (whatsmeow `DecryptMediaRetryNotification`: code 2 is `ErrMediaNotAvailableOnPhone`).
const NOT_ON_PHONE: u32 = 2;

/// What a media download finds.
#[derive(Debug)]
pub(crate) enum MediaFetch {
    /// The blob.
    Found(Vec<u8>),
    /// Stored, but older than [`MEDIA_TTL_SECS`].
    Expired,
    /// Never stored.
    Missing,
}

/// The media retry key: HKDF-SHA256(mediaKey, no salt, [`RETRY_KEY_INFO`], 32).
pub fn media_retry_key(media_key: &[u8]) -> [u8; 32] {
    wa_crypto::hkdf_sha256_array(media_key, &[], RETRY_KEY_INFO)
}

/// The media fields of a message: (kind as in `/m/<kind>/…`, direct path, media key).
fn media_of(m: &Message) -> Option<(&'static str, String, Vec<u8>)> {
    let pick = |kind, path: &Option<String>, key: &Option<Vec<u8>>| Some((kind, path.clone()?, key.clone()?));
    if let Some(x) = &m.image_message {
        return pick("image", &x.direct_path, &x.media_key);
    }
    if let Some(x) = &m.video_message {
        return pick("video", &x.direct_path, &x.media_key);
    }
    if let Some(x) = &m.audio_message {
        return pick("audio", &x.direct_path, &x.media_key);
    }
    if let Some(x) = &m.document_message {
        return pick("document", &x.direct_path, &x.media_key);
    }
    if let Some(x) = &m.sticker_message {
        return pick("image", &x.direct_path, &x.media_key);
    }
    None
}

impl World {
    /// What `GET <direct path>` serves.
    pub(crate) fn media_download(&self, direct_path: &str) -> MediaFetch {
        let Some(blob) = self.media.get(direct_path) else { return MediaFetch::Missing };
        let stored = self.traffic.media_stored_at.get(direct_path).copied().unwrap_or(0);
        if self.now() >= stored.saturating_add(MEDIA_TTL_SECS) {
            return MediaFetch::Expired;
        }
        MediaFetch::Found(blob.clone())
    }

    /// The phone's own copy of a media message: one it received (its inbox, which holds the
    /// device-sent copies of its companions' messages too) or one it sent.
    fn phone_media_message(&self, account: usize, id: &str) -> Option<Message> {
        let inbox = self.accounts[account].phone.inbox.iter().rev().find(|m| m.id == id && m.error.is_none());
        if let Some(m) = inbox.and_then(|m| Message::decode(m.message.as_slice()).ok())
            && media_of(&m).is_some()
        {
            return Some(m);
        }
        self.traffic.phone_media.get(&(account, id.to_owned())).cloned()
    }

    /// A companion's `<receipt type="server-error" to=<own user> id><encrypt><enc_p/><enc_iv/>
    /// </encrypt><rmr jid from_me [participant]/></receipt>`: its phone decrypts the request
    /// (AES-256-GCM, key [`media_retry_key`], AAD = message id), re-uploads its copy of the
    /// file under a new direct path, and answers the companion with `<notification
    /// type="mediaretry" id=<message id>><encrypt><enc_p/><enc_iv/></encrypt><rmr …/>
    /// </notification>` carrying `MediaRetryNotification{stanzaId, directPath, result}`, or
    /// with `<rmr/><error code="2"/>` when it does not have the message.
    pub(crate) fn on_media_retry_receipt(&mut self, requester: DeviceAddr, r: &Node) {
        let account = requester.account;
        let to_own = r.attr_jid("to").ok().is_some_and(|to| self.account_of(&to) == Some(account));
        if !to_own || requester.device == 0 {
            tracing::warn!("media retry receipt not addressed to the requester's own account");
            return;
        }
        let id = attr(r, "id");
        let rmr = r.child("rmr").cloned().unwrap_or_else(|| Node::new("rmr"));
        let request =
            r.child("encrypt").and_then(|e| Some((child_bytes(e, "enc_p")?, child_bytes(e, "enc_iv")?)));
        let pn = self.accounts[account].pn.clone();
        let own = self.user_jid(account, Server::Pn);
        let Some(message) = self.phone_media_message(account, &id) else {
            let error = Node::new("error").attr("code", NOT_ON_PHONE);
            self.send_media_retry(requester, own, &id, vec![rmr, error]);
            self.emit(WorldEvent::MediaRetryAnswered {
                pn,
                id,
                result: "not_found".into(),
                direct_path: None,
            });
            return;
        };
        let Some((kind, old_path, media_key)) = media_of(&message) else { return };
        let key = media_retry_key(&media_key);
        let asked = request.and_then(|(ct, iv)| {
            let iv: [u8; 12] = iv.try_into().ok()?;
            let plain = wa_crypto::aead::decrypt(&key, &iv, id.as_bytes(), ct).ok()?;
            ServerErrorReceipt::decode(plain.as_slice()).ok()
        });
        let old_path = old_path.split('?').next().unwrap_or_default().to_owned();
        let (result, direct_path) = match (asked, self.media.get(&old_path).cloned()) {
            (Some(req), _) if req.stanza_id.as_deref() != Some(id.as_str()) => {
                (ResultType::DecryptionError, None)
            }
            (None, _) => (ResultType::DecryptionError, None),
            (Some(_), None) => (ResultType::NotFound, None),
            (Some(_), Some(blob)) => {
                self.traffic.reuploads += 1;
                let token = self.random_hex(16);
                let (path, _) = self.store_media(kind, &token, blob);
                (ResultType::Success, Some(path))
            }
        };
        let reply = MediaRetryNotification {
            stanza_id: Some(id.clone()),
            direct_path: direct_path.clone(),
            result: Some(result as i32),
            message_secret: None,
        };
        let mut iv = [0u8; 12];
        self.rng.fill_bytes(&mut iv);
        let ct = wa_crypto::aead::encrypt(&key, &iv, id.as_bytes(), &reply.encode_to_vec());
        let encrypt = Node::new("encrypt")
            .children([Node::new("enc_p").bytes(ct), Node::new("enc_iv").bytes(iv.to_vec())]);
        self.send_media_retry(requester, own, &id, vec![encrypt, rmr]);
        let result = match result {
            ResultType::Success => "success",
            ResultType::NotFound => "not_found",
            ResultType::DecryptionError => "decryption_error",
            ResultType::GeneralError => "general_error",
        };
        self.emit(WorldEvent::MediaRetryAnswered { pn, id, result: result.into(), direct_path });
    }

    fn send_media_retry(&mut self, to: DeviceAddr, from: Jid, id: &str, children: Vec<Node>) {
        let note = Node::new("notification")
            .attr("from", from)
            .attr("type", "mediaretry")
            .attr("id", id)
            .attr("t", self.now())
            .children(children);
        self.deliver(to, note);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testutil::{add_companion, login, of, sent, world};

    #[test]
    fn a_blob_expires_after_its_ttl() {
        let (mut w, clock) = world(0);
        let (path, _) = w.store_media("image", "TOKEN", vec![1, 2, 3]);
        assert!(matches!(w.media_download(&path), MediaFetch::Found(b) if b == [1, 2, 3]));
        clock.advance(MEDIA_TTL_SECS - 1);
        assert!(matches!(w.media_download(&path), MediaFetch::Found(_)));
        clock.advance(1);
        assert!(matches!(w.media_download(&path), MediaFetch::Expired));
        assert!(matches!(w.media_download("/m/image/other.enc"), MediaFetch::Missing));
    }

    /// `<receipt type="server-error">` as whatsmeow's `SendMediaRetryReceipt` builds it.
    fn retry_receipt(id: &str, to: Jid, chat: Jid, media_key: &[u8], iv: [u8; 12]) -> Node {
        let request = ServerErrorReceipt { stanza_id: Some(id.to_owned()) }.encode_to_vec();
        let ct = wa_crypto::aead::encrypt(&media_retry_key(media_key), &iv, id.as_bytes(), &request);
        Node::new("receipt").attr("id", id).attr("to", to).attr("type", "server-error").children([
            Node::new("encrypt")
                .children([Node::new("enc_p").bytes(ct), Node::new("enc_iv").bytes(iv.to_vec())]),
            Node::new("rmr").attr("jid", chat).attr("from_me", "false"),
        ])
    }

    #[test]
    fn the_phone_reuploads_expired_media_and_says_where() {
        let (mut w, clock) = world(2);
        let me = add_companion(&mut w, 0, 5);
        let own = w.user_jid(0, Server::Pn);
        let contact = w.user_jid(1, Server::Pn);
        let id = w.phone_send_image(1, &own, b"a picture", "image/png", None).unwrap();
        let inbox = w.accounts[0].phone.inbox.iter().find(|m| m.id == id).unwrap().clone();
        let image = Message::decode(inbox.message.as_slice()).unwrap().image_message.unwrap();
        let (key, old_path) = (image.media_key.unwrap(), image.direct_path.unwrap());
        clock.advance(MEDIA_TTL_SECS);
        assert!(matches!(w.media_download(&old_path), MediaFetch::Expired));
        let (conn, mut rx) = login(&mut w, me);
        sent(&mut rx);

        w.on_node(conn, retry_receipt(&id, own.clone(), contact.clone(), &key, [7; 12]));
        let got = sent(&mut rx);
        assert_eq!(attr(of(&got, "ack", None)[0], "type"), "server-error");
        let note = of(&got, "notification", Some("mediaretry"))[0];
        assert_eq!((attr(note, "id"), attr(note, "from")), (id.clone(), own.to_string()));
        assert_eq!(attr(note.child("rmr").unwrap(), "jid"), contact.to_string());
        let enc = note.child("encrypt").unwrap();
        let iv: [u8; 12] = child_bytes(enc, "enc_iv").unwrap().try_into().unwrap();
        let plain = wa_crypto::aead::decrypt(
            &media_retry_key(&key),
            &iv,
            id.as_bytes(),
            child_bytes(enc, "enc_p").unwrap(),
        )
        .unwrap();
        let reply = MediaRetryNotification::decode(plain.as_slice()).unwrap();
        assert_eq!(reply.result, Some(ResultType::Success as i32));
        assert_eq!(reply.stanza_id.as_deref(), Some(id.as_str()));
        let new_path = reply.direct_path.unwrap();
        assert_ne!(new_path, old_path);
        assert!(
            matches!(w.media_download(&new_path), MediaFetch::Found(b) if Some(&b) == w.media.get(&old_path))
        );

        // Sealed with another key: the phone cannot read the request.
        w.on_node(conn, retry_receipt(&id, own.clone(), contact.clone(), &[9; 32], [7; 12]));
        let got = sent(&mut rx);
        let enc = of(&got, "notification", Some("mediaretry"))[0].child("encrypt").unwrap();
        let plain = wa_crypto::aead::decrypt(
            &media_retry_key(&key),
            &child_bytes(enc, "enc_iv").unwrap().try_into().unwrap(),
            id.as_bytes(),
            child_bytes(enc, "enc_p").unwrap(),
        )
        .unwrap();
        let reply = MediaRetryNotification::decode(plain.as_slice()).unwrap();
        assert_eq!((reply.result, reply.direct_path), (Some(ResultType::DecryptionError as i32), None));

        // A message the phone does not have: <error code="2"/>.
        w.on_node(conn, retry_receipt("NOPE", own, contact, &key, [7; 12]));
        let got = sent(&mut rx);
        let note = of(&got, "notification", Some("mediaretry"))[0];
        assert_eq!(note.child("error").map(|e| attr(e, "code")), Some("2".to_owned()));
        assert!(note.child("encrypt").is_none());
    }

    #[test]
    fn retry_key_is_hkdf_of_the_media_key() {
        // Vector computed outside Rust (Python hmac/hashlib HKDF-SHA256, empty salt, info
        // "WhatsApp Media Retry Notification", 32 bytes) for the media key 00 01 … 1f.
        let media_key: Vec<u8> = (0u8..32).collect();
        assert_eq!(hex::encode(media_retry_key(&media_key)), EXPECTED);
    }

    const EXPECTED: &str = "c84dfe50a708e0ec382a7ad2ba40135256f41b652cebe2129661d27871111cb2";
}
