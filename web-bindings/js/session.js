// ArenaSession: one room replica (the WASM Room) bound to a transport. It signs local edits,
// applies signed envelopes from the node, keeps presence alive, and reports what changed.
//
// Events (EventTarget):
//   'change'   detail {changes: [{pos, delete, insert}], origin: 'remote'|'restore'}
//              — apply to the editor in order (UTF-16 offsets)
//   'update'   detail {applied} — the document changed (meta, votes, versions, runs...)
//   'presence' — someone's name/colour/cursor changed; read session.presence()
//   'status'   detail {status, attempt, retryInMs, reason} (see WebSocketTransport)
//   'denied'   detail {reason} — the node refused something (a token, an edit)
//   'error'    detail {error} — a frame we could not process (the session keeps going)

import initWasm, { Room } from './arena_web.js'
import { WebSocketTransport } from './transport.js'

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
    this.pending = []
    this.flushQueued = false
    this.stats = { edits: 0, frames: 0, errors: 0, rejected: 0 }
    this.transport = o.transport ?? new WebSocketTransport(ywsUrl(o.server, o.room, o.token), { WebSocket: o.WebSocket })
    this.transport.addEventListener('open', () => this._onOpen())
    this.transport.addEventListener('message', (e) => this._receive(e.detail))
    this.transport.addEventListener('status', (e) => this.dispatchEvent(new CustomEvent('status', { detail: e.detail })))
    this.ticker = setInterval(() => this._tick(), 5000)
    this._presenceFrame()
    if (o.connect !== false) this.transport.connect()
  }

  get role () { return this.room.role() }
  get code () { this.flush(); return this.room.code() }
  get status () { return this.transport.status }

  _send (frames) {
    for (const f of frames) if (this.transport.send(f)) this.stats.frames++
  }

  _onOpen () {
    this.flush()
    this._send(this.room.open(this.now()))
  }

  /** Local edits the editor already shows: splices applied in order. Batched per microtask. */
  edit (splices) {
    if (!splices.length) return
    this.pending.push(...splices)
    if (!this.flushQueued) {
      this.flushQueued = true
      queueMicrotask(() => this.flush())
    }
  }

  /** Signs and sends pending local edits now (done before anything reads or receives). */
  flush () {
    this.flushQueued = false
    if (!this.pending.length) return
    const batch = this.pending
    this.pending = []
    const ops = new Uint32Array(batch.length * 2)
    batch.forEach((s, i) => { ops[2 * i] = s.pos; ops[2 * i + 1] = s.delete })
    try {
      this._send(this.room.edit(ops, batch.map((s) => s.insert), this.now()))
      this.stats.edits++
    } catch (error) {
      this._error(error)
    }
  }

  _receive (bytes) {
    this.flush()
    let inc
    try {
      inc = this.room.receive(bytes, this.now())
    } catch (error) {
      this._error(error)
      return
    }
    this._send(inc.replies)
    this.stats.rejected += inc.rejected
    if (inc.changes.length) this.dispatchEvent(new CustomEvent('change', { detail: { changes: inc.changes, origin: 'remote' } }))
    if (inc.applied) this.dispatchEvent(new CustomEvent('update', { detail: { applied: inc.applied } }))
    if (inc.presence || inc.changes.length) this.dispatchEvent(new Event('presence'))
    for (const reason of inc.denied) this.dispatchEvent(new CustomEvent('denied', { detail: { reason } }))
  }

  _error (error) {
    this.stats.errors++
    this.dispatchEvent(new CustomEvent('error', { detail: { error } }))
  }

  _tick () {
    try {
      const t = this.room.tick(this.now())
      if (t.frame) this._send([t.frame])
      if (t.changed) this.dispatchEvent(new Event('presence'))
    } catch (error) {
      this._error(error)
    }
  }

  _presenceFrame () {
    const s = this.selection
    this._send([this.room.setPresence(this.name, this.color, s?.anchor, s?.head, this.now())])
  }

  /** Our selection moved (UTF-16 offsets), or null. */
  setSelection (sel) {
    this.selection = sel
    this.flush()
    this._presenceFrame()
  }

  /** Renames us / changes our colour. */
  setUser (name, color = this.color) {
    this.name = name
    this.color = color
    this._presenceFrame()
  }

  /** Everyone present: [{clientId, local, name, color, anchor, head, state}]. */
  presence () { this.flush(); return this.room.presence() }

  _do (fn) {
    this.flush()
    this._send(fn())
    this.dispatchEvent(new CustomEvent('update', { detail: { applied: 0 } }))
  }

  meta () { return this.room.meta() }
  setMeta (key, value) { this._do(() => this.room.setMeta(key, JSON.stringify(value), this.now())) }
  participants () { return this.room.participants() }
  vote (enabled) { this._do(() => this.room.vote(enabled, this.now())) }
  consensus () { return this.room.consensus() }
  versions () { return this.room.versions() }
  createVersion (label) { this._do(() => this.room.createVersion(label, this.now())) }
  diff (from, to) { this.flush(); return this.room.diff(from ?? undefined, to ?? undefined) }
  codeAt (id) { this.flush(); return this.room.codeAt(id ?? undefined) }
  runs () { return this.room.runs() }
  analysis () { return this.room.analysis() }

  /** Restores a version as a forward edit; the editor gets a 'change' event. */
  restore (id) {
    this.flush()
    const r = this.room.restore(id, this.now())
    this._send(r.frames)
    if (r.changes.length) this.dispatchEvent(new CustomEvent('change', { detail: { changes: r.changes, origin: 'restore' } }))
    this.dispatchEvent(new CustomEvent('update', { detail: { applied: 0 } }))
  }

  /** Simulates losing / regaining the network. */
  setOffline (offline) { this.flush(); this.transport.setOffline(offline) }

  destroy () {
    this.flush()
    clearInterval(this.ticker)
    try { this._send([this.room.clearPresence(this.now())]) } catch {}
    this.transport.close()
  }
}

export { Room }
