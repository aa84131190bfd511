//! A small length-prefixed binary codec for the structured values we own.
//!
//! Raw key bytes are written verbatim (not hex, not JSON) so the at-rest encryption tests can
//! search a database for them: without a key they must be found, with a key they must not.

use crate::error::{Error, Result};

pub(crate) struct Enc(Vec<u8>);

impl Enc {
    pub(crate) fn new(format_version: u8) -> Self {
        let mut v = Vec::with_capacity(96);
        v.push(format_version);
        Enc(v)
    }
    pub(crate) fn u8(&mut self, x: u8) -> &mut Self {
        self.0.push(x);
        self
    }
    pub(crate) fn u32(&mut self, x: u32) -> &mut Self {
        self.0.extend_from_slice(&x.to_be_bytes());
        self
    }
    pub(crate) fn u64(&mut self, x: u64) -> &mut Self {
        self.0.extend_from_slice(&x.to_be_bytes());
        self
    }
    pub(crate) fn i64(&mut self, x: i64) -> &mut Self {
        self.0.extend_from_slice(&x.to_be_bytes());
        self
    }
    pub(crate) fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        // Values are bounded far below 4 GiB by every backend; saturate rather than wrap.
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.0.extend_from_slice(b);
        self
    }
    pub(crate) fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }
    pub(crate) fn opt_bytes(&mut self, b: Option<&[u8]>) -> &mut Self {
        match b {
            None => self.u8(0),
            Some(b) => self.u8(1).bytes(b),
        }
    }
    pub(crate) fn opt_str(&mut self, s: Option<&str>) -> &mut Self {
        self.opt_bytes(s.map(str::as_bytes))
    }
    /// `None`, `false`, `true` as one byte 0, 1, 2.
    pub(crate) fn opt_bool(&mut self, b: Option<bool>) -> &mut Self {
        self.u8(match b {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        })
    }
    pub(crate) fn finish(self) -> Vec<u8> {
        self.0
    }
}

pub(crate) struct Dec<'a> {
    buf: &'a [u8],
    table: &'static str,
}

impl<'a> Dec<'a> {
    /// Starts decoding, checking the leading format version.
    pub(crate) fn new(buf: &'a [u8], table: &'static str, format_version: u8) -> Result<Self> {
        let mut d = Dec { buf, table };
        let v = d.u8()?;
        if v != format_version {
            return Err(d.err(format!("unknown value format version {v} (expected {format_version})")));
        }
        Ok(d)
    }
    /// Starts decoding a value written in any format version from 1 to `newest`; returns the
    /// version found, so a newer binary still reads what an older one stored.
    pub(crate) fn new_upto(buf: &'a [u8], table: &'static str, newest: u8) -> Result<(Self, u8)> {
        let mut d = Dec { buf, table };
        let v = d.u8()?;
        if v == 0 || v > newest {
            return Err(d.err(format!("unknown value format version {v} (expected 1 to {newest})")));
        }
        Ok((d, v))
    }
    fn err(&self, reason: String) -> Error {
        Error::Corrupt { table: self.table, reason }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(self.err(format!("truncated: needed {n} bytes, {} left", self.buf.len())));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub(crate) fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    pub(crate) fn str(&mut self) -> Result<String> {
        let b = self.bytes()?;
        String::from_utf8(b).map_err(|_| self.err("string is not UTF-8".into()))
    }
    pub(crate) fn opt_bytes(&mut self) -> Result<Option<Vec<u8>>> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.bytes()?)),
            t => Err(self.err(format!("bad option tag {t}"))),
        }
    }
    pub(crate) fn opt_str(&mut self) -> Result<Option<String>> {
        match self.opt_bytes()? {
            None => Ok(None),
            Some(b) => String::from_utf8(b).map(Some).map_err(|_| self.err("string is not UTF-8".into())),
        }
    }
    pub(crate) fn opt_bool(&mut self) -> Result<Option<bool>> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(false)),
            2 => Ok(Some(true)),
            t => Err(self.err(format!("bad optional bool {t}"))),
        }
    }
    pub(crate) fn finish(self) -> Result<()> {
        if self.buf.is_empty() { Ok(()) } else { Err(self.err(format!("{} trailing bytes", self.buf.len()))) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut e = Enc::new(1);
        e.u32(7).str("hi").opt_bytes(None).opt_str(Some("x")).i64(-3).raw(&[9; 4]);
        let b = e.finish();
        let mut d = Dec::new(&b, "t", 1).expect("version");
        assert_eq!(d.u32().expect("u32"), 7);
        assert_eq!(d.str().expect("str"), "hi");
        assert_eq!(d.opt_bytes().expect("opt"), None);
        assert_eq!(d.opt_str().expect("opt").as_deref(), Some("x"));
        assert_eq!(d.i64().expect("i64"), -3);
        assert_eq!(d.array::<4>().expect("arr"), [9; 4]);
        d.finish().expect("no trailing");
        for cut in 0..b.len() {
            let r = Dec::new(&b[..cut], "t", 1).and_then(|mut d| {
                d.u32()?;
                d.str()?;
                d.opt_bytes()?;
                d.opt_str()?;
                d.i64()?;
                d.array::<4>()?;
                d.finish()
            });
            assert!(matches!(r, Err(Error::Corrupt { .. })), "cut at {cut}");
        }
        assert!(Dec::new(&b, "t", 2).is_err());
    }

    #[test]
    fn older_versions_and_optional_bools() {
        let mut e = Enc::new(2);
        e.opt_bool(None).opt_bool(Some(false)).opt_bool(Some(true));
        let b = e.finish();
        let (mut d, v) = Dec::new_upto(&b, "t", 2).expect("version 2 of 2");
        assert_eq!(v, 2);
        assert_eq!(
            [d.opt_bool().ok(), d.opt_bool().ok(), d.opt_bool().ok()],
            [Some(None), Some(Some(false)), Some(Some(true))]
        );
        d.finish().expect("no trailing");
        assert!(matches!(Dec::new_upto(&b, "t", 1), Err(Error::Corrupt { .. })), "newer than known");
        assert!(matches!(Dec::new_upto(&[0], "t", 2), Err(Error::Corrupt { .. })), "version 0");
        assert!(matches!(
            Dec::new_upto(&[2, 3], "t", 2).and_then(|(mut d, _)| d.opt_bool()),
            Err(Error::Corrupt { .. })
        ));
    }
}
