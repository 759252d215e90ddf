// Per-keystroke cost of the arena-web path in V8 (node): one local edit (document
// transaction + signed envelope + encoded frame) and one remote apply (decode, verify the
// signature, apply, splices for the editor). Run: node examples/web-room/bench/keystroke.mjs
// A rough number for the report; the Chromium benchmark against Yjs + y-monaco is its own
// task.
import { loadArena } from '../tests/support.mjs'

const { Room } = await loadArena()
const seed = (n) => new Uint8Array(32).fill(n)
const host = Room.create(seed(9), seed(1), 'host', 'python', 'bench', 1000)
const token = host.inviteToken('candidate', 4e9, 1000)
const cand = Room.join(host.roomId(), token, 'cand', seed(2), 1000)
// Catch the candidate up (as the node would relay it).
for (const f of cand.open(1000)) for (const r of host.receive(f, 1000).replies) cand.receive(r, 1000)

const N = 5000
const local = []
const remote = []
const frames = []
const ops = new Uint32Array(2)
for (let i = 0; i < N; i++) {
  ops[0] = i
  const t0 = performance.now()
  const out = host.edit(ops, ['x'], 2000 + i)
  const t1 = performance.now()
  local.push(t1 - t0)
  frames.push(out[0])
}
for (const f of frames) {
  const t0 = performance.now()
  cand.receive(f, 9000)
  remote.push(performance.now() - t0)
}
if (cand.code() !== host.code()) throw new Error('diverged')
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(s.length * p))] }
const fmt = (xs) => `median ${(pct(xs, 0.5) * 1000).toFixed(0)} µs, p99 ${(pct(xs, 0.99) * 1000).toFixed(0)} µs`
console.log(`local keystroke (edit + sign + frame): ${fmt(local)}`)
console.log(`remote keystroke (verify + apply + splices): ${fmt(remote)}`)
