// The browser benchmark of arena-web against Yjs + y-monaco, in headless Chromium (Debian's
// chromium through playwright-core) against the real arena-bootstrap binary:
//
//   node examples/web-room/bench/browser.mjs
//
// 1. Local keystroke cost, in ONE page: the same keystrokes (a prefix of the rustcode
//    editing trace, or a synthetic typing script without it) go through two Monaco editors,
//    interleaved one keystroke at a time with alternating order: (a) our monaco adapter +
//    bindEditor + ArenaSession (WASM room, signed envelopes) and (b) Yjs + y-monaco +
//    y-websocket. Both are online in rooms of their own on the node, with presence (the
//    caret) as in a real room. Timed with performance.now() in a cross-origin-isolated page
//    (5 µs timer resolution).
// 2. Keystroke-to-remote-render latency: two pages per stack in one room through the node,
//    arena (/yws, our envelopes) and Yjs (/yws, y-websocket), keystrokes interleaved.
// 3. Sizes: arena_web_bg.wasm raw and gzip -9, the JS glue, and the Yjs stack minified.
//
// Prints a markdown report and writes it to benches/RESULTS-web.md. Needs
// examples/web-room/dist (scripts/build-web-room.sh), target/debug/arena-bootstrap, and
// /usr/bin/chromium (scripts/install-chromium.sh). Environment: BENCH_KEYS (keystrokes of
// the local runs, default 3000), BENCH_PACE_MS (the paced run: one keystroke in the page
// every so many ms, default 16; 0 skips it), BENCH_NODE_NICE (the node's niceness, default 19),
// BENCH_LATENCY_KEYS (default 300), BENCH_OUT (report path),
// ARENA_TRACES_DIR (default ../shared/data/traces), ARENA_BOOTSTRAP_BIN, CHROMIUM.
// BENCH_PIN=1 (Linux, taskset): during the two local runs the page's renderer main thread
// gets CPU 0 to itself and every other thread of Chromium, the node and this script CPU 1 (a
// machine with a core to spare for the page); the report says so.
// BENCH_DIAG=1: a diagnostic run, not a measurement (a trace is recorded meanwhile): for the
// slowest 2% of keystrokes, which part took the time, the GC events (CDP tracing) inside the
// bindings' timed windows, and whether the WASM memory grew; printed to stderr and written
// as JSON to BENCH_DIAG_OUT (default target/web-bench/diag.json).
import { createServer } from 'node:http'
import { readFileSync, readdirSync, existsSync, mkdirSync, writeFileSync, statSync } from 'node:fs'
import { join, extname, resolve, normalize } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { execFileSync } from 'node:child_process'
import { cpus, totalmem } from 'node:os'
import { startServer, createRoom, launchChromium, repo, distDir, pkgDir } from '../tests/support.mjs'

const room = join(repo, 'examples/web-room')
const benchDir = join(room, 'bench')
const buildDir = join(repo, 'target/web-bench')
const KEYS = Number(process.env.BENCH_KEYS ?? 3000)
const LAT_KEYS = Number(process.env.BENCH_LATENCY_KEYS ?? 300)
const LAT_INTERVAL_MS = 40
// The second local run types at a pace: one keystroke in the page every PACE_MS (each
// editor one every 2 × PACE_MS: 31 keystrokes/s at the default, faster than anyone types).
const PACE_MS = Number(process.env.BENCH_PACE_MS ?? 16)
// The node shares this machine's cores with the browser here (in use it runs elsewhere):
// at the lowest priority it takes less CPU from the page it serves. Both stacks use it.
const NODE_NICE = Number(process.env.BENCH_NODE_NICE ?? 19)
const WARMUP = 100
const out = process.env.BENCH_OUT ?? join(repo, 'benches/RESULTS-web.md')
const DIAG = process.env.BENCH_DIAG === '1'
const PIN = process.env.BENCH_PIN === '1'
// Two frames per keystroke (edit + caret) at bench speed is over the node's default
// 500 messages/s per connection; the limit is not what this measures.
process.env.ARENA_RATE_LIMIT ??= '100000'

const log = (...a) => console.error('bench:', ...a)

// ---- the keystrokes ---------------------------------------------------------------------

/** UTF-16 offset of code point `cp` in `s`. */
function u16 (s, cp) {
  let i = 0
  for (let n = 0; n < cp && i < s.length; n++) i += s.codePointAt(i) > 0xffff ? 2 : 1
  return i
}

/** {initial, ops: [{pos, del, ins}] (UTF-16), source}: the rustcode trace's first txn (a
 *  25 KB paste) as the starting buffer, then its next KEYS patches as keystrokes. */
function keystrokes () {
  const dir = process.env.ARENA_TRACES_DIR ?? resolve(repo, '../shared/data/traces')
  const file = join(dir, 'rustcode.json.gz')
  if (existsSync(file)) {
    const trace = JSON.parse(gunzipSync(readFileSync(file)))
    const patches = trace.txns.flatMap((t) => t.patches)
    let doc = ''
    const apply = ([pos, del, ins]) => {
      const a = u16(doc, pos)
      const b = u16(doc, pos + del)
      doc = doc.slice(0, a) + ins + doc.slice(b)
      return { pos: a, del: b - a, ins }
    }
    for (const p of trace.txns[0].patches) apply(p)
    const initial = doc
    const ops = patches.slice(trace.txns[0].patches.length, trace.txns[0].patches.length + KEYS).map(apply)
    return { initial, ops, expected: doc, source: `rustcode.json.gz (editing-traces, CC-BY 4.0): first txn (${initial.length} chars) as the buffer, then ${ops.length} patches` }
  }
  log(`SKIPPED the trace: ${file} missing; using a synthetic typing script`)
  const line = 'fn step(state: &mut State, input: u32) -> u32 { state.total += input; state.total }\n'
  const initial = line.repeat(300)
  let doc = initial
  const ops = []
  let at = Math.floor(doc.length / 2)
  for (let i = 0; ops.length < KEYS; i++) {
    const ch = line[i % line.length]
    if (i % 23 === 22 && at > 0) { ops.push({ pos: at - 1, del: 1, ins: '' }); at--; doc = doc.slice(0, at) + doc.slice(at + 1); continue }
    ops.push({ pos: at, del: 0, ins: ch })
    doc = doc.slice(0, at) + ch + doc.slice(at)
    at++
  }
  return { initial, ops, expected: doc, source: `synthetic typing script (${ops.length} keystrokes: inserts, newlines, a delete every 23rd)` }
}

// ---- serving the page -------------------------------------------------------------------

/** Bundles stock yjs + y-websocket + y-monaco (y-monaco's Monaco import → window.monaco). */
async function bundleYjs () {
  const esbuild = await import(join(repo, 'node_modules/esbuild/lib/main.js'))
  const monacoShim = {
    name: 'monaco-global',
    setup (b) {
      b.onResolve({ filter: /^monaco-editor(\/|$)/ }, () => ({ path: 'monaco', namespace: 'monaco-global' }))
      b.onLoad({ filter: /.*/, namespace: 'monaco-global' }, () => ({
        contents: 'const m = globalThis.monaco; export const Selection = m.Selection, SelectionDirection = m.SelectionDirection, Range = m.Range, editor = m.editor',
        loader: 'js'
      }))
    }
  }
  mkdirSync(buildDir, { recursive: true })
  await esbuild.build({
    entryPoints: [join(benchDir, 'yjs-entry.js')], bundle: true, format: 'esm', minify: true, logLevel: 'warning',
    outfile: join(buildDir, 'yjs-bundle.js'), nodePaths: [join(repo, 'node_modules')], plugins: [monacoShim]
  })
  // Sizes for the report: Yjs alone, and the Yjs stack a room needs; our JS glue.
  const size = async (contents, external = []) => {
    const r = await esbuild.build({ stdin: { contents, resolveDir: room }, bundle: true, format: 'esm', minify: true, write: false, external, nodePaths: [join(repo, 'node_modules')], plugins: [monacoShim], logLevel: 'silent' })
    return r.outputFiles[0].contents
  }
  return {
    yjs: await size("export * from 'yjs'"),
    yjsStack: await size("export * from 'yjs'; export * from 'y-websocket'; export * from 'y-monaco'"),
    glue: await size(`export * from ${JSON.stringify(join(pkgDir, 'index.js'))}`)
  }
}

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm', '.json': 'application/json', '.ttf': 'font/ttf', '.svg': 'image/svg+xml' }

/** A static server for the bench page (bench/ and target/web-bench/ at /bench/, the room's
 *  dist for Monaco and the package), with the headers that make the page cross-origin
 *  isolated. The page talks to arena-bootstrap over WebSocket only. */
function servePage () {
  const roots = [['/bench/', [benchDir, buildDir]], ['/', [distDir]]]
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname)
    for (const [prefix, dirs] of roots) {
      if (!path.startsWith(prefix)) continue
      for (const dir of dirs) {
        const file = normalize(join(dir, path.slice(prefix.length)))
        if (!file.startsWith(dir) || !existsSync(file) || !statSync(file).isFile()) continue
        res.writeHead(200, {
          'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
          'cross-origin-opener-policy': 'same-origin',
          'cross-origin-embedder-policy': 'require-corp',
          'cross-origin-resource-policy': 'same-origin',
          'cache-control': 'no-store'
        })
        res.end(readFileSync(file))
        return
      }
    }
    res.writeHead(404).end()
  })
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r({ url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() })))
}

// ---- statistics -------------------------------------------------------------------------

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length ? s[Math.min(s.length - 1, Math.floor(s.length * p))] : NaN
}
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length
const us = (ms) => (Number.isFinite(ms) ? `${(ms * 1000).toFixed(0)} µs` : '–')
const msf = (x) => (Number.isFinite(x) ? `${x.toFixed(1)} ms` : '–')
const stat = (xs) => ({ p50: pct(xs, 0.5), p99: pct(xs, 0.99), mean: mean(xs), max: Math.max(...xs) })
const row = (name, a, b, f = us) => {
  const s = (xs) => (xs ? stat(xs) : null)
  const A = s(a)
  const B = s(b)
  const cell = (x) => (x ? `${f(x.p50)} / ${f(x.p99)} / ${f(x.mean)}` : '–')
  return `| ${name} | ${cell(A)} | ${cell(B)} |`
}

// ---- BENCH_DIAG --------------------------------------------------------------------------

const GC_EVENT = /^(MinorGC|MajorGC|V8\.GC|V8\.Scavenge|V8\.GCScavenger|V8\.GCFinalizeMC|V8\.GCIncrementalMarking|BlinkGC|CppGC)/

/** CDP tracing of the page's GC events; stop() resolves to the trace events. */
async function startTrace (p) {
  await p.evaluate(() => window.bench.diagnose())
  const cdp = await p.context().newCDPSession(p)
  const events = []
  cdp.on('Tracing.dataCollected', (e) => events.push(...e.value))
  await cdp.send('Tracing.start', {
    transferMode: 'ReportEvents',
    traceConfig: { includedCategories: ['blink.user_timing', 'devtools.timeline', 'v8', 'disabled-by-default-v8.gc', 'toplevel'] }
  })
  return {
    async stop () {
      const done = new Promise((r) => cdp.once('Tracing.tracingComplete', r))
      await cdp.send('Tracing.end')
      await done
      return events
    }
  }
}

/** The slowest 2% of each editor's keystrokes: their parts, GC inside their timed windows,
 *  WASM memory growth; the same counts over all keystrokes for comparison. */
function diagnose (local, events) {
  const mark = events.find((e) => e.name === 'bench-sync')
  if (!mark) throw new Error('diag: no bench-sync mark in the trace')
  const offsetMs = mark.ts / 1000 - local.sync // trace clock (µs) − performance.now() (ms)
  const gcs = events
    .filter((e) => e.pid === mark.pid && e.tid === mark.tid && e.ph === 'X' && GC_EVENT.test(e.name))
    .map((e) => ({ name: e.name, t0: e.ts / 1000 - offsetMs, t1: (e.ts + e.dur) / 1000 - offsetMs }))
  // The main thread's tasks with their thread (CPU) time: wall − CPU is time spent off the CPU.
  const tasks = events
    .filter((e) => e.pid === mark.pid && e.tid === mark.tid && e.ph === 'X' && e.tdur != null && /RunTask$/.test(e.name))
    .map((e) => ({ t0: e.ts / 1000 - offsetMs, t1: (e.ts + e.dur) / 1000 - offsetMs, offCpu: (e.dur - e.tdur) / 1000 }))
    .sort((a, b) => a.t0 - b.t0)
  // Nested GC events (V8.GC_* inside MinorGC): count each stretch of time once.
  const outer = gcs.filter((g) => !gcs.some((h) => h !== g && h.t0 <= g.t0 && h.t1 >= g.t1 && (h.t1 - h.t0) > (g.t1 - g.t0)))
  const inSpans = (x) => {
    let t = 0
    const names = new Set()
    for (const [, a, b] of x.spans ?? []) {
      for (const g of outer) {
        const o = Math.min(b, g.t1) - Math.max(a, g.t0)
        if (o > 0) { t += o; names.add(g.name) }
      }
    }
    // Off-CPU time of the tasks our windows ran in (an upper bound for the windows
    // themselves: the keystroke's task also runs Monaco).
    let offCpu = 0
    let sealOffCpu = 0
    for (const task of tasks) {
      const hit = (x.spans ?? []).filter(([, a, b]) => a < task.t1 && b > task.t0)
      if (!hit.length) continue
      offCpu += task.offCpu
      if (hit.some(([n]) => n === 'sealTask')) sealOffCpu += task.offCpu
    }
    return { gcMs: t, gcNames: [...names], offCpu, sealOffCpu }
  }
  const report = {}
  for (const [j, name] of [[0, 'arena'], [1, 'yjs']]) {
    const xs = local.samples[j].slice(WARMUP).map((x) => ({ ...x, cost: name === 'arena' ? x.local : x.keystroke, ...inSpans(x) }))
    const slow = [...xs].sort((a, b) => b.cost - a.cost).slice(0, Math.ceil(xs.length * 0.02))
    const count = (list) => ({
      n: list.length,
      withGc: list.filter((x) => x.gcMs > 0).length,
      gcMsTotal: list.reduce((a, x) => a + x.gcMs, 0),
      costMsTotal: list.reduce((a, x) => a + x.cost, 0),
      memGrew: list.filter((x) => x.mem1 !== x.mem0).length,
      heapDropped: list.filter((x) => x.heap1 < x.heap0).length,
      offCpuOver100us: list.filter((x) => x.offCpu > 0.1).length,
      offCpuMsTotal: list.reduce((a, x) => a + x.offCpu, 0)
    })
    report[name] = { all: count(xs), slow: count(slow), slowest: slow.map((x) => ({
      k: x.k, cost: x.cost, gcMs: x.gcMs, gcNames: x.gcNames, content: x.content, wasmApply: x.wasmApply, sel: x.sel,
      sealTask: x.sealTask, wasmSeal: x.wasmSeal, presence: x.presence, sendTask: x.sendTask, sealsElsewhere: x.sealsElsewhere,
      offCpu: x.offCpu, sealOffCpu: x.sealOffCpu, memGrew: x.mem1 - x.mem0, grewApply: x.grewApply, grewSeal: x.grewSeal, heapDelta: x.heap1 - x.heap0
    })) }
    const f = (x) => (x * 1000).toFixed(0).padStart(5)
    log(`diag ${name}: all ${JSON.stringify(report[name].all)}; slowest 2% ${JSON.stringify(report[name].slow)}`)
    log(`diag ${name}: slowest: k cost | gc-in-window | content(wasmApply) sel | sealTask(wasmSeal presence sends) elsewhere | memGrew heapΔ | off-CPU in its tasks (seal task)`)
    for (const x of report[name].slowest) {
      log(`  ${String(x.k).padStart(4)} ${f(x.cost)} | ${f(x.gcMs)} ${x.gcNames.join(',')} | ${f(x.content)}(${f(x.wasmApply)}) ${f(x.sel)} | ${f(x.sealTask)}(${f(x.wasmSeal)} ${f(x.presence)} ${f(x.sendTask)}) ${x.sealsElsewhere} | ${x.memGrew} ${x.grewApply}/${x.grewSeal} ${x.heapDelta} | ${f(x.offCpu)} (${f(x.sealOffCpu)})`)
    }
  }
  const file = process.env.BENCH_DIAG_OUT ?? join(buildDir, 'diag.json')
  writeFileSync(file, JSON.stringify({ report, gcEvents: outer.length, tasks: tasks.length }, null, 1))
  log(`diag: ${outer.length} GC events on the page's main thread during the run; wrote ${file}`)
}

// ---- BENCH_PIN ---------------------------------------------------------------------------

/** Every thread of `pids` and their descendants (here: this script, so Chromium and the
 *  node) to CPU 1 and the renderers' main threads to CPU 0 (`on`), or all of them back to
 *  every CPU (`!on`). Returns what it pinned. */
async function pin (browser, pids, on) {
  const renderers = new Set()
  if (on) {
    const cdp = await browser.newBrowserCDPSession()
    const { processInfo } = await cdp.send('SystemInfo.getProcessInfo')
    for (const p of processInfo) if (p.type === 'renderer') renderers.add(p.id)
    await cdp.detach()
    if (!renderers.size) throw new Error('BENCH_PIN: no renderer process found')
  }
  // The process tree under `pids` (Chromium's zygote, renderers, GPU and network processes).
  const parent = new Map()
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try { parent.set(Number(d), Number(readFileSync(`/proc/${d}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[1])) } catch {}
  }
  const tree = new Set(pids)
  for (let grew = true; grew;) {
    grew = false
    for (const [pid, pp] of parent) if (!tree.has(pid) && tree.has(pp)) { tree.add(pid); grew = true }
  }
  // Every thread of each process (taskset -a), then the renderers' main threads alone.
  let threads = 0
  const all = `0-${cpus().length - 1}`
  const taskset = (args) => { try { execFileSync('taskset', args, { stdio: 'ignore' }); return true } catch { return false } }
  for (const pid of tree) {
    if (taskset(['-apc', on ? '1' : all, String(pid)])) {
      try { threads += readdirSync(`/proc/${pid}/task`).length } catch {}
    }
  }
  for (const pid of renderers) if (!taskset(['-pc', '0', String(pid)])) threads = 0
  if (!threads) throw new Error('BENCH_PIN: taskset pinned no thread (is util-linux installed?)')
  return { renderers: [...renderers], processes: tree.size, threads }
}

// ---- main -------------------------------------------------------------------------------

const keys = keystrokes()
log(keys.source)
const sizes = await bundleYjs()
const wasmFile = join(pkgDir, 'arena_web_bg.wasm')
const wasmRaw = statSync(wasmFile).size
const wasmGz = execFileSync('gzip', ['-9c', wasmFile], { maxBuffer: 64 << 20 }).length
const gz = (buf) => execFileSync('gzip', ['-9c'], { input: buf, maxBuffer: 64 << 20 }).length

const bin = process.env.ARENA_BOOTSTRAP_BIN ?? join(repo, 'target/debug/arena-bootstrap')
const node = await startServer({ nice: NODE_NICE })
const page = await servePage()
const chromium = await launchChromium({ args: DIAG ? ['--enable-precise-memory-info'] : [] })
const problems = []
const wsBase = node.url.replace(/^http/, 'ws')
const report = []
try {
  const newPage = async (name) => {
    const context = await chromium.browser.newContext({ viewport: { width: 1300, height: 800 } })
    const p = await context.newPage()
    p.on('pageerror', (e) => problems.push(`${name}: ${e.message}`))
    p.on('console', (m) => { if (m.type() === 'error') problems.push(`${name} console: ${m.text()}`) })
    await p.goto(`${page.url}/bench/page.html`)
    await p.waitForFunction(() => window.bench)
    const info = await p.evaluate(() => window.bench.boot())
    return { p, info }
  }

  // 1. Local cost, one page, both stacks.
  const arenaRoom = await createRoom(node.url, { title: 'bench arena', language: 'rust' })
  const yjsRoom = await createRoom(node.url, { title: 'bench yjs', language: 'rust' })
  const one = await newPage('local')
  const trace = DIAG ? await startTrace(one.p) : null
  log(`page: crossOriginIsolated=${one.info.isolated}, timer resolution ${one.info.resolutionUs.toFixed(1)} µs, ${one.info.userAgent}`)
  const a = await one.p.evaluate((o) => window.bench.setupArena(o), { server: node.url, room: arenaRoom.room, token: arenaRoom.tokens.host, name: 'arena', text: keys.initial })
  const y = await one.p.evaluate((o) => window.bench.setupYjs(o), { ws: wsBase, room: yjsRoom.room, token: yjsRoom.tokens.host, name: 'yjs', text: keys.initial })
  let pinned = null
  if (PIN) {
    if (cpus().length < 2) throw new Error('BENCH_PIN needs 2 CPUs or more')
    pinned = await pin(chromium.browser, [process.pid], true)
    log(`pinned: renderer main thread(s) ${pinned.renderers.join(', ')} on CPU 0, ${pinned.threads} threads of ${pinned.processes} processes in all`)
  }
  log(`local run: ${keys.ops.length} keystrokes × 2 editors`)
  const t0 = Date.now()
  const local = await one.p.evaluate(({ ids, ops }) => window.bench.local(ids, ops), { ids: [a, y], ops: keys.ops })
  log(`local run took ${((Date.now() - t0) / 1000).toFixed(1)} s`)
  if (trace) diagnose(local, await trace.stop())
  for (const i of [a, y]) {
    const [text, doc] = await one.p.evaluate((i) => [window.bench.text(i), window.bench.docText(i)], i)
    if (text !== keys.expected || doc !== keys.expected) throw new Error(`editor ${i}: the replay did not produce the trace's text`)
  }
  const [A, Y] = local.samples.map((s) => s.slice(WARMUP))
  const col = (xs, k) => xs.map((x) => x[k])
  const sign = local.sign.slice(WARMUP)
  const signP50 = pct(sign, 0.5)
  const sealedElsewhere = A.filter((x) => x.sealsElsewhere > 0).length
  // Yjs's document path without the socket send of its update (reported on its own row).
  // Arena's keystroke path sends nothing; its document work finished in the seal task is
  // the WASM seal minus its signature (the neighbouring signing sample).
  const docA = col(A, 'content')
  const docY = Y.map((x) => x.content - x.sendDoc)
  const docSealedNoSign = A.map((x, i) => x.content + Math.max(0, x.wasmSeal - (sign[i] ?? signP50)))

  // 1b. The same keystrokes at a typing pace, two fresh editors in fresh rooms of the same page.
  let paced = null
  if (PACE_MS > 0) {
    const pa = await createRoom(node.url, { title: 'bench arena paced', language: 'rust' })
    const py = await createRoom(node.url, { title: 'bench yjs paced', language: 'rust' })
    const a2 = await one.p.evaluate((o) => window.bench.setupArena(o), { server: node.url, room: pa.room, token: pa.tokens.host, name: 'arena paced', text: keys.initial })
    const y2 = await one.p.evaluate((o) => window.bench.setupYjs(o), { ws: wsBase, room: py.room, token: py.tokens.host, name: 'yjs paced', text: keys.initial })
    log(`paced run: ${keys.ops.length} keystrokes × 2 editors, one every ${PACE_MS} ms in the page`)
    const t1 = Date.now()
    const run = await one.p.evaluate(({ ids, ops, paceMs }) => window.bench.local(ids, ops, { paceMs }), { ids: [a2, y2], ops: keys.ops, paceMs: PACE_MS })
    log(`paced run took ${((Date.now() - t1) / 1000).toFixed(1)} s`)
    for (const i of [a2, y2]) {
      const [text, doc] = await one.p.evaluate((i) => [window.bench.text(i), window.bench.docText(i)], i)
      if (text !== keys.expected || doc !== keys.expected) throw new Error(`editor ${i}: the paced replay did not produce the trace's text`)
    }
    const [PA, PY] = run.samples.map((s) => s.slice(WARMUP))
    paced = { A: PA, Y: PY, sign: run.sign.slice(WARMUP), fixed: run.fixed.slice(WARMUP) }
  }

  if (PIN) await pin(chromium.browser, [process.pid], false)

  // 2. Latency, two pages per stack, keystrokes interleaved.
  const latArena = await createRoom(node.url, { title: 'latency arena', language: 'rust' })
  const latYjs = await createRoom(node.url, { title: 'latency yjs', language: 'rust' })
  const start = keys.initial // the same 42 KB buffer: remote costs grow with it
  const pages = {}
  for (const name of ['arenaTx', 'arenaRx', 'yjsTx', 'yjsRx']) pages[name] = await newPage(name)
  const setup = (pg, fn, o) => pg.p.evaluate(([fn, o]) => window.bench[fn](o), [fn, o])
  await setup(pages.arenaTx, 'setupArena', { server: node.url, room: latArena.room, token: latArena.tokens.host, name: 'arena A', text: start })
  await setup(pages.arenaRx, 'setupArena', { server: node.url, room: latArena.room, token: latArena.tokens.candidate, name: 'arena B', expect: start })
  await setup(pages.yjsTx, 'setupYjs', { ws: wsBase, room: latYjs.room, token: latYjs.tokens.host, name: 'yjs A', text: start })
  await setup(pages.yjsRx, 'setupYjs', { ws: wsBase, room: latYjs.room, token: latYjs.tokens.candidate, name: 'yjs B', expect: start })
  await pages.arenaRx.p.evaluate(() => window.bench.watchArrivals(0))
  await pages.yjsRx.p.evaluate(() => window.bench.watchArrivals(0))
  await new Promise((r) => setTimeout(r, 500))
  log(`latency run: ${LAT_KEYS} keystrokes per stack, every ${LAT_INTERVAL_MS} ms, interleaved`)
  const sent = { arena: [], yjs: [] }
  const typed = 'let total = items.iter().map(|x| x * 2).sum::<u64>();\n'
  for (let k = 0; k < LAT_KEYS; k++) {
    const ch = typed[k % typed.length]
    const order = k % 2 ? ['arena', 'yjs'] : ['yjs', 'arena']
    for (const s of order) {
      sent[s].push(await pages[s + 'Tx'].p.evaluate((ch) => window.bench.append(0, ch), ch))
      await new Promise((r) => setTimeout(r, LAT_INTERVAL_MS / 2))
    }
  }
  await new Promise((r) => setTimeout(r, 1500))
  const latency = {}
  for (const s of ['arena', 'yjs']) {
    const got = await pages[s + 'Rx'].p.evaluate(() => window.bench.arrivals(0))
    const find = (list, len) => list.find((x) => x.len >= len)
    const model = []
    const frame = []
    let missing = 0
    for (const { t, len } of sent[s]) {
      const m = find(got.arrivals, len)
      const f = find(got.frames, len)
      if (!m) { missing++; continue }
      model.push(m.t - t)
      if (f) frame.push(f.t - t)
    }
    latency[s] = { model, frame, missing, remote: got.remote.slice(10), remoteWasm: got.remoteWasm.slice(10), remoteCode: got.remoteCode.slice(10) }
    const [tx, rx] = await Promise.all([pages[s + 'Tx'].p.evaluate(() => window.bench.text(0)), pages[s + 'Rx'].p.evaluate(() => window.bench.text(0))])
    if (tx !== rx) throw new Error(`${s}: the two pages did not converge: ${JSON.stringify(tx)} vs ${JSON.stringify(rx)} ${problems.join("; ")}`)
  }

  // ---- report ---------------------------------------------------------------------------
  const cpu = cpus()[0]?.model ?? 'unknown CPU'
  const machine = `${cpus().length} cores (${cpu}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ${one.info.userAgent.match(/Chrome\/[\d.]+/)?.[0] ?? 'Chromium'} headless, Node ${process.version}`
  const kib = (n) => `${(n / 1024).toFixed(1)} KiB`
  report.push(
    '# arena-web vs Yjs + y-monaco in headless Chromium',
    '',
    `\`node examples/web-room/bench/browser.mjs\` — ${new Date().toISOString().slice(0, 10)}, ${machine}.`,
    `Keystrokes: ${keys.source}; the first ${WARMUP} of each editor are warm-up and not counted.`,
    `Page cross-origin isolated: ${one.info.isolated} (performance.now() resolution ${one.info.resolutionUs.toFixed(0)} µs). Node: \`${bin.replace(repo + '/', '')}\`${/debug/.test(bin) ? ' (a debug build: server-side work in the latency rows is slower than in production; set ARENA_BOOTSTRAP_BIN to a release build)' : ''}${NODE_NICE ? `, at niceness ${NODE_NICE} (it shares the 2 cores with the browser here; BENCH_NODE_NICE=0 runs it at normal priority)` : ''}.`,
    ...(PIN ? ['**Pinned (BENCH_PIN=1)**: during the two local runs the page\'s renderer main thread had CPU 0 to itself; every other thread of Chromium, the node and the bench script ran on CPU 1 (a machine with a core to spare for the page). Not the headline numbers.', ''] : []),
    'p99 on a shared 2-core machine is dominated by preemption, on both sides (`BENCH_DIAG=1`: the slowest keystrokes\' extra time is time their tasks spent off the CPU; a GC falls into the timed windows of at most 4 of the slowest 2%); compare p50 and mean first.',
    '',
    '## Local cost per keystroke (one page, same keystrokes, interleaved)',
    '',
    'p50 / p99 / mean. Both editors are online (their own rooms on the node) and publish the',
    'caret, as in a room. "Monaco" is the editor applying the edit before its change event',
    '(the same code in both; not part of either binding).',
    '',
    '| | arena-web (monaco adapter + WASM) | Yjs + y-monaco + y-websocket |',
    '|---|---|---|',
    row("**document path in the keystroke**: change event → transaction applied¹", docA, docY),
    row('… of which the WASM `Room.applyEdit` call (the yrs transaction, nothing signed)', col(A, 'wasmApply'), null),
    row('caret event: selection recorded (arena) / awareness encoded and sent (Yjs)²', col(A, 'sel'), col(Y, 'sel')),
    row("**the bindings in the keystroke's task** (change + caret handlers)", col(A, 'keystroke'), col(Y, 'keystroke')),
    row('**seal task**, the task after the keystroke: seal + sends + presence³', col(A, 'sealTask'), null),
    row('… of which the WASM `Room.seal` (merge, envelope, signature, log, frame)', col(A, 'wasmSeal'), null),
    row('… of which presence (WASM presence frame, relative positions, its send)', col(A, 'presence'), null),
    row('… of which WebSocket sends (update frame, presence)', col(A, 'sendTask'), null),
    row('signing alone: one Ed25519 signature in WASM (`Room.sign`, 150 bytes)', sign, null),
    row('verifying one signature in WASM (`verifySignature`; the receiver pays it)', local.verify.slice(WARMUP), null),
    row('document path incl. its seal, without the signature (keystroke + `Room.seal` − one signature)', docSealedNoSign, docY),
    row('WebSocket send of the update frame', col(A, 'sendDoc'), col(Y, 'sendDoc')),
    row('**whole local cost of the bindings, signing included** (keystroke + seal task, or the seal a receive did)', col(A, 'local'), col(Y, 'keystroke')),
    row('the noise floor: a fixed JS loop of ~200 µs (no allocation, no I/O), one per keystroke, same run⁴', local.fixed.slice(WARMUP), null),
    '',
    '| | arena-web | Yjs |',
    '|---|---|---|',
    row('Monaco applying the edit (before any binding runs)', col(A, 'monaco'), col(Y, 'monaco')),
    row('whole keystroke task: executeEdits → its microtasks done', col(A, 'task'), col(Y, 'task')),
    '',
    `¹ arena: the monaco adapter's change handler and \`session.edit\`, which applies the splices to the WASM document (\`Room.applyEdit\`: the Yjs-compatible transaction; no envelope, no signature, and no splices computed for the editor's own change) and schedules the seal task. Yjs: y-monaco's change handler (its relative-selection bookkeeping, the Yjs transaction, the update event and y-websocket encoding it), without the socket send, which has its own row.`,
    '',
    `² arena: the adapter reading the selection and \`session.setSelection\` recording it; presence goes out from the seal task. Yjs: y-monaco's caret handler, the awareness update, y-websocket encoding and sending it, y-monaco re-rendering (no) remote decorations.`,
    '',
    `³ \`session._sealTask\`, posted on a MessageChannel by the keystroke (a task, not a microtask: it runs after the keystroke's task has ended): \`Room.seal\` merges the updates typed since the last seal into one envelope, signs it (one Ed25519 signature), logs and frames it; the frame goes to the socket (and data channels); then our presence frame. In ${sealedElsewhere} of ${A.length} keystrokes a frame from the node arrived before the seal task ran, and receiving sealed first (in that frame's task, not the keystroke's; its \`Room.seal\` is counted in the whole cost).`,
    '',
    '⁴ The same work every time, timed like the rows above between the keystrokes: what it takes beyond its p50 is what this machine adds to any task of that size (preemption by Chromium\'s other threads, the node, the hypervisor), not what the code costs.',
    '',
    'Signing is off the keystroke\'s critical path: the keystroke applies the edit and returns; the signature is paid in the next task (before the next frame is painted only if the browser runs that task first, which it usually does; the keystroke itself never waits for it).',
    '',
    ...(paced
      ? [
          `## The same keystrokes at a typing pace (one every ${PACE_MS} ms in the page)`,
          '',
          `The run above types back to back: the next keystroke as soon as the last one's seal task ran, so the page's main thread never idles and Chromium's other threads and the node compete with it for the 2 cores. Here the same ${paced.A.length} counted keystrokes go through two fresh editors (fresh rooms, same page, same interleaving), one keystroke every ${PACE_MS} ms in the page: each editor types ${(1000 / (2 * PACE_MS)).toFixed(0)} keystrokes/s, faster than anyone types. Same rows and definitions as above.`,
          '',
          '| p50 / p99 / mean | arena-web | Yjs + y-monaco + y-websocket |',
          '|---|---|---|',
          row("**the bindings in the keystroke's task** (change + caret handlers)", col(paced.A, 'keystroke'), col(paced.Y, 'keystroke')),
          row('**seal task**: seal + sends + presence', col(paced.A, 'sealTask'), null),
          row('… of which WebSocket sends (update frame, presence)', col(paced.A, 'sendTask'), null),
          row('signing alone: one Ed25519 signature in WASM', paced.sign, null),
          row('**whole local cost of the bindings, signing included**', col(paced.A, 'local'), col(paced.Y, 'keystroke')),
          row('the noise floor: the same fixed ~200 µs JS loop⁴', paced.fixed, null),
          row('whole keystroke task: executeEdits → its microtasks done', col(paced.A, 'task'), col(paced.Y, 'task')),
          ''
        ]
      : []),
    '## Keystroke → remote render (two pages in one room through the node)',
    '',
    `${LAT_KEYS} keystrokes per stack, one every ${LAT_INTERVAL_MS} ms, the two stacks interleaved; sender clock before \`executeEdits\`, receiver clock when its Monaco model changed and at the next animation frame (performance.timeOrigin + now(), one browser).`,
    '',
    '| p50 / p99 / mean | arena-web | Yjs + y-websocket |',
    '|---|---|---|',
    row('keystroke → remote Monaco model updated', latency.arena.model, latency.yjs.model, msf),
    row('keystroke → remote next frame (rendered)', latency.arena.frame, latency.yjs.frame, msf),
    row('receiver: applying one remote keystroke (frame in → editor updated)³', latency.arena.remote, latency.yjs.remote),
    row('… of which the WASM `Room.receive` (decode, verify, apply, splices)', latency.arena.remoteWasm, null),
    row("… of which `Room.code()` for bindEditor's full-text check", latency.arena.remoteCode, null),
    '',
    `³ arena: \`session._receive\` (decode, verify the signature, apply, splices, bindEditor's apply and its full-text check); Yjs: its transaction (y-monaco's observer applying to Monaco), without y-websocket's decode. Missing arrivals: arena ${latency.arena.missing}, Yjs ${latency.yjs.missing}.`,
    '',
    '## Sizes',
    '',
    '| | raw | gzip -9 |',
    '|---|---|---|',
    `| arena_web_bg.wasm (wasm-opt -Oz) | ${kib(wasmRaw)} | ${kib(wasmGz)} |`,
    `| arena-web JS glue (index.js and imports, esbuild --minify) | ${kib(sizes.glue.length)} | ${kib(gz(sizes.glue))} |`,
    `| yjs 13.6 (esbuild --minify) | ${kib(sizes.yjs.length)} | ${kib(gz(sizes.yjs))} |`,
    `| yjs + y-websocket + y-monaco (esbuild --minify) | ${kib(sizes.yjsStack.length)} | ${kib(gz(sizes.yjsStack))} |`,
    ''
  )
  if (problems.length) report.push('Page problems during the run:', '', ...problems.map((p) => `- ${p}`), '')
} finally {
  await chromium.close()
  page.close()
  await node.stop()
}
const text = report.join('\n')
console.log(text)
mkdirSync(resolve(out, '..'), { recursive: true })
writeFileSync(out, text)
log(`wrote ${out}`)
