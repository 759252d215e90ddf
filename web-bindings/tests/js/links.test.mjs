// ArenaSession with two links at once (Node, the WASM package, fake links): a message over
// the chunk size arrives as fragments on the /yws socket and on a data channel, interleaved;
// the WASM room keeps one fragment reassembler per link, so both copies reassemble. And the
// keystroke path: edits apply at once and are signed and sent one task later, and the caret
// sent after them is where it is by then, even when remote text landed before it meanwhile.
// And joinFrames, which puts the seal task's frames into as few socket messages as fit. And
// bad input from either link (malformed frames, a forged envelope): reported, dropped, and
// the session goes on with nothing typed lost.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { loadArena } from './support.mjs'

class FakeLink extends EventTarget {
  constructor () { super(); this.status = 'online'; this.sent = [] }
  connect () {}
  send (f) { this.sent.push(f); return true }
  setOffline () {}
  close () {}
  deliver (f) { this.dispatchEvent(new CustomEvent('message', { detail: f })) }
}

const rand = () => globalThis.crypto.getRandomValues(new Uint8Array(32))

test('fragments interleaved across /yws and a data channel reassemble', async (t) => {
  const { Room } = await loadArena()
  const { host, ws, bob, meshSent, fromPeer } = await hostAndBob(t, 'links', { mesh: true })
  const token = host.inviteToken('candidate', Math.floor(Date.now() / 1000) + 3600, Date.now())

  const big = Array.from({ length: 4000 }, (_, i) => `line ${i} ${'x'.repeat(40)}\n`).join('') + 'the end'
  const frames = host.edit(new Uint32Array([0, 0]), [big], Date.now())
  assert.ok(frames.length >= 3, `${frames.length} frames`)
  // The same fragments on both links, interleaved one by one, and a presence frame between
  // two fragments on /yws.
  const presence = host.setPresence('Host', '#123456', undefined, undefined, Date.now())
  frames.forEach((f, i) => { ws.deliver(f); if (i === 0) ws.deliver(presence); fromPeer(f) })
  assert.equal(bob.stats.errors, 0)
  assert.ok(bob.presence().some((p) => p.name === 'Host'))
  assert.equal(bob.code, host.code())
  assert.ok(bob.code.endsWith('the end'))

  // A reply goes back on the link the request came on: a Want from the peer is answered to it.
  meshSent.length = 0
  ws.sent.length = 0
  const late = Room.join(host.roomId(), token, 'Late', rand(), Date.now())
  for (const f of late.open(Date.now())) fromPeer(f)
  assert.ok(meshSent.some(([peer]) => peer === 'a'.repeat(32)), 'answered on the data channel')
  assert.equal(ws.sent.length, 0, 'nothing answered on /yws')
})

/** Yields to the event loop until `pred()` holds (at most `rounds` turns, no clock). */
async function turns (pred, rounds = 100) {
  for (let i = 0; i < rounds && !pred(); i++) await new Promise((r) => setImmediate(r))
  return pred()
}

/** A host room and Bob's session joined to it over a FakeLink (and, with `mesh`, a
 *  MeshTransport whose sends are recorded in `meshSent`; `fromPeer` delivers a frame from a
 *  peer's data channel), caught up, nothing pending. `pump()` carries Bob's frames to the
 *  host and the answers back until nothing is left. */
async function hostAndBob (t, title, { mesh: withMesh = false } = {}) {
  const { Room, ArenaSession, MeshTransport } = await loadArena()
  const now = Date.now()
  const host = Room.create(rand(), rand(), 'Host', 'python', title, now)
  const token = host.inviteToken('candidate', Math.floor(now / 1000) + 3600, now)
  const ws = new FakeLink()
  const meshSent = []
  let mesh
  if (withMesh) {
    mesh = new MeshTransport({ url: 'ws://127.0.0.1:9/signal', topic: host.roomId(), RTCPeerConnection: null, window: null })
    mesh.sendTo = (peer, f) => { meshSent.push([peer, f]); return true }
    mesh.broadcast = (f) => { meshSent.push(['*', f]); return 1 }
  }
  const fromPeer = (data) => mesh.dispatchEvent(new CustomEvent('message', { detail: { peer: 'a'.repeat(32), data } }))
  const bob = new ArenaSession({ server: 'http://127.0.0.1:9', room: host.roomId(), token, name: 'Bob', transport: ws, mesh, connect: false })
  t.after(() => bob.destroy())
  const pump = () => {
    for (let round = 0; round < 10 && ws.sent.length; round++) {
      for (const f of ws.sent.splice(0)) for (const r of host.receive(f, Date.now()).replies) ws.deliver(r)
    }
  }
  ws.dispatchEvent(new Event('open'))
  for (const f of host.open(Date.now())) ws.deliver(f)
  pump()
  assert.equal(bob.stats.errors, 0)
  ws.sent.length = 0
  meshSent.length = 0
  return { host, ws, bob, mesh, meshSent, pump, fromPeer }
}

/** Bob's caret as the host resolves it. */
const bobOnHost = (host) => JSON.parse(JSON.stringify(host.presence())).find((p) => p.name === 'Bob')

test('a keystroke applies at once; the task after it seals one envelope, then presence', async (t) => {
  const { host, ws, bob } = await hostAndBob(t, 'deferred')

  // Three keystrokes and a caret move in one task: in the document at once, nothing sent.
  bob.edit([{ pos: 0, delete: 0, insert: 'a' }])
  bob.edit([{ pos: 1, delete: 0, insert: 'b' }])
  bob.setSelection({ anchor: 2, head: 2 })
  bob.edit([{ pos: 2, delete: 0, insert: 'c' }])
  assert.equal(bob.code, 'abc')
  assert.equal(ws.sent.length, 0, 'nothing signed or sent inside the keystroke')
  // The seal task sends the envelope; presence follows (at most every PRESENCE_MIN_MS, so
  // it may come from a short timer after the seal, in a message of its own).
  assert.ok(await turns(() => ws.sent.length >= 1), `sent ${ws.sent.length}`)
  assert.equal(ws.sent[0][0], 100, 'the envelope goes first')
  for (let i = 0; i < 100 && !(host.code() === 'abc' && bobOnHost(host)?.head === 2); i++) {
    for (const f of ws.sent.splice(0)) {
      const inc = host.receive(f, Date.now())
      if (f[0] === 100) assert.equal(inc.applied, 1)
    }
    await new Promise((r) => setTimeout(r, 5))
  }
  assert.equal(host.code(), 'abc')
  assert.equal(bobOnHost(host)?.head, 2)

  // When presence is due (over PRESENCE_MIN_MS since the last), the seal task sends the
  // envelope (an arena message, type 100) and the awareness update (type 1) as ONE socket
  // message, read in order by the receiver.
  await new Promise((r) => setTimeout(r, 60))
  ws.sent.length = 0
  bob.edit([{ pos: 3, delete: 0, insert: 'e' }])
  bob.setSelection({ anchor: 4, head: 4 })
  assert.ok(await turns(() => ws.sent.length >= 1), `sent ${ws.sent.length}`)
  assert.equal(ws.sent.length, 1, 'one message for the envelope and the presence')
  assert.equal(ws.sent[0][0], 100, 'the envelope first')
  assert.equal(host.receive(ws.sent[0], Date.now()).applied, 1)
  assert.equal(host.code(), 'abce')
  assert.equal(bobOnHost(host)?.head, 4, 'the presence in the same message was read too')
  bob.edit([{ pos: 3, delete: 1, insert: '' }])
  bob.flush()
  for (const f of ws.sent.splice(0)) host.receive(f, Date.now())
  assert.equal(host.code(), 'abc')

  // Receiving seals first: an edit not sent yet goes out before the frame is handled.
  ws.sent.length = 0
  bob.edit([{ pos: 3, delete: 0, insert: 'd' }])
  ws.deliver(host.setPresence('Host', '#123456', undefined, undefined, Date.now()))
  assert.equal(ws.sent.length, 1, 'sealed and sent before the incoming frame')
  assert.equal(host.receive(ws.sent[0], Date.now()).applied, 1)
  assert.equal(host.code(), 'abcd')
  assert.equal(bob.stats.errors, 0)
})

test('remote text landing before the caret between a keystroke and its presence moves the caret sent', async (t) => {
  const { host, ws, bob } = await hostAndBob(t, 'caret')
  bob.edit([{ pos: 0, delete: 0, insert: 'bob' }])
  bob.flush()
  for (const f of ws.sent.splice(0)) host.receive(f, Date.now())
  assert.equal(host.code(), 'bob')

  // Bob's last keystroke and caret (the end); before its seal task runs, the host's edit at
  // the start arrives: the editor moves Bob's caret to the new end without reporting it.
  bob.edit([{ pos: 3, delete: 0, insert: '!' }])
  bob.setSelection({ anchor: 4, head: 4 })
  for (const f of host.edit(new Uint32Array([0, 0]), ['host '], Date.now())) ws.deliver(f)
  assert.equal(bob.code, 'host bob!')
  // The envelope went out before the host's frame was handled; presence follows.
  for (let i = 0; i < 100 && !ws.sent.some((f) => f[0] === 1); i++) await new Promise((r) => setTimeout(r, 5))
  assert.ok(ws.sent.some((f) => f[0] === 1), 'presence sent')
  for (const f of ws.sent.splice(0)) host.receive(f, Date.now())
  assert.equal(host.code(), 'host bob!')
  assert.deepEqual([bobOnHost(host)?.anchor, bobOnHost(host)?.head], [9, 9])

  // Later presence (a rename) still carries the caret where it is: after 'host bob!' and the
  // host's second edit before it.
  for (const f of host.edit(new Uint32Array([0, 0]), ['> '], Date.now())) ws.deliver(f)
  bob.setUser('Bob')
  for (const f of ws.sent.splice(0)) host.receive(f, Date.now())
  assert.equal(bobOnHost(host)?.head, 11)
  assert.equal(bob.stats.errors + bob.stats.rejected, 0)
})

test('bad frames on either link are reported and dropped; nothing applied, nothing typed lost', async (t) => {
  const { host, ws, bob, pump, fromPeer } = await hostAndBob(t, 'bad frames', { mesh: true })
  const errors = []
  bob.addEventListener('error', (e) => errors.push(String(e.detail.error)))

  bob.edit([{ pos: 0, delete: 0, insert: 'typed ' }])
  bob.flush()
  pump()
  const good = host.edit(new Uint32Array([6, 0]), ['host'], Date.now())
  assert.equal(good.length, 1)
  const forged = good[0].slice()
  forged[forged.length - 10] ^= 1 // inside the signature
  const malformed = {
    'random bytes': Uint8Array.from({ length: 64 }, (_, i) => (i * 97 + 13) & 255),
    'a truncated envelope': good[0].slice(0, good[0].length >> 1),
    'a truncated awareness update': Uint8Array.from([1, 5, 1, 2, 3, 4, 5]),
    'a length over the limit': Uint8Array.from([100, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2]),
    'an unknown message type': Uint8Array.from([42, 1, 2, 3])
  }
  const links = {
    '/yws': (f) => ws.deliver(f),
    'a data channel': fromPeer
  }
  for (const [link, deliver] of Object.entries(links)) {
    for (const [what, frame] of Object.entries(malformed)) {
      const before = bob.stats.errors
      assert.doesNotThrow(() => deliver(frame), `${what} on ${link}`)
      assert.equal(bob.stats.errors, before + 1, `${what} on ${link} is reported`)
      assert.match(errors.at(-1), /malformed|limit|truncated|unknown/, `${what} on ${link}: ${errors.at(-1)}`)
      assert.equal(bob.code, 'typed ', `${what} on ${link} applied nothing`)
    }
    const rejected = bob.stats.rejected
    deliver(forged)
    assert.equal(bob.stats.rejected, rejected + 1, `a forged envelope on ${link} is rejected`)
    assert.equal(bob.code, 'typed ')
  }
  assert.equal(errors.length, 2 * Object.keys(malformed).length)

  // The session goes on: the host's real envelope applies, and what Bob typed before and
  // after the garbage reaches the host.
  ws.deliver(good[0])
  assert.equal(bob.code, 'typed host')
  bob.edit([{ pos: bob.code.length, delete: 0, insert: ' on' }])
  bob.flush()
  pump()
  assert.equal(host.code(), 'typed host on')
  assert.equal(bob.code, host.code())
  assert.equal(bob.stats.rejected, 2, 'only the two forged envelopes were rejected')
})

test('joinFrames joins neighbours up to 16 KiB, in order, and sends a large frame alone', async () => {
  const { pkgDir } = await import('./support.mjs')
  const { joinFrames } = await import(pathToFileURL(join(pkgDir, 'session.js')).href)
  const f = (n, b) => new Uint8Array(n).fill(b)
  const [a, b, big, c, d] = [f(10, 1), f(20, 2), f(20000, 3), f(5, 4), f(5, 5)]
  assert.deepEqual(joinFrames([a]), [a], 'one frame as it is')
  const out = joinFrames([a, b, big, c, d])
  assert.deepEqual(out.map((x) => x.length), [30, 20000, 10])
  assert.deepEqual([...out[0]], [...a, ...b])
  assert.equal(out[1], big, 'the large frame is not copied')
  assert.deepEqual([...out[2]], [...c, ...d])
  // Exactly at the limit still joins; one byte over starts a new message.
  assert.equal(joinFrames([f(8192, 6), f(8192, 7)]).length, 1)
  assert.equal(joinFrames([f(8192, 6), f(8193, 7)]).length, 2)
})
