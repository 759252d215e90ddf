// The arena-web WASM module's own costs, in Node (V8, like Chromium, without the page):
// one Ed25519 signature, one verification, a keystroke (applyEdit) and its seal, receiving
// one remote keystroke into a 42 KB document, and reading the code back. For comparing
// builds of the module side by side:
//
//   node examples/web-room/bench/wasm-node.mjs [PKG_DIR ...]    (default web-bindings/pkg)
//
// With several package directories the rounds alternate between them in one process, so a
// noisy spell hits every build alike. Prints p50 / p99 (µs) per build, the median over the
// rounds; ROUNDS (default 5) and N (samples per round, default 2000) override.
import { readFileSync, statSync } from 'node:fs'
import { gzipSync } from 'node:zlib'
import { execFileSync } from 'node:child_process'
import { resolve, join, dirname } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
const dirs = process.argv.slice(2).length ? process.argv.slice(2) : [join(repo, 'web-bindings/pkg')]
const ROUNDS = Number(process.env.ROUNDS ?? 5)
const N = Number(process.env.N ?? 2000)

const seed = (b) => new Uint8Array(32).fill(b)
const now = () => Date.now()
const hr = () => process.hrtime.bigint()

async function load (dir) {
  const wasm = join(dir, 'arena_web_bg.wasm')
  statSync(wasm) // a clear error when the package was not built
  const mod = await import(pathToFileURL(join(dir, 'index.js')).href)
  const bytes = readFileSync(wasm)
  await mod.init(bytes)
  // GNU gzip -9 as the build script reports it; zlib's level 9 (a few hundred bytes apart) without it.
  let gzip
  try { gzip = execFileSync('gzip', ['-9c', wasm], { maxBuffer: 64 << 20 }).length } catch { gzip = gzipSync(bytes, { level: 9 }).length }
  return { dir, mod, raw: bytes.length, gzip }
}

/** A host room and a candidate joined to it (frames exchanged by hand, as a relay would),
 *  both holding a 42 KB buffer. */
function pair ({ Room }) {
  const host = Room.create(seed(1), seed(2), 'host', 'rust', 'bench', now())
  const cand = Room.join(host.roomId(), host.inviteToken('candidate', now() / 1000 + 3600, now()), 'cand', seed(3), now())
  const pump = (to, from, frames) => {
    for (const f of frames) {
      const r = to.receive(f, now(), undefined)
      to.takeChanges()
      if (r.replies?.length) pump(from, to, r.replies)
    }
  }
  pump(host, cand, cand.open(now()))
  host.applyEdit(new Uint32Array([0, 0]), ['fn main() { println!("x"); }\n'.repeat(1500)], now())
  pump(cand, host, host.seal(now()))
  if (cand.code() !== host.code()) throw new Error('bench: the two rooms did not converge')
  return { host, cand }
}

const pct = (xs, p) => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]

function round ({ mod }) {
  const { host, cand } = pair(mod)
  const msg = new Uint8Array(150).fill(7)
  const pub = host.publicKey()
  const sig = host.sign(msg)
  const t = { sign: [], verify: [], keystroke: [], seal: [], receive: [], code: [], codeLength: [] }
  const hasLength = typeof host.codeLength === 'function' // builds before it lack it
  const len = (room) => (hasLength ? room.codeLength() : room.code().length)
  let pos = len(host)
  const time = (k, f) => { const a = hr(); const r = f(); t[k].push(Number(hr() - a) / 1000); return r }
  for (let i = 0; i < N; i++) {
    time('sign', () => host.sign(msg))
    if (!time('verify', () => mod.verifySignature(pub, msg, sig))) throw new Error('bench: signature did not verify')
    time('keystroke', () => host.applyEdit(new Uint32Array([pos++, 0]), ['a'], now()))
    const frames = time('seal', () => host.seal(now()))
    time('receive', () => { for (const f of frames) cand.receive(f, now(), undefined); cand.takeChanges() })
    time('code', () => cand.code())
    if (hasLength) time('codeLength', () => cand.codeLength())
  }
  if (len(cand) !== len(host)) throw new Error('bench: the candidate missed keystrokes')
  host.free(); cand.free()
  return Object.fromEntries(Object.entries(t).map(([k, xs]) => [k, xs.length ? [pct(xs, 0.5), pct(xs, 0.99)] : null]))
}

const builds = []
for (const d of dirs) builds.push(await load(resolve(d)))
const results = builds.map(() => [])
for (let r = 0; r < ROUNDS; r++) builds.forEach((b, i) => results[i].push(round(b)))
const median = (xs) => xs.slice().sort((a, b) => a - b)[xs.length >> 1]
const rows = Object.keys(results[0][0])
const cell = (rs, k) => (rs[0][k] ? `${f(median(rs.map((x) => x[k][0])))} / ${f(median(rs.map((x) => x[k][1])))}` : '–')
const f = (x) => (x < 10 ? x.toFixed(1) : x.toFixed(0))
console.log(`| µs, p50 / p99 (median of ${ROUNDS} rounds × ${N}) | ${builds.map((b) => b.dir.replace(repo + '/', '')).join(' | ')} |`)
console.log(`|---|${builds.map(() => '---').join('|')}|`)
for (const k of rows) {
  console.log(`| ${k} | ${results.map((rs) => cell(rs, k)).join(' | ')} |`)
}
console.log(`| module, raw / gzip -9 (bytes) | ${builds.map((b) => `${b.raw} / ${b.gzip}`).join(' | ')} |`)
console.log(`Node ${process.version}; sign: 150 bytes; receive: one remote keystroke (decode, verify, apply, splices) into a 43 KB document; code: the whole text back to JS.`)
