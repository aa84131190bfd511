//! Wire tag bytes.

/// Empty list; also "no user" inside a JID pair and the empty string.
pub const LIST_EMPTY: u8 = 0x00;
/// First of the four double-byte dictionary selectors (`0xEC..=0xEF`).
pub const DICTIONARY_0: u8 = 0xEC;
/// Last dictionary selector.
pub const DICTIONARY_3: u8 = 0xEF;
/// Interop JID: user, device u16, integrator u16, server.
pub const INTEROP_JID: u8 = 0xF5;
/// Messenger JID: user, device u16, server.
pub const FB_JID: u8 = 0xF6;
/// Device JID: domain type u8, device u8, user.
pub const AD_JID: u8 = 0xF7;
/// List with a one-byte size.
pub const LIST_8: u8 = 0xF8;
/// List with a two-byte size.
pub const LIST_16: u8 = 0xF9;
/// JID pair: user (or `LIST_EMPTY`), server.
pub const JID_PAIR: u8 = 0xFA;
/// Hex-packed string.
pub const HEX_8: u8 = 0xFB;
/// Bytes with a one-byte length.
pub const BINARY_8: u8 = 0xFC;
/// Bytes with a 20-bit length.
pub const BINARY_20: u8 = 0xFD;
/// Bytes with a 32-bit length.
pub const BINARY_32: u8 = 0xFE;
/// Nibble-packed string.
pub const NIBBLE_8: u8 = 0xFF;
/// Longest string that is packed (in characters).
pub const PACKED_MAX: usize = 127;
