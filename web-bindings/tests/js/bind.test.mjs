// bindEditor's consistency check (Node, no browser): after each batch of remote changes it
// compares lengths only, repairs a length mismatch at once, and compares the whole texts
// once typing pauses. The document is a real WASM room (arena-web, created here without a
// node); the session around it is the part of ArenaSession that bindEditor uses.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { loadArena, waitFor } from './support.mjs'

const { Room, bindEditor, applyChanges } = await loadArena()

/** A room of our own and the session surface bindEditor needs; `remote(splices)` changes the
 *  document as a remote peer would and fires the session's change event. */
function fakeSession () {
  const seed = (b) => new Uint8Array(32).fill(b)
  const room = Room.create(seed(1), seed(2), 'host', 'rust', 'bind test', Date.now())
  const s = new EventTarget()
  const apply = (splices) => {
    const ops = new Uint32Array(splices.length * 2)
    splices.forEach((c, i) => { ops[2 * i] = c.pos; ops[2 * i + 1] = c.delete })
    room.applyEdit(ops, splices.map((c) => c.insert), Date.now())
  }
  Object.assign(s, {
    room,
    get code () { return room.code() },
    edit: apply,
    presence: () => [],
    setSelection: () => {},
    remote (splices) {
      apply(splices)
      s.dispatchEvent(new CustomEvent('change', { detail: { changes: splices } }))
    }
  })
  return s
}

/** A plain-string editor that counts full-text reads; `fault` may corrupt a remote batch. */
function stringAdapter ({ withLength = true, fault = null } = {}) {
  const a = {
    text: '',
    reads: 0,
    sets: 0,
    getText () { a.reads++; return a.text },
    setText (t) { a.sets++; a.text = t },
    applyRemote (changes) { a.text = applyChanges(a.text, changes); if (fault) a.text = fault(a.text) },
    onLocalChange () { return () => {} }
  }
  if (withLength) a.getLength = () => a.text.length
  return a
}

test('remote batches: lengths after each, the whole text only once typing pauses', async () => {
  const session = fakeSession()
  const ed = stringAdapter()
  const unbind = bindEditor(session, ed, { checkDelayMs: 50 })
  const readsAtStart = ed.reads
  for (let i = 0; i < 200; i++) session.remote([{ pos: ed.text.length, delete: 0, insert: `x${i};` }])
  assert.equal(ed.reads, readsAtStart, 'no whole-text read while remote keystrokes arrive')
  assert.equal(ed.text, session.room.code())
  await waitFor(() => ed.reads > readsAtStart, { timeoutMs: 5000, what: () => `reads ${ed.reads}` })
  assert.equal(ed.reads, readsAtStart + 1, 'one whole-text comparison after the pause')
  assert.equal(ed.sets, 1, 'nothing to repair')
  unbind()
})

test('an adapter that loses a character is repaired at once', () => {
  const session = fakeSession()
  // Drops the last character of every remote batch: the lengths differ.
  const ed = stringAdapter({ fault: (t) => t.slice(0, -1) })
  const unbind = bindEditor(session, ed, { checkDelayMs: 60_000 })
  session.remote([{ pos: 0, delete: 0, insert: 'fn main() {}' }])
  assert.equal(ed.text, 'fn main() {}')
  assert.equal(session.room.code(), 'fn main() {}')
  unbind()
})

test('an adapter that garbles a character (same length) is repaired when typing pauses', async () => {
  const session = fakeSession()
  const ed = stringAdapter({ fault: (t) => t.replace('b', 'X') })
  const unbind = bindEditor(session, ed, { checkDelayMs: 30 })
  session.remote([{ pos: 0, delete: 0, insert: 'abc' }])
  assert.equal(ed.text, 'aXc', 'the fault took effect (same length: not caught by the length check)')
  await waitFor(() => ed.text === 'abc', { timeoutMs: 5000, what: () => `editor has ${JSON.stringify(ed.text)}` })
  assert.equal(session.room.codeLength(), 3)
  unbind()
})

test('while remote batches keep coming, the whole texts are still compared every checkEveryMs', async () => {
  const session = fakeSession()
  const ed = stringAdapter({ fault: (t) => t.replace('b', 'X') })
  const unbind = bindEditor(session, ed, { checkDelayMs: 60_000, checkEveryMs: 40 })
  session.remote([{ pos: 0, delete: 0, insert: 'abc' }])
  assert.equal(ed.text, 'aXc')
  // A batch every 5 ms, never a pause long enough for the idle check.
  const deadline = Date.now() + 2000
  while (Date.now() < deadline && ed.text.startsWith('aX')) {
    await new Promise((r) => setTimeout(r, 5))
    session.remote([{ pos: ed.text.length, delete: 0, insert: 'z' }])
  }
  assert.ok(ed.text.startsWith('abc'), `repaired while typing went on: ${ed.text.slice(0, 10)}`)
  assert.equal(ed.text, session.room.code())
  unbind()
})

test('an adapter without getLength compares whole texts after every batch', () => {
  const session = fakeSession()
  const ed = stringAdapter({ withLength: false, fault: (t) => t.replace('b', 'X') })
  const unbind = bindEditor(session, ed)
  session.remote([{ pos: 0, delete: 0, insert: 'abc' }])
  assert.equal(ed.text, 'abc')
  unbind()
})

test('unbinding cancels a pending check', async () => {
  const session = fakeSession()
  const ed = stringAdapter({ fault: (t) => t.replace('b', 'X') })
  const unbind = bindEditor(session, ed, { checkDelayMs: 20 })
  session.remote([{ pos: 0, delete: 0, insert: 'abc' }])
  unbind()
  await new Promise((r) => setTimeout(r, 100))
  assert.equal(ed.text, 'aXc', 'no check ran after unbinding')
})
