// Shared by build.rs (which lays out the lookup tables) and the runtime lookup:
// both must hash identically.
//
// A table slot holds the token's first (up to) 8 bytes as a little-endian word
// plus its code, length and an 8-bit fingerprint. Tokens of 8 bytes or fewer are
// therefore matched by one word compare; longer ones by word + fingerprint, then
// verified. Tokens contain no NUL byte, so no key word is 0 (0 marks empty).

/// Number of slots in each token lookup table (a power of two).
pub const TOKEN_TABLE_SIZE: usize = 4096;

#[inline(always)]
fn word(s: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&s[at..at + 8]);
    u64::from_le_bytes(x)
}

#[inline(always)]
fn half(s: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&s[at..at + 4]);
    u64::from(u32::from_le_bytes(x))
}

/// The first `min(8, len)` bytes of `s`, zero-padded, as a little-endian word.
#[inline(always)]
pub fn prefix_word(s: &[u8]) -> u64 {
    let n = s.len();
    if n >= 8 {
        word(s, 0)
    } else if n >= 4 {
        half(s, 0) | (half(s, n - 4) << ((n - 4) * 8))
    } else {
        // Constant shifts per length (cheaper than variable ones on this hot path).
        match *s {
            [a] => u64::from(a),
            [a, b] => u64::from(a) | (u64::from(b) << 8),
            [a, b, c] => u64::from(a) | (u64::from(b) << 8) | (u64::from(c) << 16),
            _ => 0,
        }
    }
}

#[inline(always)]
fn mix(h: u64, w: u64) -> u64 {
    let h = (h ^ w).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^ (h >> 32)
}

/// Table slot and fingerprint of `s`, given its prefix word.
#[inline(always)]
pub fn token_slot(s: &[u8], prefix: u64) -> (usize, u8) {
    let n = s.len();
    let mut h = mix((n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15), prefix);
    if n > 8 {
        let mut at = 8;
        while at + 8 < n {
            h = mix(h, word(s, at));
            at += 8;
        }
        h = mix(h, word(s, n - 8));
    }
    let h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
    ((h >> 52) as usize & (TOKEN_TABLE_SIZE - 1), (h >> 44) as u8)
}
