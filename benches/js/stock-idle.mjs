// Memory per idle room with stock clients, as users run them: one real npm client per room
// (yjs + y-websocket 3.1.0 against arena-bootstrap's /yws and y-websocket 1.5.4's server;
// yjs + @hocuspocus/provider 4.7.0 against @hocuspocus/server 4.7.0), all in this one
// Node process. Per server and per N (a fresh server each time):
//   1. start the server, let it settle, read its RSS (base);
//   2. make N rooms (arena: POST /api/rooms, then the candidate's token), connect one client
//      per room (its awareness carries a user name and colour, as the web room's does), wait
//      for its sync, type ~2 KB into the shared `code` text in `--edits` transactions;
//   3. read RSS right after the last client typed (joined), then again after `--wait` s of
//      idling (the clients stay connected; their awareness heartbeat renews every 15 s);
//   4. check what was measured: every client still connected (reconnects counted), and a
//      fresh client in a few rooms syncs the whole typed text back.
// Prints RSS per room, (after - base) / N, and, with two or more N, the slope between them.
//
//   ulimit -n 65536; node benches/js/stock-idle.mjs [--servers arena,yws,hocuspocus]
//       [--rooms 2000,4000] [--wait 40] [--edits 40 (0: connect only)] [--arena-bin target/release/arena-bootstrap]
//       [--arena-args '--flag value ...'] [--baseline-bin PATH]
// benches/js/stock-idle.sh raises the open-file limit, checks for the release build and runs
// it. --baseline-bin adds another arena-bootstrap build (e.g. the commit before a change) to
// the same run.
import { spawn } from 'node:child_process'
import { readFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import net from 'node:net'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { HocuspocusProvider } from '@hocuspocus/provider'
import WebSocket from 'ws'

globalThis.WebSocket ??= WebSocket
// y-websocket's provider adds a process 'exit' listener per client.
process.setMaxListeners(0)
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

// ---- options -----------------------------------------------------------------------------
const opts = {
  servers: ['arena', 'yws', 'hocuspocus'],
  rooms: [2000, 4000],
  wait: 40,
  edits: 40,
  arenaBin: join(root, 'target/release/arena-bootstrap'),
  arenaArgs: [],
  baselineBin: null,
  concurrency: 100,
  verify: 5
}
for (let i = 2; i < process.argv.length; i += 2) {
  const [k, v] = [process.argv[i], process.argv[i + 1]]
  if (v === undefined) throw new Error(`${k} needs a value`)
  switch (k) {
    case '--servers': opts.servers = v.split(','); break
    case '--rooms': opts.rooms = v.split(',').map(Number); break
    case '--wait': opts.wait = Number(v); break
    case '--edits': opts.edits = Number(v); break
    case '--arena-bin': opts.arenaBin = v; break
    case '--arena-args': opts.arenaArgs = v.split(/\s+/).filter(Boolean); break
    case '--baseline-bin': opts.baselineBin = v; break
    case '--concurrency': opts.concurrency = Number(v); break
    case '--verify': opts.verify = Number(v); break
    default: throw new Error(`unknown option ${k}`)
  }
}
for (const s of opts.servers) if (!['arena', 'yws', 'hocuspocus'].includes(s)) throw new Error(`unknown server ${s}`)
// Another arena-bootstrap build (e.g. the commit before a change), measured in the same run.
if (opts.baselineBin) opts.servers.unshift('arena-baseline')
if (opts.rooms.some((n) => !(n > 0)) || !(opts.edits >= 0) || !(opts.wait >= 0)) throw new Error('bad --rooms, --edits or --wait')

// ~2 KB of code, typed as `edits` inserts at the end of the text.
const LINE = 'def solve(nums):\n    return sorted(set(nums))[:k]\n'
const DOC = LINE.repeat(Math.ceil(2048 / LINE.length)).slice(0, 2048)
const TYPED = opts.edits > 0 ? DOC : ''
const chunks = Array.from({ length: opts.edits }, (_, i) =>
  DOC.slice(Math.floor((i * DOC.length) / opts.edits), Math.floor(((i + 1) * DOC.length) / opts.edits)))

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const log = (...a) => console.error(...a)

function rssKiB (pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (!m) throw new Error(`no VmRSS for ${pid}`)
  return Number(m[1])
}

async function freePort () {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)) })
  })
}

// ---- servers -----------------------------------------------------------------------------
async function startServer (kind) {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'stock-idle-'))
  let cmd, args, env
  if (kind.startsWith('arena')) {
    cmd = kind === 'arena' ? opts.arenaBin : opts.baselineBin
    // Rooms are made through the API, thousands a minute from one address, and every client
    // connects from 127.0.0.1: no per-address caps here (as loadgen).
    args = ['--http-addr', `127.0.0.1:${port}`, '--rate-limit', '100000', '--room-create-per-minute', '100000000',
      '--yws-max-per-ip', '10000000', '--yws-max-connections', '10000000', '--data-dir', dir, ...opts.arenaArgs]
    env = { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' }
  } else if (kind === 'yws') {
    cmd = 'node'
    args = [join(root, 'node_modules/y-websocket-server/bin/server.js')]
    env = { ...process.env, HOST: '127.0.0.1', PORT: String(port) }
  } else {
    cmd = 'node'
    args = [join(root, 'benches/js/hocuspocus.mjs')]
    env = { ...process.env, PORT: String(port) }
  }
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise((resolve) => child.on('exit', (code, sig) => resolve({ code, sig })))
  child.on('error', (e) => log(`${kind}: ${e.message}`))
  // Every server says so on stdout once it listens (a wrapper, e.g. heaptrack, may print
  // lines of its own first).
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${kind} did not say it listens in 60 s`)), 60000)
    let seen = ''
    const onData = (d) => {
      seen = (seen + d).slice(-4096)
      if (/listening|running at/.test(seen)) {
        clearTimeout(t)
        child.stdout.off('data', onData)
        child.stdout.resume()
        resolve()
      }
    }
    child.stdout.on('data', onData)
    exited.then(({ code }) => reject(new Error(`${kind} exited (${code}) before listening`)))
  })
  return {
    kind,
    port,
    pid: child.pid,
    rss: () => rssKiB(child.pid),
    async stop () {
      child.kill('SIGTERM')
      const t = setTimeout(() => child.kill('SIGKILL'), 10000)
      await exited
      clearTimeout(t)
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

async function arenaMetrics (port) {
  const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  const get = (name) => Number((new RegExp(`^arena_${name} (\\d+)`, 'm').exec(body) ?? [])[1])
  return {
    documents_loaded: get('documents_loaded'),
    rooms_loaded: get('rooms_loaded'),
    connections_active: get('connections_active'),
    connections_inline: get('connections_inline'),
    heap_live_bytes: get('heap_live_bytes')
  }
}

/// Rooms `first..first+n`: [name, token] (arena makes them through its API).
async function makeRooms (server, first, n) {
  if (!server.kind.startsWith('arena')) return Array.from({ length: n }, (_, i) => [`room-${first + i}`, null])
  const out = new Array(n)
  let next = 0
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < n) {
      const i = next++
      const r = await fetch(`http://127.0.0.1:${server.port}/api/rooms`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ title: `idle ${first + i}` })
      })
      if (r.status !== 201) throw new Error(`POST /api/rooms: ${r.status} ${await r.text()}`)
      const v = await r.json()
      if (typeof v.room !== 'string' || typeof v.tokens?.candidate !== 'string') throw new Error(`POST /api/rooms: ${JSON.stringify(v)}`)
      out[i] = [v.room, v.tokens.candidate]
    }
  }))
  return out
}

// ---- clients -----------------------------------------------------------------------------
/// One stock client in `room`: resolves once it has synced; `stats` counts its disconnects.
function connect (server, room, token, name, stats) {
  const doc = new Y.Doc()
  let provider
  const url = `ws://127.0.0.1:${server.port}`
  if (server.kind === 'hocuspocus') {
    provider = new HocuspocusProvider({ url, name: room, document: doc, WebSocketPolyfill: WebSocket })
    provider.on('disconnect', () => { stats.disconnects++ })
  } else {
    provider = new WebsocketProvider(server.kind.startsWith('arena') ? `${url}/yws` : url, room, doc, {
      params: token ? { token } : {},
      WebSocketPolyfill: WebSocket,
      disableBc: true
    })
    provider.on('connection-close', () => { stats.disconnects++ })
  }
  provider.awareness.setLocalStateField('user', { name, color: '#30bced' })
  const synced = new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${server.kind}: ${room} did not sync in 60 s`)), 60000)
    const done = () => { clearTimeout(t); resolve() }
    if (server.kind === 'hocuspocus') provider.on('synced', done)
    else provider.on('sync', (s) => { if (s) done() })
  })
  return { doc, provider, synced }
}

/// Connects a client to each room (`concurrency` at a time) and types the document.
async function joinAndType (server, rooms, stats) {
  const clients = new Array(rooms.length)
  let next = 0
  await Promise.all(Array.from({ length: opts.concurrency }, async () => {
    while (next < rooms.length) {
      const i = next++
      const [room, token] = rooms[i]
      const c = connect(server, room, token, `candidate ${i}`, stats)
      clients[i] = c
      await c.synced
      const text = c.doc.getText('code')
      for (const piece of chunks) {
        text.insert(text.length, piece)
        await sleep(5)
      }
    }
  }))
  return clients
}

/// A fresh client in `room` syncs; resolves with its `code` text.
async function readBack (server, room, token) {
  const stats = { disconnects: 0 }
  const c = connect(server, room, token, 'checker', stats)
  await c.synced
  // The server answers sync step 1 with the whole state; give any later frame a moment.
  await sleep(200)
  const text = c.doc.getText('code').toString()
  c.provider.destroy()
  return text
}

// ---- one measurement ---------------------------------------------------------------------
async function measure (kind, n) {
  const server = await startServer(kind)
  try {
    await sleep(2000)
    const base = server.rss()
    const mBase = kind.startsWith('arena') ? await arenaMetrics(server.port) : null
    const stats = { disconnects: 0 }
    const t0 = Date.now()
    const rooms = await makeRooms(server, 0, n)
    const clients = await joinAndType(server, rooms, stats)
    // Let the last updates and the servers' own work (arena: signing, sled flush) settle.
    await sleep(2000)
    const joined = server.rss()
    const m0 = kind.startsWith('arena') ? await arenaMetrics(server.port) : null
    const joinSecs = (Date.now() - t0) / 1000
    const before = stats.disconnects
    await sleep(opts.wait * 1000)
    const idle = server.rss()
    const m1 = kind.startsWith('arena') ? await arenaMetrics(server.port) : null
    const idleDisconnects = stats.disconnects - before
    // What was measured holds: the typed text is on the server, whole.
    const picks = Array.from({ length: Math.min(opts.verify, n) }, (_, i) => Math.floor((i * n) / Math.min(opts.verify, n)))
    for (const i of picks) {
      const text = await readBack(server, rooms[i][0], rooms[i][1])
      if (text !== TYPED) throw new Error(`${kind}: room ${i} read back ${text.length} bytes, not the ${TYPED.length} typed`)
    }
    for (const c of clients) c.provider.destroy()
    const r = { kind, n, base, joined, idle, joinSecs, idleDisconnects, joinDisconnects: before, m0, m1, verified: picks.length }
    const per = (x) => ((x - base) / n).toFixed(2)
    console.log(`${kind} N=${n}: base ${(base / 1024).toFixed(1)} MiB; joined ${(joined / 1024).toFixed(1)} MiB (+${per(joined)} KiB/room); ` +
      `after ${opts.wait} s idle ${(idle / 1024).toFixed(1)} MiB (+${per(idle)} KiB/room; total/N ${(idle / n).toFixed(2)} KiB); ` +
      `join+type ${joinSecs.toFixed(1)} s; disconnects while joining ${before}, while idle ${idleDisconnects}; ${picks.length} rooms read back whole` +
      (m1 ? `; arena metrics joined ${JSON.stringify(m0)} idle ${JSON.stringify(m1)}` : '') +
      (m1?.heap_live_bytes >= 0 ? `; live heap (heap-stats) +${((m0.heap_live_bytes - mBase.heap_live_bytes) / 1024 / n).toFixed(2)} KiB/room joined, +${((m1.heap_live_bytes - mBase.heap_live_bytes) / 1024 / n).toFixed(2)} after idle` : ''))
    return r
  } finally {
    await server.stop()
  }
}

const results = []
log(`stock-idle: servers ${opts.servers.join(',')}, rooms ${opts.rooms.join(',')}, ${opts.edits} edits of ~${Math.round(TYPED.length / Math.max(opts.edits, 1))} B, wait ${opts.wait} s`)
for (const n of opts.rooms) {
  for (const kind of opts.servers) {
    results.push(await measure(kind, n))
    await sleep(1000)
  }
}
console.log(`\n| server | N | RSS base MiB | KiB/room joined | KiB/room after ${opts.wait} s idle | total RSS / N KiB | idle disconnects |`)
console.log('|---|---|---|---|---|---|---|')
for (const r of results) {
  console.log(`| ${r.kind} | ${r.n} | ${(r.base / 1024).toFixed(1)} | ${((r.joined - r.base) / r.n).toFixed(2)} | ${((r.idle - r.base) / r.n).toFixed(2)} | ${(r.idle / r.n).toFixed(2)} | ${r.idleDisconnects} |`)
}
if (opts.rooms.length > 1) {
  const [a, b] = [Math.min(...opts.rooms), Math.max(...opts.rooms)]
  console.log(`\nSlope between N=${a} and N=${b} (after ${opts.wait} s idle; base RSS cancels):`)
  for (const kind of opts.servers) {
    const ra = results.find((r) => r.kind === kind && r.n === a)
    const rb = results.find((r) => r.kind === kind && r.n === b)
    console.log(`  ${kind}: ${((rb.idle - ra.idle) / (b - a)).toFixed(2)} KiB/room`)
  }
}
// Per N: an arena build's KiB per room over the best Node server's at the same N; the
// figure is the worst (highest) of those.
const perRoom = (kind, n) => {
  const r = results.find((x) => x.kind === kind && x.n === n)
  return r ? (r.idle - r.base) / r.n : NaN
}
const nodes = opts.servers.filter((k) => !k.startsWith('arena'))
if (nodes.length) {
  for (const k of opts.servers.filter((k) => k.startsWith('arena'))) {
    const ratios = opts.rooms.map((n) => perRoom(k, n) / Math.min(...nodes.map((m) => perRoom(m, n))))
    const each = opts.rooms.map((n, i) => `${n}: ${ratios[i].toFixed(3)}`).join(', ')
    console.log(`\n${k} / best Node server at the same N, after idle: ${each}; worst ${Math.max(...ratios).toFixed(3)}`)
  }
}
process.exit(0)
