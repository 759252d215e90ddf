//! `/signal`: a y-webrtc compatible signaling server. JSON text frames: `subscribe`,
//! `unsubscribe`, `publish` (forwarded to every subscriber of the topic, the sender
//! included, with `clients` = subscriber count), `ping` → `pong`. Topics that are room ids
//! need the connection's `?token=` to be valid for that room.
//!
//! What the node enforces on top of the protocol:
//! - **Publishing to a room topic needs a writing role** (host, candidate). An observer's
//!   connection subscribes and receives; its publishes are answered with an error naming the
//!   topic (our mesh client then stops signaling: an observer reads over `/yws`).
//! - **`from` is bound to the connection.** The first `from` (a string field of the
//!   published `data`) a connection uses on a topic is its own there; a publish under a
//!   `from` another connection of the topic holds, or under a second `from` of its own, is
//!   refused (an error without the topic: our mesh client treats an error naming the room
//!   as a refused token). Peer ids are random and learned only from publishes, so nobody
//!   can claim one first. A forged `arena-bye` or offer then cannot speak for another peer.
//!   One exception: a connection whose token is the same invite as the holder's takes the
//!   `from` over (a member reconnecting before the node has noticed its old socket died;
//!   it is itself). With today's shared role invites that means the same role's holders;
//!   with key-bound invites, the same member.
//! - **Observers see no ICE.** Offers, answers and ICE candidates carry the peers' IP
//!   addresses. An observer's connection gets only the publishes whose `data` is an object
//!   of type `arena-announce`, `arena-bye` (our mesh: who is in the room) or `announce`
//!   (y-webrtc's), carrying no `sdp`, `candidate` or `signal` field. Everything else
//!   (`arena-offer`, `arena-answer`, `arena-ice`, y-webrtc's `signal`, and y-webrtc's
//!   encrypted payloads, which the node cannot read) is not forwarded to it.
//! - **The call** (`arena-call-*` data types, docs/call.md): an offer, answer or ICE
//!   candidate names its one recipient in `to` and goes to that `from`'s connection only,
//!   never to the rest of the topic. A `hello` gets its `role` stamped by the node from the
//!   sender's invite (nobody claims to be the host). Observers (and the recorder) receive
//!   the call: they may send `arena-call-hello` (stamped `media: false`), `-answer` and `-ice`
//!   to one peer, and `-bye`; never an offer, so they never send media (a media peer offers
//!   to them `sendonly`). They see call hellos and byes, and what is addressed to them.
//! - **Caps**: `--signal-max-per-ip` connections from one address (429 before the upgrade),
//!   `--signal-max-connections` in all (503), and `--signal-max-per-token` with one invite
//!   link (counted from the first room topic the link opens: the next connection's
//!   subscribe or publish gets an error naming the topic).
//! - **No global lock while copying**: a publish snapshots the topic's subscribers under the
//!   lock and sends after releasing it, one shared string for all. Each connection's queue
//!   is bounded ([`QUEUE`]); a subscriber whose queue is full is disconnected ("too slow"),
//!   not buffered for.
//! - **Expiry**: the connection is closed when the invite that opened its room expires (or
//!   through [`crate::Registry::close_grant`]).
//! - **Deadlines**: a connection quiet for `--ws-ping-ms` gets a WebSocket ping; one from
//!   which nothing came for `--ws-idle-timeout-ms` (not even the pong) is closed (4408).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arena_core::{Grant, Role, RoomId};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, Instrument};

use crate::conn::next_conn_id;
use crate::limit::{ConnCaps, RateLimiter, Slot};
use crate::live::{grant_id, GrantId, LiveGuard, CLOSE_DENIED};
use crate::metrics::{dec, inc};
use crate::registry::Registry;

/// Largest signaling message (SDP offers are a few KiB).
const MAX_SIGNAL: usize = 64 * 1024;
/// Messages queued for one connection; a subscriber that lets it fill is dropped.
const QUEUE: usize = 256;

/// A subscriber of a topic.
#[derive(Debug, Clone)]
struct Sub {
    tx: mpsc::Sender<Arc<str>>,
    /// Disconnects it (too slow).
    kick: CancellationToken,
    /// Gets no offers, answers or ICE candidates (its token's role is observer).
    observer: bool,
}

#[derive(Debug, Default)]
struct Topic {
    subs: HashMap<u64, Sub>,
    /// `from` → the connection it is bound to, and the grant that connection's token is.
    from: HashMap<String, (u64, Option<GrantId>)>,
}

/// The `/signal` handler's state: the registry (for tokens and live connections), the
/// topics, and the caps on open connections.
#[derive(Clone, Debug)]
struct Signal {
    registry: Registry,
    topics: Arc<Topics>,
    /// `/signal` connections open, per client IP, per invite link and in total.
    caps: Arc<ConnCaps>,
}

/// The `/signal` route.
pub(crate) fn routes<S>(registry: Registry) -> axum::Router<S> {
    let cfg = registry.cfg();
    let caps = Arc::new(ConnCaps::new(cfg.signal_max_per_ip, cfg.signal_max_per_token, cfg.signal_max_connections));
    let state = Signal { registry, topics: Arc::default(), caps };
    axum::Router::new().route("/signal", axum::routing::get(upgrade)).with_state(state)
}

/// topic → subscribers and bound `from`s.
#[derive(Debug, Default)]
struct Topics {
    map: Mutex<HashMap<String, Topic>>,
}

/// Why a publish was refused.
#[derive(Debug, PartialEq, Eq)]
enum FromError {
    /// Another connection publishes under this `from`.
    Taken,
    /// This connection already publishes under another `from` on this topic.
    Changed(String),
}

impl Topics {
    fn subscribe(&self, topic: &str, conn: u64, sub: Sub) {
        if let Ok(mut m) = self.map.lock() {
            m.entry(topic.to_owned()).or_default().subs.insert(conn, sub);
        }
    }

    /// Takes `conn` off `topic` (its subscription and its `from`).
    fn leave(&self, topic: &str, conn: u64) {
        if let Ok(mut m) = self.map.lock() {
            if let Some(t) = m.get_mut(topic) {
                t.subs.remove(&conn);
                t.from.retain(|_, (c, _)| *c != conn);
                if t.subs.is_empty() && t.from.is_empty() {
                    m.remove(topic);
                }
            }
        }
    }

    /// Binds `from` (when the data has one) to `conn` (whose token is `grant`) on `topic` and
    /// snapshots the subscribers: the lock is held for this, not for the sending. A `from`
    /// held by another connection of the same grant (the same member reconnecting while its
    /// old socket is not yet known dead) moves to the new one.
    /// With `to`, the snapshot is that `from`'s connection alone (none when it is not here).
    fn prepare(
        &self,
        topic: &str,
        conn: u64,
        grant: Option<GrantId>,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<Sub>, FromError> {
        let Ok(mut m) = self.map.lock() else { return Ok(Vec::new()) };
        if let Some(from) = from {
            let t = m.entry(topic.to_owned()).or_default();
            if let Some((mine, _)) = t.from.iter().find(|(f, (c, _))| *c == conn && f.as_str() != from) {
                return Err(FromError::Changed(mine.clone()));
            }
            match t.from.get(from) {
                Some((c, _)) if *c == conn => {}
                Some((_, g)) if g.is_none() || *g != grant => return Err(FromError::Taken),
                _ => {
                    t.from.insert(from.to_owned(), (conn, grant));
                }
            }
        }
        let Some(t) = m.get(topic) else { return Ok(Vec::new()) };
        Ok(match to {
            Some(to) => t.from.get(to).and_then(|(c, _)| t.subs.get(c)).cloned().into_iter().collect(),
            None => t.subs.values().cloned().collect(),
        })
    }
}

/// Whether an observer may see a broadcast publish's `data`: who is in the room (and in the
/// call), never an address.
fn observer_may_see(data: &Value) -> bool {
    let Some(obj) = data.as_object() else { return false };
    let kind = obj.get("type").and_then(Value::as_str);
    matches!(kind, Some("arena-announce" | "arena-bye" | "announce" | "arena-call-hello" | "arena-call-bye"))
        && !["sdp", "candidate", "signal"].iter().any(|k| obj.contains_key(*k))
}

/// The call's message types (docs/call.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallKind {
    Hello,
    Offer,
    Answer,
    Ice,
    Bye,
}

impl CallKind {
    /// The call message a publish's `data` is, if any; unknown `arena-call-*` types are
    /// refused rather than passed on.
    fn of(data: Option<&Value>) -> Option<Result<CallKind, String>> {
        let kind = data?.get("type")?.as_str()?;
        let rest = kind.strip_prefix("arena-call-")?;
        Some(match rest {
            "hello" => Ok(CallKind::Hello),
            "offer" => Ok(CallKind::Offer),
            "answer" => Ok(CallKind::Answer),
            "ice" => Ok(CallKind::Ice),
            "bye" => Ok(CallKind::Bye),
            _ => Err(format!("unknown call message `{}`", kind.chars().take(64).collect::<String>())),
        })
    }

    /// Whether it goes to one peer (`to`) only.
    fn addressed(self) -> bool {
        matches!(self, CallKind::Offer | CallKind::Answer | CallKind::Ice)
    }

    /// Whether a receive-only member may send it.
    fn observer_may_send(self) -> bool {
        self != CallKind::Offer
    }
}

/// Forwards a publish to `subs` (after the topic's lock is released); returns how many got it.
/// `direct`: addressed to one peer, which gets it whatever its role.
fn fan_out(sig: &Signal, subs: &[Sub], msg: &Value, direct: bool) -> usize {
    let mut msg = msg.clone();
    msg["clients"] = json!(subs.len());
    let for_observers = direct || msg.get("data").is_some_and(observer_may_see);
    let text: Arc<str> = msg.to_string().into();
    let mut sent = 0;
    for s in subs {
        if s.observer && !for_observers {
            continue;
        }
        match s.tx.try_send(text.clone()) {
            Ok(()) => sent += 1,
            Err(mpsc::error::TrySendError::Full(_)) => {
                inc(&sig.registry.metrics().frames_dropped_slow, 1);
                s.kick.cancel();
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
    sent
}

async fn upgrade(
    State(sig): State<Signal>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // axum checks only that the key is there.
    if !headers.get(axum::http::header::SEC_WEBSOCKET_KEY).is_some_and(crate::ws::valid_key) {
        return (axum::http::StatusCode::BAD_REQUEST, crate::ws::BAD_KEY).into_response();
    }
    let slot = match sig.caps.acquire(peer.ip()) {
        Ok(s) => s,
        Err(e) => {
            inc(&sig.registry.metrics().connections_refused, 1);
            debug!(ip = %peer.ip(), ?e, "signaling connection refused");
            return e.response("signaling");
        }
    };
    let token = q.get("token").cloned();
    ws.max_message_size(MAX_SIGNAL)
        .max_frame_size(MAX_SIGNAL)
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .on_upgrade(move |socket| {
            let conn = next_conn_id();
            serve(sig, socket, conn, token, slot).instrument(info_span!("signal", conn))
        })
}

/// Whether `topic` is a room id; if so, the grant the token gives for it (or why not).
fn check_topic(registry: &Registry, topic: &str, token: Option<&str>) -> Result<Option<(RoomId, Grant)>, String> {
    let looks_like_room = topic.len() == 64 && topic.bytes().all(|b| b.is_ascii_hexdigit());
    if !looks_like_room {
        return Ok(None);
    }
    registry.authorize_unrevoked(topic, token).map(Some).map_err(|e| e.message())
}

/// One connection's state.
struct Conn {
    sig: Signal,
    conn: u64,
    token: Option<String>,
    tx: mpsc::Sender<Arc<str>>,
    kick: CancellationToken,
    /// Topics subscribed to.
    mine: HashSet<String>,
    /// Topics it published under a `from` on.
    bound: HashSet<String>,
    /// In the node's live connections once its token opened a room (closed at expiry).
    live: Option<(LiveGuard, oneshot::Receiver<String>)>,
    /// The grant its token is, once it opened a room.
    grant: Option<GrantId>,
    /// Its place under the caps (`--signal-max-per-ip`, `--signal-max-per-token`, …).
    slot: Slot,
}

impl Conn {
    /// Checks a room topic's token; the first room it opens puts the connection in the node's
    /// live connections. Returns the token's role there (none: not a room topic).
    fn authorize(&mut self, topic: &str) -> Result<Option<Role>, String> {
        let Some((room, grant)) = check_topic(&self.sig.registry, topic, self.token.as_deref())? else {
            return Ok(None);
        };
        if self.live.is_none() {
            if let Err(e) = self.slot.hold_link(&grant.invite) {
                inc(&self.sig.registry.metrics().connections_refused, 1);
                return Err(e.message("signaling"));
            }
            self.grant = Some(grant_id(&grant));
            let (tx, rx) = oneshot::channel();
            self.live = Some((self.sig.registry.env().live.register_signal(self.conn, room, &grant, tx), rx));
        }
        Ok(Some(grant.role))
    }

    fn subscribe(&mut self, msg: &Value, errors: &mut Vec<Value>) {
        let max_topics = self.sig.registry.cfg().max_topics;
        for t in topic_list(msg) {
            if t.len() > 256 {
                errors.push(json!({"type": "error", "topic": t.chars().take(64).collect::<String>(), "reason": "topic too long"}));
            } else if !self.mine.contains(&t) && self.mine.len() >= max_topics {
                errors.push(json!({"type": "error", "topic": t, "reason": format!("at most {max_topics} topics per connection")}));
            } else {
                match self.authorize(&t) {
                    Err(reason) => errors.push(json!({"type": "error", "topic": t, "reason": reason})),
                    Ok(role) => {
                        let observer = role.is_some_and(|r| !r.may_write());
                        let sub = Sub { tx: self.tx.clone(), kick: self.kick.clone(), observer };
                        self.sig.topics.subscribe(&t, self.conn, sub);
                        self.mine.insert(t);
                    }
                }
            }
        }
    }

    fn publish(&mut self, msg: &Value, errors: &mut Vec<Value>) {
        let m = self.sig.registry.env().metrics.clone();
        let Some(t) = msg.get("topic").and_then(Value::as_str) else {
            errors.push(json!({"type": "error", "reason": "publish needs a topic"}));
            return;
        };
        let role = match self.authorize(t) {
            Err(reason) => return errors.push(json!({"type": "error", "topic": t, "reason": reason})),
            Ok(role) => role,
        };
        let observer = role.is_some_and(|r| !r.may_write());
        let call = match CallKind::of(msg.get("data")) {
            Some(Err(reason)) => return errors.push(json!({"type": "error", "reason": reason})),
            Some(Ok(k)) => Some(k),
            None => None,
        };
        if observer {
            match call {
                Some(k) if k.observer_may_send() => {}
                // No topic in the error: our mesh client reads one as a refused token.
                Some(_) => {
                    inc(&m.observer_writes_refused, 1);
                    let reason = "read-only: observers receive the call and never offer media";
                    return errors.push(json!({"type": "error", "reason": reason}));
                }
                None => {
                    inc(&m.observer_writes_refused, 1);
                    let reason = "read-only: observers may not publish to the room";
                    return errors.push(json!({"type": "error", "topic": t, "reason": reason}));
                }
            }
        }
        let data = msg.get("data");
        let from = data.and_then(|d| d.get("from")).and_then(Value::as_str);
        let to = match call {
            Some(k) => {
                let to = data.and_then(|d| d.get("to")).and_then(Value::as_str);
                if from.is_none() || (k.addressed() && to.is_none()) {
                    let reason = "a call message needs `from`, and an offer, answer or ICE candidate a `to`";
                    return errors.push(json!({"type": "error", "reason": reason}));
                }
                to
            }
            None => None,
        };
        if from.is_some() && !self.bound.contains(t) && self.bound.len() >= self.sig.registry.cfg().max_topics {
            return errors.push(json!({"type": "error", "reason": "publishing on too many topics"}));
        }
        match self.sig.topics.prepare(t, self.conn, self.grant, from, to) {
            Ok(subs) => {
                if from.is_some() {
                    self.bound.insert(t.to_owned());
                }
                if call == Some(CallKind::Hello) {
                    // The node says who this is, not the sender.
                    let mut msg = msg.clone();
                    if let (Some(r), Some(d)) = (role, msg.get_mut("data").and_then(Value::as_object_mut)) {
                        d.insert("role".into(), json!(r.as_str()));
                        if observer {
                            d.insert("media".into(), json!(false));
                        }
                    }
                    fan_out(&self.sig, &subs, &msg, to.is_some());
                } else {
                    fan_out(&self.sig, &subs, msg, to.is_some());
                }
            }
            Err(e) => {
                inc(&m.signal_refused, 1);
                let reason = match e {
                    FromError::Taken => "`from` is another connection's on this topic".to_owned(),
                    FromError::Changed(mine) => format!("this connection publishes as `from` {mine} on this topic"),
                };
                debug!(%reason, "publish refused");
                errors.push(json!({"type": "error", "reason": reason}));
            }
        }
    }
}

fn topic_list(v: &Value) -> Vec<String> {
    v.get("topics")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// How long a write to a client may wait: one that stopped reading (a full TCP window) is
/// dropped instead of holding its task and its place under the caps.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Sends a message; false when the socket failed or did not take it within [`SEND_TIMEOUT`].
async fn send(socket: &mut WebSocket, msg: Message) -> bool {
    matches!(tokio::time::timeout(SEND_TIMEOUT, socket.send(msg)).await, Ok(Ok(())))
}

async fn send_text(socket: &mut WebSocket, text: &str) -> bool {
    send(socket, Message::Text(text.into())).await
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    send(socket, Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
}

/// Waits for the connection's expiry (or revocation) reason; never, before it has one.
async fn closed(live: &mut Option<(LiveGuard, oneshot::Receiver<String>)>) -> Option<String> {
    match live {
        Some((_, rx)) => rx.await.ok(),
        None => std::future::pending().await,
    }
}

async fn serve(sig: Signal, mut socket: WebSocket, conn: u64, token: Option<String>, slot: Slot) {
    let m = sig.registry.env().metrics.clone();
    inc(&m.connections_total, 1);
    inc(&m.connections_active, 1);
    let (tx, mut rx) = mpsc::channel::<Arc<str>>(QUEUE);
    let mut limiter = RateLimiter::new(sig.registry.cfg().rate_limit);
    let shutdown = sig.registry.env().shutdown.clone();
    let kick = CancellationToken::new();
    let (mine, bound) = (HashSet::new(), HashSet::new());
    let (ping_ms, idle_ms) = (sig.registry.cfg().ws_ping_ms, sig.registry.cfg().ws_idle_timeout_ms);
    let (ping, idle) = (Duration::from_millis(ping_ms.into()), Duration::from_millis(idle_ms.into()));
    let mut c = Conn { sig, conn, token, tx, kick: kick.clone(), mine, bound, live: None, grant: None, slot };
    // Deadlines (as on /yws, see `crate::ws::Deadlines`): quiet for `ping`, a ping; nothing,
    // not even the pong, for `idle`, dropped. A client stalled inside a message sends no
    // pong either (messages here are small: no read deadline of their own).
    let mut heard = Instant::now();
    let mut pinged = false;
    let quiet = tokio::time::sleep(ping.min(idle));
    tokio::pin!(quiet);
    'conn: loop {
        let text = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            () = &mut quiet => {
                let silent = heard.elapsed();
                if silent >= idle {
                    inc(&m.connections_timed_out, 1);
                    let e = crate::ws::WsError::IdleTimeout(idle_ms);
                    debug!(error = %e, "timed out");
                    close(&mut socket, e.close_code(), &e.to_string()).await;
                    break;
                }
                if !pinged && silent >= ping {
                    pinged = true;
                    inc(&m.ws_pings, 1);
                    if !send(&mut socket, Message::Ping(Default::default())).await {
                        break;
                    }
                }
                let next = if pinged || ping >= idle { heard + idle } else { heard + ping };
                quiet.as_mut().reset(next.into());
                continue;
            }
            _ = kick.cancelled() => {
                close(&mut socket, 4400, "too slow: reconnect").await;
                break;
            }
            reason = closed(&mut c.live) => match reason {
                Some(reason) => {
                    close(&mut socket, CLOSE_DENIED, &reason).await;
                    break;
                }
                // Its registration was dropped without a close: none will come.
                None => {
                    c.live = None;
                    continue;
                }
            },
            out = rx.recv() => match out {
                Some(t) => {
                    if !send_text(&mut socket, &t).await { break; }
                    continue;
                }
                None => break,
            },
            msg = socket.recv() => {
                // Anything that comes (a pong too) restarts the idle clock; the timer
                // looks again when it fires.
                heard = Instant::now();
                pinged = false;
                match msg {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Binary(_))) => {
                    close(&mut socket, 1003, "signaling speaks JSON text frames").await;
                    break;
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => continue,
                }
            },
        };
        inc(&m.signal_messages, 1);
        if !limiter.allow() {
            inc(&m.rate_limited, 1);
            close(&mut socket, 4429, "rate limit exceeded").await;
            break;
        }
        let Ok(msg) = serde_json::from_str::<Value>(&text) else {
            if !send_text(&mut socket, &json!({"type": "error", "reason": "not JSON"}).to_string()).await {
                break;
            }
            continue;
        };
        let mut errors = Vec::new();
        match msg.get("type").and_then(Value::as_str) {
            Some("subscribe") => c.subscribe(&msg, &mut errors),
            Some("unsubscribe") => {
                for t in topic_list(&msg) {
                    c.sig.topics.leave(&t, conn);
                    c.mine.remove(&t);
                    c.bound.remove(&t);
                }
            }
            Some("publish") => c.publish(&msg, &mut errors),
            Some("ping") => errors.push(json!({"type": "pong"})),
            _ => errors.push(json!({"type": "error", "reason": "unknown message type"})),
        }
        for e in errors {
            if !send_text(&mut socket, &e.to_string()).await {
                break 'conn;
            }
        }
    }
    for t in c.mine.iter().chain(&c.bound) {
        c.sig.topics.leave(t, conn);
    }
    drop(c);
    dec(&m.connections_active);
    debug!("signaling connection closed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observers_see_who_is_there_and_no_addresses() {
        assert!(observer_may_see(&json!({"type": "arena-announce", "from": "a", "peers": []})));
        assert!(observer_may_see(&json!({"type": "arena-bye", "from": "a"})));
        assert!(observer_may_see(&json!({"type": "announce", "from": "a"})));
        assert!(observer_may_see(&json!({"type": "arena-call-hello", "from": "a", "media": true})));
        assert!(observer_may_see(&json!({"type": "arena-call-bye", "from": "a"})));
        for hidden in [
            json!({"type": "arena-offer", "sdp": "v=0"}),
            json!({"type": "arena-answer", "sdp": "v=0"}),
            json!({"type": "arena-ice", "candidate": {"candidate": "candidate:1 1 udp 1 192.0.2.7 1 typ host"}}),
            json!({"type": "signal", "signal": {"type": "offer"}}),
            json!({"type": "arena-call-offer", "from": "a", "to": "b", "sdp": "v=0"}),
            json!({"type": "arena-call-ice", "from": "a", "to": "b", "candidate": null}),
            json!({"type": "arena-call-hello", "from": "a", "sdp": "v=0"}),
            json!({"type": "arena-announce", "sdp": "v=0"}),
            json!("encrypted y-webrtc payload"),
        ] {
            assert!(!observer_may_see(&hidden), "{hidden}");
        }
    }
}
