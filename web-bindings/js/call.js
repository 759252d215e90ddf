// Call: the room's 1-on-1 audio/video call (host and candidate; observers and the recorder
// watch receive-only), one RTCPeerConnection per remote peer, signaled over the node's
// /signal WebSocket on the room topic. The protocol (docs/call.md):
//   {type: 'arena-call-hello',  from, to?, role, name, media, restart?}  I am in the call (to:
//                                a reply to someone's hello; restart: please offer again)
//   {type: 'arena-call-offer',  from, to, sdp}   only a media peer offers: between two media
//                                peers the smaller `from`; to a receive-only peer always
//   {type: 'arena-call-answer', from, to, sdp}
//   {type: 'arena-call-ice',    from, to, candidate: {candidate, sdpMid, sdpMLineIndex} | null}
//   {type: 'arena-call-bye',    from}            I left the call
// The call has a signaling socket of its own (the node binds one `from` per connection and
// topic: the mesh's socket already publishes as the mesh's id). Anything malformed, not for
// us, or against the offer rules is counted in `stats` and ignored.
//
// Events (EventTarget):
//   'status' {status, reason}   the signaling socket: connecting, online, offline, denied, closed
//   'local'  {stream}           the local stream changed (camera on/off, device, screen)
//   'peer'   {peer, role, name, media, state}  a peer joined or its connection state changed
//   'track'  {peer, role, name, kind, track, stream}  a remote track arrived
//   'left'   {peer, reason}     a peer left (its tracks with it)
//   'error'  {code, message, peer?}  permission / no-device / device-busy / screen / signal /
//                               negotiation: what went wrong, in words for the user

import { Reconnecting } from './transport.js'
import { signalUrl } from './mesh.js'
import { openLocalMedia, listDevices, mediaError } from './call-media.js'

const ID = /^[0-9a-f]{32}$/
const MAX_SDP = 48 * 1024
const MAX_CANDIDATE = 2048
const MAX_QUEUED = 64
const DENIED = 4403
const ROLES = ['host', 'candidate', 'observer', 'recorder']
const KINDS = ['audio', 'video']

const hex = (n) => Array.from(globalThis.crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, '0')).join('')
const fingerprint = (sdp) => /a=fingerprint:\S+ (\S+)/.exec(sdp ?? '')?.[1] ?? null

function cleanCandidate (c) {
  if (c === null) return null
  if (!c || typeof c !== 'object' || typeof c.candidate !== 'string' || c.candidate.length > MAX_CANDIDATE) return undefined
  const out = { candidate: c.candidate }
  if (typeof c.sdpMid === 'string' && c.sdpMid.length <= 64) out.sdpMid = c.sdpMid
  if (Number.isInteger(c.sdpMLineIndex) && c.sdpMLineIndex >= 0 && c.sdpMLineIndex <= 64) out.sdpMLineIndex = c.sdpMLineIndex
  if (out.sdpMid === undefined && out.sdpMLineIndex === undefined) return undefined
  return out
}

export class Call extends Reconnecting {
  /**
   * @param {object} o
   * @param {string} o.server the node's base URL (http(s) or ws(s))
   * @param {string} o.room the room id (the signaling topic)
   * @param {string} o.token the member's invite token
   * @param {string} o.role 'host' | 'candidate' | 'observer'
   * @param {string} [o.name]
   * @param {boolean} [o.media] send our camera and microphone (default: not for observers;
   *   an observer never does)
   * @param {RTCIceServer[]} [o.iceServers] default: GET /api/ice?room=&token=
   * @param {number} [o.restartAfterMs] a connection disconnected this long gets an ICE restart (default 3000)
   * @param {number} [o.dropAfterMs] one not connected again this long is dropped (default 45 000)
   */
  constructor (o) {
    super()
    const base = String(o.server).replace(/^ws/, 'http').replace(/\/+$/, '')
    this.url = o.url ?? signalUrl(o.server, o.token)
    this.iceUrl = o.iceUrl ?? `${base}/api/ice?room=${encodeURIComponent(o.room)}&token=${encodeURIComponent(o.token)}`
    this.topic = o.room
    this.role = ROLES.includes(o.role) ? o.role : 'observer'
    this.name = String(o.name ?? '').slice(0, 64)
    this.media = this.role !== 'observer' && this.role !== 'recorder' && o.media !== false
    this.peerId = hex(16)
    this.WebSocket = o.WebSocket ?? globalThis.WebSocket
    this.RTCPeerConnection = o.RTCPeerConnection ?? globalThis.RTCPeerConnection
    this.mediaDevices = o.mediaDevices ?? globalThis.navigator?.mediaDevices
    this.iceServers = o.iceServers ?? null
    this.maxPeers = o.maxPeers ?? 8
    this.restartAfterMs = o.restartAfterMs ?? 3000
    this.dropAfterMs = o.dropAfterMs ?? 45_000
    this.connectGraceMs = o.connectGraceMs ?? 10_000
    this.minDelayMs = o.minDelayMs ?? 500
    this.maxDelayMs = o.maxDelayMs ?? 15_000
    this.pingMs = o.pingMs ?? 20_000
    this.status = 'closed'
    this.attempt = 0
    this.ws = null
    this.timer = null
    this.pinger = null
    this.stopped = true
    this.forcedOffline = false
    /** our camera and microphone (null: receive-only) */
    this.localStream = null
    this.cameraTrack = null
    this.screenTrack = null
    this.muted = false
    this.cameraOff = false
    /** the last local media problem, {code, message}, or null */
    this.mediaError = null
    /** peer id → {id, role, name, media, pc, stream, remoteSet, candidates, badSince, timer, offering, again} */
    this.peers = new Map()
    this.stats = { malformed: 0, ignored: 0, refused: 0, offers: 0, answers: 0, restarts: 0, signalErrors: 0 }
    this._win = o.window ?? (typeof window !== 'undefined' ? window : null)
    // A network change: signal again and restart ICE on every connection.
    this._onOnline = () => {
      if (this.stopped) return
      if (this.status === 'offline') this._retryNow()
      this.restart()
    }
  }

  _emit (type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })) }
  _setStatus (status, extra = {}) {
    this.status = status
    this._emit('status', { status, attempt: this.attempt, ...extra })
  }

  _error (code, message, extra = {}) { this._emit('error', { code, message, ...extra }) }

  /** Joins the call: the camera and microphone first (a media peer), then signaling. */
  async start () {
    if (!this.stopped) return
    this.stopped = false
    this._win?.addEventListener?.('online', this._onOnline)
    if (typeof this.RTCPeerConnection !== 'function') {
      this._setStatus('unsupported', { reason: 'no RTCPeerConnection' })
      this._error('unsupported', 'This browser cannot make WebRTC calls.')
      return
    }
    if (this.media) await this._openMedia()
    this.connect()
  }

  async _openMedia (ids) {
    const { stream, error } = await openLocalMedia(this.mediaDevices, ids)
    this.mediaError = error
    if (error) this._error(error.code, error.message)
    if (!stream) return
    this.localStream = stream
    this.cameraTrack = stream.getVideoTracks()[0] ?? null
    for (const t of stream.getAudioTracks()) t.enabled = !this.muted
    if (this.cameraTrack) this.cameraTrack.enabled = !this.cameraOff
    this._emit('local', { stream })
  }

  /** The track we send for `kind` now (null: nothing). */
  _sending (kind) {
    if (kind === 'audio') return this.muted ? null : this.localStream?.getAudioTracks()[0] ?? null
    if (this.screenTrack) return this.screenTrack
    return this.cameraOff ? null : this.cameraTrack
  }

  async _replace (kind) {
    const track = this._sending(kind)
    await Promise.all([...this.peers.values()].map(async (p) => {
      const t = p.pc && p.tx?.[kind]
      if (t) await t.sender.replaceTrack(track).catch(() => {})
    }))
  }

  /** Mutes / unmutes the microphone: nothing is sent while muted. */
  async setMuted (muted) {
    this.muted = !!muted
    for (const t of this.localStream?.getAudioTracks() ?? []) t.enabled = !this.muted
    await this._replace('audio')
  }

  /** Turns the camera off / on: nothing is sent while off (the others' tile freezes, then says so). */
  async setCamera (on) {
    this.cameraOff = !on
    if (this.cameraTrack) this.cameraTrack.enabled = !this.cameraOff
    await this._replace('video')
  }

  /** The microphones and cameras, {audioinput, videoinput} (labels once permission is given). */
  devices () { return listDevices(this.mediaDevices) }

  /** Switches the microphone ('audioinput') or camera ('videoinput') to another device. */
  async setDevice (kind, deviceId) {
    const audio = kind === 'audioinput'
    const want = audio ? { audio: { deviceId: { exact: deviceId } } } : { video: { deviceId: { exact: deviceId }, width: { ideal: 640 }, height: { ideal: 360 } } }
    let track
    try {
      const s = await this.mediaDevices.getUserMedia(want)
      track = (audio ? s.getAudioTracks() : s.getVideoTracks())[0]
    } catch (e) {
      const err = mediaError(e, audio ? 'microphone' : 'camera')
      this._error(err.code, err.message)
      return false
    }
    this.localStream ??= new MediaStream()
    const old = audio ? this.localStream.getAudioTracks()[0] : this.cameraTrack
    if (old) { this.localStream.removeTrack(old); old.stop() }
    this.localStream.addTrack(track)
    if (audio) track.enabled = !this.muted
    else { this.cameraTrack = track; track.enabled = !this.cameraOff }
    this.mediaError = null
    await this._replace(audio ? 'audio' : 'video')
    this._emit('local', { stream: this.localStream })
    return true
  }

  /** Shares the screen instead of the camera until stopShare() or the browser's "Stop sharing". */
  async shareScreen () {
    if (!this.media || this.screenTrack) return false
    let track
    try {
      const s = await this.mediaDevices.getDisplayMedia({ video: true, audio: false })
      track = s.getVideoTracks()[0]
    } catch (e) {
      if (e?.name !== 'NotAllowedError') this._error('screen', mediaError(e, 'screen').message)
      return false
    }
    if (!track) return false
    this.screenTrack = track
    track.addEventListener('ended', () => { if (this.screenTrack === track) this.stopShare() })
    await this._replace('video')
    this._emit('local', { stream: this.localStream, screen: track })
    return true
  }

  async stopShare () {
    const t = this.screenTrack
    if (!t) return
    this.screenTrack = null
    t.stop()
    await this._replace('video')
    this._emit('local', { stream: this.localStream, screen: null })
  }

  // ---- signaling socket ---------------------------------------------------------------------

  async _ice () {
    if (this.iceServers) return this.iceServers
    if (!this.iceUrl || typeof fetch !== 'function') return []
    const ctl = new AbortController()
    const t = setTimeout(() => ctl.abort(), 5000)
    try {
      const body = await (await fetch(this.iceUrl, { signal: ctl.signal })).json()
      const list = Array.isArray(body?.iceServers) ? body.iceServers.filter((s) => s && (typeof s.urls === 'string' || Array.isArray(s.urls))) : []
      this.iceServers = list
      return list
    } catch {
      return [] // host candidates only; asked again on the next connection
    } finally {
      clearTimeout(t)
    }
  }

  connect () {
    this.stopped = false
    if (this.ws || ['denied', 'connecting', 'unsupported'].includes(this.status) || this.forcedOffline) return
    clearTimeout(this.timer)
    this._setStatus('connecting')
    this._ice().finally(() => this._open())
  }

  _open () {
    if (this.stopped || this.ws || this.status !== 'connecting') return
    let ws
    try { ws = new this.WebSocket(this.url) } catch (e) { return this._scheduleRetry(String(e)) }
    this.ws = ws
    ws.onopen = () => {
      if (this.ws !== ws) return
      this.attempt = 0
      this._signal({ type: 'subscribe', topics: [this.topic] })
      this._setStatus('online')
      this._hello()
      // Peers that went bad while we were away: start them again.
      for (const p of this.peers.values()) if (this._bad(p)) this._restartPeer(p)
      clearInterval(this.pinger)
      this.pinger = setInterval(() => this._tick(), Math.min(this.pingMs, 1000))
    }
    ws.onmessage = (ev) => { if (this.ws === ws) this._onSignal(ev.data) }
    ws.onclose = (ev) => {
      if (this.ws !== ws) return
      this.ws = null
      clearInterval(this.pinger)
      if (ev.code === DENIED) {
        this._setStatus('denied', { reason: ev.reason || 'permission denied' })
        this._error('signal', `The node closed the call's signaling: ${ev.reason || 'permission denied'}.`)
      } else if (!this.stopped) this._scheduleRetry(ev.reason || `closed (${ev.code})`)
    }
    ws.onerror = () => {}
  }

  /** Once a second: keep-alive pings, and connections that stay bad get restarted or dropped. */
  _tick () {
    const now = Date.now()
    if (now - (this.lastPing ?? 0) >= this.pingMs) { this.lastPing = now; this._signal({ type: 'ping' }) }
    for (const p of [...this.peers.values()]) {
      if (!p.badSince && p.pc?.connectionState === 'closed') p.badSince = now // closed under us
      if (!p.badSince) continue
      if (now - p.badSince >= this.dropAfterMs) this._drop(p, 'connection lost')
      else if (now - (p.restartedAt ?? 0) >= Math.max(this.restartAfterMs, 5000) && now - p.badSince >= this.restartAfterMs) this._restartPeer(p)
    }
  }

  _signal (msg) {
    const ws = this.ws
    if (!ws || ws.readyState !== 1) return false
    try { ws.send(JSON.stringify(msg)) } catch { return false }
    return true
  }

  _publish (data) {
    return this._signal({ type: 'publish', topic: this.topic, data: { ...data, from: this.peerId } })
  }

  _hello (to, restart = false) {
    const d = { type: 'arena-call-hello', role: this.role, name: this.name, media: this.media }
    if (to) d.to = to
    if (restart) d.restart = true
    this._publish(d)
  }

  _onSignal (text) {
    let msg
    try { msg = JSON.parse(text) } catch { this.stats.malformed++; return }
    if (!msg || typeof msg !== 'object') { this.stats.malformed++; return }
    if (msg.type === 'pong') return
    if (msg.type === 'error') {
      this.stats.signalErrors++
      const reason = typeof msg.reason === 'string' ? msg.reason : 'refused'
      if (msg.topic === this.topic) {
        // The node refused our token for the room (or our role may not do that): say so.
        this._error('signal', `The node refused the call's signaling: ${reason}.`)
        if (!this.peers.size) { this._close('denied'); this._setStatus('denied', { reason }) }
      } else {
        this._error('signal', `The node refused a call message: ${reason}.`)
      }
      return
    }
    if (msg.type !== 'publish' || msg.topic !== this.topic) { this.stats.ignored++; return }
    try { this._onData(msg.data) } catch { this.stats.malformed++ }
  }

  _onData (d) {
    if (!d || typeof d !== 'object' || typeof d.type !== 'string') { this.stats.malformed++; return }
    if (!d.type.startsWith('arena-call-')) { this.stats.ignored++; return } // the mesh's, y-webrtc's
    if (typeof d.from !== 'string' || !ID.test(d.from)) { this.stats.malformed++; return }
    if (d.from === this.peerId) return // our own, echoed
    if (d.to !== undefined && d.to !== this.peerId) { this.stats.ignored++; return }
    const directed = d.to !== undefined
    switch (d.type) {
      case 'arena-call-hello': return this._onHello(d, directed)
      case 'arena-call-bye': {
        const p = this.peers.get(d.from)
        if (p) this._drop(p, 'left the call')
        return
      }
      case 'arena-call-offer':
      case 'arena-call-answer':
        if (!directed || typeof d.sdp !== 'string' || d.sdp.length > MAX_SDP || !d.sdp.startsWith('v=0')) { this.stats.malformed++; return }
        return this._serial(d.from, () => d.type === 'arena-call-offer' ? this._onOffer(d.from, d.sdp) : this._onAnswer(d.from, d.sdp))
      case 'arena-call-ice': {
        const c = directed ? cleanCandidate(d.candidate) : undefined
        if (c === undefined) { this.stats.malformed++; return }
        return this._serial(d.from, () => this._onCandidate(d.from, c))
      }
      default: this.stats.ignored++
    }
  }

  /** Runs a peer's offers, answers and candidates one after the other, in the order they
   *  came (a restart's candidates only make sense after its offer). */
  _serial (from, fn) {
    const p = this.peers.get(from)
    if (!p) { this.stats.ignored++; return }
    p.queue = p.queue.then(fn).catch(() => { this.stats.malformed++ })
    return p.queue
  }

  /** Whether the connection with `p` is down (past its grace, for a new one). */
  _bad (p) { return p.badSince > 0 && p.badSince <= Date.now() }

  /** Whether we make the offers to `p` (the protocol's rule). */
  _offerer (p) { return this.media && (!p.media || this.peerId < p.id) }

  _onHello (d, directed) {
    const role = ROLES.includes(d.role) ? d.role : null
    if (!role) { this.stats.malformed++; return }
    const name = typeof d.name === 'string' ? d.name.slice(0, 64) : ''
    // An observer (or the recorder) never sends media, whatever it says.
    const media = d.media === true && role !== 'observer' && role !== 'recorder'
    let p = this.peers.get(d.from)
    if (!directed) this._hello(d.from) // tell it we are here (it may have lost us)
    if (!p) {
      if (this.peers.size >= this.maxPeers) { this.stats.ignored++; return }
      p = { id: d.from, role, name, media, pc: null, tx: null, stream: null, remoteSet: false, candidates: [], badSince: 0, restartedAt: 0, offering: false, again: false, queue: Promise.resolve() }
      // A connection is expected: one not up after the grace gets restarted, later dropped.
      if (this.media || media) p.badSince = Date.now() + this.connectGraceMs
      this.peers.set(p.id, p)
      this._peerEvent(p, 'new')
      if (this._offerer(p)) this._newConnection(p)
      return
    }
    p.name = name
    if (!this._offerer(p)) return
    if (!p.pc || p.pc.connectionState === 'closed') this._newConnection(p)
    else if (d.restart === true || this._bad(p)) this._restartPeer(p)
  }

  _peerEvent (p, state) {
    p.state = state
    this._emit('peer', { peer: p.id, role: p.role, name: p.name, media: p.media, state })
  }

  // ---- peer connections ---------------------------------------------------------------------

  /** A fresh RTCPeerConnection for `p` (its old one, if any, closed). */
  _makePc (p) {
    if (p.pc) this._closePc(p)
    const pc = new this.RTCPeerConnection({ iceServers: this.iceServers ?? [] })
    p.pc = pc
    p.tx = {}
    p.remoteSet = false
    p.candidates = []
    p.offering = false
    p.again = false
    p.stream = new MediaStream()
    if (!p.badSince) p.badSince = Date.now() + this.connectGraceMs
    pc.onicecandidate = (e) => {
      if (p.pc !== pc) return
      const c = e.candidate
      this._publish({ type: 'arena-call-ice', to: p.id, candidate: c ? { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex } : null })
    }
    pc.ontrack = (e) => {
      if (p.pc !== pc) return
      const track = e.track
      for (const old of p.stream.getTracks()) if (old.kind === track.kind && old !== track) p.stream.removeTrack(old)
      if (!p.stream.getTracks().includes(track)) p.stream.addTrack(track)
      if (e.transceiver) p.tx[track.kind] ??= e.transceiver
      this._emit('track', { peer: p.id, role: p.role, name: p.name, kind: track.kind, track, stream: p.stream })
    }
    pc.onconnectionstatechange = () => {
      if (p.pc !== pc) return
      const s = pc.connectionState
      if (s === 'connected') { p.badSince = 0; p.restartedAt = 0 } else if ((s === 'failed' || s === 'disconnected') && !p.badSince) p.badSince = Date.now()
      this._peerEvent(p, s)
      if (s === 'failed') this._restartPeer(p)
    }
    return pc
  }

  _closePc (p) {
    const pc = p.pc
    if (!pc) return
    p.pc = null
    p.lastFingerprint = fingerprint(pc.remoteDescription?.sdp)
    pc.onicecandidate = pc.ontrack = pc.onconnectionstatechange = null
    try { pc.close() } catch {}
  }

  /** As the offerer: a new connection to `p` with our audio and video, and the offer. */
  _newConnection (p) {
    let pc
    try { pc = this._makePc(p) } catch (e) {
      this._error('negotiation', `Could not start a connection: ${e?.message ?? e}`, { peer: p.id })
      return
    }
    // One audio and one video transceiver, in this order; to a receive-only peer, send-only.
    const direction = p.media ? 'sendrecv' : 'sendonly'
    const streams = this.localStream ? [this.localStream] : []
    for (const kind of KINDS) {
      p.tx[kind] = pc.addTransceiver(this._sending(kind) ?? kind, { direction, streams })
    }
    this._peerEvent(p, 'connecting')
    this._offer(p)
  }

  async _offer (p, iceRestart = false) {
    const pc = p.pc
    if (!pc) return
    if (p.offering || pc.signalingState !== 'stable') { p.again = true; return }
    p.offering = true
    try {
      const offer = await pc.createOffer(iceRestart ? { iceRestart: true } : {})
      if (p.pc !== pc) return
      await pc.setLocalDescription(offer)
      if (p.pc !== pc) return
      this.stats.offers++
      p.offerAt = Date.now()
      this._publish({ type: 'arena-call-offer', to: p.id, sdp: pc.localDescription.sdp })
    } catch (e) {
      p.offering = false
      this._error('negotiation', `Could not make an offer: ${e?.message ?? e}`, { peer: p.id })
    }
  }

  async _onOffer (from, sdp) {
    const p = this.peers.get(from)
    // Only a media peer offers, and between two media peers the smaller id: anything else
    // is forged or confused (an observer's offer never gets here through the node).
    if (!p || this._offerer(p) || !p.media) { this.stats.refused++; return }
    // A different DTLS fingerprint: the other side started a new connection. The same one
    // on a connection we no longer have: a restart of it, which cannot work here; ask for a
    // new connection instead (the offerer starts afresh when an offer goes unanswered).
    const gone = !p.pc || p.pc.connectionState === 'closed'
    const fp = fingerprint(sdp)
    if (gone && fp && fp === (p.pc ? fingerprint(p.pc.remoteDescription?.sdp) : p.lastFingerprint)) {
      this.stats.ignored++
      if (!p.badSince) p.badSince = Date.now()
      return
    }
    const fresh = gone || fp !== fingerprint(p.pc.remoteDescription?.sdp)
    let pc = p.pc
    try {
      if (fresh) pc = this._makePc(p)
      await pc.setRemoteDescription({ type: 'offer', sdp })
      if (p.pc !== pc) return
      this._remoteSet(p)
      for (const t of pc.getTransceivers()) {
        const kind = t.receiver.track?.kind
        if (!KINDS.includes(kind)) continue
        p.tx[kind] = t
        if (this.media) {
          // We send our camera and microphone back on the same transceivers.
          if (t.direction === 'recvonly' || t.direction === 'inactive') t.direction = 'sendrecv'
          await t.sender.replaceTrack(this._sending(kind))
          if (this.localStream && t.sender.setStreams) t.sender.setStreams(this.localStream)
        } else {
          t.direction = 'recvonly'
        }
      }
      if (fresh) this._peerEvent(p, 'connecting')
      const answer = await pc.createAnswer()
      if (p.pc !== pc) return
      await pc.setLocalDescription(answer)
      if (p.pc !== pc) return
      this.stats.answers++
      this._publish({ type: 'arena-call-answer', to: from, sdp: pc.localDescription.sdp })
    } catch (e) {
      this.stats.malformed++
      this._error('negotiation', `Could not answer ${p.name || 'a peer'}'s offer: ${e?.message ?? e}`, { peer: p.id })
    }
  }

  async _onAnswer (from, sdp) {
    const p = this.peers.get(from)
    const pc = p?.pc
    if (!p || !pc || !this._offerer(p) || pc.signalingState !== 'have-local-offer') { this.stats.ignored++; return }
    try {
      await pc.setRemoteDescription({ type: 'answer', sdp })
      if (p.pc !== pc) return
      this._remoteSet(p)
    } catch {
      this.stats.malformed++
      // Our offer is spent: start again.
      p.offering = false
      if (p.pc === pc) this._newConnection(p)
      return
    }
    p.offering = false
    if (p.again) { p.again = false; this._offer(p, true) }
  }

  _remoteSet (p) {
    p.remoteSet = true
    const queued = p.candidates
    p.candidates = []
    for (const c of queued) this._addCandidate(p, c)
  }

  _onCandidate (from, c) {
    const p = this.peers.get(from)
    if (!p) { this.stats.ignored++; return }
    if (!p.pc || !p.remoteSet) {
      if (p.candidates.length < MAX_QUEUED) p.candidates.push(c)
      else this.stats.ignored++
      return
    }
    this._addCandidate(p, c)
  }

  _addCandidate (p, c) {
    if (c === null || !p.pc) return
    p.pc.addIceCandidate(c).catch(() => { this.stats.malformed++ })
  }

  /** ICE restart with `peer` (default: every peer): the offerer offers with new ICE
   *  credentials; the other side asks it to (a hello with restart). */
  restart (peer) {
    for (const p of this.peers.values()) if (peer === undefined || p.id === peer) this._restartPeer(p)
  }

  _restartPeer (p) {
    p.restartedAt = Date.now()
    this.stats.restarts++
    if (!this._offerer(p)) {
      if (p.media || this.media) this._hello(p.id, true)
      return
    }
    // An ICE restart mends a connection whose DTLS is up (connected, or disconnected for
    // now); one that never came up, failed, or whose last offer went unanswered starts
    // afresh (a new DTLS fingerprint tells the other side to start afresh too).
    const s = p.pc?.connectionState
    const stale = p.pc?.signalingState === 'have-local-offer' && Date.now() - p.offerAt > 5000
    if (!p.pc || stale || !['connected', 'disconnected'].includes(s) || !p.remoteSet) return this._newConnection(p)
    this._peerEvent(p, 'restarting')
    this._offer(p, true)
  }

  _drop (p, reason) {
    if (this.peers.get(p.id) !== p) return
    this.peers.delete(p.id)
    this._closePc(p)
    for (const t of p.stream?.getTracks() ?? []) p.stream.removeTrack(t)
    this._emit('left', { peer: p.id, reason })
  }

  /** Drops every connection and signals afresh (a host removed a member, whose page may hold
   *  one of ours: call peer ids are not member keys). The others come back through their
   *  hellos; the node refuses the removed member's signaling, so it does not. */
  rejoin (reason = 'rejoin') {
    if (this.stopped) return
    const offerers = [...this.peers.values()].filter((p) => !this._offerer(p) && p.media).map((p) => p.id)
    for (const p of [...this.peers.values()]) this._drop(p, reason)
    // Everyone answers our hello (so we know them again) before the peers that offer to us
    // get our request for a new offer.
    this._hello()
    for (const id of offerers) this._hello(id, true)
  }

  /** The RTCPeerConnection with `peer` (for getStats), or null. */
  connection (peer) { return this.peers.get(peer)?.pc ?? null }

  _close (reason) {
    const ws = this.ws
    this.ws = null
    clearTimeout(this.timer)
    clearInterval(this.pinger)
    if (ws) try { ws.close(1000, reason) } catch {}
  }

  /** Leaves the call: a bye to the others, every connection and local track closed. */
  leave () {
    if (this.ws?.readyState === 1) this._publish({ type: 'arena-call-bye' })
    this.stopped = true
    this._close('bye')
    for (const p of [...this.peers.values()]) this._drop(p, 'we left')
    for (const t of this.localStream?.getTracks() ?? []) t.stop()
    this.screenTrack?.stop()
    this.localStream = this.cameraTrack = this.screenTrack = null
    this._win?.removeEventListener?.('online', this._onOnline)
    if (this.status !== 'denied') this._setStatus('closed')
  }
}
