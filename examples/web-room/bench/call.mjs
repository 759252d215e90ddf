// The call's setup time: from the first offer to the first decoded video frame between two
// local pages (host and candidate, headless Chromium with its fake camera and microphone,
// through the real arena-bootstrap's /signal on loopback). Target (issue #26): <= 1 s.
//
//   node examples/web-room/bench/call.mjs
//
// Each run: a fresh room, two fresh pages that load the room without joining the call;
// then both join (the host first). The offer's time is when the offering page's call hands
// `arena-call-offer` to its signaling socket; a frame's time is when the receiving page's
// getStats (polled every 5 ms) first shows inbound video framesDecoded > 0. Both pages run
// in one browser on this machine: one clock. Prints p50 / max of "offer → first frame at
// the answerer" and "offer → first frame at both ends" and writes the markdown report to
// BENCH_OUT (default benches/results/<today>-call-first-frame.md).
// Environment: BENCH_RUNS (default 10, after one warm-up run), ARENA_BOOTSTRAP_BIN, CHROMIUM.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { cpus, loadavg } from 'node:os'
import { execFileSync } from 'node:child_process'
import { startServer, createRoom, launchChromium, repo } from '../tests/support.mjs'

const RUNS = Number(process.env.BENCH_RUNS ?? 10)
const today = new Date().toISOString().slice(0, 10)
const out = process.env.BENCH_OUT ?? join(repo, `benches/results/${today}-call-first-frame.md`)
const log = (...a) => console.error('bench:', ...a)

// Records, in the page, when the call first sends an offer (window.__offerAt, ms since the
// epoch with sub-ms precision).
function instrument () {
  const send = WebSocket.prototype.send
  WebSocket.prototype.send = function (d) {
    if (window.__offerAt === undefined && typeof d === 'string' && d.includes('"arena-call-offer"')) window.__offerAt = performance.timeOrigin + performance.now()
    return send.call(this, d)
  }
}

/** In the page: resolves when inbound video first has a decoded frame (ms since the epoch). */
function firstFrame () {
  return new Promise((resolve) => {
    const call = window.arena.call
    const tick = async () => {
      for (const p of call.peers.values()) {
        if (!p.pc) continue
        let frames = 0
        ;(await p.pc.getStats()).forEach((x) => { if (x.type === 'inbound-rtp' && x.kind === 'video') frames += x.framesDecoded ?? 0 })
        if (frames > 0) return resolve(performance.timeOrigin + performance.now())
      }
      setTimeout(tick, 5)
    }
    tick()
  })
}

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))] }

async function once (server, chromium) {
  const created = await createRoom(server.url, { title: 'call bench', language: 'python' })
  const pages = []
  for (const [role, name] of [['host', 'Hana'], ['candidate', 'Cole']]) {
    const context = await chromium.browser.newContext()
    await context.addInitScript(instrument)
    const page = await context.newPage()
    await page.goto(`${server.url}/room/${created.room}?name=${name}&editor=textarea&mesh=0#token=${created.tokens[role]}`)
    await page.waitForFunction(() => window.arena?.call, null, { timeout: 30_000 })
    pages.push({ context, page })
  }
  const frames = pages.map(({ page }) => page.evaluate(firstFrame))
  for (const { page } of pages) await page.evaluate(() => window.arena.call.start())
  const at = await Promise.race([
    Promise.all(frames),
    new Promise((_resolve, reject) => setTimeout(() => reject(new Error('no frame within 60 s')), 60_000))
  ])
  const offers = await Promise.all(pages.map(({ page }) => page.evaluate(() => window.__offerAt ?? null)))
  const offerer = offers.findIndex((x) => x !== null)
  const offerAt = offers[offerer]
  for (const { context } of pages) await context.close()
  return { answerer: at[1 - offerer] - offerAt, both: Math.max(...at) - offerAt }
}

const server = await startServer()
const chromium = await launchChromium({ args: ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', '--autoplay-policy=no-user-gesture-required'] })
const results = []
try {
  log('warm-up run')
  await once(server, chromium)
  for (let i = 0; i < RUNS; i++) {
    const r = await once(server, chromium)
    log(`run ${i + 1}/${RUNS}: answerer ${r.answerer.toFixed(0)} ms, both ends ${r.both.toFixed(0)} ms`)
    results.push(r)
  }
} finally {
  await chromium.close()
  await server.stop()
}

const row = (label, xs) => `| ${label} | ${pct(xs, 0.5).toFixed(0)} ms | ${Math.max(...xs).toFixed(0)} ms | ${Math.min(...xs).toFixed(0)} ms |`
const chromiumVersion = (() => { try { return execFileSync(process.env.CHROMIUM ?? '/usr/bin/chromium', ['--version'], { encoding: 'utf8' }).trim() } catch { return 'chromium (version unknown)' } })()
const report = `# The call's first frame (${today})

\`node examples/web-room/bench/call.mjs\` (${RUNS} runs after one warm-up): two headless
Chromium pages (host and candidate, fake camera and microphone) in a fresh room each run,
through arena-bootstrap's \`/signal\` on loopback (debug build). From the offering page
handing its first \`arena-call-offer\` to the signaling socket to the first decoded video
frame (inbound-rtp framesDecoded > 0, getStats polled every 5 ms). Target: <= 1 s.

| offer → first decoded frame | p50 | max | min |
|---|---|---|---|
${row('at the answerer', results.map((r) => r.answerer))}
${row('at both ends', results.map((r) => r.both))}

Runs (ms, answerer / both): ${results.map((r) => `${r.answerer.toFixed(0)}/${r.both.toFixed(0)}`).join(', ')}

Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')} at the end (shared with other builds); ${chromiumVersion}; Node ${process.version}.
`
writeFileSync(out, report)
console.log(report)
log(`wrote ${out}`)
