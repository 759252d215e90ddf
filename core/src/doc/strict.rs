//! Strict decoding of yrs v1 updates and state vectors from untrusted peers.
//!
//! `yrs::Update::decode_v1` (0.28) trusts its input more than a network peer deserves:
//! `ClientID::new` debug-asserts that an id is below 2^53 (a panic in debug builds, a silent
//! alias of another id in release), nested `Any` values are decoded recursively without a
//! depth limit (a few megabytes of `[[[[…` overflow the stack: an abort, not a panic),
//! a signed varint longer than ten bytes overflows a shift, and clocks near `u32::MAX`
//! overflow additions. [`check_update`] walks the update exactly as yrs's `DecoderV1` will
//! and refuses all of that first, so nothing hostile reaches yrs. It allocates nothing but
//! for the JSON texts of embeds and formatting attributes, which it parses as yrs will.

use yrs::updates::decoder::Decode;
use yrs::{StateVector, Update};

use crate::error::{reasons, CoreError, Result};

/// Largest client id JavaScript (lib0) can carry, and the largest `yrs::ClientID` takes.
pub const MAX_CLIENT_ID: u64 = (1 << 53) - 1;
/// Largest clock (and clock + length) accepted: yrs computes clock differences in `i32`.
const MAX_CLOCK: u64 = i32::MAX as u64;
/// Deepest nesting of `Any` arrays and maps accepted (serde_json's own JSON limit).
const MAX_ANY_DEPTH: usize = 128;

/// Checks `bytes` with [`check_update`], then decodes them.
pub fn decode_update(bytes: &[u8]) -> Result<Update> {
    check_update(bytes)?;
    Update::decode_v1(bytes).map_err(|e| CoreError::malformed("update", reasons::yrs_read(&e)))
}

/// Checks and scans `bytes` ([`scan_update`]), then decodes them.
pub(crate) fn decode_scanned(bytes: &[u8]) -> Result<(Update, Scan)> {
    let scan = scan_update(bytes)?;
    Ok((Update::decode_v1(bytes).map_err(|e| CoreError::malformed("update", reasons::yrs_read(&e)))?, scan))
}

/// A v1 state vector with every client id below 2^53 and clocks yrs can add to.
pub fn decode_state_vector(bytes: &[u8]) -> Result<StateVector> {
    let mut r = Walker { buf: bytes, pos: 0, files: Vec::new() };
    let n = r.count(2)?;
    for _ in 0..n {
        r.client()?;
        r.clock()?;
    }
    r.finish()?;
    StateVector::decode_v1(bytes).map_err(|e| CoreError::malformed("state vector", reasons::yrs_read(&e)))
}

/// Walks a v1 update the way yrs 0.28's `Update::decode` with `DecoderV1` reads it and
/// refuses what would make yrs panic, abort or alias: client ids of 2^53 and above, clocks
/// past `i32::MAX`, `Any` nested deeper than 128, signed varints longer than ten bytes or
/// past `i64` (yrs negates `i64::MIN`: an overflow panic where overflow is checked), counts
/// larger than the input, legacy JSON content (which yrs decodes off by one), trailing
/// bytes. And what the room's schema does not use: nested types (at a root or inside one:
/// yrs applies the structs before an item inside one and then refuses the update),
/// subdocuments (a whole yrs `Doc` per few input bytes), weak links, roots the schema does
/// not name, map entries in a list root or list items in a map root, and content a root
/// does not hold ([`content_fits`]). Strings must be UTF-8 and embedded JSON must parse
/// (yrs refuses the whole update otherwise).
pub fn check_update(bytes: &[u8]) -> Result<()> {
    walk(bytes, None)
}

/// Checks `bytes` like [`check_update`] and says where each struct goes and what it deletes:
/// what the room's write rules ([`crate::ledger`]) are checked against.
pub(crate) fn scan_update(bytes: &[u8]) -> Result<Scan> {
    let mut scan = Scan::default();
    walk(bytes, Some(&mut scan))?;
    Ok(scan)
}

/// A struct's id: (client, clock).
pub(crate) type Id = (u64, u32);

/// Where a struct of an update goes, as far as the update alone says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// A root type, by name, and a map key.
    Root(Box<str>, Option<Box<str>>),
    /// Wherever its left origin is, else its right origin (yrs's rule).
    After(Option<Id>, Option<Id>),
    /// A garbage-collected range: no parent, no content.
    Gc,
    /// A skipped range: not integrated at all.
    Skip,
}

/// One struct of an update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ScanBlock {
    pub(crate) client: u64,
    pub(crate) clock: u32,
    pub(crate) len: u32,
    pub(crate) place: Place,
    /// Its content kind (yrs's low four bits of the info byte; 0 for a GC or skipped range).
    pub(crate) content: u8,
}

/// What an update writes: its structs, and its deleted ranges (client, clock, length).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Scan {
    pub(crate) blocks: Vec<ScanBlock>,
    pub(crate) deletes: Vec<(u64, u32, u32)>,
}

fn walk(bytes: &[u8], mut scan: Option<&mut Scan>) -> Result<()> {
    let mut r = Walker { buf: bytes, pos: 0, files: Vec::new() };
    let clients = r.count(3)?;
    for _ in 0..clients {
        let blocks = r.count(1)?;
        let client = r.client()?;
        let mut clock = r.clock()?;
        for _ in 0..blocks {
            let (len, place, content) = r.block(scan.is_some())?;
            // Nothing writes an empty struct, and the write rules would not see one: yrs
            // keeps it pending when its origins are missing (found by the update_gate fuzz
            // target).
            if len == 0 {
                return Err(r.err("a struct of length 0"));
            }
            if let Some(s) = scan.as_deref_mut() {
                // Both fit in u32: clocks are checked against MAX_CLOCK as they add up.
                if clock + len <= MAX_CLOCK && len > 0 {
                    s.blocks.push(ScanBlock { client, clock: clock as u32, len: len as u32, place, content });
                }
            }
            clock += len;
            if clock > MAX_CLOCK {
                return Err(r.err("clock overflows"));
            }
        }
    }
    // The delete set: per client, ranges (clock, length).
    let clients = r.count(2)?;
    for _ in 0..clients {
        let client = r.client()?;
        let ranges = r.count(2)?;
        let mut end = 0;
        for _ in 0..ranges {
            let start = r.clock()?;
            let len = r.clock()?;
            // Yjs and yrs write each client's ranges sorted and merged; yrs keeps ranges it
            // cannot apply yet as they came, and encoded unsorted, overlapping ones of its own
            // client into a range its own gate refuses (found by the update_gate fuzz target).
            if start < end {
                return Err(r.err("deleted ranges out of order or overlapping"));
            }
            end = start + len;
            if start + len > MAX_CLOCK {
                return Err(r.err("deleted range overflows"));
            }
            if len == 0 {
                return Err(r.err("a deleted range of length 0"));
            }
            if let Some(s) = scan.as_deref_mut() {
                if len > 0 {
                    s.deletes.push((client, start as u32, len as u32));
                }
            }
        }
    }
    r.finish()
}

/// Whether a root the schema names is a map (`Some(true)`) or a text or array; `None` for a
/// name outside the schema (DESIGN.md's root table, `doc::roots`).
fn root_is_map(name: &[u8]) -> Option<bool> {
    use crate::doc::roots::*;
    match std::str::from_utf8(name).ok()? {
        META | PARTICIPANTS | VOTES | FILES => Some(true),
        CODE | ANALYSIS | RUNS | VERSIONS => Some(false),
        _ => super::files::file_of_root(name).map(|_| false),
    }
}

/// Whether a root holds text (`code` and the files' roots).
fn root_is_text(name: &[u8]) -> bool {
    name == crate::doc::roots::CODE.as_bytes() || super::files::file_of_root(name).is_some()
}

/// Whether content of kind `content` (yrs's content type) belongs in a root: the text
/// (`code`) holds strings, embeds and formatting; the arrays and maps hold values (`Any`)
/// and binaries. Deleted content goes anywhere. Anything else yrs would keep, and then read
/// slowly: an array reads a string one character at a time, each from the string's start,
/// so a 4 MiB string in `runs` made every `runs()` quadratic (found by the `recording`
/// fuzz target).
pub(crate) fn content_fits(text_root: bool, content: u8) -> bool {
    match content {
        1 => true,
        4..=6 => text_root,
        3 | 8 => !text_root,
        _ => false,
    }
}

struct Walker<'a> {
    buf: &'a [u8],
    pos: usize,
    /// The file names the update names so far (as `files/<name>` roots or `files` keys).
    files: Vec<&'a [u8]>,
}

impl<'a> Walker<'a> {
    fn err(&self, reason: &str) -> CoreError {
        CoreError::malformed("update", format!("{reason} at byte {}", self.pos))
    }

    fn u8(&mut self) -> Result<u8> {
        let b = *self.buf.get(self.pos).ok_or_else(|| self.err("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        let left = (self.buf.len() - self.pos) as u64;
        if n > left {
            return Err(self.err("truncated"));
        }
        self.pos += n as usize;
        Ok(())
    }

    /// An unsigned varint, with yrs's arithmetic (wrapping shifts, at most 11 bytes), so the
    /// value is the one yrs will see.
    fn var(&mut self) -> Result<u64> {
        let (mut num, mut shift) = (0u64, 0u32);
        loop {
            let b = self.u8()?;
            num |= u64::wrapping_shl(u64::from(b & 0x7f), shift);
            shift += 7;
            if b < 0x80 {
                return Ok(num);
            }
            if shift > 70 {
                return Err(self.err("varint too long"));
            }
        }
    }

    /// A `u32` varint as yrs reads it (the same bytes, wrapped to 32 bits).
    fn var32(&mut self) -> Result<u64> {
        Ok(self.var()? & u64::from(u32::MAX))
    }

    /// A signed varint (lib0 `writeVarInt`: six bits and the sign, then seven bits a byte).
    /// yrs's `read_var_i64` shifts past 64 bits on an 11th byte, and shifts the 10th by 62
    /// bits: anything but its lowest bit lands on the sign bit or beyond, and a magnitude
    /// of 2^63 (`C0 80 80 80 80 80 80 80 80 02`, `i64::MIN`) overflows when yrs negates it.
    /// So the 10th byte may only be 0 or 1.
    fn signed(&mut self) -> Result<()> {
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                return Err(self.err("signed varint past i64"));
            }
            if b < 0x80 {
                return Ok(());
            }
        }
        Err(self.err("signed varint too long"))
    }

    fn client(&mut self) -> Result<u64> {
        let c = self.var()?;
        if c > MAX_CLIENT_ID {
            return Err(self.err(&format!("client id {c} is not below 2^53")));
        }
        Ok(c)
    }

    fn clock(&mut self) -> Result<u64> {
        let c = self.var32()?;
        if c > MAX_CLOCK {
            return Err(self.err(&format!("clock {c} is past 2^31")));
        }
        Ok(c)
    }

    fn id(&mut self) -> Result<Id> {
        let client = self.client()?;
        Ok((client, self.clock()? as u32))
    }

    /// A count of items of at least `min_item` bytes each, refused when the input cannot
    /// hold that many.
    fn count(&mut self, min_item: u64) -> Result<u64> {
        let n = self.var32()?;
        if n.saturating_mul(min_item) > (self.buf.len() - self.pos) as u64 {
            return Err(self.err("count larger than the input"));
        }
        Ok(n)
    }

    /// A length-prefixed UTF-8 string (yrs refuses the whole update otherwise).
    fn text(&mut self) -> Result<&'a str> {
        let b = self.buf()?;
        std::str::from_utf8(b).map_err(|_| self.err("string is not UTF-8"))
    }

    /// A length-prefixed JSON text, as yrs reads embeds and formatting attributes.
    fn json(&mut self) -> Result<()> {
        let text = self.text()?;
        yrs::Any::from_json(text).map(drop).map_err(|_| self.err("embedded JSON does not parse"))
    }

    /// A length-prefixed byte string; returns it.
    fn buf(&mut self) -> Result<&'a [u8]> {
        let n = self.var32()?;
        let start = self.pos;
        self.skip(n)?;
        let all: &'a [u8] = self.buf;
        Ok(&all[start..self.pos])
    }

    /// One struct; returns how far it advances its client's clock, (when `place` is asked
    /// for) where it goes, and its content kind.
    fn block(&mut self, place: bool) -> Result<(u64, Place, u8)> {
        let info = self.u8()?;
        // GC and Skip (yrs compares the whole byte): a length.
        if info == 0 || info == 10 {
            return Ok((self.clock()?, if info == 0 { Place::Gc } else { Place::Skip }, 0));
        }
        let (has_origin, has_right) = (info & 0x80 != 0, info & 0x40 != 0);
        let origin = if has_origin { Some(self.id()?) } else { None };
        let right = if has_right { Some(self.id()?) } else { None };
        let mut at = Place::After(origin, right);
        let mut root_text = None;
        if !has_origin && !has_right {
            // Parent: a root's name, or the id of the item holding a nested type. The room
            // has no nested types, and yrs 0.28 applies the structs before such an item and
            // then fails the whole update when the id names anything but a type (or later,
            // when a pending item's parent turns up): a partly applied update that no log
            // holds. So items may only hang off a root.
            if self.var32()? != 1 {
                return Err(self.err("item inside a nested type"));
            }
            let name = self.buf()?;
            let sub = if info & 0x20 != 0 { Some(self.text()?.as_bytes()) } else { None };
            match (root_is_map(name), sub.is_some()) {
                (None, _) => {
                    let name = super::files::shown(&String::from_utf8_lossy(name));
                    return Err(self.err(&format!("root \"{name}\" is not in the room's schema")));
                }
                (Some(true), false) => return Err(self.err("a list item in a map root")),
                (Some(false), true) => return Err(self.err("a map entry in a text or array root")),
                _ => {}
            }
            let file = match (super::files::file_of_root(name), sub) {
                (Some(file), _) => Some(file),
                (None, Some(key)) if name == crate::doc::roots::FILES.as_bytes() => {
                    if let Err(why) = super::files::check_name_bytes(key) {
                        return Err(self.err(&format!("a `files` entry with a bad file name: {why}")));
                    }
                    Some(key)
                }
                _ => None,
            };
            if let Some(file) = file {
                self.file_named(file)?;
            }
            root_text = Some(root_is_text(name));
            if place {
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned().into_boxed_str();
                at = Place::Root(text(name), sub.map(text));
            }
        }
        let len = self.content(info)?;
        if root_text.is_some_and(|text| !content_fits(text, info & 0x0f)) {
            return Err(self.err(&format!("content of type {} does not belong in its root", info & 0x0f)));
        }
        Ok((len, at, info & 0x0f))
    }

    /// Counts a file the update names; refuses more than [`super::MAX_FILES`] in one update.
    fn file_named(&mut self, name: &'a [u8]) -> Result<()> {
        if !self.files.contains(&name) {
            if self.files.len() >= super::MAX_FILES {
                return Err(self.err(&format!("more than {} files in one update", super::MAX_FILES)));
            }
            self.files.push(name);
        }
        Ok(())
    }

    /// An item's content (yrs dispatches on the low four bits); returns its length.
    fn content(&mut self, info: u8) -> Result<u64> {
        Ok(match info & 0x0f {
            // Deleted.
            1 => self.clock()?,
            // JSON (legacy, Yjs < 13): yrs 0.28 reads the count plus one strings but writes
            // the count, so a document holding one encodes to bytes it cannot decode again.
            2 => return Err(self.err("legacy JSON content")),
            // Binary, String: one buffer. A string counts its UTF-16 units.
            3 => {
                self.buf()?;
                1
            }
            4 => self.text()?.encode_utf16().count() as u64,
            // Embed (JSON text), Format (key, JSON text).
            5 => {
                self.json()?;
                1
            }
            6 => {
                self.text()?;
                self.json()?;
                1
            }
            // A nested type (a weak link among them): the room's schema has none.
            7 => return Err(self.err("a nested type (the room's schema has none)")),
            // Any values.
            8 => {
                let n = self.count(1)?;
                for _ in 0..n {
                    self.any(0)?;
                }
                n
            }
            // A subdocument: the room's schema has none, and each is a whole yrs `Doc`.
            9 => return Err(self.err("a subdocument (the room's schema has none)")),
            t => return Err(self.err(&format!("unknown content type {t}"))),
        })
    }

    /// A lib0 `Any`, nested at most [`MAX_ANY_DEPTH`] deep.
    fn any(&mut self, depth: usize) -> Result<()> {
        if depth >= MAX_ANY_DEPTH {
            return Err(self.err("value nested too deep"));
        }
        match self.u8()? {
            127 | 126 | 121 | 120 => {}
            125 => self.signed()?,
            124 => self.skip(4)?,
            123 | 122 => self.skip(8)?,
            // A string, a buffer.
            119 => {
                self.text()?;
            }
            116 => {
                self.buf()?;
            }
            118 => {
                // yrs reads this count as a u64.
                let n = self.var()?;
                if n.saturating_mul(2) > (self.buf.len() - self.pos) as u64 {
                    return Err(self.err("count larger than the input"));
                }
                for _ in 0..n {
                    self.text()?;
                    self.any(depth + 1)?;
                }
            }
            117 => {
                let n = self.var()?;
                if n > (self.buf.len() - self.pos) as u64 {
                    return Err(self.err("count larger than the input"));
                }
                for _ in 0..n {
                    self.any(depth + 1)?;
                }
            }
            t => return Err(self.err(&format!("unknown value type {t}"))),
        }
        Ok(())
    }

    fn finish(&self) -> Result<()> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(self.err("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::RoomDoc;
    use yrs::updates::encoder::Encode;

    #[test]
    fn real_updates_pass() -> Result<()> {
        let doc = RoomDoc::new(7);
        let (_, u) = doc.edit(|e| {
            e.splice_code(0, 0, "héllo 😀");
            e.set_meta("title", &serde_json::json!({"a": [1, 2.5, null, true, "x", {"b": []}]}));
        });
        check_update(&u)?;
        let (_, u) = doc.edit(|e| e.splice_code(1, 3, "日本"));
        check_update(&u)?;
        check_update(&doc.encode_state())?;
        decode_state_vector(&doc.state_vector())?;
        check_update(&Update::new().encode_v1())
    }

    #[test]
    fn hostile_updates_are_refused() {
        // One client, one struct: client id 2^53.
        let mut big = vec![1, 1];
        big.extend([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]);
        big.extend([0, 4, 1, 4, b'c', b'o', b'd', b'e', 1, b'x', 0]);
        assert!(check_update(&big).is_err());
        // An Any array nested 10,000 deep.
        let mut deep = vec![1, 1, 5, 0, 8, 1, 4, b'r', b'u', b'n', b's', 1];
        for _ in 0..10_000 {
            deep.extend([117, 1]);
        }
        deep.extend([126, 0]);
        assert!(matches!(check_update(&deep), Err(CoreError::Malformed { .. })));
        // A signed varint of eleven bytes.
        let mut long = vec![1, 1, 5, 0, 8, 1, 4, b'r', b'u', b'n', b's', 1, 125];
        long.extend([0xff; 10]);
        long.extend([0x01, 0]);
        assert!(check_update(&long).is_err());
        // A clock past 2^31, and a deleted range that overflows.
        assert!(check_update(&[1, 1, 5, 0x80, 0x80, 0x80, 0x80, 0x08, 0, 1]).is_err());
        assert!(check_update(&[0, 1, 5, 1, 0xfe, 0xff, 0xff, 0xff, 0x07, 0xff, 0xff, 0xff, 0xff, 0x07]).is_err());
        // An item whose parent is another item (its own string "x" at clock 0): yrs would
        // apply the string, then refuse the update.
        let nested = [1, 2, 5, 0, 4, 1, 4, b'c', b'o', b'd', b'e', 1, b'x', 4, 0, 5, 0, 1, b'y', 0];
        assert!(check_update(&nested).is_err());
        // Legacy JSON content.
        assert!(check_update(&[1, 1, 5, 0, 2, 1, 4, b'c', b'o', b'd', b'e', 0, 3, b'"', b'j', b'"', 0]).is_err());
        // Empty structs (a string, values, a GC range) and an empty deleted range: nothing
        // writes them and the write rules would not see them. Found by the update_gate fuzz
        // target: an empty string between origins nobody wrote was left pending in yrs.
        assert!(check_update(&[1, 1, 5, 0, 4, 1, 4, b'c', b'o', b'd', b'e', 0, 0]).is_err());
        assert!(check_update(&[1, 1, 5, 0, 0xc4, 9, 1, 9, 2, 0, 0]).is_err());
        assert!(check_update(&[1, 1, 5, 0, 8, 1, 4, b'r', b'u', b'n', b's', 0, 0]).is_err());
        assert!(check_update(&[1, 1, 5, 0, 0, 0, 0]).is_err());
        assert!(check_update(&[0, 1, 9, 1, 120, 0]).is_err());
        // Deleted ranges of a client out of order, or overlapping; in order they pass.
        assert!(check_update(&[0, 1, 9, 2, 10, 5, 0, 5]).is_err());
        assert!(check_update(&[0, 1, 9, 2, 0, 5, 4, 5]).is_err());
        check_update(&[0, 1, 9, 2, 0, 5, 5, 5]).unwrap();
        // A count of clients the input cannot hold.
        assert!(check_update(&[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }

    /// `meta["k"]` = one `Any` integer written as the signed varint `v`.
    fn meta_int(v: &[u8]) -> Vec<u8> {
        let mut u = vec![1, 1, 5, 0, 0x28, 1, 4, b'm', b'e', b't', b'a', 1, b'k', 1, 125];
        u.extend(v);
        u.push(0);
        u
    }

    fn refused(u: &[u8], why: &str) {
        match check_update(u) {
            Err(CoreError::Malformed { reason, .. }) => assert!(reason.contains(why), "{reason} (wanted {why})"),
            other => panic!("{u:?} gave {other:?}, wanted an error about {why}"),
        }
        assert!(RoomDoc::new(1).apply_v1(u).is_err());
    }

    /// The 10-byte varint for `i64::MIN`: yrs negates it (an overflow panic in builds with
    /// overflow checks, such as this test's); the gate refuses it with an error. Seen
    /// accepted by the gate before.
    #[test]
    fn i64_min_varint_is_refused() {
        let min = meta_int(&[0xc0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02]);
        if cfg!(debug_assertions) {
            assert!(std::panic::catch_unwind(|| Update::decode_v1(&min)).is_err(), "yrs no longer panics");
        }
        refused(&min, "past i64");
        // Bits that yrs would shift out of the 10th byte.
        refused(&meta_int(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f]), "past i64");
        // The largest magnitudes that fit pass, and decode.
        for last in [0, 1] {
            let ok = meta_int(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, last]);
            check_update(&ok).unwrap();
            Update::decode_v1(&ok).unwrap();
        }
    }

    /// Strings yrs reads as UTF-8 and texts it parses as JSON: what it would refuse, the gate
    /// refuses (what the gate passes, yrs decodes). Found by the `update_gate` fuzz target (an
    /// `Any` string that is not UTF-8); each passed the gate before and failed in yrs.
    #[test]
    fn what_yrs_cannot_read_is_refused() {
        let bad_utf8 = [0xef, b'e'];
        // meta["k"] = an Any string, an Any map with a key.
        let mut s = vec![1, 1, 5, 0, 0x28, 1, 4, b'm', b'e', b't', b'a', 1, b'k', 1, 119, 2];
        s.extend(bad_utf8);
        s.push(0);
        let mut key = vec![1, 1, 5, 0, 0x28, 1, 4, b'm', b'e', b't', b'a', 1, b'k', 1, 118, 1, 2];
        key.extend(bad_utf8);
        key.extend([126, 0]);
        // A map key of the root itself.
        let mut sub = vec![1, 1, 5, 0, 0x28, 1, 4, b'm', b'e', b't', b'a', 2];
        sub.extend(bad_utf8);
        sub.extend([1, 126, 0]);
        // An embed and a formatting attribute in `code` whose JSON does not parse.
        let embed = [1, 1, 5, 0, 5, 1, 4, b'c', b'o', b'd', b'e', 2, b'{', b'x', 0];
        let format = [1, 1, 5, 0, 6, 1, 4, b'c', b'o', b'd', b'e', 1, b'b', 1, b'[', 0];
        for u in [&s[..], &key, &sub, &embed, &format] {
            assert!(Update::decode_v1(u).is_err(), "yrs reads {u:?}");
            assert!(check_update(u).is_err(), "the gate passes {u:?}");
        }
        // Their well-formed twins pass, and yrs reads them.
        for u in [
            &[1, 1, 5, 0, 0x28, 1, 4, b'm', b'e', b't', b'a', 1, b'k', 1, 119, 2, b'o', b'k', 0][..],
            &[1, 1, 5, 0, 5, 1, 4, b'c', b'o', b'd', b'e', 2, b'{', b'}', 0],
            &[1, 1, 5, 0, 6, 1, 4, b'c', b'o', b'd', b'e', 1, b'b', 4, b't', b'r', b'u', b'e', 0],
        ] {
            check_update(u).unwrap();
            Update::decode_v1(u).unwrap();
        }
    }

    /// Content a root does not hold: strings, embeds and formatting outside `code`, values and
    /// binaries in it. Found by the `recording` fuzz target: a string in `runs` (the host's
    /// code insertion with its root renamed) passed, and yrs reads an array's string one
    /// character at a time from its start, so `runs()` took quadratic time.
    #[test]
    fn content_outside_its_root_is_refused() {
        refused(&[1, 1, 5, 0, 4, 1, 4, b'r', b'u', b'n', b's', 1, b'x', 0], "does not belong");
        refused(&[1, 1, 5, 0, 0x24, 1, 4, b'm', b'e', b't', b'a', 1, b'k', 1, b'x', 0], "does not belong");
        refused(
            &[1, 1, 5, 0, 5, 1, 8, b'v', b'e', b'r', b's', b'i', b'o', b'n', b's', 2, b'{', b'}', 0],
            "does not belong",
        );
        refused(&[1, 1, 5, 0, 8, 1, 4, b'c', b'o', b'd', b'e', 1, 126, 0], "does not belong");
        refused(&[1, 1, 5, 0, 3, 1, 4, b'c', b'o', b'd', b'e', 1, 7, 0], "does not belong");
        // Deleted content and binaries go where values go.
        check_update(&[1, 1, 5, 0, 1, 1, 4, b'r', b'u', b'n', b's', 3, 0]).unwrap();
        check_update(&[1, 1, 5, 0, 3, 1, 4, b'r', b'u', b'n', b's', 1, 7, 0]).unwrap();
    }

    /// What the room's schema does not use, refused with an error before yrs sees it. Each
    /// was accepted by the gate before.
    #[test]
    fn what_the_schema_does_not_use_is_refused() {
        // A subdocument in `runs`: guid "guid", options {}.
        refused(&[1, 1, 5, 0, 9, 1, 4, b'r', b'u', b'n', b's', 4, b'g', b'u', b'i', b'd', 118, 0, 0], "subdocument");
        // A nested Y.Text at `meta["notes"]`: a nested type at a root.
        let nested = [1, 1, 5, 0, 0x27, 1, 4, b'm', b'e', b't', b'a', 5, b'n', b'o', b't', b'e', b's', 2, 0];
        refused(&nested, "nested type");
        // A root outside the schema.
        refused(&[1, 1, 5, 0, 4, 1, 4, b'e', b'v', b'i', b'l', 1, b'x', 0], "not in the room's schema");
        // A map entry in the code text, a list item in `meta`.
        refused(&[1, 1, 5, 0, 0x24, 1, 4, b'c', b'o', b'd', b'e', 1, b'k', 1, b'x', 0], "map entry");
        refused(&[1, 1, 5, 0, 8, 1, 4, b'm', b'e', b't', b'a', 1, 126, 0], "list item");
        // What the room writes passes: a string in `code`, an `Any` under a `meta` key.
        check_update(&[1, 1, 5, 0, 4, 1, 4, b'c', b'o', b'd', b'e', 1, b'x', 0]).unwrap();
        check_update(&meta_int(&[0x05])).unwrap();
    }

    /// File roots: `files/<valid name>` texts pass with text content only; other names under
    /// `files/`, bad `files` keys and more than `MAX_FILES` names in one update are refused.
    #[test]
    fn file_roots() {
        let text = |root: &str| {
            let mut u = vec![1, 1, 5, 0, 4, 1, root.len() as u8];
            u.extend(root.as_bytes());
            u.extend([1, b'x', 0]);
            u
        };
        check_update(&text("files/main.py")).unwrap();
        for bad in ["files/../x", "files/", "files/.env", "files/a b", "files", "file/main.py"] {
            refused(&text(bad), if bad == "files" { "list item in a map root" } else { "not in the room's schema" });
        }
        let entry = |key: &str| {
            let mut u = vec![1, 1, 5, 0, 0x28, 1, 5];
            u.extend(b"files");
            u.push(key.len() as u8);
            u.extend(key.as_bytes());
            u.extend([1, 126, 0]);
            u
        };
        check_update(&entry("util.h")).unwrap();
        refused(&entry("../util.h"), "bad file name");
        // 33 file roots in one update (each its own client, one struct).
        let mut many = vec![33];
        for i in 0..33u8 {
            let root = format!("files/f{i}");
            many.extend([1, 5 + i, 0, 4, 1, root.len() as u8]);
            many.extend(root.as_bytes());
            many.extend([1, b'x']);
        }
        many.push(0);
        refused(&many, "more than 32 files");
        // A file root holds text, not values.
        let mut values = vec![1, 1, 5, 0, 8, 1, 13];
        values.extend(b"files/main.py");
        values.extend([1, 126, 0]);
        refused(&values, "does not belong");
    }
}
