//! Presence (y-protocols awareness) between native peers: the bytes of an awareness update,
//! checked for shape and size before anyone keeps or forwards them, and the JSON a
//! recording stores (`{client id: {clock, state}}`, the same from libp2p and from `/yws`).

use yrs::sync::AwarenessUpdate;
use yrs::updates::decoder::Decode;

use crate::behaviour::MAX_PRESENCE_MESSAGE;

/// Decodes an awareness update from a peer; every state must be JSON.
pub(crate) fn decode(bytes: &[u8]) -> Result<AwarenessUpdate, String> {
    if bytes.len() > MAX_PRESENCE_MESSAGE {
        return Err(format!("{} bytes (at most {MAX_PRESENCE_MESSAGE})", bytes.len()));
    }
    let update = AwarenessUpdate::decode_v1(bytes).map_err(|e| e.to_string())?;
    if update.clients.is_empty() {
        return Err("no clients".into());
    }
    for (client, entry) in &update.clients {
        serde_json::from_str::<serde_json::Value>(&entry.json)
            .map_err(|e| format!("state of client {} is not JSON: {e}", client.get()))?;
    }
    Ok(update)
}

/// One client's awareness update: `clock` must grow with each change; a null `state` says
/// the client left.
pub(crate) fn encode(client: u64, clock: u32, state: &serde_json::Value) -> Vec<u8> {
    use yrs::sync::awareness::AwarenessUpdateEntry;
    use yrs::updates::encoder::Encode;
    let mut clients = std::collections::HashMap::new();
    clients.insert(
        yrs::ClientID::new(client & ((1 << 53) - 1)),
        AwarenessUpdateEntry { clock, json: state.to_string().into() },
    );
    AwarenessUpdate { clients }.encode_v1()
}

/// The recording's JSON form of an update.
pub(crate) fn to_json(update: &AwarenessUpdate) -> String {
    let mut states = serde_json::Map::new();
    for (client, entry) in &update.clients {
        let state: serde_json::Value = serde_json::from_str(&entry.json).unwrap_or(serde_json::Value::Null);
        states.insert(client.get().to_string(), serde_json::json!({ "clock": entry.clock, "state": state }));
    }
    serde_json::Value::Object(states).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::sync::awareness::AwarenessUpdateEntry;
    use yrs::updates::encoder::Encode;

    fn update(json: &str) -> Vec<u8> {
        let mut clients = std::collections::HashMap::new();
        clients.insert(yrs::ClientID::new(7), AwarenessUpdateEntry { clock: 3, json: json.into() });
        AwarenessUpdate { clients: clients.into_iter().collect() }.encode_v1()
    }

    #[test]
    fn good_updates_decode_and_bad_ones_are_refused() {
        let ok = decode(&update(r#"{"user":{"name":"Ada"}}"#)).expect("decodes");
        assert_eq!(to_json(&ok), r#"{"7":{"clock":3,"state":{"user":{"name":"Ada"}}}}"#);
        assert!(decode(&update("null")).is_ok(), "a cleared state is valid");
        assert!(decode(&update("{not json")).is_err());
        assert!(decode(&[0xff, 0xff, 0xff]).is_err());
        assert!(decode(&[]).is_err());
        assert!(decode(&vec![1u8; MAX_PRESENCE_MESSAGE + 1]).is_err());
        let mine = decode(&encode(9, 2, &serde_json::json!({"user": {"name": "cli"}}))).expect("own encoding");
        assert_eq!(to_json(&mine), r#"{"9":{"clock":2,"state":{"user":{"name":"cli"}}}}"#);
    }
}
