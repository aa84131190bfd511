// Shared by build.rs (which lays out the lookup tables) and the runtime lookup:
// both must hash identically. Mixes every 8-byte word (the last one overlapping), so hashing a
// token-sized string costs a few multiplications. Callers skip strings longer
// than the longest token.

/// Number of slots in each token lookup table (a power of two).
pub const TOKEN_TABLE_SIZE: usize = 4096;

#[inline(always)]
fn word(s: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&s[at..at + 8]);
    u64::from_le_bytes(x)
}

#[inline(always)]
fn mix(h: u64, w: u64) -> u64 {
    let h = (h ^ w).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^ (h >> 32)
}

#[inline(always)]
pub fn token_hash(s: &[u8]) -> usize {
    let n = s.len();
    let mut h = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    if n >= 8 {
        let mut at = 0;
        while at + 8 < n {
            h = mix(h, word(s, at));
            at += 8;
        }
        h = mix(h, word(s, n - 8));
    } else if n >= 4 {
        let mut x = [0u8; 4];
        x.copy_from_slice(&s[..4]);
        let mut y = [0u8; 4];
        y.copy_from_slice(&s[n - 4..]);
        h = mix(
            h,
            u64::from(u32::from_le_bytes(x)) | (u64::from(u32::from_le_bytes(y)) << 32),
        );
    } else if n > 0 {
        h = mix(
            h,
            u64::from(s[0]) | (u64::from(s[n / 2]) << 8) | (u64::from(s[n - 1]) << 16),
        );
    }
    (h.wrapping_mul(0x94D0_49BB_1331_11EB) >> 52) as usize & (TOKEN_TABLE_SIZE - 1)
}
