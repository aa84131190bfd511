//! Token dictionaries: strings that the wire format writes as one or two bytes.
//!
//! Version 3 is what current clients announce in the connection header
//! (`57 41 06 03`); version 2 is kept for serving older clients (`57 41 06 02`).
//! Both are embedded as data (`data/tokens_v*.json`) and laid out at build time.

#[path = "token_hash.rs"]
mod hash;

mod tables {
    include!(concat!(env!("OUT_DIR"), "/tokens.rs"));
}

use hash::{TOKEN_TABLE_SIZE, prefix_word, token_slot};

/// A token's wire form: one byte, or a dictionary byte (`0xEC..=0xEF`) plus an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// Single-byte token, `1..=235`.
    Single(u8),
    /// Double-byte token: dictionary `0..=3` and index within it.
    Double(u8, u8),
}

impl Token {
    /// Number of bytes this token takes on the wire.
    #[inline]
    pub const fn wire_len(self) -> usize {
        match self {
            Token::Single(_) => 1,
            Token::Double(..) => 2,
        }
    }
}

/// One version of the token dictionaries.
#[derive(Debug)]
pub struct Dictionary {
    version: u8,
    single: &'static [&'static str; 236],
    double: &'static [[&'static str; 256]; 4],
    keys: &'static [u64; TOKEN_TABLE_SIZE],
    meta: &'static [u32; TOKEN_TABLE_SIZE],
    max_len: usize,
    /// Longest token written only with packable characters (nibble or hex alphabet).
    max_packable_len: usize,
}

/// Dictionary version 3 (current clients; the default everywhere in this crate).
pub static V3: Dictionary = Dictionary {
    version: 3,
    single: &tables::V3_SINGLE,
    double: &tables::V3_DOUBLE,
    keys: &tables::V3_KEYS,
    meta: &tables::V3_META,
    max_len: tables::V3_MAX_LEN,
    max_packable_len: tables::V3_MAX_PACKABLE_LEN,
};

/// Dictionary version 2 (older clients).
pub static V2: Dictionary = Dictionary {
    version: 2,
    single: &tables::V2_SINGLE,
    double: &tables::V2_DOUBLE,
    keys: &tables::V2_KEYS,
    meta: &tables::V2_META,
    max_len: tables::V2_MAX_LEN,
    max_packable_len: tables::V2_MAX_PACKABLE_LEN,
};

impl Dictionary {
    /// The dictionary for a connection-header version byte, if we know it.
    pub fn for_version(version: u8) -> Option<&'static Dictionary> {
        match version {
            3 => Some(&V3),
            2 => Some(&V2),
            _ => None,
        }
    }

    /// The version byte this dictionary corresponds to.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The string of a single-byte token (`1..=235`); `None` for other bytes.
    #[inline]
    pub fn single(&self, byte: u8) -> Option<&'static str> {
        match byte {
            1..=235 => Some(self.single[byte as usize]),
            _ => None,
        }
    }

    /// The string of a double-byte token (dictionary `0..=3`, index).
    #[inline]
    pub fn double(&self, dict: u8, index: u8) -> Option<&'static str> {
        self.double.get(dict as usize).map(|d| d[index as usize])
    }

    #[inline]
    pub(crate) fn code_str(&self, code: u16) -> &'static str {
        if code < 256 {
            self.single[code as usize]
        } else {
            let c = (code - 256) as usize;
            self.double[(c >> 8) & 3][c & 0xff]
        }
    }

    /// Length of the longest token made only of nibble or hex characters: longer
    /// packable strings are never tokens.
    #[inline]
    pub(crate) fn max_packable_len(&self) -> usize {
        self.max_packable_len
    }

    /// The token for `s`, if it is one.
    #[inline(always)]
    pub fn lookup(&self, s: &str) -> Option<Token> {
        let bytes = s.as_bytes();
        if bytes.is_empty() || bytes.len() > self.max_len {
            return None;
        }
        let prefix = prefix_word(bytes);
        let (mut i, fp) = token_slot(bytes, prefix);
        let want = ((bytes.len() as u32) << 16) | (u32::from(fp) << 24);
        loop {
            let key = self.keys[i];
            if key == 0 {
                return None;
            }
            if key == prefix {
                let m = self.meta[i];
                let code = m as u16;
                if m & 0xffff_0000 == want
                    && (bytes.len() <= 8 || eq_short(self.code_str(code).as_bytes(), bytes))
                {
                    return Some(if code < 256 {
                        Token::Single(code as u8)
                    } else {
                        let c = code - 256;
                        Token::Double((c >> 8) as u8, c as u8)
                    });
                }
            }
            i = (i + 1) & (TOKEN_TABLE_SIZE - 1);
        }
    }
}

/// Byte equality without a call to `memcmp` for token-sized strings.
#[inline(always)]
fn eq_short(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n >= 8 {
        let w = |s: &[u8], at: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&s[at..at + 8]);
            u64::from_le_bytes(x)
        };
        if w(a, 0) != w(b, 0) || w(a, n - 8) != w(b, n - 8) {
            return false;
        }
        n <= 16 || a[8..n - 8] == b[8..n - 8]
    } else if n >= 4 {
        let w = |s: &[u8], at: usize| {
            let mut x = [0u8; 4];
            x.copy_from_slice(&s[at..at + 4]);
            u32::from_le_bytes(x)
        };
        w(a, 0) == w(b, 0) && w(a, n - 4) == w(b, n - 4)
    } else {
        n == 0 || (a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_token_round_trips() {
        for dict in [&V3, &V2] {
            for b in 1..=235u8 {
                let s = dict.single(b).unwrap();
                if s.is_empty() {
                    continue;
                }
                assert_eq!(dict.lookup(s), Some(Token::Single(b)), "v{} {s}", dict.version);
            }
            for d in 0..4u8 {
                for j in 0..=255u8 {
                    let s = dict.double(d, j).unwrap();
                    if s.is_empty() {
                        continue;
                    }
                    assert_eq!(dict.lookup(s), Some(Token::Double(d, j)), "v{} {s}", dict.version);
                }
            }
        }
    }

    #[test]
    fn known_positions() {
        assert_eq!(V3.lookup("iq"), Some(Token::Single(0x19)));
        assert_eq!(V2.lookup("iq"), Some(Token::Single(0x1E)));
        assert_eq!(V3.lookup("s.whatsapp.net"), Some(Token::Single(3)));
        assert_eq!(V3.lookup("read-self"), Some(Token::Double(0, 0)));
        assert_eq!(V3.lookup("not-a-token-at-all"), None);
        assert_eq!(V3.lookup(""), None);
        assert_eq!(V3.single(0), None);
        assert_eq!(V3.single(236), None);
    }
}
