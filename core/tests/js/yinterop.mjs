// A y-protocols peer built from the real npm packages (yjs, y-protocols, lib0), driven by
// core/tests/interop_yprotocols.rs over stdin/stdout.
//
// Protocol: one JSON request per line on stdin, exactly one JSON response per line on
// stdout, in order. Binary data travels as lowercase hex. Every response carries
// `ok: true` (plus results) or `ok: false, error`. Nothing else is written to stdout;
// diagnostics (including y-protocols' own console.error) go to stderr.
//
// The peer holds one Y.Doc (root text "code", map "meta", like the room document) and
// one awareness instance. Frames are built the way y-websocket's client builds them: one
// message per frame, a varUint message type (0 sync, 1 awareness, 2 auth, 3 query
// awareness) followed by the y-protocols payload.
//
// Requests (`op`):
//   reset {client, gc?}        fresh doc with clientID `client` and fresh awareness
//   edit {pos, del, insert}    delete then insert in "code" (UTF-16 positions, as Y.Text
//                              uses); returns the update frame y-websocket would broadcast
//   setMeta {key, value}       doc.getMap("meta").set(key, value); returns the update frame
//   step1                      sync step 1 frame (our state vector)
//   step2 {sv?}                sync step 2 frame for the peer state vector `sv` (hex;
//                              absent = empty, i.e. the whole document)
//   awareness {state}          sets our local awareness state, returns the awareness frame
//   awarenessRemove            removes our local state (state null), returns that frame
//   query                      query-awareness frame
//   auth {reason}              permission-denied auth frame
//   recv {frame, mode}         handles a frame from Rust. mode "stock": exactly what
//                              y-websocket's client does (reads ONE message; bytes after
//                              it are ignored and reported as `trailing`). mode "all":
//                              reads every message back to back. Returns `messages` (what
//                              was decoded), `replies` (frames a y-websocket client sends
//                              back), `trailing`, `errors` (update application errors).
//   state                      text, state vector, full update, meta, awareness, denials
//   compare {full}             applies `full` (another replica's whole state) to a fresh
//                              doc and compares it with ours (text, state vector,
//                              snapshot = state vector + delete set, pending structs)

import * as readline from 'node:readline'
import * as Y from 'yjs'
import * as syncProtocol from 'y-protocols/sync'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as authProtocol from 'y-protocols/auth'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'

const messageSync = 0
const messageAwareness = 1
const messageAuth = 2
const messageQueryAwareness = 3

const toHex = (u8) => Buffer.from(u8).toString('hex')
const fromHex = (hex) => {
  if (typeof hex !== 'string' || hex.length % 2 !== 0 || !/^[0-9a-f]*$/i.test(hex)) {
    throw new Error(`bad hex: ${String(hex).slice(0, 40)}`)
  }
  return new Uint8Array(Buffer.from(hex, 'hex'))
}

/** Sorted [[client, clock], ...] of a v1 state vector. */
const svEntries = (sv) =>
  Array.from(Y.decodeStateVector(sv).entries()).sort((a, b) => a[0] - b[0])

/** Sorted [[client, [[clock, len], ...]], ...] of a delete set (from Y.snapshot or decodeUpdate). */
const dsEntries = (ds) =>
  Array.from(ds.clients.entries())
    .map(([client, items]) => [client, items.map((d) => [d.clock, d.len]).sort((a, b) => a[0] - b[0])])
    .sort((a, b) => a[0] - b[0])

const peer = {
  doc: null,
  awareness: null,
  denied: []
}

const reset = (client, gc = true) => {
  if (peer.awareness) peer.awareness.destroy()
  if (peer.doc) peer.doc.destroy()
  const doc = new Y.Doc({ gc })
  if (client !== undefined && client !== null) {
    if (!Number.isSafeInteger(client) || client < 0) throw new Error(`bad client id ${client}`)
    doc.clientID = client
  }
  // Instantiate the roots the room document has, so both replicas know their types.
  doc.getText('code')
  doc.getMap('meta')
  peer.doc = doc
  peer.awareness = new awarenessProtocol.Awareness(doc)
  peer.denied = []
}

const code = () => peer.doc.getText('code')

/** Runs `f` in one transaction and returns the single update it produced (or null). */
const captureUpdate = (f) => {
  let update = null
  const onUpdate = (u) => {
    if (update !== null) throw new Error('more than one update from one transaction')
    update = u
  }
  peer.doc.on('update', onUpdate)
  try {
    peer.doc.transact(f, 'local')
  } finally {
    peer.doc.off('update', onUpdate)
  }
  return update
}

/** What y-websocket broadcasts for a local update. */
const updateFrame = (update) => {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, messageSync)
  syncProtocol.writeUpdate(encoder, update)
  return encoding.toUint8Array(encoder)
}

const awarenessFrame = (clients) => {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, messageAwareness)
  encoding.writeVarUint8Array(encoder, awarenessProtocol.encodeAwarenessUpdate(peer.awareness, clients))
  return encoding.toUint8Array(encoder)
}

const awarenessEntries = () =>
  Array.from(peer.awareness.getStates().entries())
    .map(([client, state]) => ({ client, clock: peer.awareness.meta.get(client)?.clock ?? null, state }))
    .sort((a, b) => a.client - b.client)

/** Decodes an awareness update without applying it (for reporting). */
const peekAwareness = (update) => {
  const d = decoding.createDecoder(update)
  const n = decoding.readVarUint(d)
  const entries = []
  for (let i = 0; i < n; i++) {
    const client = decoding.readVarUint(d)
    const clock = decoding.readVarUint(d)
    const json = decoding.readVarString(d)
    entries.push({ client, clock, json, state: JSON.parse(json) })
  }
  if (decoding.hasContent(d)) throw new Error('awareness update has trailing bytes')
  return entries
}

/** Describes a sync payload without applying it (for reporting). */
const peekSync = (decoder) => {
  const d = decoding.clone(decoder)
  const sub = decoding.readVarUint(d)
  const payload = decoding.readVarUint8Array(d)
  const msg = { type: 'sync', sub, payloadHex: toHex(payload) }
  if (sub === syncProtocol.messageYjsSyncStep1) {
    msg.sv = svEntries(payload)
  } else {
    const { structs, ds } = Y.decodeUpdate(payload)
    msg.structs = structs.length
    msg.ds = dsEntries(ds)
  }
  return msg
}

/**
 * Handles one message the way y-websocket's client `messageHandlers` do, returning a
 * report and the reply frame (or null).
 */
const handleMessage = (decoder, errors) => {
  const encoder = encoding.createEncoder()
  const type = decoding.readVarUint(decoder)
  let msg
  switch (type) {
    case messageSync: {
      msg = peekSync(decoder)
      encoding.writeVarUint(encoder, messageSync)
      syncProtocol.readSyncMessage(decoder, encoder, peer.doc, 'remote', (e) => errors.push(String(e?.stack ?? e)))
      break
    }
    case messageQueryAwareness: {
      msg = { type: 'queryAwareness' }
      encoding.writeVarUint(encoder, messageAwareness)
      encoding.writeVarUint8Array(
        encoder,
        awarenessProtocol.encodeAwarenessUpdate(peer.awareness, Array.from(peer.awareness.getStates().keys()))
      )
      break
    }
    case messageAwareness: {
      const update = decoding.readVarUint8Array(decoder)
      msg = { type: 'awareness', entries: peekAwareness(update) }
      awarenessProtocol.applyAwarenessUpdate(peer.awareness, update, 'remote')
      break
    }
    case messageAuth: {
      msg = { type: 'auth', denied: null }
      authProtocol.readAuthMessage(decoder, peer.doc, (_ydoc, reason) => {
        msg.denied = reason
        peer.denied.push(reason)
      })
      break
    }
    default:
      // y-websocket logs 'Unable to compute message' and sends nothing.
      msg = { type: 'unknown', code: type }
  }
  // y-websocket sends the reply only if it holds more than the message type.
  const reply = encoding.length(encoder) > 1 ? encoding.toUint8Array(encoder) : null
  return { msg, reply }
}

const recv = (frame, mode) => {
  const decoder = decoding.createDecoder(frame)
  const messages = []
  const replies = []
  const errors = []
  if (mode === 'stock') {
    const { msg, reply } = handleMessage(decoder, errors)
    messages.push(msg)
    if (reply) replies.push(toHex(reply))
  } else if (mode === 'all') {
    while (decoding.hasContent(decoder)) {
      const { msg, reply } = handleMessage(decoder, errors)
      messages.push(msg)
      if (reply) replies.push(toHex(reply))
      if (msg.type === 'unknown') break
    }
  } else {
    throw new Error(`unknown recv mode ${mode}`)
  }
  return { messages, replies, trailing: frame.length - decoder.pos, errors }
}

const state = () => {
  const sv = Y.encodeStateVector(peer.doc)
  return {
    client: peer.doc.clientID,
    text: code().toString(),
    textLen: code().length,
    sv: svEntries(sv),
    svHex: toHex(sv),
    fullHex: toHex(Y.encodeStateAsUpdate(peer.doc)),
    ds: dsEntries(Y.snapshot(peer.doc).ds),
    meta: peer.doc.getMap('meta').toJSON(),
    awareness: awarenessEntries(),
    localClock: peer.awareness.meta.get(peer.doc.clientID)?.clock ?? null,
    denied: peer.denied,
    pending: peer.doc.store.pendingStructs !== null || peer.doc.store.pendingDs !== null
  }
}

const compare = (full) => {
  const other = new Y.Doc()
  other.getText('code')
  other.getMap('meta')
  Y.applyUpdate(other, full)
  const mine = Y.snapshot(peer.doc)
  const theirs = Y.snapshot(other)
  const result = {
    textEqual: other.getText('code').toString() === code().toString(),
    otherText: other.getText('code').toString(),
    svEqual: Buffer.compare(Buffer.from(Y.encodeStateVector(other)), Buffer.from(Y.encodeStateVector(peer.doc))) === 0,
    otherSv: svEntries(Y.encodeStateVector(other)),
    snapshotEqual: Y.equalSnapshots(mine, theirs),
    otherDs: dsEntries(theirs.ds),
    metaEqual: JSON.stringify(other.getMap('meta').toJSON()) === JSON.stringify(peer.doc.getMap('meta').toJSON()),
    otherPending: other.store.pendingStructs !== null || other.store.pendingDs !== null,
    // What each side still lacks from the other, as structs count (0 = nothing).
    missingHere: Y.decodeUpdate(Y.encodeStateAsUpdate(other, Y.encodeStateVector(peer.doc))).structs.length,
    missingThere: Y.decodeUpdate(Y.encodeStateAsUpdate(peer.doc, Y.encodeStateVector(other))).structs.length
  }
  other.destroy()
  return result
}

const handle = (req) => {
  switch (req.op) {
    case 'reset':
      reset(req.client, req.gc ?? true)
      return { client: peer.doc.clientID, awareness: awarenessEntries() }
    case 'edit': {
      const update = captureUpdate(() => {
        if (req.del > 0) code().delete(req.pos, req.del)
        if (req.insert) code().insert(req.pos, req.insert)
      })
      return { frame: update ? toHex(updateFrame(update)) : null, update: update ? toHex(update) : null, text: code().toString() }
    }
    case 'setMeta': {
      const update = captureUpdate(() => peer.doc.getMap('meta').set(req.key, req.value))
      return { frame: toHex(updateFrame(update)), update: toHex(update) }
    }
    case 'step1': {
      const encoder = encoding.createEncoder()
      encoding.writeVarUint(encoder, messageSync)
      syncProtocol.writeSyncStep1(encoder, peer.doc)
      return { frame: toHex(encoding.toUint8Array(encoder)), sv: svEntries(Y.encodeStateVector(peer.doc)) }
    }
    case 'step2': {
      const encoder = encoding.createEncoder()
      encoding.writeVarUint(encoder, messageSync)
      syncProtocol.writeSyncStep2(encoder, peer.doc, req.sv ? fromHex(req.sv) : undefined)
      return { frame: toHex(encoding.toUint8Array(encoder)) }
    }
    case 'awareness':
      peer.awareness.setLocalState(req.state)
      return {
        frame: toHex(awarenessFrame([peer.doc.clientID])),
        client: peer.doc.clientID,
        clock: peer.awareness.meta.get(peer.doc.clientID).clock
      }
    case 'awarenessRemove':
      awarenessProtocol.removeAwarenessStates(peer.awareness, [peer.doc.clientID], 'local')
      return {
        frame: toHex(awarenessFrame([peer.doc.clientID])),
        client: peer.doc.clientID,
        clock: peer.awareness.meta.get(peer.doc.clientID).clock
      }
    case 'query': {
      const encoder = encoding.createEncoder()
      encoding.writeVarUint(encoder, messageQueryAwareness)
      return { frame: toHex(encoding.toUint8Array(encoder)) }
    }
    case 'auth': {
      const encoder = encoding.createEncoder()
      encoding.writeVarUint(encoder, messageAuth)
      authProtocol.writePermissionDenied(encoder, req.reason)
      return { frame: toHex(encoding.toUint8Array(encoder)) }
    }
    case 'recv':
      return recv(fromHex(req.frame), req.mode ?? 'stock')
    case 'state':
      return state()
    case 'compare':
      return compare(fromHex(req.full))
    default:
      throw new Error(`unknown op ${req.op}`)
  }
}

reset(undefined)

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false })
rl.on('line', (line) => {
  if (line.trim() === '') return
  let res
  try {
    const req = JSON.parse(line)
    res = { ok: true, ...handle(req) }
  } catch (e) {
    res = { ok: false, error: String(e?.stack ?? e) }
  }
  process.stdout.write(JSON.stringify(res) + '\n')
})
rl.on('close', () => {
  if (peer.awareness) peer.awareness.destroy()
  process.exit(0)
})
