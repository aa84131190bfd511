//! The high-level async WhatsApp Web client with a typed event stream.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use wa_client::{Client, Event};
//! let store = wa_store::Store::open_sqlite("wa.db", Default::default()).await?;
//! let client = Client::builder().store(store.device(&wa_store::DeviceId::new("main")?)).build()?;
//! let mut events = client.events();
//! client.connect().await?;
//! while let Some(event) = events.recv().await {
//!     match event {
//!         Event::Qr(qr) => println!("{}", qr.to_terminal()?),
//!         Event::Connected { jid, .. } => println!("logged in as {jid}"),
//!         Event::Message(m) => println!("{}: {:?}", m.info.sender, m.text()),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```

mod account_sync;
pub mod appstate;
mod call;
mod client;
mod conn;
mod creds;
mod device_list;
pub mod error;
pub mod event;
mod fanout;
pub mod groups;
pub mod history;
mod http;
mod identity;
mod lid;
pub mod media;
pub mod mediaretry;
mod notification;
mod pair;
mod pair_code;
mod peer;
pub mod policy;
pub mod polls;
mod privacy_token;
pub mod proxy;
pub mod qr;
pub mod queries;
pub mod reachout;
mod recv;
mod send;
pub mod version;

pub use client::{BoxRng, Client, ClientBuilder, WHATSAPP_URL};
pub use error::{AckLoss, Error, Result};
pub use event::{
    AppStateVersion, CallEvent, Event, EventStream, MediaRetryAnswer, MediaRetryEvent, MessageEvent,
    MessageInfo, OfflinePreview, PictureEvent, ReceiptAck, ReceiptEvent, ReceiptKind, UnavailableEvent,
};
pub use groups::{
    GroupDescription, GroupError, GroupInfo, GroupParticipant, INVITE_LINK_PREFIX, ParticipantAction,
    ParticipantChange,
};
pub use media::{
    EncryptedMedia, MediaOptions, MediaRef, MediaType, UploadedMedia, decrypt_media, encrypt_media,
};
pub use policy::{Action, DisconnectReason};
pub use privacy_token::cs_token;
pub use proxy::Proxy;
pub use qr::QrCode;
pub use queries::{ChatStateKind, poll_message};
pub use reachout::ReachoutTimelock;
pub use send::SendResult;
pub use version::{SW_JS_URL, VersionFetcher, parse_sw_js};
pub use wa_binary::Jid;
pub use wa_noise::ClientProfile;
pub use wa_proto::device_props::PlatformType;
