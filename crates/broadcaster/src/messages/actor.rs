//! Who acted on a message and where: the sender of a reaction, an edit, a revoke or a poll vote,
//! or this account itself.

/// Who acted and where.
#[derive(Debug, Clone)]
pub struct Actor<'a> {
    /// The chat the action came in (as history records chats).
    pub chat: &'a str,
    /// A JID, or `me` for this account.
    pub sender: &'a str,
    pub sender_phone: Option<&'a str>,
    pub push_name: Option<&'a str>,
    /// When (ms since epoch).
    pub at: i64,
}

impl Actor<'_> {
    /// This account, acting through the API.
    pub fn me(chat: &str, at: i64) -> Actor<'_> {
        Actor { chat, sender: ME, sender_phone: None, push_name: None, at }
    }
}

/// The sender name of this account's own reactions.
pub const ME: &str = "me";
