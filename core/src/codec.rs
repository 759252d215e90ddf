//! A small, strict binary codec: LEB128 varints and length-prefixed byte strings, the same
//! primitives lib0 uses. Every read is bounds-checked and every length is limited before
//! anything is allocated, so hostile bytes can neither panic nor balloon memory.

use crate::error::{CoreError, Result};

/// Appends primitives to a byte vector.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Writer { buf: Vec::with_capacity(n) }
    }

    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub(crate) fn var(&mut self, mut v: u64) -> &mut Self {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
        self
    }

    pub(crate) fn fixed(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.var(bytes.len() as u64);
        self.fixed(bytes)
    }

    pub(crate) fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads primitives from a byte slice; errors name `what` is being decoded.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn err(&self, reason: &str) -> CoreError {
        CoreError::malformed(self.what, format!("{reason} at byte {}", self.pos))
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        let b = *self.buf.get(self.pos).ok_or_else(|| self.err("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn var(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let low = u64::from(b & 0x7f);
            if shift == 63 && low > 1 {
                return Err(self.err("varint overflows 64 bits"));
            }
            v |= low << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint too long"))
    }

    pub(crate) fn var_u32(&mut self) -> Result<u32> {
        u32::try_from(self.var()?).map_err(|_| self.err("value over u32"))
    }

    pub(crate) fn fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        let slice = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err("truncated"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// A length-prefixed byte string of at most `max` bytes.
    pub(crate) fn bytes(&mut self, max: usize) -> Result<&'a [u8]> {
        let len = self.var()?;
        let len = usize::try_from(len).map_err(|_| self.err("length overflows"))?;
        if len > max {
            return Err(CoreError::TooLarge { what: self.what, len, max });
        }
        self.take(len)
    }

    pub(crate) fn str(&mut self, max: usize) -> Result<&'a str> {
        let b = self.bytes(max)?;
        std::str::from_utf8(b).map_err(|_| self.err("invalid UTF-8"))
    }

    /// A count of items that each take at least `min_item` bytes: refuses counts the
    /// remaining input cannot possibly hold, so `Vec::with_capacity(count)` is safe.
    pub(crate) fn count(&mut self, min_item: usize) -> Result<usize> {
        let n = self.var()?;
        let n = usize::try_from(n).map_err(|_| self.err("count overflows"))?;
        if n.saturating_mul(min_item.max(1)) > self.remaining() {
            return Err(self.err("count larger than the input"));
        }
        Ok(n)
    }

    pub(crate) fn finish(self) -> Result<()> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.err("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut w = Writer::default();
            w.var(v);
            let buf = w.finish();
            let mut r = Reader::new(&buf, "test");
            assert_eq!(r.var().unwrap(), v);
            r.finish().unwrap();
        }
    }

    #[test]
    fn hostile_lengths_are_refused() {
        let mut w = Writer::default();
        w.var(u64::MAX);
        let buf = w.finish();
        assert!(Reader::new(&buf, "t").bytes(1 << 20).is_err());
        assert!(Reader::new(&buf, "t").count(1).is_err());
        assert!(Reader::new(&[0xff; 11], "t").var().is_err());
        assert!(Reader::new(&[], "t").u8().is_err());
    }
}
