// The recorder in a real browser call (#26): host and candidate in headless Chromium (fake
// camera and microphone) call each other through the real arena-bootstrap's /signal, and the
// real `arena-node record` binary joins with the observer invite, receive-only. Once stopped
// (SIGINT), its directory holds each participant's VP8 video and Opus audio (ffprobe), the
// pages never received media from it, and `arena-node verify` passes (media hashes sealed).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startServer, createRoom, launchChromium, waitFor, repo } from './support.mjs'

const MEDIA_FLAGS = ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', '--autoplay-policy=no-user-gesture-required']
const ARENA_NODE = process.env.ARENA_NODE_BIN ?? join(repo, 'target/debug/arena-node')

/** ffprobe's codec name and duration (s) of the first stream of `file`. */
function probe (file) {
  const out = execFileSync('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_name:format=duration', '-of', 'json', file], { encoding: 'utf8' })
  const j = JSON.parse(out)
  return { codec: j.streams?.[0]?.codec_name, duration: Number(j.format?.duration ?? 0) }
}

/** Per remote peer of a page's call (by name): media flag, state, what it receives and sends. */
async function peers (page) {
  return page.evaluate(async () => {
    const out = {}
    for (const p of window.arena.call.peers.values()) {
      const r = { media: p.media, role: p.role, state: p.pc?.connectionState ?? 'none', inbound: 0, outbound: 0 }
      if (p.pc) {
        (await p.pc.getStats()).forEach((x) => {
          if (x.type === 'inbound-rtp') r.inbound += x.packetsReceived ?? 0
          if (x.type === 'outbound-rtp') r.outbound += x.packetsSent ?? 0
        })
      }
      out[p.name ?? p.id] = r
    }
    return out
  })
}

test('arena-node record captures a browser call', { timeout: 240_000 }, async (t) => {
  assert.ok(existsSync(ARENA_NODE), `${ARENA_NODE} is missing: build it (cargo build -p arena-node) or set ARENA_NODE_BIN`)
  for (const tool of ['ffprobe']) {
    try { execFileSync(tool, ['-version'], { stdio: 'ignore' }) } catch { assert.fail(`${tool} is missing (Debian's ffmpeg; scripts/install-toolchains.sh installs it)`) }
  }
  const server = await startServer()
  const chromium = await launchChromium({ args: MEDIA_FLAGS })
  const out = mkdtempSync(join(tmpdir(), 'arena-call-rec-'))
  let recorder = null
  t.after(async () => {
    recorder?.kill('SIGKILL')
    await chromium.close()
    await server.stop()
    rmSync(out, { recursive: true, force: true })
  })
  const created = await createRoom(server.url, { title: 'Recorded call', language: 'python' })
  const open = async (role, name) => {
    const context = await chromium.browser.newContext()
    const page = await context.newPage()
    await page.goto(`${server.url}/room/${created.room}?name=${name}&editor=textarea&mesh=0&call=1#token=${created.tokens[role]}`)
    await page.waitForFunction(() => window.arena?.call?.status === 'online', null, { timeout: 30_000 })
    return page
  }
  const host = await open('host', 'Hana')
  const cand = await open('candidate', 'Cole')
  await waitFor(async () => ((await peers(host)).Cole?.inbound ?? 0) > 0 && ((await peers(cand)).Hana?.inbound ?? 0) > 0,
    { timeoutMs: 45_000, what: async () => JSON.stringify({ host: await peers(host), cand: await peers(cand) }) })

  let log = ''
  recorder = spawn(ARENA_NODE, ['record', created.room, '--token', created.tokens.observer, '--bootstrap', server.url, '--out', join(out, 'rec'), '--name', 'recorder'],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info' } })
  recorder.stdout.on('data', (d) => { log += d })
  recorder.stderr.on('data', (d) => { log += d })
  const exited = new Promise((resolve) => recorder.on('exit', (code, signal) => resolve({ code, signal })))

  // Both pages send to the recorder (a receive-only peer: it sends them nothing).
  const toRecorder = async (page) => Object.values(await peers(page)).find((p) => p.media === false)
  await waitFor(async () => {
    const [h, c] = [await toRecorder(host), await toRecorder(cand)]
    return h?.state === 'connected' && c?.state === 'connected' && h.outbound > 50 && c.outbound > 50
  }, { timeoutMs: 60_000, what: async () => `pages: ${JSON.stringify({ host: await peers(host), cand: await peers(cand) })}\nrecorder: ${log.slice(-3000)}` })
  // Several seconds of media, then stop it as an operator would.
  await new Promise((resolve) => setTimeout(resolve, 6000))
  for (const page of [host, cand]) {
    const r = await toRecorder(page)
    assert.equal(r.role, 'observer', 'the node stamps the recorder as an observer')
    assert.equal(r.inbound, 0, 'a page received media from the recorder')
  }
  recorder.kill('SIGINT')
  const { code, signal } = await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve({ code: 'timeout' }), 30_000))])
  assert.equal(code, 0, `the recorder did not stop cleanly (${code}, ${signal}):\n${log.slice(-3000)}`)

  const media = join(out, 'rec', 'media')
  const files = readdirSync(media)
  for (const role of ['host', 'candidate']) {
    const video = files.filter((f) => f.includes(`-${role}-`) && f.endsWith('.ivf'))
    const audio = files.filter((f) => f.includes(`-${role}-`) && f.endsWith('.ogg'))
    assert.ok(video.length >= 1 && audio.length >= 1, `${role}'s files: ${files.join(', ')}`)
    const v = probe(join(media, video[0]))
    const a = probe(join(media, audio[0]))
    assert.equal(v.codec, 'vp8', `${video[0]}: ${JSON.stringify(v)}`)
    assert.equal(a.codec, 'opus', `${audio[0]}: ${JSON.stringify(a)}`)
    assert.ok(v.duration > 3 && a.duration > 3, `${role}: ${JSON.stringify({ v, a })}`)
  }
  assert.ok(files.includes('timeline.jsonl'), files.join(', '))
  const verify = execFileSync(ARENA_NODE, ['verify', join(out, 'rec')], { encoding: 'utf8' })
  assert.match(verify, /OK/, verify)
})
