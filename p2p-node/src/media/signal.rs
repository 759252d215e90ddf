//! The call's signaling (the `arena-call-*` messages; what the node enforces on them is in
//! arena-bootstrap's signal.rs) over the bootstrap node's `/signal` WebSocket: parsing
//! what arrives, strictly, and sending the recorder's own (hello, answer, ICE, bye: a
//! receive-only peer never offers).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::{NodeError, Result};

/// Largest SDP accepted (the node caps a signaling message at 64 KiB).
const MAX_SDP: usize = 60 * 1024;
/// Longest call peer id, name or role accepted.
const MAX_FIELD: usize = 128;

/// One `ICE` candidate as the browser's `RTCIceCandidateInit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) candidate: String,
    pub(crate) sdp_mid: Option<String>,
    pub(crate) sdp_mline_index: Option<u16>,
}

/// A call message for the recorder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CallMsg {
    Hello { from: String, role: String, name: String, media: bool, to_me: bool },
    Offer { from: String, sdp: String },
    Answer { from: String },
    Ice { from: String, candidate: Option<Candidate> },
    Bye { from: String },
}

impl CallMsg {
    pub(crate) fn from(&self) -> &str {
        match self {
            CallMsg::Hello { from, .. }
            | CallMsg::Offer { from, .. }
            | CallMsg::Answer { from }
            | CallMsg::Ice { from, .. }
            | CallMsg::Bye { from } => from,
        }
    }
}

fn field<'a>(d: &'a Value, k: &str) -> std::result::Result<&'a str, String> {
    let s = d.get(k).and_then(Value::as_str).ok_or_else(|| format!("no string `{k}`"))?;
    if s.len() > MAX_FIELD {
        return Err(format!("`{k}` longer than {MAX_FIELD} bytes"));
    }
    Ok(s)
}

/// Parses a `/signal` frame for the recorder whose call peer id is `me` on `topic`.
/// `Ok(None)`: not a call message for it (another topic, the mesh's messages, its own
/// echo, a message addressed to another peer, pongs). `Err`: a call message that is
/// malformed (the reason, for the log).
pub(crate) fn parse(text: &str, topic: &str, me: &str) -> std::result::Result<Option<CallMsg>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    match v.get("type").and_then(Value::as_str) {
        Some("publish") => {}
        Some("error") => {
            return Err(format!("the node refused a message: {}", v.get("reason").unwrap_or(&Value::Null)))
        }
        _ => return Ok(None),
    }
    if v.get("topic").and_then(Value::as_str) != Some(topic) {
        return Ok(None);
    }
    let d = v.get("data").unwrap_or(&Value::Null);
    let Some(kind) = d.get("type").and_then(Value::as_str).and_then(|t| t.strip_prefix("arena-call-")) else {
        return Ok(None);
    };
    let from = field(d, "from")?.to_owned();
    if from == me || from.is_empty() {
        return Ok(None);
    }
    let to = match d.get("to") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t.as_str()),
        Some(_) => return Err("`to` is not a string".into()),
    };
    if to.is_some_and(|t| t != me) {
        return Ok(None);
    }
    let msg = match kind {
        "hello" => CallMsg::Hello {
            role: field(d, "role").unwrap_or("").to_owned(),
            name: field(d, "name").unwrap_or("").to_owned(),
            media: d.get("media").and_then(Value::as_bool).unwrap_or(false),
            to_me: to.is_some(),
            from,
        },
        "bye" => CallMsg::Bye { from },
        _ if to.is_none() => return Err(format!("arena-call-{kind} without `to`")),
        "offer" => {
            let sdp = d.get("sdp").and_then(Value::as_str).ok_or("offer without an `sdp` string")?;
            if sdp.len() > MAX_SDP {
                return Err(format!("offer SDP of {} bytes", sdp.len()));
            }
            CallMsg::Offer { from, sdp: sdp.to_owned() }
        }
        "answer" => CallMsg::Answer { from },
        "ice" => {
            let candidate = match d.get("candidate") {
                None | Some(Value::Null) => None,
                Some(c) => Some(Candidate {
                    candidate: c
                        .get("candidate")
                        .and_then(Value::as_str)
                        .filter(|s| s.len() <= 1024)
                        .ok_or("ICE candidate without a `candidate` string")?
                        .to_owned(),
                    sdp_mid: c.get("sdpMid").and_then(Value::as_str).map(|s| s.chars().take(64).collect()),
                    sdp_mline_index: c.get("sdpMLineIndex").and_then(Value::as_u64).and_then(|i| u16::try_from(i).ok()),
                }),
            };
            CallMsg::Ice { from, candidate }
        }
        other => return Err(format!("unknown call message arena-call-{}", other.chars().take(32).collect::<String>())),
    };
    Ok(Some(msg))
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The recorder's `/signal` connection, subscribed to the room's topic.
#[derive(Debug)]
pub(crate) struct SignalLink {
    ws: Ws,
    topic: String,
    me: String,
}

fn remote(e: impl std::fmt::Display) -> NodeError {
    NodeError::Remote(format!("signal: {e}"))
}

impl SignalLink {
    /// Connects to `base` (`http://host:port`) with the member's token and subscribes.
    pub(crate) async fn connect(base: &str, topic: &str, token: &str, me: &str) -> Result<Self> {
        let (host, _) = crate::http::split_url(base)?;
        let url = format!("ws://{host}/signal?token={token}");
        let (ws, _) = tokio::time::timeout(Duration::from_secs(30), tokio_tungstenite::connect_async(url.as_str()))
            .await
            .map_err(|_| remote(format!("ws://{host}/signal: timed out")))?
            .map_err(|e| remote(format!("ws://{host}/signal: {e}")))?;
        let mut link = SignalLink { ws, topic: topic.to_owned(), me: me.to_owned() };
        link.send_raw(json!({"type": "subscribe", "topics": [topic]})).await?;
        Ok(link)
    }

    async fn send_raw(&mut self, v: Value) -> Result<()> {
        self.ws.send(Message::Text(v.to_string().into())).await.map_err(remote)
    }

    /// Publishes `data` (with our `from` and type `arena-call-{kind}`) on the room topic.
    pub(crate) async fn publish(&mut self, kind: &str, mut data: Value) -> Result<()> {
        if let Some(o) = data.as_object_mut() {
            o.insert("type".into(), format!("arena-call-{kind}").into());
            o.insert("from".into(), self.me.clone().into());
        }
        let topic = self.topic.clone();
        self.send_raw(json!({"type": "publish", "topic": topic, "data": data})).await
    }

    /// Keeps the connection alive (the node closes quiet ones).
    pub(crate) async fn ping(&mut self) -> Result<()> {
        self.send_raw(json!({"type": "ping"})).await
    }

    /// The next text frame; `None` when the connection closed.
    pub(crate) async fn next(&mut self) -> Result<Option<String>> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => return Ok(Some(t.to_string())),
                Some(Ok(Message::Close(_))) | None => return Ok(None),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(remote(e)),
            }
        }
    }

    pub(crate) async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(data: Value) -> String {
        json!({"type": "publish", "topic": "room", "data": data, "clients": 3}).to_string()
    }

    #[test]
    fn parses_what_is_for_us_and_refuses_the_malformed() {
        let hello =
            publish(json!({"type": "arena-call-hello", "from": "A", "role": "host", "name": "Ada", "media": true}));
        assert_eq!(
            parse(&hello, "room", "me"),
            Ok(Some(CallMsg::Hello {
                from: "A".into(),
                role: "host".into(),
                name: "Ada".into(),
                media: true,
                to_me: false
            }))
        );
        // Our own echo, another room, another peer's offer, the mesh: not for us.
        assert_eq!(parse(&publish(json!({"type": "arena-call-bye", "from": "me"})), "room", "me"), Ok(None));
        assert_eq!(parse(&hello, "other", "me"), Ok(None));
        let offer =
            |to: &str, sdp: Value| publish(json!({"type": "arena-call-offer", "from": "A", "to": to, "sdp": sdp}));
        assert_eq!(parse(&offer("B", "v=0".into()), "room", "me"), Ok(None));
        assert_eq!(parse(&publish(json!({"type": "arena-offer", "from": "A"})), "room", "me"), Ok(None));
        assert_eq!(
            parse(&offer("me", "v=0".into()), "room", "me"),
            Ok(Some(CallMsg::Offer { from: "A".into(), sdp: "v=0".into() }))
        );
        for bad in [
            "not json".to_owned(),
            offer("me", 5.into()),
            offer("me", "x".repeat(MAX_SDP + 1).into()),
            publish(json!({"type": "arena-call-offer", "from": "A", "sdp": "v=0"})),
            publish(json!({"type": "arena-call-hello", "from": 7})),
            publish(json!({"type": "arena-call-hello", "from": "x".repeat(200)})),
            publish(json!({"type": "arena-call-ice", "from": "A", "to": "me", "candidate": {"candidate": 1}})),
            publish(json!({"type": "arena-call-ice", "from": "A", "to": 5})),
            publish(json!({"type": "arena-call-nope", "from": "A", "to": "me"})),
            json!({"type": "error", "reason": "read-only"}).to_string(),
        ] {
            assert!(parse(&bad, "room", "me").is_err(), "{bad}");
        }
        let ice = publish(json!({"type": "arena-call-ice", "from": "A", "to": "me",
            "candidate": {"candidate": "candidate:1 1 udp 1 1.2.3.4 5 typ host", "sdpMid": "0", "sdpMLineIndex": 0}}));
        assert!(matches!(parse(&ice, "room", "me"), Ok(Some(CallMsg::Ice { candidate: Some(_), .. }))));
        let end = publish(json!({"type": "arena-call-ice", "from": "A", "to": "me", "candidate": null}));
        assert_eq!(parse(&end, "room", "me"), Ok(Some(CallMsg::Ice { from: "A".into(), candidate: None })));
    }
}
