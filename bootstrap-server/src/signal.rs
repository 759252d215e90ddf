//! `/signal`: a y-webrtc compatible signaling server. JSON text frames: `subscribe`,
//! `unsubscribe`, `publish` (forwarded to every subscriber of the topic, the sender
//! included, with `clients` = subscriber count), `ping` → `pong`. Topics that are room ids
//! need the connection's `?token=` to be valid for that room.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::{debug, info_span, Instrument};

use crate::limit::RateLimiter;
use crate::metrics::{dec, inc};
use crate::node::Node;
use crate::yws::next_conn_id;

/// Largest signaling message (SDP offers are a few KiB).
const MAX_SIGNAL: usize = 64 * 1024;
const QUEUE: usize = 256;

/// topic → subscribers.
#[derive(Debug, Default)]
pub(crate) struct Topics {
    map: Mutex<HashMap<String, HashMap<u64, mpsc::Sender<String>>>>,
}

impl Topics {
    fn subscribe(&self, topic: &str, conn: u64, tx: &mpsc::Sender<String>) {
        if let Ok(mut m) = self.map.lock() {
            m.entry(topic.to_owned()).or_default().insert(conn, tx.clone());
        }
    }

    fn unsubscribe(&self, topic: &str, conn: u64) {
        if let Ok(mut m) = self.map.lock() {
            if let Some(subs) = m.get_mut(topic) {
                subs.remove(&conn);
                if subs.is_empty() {
                    m.remove(topic);
                }
            }
        }
    }

    /// Sends to every subscriber; returns how many got it. Slow subscribers miss messages
    /// (signaling retries) rather than growing a queue.
    fn publish(&self, topic: &str, msg: &Value) -> usize {
        let Ok(m) = self.map.lock() else { return 0 };
        let Some(subs) = m.get(topic) else { return 0 };
        let mut msg = msg.clone();
        msg["clients"] = json!(subs.len());
        let text = msg.to_string();
        subs.values().filter(|tx| tx.try_send(text.clone()).is_ok()).count()
    }
}

pub(crate) async fn upgrade(
    State(node): State<Node>,
    Query(q): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let token = q.get("token").cloned();
    ws.max_message_size(MAX_SIGNAL)
        .max_frame_size(MAX_SIGNAL)
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .on_upgrade(move |socket| {
            let conn = next_conn_id();
            serve(node, socket, conn, token).instrument(info_span!("signal", conn))
        })
}

/// Whether `topic` is a room id this node hosts; if so, whether the token grants it.
fn check_topic(node: &Node, topic: &str, token: Option<&str>) -> Result<(), String> {
    let looks_like_room = topic.len() == 64 && topic.bytes().all(|b| b.is_ascii_hexdigit());
    if !looks_like_room {
        return Ok(());
    }
    node.authorize(topic, token).map(|_| ()).map_err(|e| e.message())
}

async fn serve(node: Node, mut socket: WebSocket, conn: u64, token: Option<String>) {
    let m = &node.inner.metrics;
    inc(&m.connections_total, 1);
    inc(&m.connections_active, 1);
    let topics = &node.inner.signal;
    let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
    let mut mine: HashSet<String> = HashSet::new();
    let mut limiter = RateLimiter::new(node.cfg().rate_limit);
    let max_topics = node.cfg().max_topics;
    let shutdown = node.inner.shutdown.clone();
    loop {
        let text = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            out = rx.recv() => match out {
                Some(t) => {
                    if socket.send(Message::Text(t.into())).await.is_err() { break; }
                    continue;
                }
                None => break,
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Binary(_))) => {
                    let _ = socket.send(Message::Close(Some(CloseFrame { code: 1003, reason: "signaling speaks JSON text frames".into() }))).await;
                    break;
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => continue,
            },
        };
        inc(&m.signal_messages, 1);
        if !limiter.allow() {
            inc(&m.rate_limited, 1);
            let _ = socket
                .send(Message::Close(Some(CloseFrame { code: 4429, reason: "rate limit exceeded".into() })))
                .await;
            break;
        }
        let Ok(msg) = serde_json::from_str::<Value>(&text) else {
            let _ = socket.send(Message::Text(json!({"type": "error", "reason": "not JSON"}).to_string().into())).await;
            continue;
        };
        let topic_list = |v: &Value| -> Vec<String> {
            v.get("topics")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        let mut errors = Vec::new();
        match msg.get("type").and_then(Value::as_str) {
            Some("subscribe") => {
                for t in topic_list(&msg) {
                    if t.len() > 256 {
                        errors.push(json!({"type": "error", "topic": t.chars().take(64).collect::<String>(), "reason": "topic too long"}));
                    } else if !mine.contains(&t) && mine.len() >= max_topics {
                        errors.push(json!({"type": "error", "topic": t, "reason": format!("at most {max_topics} topics per connection")}));
                    } else if let Err(reason) = check_topic(&node, &t, token.as_deref()) {
                        errors.push(json!({"type": "error", "topic": t, "reason": reason}));
                    } else {
                        topics.subscribe(&t, conn, &tx);
                        mine.insert(t);
                    }
                }
            }
            Some("unsubscribe") => {
                for t in topic_list(&msg) {
                    topics.unsubscribe(&t, conn);
                    mine.remove(&t);
                }
            }
            Some("publish") => match msg.get("topic").and_then(Value::as_str) {
                Some(t) => match check_topic(&node, t, token.as_deref()) {
                    Ok(()) => {
                        topics.publish(t, &msg);
                    }
                    Err(reason) => errors.push(json!({"type": "error", "topic": t, "reason": reason})),
                },
                None => errors.push(json!({"type": "error", "reason": "publish needs a topic"})),
            },
            Some("ping") => errors.push(json!({"type": "pong"})),
            _ => errors.push(json!({"type": "error", "reason": "unknown message type"})),
        }
        for e in errors {
            if socket.send(Message::Text(e.to_string().into())).await.is_err() {
                break;
            }
        }
    }
    for t in &mine {
        topics.unsubscribe(t, conn);
    }
    dec(&m.connections_active);
    debug!("signaling connection closed");
}
