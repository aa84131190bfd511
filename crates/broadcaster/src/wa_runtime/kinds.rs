//! Message kinds between WhatsApp's protobuf and the server's types, both ways: what an
//! incoming message is (a reaction, an edit, a revoke, a location, a contact card, a poll; the
//! message it quotes) and the protobuf of each kind the server sends.

use wa_proto::message::{
    ContactMessage, DocumentMessage, ExtendedTextMessage, ImageMessage, LocationMessage, ProtocolMessage,
    ReactionMessage, VideoMessage, protocol_message,
};
use wa_proto::{ContextInfo, Message, MessageKey};

use crate::runtime::{ContactCard, Location, MediaKind, MessageDetail, MessageTarget, Poll, PollVoteCipher};

/// The protocol message, also when it arrives wrapped as an `editedMessage` future-proof message
/// (Baileys and WhatsApp Web send edits both ways).
fn protocol_message(m: &Message) -> Option<&ProtocolMessage> {
    m.protocol_message.as_deref().or_else(|| {
        m.edited_message.as_ref().and_then(|f| f.message.as_ref()).and_then(|x| x.protocol_message.as_deref())
    })
}

/// Text of an edit's new content.
fn text_of(m: &Message) -> Option<String> {
    m.conversation
        .as_deref()
        .or_else(|| m.extended_text_message.as_ref().and_then(|x| x.text.as_deref()))
        .or_else(|| m.image_message.as_ref().and_then(|x| x.caption.as_deref()))
        .or_else(|| m.video_message.as_ref().and_then(|x| x.caption.as_deref()))
        .or_else(|| m.document_message.as_ref().and_then(|x| x.caption.as_deref()))
        .map(str::to_owned)
}

/// What an incoming message is beyond text and media. `Err(())`: a protocol message of another
/// type (ephemeral settings, key shares, …) or a poll vote: nothing a user reads, not recorded.
pub(super) fn detail(m: &Message) -> Result<Option<MessageDetail>, ()> {
    if let Some(r) = &m.reaction_message {
        let target_id = r.key.as_ref().and_then(|k| k.id.clone()).ok_or(())?;
        return Ok(Some(MessageDetail::Reaction { target_id, emoji: r.text.clone().unwrap_or_default() }));
    }
    if let Some(p) = protocol_message(m) {
        let target_id = p.key.as_ref().and_then(|k| k.id.clone()).ok_or(())?;
        return match p.r#type.and_then(|t| protocol_message::Type::try_from(t).ok()) {
            Some(protocol_message::Type::MessageEdit) => Ok(Some(MessageDetail::Edit {
                target_id,
                text: p.edited_message.as_deref().and_then(text_of),
            })),
            Some(protocol_message::Type::Revoke) => Ok(Some(MessageDetail::Revoke { target_id })),
            _ => Err(()),
        };
    }
    if m.protocol_message.is_some() {
        return Err(());
    }
    if let Some(l) = &m.location_message {
        return Ok(Some(MessageDetail::Location(Location {
            latitude: l.degrees_latitude.unwrap_or_default(),
            longitude: l.degrees_longitude.unwrap_or_default(),
            name: l.name.clone(),
            address: l.address.clone(),
        })));
    }
    if let Some(c) = &m.contact_message {
        let vcard = c.vcard.clone().unwrap_or_default();
        // A card without a display name still names someone: the vCard's FN.
        let display_name = c
            .display_name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .or_else(|| vcard.lines().find_map(|l| l.strip_prefix("FN:")).map(|n| n.trim().to_owned()))
            .unwrap_or_default();
        return Ok(Some(MessageDetail::Contact(ContactCard { display_name, vcard })));
    }
    let poll = m
        .poll_creation_message
        .as_ref()
        .or(m.poll_creation_message_v3.as_ref())
        .or(m.poll_creation_message_v2.as_ref());
    if let Some(p) = poll {
        return Ok(Some(MessageDetail::Poll {
            poll: Poll {
                name: p.name.clone().unwrap_or_default(),
                options: p.options.iter().filter_map(|o| o.option_name.clone()).collect(),
                selectable_count: p.selectable_options_count.unwrap_or(0),
            },
            secret: m.message_context_info.as_ref().and_then(|c| c.message_secret.clone()),
        }));
    }
    if let Some(u) = &m.poll_update_message {
        // The voter (and, for our own polls, the creator) is named by the session.
        let key = u.poll_creation_message_key.as_ref().ok_or(())?;
        let vote = u.vote.as_ref().ok_or(())?;
        let creator = if key.from_me == Some(true) {
            String::new()
        } else {
            key.participant.clone().or_else(|| key.remote_jid.clone()).unwrap_or_default()
        };
        return Ok(Some(MessageDetail::PollVote(PollVoteCipher::new(
            key.id.clone().ok_or(())?,
            creator,
            String::new(),
            vote.enc_payload.clone().ok_or(())?,
            vote.enc_iv.clone().ok_or(())?,
        ))));
    }
    Ok(None)
}

/// The context info of whichever part of `m` carries one.
fn context_info(m: &Message) -> Option<&ContextInfo> {
    m.extended_text_message
        .as_ref()
        .and_then(|x| x.context_info.as_deref())
        .or_else(|| m.image_message.as_ref().and_then(|x| x.context_info.as_deref()))
        .or_else(|| m.video_message.as_ref().and_then(|x| x.context_info.as_deref()))
        .or_else(|| m.audio_message.as_ref().and_then(|x| x.context_info.as_deref()))
        .or_else(|| m.document_message.as_ref().and_then(|x| x.context_info.as_deref()))
        .or_else(|| m.sticker_message.as_ref().and_then(|x| x.context_info.as_deref()))
        .or_else(|| m.location_message.as_ref().and_then(|x| x.context_info.as_deref()))
        .or_else(|| m.contact_message.as_ref().and_then(|x| x.context_info.as_deref()))
}

/// WhatsApp's id of the message `m` quotes.
pub(super) fn quoted_id(m: &Message) -> Option<String> {
    context_info(m).and_then(|c| c.stanza_id.clone()).filter(|s| !s.is_empty())
}

/// Puts `ctx` (a reply's context) on the part of `m` that carries it.
pub(super) fn set_context(m: &mut Message, ctx: ContextInfo) {
    let ctx = Some(Box::new(ctx));
    if let Some(x) = m.image_message.as_mut() {
        x.context_info = ctx;
    } else if let Some(x) = m.video_message.as_mut() {
        x.context_info = ctx;
    } else if let Some(x) = m.audio_message.as_mut() {
        x.context_info = ctx;
    } else if let Some(x) = m.document_message.as_mut() {
        x.context_info = ctx;
    } else if let Some(x) = m.sticker_message.as_mut() {
        x.context_info = ctx;
    } else if let Some(x) = m.location_message.as_mut() {
        x.context_info = ctx;
    } else if let Some(x) = m.contact_message.as_mut() {
        x.context_info = ctx;
    } else if let Some(x) = m.extended_text_message.as_mut() {
        x.context_info = ctx;
    } else if let Some(text) = m.conversation.take() {
        m.extended_text_message =
            Some(Box::new(ExtendedTextMessage { text: Some(text), context_info: ctx, ..Default::default() }));
    }
}

/// WhatsApp's key of `target`: its chat as WhatsApp keys it (the LID of a LID chat), and the
/// participant in groups when someone else sent it (whatsmeow `BuildMessageKey`).
pub(super) fn key(target: &MessageTarget) -> MessageKey {
    let group = target.chat.ends_with("@g.us");
    MessageKey {
        remote_jid: Some(target.chat_lid.clone().filter(|_| !group).unwrap_or_else(|| target.chat.clone())),
        from_me: Some(target.from_me),
        id: Some(target.id.clone()),
        participant: if group && !target.from_me { target.sender.clone() } else { None },
    }
}

pub(super) fn reaction(target: &MessageTarget, emoji: &str, now_ms: i64) -> Message {
    Message {
        reaction_message: Some(ReactionMessage {
            key: Some(key(target)),
            text: Some(emoji.to_owned()),
            sender_timestamp_ms: Some(now_ms),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An edit of our message `target`: new text, or for a media message (`media`) its new caption,
/// carried in a message of the same kind that holds only the caption (whatsmeow `BuildEdit`
/// takes whatever content replaces the old; `text_of` reads captions back the same way).
pub(super) fn edit(target: &MessageTarget, text: &str, media: Option<MediaKind>, now_ms: i64) -> Message {
    let caption = Some(text.to_owned());
    let edited = match media {
        Some(MediaKind::Image) => Message {
            image_message: Some(Box::new(ImageMessage { caption, ..Default::default() })),
            ..Default::default()
        },
        Some(MediaKind::Video) => Message {
            video_message: Some(Box::new(VideoMessage { caption, ..Default::default() })),
            ..Default::default()
        },
        Some(MediaKind::Document) => Message {
            document_message: Some(Box::new(DocumentMessage { caption, ..Default::default() })),
            ..Default::default()
        },
        _ => Message { conversation: caption, ..Default::default() },
    };
    Message {
        protocol_message: Some(Box::new(ProtocolMessage {
            key: Some(key(target)),
            r#type: Some(protocol_message::Type::MessageEdit as i32),
            edited_message: Some(Box::new(edited)),
            timestamp_ms: Some(now_ms),
            ..Default::default()
        })),
        ..Default::default()
    }
}

pub(super) fn revoke(target: &MessageTarget) -> Message {
    Message {
        protocol_message: Some(Box::new(ProtocolMessage {
            key: Some(key(target)),
            r#type: Some(protocol_message::Type::Revoke as i32),
            ..Default::default()
        })),
        ..Default::default()
    }
}

pub(super) fn location(l: &Location) -> Message {
    Message {
        location_message: Some(Box::new(LocationMessage {
            degrees_latitude: Some(l.latitude),
            degrees_longitude: Some(l.longitude),
            name: l.name.clone(),
            address: l.address.clone(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

pub(super) fn contact(c: &ContactCard) -> Message {
    Message {
        contact_message: Some(Box::new(ContactMessage {
            display_name: Some(c.display_name.clone()),
            vcard: Some(c.vcard.clone()),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(chat: &str, from_me: bool) -> MessageTarget {
        MessageTarget::new(
            "ABC".into(),
            chat.into(),
            Some("99@lid".into()),
            from_me,
            Some("1555@s.whatsapp.net".into()),
        )
    }

    #[test]
    fn actions_round_trip_into_details() {
        let t = target("1555@s.whatsapp.net", false);
        let r = detail(&reaction(&t, "👍", 1)).unwrap();
        assert_eq!(r, Some(MessageDetail::Reaction { target_id: "ABC".into(), emoji: "👍".into() }));
        let e = detail(&edit(&t, "new", None, 1)).unwrap();
        assert_eq!(e, Some(MessageDetail::Edit { target_id: "ABC".into(), text: Some("new".into()) }));
        // A caption edit carries a message of the media's kind, read back as the new text.
        for kind in [MediaKind::Image, MediaKind::Video, MediaKind::Document] {
            let m = edit(&t, "new caption", Some(kind), 1);
            let inner = m.protocol_message.as_ref().and_then(|p| p.edited_message.as_deref()).unwrap();
            assert!(inner.conversation.is_none(), "{kind:?}");
            let e = detail(&m).unwrap();
            assert_eq!(
                e,
                Some(MessageDetail::Edit { target_id: "ABC".into(), text: Some("new caption".into()) })
            );
        }
        assert_eq!(detail(&revoke(&t)).unwrap(), Some(MessageDetail::Revoke { target_id: "ABC".into() }));
        let l = Location { latitude: 52.5, longitude: 13.4, name: Some("Berlin".into()), address: None };
        assert_eq!(detail(&location(&l)).unwrap(), Some(MessageDetail::Location(l)));
        let card =
            ContactCard { display_name: String::new(), vcard: "BEGIN:VCARD\nFN:Ann\nEND:VCARD".into() };
        let Ok(Some(MessageDetail::Contact(c))) = detail(&contact(&card)) else { panic!("a contact") };
        assert_eq!(c.display_name, "Ann");
        // Other protocol messages are not user content.
        let other = Message {
            protocol_message: Some(Box::new(ProtocolMessage {
                key: Some(key(&t)),
                r#type: Some(protocol_message::Type::EphemeralSetting as i32),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(detail(&other), Err(()));
        assert_eq!(detail(&Message { conversation: Some("hi".into()), ..Default::default() }), Ok(None));
    }

    #[test]
    fn keys_use_the_lid_of_a_lid_chat_and_the_participant_in_groups() {
        let k = key(&target("1555@s.whatsapp.net", false));
        assert_eq!((k.remote_jid.as_deref(), k.participant.as_deref()), (Some("99@lid"), None));
        let k = key(&target("123-456@g.us", false));
        assert_eq!(
            (k.remote_jid.as_deref(), k.participant.as_deref()),
            (Some("123-456@g.us"), Some("1555@s.whatsapp.net"))
        );
        assert_eq!(key(&target("123-456@g.us", true)).participant, None);
    }

    #[test]
    fn replies_are_found_and_set_on_any_kind() {
        let mut m = Message { conversation: Some("hi".into()), ..Default::default() };
        set_context(&mut m, ContextInfo { stanza_id: Some("Q1".into()), ..Default::default() });
        assert_eq!(quoted_id(&m).as_deref(), Some("Q1"));
        assert_eq!(m.extended_text_message.as_ref().unwrap().text.as_deref(), Some("hi"));
        let mut m = location(&Location { latitude: 1.0, longitude: 2.0, name: None, address: None });
        set_context(&mut m, ContextInfo { stanza_id: Some("Q2".into()), ..Default::default() });
        assert_eq!(quoted_id(&m).as_deref(), Some("Q2"));
    }
}
