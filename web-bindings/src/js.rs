//! Conversions at the JS boundary: frames as `Uint8Array`s, splices and records as plain
//! objects, errors as `JsError`.

use arena_core::history::Splice;
use js_sys::{Array, Object, Reflect, Uint8Array};
use serde::Serialize;
use wasm_bindgen::{JsError, JsValue};

/// Frames to send, as an array of `Uint8Array`.
pub(crate) fn frames(frames: Vec<Vec<u8>>) -> Array {
    frames.iter().map(|f| JsValue::from(Uint8Array::from(f.as_slice()))).collect()
}

/// Splices as `[{pos, delete, insert}]`.
pub(crate) fn splices(splices: &[Splice]) -> Array {
    splices
        .iter()
        .map(|s| {
            let o = Object::new();
            set(&o, "pos", s.pos.into());
            set(&o, "delete", s.delete.into());
            set(&o, "insert", s.insert.as_str().into());
            JsValue::from(o)
        })
        .collect()
}

/// A serde value as a plain JS value (through JSON: records are small).
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> Result<JsValue, JsError> {
    // Not `?`: serde_json's error `Display` would bring its messages and std's I/O error texts
    // into the module, for an error plain records never give.
    let text = serde_json::to_string(value).map_err(|_| JsError::new("records: writing JSON failed"))?;
    js_sys::JSON::parse(&text).map_err(|_| JsError::new("JSON.parse failed"))
}

/// `[v, ...]`.
pub(crate) fn list<T: Into<JsValue>>(items: impl IntoIterator<Item = T>) -> JsValue {
    items.into_iter().map(Into::into).collect::<Array>().into()
}

/// `{k: v, ...}`.
pub(crate) fn object(fields: &[(&str, JsValue)]) -> Object {
    let o = Object::new();
    for (k, v) in fields {
        set(&o, k, v.clone());
    }
    o
}

fn set(o: &Object, key: &str, value: JsValue) {
    // Setting a property on a fresh plain object cannot fail.
    let _ = Reflect::set(o, &JsValue::from_str(key), &value);
}

/// WASM heap grown at the first room, once: the log growing while someone types then fills
/// memory the module already has instead of growing it mid-keystroke (`memory.grow` also makes
/// the glue re-create its views of the memory).
const HEAP_RESERVE: usize = 8 << 20;

/// Grows the heap by [`HEAP_RESERVE`] the first time (the allocator keeps what is freed).
pub(crate) fn reserve_heap() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(HEAP_RESERVE))));
}

/// JS numbers are f64; times and counts are non-negative integers below 2^53.
pub(crate) fn ms(now: f64) -> u64 {
    if now.is_finite() && now > 0.0 {
        now as u64
    } else {
        0
    }
}

/// A 32-byte seed from a `Uint8Array`.
pub(crate) fn seed(bytes: &[u8], what: &str) -> Result<[u8; 32], JsError> {
    bytes.try_into().map_err(|_| JsError::new(&format!("{what} must be 32 bytes (crypto.getRandomValues)")))
}
