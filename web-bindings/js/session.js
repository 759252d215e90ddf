// ArenaSession: one room replica (the WASM Room) bound to a transport (the node's /yws) and,
// optionally, a WebRTC mesh to the room's other browsers (MeshTransport). It signs local
// edits, applies signed envelopes from every link, keeps presence alive, and reports what
// changed. Local frames go to every open link; replies (catch-up answers) go back to the
// link the request came on; an envelope that arrives twice (node and mesh) is a duplicate
// the ledger drops. Each link has a number the WASM room reassembles fragments by.
//
// A keystroke only applies the edit to the WASM document (no signature): one task later the
// edits typed meanwhile are sealed into one signed envelope and sent, then our presence.
// Whatever receives, sends or reads the log seals first (flush()). The caret is kept as UTF-16
// offsets until then: the remote and restored changes the session reports move it (the editor
// moves its own caret through them without telling us), so it is encoded where it is when it
// goes out.
//
// Events (EventTarget):
//   'change'   detail {changes: [{pos, delete, insert}], origin: 'remote'|'restore'}
//              — apply to the editor in order (UTF-16 offsets)
//   'update'   detail {applied} — the document changed (meta, votes, versions, runs...)
//   'presence' — someone's name/colour/cursor changed; read session.presence()
//   'status'   detail {status, attempt, retryInMs, reason} (see WebSocketTransport)
//   'mesh'     detail {status, peers} — the mesh's signaling status or peer count changed
//   'denied'   detail {reason} — the node refused something (a token, an edit)
//   'revoked'  a host removed a member (the call and the mesh drop every connection and
//              signal afresh: peer ids are not member keys)
//   'error'    detail {error} — a frame we could not process (the session keeps going)

import initWasm, { Room } from './arena_web.js'
import { WebSocketTransport } from './transport.js'
import { MeshTransport, signalUrl } from './mesh.js'
import { shiftOffset } from './bind.js'

/** Our presence (cursor) goes out at most this often while typing. */
const PRESENCE_MIN_MS = 40
const performanceNow = () => (globalThis.performance ? globalThis.performance.now() : Date.now())

let ready = null

/** Loads the WASM module once. `input`: URL, Response, bytes or WebAssembly.Module (default: next to this file). */
export function init (input) {
  ready ??= initWasm(input === undefined ? undefined : { module_or_path: input })
  return ready
}

/** The /yws WebSocket URL for a room on a node at `server` (an http(s) or ws(s) base URL). */
export function ywsUrl (server, room, token) {
  const base = String(server).replace(/^http/, 'ws').replace(/\/+$/, '')
  return `${base}/yws/${room}?token=${encodeURIComponent(token)}`
}

const randomSeed = () => globalThis.crypto.getRandomValues(new Uint8Array(32))

/** Frames joined into one message up to this size (a large one is sent alone). */
const JOIN_MAX = 16 * 1024

/** `frames` with neighbours that fit together in JOIN_MAX bytes joined, in order. */
export function joinFrames (frames) {
  if (frames.length < 2) return frames
  const out = []
  let run = []
  let len = 0
  const end = () => {
    if (run.length === 1) out.push(run[0])
    else if (run.length > 1) {
      const joined = new Uint8Array(len)
      let at = 0
      for (const f of run) { joined.set(f, at); at += f.length }
      out.push(joined)
    }
    run = []
    len = 0
  }
  for (const f of frames) {
    if (len + f.length > JOIN_MAX) end()
    run.push(f)
    len += f.length
  }
  end()
  return out
}

/**
 * Runs `fn` soon in a task of its own (a MessageChannel message: not a microtask, so the
 * current task — a keystroke — ends first, and no timer clamping).
 */
const postTask = (() => {
  if (typeof MessageChannel !== 'function') return (fn) => setTimeout(fn, 0)
  const channel = new MessageChannel()
  const queue = []
  channel.port1.onmessage = () => queue.shift()?.()
  // Node: the channel must not keep the process alive.
  channel.port1.unref?.()
  channel.port2.unref?.()
  return (fn) => { queue.push(fn); channel.port2.postMessage(0) }
})()

/** Runs `fn` when the page is idle (requestIdleCallback; within `timeoutMs` at the latest),
 *  or in a task of its own where there is no such thing (Node). */
const whenIdle = (fn, timeoutMs) =>
  typeof requestIdleCallback === 'function' ? requestIdleCallback(fn, { timeout: timeoutMs }) : setTimeout(fn, 0)

export class ArenaSession extends EventTarget {
  /**
   * @param {object} o
   * @param {string} o.server node base URL (e.g. location.origin)
   * @param {string} o.room room id (hex)
   * @param {string} o.token invite token
   * @param {string} o.name display name
   * @param {string} [o.color] cursor colour
   * @param {Uint8Array} [o.seed] 32 secret bytes (default: fresh random)
   * @param {any} [o.WebSocket] WebSocket implementation (Node: the `ws` package)
   * @param {() => number} [o.now] clock (default Date.now)
   * @param {boolean} [o.connect] connect right away (default true)
   * @param {boolean | MeshTransport | object} [o.mesh] also sync directly with the room's other
   *   browsers over WebRTC data channels, signaled through the node's /signal: true, the
   *   MeshTransport options to override (e.g. {iceServers, maxPeers}), or a MeshTransport
   *   (default: off). Never for an observer: /signal lets only writing roles publish, so an
   *   observer reads through the node alone (its meshStatus stays 'off').
   * Call `await init()` first.
   */
  constructor (o) {
    super()
    this.now = o.now ?? Date.now
    this.name = o.name
    this.color = o.color ?? '#3b82f6'
    this.room = Room.join(o.room, o.token, o.name, o.seed ?? randomSeed(), this.now())
    this.roomId = o.room
    this.selection = null
    this.unsealed = false
    this.selectionDirty = false
    this.lastPresenceAt = -Infinity
    this.presenceTimer = null
    this.taskQueued = false
    this.held = null
    this.destroyed = false
    this.stats = { edits: 0, frames: 0, meshFrames: 0, errors: 0, rejected: 0 }
    this.transport = o.transport ?? new WebSocketTransport(ywsUrl(o.server, o.room, o.token), { WebSocket: o.WebSocket })
    // Link 0: the node's socket; data channels get 1, 2, ... (never reused).
    const ws = { id: 0, send: (f) => this._count(this.transport.send(f), 'frames') }
    let nextLink = 1
    this.transport.addEventListener('open', () => { this.room.closeLink(ws.id); this._onOpen(ws) })
    this.transport.addEventListener('message', (e) => this._receive(e.detail, ws))
    this.transport.addEventListener('status', (e) => this.dispatchEvent(new CustomEvent('status', { detail: e.detail })))
    this.mesh = null
    if (o.mesh && this.room.role() !== 'observer') {
      this.mesh = o.mesh instanceof MeshTransport
        ? o.mesh
        : new MeshTransport({
          url: signalUrl(o.server, o.token),
          topic: o.room,
          // With the room and the member's token the node adds TURN credentials minted for it.
          iceUrl: `${String(o.server).replace(/^ws/, 'http').replace(/\/+$/, '')}/api/ice?room=${encodeURIComponent(o.room)}&token=${encodeURIComponent(o.token)}`,
          WebSocket: o.WebSocket,
          ...(typeof o.mesh === 'object' ? o.mesh : {})
        })
      const links = new Map()
      const link = (peer) => {
        let l = links.get(peer)
        if (!l) {
          l = { id: nextLink++, send: (f) => this._count(this.mesh.sendTo(peer, f), 'meshFrames') }
          links.set(peer, l)
        }
        return l
      }
      this.mesh.addEventListener('open', (e) => {
        const l = link(e.detail.peer)
        if (!e.detail.resync) this.room.closeLink(l.id)
        this._onOpen(l)
      })
      this.mesh.addEventListener('message', (e) => this._receive(e.detail.data, link(e.detail.peer)))
      this.mesh.addEventListener('close', (e) => {
        const l = links.get(e.detail.peer)
        links.delete(e.detail.peer)
        if (l) this.room.closeLink(l.id)
      })
      const meshEvent = () => this.dispatchEvent(new CustomEvent('mesh', { detail: { status: this.mesh.status, peers: this.mesh.peerCount } }))
      this.mesh.addEventListener('peers', meshEvent)
      this.mesh.addEventListener('status', meshEvent)
    }
    this.ticker = setInterval(() => this._tick(), 5000)
    this._presenceFrame()
    if (o.connect !== false) {
      this.transport.connect()
      this.mesh?.connect()
    }
  }

  get role () { return this.room.role() }
  /** The code: local edits are in the document from the keystroke on. */
  get code () { return this.room.code() }
  /** The /yws transport's status (the node is the primary link). */
  get status () { return this.transport.status }
  /** The mesh's signaling status ('off' without a mesh). */
  get meshStatus () { return this.mesh ? this.mesh.status : 'off' }
  /** How many browsers we have an open data channel with. */
  meshPeers () { return this.mesh ? this.mesh.peerCount : 0 }

  _count (sent, what) {
    if (sent) this.stats[what]++
    return sent
  }

  /** Local frames: to the node and to every open data channel. Inside the seal task they
   *  are held and leave together at its end (see _sealTask). */
  _send (frames) {
    if (this.held) {
      for (const f of frames) this.held.push(f)
      return
    }
    this._sendNow(frames)
  }

  _sendNow (frames) {
    for (const f of frames) {
      this._count(this.transport.send(f), 'frames')
      if (this.mesh) this.stats.meshFrames += this.mesh.broadcast(f)
    }
  }

  _onOpen (link) {
    this.flush()
    try {
      for (const f of this.room.open(this.now())) link.send(f)
    } catch (error) {
      this._error(error)
    }
  }

  /** Local edits the editor already shows: splices applied in order, to the document now;
   *  signed and sent in a task after this one (with whatever else is typed meanwhile). */
  edit (splices) {
    if (!splices.length) return
    const ops = new Uint32Array(splices.length * 2)
    splices.forEach((s, i) => { ops[2 * i] = s.pos; ops[2 * i + 1] = s.delete })
    try {
      this.room.applyEdit(ops, splices.map((s) => s.insert), this.now())
    } catch (error) {
      this._error(error)
      return
    }
    this.stats.edits++
    this.unsealed = true
    this._schedule()
  }

  _schedule () {
    if (this.taskQueued) return
    this.taskQueued = true
    postTask(() => this._sealTask())
  }

  /** The task after a keystroke: seal and send the edits, then our presence, in one socket
   *  message when they fit (a frame may hold several y-protocols messages; the node and the
   *  WASM room read them in order): each send costs the page an IPC to the network process. */
  _sealTask () {
    this.taskQueued = false
    if (this.destroyed) return
    this.held = []
    try {
      this.flush()
      if (this.selectionDirty) this._presenceSoon()
    } finally {
      const held = this.held
      this.held = null
      this._sendNow(joinFrames(held))
    }
  }

  /** Sends our presence now, or, when the last one left under PRESENCE_MIN_MS ago, once that
   *  interval is over (a burst of keystrokes moves the caret each time: peers see it at
   *  ~25 Hz instead of paying a frame per keystroke). */
  _presenceSoon () {
    const wait = this.lastPresenceAt + PRESENCE_MIN_MS - performanceNow()
    if (wait <= 0) {
      this._presenceFrame()
    } else if (!this.presenceTimer) {
      this.presenceTimer = setTimeout(() => {
        this.presenceTimer = null
        if (!this.destroyed && this.selectionDirty) this._presenceFrame()
      }, wait)
    }
  }

  /** Signs and sends pending local edits now (done before anything receives, sends or reads
   *  the log, so our envelopes keep their order). */
  flush () {
    if (!this.unsealed) return
    this.unsealed = false
    try {
      this._send(this.room.seal(this.now()))
    } catch (error) {
      this._error(error)
    }
  }

  _receive (bytes, link) {
    this.flush()
    let inc
    try {
      inc = this.room.receive(bytes, this.now(), link.id)
    } catch (error) {
      this._error(error)
      return
    }
    for (const f of inc.replies) link.send(f)
    this.stats.rejected += inc.rejected
    if (inc.changes.length) this._changed(inc.changes, 'remote')
    if (inc.applied) this.dispatchEvent(new CustomEvent('update', { detail: { applied: inc.applied } }))
    if (inc.presence || inc.changes.length) this.dispatchEvent(new Event('presence'))
    for (const reason of inc.denied) this.dispatchEvent(new CustomEvent('denied', { detail: { reason } }))
    if (inc.revoked) {
      this.mesh?.rejoin('a member was removed')
      this.dispatchEvent(new Event('revoked'))
    }
  }

  /** Changes we did not type: our caret moves through them (as the editor's does) before the
   *  editor gets them, so the offsets setSelection recorded still point at the same place when
   *  the seal task or the presence timer encodes them against the changed document. (An editor
   *  that reports the moved caret itself, synchronously or later, overrides this.) */
  _changed (changes, origin) {
    const s = this.selection
    if (s) {
      const move = (at) => (at == null ? at : changes.reduce(shiftOffset, at))
      this.selection = { anchor: move(s.anchor), head: move(s.head) }
    }
    this.dispatchEvent(new CustomEvent('change', { detail: { changes, origin } }))
  }

  _error (error) {
    this.stats.errors++
    this.dispatchEvent(new CustomEvent('error', { detail: { error } }))
  }

  _tick () {
    this.flush()
    try {
      const t = this.room.tick(this.now())
      if (t.frame) this._send([t.frame])
      if (t.changed) this.dispatchEvent(new Event('presence'))
    } catch (error) {
      this._error(error)
    }
    whenIdle(() => this._maintain(), 5000)
  }

  /** Upkeep kept off the keystrokes (the periodic checkpoint), when the page is idle. */
  _maintain () {
    if (this.destroyed) return
    this.flush()
    try {
      this._send(this.room.maintain(this.now()))
    } catch (error) {
      this._error(error)
    }
  }

  _presenceFrame () {
    this.flush()
    this.selectionDirty = false
    this.lastPresenceAt = performanceNow()
    const s = this.selection
    this._send([this.room.setPresence(this.name, this.color, s?.anchor, s?.head, this.now())])
  }

  /** Our selection moved (UTF-16 offsets into the document as it is now, after our own edits
   *  that moved it), or null: sent from the task after this one (or PRESENCE_MIN_MS later),
   *  moved through any remote changes that arrive meanwhile. */
  setSelection (sel) {
    this.selection = sel
    this.selectionDirty = true
    this._schedule()
  }

  /** Renames us / changes our colour. */
  setUser (name, color = this.color) {
    this.name = name
    this.color = color
    this._presenceFrame()
  }

  /** Everyone present: [{clientId, local, name, color, anchor, head, state}]. */
  presence () { return this.room.presence() }

  _do (fn) {
    this.flush()
    this._send(fn())
    this.dispatchEvent(new CustomEvent('update', { detail: { applied: 0 } }))
  }

  meta () { return this.room.meta() }
  setMeta (key, value) { this._do(() => this.room.setMeta(key, JSON.stringify(value), this.now())) }
  participants () { return this.room.participants() }
  vote (enabled) { this._do(() => this.room.vote(enabled, this.now())) }
  /** Removes a member (its public key, hex: a participant's `key`); host only. Every replica
   *  refuses its envelopes from now on, and the node closes its connections (code 4403). */
  revoke (memberKey) {
    this._do(() => this.room.revoke(memberKey, this.now()))
    this.mesh?.rejoin('a member was removed')
    this.dispatchEvent(new Event('revoked'))
  }
  consensus () { return this.room.consensus() }
  versions () { return this.room.versions() }
  createVersion (label) { this._do(() => this.room.createVersion(label, this.now())) }
  diff (from, to) { this.flush(); return this.room.diff(from ?? undefined, to ?? undefined) }
  codeAt (id) { this.flush(); return this.room.codeAt(id ?? undefined) }
  runs () { return this.room.runs() }
  analysis () { return this.room.analysis() }

  /** The extra files beside the code (names, sorted). Each file is a text root
   *  `files/<name>` that stock Yjs clients bind with `ydoc.getText('files/' + name)`. */
  files () { return this.room.files() }
  /** File `name`'s text, or undefined when the room does not list it. */
  file (name) { return this.room.file(name) }
  /** Adds a file (letters, digits, `_-.+`, ≤ 64 bytes, no leading dot; ≤ 32 files): throws
   *  with the reason when refused. */
  addFile (name) { this._do(() => this.room.addFile(name, this.now())) }
  /** Removes a file (versions keep it; restore brings it back). */
  removeFile (name) { this._do(() => this.room.removeFile(name, this.now())) }
  /** Local edits of file `name` the editor already shows (splices, in order): one signed
   *  envelope, sent now. */
  editFile (name, splices) {
    if (!splices.length) return
    const ops = new Uint32Array(splices.length * 2)
    splices.forEach((s, i) => { ops[2 * i] = s.pos; ops[2 * i + 1] = s.delete })
    this._do(() => this.room.editFile(name, ops, splices.map((s) => s.insert), this.now()))
  }
  /** Line diffs of the files between two versions: [{name, lines: [{kind, text}]}]. */
  fileDiffs (from, to) { this.flush(); return this.room.fileDiffs(from ?? undefined, to ?? undefined) }

  /** Restores a version as a forward edit; the editor gets a 'change' event. */
  restore (id) {
    this.flush()
    const r = this.room.restore(id, this.now())
    this._send(r.frames)
    if (r.changes.length) this._changed(r.changes, 'restore')
    this.dispatchEvent(new CustomEvent('update', { detail: { applied: 0 } }))
  }

  /** Simulates losing / regaining the network: the /yws socket and the mesh. */
  setOffline (offline) {
    this.flush()
    this.transport.setOffline(offline)
    this.mesh?.setOffline(offline)
  }

  destroy () {
    this.flush()
    this.destroyed = true
    clearInterval(this.ticker)
    clearTimeout(this.presenceTimer)
    try { this._send([this.room.clearPresence(this.now())]) } catch {}
    this.transport.close()
    this.mesh?.close()
  }
}

export { Room, MeshTransport, signalUrl }
