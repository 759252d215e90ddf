//! `json`: arena-core's JSON reader against serde_json.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::json::{write_str, Json, MAX_INPUT, MAX_NODES};

/// `data` as text (lossily, when it is not UTF-8) read by `Json::parse` and by serde_json:
/// - both accept it or both refuse it, except that ours refuses a text of more than
///   `MAX_NODES` values or `MAX_INPUT` bytes (the bounds serde_json does not have);
/// - what both accept reads the same: the same numbers (unsigned, negative, float to the
///   bit), strings, arrays, and objects with the last of duplicate keys winning (serde's
///   maps), and it maps to the same yrs `Any` as `doc::any_of` maps serde's value;
/// - the text, written as a JSON string by `write_str`, is what serde_json writes.
pub fn json(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let ours = Json::parse(&text);
    let theirs = serde_json::from_str::<Value>(&text).ok();
    match (&ours, &theirs) {
        (Some(o), Some(t)) => {
            assert!(same(o, t), "read differently: ours {o:?}, serde_json {t:?}");
            assert!(o.to_any() == crate::doc::any_of(t), "maps to another Any than serde_json's value");
        }
        (Some(o), None) => panic!("ours accepts what serde_json refuses: {o:?}"),
        (None, Some(t)) => {
            let (nodes, len) = (count(t), text.len());
            assert!(
                nodes > MAX_NODES || len > MAX_INPUT,
                "ours refuses what serde_json reads ({nodes} values, {len} bytes): {t:?}"
            );
        }
        (None, None) => {}
    }
    let mut written = String::new();
    write_str(&mut written, &text);
    assert_eq!(Some(&written), serde_json::to_string(&*text).ok().as_ref(), "write_str differs from serde_json");
    let expected = (written.len() <= MAX_INPUT).then(|| Json::Str(text.into_owned()));
    assert_eq!(Json::parse(&written), expected, "what write_str wrote reads back otherwise");
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(m) => m.values().map(count).sum(),
        _ => 0,
    }
}

fn same(o: &Json, t: &Value) -> bool {
    match (o, t) {
        (Json::Null, Value::Null) => true,
        (Json::Bool(a), Value::Bool(b)) => a == b,
        (Json::UInt(a), Value::Number(n)) => n.as_u64() == Some(*a),
        (Json::Int(a), Value::Number(n)) => n.as_u64().is_none() && n.as_i64() == Some(*a),
        (Json::Float(a), Value::Number(n)) => {
            n.as_u64().is_none() && n.as_i64().is_none() && n.as_f64().is_some_and(|b| b.to_bits() == a.to_bits())
        }
        (Json::Str(a), Value::String(b)) => a == b,
        (Json::Arr(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y)),
        (Json::Obj(fields), Value::Object(m)) => {
            // The last of duplicate keys wins, as in serde_json's maps.
            let ours: BTreeMap<&str, &Json> = fields.iter().map(|(k, v)| (k.as_str(), v)).collect();
            ours.len() == m.len() && ours.iter().all(|(k, v)| m.get(*k).is_some_and(|t| same(v, t)))
        }
        _ => false,
    }
}
