//! A small JSON reader for the records in the room document and the presence states.
//!
//! serde_json with a derived `Deserialize` per record type was ~70 KB of the WASM module (a
//! `deserialize_struct` instantiation per record, field and enum visitors, one reader per
//! number type). This reads the same JSON into a [`Json`] tree once, and each record reads
//! its fields from the tree by hand (`records.rs`), with serde's rules: unknown fields
//! ignored, a missing field fails the record unless it is an `Option` (or the record has
//! defaults), integers read as unsigned only from non-negative integer literals. Records
//! are still written by serde_json; [`write_str`] writes strings as it does, for the JSON
//! the crate writes by hand (presence states, relative positions).

use yrs::{Any, Number};

/// A parsed JSON value. Numbers are kept as serde_json keeps them: non-negative integer
/// literals as `UInt`, negative ones as `Int`, everything else (a fraction, an exponent, an
/// integer out of range) as `Float`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    UInt(u64),
    Int(i64),
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    /// Fields in document order (the last of duplicate keys wins in [`Json::get`], as in
    /// serde_json's maps; serde's derived structs reject duplicates instead).
    Obj(Vec<(String, Json)>),
}

/// Deepest nesting accepted (serde_json's own limit).
const MAX_DEPTH: usize = 128;
/// Longest text parsed: an update's limit ([`crate::MAX_UPDATE`]), which holds any record.
pub(crate) const MAX_INPUT: usize = crate::envelope::MAX_UPDATE;
/// Most values in one tree (parsed or converted from an `Any`). A `Json` is 32 bytes and an
/// object field 56, so a tree stays under ~4 MiB past its strings; the room's records have
/// tens of values. Without it, a 4 MiB buffer became 4 Mi nodes (128 MiB) on every read.
pub(crate) const MAX_NODES: usize = 1 << 16;

#[cfg(test)]
thread_local! {
    /// Texts this thread parsed (tests count them).
    pub(crate) static PARSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl Json {
    /// Parses one JSON text (whitespace around it allowed). `None` if it is not JSON, or
    /// longer than [`MAX_INPUT`] bytes, or holds more than [`MAX_NODES`] values.
    pub(crate) fn parse(text: &str) -> Option<Json> {
        #[cfg(test)]
        PARSES.with(|n| n.set(n.get() + 1));
        if text.len() > MAX_INPUT {
            return None;
        }
        let mut p = Parser { s: text.as_bytes(), i: 0, nodes: 0 };
        let v = p.value(0)?;
        p.ws();
        (p.i == p.s.len()).then_some(v)
    }

    /// An `Any` as the JSON text yrs's `Any::to_json` writes for it would parse: `Null` and
    /// `Undefined` as null, floats that are whole numbers in i64 range as integers, NaN and
    /// infinities as null, a buffer as an array of byte values. `None` past [`MAX_NODES`]
    /// values (a buffer counts one per byte), checked before anything is allocated.
    pub(crate) fn from_any(any: &Any) -> Option<Json> {
        let mut budget = MAX_NODES;
        Self::from_any_within(any, &mut budget)
    }

    fn from_any_within(any: &Any, budget: &mut usize) -> Option<Json> {
        *budget = budget.checked_sub(1)?;
        Some(match any {
            Any::Null | Any::Undefined => Json::Null,
            Any::Bool(b) => Json::Bool(*b),
            Any::Number(n) => match n.as_i64() {
                Some(i) => Json::int(i),
                None => match n.as_f64() {
                    Some(f) if f.is_finite() => Json::Float(f),
                    _ => Json::Null,
                },
            },
            Any::String(s) => Json::Str(s.to_string()),
            Any::Buffer(b) => {
                *budget = budget.checked_sub(b.len())?;
                Json::Arr(b.iter().map(|&x| Json::UInt(x.into())).collect())
            }
            Any::Array(a) => {
                // Reserved up front (each item also counts itself as it converts).
                if a.len() > *budget {
                    return None;
                }
                Json::Arr(a.iter().map(|v| Self::from_any_within(v, budget)).collect::<Option<_>>()?)
            }
            Any::Map(m) => {
                if m.len() > *budget {
                    return None;
                }
                Json::Obj(
                    m.iter()
                        .map(|(k, v)| Some((k.clone(), Self::from_any_within(v, budget)?)))
                        .collect::<Option<_>>()?,
                )
            }
        })
    }

    /// As an `Any`, mapped as yrs's serde bridge maps JSON (integers that fit an i64 as
    /// integers, other numbers as floats; `Null` for the whole value when an integer does not
    /// fit), like `doc::any_of` for a `serde_json::Value`.
    pub(crate) fn to_any(&self) -> Any {
        fn conv(v: &Json) -> Option<Any> {
            Some(match v {
                Json::Null => Any::Null,
                Json::Bool(b) => Any::Bool(*b),
                Json::UInt(u) => Any::from(i64::try_from(*u).ok()?),
                Json::Int(i) => Any::from(*i),
                Json::Float(f) => Any::from(*f),
                Json::Str(s) => Any::from(s.as_str()),
                Json::Arr(a) => Any::Array(a.iter().map(conv).collect::<Option<Vec<_>>>()?.into()),
                Json::Obj(m) => {
                    // The last of duplicate keys wins, as in serde_json's maps: an earlier
                    // value does not count, even one that would null the whole value.
                    let last: std::collections::HashMap<&str, &Json> = m.iter().map(|(k, v)| (k.as_str(), v)).collect();
                    Any::Map(
                        last.into_iter()
                            .map(|(k, v)| Some((k.to_owned(), conv(v)?)))
                            .collect::<Option<std::collections::HashMap<_, _>>>()?
                            .into(),
                    )
                }
            })
        }
        conv(self).unwrap_or(Any::Null)
    }

    fn int(i: i64) -> Json {
        u64::try_from(i).map_or(Json::Int(i), Json::UInt)
    }

    /// Field `key` of an object.
    pub(crate) fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_u64(&self) -> Option<u64> {
        match self {
            Json::UInt(u) => Some(*u),
            _ => None,
        }
    }

    pub(crate) fn as_i32(&self) -> Option<i32> {
        match self {
            Json::UInt(u) => i32::try_from(*u).ok(),
            Json::Int(i) => i32::try_from(*i).ok(),
            _ => None,
        }
    }

    pub(crate) fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub(crate) fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Arr(a) => Some(a),
            _ => None,
        }
    }

    pub(crate) fn as_object(&self) -> Option<&[(String, Json)]> {
        match self {
            Json::Obj(o) => Some(o),
            _ => None,
        }
    }
}

/// Appends `s` as a JSON string literal, escaped as serde_json escapes it (`"`, `\\` and
/// control characters; `\u00xx` for those without a short form).
pub(crate) fn write_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut from = 0;
    for (i, b) in s.bytes().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[from..i]);
        from = i + 1;
        if short.is_empty() {
            out.push_str("\\u00");
            out.push(HEX[usize::from(b >> 4)].into());
            out.push(HEX[usize::from(b & 15)].into());
        } else {
            out.push_str(short);
        }
    }
    out.push_str(&s[from..]);
    out.push('"');
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    /// Values read so far (at most [`MAX_NODES`]).
    nodes: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        self.ws();
        let hit = self.s.get(self.i) == Some(&b);
        self.i += usize::from(hit);
        hit
    }

    fn literal(&mut self, word: &[u8], v: Json) -> Option<Json> {
        let end = self.i.checked_add(word.len())?;
        (self.s.get(self.i..end)? == word).then(|| {
            self.i = end;
            v
        })
    }

    fn value(&mut self, depth: usize) -> Option<Json> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return None;
        }
        self.ws();
        match *self.s.get(self.i)? {
            b'n' => self.literal(b"null", Json::Null),
            b't' => self.literal(b"true", Json::Bool(true)),
            b'f' => self.literal(b"false", Json::Bool(false)),
            b'"' => self.string().map(Json::Str),
            b'[' if depth < MAX_DEPTH => {
                self.i += 1;
                let mut items = Vec::new();
                if !self.eat(b']') {
                    loop {
                        items.push(self.value(depth + 1)?);
                        if self.eat(b']') {
                            break;
                        }
                        if !self.eat(b',') {
                            return None;
                        }
                    }
                }
                Some(Json::Arr(items))
            }
            b'{' if depth < MAX_DEPTH => {
                self.i += 1;
                let mut fields = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        self.ws();
                        let key = self.string()?;
                        if !self.eat(b':') {
                            return None;
                        }
                        fields.push((key, self.value(depth + 1)?));
                        if self.eat(b'}') {
                            break;
                        }
                        if !self.eat(b',') {
                            return None;
                        }
                    }
                }
                Some(Json::Obj(fields))
            }
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// A number. Integers are read here; a float literal (a fraction, an exponent, or an
    /// integer out of range) goes to serde_json through yrs's `Any::from_json`, which the
    /// module has anyway (yrs reads JSON content with it), so floats are serde_json's to the
    /// bit. Not `str::parse::<f64>` (its correctly rounded parser is 11 KB of tables in the
    /// module), nor `serde_json::from_str::<f64>` (its error messages format floats: 13 KB).
    fn number(&mut self) -> Option<Json> {
        let start = self.i;
        let negative = self.s[self.i] == b'-';
        self.i += usize::from(negative);
        let int_start = self.i;
        let n = self.digits();
        if n == 0 || (n > 1 && self.s[int_start] == b'0') {
            return None;
        }
        let mut integer = true;
        if self.s.get(self.i) == Some(&b'.') {
            self.i += 1;
            integer = false;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.s.get(self.i) {
            self.i += 1;
            integer = false;
            if let Some(b'+' | b'-') = self.s.get(self.i) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        // ASCII digits and signs only.
        let text = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        if integer {
            if !negative {
                if let Ok(u) = text.parse::<u64>() {
                    return Some(Json::UInt(u));
                }
            } else if let Ok(i @ ..=-1) = text.parse::<i64>() {
                // serde_json reads "-0" as the float -0.0.
                return Some(Json::Int(i));
            }
        }
        // Out of range (1e400): an error, as in serde_json.
        match Any::from_json(text) {
            Ok(Any::Number(Number::Float(f))) => Some(Json::Float(f)),
            _ => None,
        }
    }

    fn digits(&mut self) -> usize {
        let from = self.i;
        while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        self.i - from
    }

    fn hex4(&mut self) -> Option<u32> {
        let end = self.i.checked_add(4)?;
        let digits = std::str::from_utf8(self.s.get(self.i..end)?).ok()?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.i = end;
        u32::from_str_radix(digits, 16).ok()
    }

    /// A string literal at `self.i` (the opening quote).
    fn string(&mut self) -> Option<String> {
        if self.s.get(self.i) != Some(&b'"') {
            return None;
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let b = *self.s.get(self.i)?;
            self.i += 1;
            match b {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let e = *self.s.get(self.i)?;
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if self.s.get(self.i..self.i + 2)? != b"\\u" {
                                    return None;
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return None;
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(code)?
                        }
                        _ => return None,
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1f => return None,
                _ => out.push(b),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts and rejects what serde_json does, and reads the same values.
    #[test]
    fn parses_like_serde_json() {
        let texts = [
            "null",
            " true ",
            "false",
            "0",
            "-0",
            "7",
            "-7",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "2.5",
            "1e300",
            "1E2",
            "-1.5e-3",
            "0.1",
            "123456789012345678901234567890",
            "1.7976931348623157e308",
            "1.8e308",
            "2.2250738585072014e-308",
            "4.9e-324",
            "1e-400",
            "0e999999999999",
            "1e-99999999999",
            "-0.0",
            "3.141592653589793",
            "1e22",
            "1e23",
            "0.000001",
            r#""a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00 é""#,
            r#"{"a": [1, 2.5, null, true, "x", {"b": []}], "c": {}}"#,
            "[]",
            "{}",
            " [ 1 , 2 ] ",
            // Not JSON.
            "",
            " ",
            "01",
            "1.",
            ".5",
            "-",
            "+1",
            "1e",
            "1e+",
            "[1,]",
            "[1 2]",
            "{\"a\"}",
            "{\"a\":}",
            "{a:1}",
            "{\"a\":1,}",
            "nul",
            "truee",
            "\"\\x\"",
            "\"\u{1}\"",
            r#""\ud800""#,
            r#""\ud800\u0041""#,
            "[1]]",
            "\"abc",
            "1e400",
            "[",
            "{",
        ];
        for text in texts {
            let ours = Json::parse(text);
            let theirs = serde_json::from_str::<serde_json::Value>(text).ok();
            assert_eq!(ours.is_some(), theirs.is_some(), "{text:?}");
            if let (Some(o), Some(t)) = (ours, theirs) {
                assert_eq!(o, from_value(&t), "{text:?}");
            }
        }
        assert_eq!(Json::parse(r#"{"k":1,"k":2}"#).and_then(|v| v.get("k")?.as_u64()), Some(2));
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(Json::parse(&deep(128)).is_some());
        assert!(Json::parse(&deep(129)).is_none());
        assert!(serde_json::from_str::<serde_json::Value>(&deep(129)).is_err());
    }

    /// `from_any` reads an `Any` as its JSON text would parse.
    #[test]
    fn from_any_matches_to_json() {
        let anys = [
            Any::Null,
            Any::Undefined,
            Any::Bool(true),
            Any::from(2.0),
            Any::from(-3.0),
            Any::from(2.5),
            Any::from(1e300),
            Any::from(f64::NAN),
            Any::from(-9i64),
            Any::from(u32::MAX),
            Any::from("x\"y"),
            Any::from(vec![Any::from(1.0), Any::from("z")]),
            Any::from(std::collections::HashMap::from([("a".to_owned(), Any::from(1i64))])),
        ];
        for any in anys {
            let mut text = String::new();
            any.to_json(&mut text);
            let parsed = Json::parse(&text).unwrap();
            assert!(close(&Json::from_any(&any).unwrap(), &parsed), "{text}: {parsed:?}");
        }
    }

    /// Trees stop at `MAX_NODES` values, texts at `MAX_INPUT` bytes, parsed or converted
    /// from an `Any` (where a buffer counts a value per byte and is refused before the
    /// array is allocated). Seen unbounded before: a 4 MiB buffer became 4 Mi values.
    #[test]
    fn trees_are_bounded() {
        let array = |n: usize| format!("[{}]", vec!["0"; n].join(","));
        // The array itself is one value.
        assert!(Json::parse(&array(MAX_NODES - 1)).is_some());
        assert!(Json::parse(&array(MAX_NODES)).is_none());
        assert!(Json::parse(&format!("\"{}\"", "x".repeat(MAX_INPUT - 2))).is_some());
        assert!(Json::parse(&format!(" \"{}\"", "x".repeat(MAX_INPUT - 2))).is_none());
        assert!(Json::from_any(&Any::Buffer(vec![1; MAX_NODES - 1].into())).is_some());
        assert!(Json::from_any(&Any::Buffer(vec![1; 4 << 20].into())).is_none());
        let wide = Any::from(vec![Any::from(vec![Any::Null; MAX_NODES / 2]); 2]);
        assert!(Json::from_any(&wide).is_none());
        let map =
            Any::from(std::collections::HashMap::from([("k".to_owned(), Any::Buffer(vec![0; MAX_NODES].into()))]));
        assert!(Json::from_any(&map).is_none());
    }

    /// Equal, floats to within 1e-14 relative (`Any::to_json` writes the shortest text that
    /// reads back exactly only under a correctly rounded parser).
    fn close(a: &Json, b: &Json) -> bool {
        match (a, b) {
            (Json::Float(x), Json::Float(y)) => x == y || (x - y).abs() <= 1e-14 * x.abs().max(y.abs()),
            (Json::Arr(x), Json::Arr(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| close(a, b)),
            (Json::Obj(x), Json::Obj(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|((k, a), (l, b))| k == l && close(a, b))
            }
            _ => a == b,
        }
    }

    #[test]
    fn strings_written_as_serde_json_writes_them() {
        for s in ["", "plain", "q\"b\\s/", "\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f}\u{7f}", "é 二和 😀", "\u{2028}"]
        {
            let mut ours = String::new();
            write_str(&mut ours, s);
            assert_eq!(ours, serde_json::to_string(s).unwrap());
            assert_eq!(Json::parse(&ours), Some(Json::Str(s.to_owned())));
        }
    }

    #[test]
    fn to_any_maps_as_any_of() {
        for text in [
            r#"{"a":[1,-2,2.5,null,true,"x",{"b":[]}],"c":{}}"#,
            "18446744073709551615",
            "[1,9223372036854775808]",
            "3.0",
            "-0",
            // Found by the `json` fuzz target: an integer past i64 under a key that a later
            // duplicate overrides nulled the whole value (serde_json's map keeps the last).
            r#"{"a":18446744073709551615,"a":1}"#,
            r#"[{"id":"r","t":17000000700000000012,"w":15,"t":1700000070007}]"#,
        ] {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(Json::parse(text).unwrap().to_any(), crate::doc::any_of(&value), "{text}");
        }
    }

    fn from_value(v: &serde_json::Value) -> Json {
        use serde_json::Value as V;
        match v {
            V::Null => Json::Null,
            V::Bool(b) => Json::Bool(*b),
            V::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Json::UInt(u),
                (None, Some(i)) => Json::Int(i),
                _ => Json::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            V::String(s) => Json::Str(s.clone()),
            V::Array(a) => Json::Arr(a.iter().map(from_value).collect()),
            V::Object(m) => Json::Obj(m.iter().map(|(k, v)| (k.clone(), from_value(v))).collect()),
        }
    }
}
