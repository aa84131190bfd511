//! JIDs: the addresses of users, devices, groups and services.
//!
//! String form: `user[_agent][:device]@server`, except interop JIDs, which are
//! `integrator-user:device@interop`. A JID with an empty user is a server JID and
//! is written `@server` (the bare server name is accepted when parsing).

use std::fmt;
use std::str::FromStr;

use compact_str::CompactString;

/// The server part of a JID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Server {
    /// `s.whatsapp.net`: phone-number users and their devices.
    Pn,
    /// `c.us`: the legacy user server (usync queries, PSA, official accounts).
    LegacyUser,
    /// `g.us`: groups.
    Group,
    /// `broadcast`: status updates and broadcast lists.
    Broadcast,
    /// `newsletter`: channels.
    Newsletter,
    /// `call`: call links.
    Call,
    /// `lid`: LID (hidden identity) users and their devices.
    Lid,
    /// `hosted`: hosted (business API) phone-number devices.
    Hosted,
    /// `hosted.lid`: hosted LID devices.
    HostedLid,
    /// `msgr`: Messenger users.
    Messenger,
    /// `interop`: interoperability users.
    Interop,
    /// `bot`: Meta AI bots.
    Bot,
}

impl Server {
    /// Every server kind.
    pub const ALL: [Server; 12] = [
        Server::Pn,
        Server::LegacyUser,
        Server::Group,
        Server::Broadcast,
        Server::Newsletter,
        Server::Call,
        Server::Lid,
        Server::Hosted,
        Server::HostedLid,
        Server::Messenger,
        Server::Interop,
        Server::Bot,
    ];

    /// The server's name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Server::Pn => "s.whatsapp.net",
            Server::LegacyUser => "c.us",
            Server::Group => "g.us",
            Server::Broadcast => "broadcast",
            Server::Newsletter => "newsletter",
            Server::Call => "call",
            Server::Lid => "lid",
            Server::Hosted => "hosted",
            Server::HostedLid => "hosted.lid",
            Server::Messenger => "msgr",
            Server::Interop => "interop",
            Server::Bot => "bot",
        }
    }

    /// Parses a server name; `None` if it is not one we know.
    pub fn from_name(name: &str) -> Option<Server> {
        Some(match name {
            "s.whatsapp.net" => Server::Pn,
            "c.us" => Server::LegacyUser,
            "g.us" => Server::Group,
            "broadcast" => Server::Broadcast,
            "newsletter" => Server::Newsletter,
            "call" => Server::Call,
            "lid" => Server::Lid,
            "hosted" => Server::Hosted,
            "hosted.lid" => Server::HostedLid,
            "msgr" => Server::Messenger,
            "interop" => Server::Interop,
            "bot" => Server::Bot,
            _ => return None,
        })
    }

    /// The AD_JID domain type byte for servers that the AD encoding can carry.
    pub const fn domain_type(self) -> Option<u8> {
        match self {
            Server::Pn => Some(0),
            Server::Lid => Some(1),
            Server::Hosted => Some(128),
            Server::HostedLid => Some(129),
            _ => None,
        }
    }

    /// The server an AD_JID domain type stands for; other values are legacy
    /// agents on `s.whatsapp.net`.
    pub const fn from_domain_type(domain: u8) -> Server {
        match domain {
            1 => Server::Lid,
            128 => Server::Hosted,
            129 => Server::HostedLid,
            _ => Server::Pn,
        }
    }

    /// Whether JIDs on this server can name a device.
    pub const fn has_devices(self) -> bool {
        matches!(
            self,
            Server::Pn
                | Server::Lid
                | Server::Hosted
                | Server::HostedLid
                | Server::Messenger
                | Server::Interop
        )
    }

    /// Largest device number a JID on this server can carry on the wire.
    const fn max_device(self) -> u16 {
        match self {
            Server::Messenger | Server::Interop => u16::MAX,
            Server::Pn | Server::Lid | Server::Hosted | Server::HostedLid => u8::MAX as u16,
            _ => 0,
        }
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Server {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Server::from_name(s).ok_or_else(|| JidError::UnknownServer(s.into()))
    }
}

/// Why a string or a set of parts is not a valid JID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JidError {
    /// The input was empty.
    #[error("empty JID")]
    Empty,
    /// The server part is not a server we know.
    #[error("unknown JID server {0:?}")]
    UnknownServer(CompactString),
    /// The user part contains a character that the string form reserves.
    #[error("invalid character {ch:?} in JID user {user:?}")]
    InvalidUser {
        /// The offending user part.
        user: CompactString,
        /// The reserved character found in it.
        ch: char,
    },
    /// The device part is not a number in range for the server.
    #[error("invalid device {device:?} for server {server}")]
    InvalidDevice {
        /// The device text or number.
        device: CompactString,
        /// The JID's server.
        server: Server,
    },
    /// The agent part is not a number in range, or the server takes no agent.
    #[error("invalid agent {agent:?} for server {server}")]
    InvalidAgent {
        /// The agent text or number.
        agent: CompactString,
        /// The JID's server.
        server: Server,
    },
    /// An interop JID without a valid `integrator-` prefix.
    #[error("invalid interop integrator in {0:?}")]
    InvalidIntegrator(CompactString),
}

/// A JID. Cheap to clone: users up to 24 bytes (every phone number, LID and
/// group id) are stored inline, so cloning never allocates for them.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jid {
    user: CompactString,
    server: Server,
    agent: u8,
    device: u16,
    integrator: u16,
}

fn check_user(user: &str) -> Result<(), JidError> {
    if let Some(ch) = user.chars().find(|c| matches!(c, '@' | ':' | '_')) {
        return Err(JidError::InvalidUser {
            user: user.into(),
            ch,
        });
    }
    Ok(())
}

impl Jid {
    /// A user JID (`user@server`) with no device.
    pub fn new(user: &str, server: Server) -> Result<Jid, JidError> {
        check_user(user)?;
        Ok(Jid {
            user: CompactString::new(user),
            server,
            agent: 0,
            device: 0,
            integrator: 0,
        })
    }

    /// `user@s.whatsapp.net`.
    pub fn pn(user: &str) -> Result<Jid, JidError> {
        Jid::new(user, Server::Pn)
    }

    /// `user@lid`.
    pub fn lid(user: &str) -> Result<Jid, JidError> {
        Jid::new(user, Server::Lid)
    }

    /// `id@g.us`.
    pub fn group(id: &str) -> Result<Jid, JidError> {
        Jid::new(id, Server::Group)
    }

    /// The server itself (`@server`), for example the `to` of most `<iq>`s.
    pub const fn server_jid(server: Server) -> Jid {
        Jid {
            user: CompactString::const_new(""),
            server,
            agent: 0,
            device: 0,
            integrator: 0,
        }
    }

    /// `status@broadcast`.
    pub const fn status_broadcast() -> Jid {
        Jid {
            user: CompactString::const_new("status"),
            server: Server::Broadcast,
            agent: 0,
            device: 0,
            integrator: 0,
        }
    }

    /// A Messenger JID (`user:device@msgr`).
    pub fn messenger(user: &str, device: u16) -> Result<Jid, JidError> {
        Ok(Jid {
            device,
            ..Jid::new(user, Server::Messenger)?
        })
    }

    /// An interop JID (`integrator-user:device@interop`).
    pub fn interop(user: &str, device: u16, integrator: u16) -> Result<Jid, JidError> {
        Ok(Jid {
            device,
            integrator,
            ..Jid::new(user, Server::Interop)?
        })
    }

    /// The same user on a given device. Devices exist on `s.whatsapp.net`, `lid`,
    /// `hosted` and `hosted.lid` (0..=255), and on `msgr` and `interop` (0..=65535).
    pub fn with_device(self, device: u16) -> Result<Jid, JidError> {
        if device > self.server.max_device() {
            return Err(JidError::InvalidDevice {
                device: compact_str::format_compact!("{device}"),
                server: self.server,
            });
        }
        Ok(Jid { device, ..self })
    }

    /// The same JID with a legacy agent (the AD_JID domain type of
    /// `s.whatsapp.net` JIDs other than 0, 1, 128 and 129).
    pub fn with_agent(self, agent: u8) -> Result<Jid, JidError> {
        if self.server != Server::Pn || Server::from_domain_type(agent) != Server::Pn {
            return Err(JidError::InvalidAgent {
                agent: compact_str::format_compact!("{agent}"),
                server: self.server,
            });
        }
        Ok(Jid { agent, ..self })
    }

    /// The user part (may be empty for server JIDs).
    #[inline]
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The server.
    #[inline]
    pub fn server(&self) -> Server {
        self.server
    }

    /// The device number; 0 is the main device (or none).
    #[inline]
    pub fn device(&self) -> u16 {
        self.device
    }

    /// The legacy agent (0 when absent).
    #[inline]
    pub fn agent(&self) -> u8 {
        self.agent
    }

    /// The interop integrator (0 unless on `interop`).
    #[inline]
    pub fn integrator(&self) -> u16 {
        self.integrator
    }

    /// The user's JID without device or agent.
    pub fn to_non_ad(&self) -> Jid {
        Jid {
            agent: 0,
            device: 0,
            ..self.clone()
        }
    }

    /// Whether this JID names a specific device (device or agent set).
    pub fn is_ad(&self) -> bool {
        self.device != 0 || self.agent != 0
    }

    /// Whether this is a server JID (empty user).
    pub fn is_server(&self) -> bool {
        self.user.is_empty()
    }

    /// `…@g.us`.
    pub fn is_group(&self) -> bool {
        self.server == Server::Group
    }

    /// `…@s.whatsapp.net` (phone-number user).
    pub fn is_pn(&self) -> bool {
        self.server == Server::Pn
    }

    /// `…@lid`.
    pub fn is_lid(&self) -> bool {
        self.server == Server::Lid
    }

    /// `…@hosted` or `…@hosted.lid`.
    pub fn is_hosted(&self) -> bool {
        matches!(self.server, Server::Hosted | Server::HostedLid)
    }

    /// `…@broadcast` (status or a broadcast list).
    pub fn is_broadcast(&self) -> bool {
        self.server == Server::Broadcast
    }

    /// `status@broadcast`.
    pub fn is_status_broadcast(&self) -> bool {
        self.server == Server::Broadcast && self.user == "status"
    }

    /// `…@newsletter`.
    pub fn is_newsletter(&self) -> bool {
        self.server == Server::Newsletter
    }

    /// `…@bot`.
    pub fn is_bot(&self) -> bool {
        self.server == Server::Bot
    }

    /// Builds a JID from decoded wire parts without re-validating the user
    /// beyond the reserved characters.
    pub(crate) fn from_wire(
        user: &str,
        server: Server,
        agent: u8,
        device: u16,
        integrator: u16,
    ) -> Result<Jid, JidError> {
        let jid = Jid::new(user, server)?;
        let jid = if device != 0 {
            jid.with_device(device)?
        } else {
            jid
        };
        let jid = if agent != 0 {
            jid.with_agent(agent)?
        } else {
            jid
        };
        Ok(Jid { integrator, ..jid })
    }
}

fn parse_num<T: FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl FromStr for Jid {
    type Err = JidError;

    fn from_str(s: &str) -> Result<Jid, JidError> {
        if s.is_empty() {
            return Err(JidError::Empty);
        }
        let Some((user_part, server_part)) = s.split_once('@') else {
            return Server::from_str(s).map(Jid::server_jid);
        };
        let server = Server::from_str(server_part)?;
        let (user_agent, device) = match user_part.split_once(':') {
            Some((ua, dev)) => {
                let device: u16 = parse_num(dev)
                    .filter(|d| *d <= server.max_device())
                    .ok_or_else(|| JidError::InvalidDevice {
                        device: dev.into(),
                        server,
                    })?;
                (ua, device)
            }
            None => (user_part, 0),
        };
        if server == Server::Interop {
            let (integ, user) = user_agent
                .split_once('-')
                .and_then(|(i, u)| Some((parse_num::<u16>(i)?, u)))
                .ok_or_else(|| JidError::InvalidIntegrator(s.into()))?;
            return Jid::interop(user, device, integ);
        }
        let (user, agent) = match user_agent.split_once('_') {
            Some((user, agent_text)) => {
                let agent = parse_num::<u8>(agent_text)
                    .filter(|_| server == Server::Pn)
                    .ok_or_else(|| JidError::InvalidAgent {
                        agent: agent_text.into(),
                        server,
                    })?;
                (user, agent)
            }
            None => (user_agent, 0),
        };
        let jid = Jid::new(user, server)?;
        let jid = if device != 0 {
            jid.with_device(device)?
        } else {
            jid
        };
        if agent != 0 {
            jid.with_agent(agent)
        } else {
            Ok(jid)
        }
    }
}

impl TryFrom<&str> for Jid {
    type Error = JidError;
    fn try_from(s: &str) -> Result<Jid, JidError> {
        s.parse()
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.server == Server::Interop {
            return write!(
                f,
                "{}-{}:{}@{}",
                self.integrator, self.user, self.device, self.server
            );
        }
        f.write_str(&self.user)?;
        if self.agent != 0 {
            // The device is written even when 0 so that the agent survives a
            // round trip through the string form.
            write!(f, "_{}:{}", self.agent, self.device)?;
        } else if self.device != 0 {
            write!(f, ":{}", self.device)?;
        }
        write!(f, "@{}", self.server)
    }
}

impl fmt::Debug for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Jid({self})")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format() {
        for s in [
            "15551234567@s.whatsapp.net",
            "15551234567:12@s.whatsapp.net",
            "123456789012345:3@lid",
            "15551234567:99@hosted",
            "123456789012345:99@hosted.lid",
            "120363025246125888@g.us",
            "15551234567-1600000000@g.us",
            "status@broadcast",
            "120363144038483540@newsletter",
            "server@c.us",
            "13135550002@bot",
            "ABCDEF0123456789@call",
            "100001234567890:7@msgr",
            "3-4915112345678:1@interop",
            "15551234567_5:0@s.whatsapp.net",
            "15551234567_5:2@s.whatsapp.net",
            "@s.whatsapp.net",
            "@g.us",
        ] {
            let jid: Jid = s.parse().unwrap();
            assert_eq!(jid.to_string(), s, "{s}");
        }
        let bare: Jid = "s.whatsapp.net".parse().unwrap();
        assert_eq!(bare, Jid::server_jid(Server::Pn));
        assert_eq!(
            "15551234567:0@s.whatsapp.net"
                .parse::<Jid>()
                .unwrap()
                .to_string(),
            "15551234567@s.whatsapp.net"
        );
    }

    #[test]
    fn accessors() {
        let j: Jid = "15551234567:12@s.whatsapp.net".parse().unwrap();
        assert_eq!(j.user(), "15551234567");
        assert_eq!(j.device(), 12);
        assert!(j.is_pn() && j.is_ad() && !j.is_group());
        assert_eq!(j.to_non_ad().to_string(), "15551234567@s.whatsapp.net");
        assert!(Jid::group("1203").unwrap().is_group());
        assert!(Jid::status_broadcast().is_status_broadcast());
        assert_eq!(std::mem::size_of::<Jid>(), 32);
    }

    #[test]
    fn errors() {
        use JidError::*;
        assert_eq!("".parse::<Jid>(), Err(Empty));
        assert!(matches!(
            "x@example.com".parse::<Jid>(),
            Err(UnknownServer(_))
        ));
        assert!(matches!(
            "x:1@g.us".parse::<Jid>(),
            Err(InvalidDevice { .. })
        ));
        assert!(matches!(
            "x:256@s.whatsapp.net".parse::<Jid>(),
            Err(InvalidDevice { .. })
        ));
        assert!(matches!(
            "x:a@s.whatsapp.net".parse::<Jid>(),
            Err(InvalidDevice { .. })
        ));
        assert!(matches!("x_1@lid".parse::<Jid>(), Err(InvalidAgent { .. })));
        assert!(matches!(
            "x_1:2@s.whatsapp.net".parse::<Jid>(),
            Err(InvalidAgent { .. })
        ));
        assert!(matches!(
            "4915:1@interop".parse::<Jid>(),
            Err(InvalidIntegrator(_))
        ));
        assert!(matches!(
            "a@b@s.whatsapp.net".parse::<Jid>(),
            Err(UnknownServer(_))
        ));
        assert!(matches!(Jid::pn("a:b"), Err(InvalidUser { ch: ':', .. })));
        assert!(matches!("nowhere".parse::<Jid>(), Err(UnknownServer(_))));
    }
}
