// The in-page half of bench/browser.mjs: Monaco editors bound either to an ArenaSession
// (our monaco adapter + bindEditor + the WASM room) or to Yjs (y-monaco + y-websocket),
// probes that time each piece with performance.now(), and a keystroke driver. Node drives
// it through window.bench (page.evaluate). Served by browser.mjs's own static server with
// COOP/COEP headers: a cross-origin-isolated page gets 5 µs timers instead of 100 µs.
import { init, ArenaSession, bindEditor, monacoAdapter, verifySignature } from '/pkg/index.js'

const now = () => performance.now()
const wall = () => performance.timeOrigin + performance.now()
let monaco = null
let Yb = null
const editors = []
// BENCH_DIAG (browser.mjs): where the slow keystrokes' time went. Off in a normal run.
let diag = false
let wasmMemory = null
const span = (m, name, t0, t1) => { if (diag) m.spans.push([name, t0, t1]) }

function loadMonaco () {
  return new Promise((resolve, reject) => {
    window.MonacoEnvironment = { getWorkerUrl: () => '/vendor/monaco-worker.js' }
    const script = document.createElement('script')
    script.src = '/vendor/monaco/vs/loader.js'
    script.onerror = () => reject(new Error('no Monaco at /vendor/monaco'))
    script.onload = () => {
      window.require.config({ paths: { vs: '/vendor/monaco/vs' } })
      window.require(['vs/editor/editor.main'], () => resolve(window.monaco), reject)
    }
    document.head.appendChild(script)
  })
}

/** The smallest step performance.now() takes, in µs. */
function timerResolutionUs () {
  let best = Infinity
  for (let i = 0; i < 200; i++) {
    const a = now()
    let b = now()
    while (b === a) b = now()
    best = Math.min(best, b - a)
  }
  return best * 1000
}

const until = async (pred, what, timeoutMs = 20_000) => {
  const deadline = Date.now() + timeoutMs
  while (!pred()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for ' + what)
    await new Promise((r) => setTimeout(r, 10))
  }
}

function makeEditor (label) {
  const box = document.createElement('div')
  box.innerHTML = `<div style="font:12px sans-serif">${label}</div>`
  const el = document.createElement('div')
  el.style.cssText = 'width:620px;height:360px;border:1px solid #ccc'
  box.append(el)
  document.getElementById('editors').append(box)
  return monaco.editor.create(el, { value: '', language: 'rust', minimap: { enabled: false }, automaticLayout: false, fontSize: 12 })
}

/** Per-keystroke counters, reset before each keystroke. */
const fresh = () => ({
  t0: 0, tSync: 0, tEnd: 0, firstContent: 0, content: 0, sel: 0, c0: 0, s0: 0, inSel: false,
  wasmApply: 0, sealTask: 0, wasmSeal: 0, presence: 0, inContent: false, inTask: false,
  sendDoc: 0, sendOther: 0, sendTask: 0, sealsElsewhere: 0, sealElsewhere: 0,
  spans: diag ? [] : null, grewApply: 0, grewSeal: 0
})

/** Timing listeners around the binding's own: `before` ones go first, `after` ones last
 *  (Monaco calls listeners in the order they were added). */
function probe (E) {
  const model = E.editor.getModel()
  model.onDidChangeContent(() => { E.m.c0 = now(); E.m.inContent = true; if (!E.m.firstContent) E.m.firstContent = E.m.c0 })
  E.editor.onDidChangeCursorSelection(() => { E.m.s0 = now(); E.m.inSel = true })
  return () => {
    model.onDidChangeContent(() => { const t = now(); E.m.content += t - E.m.c0; E.m.inContent = false; span(E.m, 'content', E.m.c0, t) })
    E.editor.onDidChangeCursorSelection(() => { const t = now(); E.m.sel += t - E.m.s0; E.m.inSel = false; span(E.m, 'sel', E.m.s0, t) })
  }
}

/** Wraps a method of one object (own property shadows the prototype's) to time it. */
function timeMethod (obj, name, add) {
  const orig = obj?.[name]
  if (typeof orig !== 'function') return console.warn(`bench: no ${name} to time`)
  obj[name] = function (...args) {
    const t = now()
    try { return orig.apply(this, args) } finally { add(now() - t, args, t) }
  }
}

// Remote-side probes (latency run): arrivals in the model and the frame after.
function watchArrivals (E) {
  const model = E.editor.getModel()
  E.arrivals = []
  E.frames = []
  model.onDidChangeContent(() => {
    const len = model.getValueLength()
    E.arrivals.push({ len, t: wall() })
    requestAnimationFrame(() => E.frames.push({ len, t: wall() }))
  })
}

async function setupArena ({ server, room, token, name, text, expect }) {
  const session = new ArenaSession({ server, room, token, name, color: '#e11d48' })
  await until(() => session.status === 'online', `${name} online`)
  if (text != null) {
    await new Promise((r) => setTimeout(r, 200)) // catch-up of the fresh room
    session.edit([{ pos: 0, delete: session.code.length, insert: text }])
    session.flush()
  } else {
    await until(() => session.code === expect, `${name} catch-up`)
  }
  const E = { kind: 'arena', name, session, m: fresh(), remote: [], remoteWasm: [], remoteCode: [] }
  E.editor = makeEditor(`${name}: arena-web (monaco adapter + WASM)`)
  const afterProbe = probe(E)
  bindEditor(session, monacoAdapter(E.editor, monaco))
  afterProbe()
  // The keystroke's part: the WASM apply. The task after it: seal (sign), sends, presence.
  timeMethod(session.room, 'applyEdit', (d) => { E.m.wasmApply += d })
  // A frame that arrives before the seal task seals first (session._receive): counted too.
  timeMethod(session.room, 'seal', (d, _, t) => {
    E.m.wasmSeal += d
    if (!E.m.inTask) { E.m.sealsElsewhere++; E.m.sealElsewhere += d; span(E.m, 'sealElsewhere', t, t + d) }
  })
  const task = session._sealTask
  session._sealTask = function () {
    const t = now()
    E.m.inTask = true
    try { return task.call(this) } finally { const t1 = now(); E.m.inTask = false; E.m.sealTask += t1 - t; span(E.m, 'sealTask', t, t1) }
  }
  if (diag) {
    // Whether the WASM memory grew inside a call (outside the timed windows: wrapped around them).
    for (const [name, field] of [['applyEdit', 'grewApply'], ['seal', 'grewSeal']]) {
      const timed = session.room[name]
      session.room[name] = function (...args) {
        const before = wasmMemory.buffer.byteLength
        try { return timed.apply(this, args) } finally { E.m[field] += wasmMemory.buffer.byteLength - before }
      }
    }
  }
  timeMethod(session, '_presenceFrame', (d) => { E.m.presence += d })
  timeMethod(session.transport, 'send', (d, [f]) => {
    if (E.m.inTask) E.m.sendTask += d
    if (f?.[0] === 100) E.m.sendDoc += d; else E.m.sendOther += d
  })
  timeMethod(session.room, 'receive', (d) => { E.m.remoteWasm = (E.m.remoteWasm ?? 0) + d })
  timeMethod(session.room, 'code', (d) => { E.m.remoteCode = (E.m.remoteCode ?? 0) + d })
  // Remote apply cost: a received frame that carried code changes, start to editor shown.
  const receive = session._receive
  session._receive = function (...args) {
    const v = E.editor.getModel().getVersionId()
    const t = now()
    E.m.remoteWasm = 0
    E.m.remoteCode = 0
    try { return receive.apply(this, args) } finally {
      if (E.editor.getModel().getVersionId() !== v) { E.remote.push(now() - t); E.remoteWasm.push(E.m.remoteWasm); E.remoteCode.push(E.m.remoteCode) }
    }
  }
  editors.push(E)
  return editors.length - 1
}

async function setupYjs ({ ws, room, token, name, text, expect }) {
  const { Y, WebsocketProvider, MonacoBinding } = Yb
  const doc = new Y.Doc()
  const ytext = doc.getText('code')
  const provider = new WebsocketProvider(ws + '/yws', room, doc, { params: { token }, disableBc: true })
  await until(() => provider.synced, `${name} synced`)
  if (text != null) {
    doc.transact(() => { ytext.delete(0, ytext.length); ytext.insert(0, text) })
  } else {
    await until(() => ytext.toString() === expect, `${name} catch-up`)
  }
  provider.awareness.setLocalStateField('user', { name, color: '#2563eb' })
  const E = { kind: 'yjs', name, doc, provider, m: fresh(), remote: [] }
  E.editor = makeEditor(`${name}: Yjs + y-monaco + y-websocket`)
  E.editor.getModel().setValue(ytext.toString())
  E.editor.getModel().setEOL(monaco.editor.EndOfLineSequence.LF)
  let t0 = 0
  doc.on('beforeAllTransactions', () => { t0 = now() }) // before y-monaco's own handler
  const afterProbe = probe(E)
  E.binding = new MonacoBinding(ytext, E.editor.getModel(), new Set([E.editor]), provider.awareness)
  afterProbe()
  doc.on('afterAllTransactions', (_doc, txns) => { if (txns[0]?.origin === provider) E.remote.push(now() - t0) })
  // The update's message is sent inside y-monaco's change handler; awareness outside it.
  timeMethod(provider.ws, 'send', (d) => { if (E.m.inContent) E.m.sendDoc += d; else E.m.sendOther += d })
  editors.push(E)
  return editors.length - 1
}

function cursorAfter (inverse) {
  const r = inverse[0].range
  return [new monaco.Selection(r.endLineNumber, r.endColumn, r.endLineNumber, r.endColumn)]
}

/** One keystroke: a splice {pos, del, ins} (UTF-16) through Monaco's executeEdits with the
 *  caret after it, as typing does; resolves once the keystroke's microtasks ran (arena's
 *  seal task comes after: see settle). */
function key (E, op) {
  const model = E.editor.getModel()
  const s = model.getPositionAt(op.pos)
  const e = op.del ? model.getPositionAt(op.pos + op.del) : s
  const range = new monaco.Range(s.lineNumber, s.column, e.lineNumber, e.column)
  E.m = fresh()
  const m = E.m
  return new Promise((resolve) => {
    m.t0 = now()
    E.editor.executeEdits('bench', [{ range, text: op.ins, forceMoveMarkers: true }], cursorAfter)
    m.tSync = now()
    queueMicrotask(() => { m.tEnd = now(); resolve(m) })
  })
}

const channel = new MessageChannel()
const waiting = []
channel.port1.onmessage = () => waiting.shift()?.()
/** Yields to the event loop (a new task, no timer clamping): sockets and rendering run. */
const nextTask = () => new Promise((r) => { waiting.push(r); channel.port2.postMessage(0) })

function sample (E, m) {
  return {
    monaco: m.firstContent - m.t0, // Monaco applies the edit before its change event
    content: m.content, // arena: adapter + session.edit (WASM applyEdit); Yjs: y-monaco, txn, encode, send
    sel: m.sel, // arena: records the selection; Yjs: awareness encoded and sent
    wasmApply: m.wasmApply,
    sealTask: m.sealTask, // arena, the task after the keystroke: seal, sends, presence
    wasmSeal: m.wasmSeal,
    sealsElsewhere: m.sealsElsewhere,
    presence: m.presence,
    sendDoc: m.sendDoc,
    sendOther: m.sendOther,
    sendTask: m.sendTask,
    keystroke: m.content + m.sel, // the bindings' handlers inside the keystroke's task
    local: m.content + m.sel + m.sealTask + m.sealElsewhere, // everything the bindings spend on a keystroke
    task: m.tEnd - m.t0
  }
}

/** A fixed piece of CPU work (no allocation, no I/O): the machine's noise floor. */
function spin (n) {
  let x = 1
  for (let i = 0; i < n; i++) x = (Math.imul(x, 31) + i) | 0
  return x
}
let spinN = 0
let spinSink = 0
/** The iteration count for which spin() takes `us` (median of 31 tries). */
function calibrateSpin (us) {
  let n = 10000
  for (let round = 0; round < 6; round++) {
    const ts = []
    for (let i = 0; i < 31; i++) { const t = now(); spinSink ^= spin(n); ts.push(now() - t) }
    ts.sort((a, b) => a - b)
    n = Math.max(1000, Math.round(n * us / 1000 / Math.max(ts[15], 0.005)))
  }
  return n
}

let paceNext = 0
/** Typing pace: waits until `ms` after the previous keystroke was due (a keystroke that
 *  is late does not make the next ones come faster). */
async function pace (ms) {
  const t = now()
  if (paceNext === 0 || paceNext < t) paceNext = t
  const wait = paceNext - t
  paceNext += ms
  if (wait > 0) await new Promise((r) => setTimeout(r, wait))
}

/** Waits (in tasks) until an arena editor's seal task ran. */
async function settle (E) {
  for (let i = 0; i < 100 && E.kind === 'arena' && E.session.taskQueued; i++) await nextTask()
}

window.bench = {
  async boot () {
    monaco = await loadMonaco()
    Yb = await import('/bench/yjs-bundle.js')
    wasmMemory = (await init()).memory
    return { isolated: globalThis.crossOriginIsolated, resolutionUs: timerResolutionUs(), userAgent: navigator.userAgent }
  },
  setupArena,
  setupYjs,
  text: (i) => editors[i].editor.getModel().getValue(),
  docText: (i) => (editors[i].kind === 'arena' ? editors[i].session.code : editors[i].doc.getText('code').toString()),

  /** The same ops through editors `ids`, interleaved and alternating which goes first;
   *  each keystroke is its own task. Returns per-editor samples and signing samples. */
  /** BENCH_DIAG: before the setup calls. */
  diagnose () { diag = true },

  async local (ids, ops, { signEvery = 1, paceMs = 0, fixedUs = 200 } = {}) {
    if (diag) performance.mark('bench-sync')
    const sync = diag ? performance.getEntriesByName('bench-sync')[0].startTime : 0
    const out = ids.map(() => [])
    const sign = []
    const verify = []
    const fixed = []
    if (fixedUs > 0 && !spinN) spinN = calibrateSpin(fixedUs)
    const msg = new Uint8Array(150).fill(7) // the size of an envelope's signed bytes
    const arena = ids.map((i) => editors[i]).find((E) => E.kind === 'arena')
    const signProto = Object.getPrototypeOf(arena.session.room).sign
    const pub = arena.session.room.publicKey()
    for (let k = 0; k < ops.length; k++) {
      const order = k % 2 ? [...ids.keys()] : [...ids.keys()].reverse()
      for (const j of order) {
        const E = editors[ids[j]]
        if (paceMs > 0) await pace(paceMs)
        const d = diag && { k, mem0: wasmMemory.buffer.byteLength, heap0: performance.memory?.usedJSHeapSize ?? 0, start: now() }
        const m = await key(E, ops[k])
        await nextTask()
        await settle(E)
        const s = sample(E, m)
        if (d) Object.assign(s, d, { end: now(), mem1: wasmMemory.buffer.byteLength, heap1: performance.memory?.usedJSHeapSize ?? 0, spans: m.spans, grewApply: m.grewApply, grewSeal: m.grewSeal })
        out[j].push(s)
      }
      if (spinN) {
        const t = now()
        spinSink ^= spin(spinN)
        fixed.push(now() - t)
        await nextTask()
      }
      if (k % signEvery === 0) {
        const t = now()
        const sig = signProto.call(arena.session.room, msg)
        sign.push(now() - t)
        const t1 = now()
        if (!verifySignature(pub, msg, sig)) throw new Error('bench: signature did not verify')
        verify.push(now() - t1)
        await nextTask()
      }
    }
    await new Promise((r) => setTimeout(r, 50))
    return { samples: out, sign, verify, fixed, sync }
  },

  watchArrivals: (i) => watchArrivals(editors[i]),
  arrivals: (i) => ({ arrivals: editors[i].arrivals, frames: editors[i].frames, remote: editors[i].remote, remoteWasm: editors[i].remoteWasm ?? [], remoteCode: editors[i].remoteCode ?? [] }),
  /** One keystroke appending `ch` at the end; returns the sender's wall clock before it
   *  and the length after it. */
  async append (i, ch) {
    const E = editors[i]
    const len = E.editor.getModel().getValueLength()
    const t = wall()
    await key(E, { pos: len, del: 0, ins: ch })
    return { t, len: len + ch.length }
  }
}
