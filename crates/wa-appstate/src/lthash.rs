//! LTHash ("WhatsApp Patch Integrity"): a 128-byte summation hash of the set of live value
//! MACs. Each value MAC is HKDF-expanded to 128 bytes and added to (or subtracted from) the
//! hash as 64 little-endian `u16` lanes, wrapping. Order does not matter, so a state built
//! patch by patch and one built from a snapshot of the same records hash the same.

/// HKDF `info` of the LTHash expansion.
pub const PATCH_INTEGRITY_INFO: &[u8] = b"WhatsApp Patch Integrity";

/// Size of the hash in bytes.
pub const LTHASH_LEN: usize = 128;

/// The LTHash of a collection.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LtHash(pub [u8; LTHASH_LEN]);

impl Default for LtHash {
    fn default() -> Self {
        LtHash([0; LTHASH_LEN])
    }
}

impl std::fmt::Debug for LtHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the tail is enough to tell two hashes apart in a log
        write!(f, "LtHash(..")?;
        for b in &self.0[120..] {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// The 128 bytes a value MAC contributes.
pub fn expand(value_mac: &[u8]) -> [u8; LTHASH_LEN] {
    wa_crypto::hkdf_sha256_array(value_mac, &[], PATCH_INTEGRITY_INFO)
}

impl LtHash {
    /// The all-zero hash of an empty collection.
    pub const ZERO: LtHash = LtHash([0; LTHASH_LEN]);

    /// Adds a value MAC.
    pub fn add(&mut self, value_mac: &[u8]) {
        self.add_expanded(&expand(value_mac));
    }

    /// Subtracts a value MAC.
    pub fn subtract(&mut self, value_mac: &[u8]) {
        self.subtract_expanded(&expand(value_mac));
    }

    /// Adds already expanded bytes.
    pub fn add_expanded(&mut self, e: &[u8; LTHASH_LEN]) {
        for (lane, add) in self.0.chunks_exact_mut(2).zip(e.chunks_exact(2)) {
            let v = u16::from_le_bytes([lane[0], lane[1]]).wrapping_add(u16::from_le_bytes([add[0], add[1]]));
            lane.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// Subtracts already expanded bytes.
    pub fn subtract_expanded(&mut self, e: &[u8; LTHASH_LEN]) {
        for (lane, sub) in self.0.chunks_exact_mut(2).zip(e.chunks_exact(2)) {
            let v = u16::from_le_bytes([lane[0], lane[1]]).wrapping_sub(u16::from_le_bytes([sub[0], sub[1]]));
            lane.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// `self − Σ subtract + Σ add`, the batched form WhatsApp clients use.
    pub fn subtract_then_add<S: AsRef<[u8]>, A: AsRef<[u8]>>(&self, subtract: &[S], add: &[A]) -> LtHash {
        let mut h = *self;
        for m in subtract {
            h.subtract(m.as_ref());
        }
        for m in add {
            h.add(m.as_ref());
        }
        h
    }
}
