// MeshTransport: a WebRTC data-channel mesh between the browsers of one room, signaled
// through the bootstrap node's /signal WebSocket (the y-webrtc signaling protocol:
// subscribe / publish / ping). Each pair of peers gets one RTCPeerConnection with one
// ordered, reliable data channel; the frames on it are the same y-protocols frames as on
// /yws (signed envelopes as message type 100, awareness), so a page keeps syncing with the
// others when its /yws socket is down, and nothing unsigned is ever applied.
//
// Signaling messages (the `data` of a publish on the room topic), all JSON objects:
//   {type: 'arena-announce', from, to?, peers}  I am here (to: a reply to someone's announce;
//                                               peers: the ids I have an open channel with)
//   {type: 'arena-offer',  from, to, conn, sdp}  only the peer with the lower id offers
//   {type: 'arena-answer', from, to, conn, sdp}
//   {type: 'arena-ice',    from, to, conn, candidate: {candidate, sdpMid, sdpMLineIndex} | null}
//   {type: 'arena-bye',    from}                 I am leaving
// `from` / `to` are random peer ids (32 hex digits), `conn` names one connection attempt (16
// hex digits). The node forwards a publish to every subscriber, the sender included, so
// messages from us or not addressed to us are ignored; anything malformed is counted in
// `stats.malformed` and ignored.
//
// Events (EventTarget):
//   'open'    detail {peer, resync}  a data channel opened (resync: it had dropped frames
//             under backpressure and drained: send the catch-up frames again)
//   'message' detail {peer, data: Uint8Array}
//   'close'   detail {peer, reason}  an open channel went away
//   'status'  detail {status, attempt, retryInMs, reason, peers} of the signaling socket:
//             'connecting', 'online', 'offline' (waiting to retry), 'denied' (the node refused
//             the token: no retry), 'closed', 'unsupported' (no RTCPeerConnection here)
//   'peers'   detail {peers} the number of open channels changed

import { Reconnecting } from './transport.js'

const ID = /^[0-9a-f]{32}$/
const CONN = /^[0-9a-f]{16}$/
const MAX_SDP = 32 * 1024
const MAX_CANDIDATE = 2048
const MAX_QUEUED_CANDIDATES = 64
const DENIED = 4403

const hex = (n) => Array.from(globalThis.crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, '0')).join('')

/** The /signal WebSocket URL on a node at `server` (an http(s) or ws(s) base URL). */
export function signalUrl (server, token) {
  const base = String(server).replace(/^http/, 'ws').replace(/\/+$/, '')
  return `${base}/signal?token=${encodeURIComponent(token)}`
}

function cleanCandidate (c) {
  if (c === null) return null
  if (typeof c !== 'object' || typeof c.candidate !== 'string' || c.candidate.length > MAX_CANDIDATE) return undefined
  const out = { candidate: c.candidate }
  if (c.sdpMid !== undefined && c.sdpMid !== null) {
    if (typeof c.sdpMid !== 'string' || c.sdpMid.length > 64) return undefined
    out.sdpMid = c.sdpMid
  }
  if (c.sdpMLineIndex !== undefined && c.sdpMLineIndex !== null) {
    if (!Number.isInteger(c.sdpMLineIndex) || c.sdpMLineIndex < 0 || c.sdpMLineIndex > 64) return undefined
    out.sdpMLineIndex = c.sdpMLineIndex
  }
  if (out.sdpMid === undefined && out.sdpMLineIndex === undefined) out.sdpMLineIndex = 0
  return out
}

export class MeshTransport extends Reconnecting {
  /**
   * @param {object} o
   * @param {string} o.url the /signal WebSocket URL, token included (see signalUrl)
   * @param {string} o.topic the room id
   * @param {RTCIceServer[]} [o.iceServers] ICE servers (default: fetched from o.iceUrl, else none)
   * @param {string} [o.iceUrl] the node's GET /api/ice
   * @param {any} [o.WebSocket] @param {any} [o.RTCPeerConnection] implementations (default: globals)
   * @param {number} [o.maxPeers] most peers at once (default 8)
   * @param {number} [o.maxBufferedBytes] a channel with more queued is skipped (default 1 MiB)
   * @param {number} [o.connectTimeoutMs] a connection not open by then is dropped (default 20 s)
   * @param {number} [o.minDelayMs] @param {number} [o.maxDelayMs] signaling reconnect backoff
   * @param {any} [o.window] for the browser's offline/online events (default: window)
   */
  constructor (o) {
    super()
    this.url = o.url
    this.topic = o.topic
    this.peerId = hex(16)
    this.WebSocket = o.WebSocket ?? globalThis.WebSocket
    this.RTCPeerConnection = o.RTCPeerConnection ?? globalThis.RTCPeerConnection
    this.iceServers = o.iceServers ?? null
    this.iceUrl = o.iceUrl ?? null
    this.maxPeers = o.maxPeers ?? 8
    this.maxBufferedBytes = o.maxBufferedBytes ?? 1 << 20
    this.connectTimeoutMs = o.connectTimeoutMs ?? 20_000
    this.minDelayMs = o.minDelayMs ?? 500
    this.maxDelayMs = o.maxDelayMs ?? 15_000
    this.pingMs = o.pingMs ?? 20_000
    this.announceMs = o.announceMs ?? 30_000
    this.status = 'closed'
    this.attempt = 0
    this.ws = null
    this.timer = null
    this.pinger = null
    this.announceTimer = null
    this.lastAnnounce = 0
    this.lastHeard = 0
    this.stopped = true
    this.forcedOffline = false
    /** peer id → {id, pc, dc, conn, initiator, open, remoteSet, candidates, timer, lossy} */
    this.links = new Map()
    /** `${peer}/${conn}` → ICE candidates that came before their connection was accepted */
    this.early = new Map()
    this.stats = { malformed: 0, ignored: 0, dropped: 0, sent: 0, received: 0, opened: 0, closed: 0, signalErrors: 0 }
    const win = o.window ?? (typeof window !== 'undefined' ? window : null)
    if (win && win.addEventListener) {
      this._onOffline = () => this._goOffline('browser offline')
      this._onOnline = () => { if (this.status === 'offline' && !this.forcedOffline && !this.stopped) this._retryNow() }
      win.addEventListener('offline', this._onOffline)
      win.addEventListener('online', this._onOnline)
      this._win = win
    }
  }

  /** Peer ids with an open data channel. */
  peers () { return [...this.links.values()].filter((p) => p.open).map((p) => p.id) }
  get peerCount () { return this.peers().length }

  _setStatus (status, extra = {}) {
    this.status = status
    this.dispatchEvent(new CustomEvent('status', { detail: { status, attempt: this.attempt, peers: this.peerCount, ...extra } }))
  }

  _emit (type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })) }

  async _ice () {
    if (this.iceServers) return this.iceServers
    this.icePromise ??= (async () => {
      if (!this.iceUrl || typeof fetch !== 'function') return []
      const ctl = typeof AbortController === 'function' ? new AbortController() : null
      const t = setTimeout(() => ctl?.abort(), 5000)
      try {
        const res = await fetch(this.iceUrl, { signal: ctl?.signal })
        const body = await res.json()
        const list = Array.isArray(body?.iceServers) ? body.iceServers : []
        return list.filter((s) => s && (typeof s.urls === 'string' || Array.isArray(s.urls)))
      } catch {
        return null // no list this time: host candidates only, asked again on the next connect
      } finally {
        clearTimeout(t)
      }
    })()
    const list = await this.icePromise
    if (list) this.iceServers = list
    else this.icePromise = null
    return list ?? []
  }

  connect () {
    this.stopped = false
    if (typeof this.RTCPeerConnection !== 'function') {
      if (this.status !== 'unsupported') this._setStatus('unsupported', { reason: 'no RTCPeerConnection' })
      return
    }
    if (this.ws || this.status === 'denied' || this.status === 'connecting') return
    if (this.forcedOffline || (this._win && this._win.navigator && this._win.navigator.onLine === false)) {
      this._setStatus('offline', { reason: 'browser offline' })
      return
    }
    clearTimeout(this.timer)
    this._setStatus('connecting')
    this._ice().then(() => this._open(), () => this._open())
  }

  _open () {
    if (this.stopped || this.ws || this.forcedOffline || this.status !== 'connecting') return
    let ws
    try {
      ws = new this.WebSocket(this.url)
    } catch (e) {
      this._scheduleRetry(String(e))
      return
    }
    this.ws = ws
    ws.onopen = () => {
      if (this.ws !== ws) return
      this.attempt = 0
      this.lastHeard = Date.now()
      this._signal({ type: 'subscribe', topics: [this.topic] })
      this._setStatus('online')
      this._announce()
      clearInterval(this.pinger)
      this.pinger = setInterval(() => this._keepAlive(ws), this.pingMs)
    }
    ws.onmessage = (ev) => { if (this.ws === ws) this._onSignal(ev.data) }
    ws.onclose = (ev) => {
      if (this.ws !== ws) return
      this.ws = null
      clearInterval(this.pinger)
      if (ev.code === DENIED) this._setStatus('denied', { reason: ev.reason || 'permission denied' })
      else if (!this.stopped) this._scheduleRetry(ev.reason || `closed (${ev.code})`)
    }
    ws.onerror = () => {} // onclose follows
  }

  _keepAlive (ws) {
    if (this.ws !== ws) return
    if (Date.now() - this.lastHeard > this.pingMs * 2.5) {
      // No pong: the socket is dead without knowing it.
      this.ws = null
      clearInterval(this.pinger)
      try { ws.close(1000, 'no pong') } catch {}
      this._scheduleRetry('no pong')
      return
    }
    this._signal({ type: 'ping' })
    for (const p of [...this.links.values()]) if (this._dead(p)) this._drop(p, 'channel closed', true)
    if (Date.now() - this.lastAnnounce >= this.announceMs && this.links.size < this.maxPeers) this._announce()
  }

  _closeSignal (reason) {
    const ws = this.ws
    this.ws = null
    clearTimeout(this.timer)
    clearInterval(this.pinger)
    clearTimeout(this.announceTimer)
    this.announceTimer = null
    if (ws) try { ws.close(1000, reason) } catch {}
  }

  _goOffline (reason) {
    this._closeSignal('offline')
    for (const p of [...this.links.values()]) this._drop(p, reason, false)
    if (!['denied', 'closed', 'unsupported'].includes(this.status)) this._setStatus('offline', { reason })
  }

  /** Drops every connection and stops signaling until called with false. */
  setOffline (offline) {
    this.forcedOffline = offline
    if (offline) this._goOffline('offline (forced)')
    else if (!this.stopped) this._retryNow()
  }

  /** Drops every connection and signals afresh: a host removed a member, whose page may
   *  hold one of our channels (peer ids are not member keys, so every channel goes). The
   *  node refuses the removed member's link on /signal: it does not come back. */
  rejoin (reason) {
    if (this.stopped || this.forcedOffline || ['denied', 'unsupported'].includes(this.status)) return
    this._goOffline(reason)
    this._retryNow()
  }

  close () {
    if (this.ws && this.ws.readyState === 1) this._publish({ type: 'arena-bye' })
    this.stopped = true
    this._closeSignal('bye')
    for (const p of [...this.links.values()]) this._drop(p, 'closed', false)
    if (this._win) {
      this._win.removeEventListener('offline', this._onOffline)
      this._win.removeEventListener('online', this._onOnline)
    }
    if (this.status !== 'denied' && this.status !== 'unsupported') this._setStatus('closed')
  }

  // ---- sending frames ---------------------------------------------------------------------

  /** Sends a frame to one peer; false when its channel is not open or is backed up. */
  sendTo (peer, bytes) {
    const p = this.links.get(peer)
    if (!p || !p.open || !p.dc) return false
    if (p.dc.readyState !== 'open') {
      // Closed without an event (our connection was closed under us): drop it soon.
      queueMicrotask(() => { if (this._dead(p)) this._drop(p, 'channel closed', true) })
      return false
    }
    if (p.dc.bufferedAmount > this.maxBufferedBytes) {
      // The peer catches up when the channel drains ('open' with resync).
      p.lossy = true
      this.stats.dropped++
      return false
    }
    try {
      p.dc.send(bytes)
    } catch {
      // Over the channel's message size, or it just closed: the catch-up recovers.
      p.lossy = true
      this.stats.dropped++
      return false
    }
    this.stats.sent++
    return true
  }

  /** Sends a frame to every open channel; returns how many took it. */
  broadcast (bytes) {
    let n = 0
    for (const p of this.links.values()) if (p.open && this.sendTo(p.id, bytes)) n++
    return n
  }

  // ---- signaling --------------------------------------------------------------------------

  _signal (msg) {
    const ws = this.ws
    if (!ws || ws.readyState !== 1) return false
    try { ws.send(JSON.stringify(msg)) } catch { return false }
    return true
  }

  _publish (data) {
    return this._signal({ type: 'publish', topic: this.topic, data: { ...data, from: this.peerId } })
  }

  _announce (to) {
    if (to === undefined) this.lastAnnounce = Date.now()
    const peers = this.peers()
    this._publish(to === undefined ? { type: 'arena-announce', peers } : { type: 'arena-announce', to, peers })
  }

  /** A broadcast announce soon (peers that lost us reconnect); at most one per 2 s. */
  _announceSoon () {
    if (this.announceTimer || this.stopped) return
    const wait = Math.max(0, 2000 - (Date.now() - this.lastAnnounce))
    this.announceTimer = setTimeout(() => { this.announceTimer = null; this._announce() }, wait)
  }

  _onSignal (text) {
    this.lastHeard = Date.now()
    let msg
    try {
      if (typeof text !== 'string') throw new Error('binary')
      msg = JSON.parse(text)
    } catch {
      this.stats.malformed++
      return
    }
    if (!msg || typeof msg !== 'object') { this.stats.malformed++; return }
    switch (msg.type) {
      case 'pong': return
      case 'error':
        this.stats.signalErrors++
        if (msg.topic === this.topic) {
          // The node refused our token for this room: no point retrying.
          this._closeSignal('denied')
          this._setStatus('denied', { reason: typeof msg.reason === 'string' ? msg.reason : 'refused' })
        }
        return
      case 'publish':
        if (msg.topic !== this.topic) { this.stats.ignored++; return }
        try {
          this._onData(msg.data)
        } catch {
          this.stats.malformed++
        }
        return
      default:
        this.stats.malformed++
    }
  }

  _onData (d) {
    if (!d || typeof d !== 'object' || typeof d.type !== 'string') { this.stats.malformed++; return }
    if (!d.type.startsWith('arena-')) { this.stats.ignored++; return } // y-webrtc peers and others
    if (typeof d.from !== 'string' || !ID.test(d.from)) { this.stats.malformed++; return }
    if (d.from === this.peerId) return // our own publish, echoed
    if (d.to !== undefined && d.to !== this.peerId) {
      if (typeof d.to !== 'string' || !ID.test(d.to)) this.stats.malformed++
      else this.stats.ignored++
      return
    }
    const from = d.from
    switch (d.type) {
      case 'arena-announce': {
        const peers = Array.isArray(d.peers) && d.peers.length <= 64 && d.peers.every((x) => typeof x === 'string') ? d.peers : null
        return this._onAnnounce(from, d.to !== undefined, peers)
      }
      case 'arena-bye': {
        const p = this.links.get(from)
        if (p) this._drop(p, 'peer left', false)
        return
      }
      case 'arena-offer':
      case 'arena-answer':
        if (d.to === undefined || typeof d.conn !== 'string' || !CONN.test(d.conn) ||
            typeof d.sdp !== 'string' || d.sdp.length > MAX_SDP || !d.sdp.startsWith('v=0')) {
          this.stats.malformed++
          return
        }
        return d.type === 'arena-offer' ? this._onOffer(from, d.conn, d.sdp) : this._onAnswer(from, d.conn, d.sdp)
      case 'arena-ice': {
        const c = d.to === undefined || typeof d.conn !== 'string' || !CONN.test(d.conn) ? undefined : cleanCandidate(d.candidate)
        if (c === undefined) { this.stats.malformed++; return }
        return this._onCandidate(from, d.conn, c)
      }
      default:
        this.stats.ignored++
    }
  }

  _dead (p) {
    const s = p.pc.connectionState
    return s === 'failed' || s === 'closed' || (p.open && p.dc.readyState !== 'open')
  }

  _onAnnounce (from, directed, theirPeers) {
    const p = this.links.get(from)
    if (p) {
      if (this._dead(p)) {
        this._drop(p, 'channel closed', false)
      } else if (p.open && theirPeers && !theirPeers.includes(this.peerId) && Date.now() - p.openedAt > 5000) {
        // It lost its side of our channel (and will not use ours): start again.
        this._drop(p, 'the peer dropped us', false)
      } else {
        return // connected or connecting already
      }
    }
    if (this.peerId < from) {
      this._connectTo(from)
    } else if (!directed) {
      // The lower id offers: tell the newcomer we exist.
      this._announce(from)
    }
  }

  // ---- peer connections -------------------------------------------------------------------

  /** A new connection attempt; `register` puts it in `links` (else see _register). */
  _newLink (id, initiator, conn, register = true) {
    let pc
    try {
      pc = new this.RTCPeerConnection({ iceServers: this.iceServers ?? [] })
    } catch {
      this.stats.signalErrors++
      return null
    }
    const p = { id, pc, dc: null, conn, initiator, open: false, remoteSet: false, candidates: [], timer: null, lossy: false, graceTimer: null }
    if (register) this._register(p)
    pc.onicecandidate = (e) => {
      if (this.links.get(id) !== p) return
      this._publish({ type: 'arena-ice', to: id, conn, candidate: e.candidate ? e.candidate.toJSON() : null })
    }
    pc.onconnectionstatechange = () => {
      if (this.links.get(id) !== p) return
      const s = pc.connectionState
      if (s === 'failed' || s === 'closed') this._drop(p, `connection ${s}`, true)
      else if (s === 'disconnected') {
        // ICE may come back by itself; give it a few seconds.
        clearTimeout(p.graceTimer)
        p.graceTimer = setTimeout(() => { if (pc.connectionState === 'disconnected') this._drop(p, 'connection lost', true) }, 5000)
      }
    }
    // Both sides create the same pre-negotiated channel: no ondatachannel to trust.
    const dc = pc.createDataChannel('arena', { negotiated: true, id: 0, ordered: true })
    dc.binaryType = 'arraybuffer'
    dc.bufferedAmountLowThreshold = Math.floor(this.maxBufferedBytes / 4)
    p.dc = dc
    dc.onopen = () => {
      if (this.links.get(id) !== p) return
      clearTimeout(p.timer)
      p.open = true
      p.openedAt = Date.now()
      this.stats.opened++
      this._emit('open', { peer: id, resync: false })
      this._emit('peers', { peers: this.peerCount })
    }
    dc.onmessage = (ev) => {
      if (this.links.get(id) !== p) return
      if (!(ev.data instanceof ArrayBuffer)) { this.stats.malformed++; return }
      this.stats.received++
      this._emit('message', { peer: id, data: new Uint8Array(ev.data) })
    }
    dc.onbufferedamountlow = () => {
      if (this.links.get(id) !== p || !p.lossy) return
      p.lossy = false
      this._emit('open', { peer: id, resync: true })
    }
    dc.onclose = () => { if (this.links.get(id) === p) this._drop(p, 'channel closed', true) }
    return p
  }

  _register (p) {
    this.links.set(p.id, p)
    p.timer = setTimeout(() => { if (!p.open) this._drop(p, 'connect timeout', true) }, this.connectTimeoutMs)
    const key = `${p.id}/${p.conn}`
    const early = this.early.get(key)
    if (early) {
      this.early.delete(key)
      p.candidates.push(...early)
    }
  }

  _full (except) {
    if (this.links.size - (except && this.links.has(except) ? 1 : 0) < this.maxPeers) return false
    this.stats.ignored++
    return true
  }

  async _connectTo (id) {
    if (this._full()) return
    const p = this._newLink(id, true, hex(8))
    if (!p) return
    try {
      const offer = await p.pc.createOffer()
      if (this.links.get(id) !== p) return
      await p.pc.setLocalDescription(offer)
      if (this.links.get(id) !== p) return
      this._publish({ type: 'arena-offer', to: id, conn: p.conn, sdp: p.pc.localDescription.sdp })
    } catch (e) {
      this._drop(p, `offer failed: ${e?.message ?? e}`, false)
    }
  }

  async _onOffer (from, conn, sdp) {
    // Only the lower id offers (no glare); an offer from a higher id is forged or confused.
    if (!(from < this.peerId)) { this.stats.malformed++; return }
    const old = this.links.get(from)
    if (old && old.conn === conn) { this.stats.ignored++; return } // a duplicate
    if (this._full(from)) return
    // Try the offer on a fresh connection first, so a bad one leaves a working link alone.
    const p = this._newLink(from, false, conn, false)
    if (!p) return
    try {
      await p.pc.setRemoteDescription({ type: 'offer', sdp })
    } catch {
      this.stats.malformed++
      this._discard(p)
      return
    }
    const cur = this.links.get(from)
    if (this.stopped || (cur && cur.conn === conn) || this._full(from)) { this._discard(p); return }
    // A new attempt from the offerer means it dropped its side of the old one.
    if (cur) this._drop(cur, 'replaced by a new offer', false)
    this._register(p)
    this._remoteSet(p)
    try {
      const answer = await p.pc.createAnswer()
      if (this.links.get(from) !== p) return
      await p.pc.setLocalDescription(answer)
      if (this.links.get(from) !== p) return
      this._publish({ type: 'arena-answer', to: from, conn, sdp: p.pc.localDescription.sdp })
    } catch {
      this._drop(p, 'answer failed', true)
    }
  }

  async _onAnswer (from, conn, sdp) {
    const p = this.links.get(from)
    if (!p || !p.initiator || p.conn !== conn || p.remoteSet || p.pc.signalingState !== 'have-local-offer') {
      this.stats.ignored++
      return
    }
    try {
      await p.pc.setRemoteDescription({ type: 'answer', sdp })
      if (this.links.get(from) === p) this._remoteSet(p)
    } catch {
      this.stats.malformed++
      // Our offer is spent; a fresh attempt comes with the next announce.
      this._drop(p, 'bad answer', true)
    }
  }

  _remoteSet (p) {
    p.remoteSet = true
    const queued = p.candidates
    p.candidates = []
    for (const c of queued) this._addCandidate(p, c)
  }

  _onCandidate (from, conn, c) {
    const p = this.links.get(from)
    if (!p || p.conn !== conn) {
      // Early (the offer is still being checked) or stale: keep a few, briefly.
      const key = `${from}/${conn}`
      const q = this.early.get(key) ?? []
      if (q.length >= MAX_QUEUED_CANDIDATES || (!q.length && this.early.size >= 16)) { this.stats.ignored++; return }
      if (!q.length) {
        this.early.set(key, q)
        setTimeout(() => this.early.delete(key), 10_000)
      }
      q.push(c)
      return
    }
    if (!p.remoteSet) {
      if (p.candidates.length < MAX_QUEUED_CANDIDATES) p.candidates.push(c)
      else this.stats.ignored++
      return
    }
    this._addCandidate(p, c)
  }

  _addCandidate (p, c) {
    if (c === null) return // end of candidates
    p.pc.addIceCandidate(c).catch(() => { this.stats.malformed++ })
  }

  _drop (p, reason, announce) {
    if (this.links.get(p.id) !== p) return
    this.links.delete(p.id)
    clearTimeout(p.timer)
    clearTimeout(p.graceTimer)
    const wasOpen = p.open
    this._discard(p)
    if (wasOpen) {
      this.stats.closed++
      this._emit('close', { peer: p.id, reason })
      this._emit('peers', { peers: this.peerCount })
    }
    if (announce) this._announceSoon()
  }

  /** Closes a connection attempt's channel and connection (no events). */
  _discard (p) {
    clearTimeout(p.timer)
    clearTimeout(p.graceTimer)
    p.open = false
    if (p.dc) {
      p.dc.onopen = p.dc.onmessage = p.dc.onclose = p.dc.onbufferedamountlow = null
      try { p.dc.close() } catch {}
    }
    p.pc.onicecandidate = p.pc.onconnectionstatechange = null
    try { p.pc.close() } catch {}
  }
}
